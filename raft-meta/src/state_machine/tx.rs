//! A write set over the state machine tree with read-your-writes.
//!
//! Entries handed to one `apply` call share one batch; each command gets its
//! own layer on top, dropped if the command is refused, so a refused command
//! leaves no trace and the whole call lands in fjall as one atomic batch.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys::prefix_end;
use crate::records::{decode, encode, DecodeError};

/// A failure that is not the command's fault: the node must stop applying.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error("state machine storage: {0}")]
    Storage(#[from] crate::table::DbError),
    #[error(transparent)]
    Corrupt(#[from] DecodeError),
}

type Layer = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
/// The hasher of the maps below: foldhash with a random seed per map, much
/// cheaper than SipHash on keys of 20–60 bytes, and seeded so that names a
/// user chooses cannot be picked to collide.
type Hasher = foldhash::fast::RandomState;
/// Values of the tree by key (`None`: the key is absent), as last read or
/// written by the state machine.
pub type ReadSet = HashMap<Vec<u8>, Option<Vec<u8>>, Hasher>;
/// Keys and values, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
type LayerRange<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;

pub struct Tx<'a> {
    tree: &'a crate::table::Table,
    batch: Layer,
    cmd: Layer,
    /// What this transaction read from the tree: it does not change while
    /// the transaction lives (the tree is written once, at the end), and
    /// the commands of one batch read the same user and folder records.
    read: RefCell<ReadSet>,
    scanned: RefCell<HashMap<Vec<u8>, Pairs, Hasher>>,
}

impl<'a> Tx<'a> {
    #[cfg(test)]
    pub fn new(tree: &'a crate::table::Table) -> Self {
        Self::with_known(tree, ReadSet::default())
    }

    /// A transaction that takes `known` for the tree's current values
    /// instead of reading them again. Only sound while nothing but the
    /// state machine writes the tree, and when `known` was brought up to
    /// date with every batch it wrote (`into_parts`).
    pub fn with_known(tree: &'a crate::table::Table, known: ReadSet) -> Self {
        Self {
            tree,
            batch: Layer::new(),
            cmd: Layer::new(),
            read: RefCell::new(known),
            scanned: RefCell::default(),
        }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fatal> {
        if let Some(v) = self.cmd.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.batch.get(key) {
            return Ok(v.clone());
        }
        self.committed(key)
    }

    /// A key's value in the tree as this transaction found it.
    fn committed(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fatal> {
        if let Some(v) = self.read.borrow().get(key) {
            return Ok(v.clone());
        }
        let v = self.tree.get(key)?;
        self.read.borrow_mut().insert(key.to_vec(), v.clone());
        Ok(v)
    }

    /// The tree's keys under `prefix`, as this transaction found them.
    fn committed_prefix(&self, prefix: &[u8]) -> Result<Pairs, Fatal> {
        if let Some(p) = self.scanned.borrow().get(prefix) {
            return Ok(p.clone());
        }
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix) {
            out.push(kv?);
        }
        self.scanned
            .borrow_mut()
            .insert(prefix.to_vec(), out.clone());
        Ok(out)
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, Fatal> {
        match self.get_raw(key)? {
            Some(bytes) => Ok(Some(decode(what, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.cmd.insert(key, Some(encode(value)));
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.cmd.insert(key, Some(value));
    }

    pub fn del(&mut self, key: Vec<u8>) {
        self.cmd.insert(key, None);
    }

    /// Every live key under `prefix` with its value, in key order, seeing
    /// this transaction's own writes.
    pub fn scan(&self, prefix: &[u8]) -> Result<Pairs, Fatal> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.committed_prefix(prefix)?.into_iter().collect();
        let end = prefix_end(prefix);
        for layer in [&self.batch, &self.cmd] {
            let range: LayerRange<'_> = match &end {
                Some(end) => Box::new(layer.range(prefix.to_vec()..end.clone())),
                None => Box::new(layer.range(prefix.to_vec()..)),
            };
            for (k, v) in range {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        Ok(merged.into_iter().collect())
    }

    /// Keeps the current command's writes.
    pub fn keep(&mut self) {
        let cmd = std::mem::take(&mut self.cmd);
        self.batch.extend(cmd);
    }

    /// Forgets the current command's writes.
    pub fn discard(&mut self) {
        self.cmd.clear();
    }

    /// The highest journal line this transaction wrote, per user.
    pub fn journal_heads(&self) -> Vec<(cluster_config::UserId, u64)> {
        let mut heads: BTreeMap<cluster_config::UserId, u64> = BTreeMap::new();
        for (k, v) in self.batch.iter().chain(self.cmd.iter()) {
            if v.is_none() || k.len() != 1 + 16 + 8 || k[0] != crate::keys::JOURNAL {
                continue;
            }
            let (Some(user), Ok(seq)) = (
                cluster_config::UserId::from_slice(&k[1..17]),
                <[u8; 8]>::try_from(&k[17..25]),
            ) else {
                continue;
            };
            let seq = u64::from_be_bytes(seq);
            let e = heads.entry(user).or_insert(seq);
            *e = (*e).max(seq);
        }
        heads.into_iter().collect()
    }

    #[cfg(test)]
    pub fn into_batch(self) -> crate::table::Batch {
        self.into_parts(|_| false).0
    }

    /// The batch to write, and what the tree holds once it is written:
    /// the values this transaction read, updated by its writes, and the
    /// written keys for which `keep` says so.
    pub fn into_parts(mut self, keep: impl Fn(&[u8]) -> bool) -> (crate::table::Batch, ReadSet) {
        self.keep();
        let mut known = self.read.into_inner();
        let mut b = crate::table::Batch::default();
        for (k, v) in self.batch {
            if keep(&k) || known.contains_key(&k) {
                known.insert(k.clone(), v.clone());
            }
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        (b, known)
    }
}

impl Tx<'_> {
    /// Up to `limit` keys under `prefix` in the committed tree whose value
    /// this transaction has not deleted, in key order.
    pub fn scan_committed(&self, prefix: &[u8], limit: usize) -> Result<Pairs, Fatal> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = kv?;
            if let Some(v) = self.get_raw(&k)? {
                out.push((k.to_vec(), v));
            }
        }
        Ok(out)
    }
}
