//! Shards on this node's disks: one directory per disk, one file per shard.
//!
//! Write protocol (docs/durability.md): write `tmp/<name>` → fsync the file
//! → rename into `shards/<xx>/<name>` → record the directory as dirty; the
//! caller fsyncs every dirty directory once (`sync_dirs`) before it commits
//! metadata that points at the shards. `tmp/` is emptied at start.
//! Every read re-verifies the shard's checksum and identity.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cluster_config::BlockId;

use super::shard::{self, ShardFormatError, ShardMeta};

const DISK_MARKER: &str = "strata-disk";
const DISK_MARKER_TEXT: &str = "strata shard directory, format 1\n";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why a shard could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShardReadError {
    #[error("shard missing")]
    Missing,
    #[error("shard corrupt: {0}")]
    Corrupt(#[from] ShardFormatError),
    #[error(transparent)]
    Io(StoreError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Directories whose entries changed and must be fsynced before commit.
#[derive(Debug, Default)]
pub struct DirtyDirs(BTreeSet<PathBuf>);

impl DirtyDirs {
    pub fn merge(&mut self, other: DirtyDirs) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug)]
pub struct LocalShards {
    disks: Vec<PathBuf>,
    /// Disks found without their marker at open: new or wiped.
    replaced: Vec<usize>,
}

impl LocalShards {
    /// Prepares every shard directory: fan-out folders, an empty `tmp/`.
    pub fn open(dirs: &[PathBuf]) -> Result<Self, StoreError> {
        let mut replaced = Vec::new();
        for (index, root) in dirs.iter().enumerate() {
            fs::create_dir_all(root).map_err(io_at(root))?;
            let tmp = root.join("tmp");
            if tmp.exists() {
                fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
            }
            fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
            let shards = root.join("shards");
            let fresh = !shards.join("ff").exists();
            for i in 0..=255u8 {
                let d = shards.join(format!("{i:02x}"));
                fs::create_dir_all(&d).map_err(io_at(&d))?;
            }
            let marker = root.join(DISK_MARKER);
            if fresh || !marker.exists() {
                replaced.push(index);
                fs::write(&marker, DISK_MARKER_TEXT).map_err(io_at(&marker))?;
                sync_dir(&shards)?;
                sync_dir(root)?;
            }
        }
        Ok(Self {
            disks: dirs.to_vec(),
            replaced,
        })
    }

    pub fn disk_count(&self) -> usize {
        self.disks.len()
    }

    /// The local disk for shard `index` of `block`: disks are ranked by a
    /// rendezvous hash of the block, shard i goes to the i-th (wrapping when
    /// there are fewer disks than shards).
    pub fn disk_for(&self, block: &BlockId, index: usize) -> usize {
        let mut ranked: Vec<(u64, usize)> = (0..self.disks.len())
            .map(|d| {
                let mut h = blake3::Hasher::new();
                h.update(block.as_bytes());
                h.update(&(d as u64).to_le_bytes());
                let b = h.finalize();
                let mut w = [0u8; 8];
                w.copy_from_slice(&b.as_bytes()[..8]);
                (u64::from_le_bytes(w), d)
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        ranked[index % ranked.len()].1
    }

    fn shard_path(&self, disk: usize, block: &BlockId, index: u8) -> PathBuf {
        let hex = block.to_string();
        self.disks[disk]
            .join("shards")
            .join(&hex[..2])
            .join(format!("{hex}.{index}"))
    }

    /// Writes one shard durably (all but the directory entry: see `sync_dirs`).
    ///
    /// A new shard is renamed into place before its `fsync`, so that one
    /// journal commit covers both the data and the new name (the directory
    /// `fsync` that follows then has little left to do): a crash in between
    /// can leave a short file under the final name, which fails its checksum
    /// like any damaged shard and is rebuilt; nothing acknowledged depended
    /// on it yet. A shard that already exists is never replaced by an
    /// unsynced file: it gets the classic order (sync, then rename).
    pub fn write(
        &self,
        disk: usize,
        meta: &ShardMeta,
        payload: &[u8],
        dirty: &mut DirtyDirs,
    ) -> Result<(), StoreError> {
        let dest = self.shard_path(disk, &meta.block, meta.index);
        let tmp = self.disks[disk].join("tmp").join(format!(
            "{}.{}.{:016x}",
            meta.block,
            meta.index,
            rand::random::<u64>()
        ));
        let header = shard::header(meta, payload);
        let replacing = dest.exists();
        let write = || -> io::Result<fs::File> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&header)?;
            f.write_all(payload)?;
            if replacing {
                f.sync_data()?;
            }
            Ok(f)
        };
        let file = match write() {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_at(&tmp)(e));
            }
        };
        fs::rename(&tmp, &dest).map_err(io_at(&dest))?;
        if !replacing {
            file.sync_all().map_err(io_at(&dest))?;
        }
        if let Some(dir) = dest.parent() {
            dirty.0.insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// Reads and verifies one shard.
    pub fn read(&self, disk: usize, meta: &ShardMeta) -> Result<Vec<u8>, ShardReadError> {
        let path = self.shard_path(disk, &meta.block, meta.index);
        match fs::read(&path) {
            Ok(bytes) => Ok(shard::parse(&bytes, meta)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ShardReadError::Missing),
            Err(e) => Err(ShardReadError::Io(io_at(&path)(e))),
        }
    }

    /// Reads a shard from the disk placement says, or any other disk (after
    /// the disk list changed).
    pub fn read_any_disk(&self, meta: &ShardMeta) -> Result<Vec<u8>, ShardReadError> {
        let first = self.disk_for(&meta.block, meta.index as usize);
        match self.read(first, meta) {
            Err(ShardReadError::Missing) => {}
            other => return other,
        }
        for d in 0..self.disks.len() {
            if d == first {
                continue;
            }
            match self.read(d, meta) {
                Err(ShardReadError::Missing) => continue,
                other => return other,
            }
        }
        Err(ShardReadError::Missing)
    }

    /// Whether a shard file exists on any disk (no checksum: a fast census).
    pub fn exists(&self, block: &BlockId, index: u8) -> bool {
        (0..self.disks.len()).any(|d| self.shard_path(d, block, index).exists())
    }

    /// Removes a shard from every disk.
    pub fn delete_everywhere(&self, block: &BlockId, index: u8) -> Result<(), StoreError> {
        for d in 0..self.disks.len() {
            self.delete(d, block, index)?;
        }
        Ok(())
    }

    /// Whether a disk lost its marker (replaced or wiped) when opened.
    pub fn replaced_disks(&self) -> &[usize] {
        &self.replaced
    }

    /// Removes a shard (missing is fine).
    pub fn delete(&self, disk: usize, block: &BlockId, index: u8) -> Result<(), StoreError> {
        let path = self.shard_path(disk, block, index);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Makes the renames recorded in `dirty` durable.
    pub fn sync_dirs(dirty: &DirtyDirs) -> Result<(), StoreError> {
        for d in &dirty.0 {
            sync_dir(d)?;
        }
        Ok(())
    }

    pub fn disk_root(&self, disk: usize) -> &Path {
        &self.disks[disk]
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(i: u8) -> ShardMeta {
        ShardMeta {
            block: BlockId([0xab; 32]),
            codec: 1,
            data: 2,
            parity: 1,
            index: i,
            sealed_len: 10,
        }
    }

    #[test]
    fn write_read_corrupt_delete() {
        let dir = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("d{i}"))).collect();
        let store = LocalShards::open(&dirs).unwrap();
        let b = BlockId([0xab; 32]);
        let disks: BTreeSet<usize> = (0..3).map(|i| store.disk_for(&b, i)).collect();
        assert_eq!(disks.len(), 3, "three shards on three disks");
        let mut dirty = DirtyDirs::default();
        store.write(1, &meta(0), b"payload", &mut dirty).unwrap();
        assert!(!dirty.is_empty());
        LocalShards::sync_dirs(&dirty).unwrap();
        assert_eq!(store.read(1, &meta(0)).unwrap(), b"payload");
        assert!(matches!(
            store.read(0, &meta(0)),
            Err(ShardReadError::Missing)
        ));
        assert!(matches!(
            store.read(1, &meta(1)),
            Err(ShardReadError::Missing)
        ));
        // Flip a payload byte on disk.
        let path = store.shard_path(1, &b, 0);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            store.read(1, &meta(0)),
            Err(ShardReadError::Corrupt(ShardFormatError::Checksum))
        ));
        store.delete(1, &b, 0).unwrap();
        store.delete(1, &b, 0).unwrap();
        assert!(matches!(
            store.read(1, &meta(0)),
            Err(ShardReadError::Missing)
        ));
        // Leftover temporary files vanish on the next open.
        fs::write(dirs[0].join("tmp").join("junk"), b"x").unwrap();
        LocalShards::open(&dirs).unwrap();
        assert!(!dirs[0].join("tmp").join("junk").exists());
    }
}
