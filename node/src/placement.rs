//! Where shards go: rendezvous hashing over the active members of the
//! layout, spreading a block's shards over distinct zones when zones are set.
//!
//! Every block's K+M shards go to K+M distinct nodes. New blocks go to the
//! first K+M *healthy* nodes of the block's ranking (so writes go on while a
//! node is down); the shards meant for nodes that are down go meanwhile to
//! other disks of the live nodes (never two shards of a block on one
//! disk), so an acknowledged block always has its spare. The repair
//! coordinator later moves shards towards the block's *desired* set, the
//! top K+M active nodes regardless of health: the shards whose node left
//! that set, and the extra shards live nodes held for nodes that were down.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use cluster_config::{BlockId, ErasureProfile, NodeId};
use raft_meta::records::{LayoutRecord, MemberState};

/// A consistent picture of the layout and who is up, used for one decision.
#[derive(Debug, Clone)]
pub struct View {
    pub me: NodeId,
    /// `None`: a single-node drive, every shard local.
    pub layout: Option<LayoutRecord>,
    pub profile: ErasureProfile,
    pub healthy: HashSet<NodeId>,
    /// Shard disks of each node, as its heartbeats say (1 when unknown).
    pub disks: HashMap<NodeId, usize>,
    /// Shards, on distinct disks, a new block needs before it is
    /// acknowledged (`None`: K+1).
    pub min_write: Option<u8>,
}

fn score(block: &BlockId, node: NodeId) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"strata placement v1");
    h.update(block.as_bytes());
    h.update(&node.get().to_le_bytes());
    let mut w = [0u8; 8];
    w.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(w)
}

impl View {
    /// A single-node drive with `disks` shard disks.
    pub fn single(me: NodeId, profile: ErasureProfile, disks: usize) -> Self {
        Self {
            me,
            layout: None,
            profile,
            healthy: HashSet::from([me]),
            disks: HashMap::from([(me, disks)]),
            min_write: None,
        }
    }

    fn disks_of(&self, node: NodeId) -> usize {
        self.disks.get(&node).copied().unwrap_or(1).max(1)
    }

    pub fn is_cluster(&self) -> bool {
        self.layout.is_some()
    }

    /// Active members in the block's rendezvous order, zones interleaved
    /// round by round: the best node of each zone, then the second best of
    /// each, and so on (zones in the order of their best node). Any K+M
    /// prefix then puts at most ceil((K+M)/zones) shards in one zone, so
    /// with enough zones the loss of a whole zone costs at most M shards.
    /// A node without a zone is a zone of its own: with no zones at all the
    /// ranking is the plain rendezvous order.
    pub fn ranking(&self, block: &BlockId) -> Vec<NodeId> {
        let Some(layout) = &self.layout else {
            return vec![self.me];
        };
        let mut members: Vec<(u64, NodeId, Option<&str>)> = layout
            .members
            .iter()
            .filter(|m| m.state == MemberState::Active)
            .map(|m| (score(block, m.id), m.id, m.zone.as_deref()))
            .collect();
        members.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        // Each member's rank inside its zone (0 for the zone's best node);
        // a stable sort by that rank keeps the score order within a round.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut ranked: Vec<(usize, NodeId)> = members
            .into_iter()
            .map(|(_, id, zone)| {
                let round = zone.map_or(0, |z| {
                    let next = seen.entry(z).or_default();
                    *next += 1;
                    *next - 1
                });
                (round, id)
            })
            .collect();
        ranked.sort_by_key(|(round, _)| *round);
        ranked.into_iter().map(|(_, id)| id).collect()
    }

    /// Nodes for the shards of a new block: shard i goes to entry i. On a
    /// single node every shard is local; in a cluster the list may be
    /// shorter than K+M when too few nodes are up.
    pub fn write_targets(&self, block: &BlockId) -> Vec<NodeId> {
        let n = self.profile.total();
        if !self.is_cluster() {
            return vec![self.me; n];
        }
        self.ranking(block)
            .into_iter()
            .filter(|id| self.healthy.contains(id))
            .take(n)
            .collect()
    }

    /// The block's desired set: the top K+M active nodes.
    pub fn desired(&self, block: &BlockId, total: usize) -> Vec<NodeId> {
        if !self.is_cluster() {
            return vec![self.me; total];
        }
        self.ranking(block).into_iter().take(total).collect()
    }

