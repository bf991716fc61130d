//! Streaming ingest: bytes in, durable blocks out.
//!
//! Bytes are buffered until at least two maximum chunks are available, cut
//! into content-defined chunks on the blocking pool, and each chunk is stored
//! (dedup check, seal, erasure-code, write) with a bounded number in flight.
//! Memory per ingest is bounded by the buffer (≤ 8 MiB) plus the chunks in
//! flight, whatever the size of the file.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_config::{BlockId, UserId};
use raft_meta::hashing::{TreeHashState, TreeHasher};
use raft_meta::records::BlockRef;
use raft_meta::types::NewBlock;
use raft_meta::MetaReader;
use tokio::task::JoinHandle;

use crate::block::chunk::{self, MAX_CHUNK};
use crate::blocks::{BlockError, BlockStore, StoredChunk};
use crate::keys::UserKeys;

/// Chunks of one ingest being stored at the same time.
const MAX_IN_FLIGHT: usize = 4;
/// Buffer this much before cutting, so every cut but the last is final.
const CUT_AT: usize = 2 * MAX_CHUNK;

/// How the whole content is hashed while it streams through.
pub enum WholeHash {
    /// A plain BLAKE3 hasher (the content arrives in one request).
    Plain(Box<blake3::Hasher>),
    /// A resumable tree hasher (the content arrives over many requests).
    Tree(TreeHasher),
}

/// Result of an ingest that reached the end of the content.
#[derive(Debug)]
pub struct Ingested {
    pub chunks: Vec<BlockRef>,
    pub new_blocks: Vec<NewBlock>,
    pub size: u64,
    pub content_hash: Option<[u8; 32]>,
    pub hash_state: Option<TreeHashState>,
}

/// Result of an ingest stopped before the end: finished chunks, and the bytes
/// after the last boundary stored as tail blocks.
#[derive(Debug)]
pub struct Partial {
    pub chunks: Vec<BlockRef>,
    pub tail: Vec<BlockRef>,
    pub new_blocks: Vec<NewBlock>,
    pub hash_state: Option<TreeHashState>,
}

type Job = JoinHandle<Result<StoredChunk, BlockError>>;

pub struct Ingest {
    store: Arc<BlockStore>,
    keys: UserKeys,
    exists: Arc<dyn Fn(&BlockId) -> bool + Send + Sync>,
    buf: BytesMut,
    hash: WholeHash,
    hashed: u64,
    in_flight: VecDeque<Job>,
    chunks: Vec<BlockRef>,
    new_blocks: Vec<NewBlock>,
}

impl Ingest {
    pub fn new(store: Arc<BlockStore>, meta: MetaReader, user: UserId, hash: WholeHash) -> Self {
        let keys = store.user_keys(&user);
        let exists: Arc<dyn Fn(&BlockId) -> bool + Send + Sync> =
            Arc::new(move |id: &BlockId| matches!(meta.block(&user, id), Ok(Some(_))));
        Self {
            store,
            keys,
            exists,
            buf: BytesMut::new(),
            hash,
            hashed: 0,
            in_flight: VecDeque::new(),
            chunks: Vec::new(),
            new_blocks: Vec::new(),
        }
    }

    /// Stores every chunk as a new block, even one the user already has:
    /// for writes into someone else's tree through a share, so that the
    /// writer learns nothing of what the owner stores.
    pub fn without_dedup(mut self) -> Self {
        self.exists = Arc::new(|_: &BlockId| false);
        self
    }

    /// Makes room for a body of `len` bytes (up to what is buffered before
    /// a cut), so the buffer does not grow by copying as the body arrives.
    pub fn expect(&mut self, len: u64) {
        let want = (len as usize).min(CUT_AT + MAX_CHUNK);
        self.buf.reserve(want.saturating_sub(self.buf.len()));
    }

    /// Bytes of content hashed so far by this ingest.
    pub fn hashed(&self) -> u64 {
        self.hashed
    }

