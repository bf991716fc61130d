//! Queries on the local state machine. Every read returns committed data as
//! of this node's last apply; `MetaClient` decides when that is current
//! enough.

use cluster_config::{BlockId, DeviceId, EntryId, ShareId, UploadId, UserId};

use crate::error::MetaError;
use crate::keys;
use crate::kv::{self, KvRead, Resolved};
use crate::path::DrivePath;
use crate::records::{
    decode, BlockRecord, BootstrapRecord, ChangeRecord, DeviceRecord, EntryKind, EntryRecord,
    SessionRecord, ShareRecord, UploadRecord, UserRecord, UserSettings, VersionRecord,
};

#[derive(Clone)]
pub struct MetaReader {
    tree: crate::table::Table,
}

/// A block record found by a scan.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    /// Where the scan resumes.
    pub key: Vec<u8>,
    pub user: UserId,
    pub block: BlockId,
    pub record: BlockRecord,
}

/// Block reference counts against the references that exist
/// ([`MetaReader::reference_audit`]).
#[derive(Debug, Clone, Default)]
pub struct RefAudit {
    /// Block records read.
    pub blocks: u64,
    /// References found: version blocks, open uploads' chunks and tails.
    pub references: u64,
    /// Blocks whose count differs from their references.
    pub wrong: Vec<RefMismatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefMismatch {
    pub user: UserId,
    pub block: BlockId,
    /// The block record's count; `None`: referenced, but no record.
    pub recorded: Option<u64>,
    pub counted: u64,
}

/// One entry of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: EntryId,
    pub path: String,
    pub record: EntryRecord,
}

type R<T> = Result<T, MetaError>;

impl MetaReader {
    pub(crate) fn new(tree: crate::table::Table) -> Self {
        Self { tree }
    }

    /// A reader over a new, empty store in `dir` (for other crates' tests
    /// that need metadata without a Raft member).
    pub fn open_empty(dir: &std::path::Path) -> Result<Self, MetaError> {
        let db =
            crate::table::Db::open(dir, 8 << 20).map_err(|e| MetaError::Storage(e.to_string()))?;
        let tree = db
            .table("sm")
            .map_err(|e| MetaError::Storage(e.to_string()))?;
        Ok(Self::new(tree))
    }

    fn get<T: serde::de::DeserializeOwned>(&self, what: &'static str, key: &[u8]) -> R<Option<T>> {
        Ok(KvRead::get(&self.tree, what, key)?)
    }

    pub fn user(&self, id: &UserId) -> R<Option<UserRecord>> {
        self.get("user", &keys::user(id))
    }

    pub fn user_by_name(&self, name: &str) -> R<Option<(UserId, UserRecord)>> {
        let Some(name) = crate::normalize_username(name) else {
            return Ok(None);
        };
        let Some(raw) = KvRead::get_raw(&self.tree, &keys::username(&name))? else {
            return Ok(None);
        };
        let id =
            UserId::from_slice(&raw).ok_or_else(|| MetaError::Corrupt("username index".into()))?;
        Ok(self.user(&id)?.map(|u| (id, u)))
    }

    pub fn session(&self, user: &UserId, token_hash: &[u8; 32]) -> R<Option<SessionRecord>> {
        self.get("session", &keys::session(user, token_hash))
    }

