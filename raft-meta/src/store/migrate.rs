//! Moving a metadata directory written by earlier versions (everything in
//! one sled database under `sled/`) to the current layout: the state
//! machine tables under `state/`, the Raft log under `raft-log/`, the
//! snapshot in `snapshot`.
//!
//! Each part is built under a temporary name, made durable and renamed
//! into place, so a crash at any point leaves either the old part (done
//! again at the next start) or the new one. The sled directory is removed
//! once both parts are in place.

use std::path::Path;

use openraft::Vote;

use super::wal::{Entry, Wal};
use crate::error::MetaError;
use crate::records::decode;
use crate::table::{Batch, Db};
use crate::types::LogId;

/// Pairs copied per batch.
const COPY_BATCH: usize = 10_000;

fn storage(what: &str, e: impl std::fmt::Display) -> MetaError {
    MetaError::Storage(format!("{what}: {e}"))
}

fn sync_dir(dir: &Path) -> Result<(), MetaError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| storage("syncing the metadata directory", e))
}

/// Migrates `dir` if it still has the earlier layout; a no-op otherwise.
pub(super) async fn from_sled(dir: &Path, cache_bytes: u64) -> Result<(), MetaError> {
    let legacy = dir.join("sled");
    if !legacy.exists() {
        return Ok(());
    }
    let old = sled::Config::new()
        .path(&legacy)
        .open()
        .map_err(MetaError::from_sled)?;
    let state = dir.join("state");
    if !state.exists() {
        let tmp = dir.join("state.import");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| storage("state.import", e))?;
        }
        let copied = {
            let db = Db::open(&tmp, cache_bytes)?;
            let table = db.table("sm")?;
            let tree = old.open_tree("sm").map_err(MetaError::from_sled)?;
            let mut batch = Batch::default();
            let mut copied = 0u64;
            for kv in tree.iter() {
                let (k, v) = kv.map_err(MetaError::from_sled)?;
                batch.insert(k.to_vec(), v.to_vec());
                copied += 1;
                if batch.len() >= COPY_BATCH {
                    table.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            table.apply_batch(batch)?;
            let snapshots = old.open_tree("snapshots").map_err(MetaError::from_sled)?;
            if let Some(s) = snapshots.get(b"current").map_err(MetaError::from_sled)? {
                super::sm::write_durably(&dir.join("snapshot"), &s)
                    .map_err(|e| storage("snapshot", e))?;
            }
            db.flush()?;
            copied
        };
        std::fs::rename(&tmp, &state).map_err(|e| storage("state", e))?;
        sync_dir(dir)?;
        tracing::info!(records = copied, "state machine moved from sled");
    }
    let wal_dir = dir.join("raft-log");
    if !wal_dir.exists() {
        let log = old.open_tree("raft_log").map_err(MetaError::from_sled)?;
        let meta = old.open_tree("raft_meta").map_err(MetaError::from_sled)?;
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
        if vote.is_some() || !entries.is_empty() || purged.is_some() {
            let tmp = dir.join("raft-log.import");
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(|e| storage("raft-log.import", e))?;
            }
            let n = entries.len();
            {
                let wal = Wal::open(&tmp)?.wal;
                wal.import(vote, committed, purged, entries).await?;
            }
            std::fs::rename(&tmp, &wal_dir).map_err(|e| storage("raft-log", e))?;
            sync_dir(dir)?;
            tracing::info!(entries = n, "raft log moved from sled");
        }
    }
    drop(old);
    std::fs::remove_dir_all(&legacy).map_err(|e| storage("removing sled", e))?;
    sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::encode;
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[tokio::test]
    async fn a_directory_of_the_sled_layout_is_moved_whole_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The layout earlier versions wrote.
            let db = sled::Config::new()
                .path(dir.path().join("sled"))
                .open()
                .unwrap();
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
            let sm = db.open_tree("sm").unwrap();
            for i in 0..25_000u32 {
                sm.insert(i.to_be_bytes(), encode(&i)).unwrap();
            }
            sm.insert(
                crate::keys::sm_last_applied(),
                encode(&Some(entry(7).log_id)),
            )
            .unwrap();
            db.flush().unwrap();
        }
        // A crash during an earlier attempt left half a state machine.
        std::fs::create_dir_all(dir.path().join("state.import")).unwrap();

        let (mut log, mut sm) = super::super::open(dir.path()).await.unwrap();
        assert!(!dir.path().join("sled").exists());
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        assert_eq!(log.read_committed().await.unwrap(), Some(entry(8).log_id));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(4).log_id));
        assert_eq!(state.last_log_id, Some(entry(9).log_id));
        let got: Vec<u64> = log
            .try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(got, vec![5, 6, 7, 8, 9]);
        assert_eq!(sm.applied_state().await.unwrap().0, Some(entry(7).log_id));
        let tree = sm.tree();
        for i in [0u32, 9_999, 10_000, 24_999] {
            let v = tree.get(&i.to_be_bytes()).unwrap().unwrap();
            assert_eq!(decode::<u32>("n", &v).unwrap(), i);
        }
        drop((log, sm, tree));
        // Opening again reads the new layout; nothing is moved twice.
        let (mut log, _sm) = super::super::open(dir.path()).await.unwrap();
        assert_eq!(log.try_get_log_entries(0..).await.unwrap().len(), 5);
    }
}
