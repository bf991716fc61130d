//! The state machine store: applies committed entries to the `sm` table in
//! one atomic batch per call, and builds/installs snapshots (kept in the
//! file `snapshot` beside the tables: temporary name, `fsync`, rename).
//!
//! Applies are not flushed: after a crash the table is a consistent prefix
//! (batches are recovered atomically and in order) and openraft re-applies
//! the durable log from `last_applied`. The log is only purged after a flush.
//!
//! An entry is applied only once the log's durable watermark covers it:
//! the leader reports its own appends to openraft before they are durable
//! (`log.rs`), so a commit may be known before the leader's copy is.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, RwLock};

use super::wal::Durability;
use crate::error::MetaError;
use crate::keys;
use crate::records::{decode, encode};
use crate::state_machine::{
    self,
    tx::{ReadSet, Tx},
};
use crate::types::{LogId, MemberNode, Output, Response, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;
type StoreResult<T> = Result<T, StorageError<u64>>;
type Membership = StoredMembership<u64, MemberNode>;

/// Sent after every applied batch: the highest log index applied.
pub type AppliedTx = broadcast::Sender<u64>;

/// Sent after every applied batch that added journal lines: for each user,
/// the newest sequence number.
pub type JournalTx = broadcast::Sender<Arc<Vec<(cluster_config::UserId, u64)>>>;

#[derive(Clone)]
pub struct StateMachineStore {
    db: crate::table::Db,
    tree: crate::table::Table,
    /// Where the current snapshot is kept.
    snapshot_path: PathBuf,
    /// Held for writing while applying, for reading while a snapshot copies
    /// the tree, so a snapshot is never torn.
    gate: Arc<RwLock<()>>,
    applied: AppliedTx,
    journal: JournalTx,
    /// The log's durable watermark, which an apply waits for.
    durable: Option<Durability>,
    /// The tree's values as the last apply left them, for the keys applies
    /// read or are likely to read again (accounts, folders, names), so the
    /// next apply does not look them up in the tables again. Only applies
    /// write the tree; a snapshot install empties this.
    known: Arc<std::sync::Mutex<ReadSet>>,
}

/// Keys `known` holds at most; past that it starts again empty.
const KNOWN_KEYS: usize = 32 * 1024;

/// Written keys worth keeping in `known`: those the next commands resolve
/// paths and quotas through.
fn likely_read(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&keys::USER) | Some(&keys::ENTRY) | Some(&keys::CHILD) | Some(&keys::SM_META)
    )
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, MemberNode>,
    data: Vec<u8>,
}

impl StateMachineStore {
    pub(super) fn new(db: crate::table::Db, dir: &Path) -> Result<Self, MetaError> {
        let tree = db.table("sm")?;
        let (applied, _) = broadcast::channel(64);
        let (journal, _) = broadcast::channel(1024);
        Ok(Self {
            db,
            tree,
            snapshot_path: dir.join("snapshot"),
            gate: Arc::new(RwLock::new(())),
            applied,
            journal,
            durable: None,
            known: Arc::default(),
        })
    }

    /// Applies entries only once `durable` covers them.
    pub fn gated_by(mut self, durable: Durability) -> Self {
        self.durable = Some(durable);
        self
    }

    /// The tree queries read from.
    pub fn tree(&self) -> crate::table::Table {
        self.tree.clone()
    }

    pub fn applied_events(&self) -> AppliedTx {
        self.applied.clone()
    }

    pub fn journal_events(&self) -> JournalTx {
        self.journal.clone()
    }

