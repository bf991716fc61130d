//! The shard census behind `verify`: every holder the metadata names is
//! asked whether it has each shard, intact. The admin API answers with it,
//! and the chaos harness's simulation checks repair with the same count.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use cluster_config::{BlockId, NodeId, UserId};
use raft_meta::{MetaError, MetaReader};
use serde::Serialize;

use crate::block::shard::ShardMeta;
use crate::blocks::BlockStore;
use crate::net::{NetRequest, NetResponse, SharedNet};

/// Blocks read from the metadata per round of questions.
const PAGE: usize = 256;
/// How long one holder may take to answer for a page.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Census {
    pub blocks: u64,
    pub shards_expected: u64,
    pub shards_present: u64,
    pub shards_unplaced: u64,
    pub blocks_complete: u64,
    /// Blocks with fewer than K+M intact shards.
    pub blocks_short: u64,
    /// Blocks with fewer than K intact shards: unreadable.
    pub blocks_lost: u64,
    /// Files using such blocks (`user:/path`), the first 100.
    pub lost_files: Vec<String>,
    /// Shards per node, as the metadata places them.
    pub per_node: BTreeMap<NodeId, u64>,
}

impl Census {
    /// Every placed shard is where the metadata says, intact.
    pub fn complete(&self) -> bool {
        self.shards_present == self.shards_expected
            && self.blocks_lost == 0
            && self.shards_unplaced == 0
    }
}

/// Counts the shards of every block in `reader` (a linearizable reader for
/// an answer that reflects every acknowledged write). `net` is `None` on a
/// single node.
pub async fn census(
    reader: &MetaReader,
    blocks: &BlockStore,
    net: Option<&SharedNet>,
    me: NodeId,
) -> Result<Census, MetaError> {
    let mut census = Census::default();
    let mut lost: BTreeMap<UserId, HashSet<BlockId>> = BTreeMap::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = reader.blocks_after(after.as_deref(), PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        let mut asks: BTreeMap<NodeId, Vec<(usize, ShardMeta)>> = BTreeMap::new();
        for (bi, e) in page.iter().enumerate() {
            census.blocks += 1;
            for (i, node) in e.record.stored.nodes.iter().enumerate() {
                census.shards_expected += 1;
                let Some(node) = *node else {
                    census.shards_unplaced += 1;
                    continue;
                };
                *census.per_node.entry(node).or_default() += 1;
                asks.entry(node)
                    .or_default()
                    .push((bi, BlockStore::shard_meta(&e.block, &e.record.stored, i)));
            }
        }
        let mut present = vec![0usize; page.len()];
        for (node, list) in asks {
            let metas: Vec<_> = list.iter().map(|(_, m)| *m).collect();
            let n = list.len();
            let has: Vec<bool> = if node == me {
                match blocks.handle(NetRequest::HasShards { metas }).await {
                    NetResponse::Has(h) => h,
                    _ => vec![false; n],
                }
            } else {
                match net {
                    Some(net) => match net
                        .call(node, NetRequest::HasShards { metas }, ASK_TIMEOUT)
                        .await
                    {
                        Ok(NetResponse::Has(h)) => h,
                        _ => vec![false; n],
                    },
                    None => vec![false; n],
                }
            };
            for ((bi, _), ok) in list.iter().zip(has) {
                if ok {
                    present[*bi] += 1;
                    census.shards_present += 1;
                }
            }
        }
        for (bi, e) in page.iter().enumerate() {
            if present[bi] == e.record.stored.nodes.len() {
                census.blocks_complete += 1;
            } else {
                census.blocks_short += 1;
            }
            if present[bi] < e.record.stored.data_shards as usize {
                census.blocks_lost += 1;
                let set = lost.entry(e.user).or_default();
                if set.len() < 10_000 {
                    set.insert(e.block);
                }
            }
        }
    }
    for (user, blocks) in &lost {
        if census.lost_files.len() >= crate::health::MAX_NAMED_FILES {
            break;
        }
        let name = reader
            .user(user)?
            .map(|u| u.username)
            .unwrap_or_else(|| user.to_string());
        let room = crate::health::MAX_NAMED_FILES - census.lost_files.len();
        for path in reader.files_using(user, blocks, room)? {
            census.lost_files.push(format!("{name}:{path}"));
        }
    }
    Ok(census)
}