    /// New content: hashed and chunked.
    pub async fn push(&mut self, data: &[u8]) -> Result<(), BlockError> {
        match &mut self.hash {
            WholeHash::Plain(h) => {
                h.update(data);
            }
            WholeHash::Tree(t) => t
                .update(data)
                .map_err(|e| BlockError::Task(format!("content hash: {e}")))?,
        }
        self.hashed += data.len() as u64;
        self.push_rechunk(data).await
    }

    /// Content hashed earlier (an upload's stored tail): chunked only.
    pub async fn push_rechunk(&mut self, data: &[u8]) -> Result<(), BlockError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CUT_AT {
            self.cut(false).await?;
        }
        Ok(())
    }

    async fn cut(&mut self, eof: bool) -> Result<(), BlockError> {
        let bytes = self.buf.split().freeze();
        let for_cut = bytes.clone();
        let lens = self
            .store
            .offload()
            .run(move || chunk::cut(&for_cut, eof))
            .await
            .map_err(|e| BlockError::Task(e.to_string()))?;
        let mut at = 0;
        for len in lens {
            self.dispatch(bytes.slice(at..at + len)).await?;
            at += len;
        }
        self.buf.extend_from_slice(&bytes[at..]);
        Ok(())
    }

    async fn dispatch(&mut self, chunk: Bytes) -> Result<(), BlockError> {
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.collect_one().await?;
        }
        let store = self.store.clone();
        let keys = self.keys.clone();
        let exists = self.exists.clone();
        // Owned by the block store's tracker too: a dropped ingest (the
        // client went away) leaves its chunks to finish, and a stopping
        // node waits for them.
        let tasks = self.store.tasks().clone();
        self.in_flight
            .push_back(tasks.spawn(async move { store.store_chunk(keys, chunk, exists).await }));
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), BlockError> {
        let Some(job) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let stored = job.await.map_err(|e| BlockError::Task(e.to_string()))??;
        self.chunks.push(stored.reference);
        if let Some(n) = stored.new {
            self.new_blocks.push(n);
        }
        Ok(())
    }

    async fn drain_jobs(&mut self) -> Result<(), BlockError> {
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        Ok(())
    }

    /// Cuts and stores everything; every block is durable on return.
    pub async fn finish(mut self) -> Result<Ingested, BlockError> {
        self.cut(true).await?;
        self.drain_jobs().await?;
        let size = self.chunks.iter().map(|c| c.size as u64).sum();
        let (content_hash, hash_state) = match &self.hash {
            WholeHash::Plain(h) => (Some(*h.finalize().as_bytes()), None),
            WholeHash::Tree(t) => (None, Some(t.state().clone())),
        };
        Ok(Ingested {
            chunks: std::mem::take(&mut self.chunks),
            new_blocks: std::mem::take(&mut self.new_blocks),
            size,
            content_hash,
            hash_state,
        })
    }

    /// Stores the finished chunks, and the rest (which more content may yet
    /// extend) as tail blocks; every block is durable on return.
    pub async fn finish_partial(mut self) -> Result<Partial, BlockError> {
        if self.buf.len() >= CUT_AT {
            self.cut(false).await?;
        }
        let rest = self.buf.split().freeze();
        let chunk_count = {
            // Tail pieces go through the same store path as chunks.
            let mut n = 0;
            for piece in rest.chunks(2 * MAX_CHUNK) {
                self.dispatch(rest.slice_ref(piece)).await?;
                n += 1;
            }
            n
        };
        self.drain_jobs().await?;
        let split = self.chunks.len() - chunk_count;
        let tail = self.chunks.split_off(split);
        let hash_state = match &self.hash {
            WholeHash::Plain(_) => None,
            WholeHash::Tree(t) => Some(t.state().clone()),
        };
        Ok(Partial {
            chunks: std::mem::take(&mut self.chunks),
            tail,
            new_blocks: std::mem::take(&mut self.new_blocks),
            hash_state,
        })
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // An abandoned ingest stops its pending stores; what they wrote is
        // unreferenced and left for garbage collection.
        for job in self.in_flight.drain(..) {
            job.abort();
        }
    }
}
