//! Read access shared by the state machine (through its write set) and the
//! query side (directly on the tree), so path resolution is written once.

use cluster_config::{EntryId, UserId};
use serde::de::DeserializeOwned;

use crate::keys;
use crate::records::{decode, EntryKind, EntryRecord};
use crate::state_machine::tx::{Fatal, Tx};

pub trait KvRead {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fatal>;

    fn get<T: DeserializeOwned>(&self, what: &'static str, key: &[u8]) -> Result<Option<T>, Fatal> {
        match self.get_raw(key)? {
            Some(b) => Ok(Some(decode(what, &b)?)),
            None => Ok(None),
        }
    }
}

impl KvRead for Tx<'_> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fatal> {
        Tx::get_raw(self, key)
    }
}

impl KvRead for crate::table::Table {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fatal> {
        Ok(self.get(key)?)
    }
}

/// The implicit root folder.
pub fn root_record() -> EntryRecord {
    EntryRecord {
        parent: EntryId::ROOT,
        name: String::new(),
        kind: EntryKind::Folder,
        live: true,
        head: 0,
        size: 0,
        content_hash: [0; 32],
        modified_ms: 0,
        modified_by: Default::default(),
        created_ms: 0,
    }
}

pub fn entry<R: KvRead>(r: &R, user: &UserId, id: &EntryId) -> Result<Option<EntryRecord>, Fatal> {
    if *id == EntryId::ROOT {
        return Ok(Some(root_record()));
    }
    r.get("entry", &keys::entry(user, id))
}

pub fn child<R: KvRead>(
    r: &R,
    user: &UserId,
    parent: &EntryId,
    name: &str,
) -> Result<Option<EntryId>, Fatal> {
    Ok(r.get_raw(&keys::child(user, parent, name))?
        .and_then(|v| EntryId::from_slice(&v)))
}

/// Outcome of walking a path.
pub enum Resolved {
    /// The path names this entry (live or a tombstone).
    Found(EntryId, EntryRecord),
    /// Nothing at the path.
    Missing,
    /// A segment before the last is a live file.
    ThroughFile,
}

pub fn resolve<R: KvRead>(r: &R, user: &UserId, segments: &[String]) -> Result<Resolved, Fatal> {
    let mut id = EntryId::ROOT;
    let mut rec = root_record();
    for (i, seg) in segments.iter().enumerate() {
        if rec.kind == EntryKind::File {
            return Ok(if rec.live && i > 0 {
                Resolved::ThroughFile
            } else {
                Resolved::Missing
            });
        }
        let Some(next) = child(r, user, &id, seg)? else {
            return Ok(Resolved::Missing);
        };
        let Some(next_rec) = entry(r, user, &next)? else {
            return Err(Fatal::Corrupt(crate::records::DecodeError {
                what: "child",
                reason: format!("dangling child {seg:?}"),
            }));
        };
        id = next;
        rec = next_rec;
    }
    Ok(Resolved::Found(id, rec))
}

/// The current path of an entry, walking up its parents.
pub fn entry_path<R: KvRead>(r: &R, user: &UserId, id: &EntryId) -> Result<String, Fatal> {
    let mut names: Vec<String> = Vec::new();
    let mut cur = *id;
    // A path has at most 2048 segments; more means a cycle, which is corruption.
    for _ in 0..4096 {
        if cur == EntryId::ROOT {
            names.reverse();
            if names.is_empty() {
                return Ok("/".into());
            }
            let mut s = String::new();
            for n in names {
                s.push('/');
                s.push_str(&n);
            }
            return Ok(s);
        }
        let Some(rec) = entry(r, user, &cur)? else {
            return Err(Fatal::Corrupt(crate::records::DecodeError {
                what: "entry",
                reason: "missing parent".into(),
            }));
        };
        names.push(rec.name);
        cur = rec.parent;
    }
    Err(Fatal::Corrupt(crate::records::DecodeError {
        what: "entry",
        reason: "parent cycle".into(),
    }))
}
