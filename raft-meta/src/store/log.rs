//! The Raft log on sled. An append writes its entries and hands the
//! completion to a flusher task; openraft learns the entries are durable
//! only when the flusher's next `fsync` has covered them. While one flush
//! runs, further appends queue behind it, and the next flush completes all
//! of them at once: group commit, without blocking the Raft core on a disk
//! flush per entry.

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use super::io_err;
use crate::error::MetaError;
use crate::records::{decode, encode};
use crate::types::{LogId, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;
type StoreResult<T> = Result<T, StorageError<u64>>;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: tokio::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
}

/// Completions waiting for the next flush, at most this many queued.
const FLUSH_QUEUE: usize = 4096;

/// Flushes the database once for every group of appends that queued up
/// while the previous flush ran, then completes them in order.
async fn run_flusher(db: sled::Db, mut rx: tokio::sync::mpsc::Receiver<LogFlushed<TypeConfig>>) {
    let mut group = Vec::new();
    while let Some(first) = rx.recv().await {
        group.push(first);
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = db.flush_async().await.map(|_| ());
        for cb in group.drain(..) {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io_err(e)),
            };
            cb.log_io_completed(r);
        }
    }
}

impl LogStore {
    pub(super) fn new(db: sled::Db) -> Result<Self, MetaError> {
        let log = db.open_tree("raft_log").map_err(MetaError::from_sled)?;
        let meta = db.open_tree("raft_meta").map_err(MetaError::from_sled)?;
        let (flusher, rx) = tokio::sync::mpsc::channel(FLUSH_QUEUE);
        tokio::spawn(run_flusher(db.clone(), rx));
        Ok(Self {
            db,
            log,
            meta,
            flusher,
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, std::io::Error> {
        match self.meta.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(decode("raft meta", &v).map_err(io_err)?)),
            None => Ok(None),
        }
    }

    fn last_purged(&self) -> StoreResult<Option<LogId>> {
        self.get_meta(LAST_PURGED)
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for kv in self.log.range(index_key(start)..) {
            let (k, v) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
            let mut idx = [0u8; 8];
            idx.copy_from_slice(&k);
            if !range.contains(&u64::from_be_bytes(idx)) {
                break;
            }
            let entry: Entry =
                decode("log entry", &v).map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.last_purged()?;
        let last = match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((_, v)) => {
                let e: Entry =
                    decode("log entry", &v).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(e.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StoreResult<()> {
        self.meta
            .insert(VOTE, encode(vote))
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.db
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<u64>>> {
        self.get_meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> StoreResult<()> {
        // Not flushed: a lost update only means re-deciding the commit point.
        self.meta
            .insert(COMMITTED, encode(&committed))
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId>> {
        Ok(self
            .get_meta::<Option<LogId>>(COMMITTED)
            .map_err(|e| StorageIOError::read(&e))?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&index_key(e.log_id.index), encode(&e));
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // Durable once the flusher's next flush returns.
        if let Err(tokio::sync::mpsc::error::SendError(cb)) = self.flusher.send(callback).await {
            cb.log_io_completed(Err(io_err("log flusher stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(index_key(log_id.index)..) {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.db
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> StoreResult<()> {
        // The state machine is flushed lazily; make everything applied so far
        // durable before the log entries that could replay it disappear.
        self.db
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.meta
            .insert(LAST_PURGED, encode(&log_id))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let mut batch = sled::Batch::default();
        for kv in self.log.range(..=index_key(log_id.index)) {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
