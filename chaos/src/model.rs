//! What the workload believes the drive holds: per user, per path, the
//! contents it wrote, in order. Content is a seed and a length, so any
//! version can be made again byte for byte to compare a download with.

use std::collections::BTreeMap;

use cluster_config::ids::to_hex;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One version's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    pub seed: u64,
    pub size: u64,
    pub hash: [u8; 32],
}

impl Content {
    pub fn new(seed: u64, size: u64) -> Self {
        Self {
            seed,
            size,
            hash: *blake3::hash(&bytes_of(seed, size)).as_bytes(),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        bytes_of(self.seed, self.size)
    }

    pub fn hex(&self) -> String {
        to_hex(&self.hash)
    }
}

/// The bytes of a content: a ChaCha8 stream from `seed` (so every user's
/// and every write's bytes differ, and none compresses or deduplicates
/// by accident).
pub fn bytes_of(seed: u64, size: u64) -> Vec<u8> {
    let mut out = vec![0u8; size as usize];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// A file the workload wrote: the contents of its versions, oldest first,
/// that the drive acknowledged (or that a read showed were applied).
#[derive(Debug, Clone, Default)]
pub struct FileModel {
    pub versions: Vec<Content>,
}

impl FileModel {
    pub fn current(&self) -> Option<&Content> {
        self.versions.last()
    }

    /// Whether `hash` is a content this file had.
    pub fn had(&self, hash: &str) -> bool {
        self.versions.iter().any(|c| c.hex() == hash)
    }
}

/// One worker's files (a worker owns its folder: nothing else writes
/// there, so its model is exact once every uncertain outcome is
/// resolved).
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub files: BTreeMap<String, FileModel>,
    /// Paths whose last write has an unknown outcome that no read has
    /// settled yet; they are settled after healing.
    pub unsettled: BTreeMap<String, Pending>,
    /// Files deleted with an acknowledgement (their path must be gone).
    pub deleted: Vec<String>,
    /// Every change the drive applied, in the order this worker applied
    /// them: what its change feed must deliver, each exactly once.
    pub applied: Vec<Applied>,
    /// The change feed position before the worker's first write.
    pub cursor: Option<String>,
}

/// One change a worker made, as the change feed must show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Applied {
    /// New content at a path (a create, an overwrite, a restore).
    Wrote {
        path: String,
        hash: String,
    },
    Moved {
        from: String,
        to: String,
    },
    Deleted {
        path: String,
    },
}

impl Applied {
    /// The paths it touches (an order is kept per path).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Applied::Wrote { path, .. } | Applied::Deleted { path } => vec![path],
            Applied::Moved { from, to } => vec![from, to],
        }
    }
}

/// A write whose outcome is not known yet: what the path holds if it was
/// applied, and if it was not.
#[derive(Debug, Clone)]
pub struct Pending {
    pub step: u64,
    pub what: &'static str,
    /// The path's content if the write was applied (`None`: gone).
    pub applied: Option<Content>,
    /// ... and if it was not.
    pub not_applied: Option<Content>,
    /// For a move: the other path and what it holds in each case.
    pub other: Option<(String, Option<Content>, Option<Content>)>,
    /// When the worker gave up waiting for the answer. The request may
    /// still be on its way through the cluster (a slow disk, a leader
    /// change): no read settles it before `LATE_APPLY` has passed.
    pub abandoned: Option<tokio::time::Instant>,
}

/// How long after its answer was given up on a write may still apply.
/// Faults last at most 6 s and heal; a request's own timeout is 30 s or
/// more; a read before this could see "not applied" for a write that
/// lands a moment later.
pub const LATE_APPLY: std::time::Duration = std::time::Duration::from_secs(45);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_made_again_exactly() {
        let a = Content::new(42, 100_000);
        assert_eq!(*blake3::hash(&a.bytes()).as_bytes(), a.hash);
        assert_eq!(a.bytes(), bytes_of(42, 100_000));
        assert_ne!(a.hash, Content::new(43, 100_000).hash);
        assert_eq!(Content::new(1, 0).bytes(), Vec::<u8>::new());
    }
}