    /// Every session of a user: its token hash and record.
    pub fn sessions(&self, user: &UserId) -> R<Vec<([u8; 32], SessionRecord)>> {
        let prefix = keys::sessions_of(user);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let Ok(hash) = <[u8; 32]>::try_from(&k[prefix.len()..]) else {
                return Err(MetaError::Corrupt("session key".into()));
            };
            out.push((hash, decode("session", &v)?));
        }
        Ok(out)
    }

    /// Whether the drive was set up, and by whom.
    pub fn bootstrap(&self) -> R<Option<BootstrapRecord>> {
        self.get("bootstrap", &keys::bootstrap())
    }

    pub fn user_settings(&self, user: &UserId) -> R<UserSettings> {
        Ok(self
            .get("user settings", &keys::user_settings(user))?
            .unwrap_or_default())
    }

    /// Accounts in id order after `after` (exclusive), at most `limit`.
    pub fn users_after(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> R<Vec<(UserId, UserRecord)>> {
        let start = match after {
            Some(u) => {
                let mut k = keys::user(u);
                k.push(0);
                k
            }
            None => keys::users(),
        };
        let mut out = Vec::new();
        for kv in self.tree.range_from(start) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            if k.first() != Some(&keys::USER) {
                break;
            }
            let id =
                UserId::from_slice(&k[1..]).ok_or_else(|| MetaError::Corrupt("user key".into()))?;
            out.push((id, decode("user", &v)?));
        }
        Ok(out)
    }

    /// Whether a share waits for its sharee to accept it.
    pub fn share_pending(&self, id: &ShareId) -> R<bool> {
        Ok(KvRead::get_raw(&self.tree, &keys::share_pending(id))?.is_some())
    }

    pub fn device(&self, user: &UserId, id: &DeviceId) -> R<Option<DeviceRecord>> {
        self.get("device", &keys::device(user, id))
    }

    pub fn resolve(&self, user: &UserId, path: &DrivePath) -> R<Resolved> {
        Ok(kv::resolve(&self.tree, user, path.segments())?)
    }

    /// The live entry at `path`, if any.
    pub fn live(&self, user: &UserId, path: &DrivePath) -> R<Option<(EntryId, EntryRecord)>> {
        Ok(match self.resolve(user, path)? {
            Resolved::Found(id, rec) if rec.live => Some((id, rec)),
            _ => None,
        })
    }

    pub fn entry(&self, user: &UserId, id: &EntryId) -> R<Option<EntryRecord>> {
        Ok(kv::entry(&self.tree, user, id)?)
    }

    pub fn entry_path(&self, user: &UserId, id: &EntryId) -> R<String> {
        Ok(kv::entry_path(&self.tree, user, id)?)
    }

    pub fn share(&self, id: &ShareId) -> R<Option<ShareRecord>> {
        self.get("share", &keys::share(id))
    }

    fn shares_under(&self, prefix: Vec<u8>) -> R<Vec<(ShareId, ShareRecord)>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let Some(id) = ShareId::from_slice(&k[prefix.len()..]) else {
                continue;
            };
            if let Some(rec) = self.share(&id)? {
                out.push((id, rec));
            }
        }
        Ok(out)
    }

    /// What `owner` shares with others.
    pub fn shares_out(&self, owner: &UserId) -> R<Vec<(ShareId, ShareRecord)>> {
        self.shares_under(keys::shares_out_of(owner))
    }

    /// What others share with `sharee`.
    pub fn shares_in(&self, sharee: &UserId) -> R<Vec<(ShareId, ShareRecord)>> {
        self.shares_under(keys::shares_in_of(sharee))
    }

    /// Live children of a folder (all descendants with `recursive`), in name
    /// order, at most `limit`.
    pub fn list(
        &self,
        user: &UserId,
        folder: &EntryId,
        folder_path: &str,
        recursive: bool,
        limit: usize,
    ) -> R<Vec<Listed>> {
        let mut out = Vec::new();
        let mut stack = vec![(*folder, folder_path.trim_end_matches('/').to_string())];
        while let Some((dir, dir_path)) = stack.pop() {
            let mut sub = Vec::new();
            for kv in self.tree.scan_prefix(keys::children_of(user, &dir)) {
                let (_, v) = kv?;
                let Some(id) = EntryId::from_slice(&v) else {
                    return Err(MetaError::Corrupt("child index".into()));
                };
                let Some(rec) = kv::entry(&self.tree, user, &id)? else {
                    return Err(MetaError::Corrupt("dangling child".into()));
                };
                if !rec.live {
                    continue;
                }
                let path = format!("{dir_path}/{}", rec.name);
                if recursive && rec.kind == EntryKind::Folder {
                    sub.push((id, path.clone()));
                }
                out.push(Listed {
                    id,
                    path,
                    record: rec,
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            // Visit subfolders in name order.
            stack.extend(sub.into_iter().rev());
        }
        Ok(out)
    }

    /// Versions of an entry, newest first.
    pub fn versions(
        &self,
        user: &UserId,
        entry: &EntryId,
        limit: usize,
    ) -> R<Vec<(u64, VersionRecord)>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(keys::versions_of(user, entry)).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            let mut n = [0u8; 8];
            n.copy_from_slice(&k[k.len() - 8..]);
            out.push((
                u64::from_be_bytes(n),
                decode("version", &v).map_err(|e| MetaError::Corrupt(e.to_string()))?,
            ));
        }
        Ok(out)
    }

    pub fn version(
        &self,
        user: &UserId,
        entry: &EntryId,
        version: u64,
    ) -> R<Option<VersionRecord>> {
        self.get("version", &keys::version(user, entry, version))
    }

    pub fn block(&self, user: &UserId, id: &BlockId) -> R<Option<BlockRecord>> {
        self.get("block", &keys::block(user, id))
    }

    pub fn upload(&self, user: &UserId, id: &UploadId) -> R<Option<UploadRecord>> {
        self.get("upload", &keys::upload(user, id))
    }

    /// Upload sessions of `user` still open at `now_ms` (unfinished and not
    /// expired).
    pub fn uploads_of(&self, user: &UserId, now_ms: u64) -> R<usize> {
        let mut n = 0;
        for kv in self.tree.scan_prefix(keys::uploads_of(user)) {
            let (_, v) = kv?;
            let rec: UploadRecord = decode("upload", &v)?;
            if rec.finished.is_none() && rec.expires_ms > now_ms {
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn layout(&self) -> R<Option<crate::records::LayoutRecord>> {
        self.get("layout", &keys::layout())
    }

    /// Block records in key order after `after` (exclusive), at most
    /// `limit`: the repair scan pages through every block of every user.
    pub fn blocks_after(&self, after: Option<&[u8]>, limit: usize) -> R<Vec<BlockEntry>> {
        let start = match after {
            Some(k) => {
                let mut k = k.to_vec();
                k.push(0);
                k
            }
            None => vec![keys::BLOCK],
        };
        let mut out = Vec::new();
        for kv in self.tree.range_from(start) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            if k.first() != Some(&keys::BLOCK) {
                break;
            }
            if k.len() != 1 + 16 + 32 {
                return Err(MetaError::Corrupt("block key".into()));
            }
            let user = UserId::from_slice(&k[1..17])
                .ok_or_else(|| MetaError::Corrupt("block key".into()))?;
            let block = BlockId::from_slice(&k[17..])
                .ok_or_else(|| MetaError::Corrupt("block key".into()))?;
            let record = decode("block", &v).map_err(|e| MetaError::Corrupt(e.to_string()))?;
            out.push(BlockEntry {
                key: k.to_vec(),
                user,
                block,
                record,
            });
        }
        Ok(out)
    }

    /// Counts every reference to every block (each version's blocks, each
    /// open upload's finished chunks and tail) and compares the counts
    /// with the block records: a scan of the whole store, for audits and
    /// tests, never for a request.
    pub fn reference_audit(&self) -> R<RefAudit> {
        use std::collections::BTreeMap;
        let mut counted: BTreeMap<(UserId, BlockId), u64> = BTreeMap::new();
        let mut audit = RefAudit::default();
        let mut add = |user: UserId, blocks: &[crate::records::BlockRef]| {
            for b in blocks {
                *counted.entry((user, b.id)).or_default() += 1;
            }
        };
        self.each_of_users(keys::VERSION, "version", |user, v: VersionRecord| {
            add(user, &v.blocks)
        })?;
        self.each_of_users(keys::UPLOAD_CHUNK, "upload chunk", |user, b| {
            add(user, std::slice::from_ref(&b))
        })?;
        self.each_of_users(keys::UPLOAD, "upload", |user, u: UploadRecord| {
            add(user, &u.tail)
        })?;
        audit.references = counted.values().sum();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.blocks_after(after.as_deref(), 1024)?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for b in page {
                audit.blocks += 1;
                let n = counted.remove(&(b.user, b.block)).unwrap_or(0);
                if n != b.record.refs {
                    audit.wrong.push(RefMismatch {
                        user: b.user,
                        block: b.block,
                        recorded: Some(b.record.refs),
                        counted: n,
                    });
                }
            }
        }
        audit
            .wrong
            .extend(counted.into_iter().map(|((user, block), n)| RefMismatch {
                user,
                block,
                recorded: None,
                counted: n,
            }));
        Ok(audit)
    }

    /// Every record of table `prefix` (keys `prefix ++ user ++ ...`),
    /// decoded, with the user its key names.
    fn each_of_users<T: serde::de::DeserializeOwned>(
        &self,
        prefix: u8,
        what: &'static str,
        mut f: impl FnMut(UserId, T),
    ) -> R<()> {
        for kv in self.tree.scan_prefix(vec![prefix]) {
            let (k, v) = kv?;
            let user = k
                .get(1..17)
                .and_then(UserId::from_slice)
                .ok_or_else(|| MetaError::Corrupt(format!("{what} key")))?;
            f(user, decode(what, &v)?);
        }
        Ok(())
    }

    /// Paths of `user`'s files with a version that uses one of `blocks`,
    /// at most `limit` (a scan of the user's versions: for reports on
    /// damaged blocks, not for hot paths).
    pub fn files_using(
        &self,
        user: &UserId,
        blocks: &std::collections::HashSet<BlockId>,
        limit: usize,
    ) -> R<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let prefix = keys::versions_of_user(user);
        for kv in self.tree.scan_prefix(&prefix) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            let v: VersionRecord = decode("version", &v)?;
            if !v.blocks.iter().any(|b| blocks.contains(&b.id)) {
                continue;
            }
            let Some(entry) = k
                .get(prefix.len()..prefix.len() + 16)
                .and_then(EntryId::from_slice)
            else {
                continue;
            };
            let path = self.entry_path(user, &entry)?;
            if !out.contains(&path) {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// Journal lines with `seq >= from`, at most `limit`.
    pub fn journal(&self, user: &UserId, from: u64, limit: usize) -> R<Vec<(u64, ChangeRecord)>> {
        let mut out = Vec::new();
        let prefix = keys::journal_of(user);
        for kv in self.tree.range_from(keys::journal(user, from)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&k[k.len() - 8..]);
            out.push((
                u64::from_be_bytes(n),
                decode("journal", &v).map_err(|e| MetaError::Corrupt(e.to_string()))?,
            ));
        }
        Ok(out)
    }
}
