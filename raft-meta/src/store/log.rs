//! openraft's log storage over the write-ahead log (`wal.rs`).
//!
//! On a follower (entries made by another leader) an append is reported
//! to openraft once it is durable, and its `fdatasync` runs in the append
//! itself when no other flush is pending, since the follower answers the
//! leader only then.
//!
//! The leader's own appends are reported as soon as they are written, and
//! their `fdatasync` runs on the flusher meanwhile. openraft 0.9 waits for
//! that report before it hands the entries to replication, so reporting
//! at durability would put the leader's `fdatasync` and the followers'
//! one after the other on every commit's path; this way they overlap, as
//! the Raft paper allows (§10.2.1). openraft then counts the leader in
//! the commit quorum before its copy is durable, so nothing may act on a
//! commit before that copy is: the state machine applies an entry only
//! once this log's watermark covers it (`sm.rs`), and the leader tells
//! followers a commit index only once it covers it (`network.rs`). Every
//! entry that is applied anywhere, or acknowledged to a client, is then
//! durable on a majority. A crash that loses the leader's unflushed tail
//! loses only entries that were never applied or acknowledged; a new
//! leader may replace them.
//!
//! The vote, truncations and purges are durable before they return. The
//! state machine lives in fjall and is flushed before log entries that
//! could replay it are purged.
//!

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use super::io_err;
use super::wal::{Durability, Entry, FlushBy, Wal, WalError};
use crate::error::MetaError;
use crate::types::{LogId, TypeConfig};

type StoreResult<T> = Result<T, StorageError<u64>>;

#[derive(Clone)]
pub struct LogStore {
    db: crate::table::Db,
    wal: Wal,
    /// This member's id, once known: entries whose leader is another
    /// member arrive as a follower's appends.
    me: Option<u64>,
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
    pub(super) async fn open(
        dir: &Path,
        db: crate::table::Db,
        opts: &crate::MetaOptions,
    ) -> Result<Self, MetaError> {
        let opened = Wal::open_with(&dir.join("raft-log"), opts.wal_segment_bytes)?;
        let wal = if opts.wal_flush_inline {
            opened.wal.flush_inline()
        } else {
            opened.wal
        };
        Ok(Self { db, wal, me: None })
    }

    /// Tells the store which member it belongs to.
    pub fn for_member(mut self, id: u64) -> Self {
        self.me = Some(id);
        self
    }

    /// How far the log is durable.
    pub fn durability(&self) -> Durability {
        self.wal.durability()
    }

    /// Whether `entries` are new ones this member makes as the leader of
    /// the term it holds a committed vote for.
    fn leading(&self, entries: &[Entry]) -> bool {
        let (Some(me), Some(vote)) = (self.me, self.wal.vote()) else {
            return false;
        };
        vote.is_committed()
            && vote.leader_id().voted_for() == Some(me)
            && !entries.is_empty()
            && entries
                .iter()
                .all(|e| e.log_id.leader_id == *vote.leader_id())
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        if self.leading(&entries) {
            // Written now, durable when the flusher's next fdatasync
            // returns; the watermark tells who must wait for that.
            self.wal
                .append(entries, FlushBy::Flusher, |_| {})
                .map_err(|e| StorageIOError::write_logs(&io_err(e)))?;
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let done = move |r| callback.log_io_completed(r);
        let from_another_leader = self.me.is_some_and(|me| {
            !entries.is_empty() && entries.iter().all(|e| e.log_id.leader_id.node_id != me)
        });
        let by = if from_another_leader {
            FlushBy::ThisThreadIfIdle
        } else {
            FlushBy::Flusher
        };
        self.wal
            .append(entries, by, done)
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
            .flush()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.wal
            .purge(log_id)
            .await
            .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
    }
}
