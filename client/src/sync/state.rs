//! The agent's memory of what was last in sync (the merge base): for each
//! relative path, what the file was on disk and which server version it
//! matched; and the change-journal cursor. Kept in sled under
//! `DIR/.strata-sync/`, so a restart resumes without re-uploading.

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

pub struct State {
    db: sled::Db,
    files: sled::Tree,
    meta: sled::Tree,
}

fn db_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!("sync state: {e}"))
}

impl State {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(db_err)?;
        let files = db.open_tree("files").map_err(db_err)?;
        let meta = db.open_tree("meta").map_err(db_err)?;
        Ok(Self { db, files, meta })
    }

    pub fn get(&self, path: &str) -> Result<Option<Synced>> {
        match self.files.get(path).map_err(db_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(db_err)?)),
            None => Ok(None),
        }
    }

    pub fn put(&self, path: &str, s: &Synced) -> Result<()> {
        let v = serde_json::to_vec(s).map_err(db_err)?;
        self.files.insert(path, v).map_err(db_err)?;
        Ok(())
    }

    pub fn remove(&self, path: &str) -> Result<()> {
        self.files.remove(path).map_err(db_err)?;
        Ok(())
    }

    /// Every known path, streamed from disk.
    pub fn paths(&self) -> impl Iterator<Item = Result<(String, Synced)>> + '_ {
        self.files.iter().map(|kv| {
            let (k, v) = kv.map_err(db_err)?;
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
        for kv in self.files.scan_prefix(under.as_bytes()) {
            let (k, v) = kv.map_err(db_err)?;
            out.push((
                String::from_utf8(k.to_vec()).map_err(db_err)?,
                serde_json::from_slice(&v).map_err(db_err)?,
            ));
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn cursor(&self) -> Result<Option<String>> {
        Ok(self
            .meta
            .get("cursor")
            .map_err(db_err)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_cursor(&self, c: &str) -> Result<()> {
        self.meta.insert("cursor", c.as_bytes()).map_err(db_err)?;
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(db_err)?;
        Ok(())
    }
}