    /// Writes the current snapshot durably (temporary file, `fsync`,
    /// rename, directory `fsync`).
    fn save_snapshot(&self, file: &SnapshotFile) -> Result<(), std::io::Error> {
        write_durably(&self.snapshot_path, &encode(file))
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, ReadSet> {
        // Poisoned only if a holder panicked; what it left is then dropped.
        self.known.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            g.clear();
            g
        })
    }

    fn read_applied(&self) -> Result<(Option<LogId>, Membership), std::io::Error> {
        let last = match self
            .tree
            .get(&keys::sm_last_applied())
            .map_err(super::io_err)?
        {
            Some(v) => decode::<Option<LogId>>("last applied", &v).map_err(super::io_err)?,
            None => None,
        };
        let membership = match self
            .tree
            .get(&keys::sm_membership())
            .map_err(super::io_err)?
        {
            Some(v) => decode::<Membership>("membership", &v).map_err(super::io_err)?,
            None => Membership::default(),
        };
        Ok((last, membership))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StoreResult<(Option<LogId>, Membership)> {
        self.read_applied()
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let (Some(durable), Some(last)) = (&self.durable, entries.last()) {
            durable
                .wait(last.log_id.index)
                .await
                .map_err(|e| StorageIOError::apply(last.log_id, &super::io_err(e)))?;
        }
        let _gate = self.gate.write().await;
        // Taken out for this apply: if it fails, the next starts empty.
        let known = std::mem::take(&mut *self.lock_known());
        let mut tx = Tx::with_known(&self.tree, known);
        let mut membership = match tx.get::<Membership>("membership", &keys::sm_membership()) {
            Ok(m) => m.unwrap_or_default(),
            Err(e) => return Err(StorageIOError::read_state_machine(&e).into()),
        };
        let mut last = None;
        let mut out = Vec::new();
        for entry in entries {
            last = Some(entry.log_id);
            let resp = match entry.payload {
                EntryPayload::Blank => Ok(Output::Done),
                EntryPayload::Normal(req) => state_machine::apply(&mut tx, &req).map_err(|e| {
                    tracing::error!(cmd = req.cmd.name(), error = %e, "state machine storage failed");
                    StorageIOError::apply(entry.log_id, &e)
                })?,
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(Output::Done)
                }
            };
            out.push(resp);
        }
        let Some(last) = last else {
            return Ok(out);
        };
        tx.put(keys::sm_last_applied(), &Some(last));
        tx.put(keys::sm_membership(), &membership);
        let heads = tx.journal_heads();
        let (batch, mut known) = tx.into_parts(likely_read);
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        if known.len() > KNOWN_KEYS {
            known.clear();
        }
        *self.lock_known() = known;
        let _ = self.applied.send(last.index);
        if !heads.is_empty() {
            let _ = self.journal.send(Arc::new(heads));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, MemberNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data = snapshot.into_inner();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = decode("snapshot", &data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let _gate = self.gate.write().await;
        self.lock_known().clear();
        let mut batch = crate::table::Batch::default();
        for kv in self.tree.iter() {
            let (k, _) =
                kv.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
            batch.remove(k);
        }
        for (k, v) in pairs {
            batch.insert(k, v);
        }
        batch.insert(keys::sm_last_applied(), encode(&meta.last_log_id));
        batch.insert(keys::sm_membership(), encode(&meta.last_membership));
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.db
            .flush()
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        if let Some(l) = meta.last_log_id {
            let _ = self.applied.send(l.index);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let v = match std::fs::read(&self.snapshot_path) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageIOError::read_snapshot(None, &e).into()),
        };
        let file: SnapshotFile =
            decode("snapshot", &v).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let (pairs, last, membership) = {
            let _gate = self.gate.read().await;
            let (last, membership) = self
                .read_applied()
                .map_err(|e| StorageIOError::read_state_machine(&e))?;
            let mut pairs = Vec::new();
            for kv in self.tree.iter() {
                let (k, v) = kv.map_err(|e| StorageIOError::read_state_machine(&e))?;
                if k.first() == Some(&keys::SM_META) {
                    continue;
                }
                pairs.push((k.to_vec(), v.to_vec()));
            }
            (pairs, last, membership)
        };
        let data = encode(&pairs);
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, rand_suffix()),
            None => format!("empty-{}", rand_suffix()),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id,
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(file.data)),
        })
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new
/// content, never a mix.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn rand_suffix() -> String {
    let n: u32 = rand_u32();
    format!("{n:08x}")
}

fn rand_u32() -> u32 {
    // Snapshot ids only need to differ between builds on one node.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id()
}

#[cfg(test)]
mod tests {
    use cluster_config::{DeviceId, UserId};
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::Entry;
    use crate::types::{Command, LogId, Request};

    fn segs(p: &str) -> Vec<String> {
        crate::DrivePath::parse(p).unwrap().segments().to_vec()
    }

    /// Accounts, folders made, moved, deleted and made again: each command
    /// reads what the ones before it wrote.
    fn commands() -> Vec<Command> {
        let (user, device) = (UserId([7; 16]), DeviceId([9; 16]));
        let folder = |p: &str, n: u8| Command::CreateFolder {
            user,
            path: segs(p),
            device,
            id_seed: [n; 16],
        };
        vec![
            Command::CreateUser {
                user,
                username: "alice".into(),
                password_hash: "$argon2id$x".into(),
                quota_bytes: 1 << 30,
                admin: false,
            },
            folder("/a/b", 1),
            folder("/a/b/c", 2),
            folder("/a/b", 3),
            Command::Move {
                user,
                from: segs("/a/b"),
                to: segs("/d"),
                device,
                id_seed: [4; 16],
            },
            folder("/d/c/e", 5),
            Command::Delete {
                user,
                path: segs("/d"),
                device,
            },
            folder("/d/c", 6),
            folder("/a/b", 7),
        ]
    }

    async fn run(forget: bool) -> (Vec<String>, Vec<(Vec<u8>, Vec<u8>)>) {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = super::super::open(dir.path()).await.unwrap();
        let mut out = Vec::new();
        for (i, cmd) in commands().into_iter().enumerate() {
            if forget {
                sm.lock_known().clear();
            }
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Request {
                    at_ms: 1_700_000_000_000 + i as u64,
                    cmd,
                }),
            };
            let resp = sm.apply([entry]).await.unwrap();
            out.push(format!("{resp:?}"));
        }
        let tree = sm.tree().iter().map(|kv| kv.unwrap()).collect();
        (out, tree)
    }

    #[tokio::test]
    async fn applies_that_remember_what_they_read_leave_the_same_tree() {
        let (remembered, tree) = run(false).await;
        let (fresh, fresh_tree) = run(true).await;
        assert_eq!(remembered, fresh);
        assert_eq!(tree, fresh_tree);
        // The sequence did what it says: one refusal (the folder existed).
        assert_eq!(
            remembered
                .iter()
                .filter(|r| r.contains("AlreadyExists"))
                .count(),
            1,
            "{remembered:#?}"
        );
    }
}
