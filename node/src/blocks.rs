//! `BlockStore`: turns chunks into durable shards and back.
//!
//! Store: seal (compress + encrypt) → erasure-code into k+m shards → write
//! each shard to its disk (fsynced). Read: fetch the data shards (parity only
//! when one is missing or corrupt) → decode → open (authenticate, decrypt,
//! decompress, verify the block id). A shard found missing or corrupt on a
//! successful read is rewritten on the spot (read repair).
//!
//! All CPU and disk work runs on the blocking pool, bounded by a semaphore so
//! memory stays bounded however many requests arrive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cluster_config::{BlockId, ErasureProfile, UserId};
use raft_meta::records::{BlockRecord, BlockRef, StoredBlock};
use raft_meta::types::NewBlock;
use tokio::sync::Semaphore;

use crate::block::codec::{self, CodecError};
use crate::block::erasure::{Erasure, ErasureError, CODEC_RS_SIMD};
use crate::block::shard::ShardMeta;
use crate::block::store::{DirtyDirs, LocalShards, ShardReadError, StoreError};
use crate::keys::{KeyRing, UserKeys, KEY_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {block} unreadable: {have} of {needed} shards available")]
    Unavailable {
        block: BlockId,
        have: usize,
        needed: usize,
    },
    #[error("block {block} corrupt: {source}")]
    Corrupt {
        block: BlockId,
        #[source]
        source: CodecError,
    },
    #[error(transparent)]
    Erasure(#[from] ErasureError),
    #[error(transparent)]
    Codec(CodecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("block task failed: {0}")]
    Task(String),
}

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct BlockStats {
    pub blocks_written: AtomicU64,
    pub blocks_deduplicated: AtomicU64,
    pub plain_bytes_written: AtomicU64,
    pub sealed_bytes_written: AtomicU64,
    pub blocks_read: AtomicU64,
    pub degraded_reads: AtomicU64,
    pub shards_repaired: AtomicU64,
}

/// A chunk after `store_chunk`: its reference, and its record if this call
/// wrote it.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub reference: BlockRef,
    pub new: Option<NewBlock>,
}

pub struct BlockStore {
    keys: KeyRing,
    shards: LocalShards,
    erasure: Erasure,
    layout: u64,
    jobs: Semaphore,
    stats: BlockStats,
}

impl BlockStore {
    pub fn new(
        keys: KeyRing,
        shards: LocalShards,
        profile: ErasureProfile,
        max_jobs: usize,
    ) -> Self {
        Self {
            keys,
            shards,
            erasure: Erasure::new(profile.data as usize, profile.parity as usize),
            layout: 1,
            jobs: Semaphore::new(max_jobs.max(1)),
            stats: BlockStats::default(),
        }
    }

    pub fn user_keys(&self, user: &UserId) -> UserKeys {
        self.keys.user(user)
    }

    pub fn stats(&self) -> &BlockStats {
        &self.stats
    }

    fn shard_meta(block: &BlockId, stored: &StoredBlock, index: usize) -> ShardMeta {
        ShardMeta {
            block: *block,
            codec: CODEC_RS_SIMD,
            data: stored.data_shards,
            parity: stored.parity_shards,
            index: index as u8,
            sealed_len: stored.sealed_len,
        }
    }

    /// Seals, encodes and writes a chunk unless `exists` says the user
    /// already has it. Blocking: call on the blocking pool.
    fn store_blocking(
        &self,
        keys: &UserKeys,
        chunk: &[u8],
        compress: bool,
        exists: &dyn Fn(&BlockId) -> bool,
        dirty: &mut DirtyDirs,
    ) -> Result<StoredChunk, BlockError> {
        let id = keys.block_id(chunk);
        let reference = BlockRef {
            id,
            size: chunk.len() as u32,
        };
        if exists(&id) {
            self.stats
                .blocks_deduplicated
                .fetch_add(1, Ordering::Relaxed);
            return Ok(StoredChunk {
                reference,
                new: None,
            });
        }
        let sealed = codec::seal(keys, &id, chunk, compress).map_err(BlockError::Codec)?;
        let stored = StoredBlock {
            sealed_len: sealed.len() as u32,
            data_shards: self.erasure.data as u8,
            parity_shards: self.erasure.parity as u8,
            key_version: KEY_VERSION,
            layout: self.layout,
        };
        let shards = self.erasure.encode(&sealed)?;
        for (i, payload) in shards.iter().enumerate() {
            let meta = Self::shard_meta(&id, &stored, i);
            self.shards
                .write(self.shards.disk_for(&id, i), &meta, payload, dirty)?;
        }
        self.stats.blocks_written.fetch_add(1, Ordering::Relaxed);
        self.stats
            .plain_bytes_written
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.stats
            .sealed_bytes_written
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        Ok(StoredChunk {
            reference,
            new: Some(NewBlock {
                id,
                plain_len: chunk.len() as u32,
                stored,
            }),
        })
    }