    /// The node of each shard of a new block (`None`: nowhere to put it
    /// now). Shard i goes to the i-th healthy node of the block's ranking;
    /// the shards left over when fewer than K+M nodes are up (on a single
    /// node: all but the first) go to other disks of those nodes, best
    /// ranked first. A node keeps shard i on its disk `i mod disks` (in
    /// the block's order of its disks, `LocalShards::disk_for`), so a node
    /// takes another shard only if its index lands on a disk that holds
    /// none of the block: two shards of a block never share a disk.
    pub fn write_plan(&self, block: &BlockId) -> Vec<Option<NodeId>> {
        let n = self.profile.total();
        let targets = if self.is_cluster() {
            self.write_targets(block)
        } else {
            vec![self.me]
        };
        let mut plan: Vec<Option<NodeId>> = (0..n).map(|i| targets.get(i).copied()).collect();
        // The disks (index residues) each target uses.
        let mut used: Vec<(NodeId, usize, Vec<usize>)> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let d = self.disks_of(*t);
                (*t, d, vec![i % d])
            })
            .collect();
        for (i, slot) in plan.iter_mut().enumerate().skip(targets.len()) {
            if let Some((node, d, residues)) = used
                .iter_mut()
                .find(|(_, d, residues)| !residues.contains(&(i % *d)))
            {
                residues.push(i % *d);
                *slot = Some(*node);
            }
        }
        plan
    }

    /// Shards, each on its own disk, that must be durable for a block to
    /// be acknowledged: K+1 (a spare against one more failure), or the
    /// configured number, never more than K+M.
    pub fn write_quorum(&self) -> usize {
        let (k, m) = (self.profile.data as usize, self.profile.parity as usize);
        let floor = if m >= 1 { k + 1 } else { k };
        let want = self.min_write.map(usize::from).unwrap_or(floor);
        want.clamp(floor, k + m)
    }
}

/// The current view, swapped whole when the layout or health changes.
#[derive(Debug)]
pub struct Placement(RwLock<Arc<View>>);

impl Placement {
    pub fn new(view: View) -> Self {
        Self(RwLock::new(Arc::new(view)))
    }

