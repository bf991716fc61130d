//! The ordered key-value tables the state machine lives in (an LSM tree,
//! fjall), behind the few operations the metadata needs.
//!
//! Writes go to the engine's journal without a sync: the Raft log is what
//! makes a write durable, and after a crash the tables hold a consistent
//! prefix of the applied batches (each batch is atomic), from which the
//! log is re-applied. `Db::flush` syncs, before log entries are purged.

use std::path::Path;

/// The storage engine failed.
#[derive(Debug, thiserror::Error)]
#[error("metadata storage: {0}")]
pub struct DbError(String);

impl From<fjall::Error> for DbError {
    fn from(e: fjall::Error) -> Self {
        DbError(e.to_string())
    }
}

pub type Pair = (Vec<u8>, Vec<u8>);

/// The database holding the state machine's tables.
#[derive(Clone)]
pub struct Db {
    db: fjall::Database,
}

/// One table: keys in byte order.
#[derive(Clone)]
pub struct Table {
    ks: fjall::Keyspace,
    db: fjall::Database,
}

/// Writes applied together, atomically.
#[derive(Default)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl Db {
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, DbError> {
        let db = fjall::Database::builder(path)
            .cache_size(cache_bytes)
            .manual_journal_persist(true)
            .open()?;
        Ok(Self { db })
    }

    /// The table `name`, created if missing.
    pub fn table(&self, name: &str) -> Result<Table, DbError> {
        let ks = self
            .db
            .keyspace(name, fjall::KeyspaceCreateOptions::default)?;
        Ok(Table {
            ks,
            db: self.db.clone(),
        })
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), DbError> {
        self.db.persist(fjall::PersistMode::SyncData)?;
        Ok(())
    }
}

fn pair(g: fjall::Guard) -> Result<Pair, DbError> {
    let (k, v) = g.into_inner()?;
    Ok((k.to_vec(), v.to_vec()))
}

impl Table {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.ks.get(key)?.map(|v| v.to_vec()))
    }

    /// Every key under `prefix`, in order (both ways).
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl DoubleEndedIterator<Item = Result<Pair, DbError>> {
        self.ks.prefix(prefix).map(pair)
    }

    /// Every key from `start` on, in order.
    pub fn range_from(
        &self,
        start: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<Pair, DbError>> {
        let start = start.as_ref().to_vec();
        self.ks.range(start..).map(pair)
    }

    /// Every key, in order, as of one moment.
    pub fn iter(&self) -> impl Iterator<Item = Result<Pair, DbError>> {
        self.ks.iter().map(pair)
    }

    pub fn apply_batch(&self, batch: Batch) -> Result<(), DbError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut b = self.db.batch();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(&self.ks, k, v),
                None => b.remove(&self.ks, k),
            }
        }
        b.commit()?;
        Ok(())
    }
}