    /// Stores one chunk on the blocking pool; returns the directories to sync.
    pub async fn store_chunk(
        self: &Arc<Self>,
        keys: UserKeys,
        chunk: Bytes,
        compress: bool,
        exists: Arc<dyn Fn(&BlockId) -> bool + Send + Sync>,
    ) -> Result<(StoredChunk, DirtyDirs), BlockError> {
        let _permit = self
            .jobs
            .acquire()
            .await
            .map_err(|_| BlockError::Task("block store closed".into()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut dirty = DirtyDirs::default();
            let stored = this.store_blocking(&keys, &chunk, compress, &*exists, &mut dirty)?;
            Ok((stored, dirty))
        })
        .await
        .map_err(|e| BlockError::Task(e.to_string()))?
    }

    /// Makes the shard renames in `dirty` durable.
    pub async fn sync(&self, dirty: DirtyDirs) -> Result<(), BlockError> {
        if dirty.is_empty() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || LocalShards::sync_dirs(&dirty))
            .await
            .map_err(|e| BlockError::Task(e.to_string()))??;
        Ok(())
    }

    /// Reads, verifies and decodes a block. Blocking.
    fn read_blocking(
        &self,
        keys: &UserKeys,
        id: &BlockId,
        rec: &BlockRecord,
    ) -> Result<Vec<u8>, BlockError> {
        let stored = rec.stored;
        let (k, m) = (stored.data_shards as usize, stored.parity_shards as usize);
        let erasure = Erasure::new(k, m);
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; k + m];
        let mut bad = Vec::new();
        let mut have = 0;
        // Data shards first; parity only as needed.
        for (i, slot) in shards.iter_mut().enumerate() {
            if have == k || (i >= k && bad.is_empty()) {
                break;
            }
            let meta = Self::shard_meta(id, &stored, i);
            match self.shards.read(self.shards.disk_for(id, i), &meta) {
                Ok(p) => {
                    *slot = Some(p);
                    have += 1;
                }
                Err(e) => {
                    if !matches!(e, ShardReadError::Missing) {
                        tracing::warn!(block = %id, shard = i, error = %e, "bad shard");
                    }
                    bad.push(i);
                }
            }
        }
        if have < k {
            return Err(BlockError::Unavailable {
                block: *id,
                have,
                needed: k,
            });
        }
        let sealed = erasure.decode(&shards, stored.sealed_len as usize)?;
        let plain = codec::open(keys, id, sealed)
            .map_err(|source| BlockError::Corrupt { block: *id, source })?;
        if plain.len() != rec.plain_len as usize {
            return Err(BlockError::Corrupt {
                block: *id,
                source: CodecError::Malformed("length differs from metadata"),
            });
        }
        self.stats.blocks_read.fetch_add(1, Ordering::Relaxed);
        if !bad.is_empty() {
            self.stats.degraded_reads.fetch_add(1, Ordering::Relaxed);
            self.repair_shards(id, &stored, &erasure, &shards, &bad);
        }
        Ok(plain)
    }

    /// Rewrites the shards in `bad` from the ones read. Failure is logged:
    /// the read already succeeded, and the scrubber will try again.
    fn repair_shards(
        &self,
        id: &BlockId,
        stored: &StoredBlock,
        erasure: &Erasure,
        shards: &[Option<Vec<u8>>],
        bad: &[usize],
    ) {
        let all = match erasure.reconstruct_all(shards) {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(block = %id, error = %e, "read repair: cannot rebuild");
                return;
            }
        };
        let mut dirty = DirtyDirs::default();
        for &i in bad {
            let meta = Self::shard_meta(id, stored, i);
            if let Err(e) =
                self.shards
                    .write(self.shards.disk_for(id, i), &meta, &all[i], &mut dirty)
            {
                tracing::warn!(block = %id, shard = i, error = %e, "read repair: write failed");
                return;
            }
        }
        match LocalShards::sync_dirs(&dirty) {
            Ok(()) => {
                self.stats
                    .shards_repaired
                    .fetch_add(bad.len() as u64, Ordering::Relaxed);
                tracing::info!(block = %id, shards = ?bad, "read repair rewrote shards");
            }
            Err(e) => tracing::warn!(block = %id, error = %e, "read repair: sync failed"),
        }
    }

    /// Reads one block on the blocking pool.
    pub async fn read_block(
        self: &Arc<Self>,
        keys: UserKeys,
        id: BlockId,
        rec: BlockRecord,
    ) -> Result<Bytes, BlockError> {
        let _permit = self
            .jobs
            .acquire()
            .await
            .map_err(|_| BlockError::Task("block store closed".into()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(&keys, &id, &rec).map(Bytes::from))
            .await
            .map_err(|e| BlockError::Task(e.to_string()))?
    }

    /// The local shard directories (for tests and tools that inspect them).
    pub fn shards(&self) -> &LocalShards {
        &self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Ingest, WholeHash};
    use cluster_config::ClusterSecret;
    use std::path::PathBuf;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    struct Env {
        _dir: tempfile::TempDir,
        dirs: Vec<PathBuf>,
        store: Arc<BlockStore>,
        meta: raft_meta::MetaReader,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("disk-{i}")))
            .collect();
        let shards = LocalShards::open(&dirs).unwrap();
        let store = Arc::new(BlockStore::new(
            KeyRing::new(ClusterSecret::from_bytes([7; 32])),
            shards,
            ErasureProfile { data: 2, parity: 1 },
            4,
        ));
        let db = sled::Config::new().temporary(true).open().unwrap();
        let meta = raft_meta::MetaReader::new(db.open_tree("sm").unwrap());
        Env {
            _dir: dir,
            dirs,
            store,
            meta,
        }
    }

    fn record(n: &NewBlock) -> BlockRecord {
        BlockRecord {
            refs: 1,
            plain_len: n.plain_len,
            stored: n.stored,
            created_ms: 0,
        }
    }

    fn shard_files(dirs: &[PathBuf], id: &BlockId) -> Vec<PathBuf> {
        let hex = id.to_string();
        let mut out = Vec::new();
        for d in dirs {
            for i in 0..3 {
                let p = d.join("shards").join(&hex[..2]).join(format!("{hex}.{i}"));
                if p.exists() {
                    out.push(p);
                }
            }
        }
        out.sort_by_key(|p| p.extension().map(|e| e.to_os_string()));
        out
    }

    #[tokio::test]
    async fn pipeline_round_trip_with_every_stage() {
        let e = env();
        let user = UserId([1; 16]);
        let mut data = noise(5 << 20, 3);
        data.extend(b"compressible text, compressible text. ".repeat(60_000));
        let mut ing = Ingest::new(
            e.store.clone(),
            e.meta.clone(),
            user,
            true,
            WholeHash::Plain(Box::default()),
        );
        for piece in data.chunks(100_003) {
            ing.push(piece).await.unwrap();
        }
        let done = ing.finish().await.unwrap();
        assert_eq!(done.size, data.len() as u64);
        assert_eq!(done.content_hash.unwrap(), *blake3::hash(&data).as_bytes());
        assert!(done.chunks.len() >= 4);
        assert_eq!(done.new_blocks.len(), done.chunks.len());
        // The compressible tail really was compressed.
        let sealed: u64 = done
            .new_blocks
            .iter()
            .map(|n| n.stored.sealed_len as u64)
            .sum();
        assert!(sealed < data.len() as u64 * 3 / 4, "sealed {sealed}");
        let keys = e.store.user_keys(&user);
        let mut back = Vec::new();
        for (c, n) in done.chunks.iter().zip(&done.new_blocks) {
            assert_eq!(shard_files(&e.dirs, &c.id).len(), 3);
            back.extend_from_slice(
                &e.store
                    .read_block(keys.clone(), c.id, record(n))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(back, data);
        // Another user's keys cannot read the block.
        let other = e.store.user_keys(&UserId([2; 16]));
        let n = &done.new_blocks[0];
        assert!(e.store.read_block(other, n.id, record(n)).await.is_err());
    }

    #[tokio::test]
    async fn lost_and_corrupt_shards_are_rebuilt_on_read() {
        let e = env();
        let user = UserId([1; 16]);
        let data = noise(300_000, 9);
        let keys = e.store.user_keys(&user);
        let mut ing = Ingest::new(
            e.store.clone(),
            e.meta.clone(),
            user,
            true,
            WholeHash::Plain(Box::default()),
        );
        ing.push(&data).await.unwrap();
        let done = ing.finish().await.unwrap();
        let n = done.new_blocks[0];
        let files = shard_files(&e.dirs, &n.id);
        assert_eq!(files.len(), 3);

        // A lost data shard: read works (degraded) and the shard comes back.
        std::fs::remove_file(&files[0]).unwrap();
        let got = e
            .store
            .read_block(keys.clone(), n.id, record(&n))
            .await
            .unwrap();
        assert_eq!(&got[..], &data[..]);
        assert!(files[0].exists(), "read repair rewrote the lost shard");
        assert_eq!(e.store.stats().shards_repaired.load(Ordering::Relaxed), 1);

        // A corrupted shard: detected by checksum, rebuilt the same way.
        let mut bytes = std::fs::read(&files[1]).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&files[1], &bytes).unwrap();
        let got = e
            .store
            .read_block(keys.clone(), n.id, record(&n))
            .await
            .unwrap();
        assert_eq!(&got[..], &data[..]);
        assert_ne!(
            std::fs::read(&files[1]).unwrap(),
            bytes,
            "corrupt shard rewritten"
        );
        assert_eq!(e.store.stats().shards_repaired.load(Ordering::Relaxed), 2);

        // Two of three gone: unreadable, with a clear error.
        std::fs::remove_file(&files[0]).unwrap();
        std::fs::remove_file(&files[1]).unwrap();
        let err = e
            .store
            .read_block(keys, n.id, record(&n))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BlockError::Unavailable {
                    have: 1,
                    needed: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn partial_ingest_keeps_a_tail_and_resumes_identically() {
        let e = env();
        let user = UserId([1; 16]);
        let data = noise(12 << 20, 5);
        // One pass.
        let mut ing = Ingest::new(
            e.store.clone(),
            e.meta.clone(),
            user,
            false,
            WholeHash::Plain(Box::default()),
        );
        ing.push(&data).await.unwrap();
        let whole = ing.finish().await.unwrap();
        // Two requests with a stored tail in between, as a resumable upload does.
        let split = 5 << 20;
        let mut ing = Ingest::new(
            e.store.clone(),
            e.meta.clone(),
            user,
            false,
            WholeHash::Tree(raft_meta::hashing::TreeHasher::new(data.len() as u64)),
        );
        ing.push(&data[..split]).await.unwrap();
        let part = ing.finish_partial().await.unwrap();
        assert!(!part.tail.is_empty());
        let tail_len: usize = part.tail.iter().map(|t| t.size as usize).sum();
        let done_len: usize = part.chunks.iter().map(|t| t.size as usize).sum();
        assert_eq!(tail_len + done_len, split);
        let state = part.hash_state.unwrap();
        let hasher = raft_meta::hashing::TreeHasher::resume(data.len() as u64, state).unwrap();
        let mut ing = Ingest::new(
            e.store.clone(),
            e.meta.clone(),
            user,
            false,
            WholeHash::Tree(hasher),
        );
        ing.push_rechunk(&data[done_len..split]).await.unwrap();
        ing.push(&data[split..]).await.unwrap();
        let rest = ing.finish().await.unwrap();
        let mut chunks = part.chunks.clone();
        chunks.extend(rest.chunks);
        assert_eq!(chunks, whole.chunks, "same chunks as a single pass");
        let state = rest.hash_state.unwrap();
        let h = raft_meta::hashing::TreeHasher::resume(data.len() as u64, state)
            .unwrap()
            .finalize()
            .unwrap();
        assert_eq!(h, blake3::hash(&data));
    }
}