    pub fn view(&self) -> Arc<View> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut View)) {
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::n;
    use raft_meta::records::LayoutMember;

    fn layout(count: u64, zones: bool) -> LayoutRecord {
        LayoutRecord {
            version: 1,
            members: (1..=count)
                .map(|id| LayoutMember {
                    id: n(id),
                    peer_id: String::new(),
                    p2p_addr: String::new(),
                    api_url: String::new(),
                    zone: zones.then(|| format!("z{}", id % 3)),
                    state: MemberState::Active,
                })
                .collect(),
            data_shards: 2,
            parity_shards: 1,
        }
    }

    fn view(count: u64, zones: bool) -> View {
        View {
            me: n(1),
            layout: Some(layout(count, zones)),
            profile: ErasureProfile { data: 2, parity: 1 },
            healthy: (1..=count).map(n).collect(),
            disks: HashMap::new(),
            min_write: None,
        }
    }

    fn block(i: u32) -> BlockId {
        BlockId(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn shards_on_distinct_nodes_and_evenly_spread() {
        let v = view(6, false);
        let mut load = [0usize; 7];
        for i in 0..6000 {
            let t = v.write_targets(&block(i));
            assert_eq!(t.len(), 3);
            let distinct: HashSet<_> = t.iter().collect();
            assert_eq!(distinct.len(), 3);
            for node in t {
                load[node.get() as usize] += 1;
            }
        }
        for (n, l) in load.iter().enumerate().skip(1) {
            assert!((2700..3300).contains(l), "node {n}: {l}");
        }
    }

    #[test]
    fn zones_are_spread_first() {
        let v = view(6, true);
        for i in 0..500 {
            let t = v.write_targets(&block(i));
            let zones: HashSet<u64> = t.iter().map(|id| id.get() % 3).collect();
            assert_eq!(zones.len(), 3, "block {i} placed {t:?}");
        }
    }

    #[test]
    fn no_zone_holds_more_than_its_share() {
        // Nine nodes in three zones, 4+2: at most two shards per zone, so
        // losing any one zone loses at most M = 2 shards of any block.
        let mut v = view(9, true);
        v.profile = ErasureProfile { data: 4, parity: 2 };
        let mut per_node = [0usize; 10];
        for i in 0..3000 {
            let t = v.write_targets(&block(i));
            assert_eq!(t.iter().collect::<HashSet<_>>().len(), 6);
            for z in 0..3 {
                let in_zone = t.iter().filter(|id| id.get() % 3 == z).count();
                assert_eq!(in_zone, 2, "block {i} placed {t:?}");
            }
            for node in t {
                per_node[node.get() as usize] += 1;
            }
        }
        // Still spread evenly over the nodes of each zone.
        for (n, l) in per_node.iter().enumerate().skip(1) {
            assert!((1800..2200).contains(l), "node {n}: {l}");
        }
    }

    #[test]
    fn without_zones_the_ranking_is_the_rendezvous_order() {
        let v = view(7, false);
        for i in 0..200 {
            let mut by_score: Vec<NodeId> = (1..=7).map(n).collect();
            by_score.sort_by_key(|id| std::cmp::Reverse(score(&block(i), *id)));
            assert_eq!(v.ranking(&block(i)), by_score);
        }
    }

    #[test]
    fn a_down_node_is_skipped_and_adding_a_node_moves_few() {
        let mut v = view(4, false);
        v.healthy.remove(&n(2));
        for i in 0..200 {
            assert!(!v.write_targets(&block(i)).contains(&n(2)));
        }
        // Adding a fifth node changes the desired set of about 3/5 of the
        // blocks by exactly one node.
        let before = view(4, false);
        let after = view(5, false);
        let mut moved = 0;
        let blocks = 5000;
        for i in 0..blocks {
            let a: HashSet<_> = before.desired(&block(i), 3).into_iter().collect();
            let b: HashSet<_> = after.desired(&block(i), 3).into_iter().collect();
            let gone = a.difference(&b).count();
            assert!(gone <= 1);
            moved += gone;
        }
        let ideal = blocks as f64 * 3.0 / 5.0;
        assert!(
            (moved as f64 - ideal).abs() < ideal * 0.1,
            "moved {moved}, ideal {ideal}"
        );
    }

    #[test]
    fn quorum_keeps_a_spare() {
        assert_eq!(view(3, false).write_quorum(), 3);
        let mut v = view(6, false);
        v.profile = ErasureProfile { data: 4, parity: 2 };
        assert_eq!(v.write_quorum(), 5);
        v.min_write = Some(6);
        assert_eq!(v.write_quorum(), 6);
        // Never below K+1, never above K+M.
        v.min_write = Some(2);
        assert_eq!(v.write_quorum(), 5);
        v.min_write = Some(9);
        assert_eq!(v.write_quorum(), 6);
        v.profile = ErasureProfile { data: 1, parity: 1 };
        v.min_write = None;
        assert_eq!(v.write_quorum(), 2);
        assert_eq!(
            View::single(n(1), ErasureProfile { data: 2, parity: 1 }, 3).write_quorum(),
            3
        );
    }

    #[test]
    fn shards_of_down_nodes_go_to_spare_disks_of_live_ones() {
        // Five nodes, 3+2, two down, two disks each: every shard has a
        // place, three on the live nodes' first disks and two on second
        // disks, no node taking more than its disks.
        let mut v = view(5, false);
        v.profile = ErasureProfile { data: 3, parity: 2 };
        v.healthy = HashSet::from([n(1), n(3), n(5)]);
        v.disks = (1..=5).map(|i| (n(i), 2)).collect();
        for i in 0..300 {
            let plan = v.write_plan(&block(i));
            assert_eq!(plan.len(), 5);
            assert!(plan.iter().all(|p| p.is_some()), "{plan:?}");
            let mut per: HashMap<NodeId, usize> = HashMap::new();
            for node in plan.iter().flatten() {
                assert!(v.healthy.contains(node));
                *per.entry(*node).or_default() += 1;
            }
            assert!(per.values().all(|c| *c <= 2), "{plan:?}");
            assert_eq!(per.len(), 3);
        }
        // Each node's shards land on distinct disks (index mod disks).
        for i in 0..300 {
            let plan = v.write_plan(&block(i));
            for node in [n(1), n(3), n(5)] {
                let residues: Vec<usize> = plan
                    .iter()
                    .enumerate()
                    .filter(|(_, on)| **on == Some(node))
                    .map(|(i, _)| i % 2)
                    .collect();
                let distinct: HashSet<_> = residues.iter().collect();
                assert_eq!(distinct.len(), residues.len(), "{plan:?}");
            }
        }
        // A single node keeps as many shards as it has disks.
        let mut single = View::single(n(1), ErasureProfile { data: 2, parity: 1 }, 2);
        assert_eq!(
            single.write_plan(&block(1)),
            vec![Some(n(1)), Some(n(1)), None]
        );
        single.disks.insert(n(1), 3);
        assert_eq!(single.write_plan(&block(1)), vec![Some(n(1)); 3]);
        // One disk each: two shards have no place; the write stops short
        // of K+1 = 4 and is refused by the block store.
        v.disks = (1..=5).map(|i| (n(i), 1)).collect();
        let plan = v.write_plan(&block(7));
        assert_eq!(plan.iter().flatten().count(), 3);
        assert!(plan.iter().flatten().count() < v.write_quorum());
        // All up: one shard per node, as before.
        let mut all = view(5, false);
        all.profile = ErasureProfile { data: 3, parity: 2 };
        all.disks = (1..=5).map(|i| (n(i), 2)).collect();
        let plan = all.write_plan(&block(7));
        assert_eq!(plan.iter().flatten().collect::<HashSet<_>>().len(), 5);
    }
}
