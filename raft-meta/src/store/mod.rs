//! openraft storage: the log in a write-ahead log of segment files
//! (`wal`, `log`), and the state machine in an LSM table with its snapshot
//! in a file (`sm`). The log is what makes a write durable; the state
//! machine is flushed in the background and re-applied from the log after
//! a crash. `migrate` moves a directory of an earlier layout.

// openraft's `StorageError` is large; its trait signatures are not ours to change.
#![allow(clippy::result_large_err)]

mod log;
mod migrate;
mod sm;
pub mod wal;

use std::path::Path;

pub use log::LogStore;
pub use sm::StateMachineStore;

/// The journal event channel type.
pub mod sm_journal {
    pub use super::sm::JournalTx;
}

use crate::error::MetaError;

/// Block cache of the state machine's tables.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens (or creates) the metadata database under `dir`.
#[cfg(test)]
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), MetaError> {
    open_with(dir, &crate::MetaOptions::default()).await
}

/// `open` with the log's settings.
pub async fn open_with(
    dir: &Path,
    opts: &crate::MetaOptions,
) -> Result<(LogStore, StateMachineStore), MetaError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| MetaError::Storage(format!("{}: {e}", dir.display())))?;
    migrate::from_sled(dir, CACHE_BYTES).await?;
    let db = crate::table::Db::open(&dir.join("state"), CACHE_BYTES)
        .map_err(|e| MetaError::Storage(format!("opening {}: {e}", dir.display())))?;
    let log = LogStore::open(dir, db.clone(), opts).await?;
    let sm = StateMachineStore::new(db, dir)?;
    Ok((log, sm))
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod conformance {
    //! openraft's storage conformance suite, run against the sled store.

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::{LogStore, StateMachineStore};
    use crate::types::TypeConfig;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
            let dir = tempfile::tempdir().map_err(|e| {
                StorageError::from_io_error(
                    openraft::ErrorSubject::Store,
                    openraft::ErrorVerb::Write,
                    e,
                )
            })?;
            let (log, sm) = super::open(dir.path()).await.map_err(|e| {
                StorageError::from_io_error(
                    openraft::ErrorSubject::Store,
                    openraft::ErrorVerb::Write,
                    std::io::Error::other(e.to_string()),
                )
            })?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn store_passes_openraft_suite() -> Result<(), StorageError<u64>> {
        Suite::test_all(Builder)
    }
}
