//! `BlockStore`: turns chunks into durable shards and back.
//!
//! Store: seal (compress + encrypt) → erasure-code into k+m shards → write
//! shard i to node i of the block's placement (this node's disks, or a peer
//! over the network), durably. Read: fetch the data shards (parity only when
//! one is missing or corrupt) → decode → open (authenticate, decrypt,
//! decompress, verify the block id). A shard found missing or corrupt on a
//! successful read is rewritten (read repair).
//!
//! All CPU and disk work runs on the blocking pool, bounded by a semaphore so
//! memory stays bounded however many requests arrive.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster_config::{BlockId, ErasureProfile, NodeId, UserId};
use raft_meta::records::{BlockRecord, BlockRef, StoredBlock};
use raft_meta::types::NewBlock;
use tokio::sync::Semaphore;

use crate::block::codec::{self, CodecError};
use crate::block::erasure::{Erasure, ErasureError, CODEC_RS_SIMD};
use crate::block::shard::{self, ShardMeta, HEADER_LEN};
use crate::block::store::{LocalShards, ShardReadError, StoreError};
use crate::keys::{KeyRing, UserKeys, KEY_VERSION};
use crate::net::{NetError, NetRequest, NetResponse, SharedNet, WireCode};
use crate::placement::{Placement, View};

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {block} unreadable: {have} of {needed} shards available")]
    Unavailable {
        block: BlockId,
        have: usize,
        needed: usize,
    },
    /// Too few disks of live nodes took the block's shards to keep it safe
    /// (K+1 on distinct disks): nothing was acknowledged.
    #[error("block {block} not stored: {have} shards written, {needed} needed on distinct disks")]
    TooFewDisks {
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
    /// A peer did not answer (unreachable, timed out, the network
    /// stopping): retryable.
    #[error(transparent)]
    Peer(#[from] NetError),
    /// A peer answered with an error.
    #[error("node {node} refused: {code:?}: {message}")]
    PeerRefused {
        node: NodeId,
        code: WireCode,
        message: String,
    },
    #[error(transparent)]
    Meta(#[from] raft_meta::MetaError),
    /// The block store is stopping.
    #[error("block store closed")]
    Closed,
    #[error("block task failed: {0}")]
    Task(String),
}

impl BlockError {
    /// The same request may succeed later (nodes come back, a peer
    /// answers, a leader is elected).
    pub fn is_retryable(&self) -> bool {
        match self {
            BlockError::Unavailable { .. }
            | BlockError::TooFewDisks { .. }
            | BlockError::Peer(_)
            | BlockError::Closed => true,
            BlockError::PeerRefused { code, .. } => code.is_retryable(),
            BlockError::Meta(m) => m.is_retryable(),
            _ => false,
        }
    }

    /// A disk is full (here, or the peer's).
    pub fn is_disk_full(&self) -> bool {
        match self {
            BlockError::Store(e) => e.is_disk_full(),
            BlockError::PeerRefused { code, .. } => *code == WireCode::DiskFull,
            _ => false,
        }
    }
}

/// The wire code for a local store failure.
fn wire_code(e: &StoreError) -> WireCode {
    match e {
        StoreError::Refused(_) => WireCode::Refused,
        StoreError::Stopped(_) => WireCode::NotReady,
        StoreError::Io { .. } if e.is_disk_full() => WireCode::DiskFull,
        StoreError::Io { .. } => WireCode::Storage,
    }
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

/// How long one shard transfer to or from a peer may take.
const SHARD_TIMEOUT: Duration = Duration::from_secs(30);
/// A read waits this long for a shard before asking another holder too.
const HEDGE_AFTER: Duration = Duration::from_millis(300);
/// The longest a read waits on one holder for one shard.
const PEER_READ_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a download's liveness probe waits for a holder to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A sealed, encoded block whose shards are not written yet: each shard's
/// buffer has room for its header in front.
struct Encoded {
    id: BlockId,
    plain_len: u32,
    sealed_len: u32,
    shards: Vec<Vec<u8>>,
}

pub struct BlockStore {
    me: NodeId,
    keys: KeyRing,
    local: Arc<LocalShards>,
    net: Option<SharedNet>,
    placement: Arc<Placement>,
    jobs: Semaphore,
    stats: BlockStats,
    /// Work started by reads that outlives them (read repair, the producer
    /// of a download stream): the node waits for it when it stops.
    tasks: tokio_util::task::TaskTracker,
}

impl BlockStore {
    pub fn new(
        me: NodeId,
        keys: KeyRing,
        local: LocalShards,
        placement: Arc<Placement>,
        net: Option<SharedNet>,
        max_jobs: usize,
    ) -> Self {
        Self {
            me,
            keys,
            local: Arc::new(local),
            net,
            placement,
            jobs: Semaphore::new(max_jobs.max(1)),
            stats: BlockStats::default(),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// How blocking work runs on this node (in place in the simulation).
    pub fn offload(&self) -> crate::Offload {
        self.local.offload()
    }

    pub fn user_keys(&self, user: &UserId) -> UserKeys {
        self.keys.user(user)
    }

    pub fn key_ring(&self) -> &KeyRing {
        &self.keys
    }

    /// Work reads started and left running (read repair, download streams).
    pub fn tasks(&self) -> &tokio_util::task::TaskTracker {
        &self.tasks
    }

    pub fn stats(&self) -> &BlockStats {
        &self.stats
    }

    pub fn placement(&self) -> &Arc<Placement> {
        &self.placement
    }

    pub fn node_id(&self) -> NodeId {
        self.me
    }

    pub fn shard_meta(block: &BlockId, stored: &StoredBlock, index: usize) -> ShardMeta {
        ShardMeta {
            block: *block,
            codec: CODEC_RS_SIMD,
            data: stored.data_shards,
            parity: stored.parity_shards,
            index: index as u8,
            sealed_len: stored.sealed_len,
        }
    }

    /// Seals and erasure-codes a chunk unless `exists` says the user already
    /// has it. Blocking.
    fn encode_blocking(
        &self,
        keys: &UserKeys,
        chunk: &[u8],
        profile: ErasureProfile,
        exists: &dyn Fn(&BlockId) -> bool,
    ) -> Result<Result<Encoded, BlockRef>, BlockError> {
        let id = keys.block_id(chunk);
        let reference = BlockRef {
            id,
            size: chunk.len() as u32,
        };
        if exists(&id) {
            self.stats
                .blocks_deduplicated
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Err(reference));
        }
        // Always sampled for compression: whether a body is compressed is
        // the content's choice, so one content seals the same everywhere.
        let sealed = codec::seal(keys, &id, chunk, true).map_err(BlockError::Codec)?;
        let erasure = Erasure::new(profile.data as usize, profile.parity as usize);
        let shards = erasure.encode_with_headroom(&sealed, HEADER_LEN)?;
        Ok(Ok(Encoded {
            id,
            plain_len: chunk.len() as u32,
            sealed_len: sealed.len() as u32,
            shards,
        }))
    }

    /// Stores one chunk: seal and encode on the blocking pool, then write
    /// every shard to its node; durable when this returns.
    pub async fn store_chunk(
        self: &Arc<Self>,
        keys: UserKeys,
        chunk: Bytes,
        exists: Arc<dyn Fn(&BlockId) -> bool + Send + Sync>,
    ) -> Result<StoredChunk, BlockError> {
        let _permit = self.jobs.acquire().await.map_err(|_| BlockError::Closed)?;
        let view = self.placement.view();
        let profile = view.profile;
        let this = self.clone();
        let encoded = self
            .offload()
            .run(move || this.encode_blocking(&keys, &chunk, profile, &*exists))
            .await
            .map_err(|e| BlockError::Task(e.to_string()))??;
        let enc = match encoded {
            Err(reference) => {
                return Ok(StoredChunk {
                    reference,
                    new: None,
                })
            }
            Ok(enc) => enc,
        };
        let mut stored = StoredBlock {
            sealed_len: enc.sealed_len,
            data_shards: profile.data,
            parity_shards: profile.parity,
            key_version: KEY_VERSION,
            layout: view.layout.as_ref().map(|l| l.version).unwrap_or(0),
            nodes: Vec::new(),
        };
        let nodes = self
            .write_shards(&view, &enc.id, &stored, enc.shards)
            .await?;
        stored.nodes = nodes;
        self.stats.blocks_written.fetch_add(1, Ordering::Relaxed);
        self.stats
            .plain_bytes_written
            .fetch_add(enc.plain_len as u64, Ordering::Relaxed);
        self.stats
            .sealed_bytes_written
            .fetch_add(enc.sealed_len as u64, Ordering::Relaxed);
        Ok(StoredChunk {
            reference: BlockRef {
                id: enc.id,
                size: enc.plain_len,
            },
            new: Some(NewBlock {
                id: enc.id,
                plain_len: enc.plain_len,
                stored,
            }),
        })
    }

    /// Writes shard i where the block's write plan puts it: this node's
    /// shards through its disk writers, the others to their nodes, all at
    /// once; each is durable when its write answers, and no two shards of
    /// the block share a disk. Fails below the write quorum (K+1 shards
    /// on distinct disks, so an acknowledged block always has a spare);
    /// otherwise shards that could not be written are recorded as on no
    /// node (`None`) and left to repair. `shards` hold their payload after `HEADER_LEN` free
    /// bytes.
    async fn write_shards(
        &self,
        view: &View,
        id: &BlockId,
        stored: &StoredBlock,
        shards: Vec<Vec<u8>>,
    ) -> Result<Vec<Option<NodeId>>, BlockError> {
        let plan = view.write_plan(id);
        let mut nodes = vec![None; shards.len()];
        let writes = futures::future::join_all(shards.into_iter().enumerate().filter_map(
            |(i, mut record)| {
                let target = (*plan.get(i)?)?;
                let meta = Self::shard_meta(id, stored, i);
                shard::fill_header(&meta, &mut record);
                let record = Bytes::from(record);
                Some(async move {
                    let r = if target == self.me {
                        self.local
                            .put_built(&meta, record)
                            .await
                            .map_err(BlockError::from)
                    } else {
                        self.put_remote(target, &meta, record).await
                    };
                    (i, target, r)
                })
            },
        ));
        let mut full = None;
        for (i, target, r) in writes.await {
            match r {
                Ok(()) => nodes[i] = Some(target),
                Err(e) => {
                    tracing::warn!(block = %id, shard = i, node = %target, error = %e, "shard write failed; left for repair");
                    if e.is_disk_full() {
                        full = Some(e);
                    }
                }
            }
        }
        let written = nodes.iter().flatten().count();
        if written < view.write_quorum() {
            // Short because disks are full: that is what to say.
            if let Some(e) = full {
                return Err(e);
            }
            return Err(BlockError::TooFewDisks {
                block: *id,
                have: written,
                needed: view.write_quorum(),
            });
        }
        Ok(nodes)
    }

    async fn put_remote(
        &self,
        node: NodeId,
        meta: &ShardMeta,
        record: Bytes,
    ) -> Result<(), BlockError> {
        let net = self
            .net
            .as_ref()
            .ok_or(BlockError::Peer(NetError::Closed))?;
        let req = NetRequest::PutShard {
            meta: *meta,
            file: record,
        };
        match net.call(node, req, SHARD_TIMEOUT).await {
            Ok(NetResponse::Done) => Ok(()),
            Ok(NetResponse::Error { code, message }) => Err(BlockError::PeerRefused {
                node,
                code,
                message,
            }),
            Ok(other) => Err(BlockError::PeerRefused {
                node,
                code: WireCode::BadRequest,
                message: format!("unexpected answer {other:?}"),
            }),
            Err(e) => Err(BlockError::Peer(e)),
        }
    }

    /// Writes one shard to `node` and makes it durable.
    pub async fn put_shard(
        &self,
        node: NodeId,
        meta: &ShardMeta,
        payload: &[u8],
    ) -> Result<(), BlockError> {
        let record = Bytes::from(shard::file(meta, payload));
        if node != self.me {
            return self.put_remote(node, meta, record).await;
        }
        Ok(self.local.put_built(meta, record).await?)
    }

    /// Reads and verifies one shard from `node`: its payload, or `None` if
    /// missing or bad.
    pub async fn get_shard(&self, node: NodeId, meta: &ShardMeta) -> Option<Bytes> {
        if node == self.me {
            let store = self.local.clone();
            let meta = *meta;
            return match self.offload().run(move || store.read_any_disk(&meta)).await {
                Ok(Ok(p)) => Some(p),
                Ok(Err(e)) => {
                    if !matches!(e, ShardReadError::Missing) {
                        tracing::warn!(block = %meta.block, shard = meta.index, error = %e, "bad local shard");
                    }
                    None
                }
                Err(_) => None,
            };
        }
        let net = self.net.as_ref()?;
        match net
            .call(node, NetRequest::GetShard { meta: *meta }, SHARD_TIMEOUT)
            .await
        {
            // Verified again here: the bytes crossed the network.
            Ok(NetResponse::Shard(Some(file))) => match shard::verify(&file, meta) {
                Ok(_) => Some(file.slice(HEADER_LEN..)),
                Err(e) => {
                    tracing::warn!(block = %meta.block, shard = meta.index, node = %node, error = %e, "bad shard from peer");
                    None
                }
            },
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(block = %meta.block, shard = meta.index, node = %node, error = %e, "shard fetch failed");
                None
            }
        }
    }

    /// Whether at least K of the block's shards are on nodes that are up
    /// now (a read can succeed without waiting on a node that is down).
    pub fn readable_now(&self, stored: &StoredBlock) -> bool {
        let view = self.placement.view();
        let up = stored
            .nodes
            .iter()
            .flatten()
            .filter(|n| **n == self.me || view.healthy.contains(n))
            .count();
        up >= stored.data_shards as usize
    }

    /// Whether at least K of the block's shards are on nodes in `up` (or
    /// on this node).
    pub fn readable_with(&self, stored: &StoredBlock, up: &HashSet<NodeId>) -> bool {
        let n = stored
            .nodes
            .iter()
            .flatten()
            .filter(|n| **n == self.me || up.contains(n))
            .count();
        n >= stored.data_shards as usize
    }

    /// Of `nodes`, those that answer a probe within a second, asked all at
    /// once and in node order, whatever the health view says: a node paused
    /// a moment ago still looks healthy but does not answer, and one back
    /// from a partition looks down until its next heartbeat.
    pub async fn probe(&self, nodes: std::collections::BTreeSet<NodeId>) -> HashSet<NodeId> {
        let Some(net) = self.net.as_ref() else {
            return nodes.into_iter().filter(|n| *n == self.me).collect();
        };
        let probes = nodes.into_iter().map(|n| async move {
            if n == self.me {
                return Some(n);
            }
            let ping = NetRequest::HasShards { metas: Vec::new() };
            match net.call(n, ping, PROBE_TIMEOUT).await {
                Ok(NetResponse::Has(_)) => Some(n),
                _ => None,
            }
        });
        futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Fetches enough shards to decode (K), asking first the holders that
    /// are up, data shards before parity. A holder that has not answered
    /// after `HEDGE_AFTER` is not waited for alone: the next holder is
    /// asked too, and the first K answers win; no holder is waited on for
    /// more than `PEER_READ_TIMEOUT`. Returns the shards and the indices
    /// found bad or missing (not the slow ones: slowness is not damage).
    pub async fn fetch_shards(
        &self,
        id: &BlockId,
        stored: &StoredBlock,
        skip: Option<usize>,
    ) -> (Vec<Option<Bytes>>, Vec<usize>) {
        let k = stored.data_shards as usize;
        let total = k + stored.parity_shards as usize;
        let healthy = self.placement.view().healthy.clone();
        let up = |n: NodeId| n == self.me || healthy.contains(&n);
        let mut order: Vec<(usize, NodeId)> = (0..total)
            .filter(|i| Some(*i) != skip)
            .filter_map(|i| Some((i, stored.nodes.get(i).copied().flatten()?)))
            .collect();
        // Holders that are up first, then data before parity, then by index.
        order.sort_by_key(|&(i, n)| (!up(n), i >= k, i));
        let mut queue = order.into_iter();
        let fetch = |(i, node): (usize, NodeId)| async move {
            let meta = Self::shard_meta(id, stored, i);
            let got = tokio::time::timeout(PEER_READ_TIMEOUT, self.get_shard(node, &meta)).await;
            (i, node, got)
        };
        let mut running = futures::stream::FuturesUnordered::new();
        for i in queue.by_ref().take(k) {
            running.push(fetch(i));
        }
        let mut shards: Vec<Option<Bytes>> = vec![None; total];
        let mut bad = Vec::new();
        let mut have = 0;
        let hedge = tokio::time::sleep(HEDGE_AFTER);
        tokio::pin!(hedge);
        let mut more = true;
        while have < k {
            tokio::select! {
                biased;
                next = futures::StreamExt::next(&mut running) => match next {
                    None => break,
                    Some((i, _, Ok(Some(p)))) => {
                        shards[i] = Some(p);
                        have += 1;
                    }
                    Some((i, _, Ok(None))) => {
                        bad.push(i);
                        if let Some(j) = queue.next() {
                            running.push(fetch(j));
                        }
                    }
                    Some((i, node, Err(_))) => {
                        tracing::debug!(block = %id, shard = i, node = %node, "shard read timed out");
                        if let Some(j) = queue.next() {
                            running.push(fetch(j));
                        }
                    }
                },
                _ = &mut hedge, if more => {
                    // Someone is slow: ask one more holder, and again later.
                    match queue.next() {
                        Some(j) => {
                            running.push(fetch(j));
                            hedge.as_mut().reset(tokio::time::Instant::now() + HEDGE_AFTER);
                        }
                        None => more = false,
                    }
                }
            }
        }
        (shards, bad)
    }

    /// Reads one block: fetch shards, decode and open on the blocking pool.
    /// Shards found bad are rewritten in the background (read repair).
    pub async fn read_block(
        self: &Arc<Self>,
        keys: UserKeys,
        id: BlockId,
        rec: BlockRecord,
    ) -> Result<Bytes, BlockError> {
        let _permit = self.jobs.acquire().await.map_err(|_| BlockError::Closed)?;
        let (shards, bad) = self.fetch_shards(&id, &rec.stored, None).await;
        let stored = rec.stored.clone();
        let (k, m) = (stored.data_shards as usize, stored.parity_shards as usize);
        let have = shards.iter().filter(|s| s.is_some()).count();
        if have < k {
            return Err(BlockError::Unavailable {
                block: id,
                have,
                needed: k,
            });
        }
        let decode_shards = shards.clone();
        let plain = self
            .offload()
            .run(move || {
                let sealed =
                    Erasure::new(k, m).decode(&decode_shards, stored.sealed_len as usize)?;
                codec::open(&keys, &id, sealed)
                    .map_err(|source| BlockError::Corrupt { block: id, source })
            })
            .await
            .map_err(|e| BlockError::Task(e.to_string()))??;
        if plain.len() != rec.plain_len as usize {
            return Err(BlockError::Corrupt {
                block: id,
                source: CodecError::Malformed("length differs from metadata"),
            });
        }
        self.stats.blocks_read.fetch_add(1, Ordering::Relaxed);
        let repairable: Vec<usize> = bad
            .into_iter()
            .filter(|i| rec.stored.nodes.get(*i).copied().flatten().is_some())
            .collect();
        if !repairable.is_empty() {
            self.stats.degraded_reads.fetch_add(1, Ordering::Relaxed);
            let this = self.clone();
            let stored = rec.stored.clone();
            self.tasks
                .spawn(async move { this.rewrite(&id, &stored, shards, &repairable).await });
        }
        Ok(Bytes::from(plain))
    }

    /// Rebuilds the shards at `indices` from `shards` and puts them back on
    /// their nodes. Failures are logged: the scrubber will try again.
    async fn rewrite(
        &self,
        id: &BlockId,
        stored: &StoredBlock,
        shards: Vec<Option<Bytes>>,
        indices: &[usize],
    ) {
        let erasure = Erasure::new(stored.data_shards as usize, stored.parity_shards as usize);
        let all = match self
            .offload()
            .run(move || erasure.reconstruct_all(&shards))
            .await
        {
            Ok(Ok(all)) => all,
            _ => return,
        };
        for &i in indices {
            let Some(node) = stored.nodes.get(i).copied().flatten() else {
                continue;
            };
            let meta = Self::shard_meta(id, stored, i);
            match self.put_shard(node, &meta, &all[i]).await {
                Ok(()) => {
                    self.stats.shards_repaired.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(block = %id, shard = i, node = %node, "read repair rewrote a shard");
                }
                Err(e) => {
                    tracing::warn!(block = %id, shard = i, node = %node, error = %e, "read repair failed")
                }
            }
        }
    }

    /// Shard `index` of a block rebuilt from the others (repair, scrub).
    pub async fn rebuild_shard(
        &self,
        id: &BlockId,
        stored: &StoredBlock,
        index: usize,
    ) -> Result<Vec<u8>, BlockError> {
        let (shards, _) = self.fetch_shards(id, stored, Some(index)).await;
        let k = stored.data_shards as usize;
        let have = shards.iter().filter(|s| s.is_some()).count();
        if have < k {
            return Err(BlockError::Unavailable {
                block: *id,
                have,
                needed: k,
            });
        }
        let erasure = Erasure::new(k, stored.parity_shards as usize);
        let all = self
            .offload()
            .run(move || erasure.reconstruct_all(&shards))
            .await
            .map_err(|e| BlockError::Task(e.to_string()))??;
        all.into_iter()
            .nth(index)
            .ok_or_else(|| BlockError::Task("shard index out of range".into()))
    }

    /// The local shard directories.
    pub fn local(&self) -> &Arc<LocalShards> {
        &self.local
    }

    /// Serves a shard request from a peer.
    pub async fn handle(&self, req: NetRequest) -> NetResponse {
        let store = self.local.clone();
        match req {
            // Checked by `put` (checksum and identity) before it is stored.
            NetRequest::PutShard { meta, file } => match store.put(&meta, file).await {
                Ok(()) => NetResponse::Done,
                Err(e) => NetResponse::error(wire_code(&e), e.to_string()),
            },
            NetRequest::DeleteShard { block, index } => match store.remove(&block, index).await {
                Ok(()) => NetResponse::Done,
                Err(e) => NetResponse::error(wire_code(&e), e.to_string()),
            },
            NetRequest::GetShard { meta } => {
                let read = self.offload().run(move || store.read_record(&meta)).await;
                match read {
                    Ok(Ok(record)) => NetResponse::Shard(Some(record)),
                    Ok(Err(_)) => NetResponse::Shard(None),
                    Err(e) => NetResponse::error(WireCode::NotReady, e.to_string()),
                }
            }
            NetRequest::HasShards { metas } => {
                let has = self
                    .offload()
                    .run(move || metas.iter().map(|m| store.read_record(m).is_ok()).collect())
                    .await;
                match has {
                    Ok(v) => NetResponse::Has(v),
                    Err(e) => NetResponse::error(WireCode::NotReady, e.to_string()),
                }
            }
            NetRequest::Raft { .. } => {
                NetResponse::error(WireCode::BadRequest, "not a shard request")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Ingest, WholeHash};
    use crate::test_util::noise;
    use cluster_config::ClusterSecret;
    use std::path::PathBuf;

    struct Env {
        _dir: tempfile::TempDir,
        _dirs: Vec<PathBuf>,
        store: Arc<BlockStore>,
        meta: raft_meta::MetaReader,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("disk-{i}")))
            .collect();
        let shards = LocalShards::open(&dirs).unwrap();
        let profile = ErasureProfile { data: 2, parity: 1 };
        let store = Arc::new(BlockStore::new(
            NodeId::FIRST,
            KeyRing::new(ClusterSecret::from_bytes([7; 32])),
            shards,
            Arc::new(crate::placement::Placement::new(
                crate::placement::View::single(NodeId::FIRST, profile, 3),
            )),
            None,
            4,
        ));
        let meta = raft_meta::MetaReader::open_empty(&dir.path().join("meta")).unwrap();
        Env {
            _dir: dir,
            _dirs: dirs,
            store,
            meta,
        }
    }

    fn record(n: &NewBlock) -> BlockRecord {
        BlockRecord {
            refs: 1,
            plain_len: n.plain_len,
            stored: n.stored.clone(),
            created_ms: 0,
        }
    }

    fn held(e: &Env, id: &BlockId) -> usize {
        (0..3u8).filter(|i| e.store.local().exists(id, *i)).count()
    }

    /// Flips a payload byte of a shard's record where it lies on disk.
    fn flip(e: &Env, id: &BlockId, index: u8) {
        use std::os::unix::fs::FileExt;
        let (path, offset, len) = e.store.local().record_place(id, index).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let at = offset + len as u64 / 2;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x55], at).unwrap();
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
            assert_eq!(held(&e, &c.id), 3);
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

    /// Read repair runs in the background: wait (bounded) for its effect.
    async fn eventually(mut cond: impl FnMut() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 5 s");
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
            WholeHash::Plain(Box::default()),
        );
        ing.push(&data).await.unwrap();
        let done = ing.finish().await.unwrap();
        let n = done.new_blocks[0].clone();
        assert_eq!(held(&e, &n.id), 3);
        let local = e.store.local().clone();

        // A lost data shard: read works (degraded) and the shard comes back.
        local.remove(&n.id, 0).await.unwrap();
        assert!(!local.exists(&n.id, 0));
        let got = e
            .store
            .read_block(keys.clone(), n.id, record(&n))
            .await
            .unwrap();
        assert_eq!(&got[..], &data[..]);
        eventually(|| local.exists(&n.id, 0)).await;
        eventually(|| e.store.stats().shards_repaired.load(Ordering::Relaxed) == 1).await;

        // A corrupted shard: detected by checksum, rebuilt the same way.
        let meta1 = BlockStore::shard_meta(&n.id, &n.stored, 1);
        flip(&e, &n.id, 1);
        assert!(local.read_any_disk(&meta1).is_err());
        let got = e
            .store
            .read_block(keys.clone(), n.id, record(&n))
            .await
            .unwrap();
        assert_eq!(&got[..], &data[..]);
        eventually(|| local.read_any_disk(&meta1).is_ok()).await;
        eventually(|| e.store.stats().shards_repaired.load(Ordering::Relaxed) == 2).await;

        // Two of three gone: unreadable, with a clear error.
        local.remove(&n.id, 0).await.unwrap();
        local.remove(&n.id, 1).await.unwrap();
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
    async fn a_block_that_cannot_reach_k_plus_one_disks_is_refused() {
        // One node with two disks and 2+1: the third shard has no disk of
        // its own, so the block would be acknowledged without a spare.
        let dir = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("d{i}"))).collect();
        let store = Arc::new(BlockStore::new(
            NodeId::FIRST,
            KeyRing::new(ClusterSecret::from_bytes([7; 32])),
            LocalShards::open(&dirs).unwrap(),
            Arc::new(crate::placement::Placement::new(
                crate::placement::View::single(
                    NodeId::FIRST,
                    ErasureProfile { data: 2, parity: 1 },
                    2,
                ),
            )),
            None,
            4,
        ));
        let keys = store.user_keys(&UserId([1; 16]));
        let r = store
            .store_chunk(keys, Bytes::from(noise(300_000, 1)), Arc::new(|_| false))
            .await;
        assert!(
            matches!(
                r,
                Err(BlockError::TooFewDisks {
                    have: 2,
                    needed: 3,
                    ..
                })
            ),
            "{r:?}"
        );
        // With a third disk every shard has its own.
        let e = env();
        let keys = e.store.user_keys(&UserId([1; 16]));
        let data = noise(300_000, 2);
        let stored = e
            .store
            .store_chunk(keys, Bytes::from(data), Arc::new(|_| false))
            .await
            .unwrap();
        let id = stored.reference.id;
        assert_eq!(held(&e, &id), 3);
        let disks: std::collections::HashSet<PathBuf> = (0..3u8)
            .map(|i| e.store.local().record_place(&id, i).unwrap().0)
            .map(|p| p.parent().unwrap().parent().unwrap().to_path_buf())
            .collect();
        assert_eq!(disks.len(), 3, "two shards of one block on one disk");
        // A shard written again (a retried upload) lands where it was.
        let again = e
            .store
            .store_chunk(
                e.store.user_keys(&UserId([1; 16])),
                Bytes::from(noise(300_000, 2)),
                Arc::new(|_| false),
            )
            .await
            .unwrap();
        assert_eq!(again.reference.id, id);
        assert_eq!(e.store.local().len(), 3);
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
