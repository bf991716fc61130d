//! openraft's log storage over the write-ahead log (`wal.rs`).
//!
//! An append is written at once and reported durable to openraft by the
//! WAL's flusher thread after its `fdatasync`; the vote, truncations and
//! purges are durable before they return. The state machine lives in sled
//! and is flushed before log entries that could replay it are purged.
//!
//! Earlier versions kept the log in sled trees (`raft_log`, `raft_meta`);
//! such a log is imported into the WAL once, at open.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use super::io_err;
use super::wal::{Entry, Wal, WalError};
use crate::error::MetaError;
use crate::records::decode;
use crate::types::{LogId, TypeConfig};

type StoreResult<T> = Result<T, StorageError<u64>>;

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    wal: Wal,
}

impl From<WalError> for MetaError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Corrupt { .. } => MetaError::Corrupt(e.to_string()),
            other => MetaError::Storage(other.to_string()),
        }
    }
}

impl LogStore {
    /// Opens the log under `dir/raft-log`; `db` holds the state machine.
    pub(super) async fn open(dir: &Path, db: sled::Db) -> Result<Self, MetaError> {
        let opened = Wal::open(&dir.join("raft-log"))?;
        let store = Self {
            db,
            wal: opened.wal,
        };
        store.import_from_sled(opened.fresh).await?;
        Ok(store)
    }

    /// Moves a log kept in sled by an earlier version into the WAL, then
    /// empties the sled trees (the WAL is durable first).
    async fn import_from_sled(&self, fresh: bool) -> Result<(), MetaError> {
        let names = self.db.tree_names();
        let has = |n: &str| names.iter().any(|t| t.as_ref() == n.as_bytes());
        if !has("raft_log") && !has("raft_meta") {
            return Ok(());
        }
        let log = self
            .db
            .open_tree("raft_log")
            .map_err(MetaError::from_sled)?;
        let meta = self
            .db
            .open_tree("raft_meta")
            .map_err(MetaError::from_sled)?;
        if log.is_empty() && meta.is_empty() {
            return Ok(());
        }
        if fresh && self.wal.is_empty() {
            let get = |k: &[u8]| -> Result<Option<sled::IVec>, MetaError> {
                meta.get(k).map_err(MetaError::from_sled)
            };
            let vote: Option<Vote<u64>> = match get(b"vote")? {
                Some(v) => Some(decode("raft vote", &v)?),
                None => None,
            };
            let committed: Option<LogId> = match get(b"committed")? {
                Some(v) => decode::<Option<LogId>>("raft committed", &v)?,
                None => None,
            };
            let purged: Option<LogId> = match get(b"last_purged")? {
                Some(v) => Some(decode("raft purge point", &v)?),
                None => None,
            };
            let mut entries = Vec::new();
            for kv in log.iter() {
                let (_, v) = kv.map_err(MetaError::from_sled)?;
                let e: Entry = decode("log entry", &v)?;
                if purged.is_some_and(|p| e.log_id.index <= p.index) {
                    continue;
                }
                entries.push(e);
            }
            let n = entries.len();
            self.wal.import(vote, committed, purged, entries).await?;
            tracing::info!(
                entries = n,
                "raft log moved from sled into the write-ahead log"
            );
        }
        log.clear().map_err(MetaError::from_sled)?;
        meta.clear().map_err(MetaError::from_sled)?;
        self.db.flush_async().await.map_err(MetaError::from_sled)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        self.wal
            .read(start, end)
            .map_err(|e| StorageIOError::read_logs(&io_err(e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let (last_purged_log_id, last_log_id) = self.wal.log_state();
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StoreResult<()> {
        self.wal
            .save_vote(vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&io_err(e)).into())
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<u64>>> {
        Ok(self.wal.vote())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> StoreResult<()> {
        // Written with the next append: a lost update only means
        // re-learning the commit point from the leader.
        self.wal.set_committed(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId>> {
        Ok(self.wal.committed())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.wal
            .append(entries, move |r| callback.log_io_completed(r))
            .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> StoreResult<()> {
        self.wal
            .truncate(log_id.index)
            .await
            .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> StoreResult<()> {
        // The state machine is flushed lazily; make everything applied so far
        // durable before the log entries that could replay it disappear.
        self.db
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.wal
            .purge(log_id)
            .await
            .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::encode;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[tokio::test]
    async fn a_log_kept_in_sled_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .open()
            .unwrap();
        {
            // The layout earlier versions wrote.
            let log = db.open_tree("raft_log").unwrap();
            let meta = db.open_tree("raft_meta").unwrap();
            for i in 3..=9u64 {
                log.insert(i.to_be_bytes(), encode(&entry(i))).unwrap();
            }
            meta.insert("vote", encode(&Vote::<u64>::new(2, 1)))
                .unwrap();
            meta.insert("committed", encode(&Some(entry(8).log_id)))
                .unwrap();
            meta.insert("last_purged", encode(&entry(4).log_id))
                .unwrap();
            db.flush().unwrap();
        }
        let mut store = LogStore::open(dir.path(), db.clone()).await.unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        assert_eq!(store.read_committed().await.unwrap(), Some(entry(8).log_id));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(4).log_id));
        assert_eq!(state.last_log_id, Some(entry(9).log_id));
        let got: Vec<u64> = store
            .try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(got, vec![5, 6, 7, 8, 9]);
        assert!(db.open_tree("raft_log").unwrap().is_empty());
        drop(store);
        // Opening again reads the WAL; nothing is imported twice.
        let mut store = LogStore::open(dir.path(), db).await.unwrap();
        assert_eq!(store.try_get_log_entries(0..).await.unwrap().len(), 5);
    }
}
