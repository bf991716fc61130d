//! The agent's memory of what was last in sync (the merge base): for each
//! relative path, what the file was on disk and which server version it
//! matched; and the change-journal cursor. Kept in an embedded LSM store
//! (fjall) under `DIR/.strata-sync/db`, so a restart resumes without
//! re-uploading. A state kept by earlier versions in sled
//! (`DIR/.strata-sync/state`) is copied over once, then removed.

use std::path::Path;

use serde::{Deserialize, Serialize};
use strata_api::BlockEntry;

use crate::{ClientError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Folder,
}

/// A path as it was when both sides agreed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    pub kind: Kind,
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
    pub hash: String,
    pub version: u64,
    /// The server's block list of that version (delta bases for uploads).
    pub blocks: Vec<BlockEntry>,
}

impl Synced {
    /// A base for a file never synced: an upload against it is a new
    /// version that conflicts with whatever the drive has.
    pub fn nothing_synced() -> Self {
        Synced {
            kind: Kind::File,
            size: 0,
            mtime_ns: 0,
            ino: 0,
            hash: String::new(),
            version: 0,
            blocks: Vec::new(),
        }
    }
}

pub struct State {
    db: fjall::Database,
    files: fjall::Keyspace,
    meta: fjall::Keyspace,
}

fn db_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!("sync state: {e}"))
}

impl State {
    /// Opens the state under `meta_dir` (the agent's `.strata-sync`).
    pub fn open(meta_dir: &Path) -> Result<Self> {
        let path = meta_dir.join("db");
        let legacy = meta_dir.join("state");
        let fresh = !path.exists();
        let db = fjall::Database::builder(&path)
            .cache_size(16 * 1024 * 1024)
            .open()
            .map_err(db_err)?;
        let files = db
            .keyspace("files", fjall::KeyspaceCreateOptions::default)
            .map_err(db_err)?;
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .map_err(db_err)?;
        let state = Self { db, files, meta };
        if legacy.exists() {
            if fresh || state.is_empty() {
                state.import(&legacy)?;
            }
            std::fs::remove_dir_all(&legacy).map_err(db_err)?;
        }
        Ok(state)
    }

    /// Copies a state kept by earlier versions (sled), durably.
    fn import(&self, legacy: &Path) -> Result<()> {
        let old = sled::Config::new().path(legacy).open().map_err(db_err)?;
        for (name, to) in [("files", &self.files), ("meta", &self.meta)] {
            let tree = old.open_tree(name).map_err(db_err)?;
            let mut batch = self.db.batch();
            for kv in tree.iter() {
                let (k, v) = kv.map_err(db_err)?;
                batch.insert(to, k.to_vec(), v.to_vec());
            }
            batch.commit().map_err(db_err)?;
        }
        self.flush()
    }

    pub fn get(&self, path: &str) -> Result<Option<Synced>> {
        match self.files.get(path.as_bytes()).map_err(db_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(db_err)?)),
            None => Ok(None),
        }
    }

    pub fn put(&self, path: &str, s: &Synced) -> Result<()> {
        let v = serde_json::to_vec(s).map_err(db_err)?;
        self.files.insert(path.as_bytes(), v).map_err(db_err)?;
        Ok(())
    }

    pub fn remove(&self, path: &str) -> Result<()> {
        self.files.remove(path.as_bytes()).map_err(db_err)?;
        Ok(())
    }

    /// Every known path, streamed from disk.
    pub fn paths(&self) -> impl Iterator<Item = Result<(String, Synced)>> + '_ {
        self.files.iter().map(|kv| {
            let (k, v) = kv.into_inner().map_err(db_err)?;
            let path = String::from_utf8(k.to_vec()).map_err(db_err)?;
            Ok((path, serde_json::from_slice(&v).map_err(db_err)?))
        })
    }

    /// Paths at or under `prefix` (a folder and its contents).
    pub fn subtree(&self, prefix: &str) -> Result<Vec<(String, Synced)>> {
        let mut out = Vec::new();
        if let Some(s) = self.get(prefix)? {
            out.push((prefix.to_string(), s));
        }
        let under = format!("{prefix}/");
        for kv in self.files.prefix(under.as_bytes()) {
            let (k, v) = kv.into_inner().map_err(db_err)?;
            out.push((
                String::from_utf8(k.to_vec()).map_err(db_err)?,
                serde_json::from_slice(&v).map_err(db_err)?,
            ));
        }
        Ok(out)
    }

    /// How many paths are known (counts them: for status, not hot paths).
    pub fn len(&self) -> usize {
        self.files.len().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty().unwrap_or(true) && self.meta.is_empty().unwrap_or(true)
    }

    pub fn cursor(&self) -> Result<Option<String>> {
        Ok(self
            .meta
            .get(b"cursor")
            .map_err(db_err)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_cursor(&self, c: &str) -> Result<()> {
        self.meta
            .insert(&b"cursor"[..], c.as_bytes())
            .map_err(db_err)?;
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced(v: u64) -> Synced {
        Synced {
            kind: Kind::File,
            size: v,
            mtime_ns: 1,
            ino: 2,
            hash: "h".into(),
            version: v,
            blocks: Vec::new(),
        }
    }

    #[test]
    fn a_state_kept_in_sled_is_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        let meta_dir = dir.path().join(".strata-sync");
        {
            let old = sled::Config::new()
                .path(meta_dir.join("state"))
                .open()
                .unwrap();
            let files = old.open_tree("files").unwrap();
            for i in 0..50u64 {
                files
                    .insert(format!("a/{i}"), serde_json::to_vec(&synced(i)).unwrap())
                    .unwrap();
            }
            old.open_tree("meta")
                .unwrap()
                .insert("cursor", &b"c-42"[..])
                .unwrap();
            old.flush().unwrap();
        }
        let state = State::open(&meta_dir).unwrap();
        assert!(!meta_dir.join("state").exists());
        assert_eq!(state.len(), 50);
        assert_eq!(state.get("a/7").unwrap(), Some(synced(7)));
        assert_eq!(state.cursor().unwrap().as_deref(), Some("c-42"));
        assert_eq!(state.subtree("a").unwrap().len(), 50);
        state.put("b", &synced(1)).unwrap();
        state.remove("a/0").unwrap();
        state.flush().unwrap();
        drop(state);
        let state = State::open(&meta_dir).unwrap();
        assert_eq!(state.len(), 50);
        assert!(state.get("a/0").unwrap().is_none());
        assert_eq!(state.paths().count(), 50);
    }
}
