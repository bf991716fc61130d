//! Streaming reads of a file version, with a byte range.
//!
//! A producer task fetches blocks in order with a few in flight and sends
//! the requested bytes down a bounded channel; the HTTP body reads from it.
//! If the client goes away the channel closes and the producer stops.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cluster_config::{NodeId, UserId};
use futures::{Stream, StreamExt};
use raft_meta::records::BlockRef;
use raft_meta::MetaReader;
use tokio::sync::mpsc;

use crate::blocks::{BlockError, BlockStore};

/// Blocks fetched ahead of the one being sent.
const PREFETCH: usize = 3;

/// A body stream fed by a producer task. `Sync`, as HTTP bodies need.
pub struct ChannelStream(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Stream for ChannelStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Which blocks cover `[start, end)` of a file, and where to cut them.
pub fn plan(blocks: &[BlockRef], start: u64, end: u64) -> Vec<(BlockRef, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    for b in blocks {
        let b_start = pos;
        let b_end = pos + b.size as u64;
        pos = b_end;
        if b_end <= start || b_start >= end {
            continue;
        }
        let from = start.saturating_sub(b_start) as usize;
        let to = (end.min(b_end) - b_start) as usize;
        out.push((*b, from, to));
    }
    out
}

/// Streams bytes `[start, end)` of a file made of `blocks`. A block that
/// cannot be read ends the stream with an error (a client sees a body cut
/// short); `open_range` checks first.
pub fn stream_range(
    store: Arc<BlockStore>,
    meta: MetaReader,
    user: UserId,
    blocks: Vec<BlockRef>,
    start: u64,
    end: u64,
) -> ChannelStream {
    let (tx, rx) = mpsc::channel(2);
    let pieces = plan(&blocks, start, end);
    let tasks = store.tasks().clone();
    tasks.spawn(produce(store, meta, user, pieces, None, tx));
    ChannelStream(rx)
}

/// Opens `[start, end)` of a file for streaming, or says at once that it
/// cannot be read now: every block must have K shards on nodes that are
/// up, and the first piece is read before this returns. A front end can
/// then answer an error before any byte of the body, instead of a body
/// cut short.
pub async fn open_range(
    store: Arc<BlockStore>,
    meta: MetaReader,
    user: UserId,
    blocks: Vec<BlockRef>,
    start: u64,
    end: u64,
) -> Result<ChannelStream, BlockError> {
    let pieces = plan(&blocks, start, end);
    let mut records = Vec::with_capacity(pieces.len());
    // Holders of blocks the health view cannot read: a node back from a
    // partition is held down until its next heartbeat, so they are asked.
    let mut doubtful = BTreeSet::new();
    for (b, _, _) in &pieces {
        let rec = record(&meta, &user, b)?;
        if !store.readable_now(&rec.stored) {
            doubtful.extend(rec.stored.nodes.iter().copied().flatten());
        }
        records.push(rec);
    }
    if !doubtful.is_empty() {
        let answering = store.probe(doubtful).await;
        for ((b, _, _), rec) in pieces.iter().zip(&records) {
            if !store.readable_now(&rec.stored) && !store.readable_with(&rec.stored, &answering) {
                return Err(unavailable(b, rec));
            }
        }
    }
    // The first block is read below before answering; later ones need
    // their holders to answer now, not only to have beaten recently.
    if records.len() > 1 {
        let holders: BTreeSet<NodeId> = records[1..]
            .iter()
            .flat_map(|r| r.stored.nodes.iter().copied().flatten())
            .collect();
        let up = store.probe(holders).await;
        for ((b, _, _), rec) in pieces.iter().zip(&records).skip(1) {
            if !store.readable_with(&rec.stored, &up) {
                return Err(unavailable(b, rec));
            }
        }
    }
    let mut rest = pieces.into_iter();
    let first = match (rest.next(), records.into_iter().next()) {
        (Some((b, from, to)), Some(rec)) => {
            let data = store.read_block(store.user_keys(&user), b.id, rec).await?;
            Some(data.slice(from..to))
        }
        _ => None,
    };
    let (tx, rx) = mpsc::channel(2);
    let tasks = store.tasks().clone();
    tasks.spawn(produce(store, meta, user, rest.collect(), first, tx));
    Ok(ChannelStream(rx))
}

fn unavailable(b: &BlockRef, rec: &raft_meta::records::BlockRecord) -> BlockError {
    BlockError::Unavailable {
        block: b.id,
        have: 0,
        needed: rec.stored.data_shards as usize,
    }
}

fn record(
    meta: &MetaReader,
    user: &UserId,
    b: &BlockRef,
) -> Result<raft_meta::records::BlockRecord, BlockError> {
    match meta.block(user, &b.id) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(BlockError::Unavailable {
            block: b.id,
            have: 0,
            needed: 1,
        }),
        Err(e) => Err(BlockError::Meta(e)),
    }
}

/// Sends `first` (already read), then the pieces, a few blocks fetched
/// ahead, until the receiver goes away or a block fails.
async fn produce(
    store: Arc<BlockStore>,
    meta: MetaReader,
    user: UserId,
    pieces: Vec<(BlockRef, usize, usize)>,
    first: Option<Bytes>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    if let Some(first) = first {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
    }
    let keys = store.user_keys(&user);
    let mut fetches = futures::stream::iter(pieces)
        .map(|(b, from, to)| {
            let store = store.clone();
            let keys = keys.clone();
            let meta = meta.clone();
            async move {
                let rec = record(&meta, &user, &b)?;
                let data = store.read_block(keys, b.id, rec).await?;
                Ok::<_, BlockError>(data.slice(from..to))
            }
        })
        .buffered(PREFETCH);
    while let Some(piece) = fetches.next().await {
        let item = piece.map_err(|e| {
            tracing::error!(user = %user, error = %e, "download aborted: block unreadable");
            std::io::Error::other(e.to_string())
        });
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
}

/// Reads a whole small file into memory (bounded by the caller).
pub async fn read_all(
    store: Arc<BlockStore>,
    meta: MetaReader,
    user: UserId,
    blocks: Vec<BlockRef>,
) -> Result<Vec<u8>, std::io::Error> {
    let total: u64 = blocks.iter().map(|b| b.size as u64).sum();
    let mut s = stream_range(store, meta, user, blocks, 0, total);
    let mut out = Vec::with_capacity(total as usize);
    while let Some(piece) = s.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_config::BlockId;

    #[test]
    fn range_plan_cuts_the_right_blocks() {
        let b = |n: u8, size: u32| BlockRef {
            id: BlockId([n; 32]),
            size,
        };
        let blocks = [b(1, 10), b(2, 10), b(3, 5)];
        let ids = |p: Vec<(BlockRef, usize, usize)>| {
            p.into_iter()
                .map(|(r, f, t)| (r.id.0[0], f, t))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(plan(&blocks, 0, 25)),
            vec![(1, 0, 10), (2, 0, 10), (3, 0, 5)]
        );
        assert_eq!(ids(plan(&blocks, 5, 15)), vec![(1, 5, 10), (2, 0, 5)]);
        assert_eq!(ids(plan(&blocks, 10, 11)), vec![(2, 0, 1)]);
        assert_eq!(ids(plan(&blocks, 24, 25)), vec![(3, 4, 5)]);
        assert!(plan(&blocks, 25, 25).is_empty());
        assert!(plan(&[], 0, 0).is_empty());
    }
}
