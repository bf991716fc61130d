//! The fault schedule: a pure function of the seed, so a run can be
//! replayed. What a fault hits at run time (which node leads, which files
//! a disk holds) is looked up when it fires, from the same seeded salt.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Every fault the harness knows, by its report name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL of a node, restarted after the hold.
    Kill,
    /// SIGKILL of whichever node leads the metadata group.
    KillLeader,
    /// SIGSTOP, then SIGCONT after the hold.
    Pause,
    /// Bytes flipped in one of a node's shard files.
    Bitrot,
    /// A node stopped, one of its shard directories emptied (a replaced
    /// disk), the node started again.
    WipedDisk,
    /// Traffic between two groups of nodes dropped both ways.
    Partition,
    /// Traffic from one node to another dropped, one way.
    Loss,
    /// Delay added to one node's traffic.
    Latency,
    /// The small shard disk of one node filled to the last byte, then
    /// emptied again.
    DiskFull,
    /// A node's wall clock jumped forward or back, then set right.
    ClockJump,
    /// Every fsync of a node made to wait (a failing or overloaded disk),
    /// then fast again.
    SlowDisk,
}

impl FaultKind {
    /// The kinds the harness injects, in report order.
    pub const ALL: [FaultKind; 11] = [
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Loss,
        FaultKind::Latency,
        FaultKind::Bitrot,
        FaultKind::WipedDisk,
        FaultKind::DiskFull,
        FaultKind::SlowDisk,
        FaultKind::ClockJump,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::KillLeader => "kill_leader",
            FaultKind::Pause => "pause",
            FaultKind::Bitrot => "bitrot",
            FaultKind::WipedDisk => "wiped_disk",
            FaultKind::Partition => "partition",
            FaultKind::Loss => "loss",
            FaultKind::Latency => "latency",
            FaultKind::DiskFull => "disk_full",
            FaultKind::ClockJump => "clock_jump",
            FaultKind::SlowDisk => "slow_disk",
        }
    }

    /// Takes a node out of service while it holds.
    pub fn takes_a_node_down(self) -> bool {
        matches!(
            self,
            FaultKind::Kill | FaultKind::KillLeader | FaultKind::Pause | FaultKind::WipedDisk
        )
    }

    /// Destroys stored shards (the cluster must rebuild them).
    pub fn destroys_shards(self) -> bool {
        matches!(self, FaultKind::Bitrot | FaultKind::WipedDisk)
    }

    /// Needs packet filtering on the harness's own loopback.
    pub fn is_network(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::Loss | FaultKind::Latency
        )
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// Its place in the schedule (the report's `step`).
    pub step: usize,
    /// Milliseconds after the workload starts.
    pub at_ms: u64,
    pub kind: FaultKind,
    /// The node it hits (1-based; `kill_leader` looks the leader up).
    pub node: u64,
    /// A second node (the other side of a one-way loss).
    pub peer: u64,
    /// How long it lasts before the harness heals it.
    pub hold_ms: u64,
    /// Chooses the disk, the file and the bytes of a disk fault.
    pub salt: u64,
}

/// The faults of a run of `seconds` on `nodes` nodes, from `seed`: one
/// every 1.5–4.5 s, the first ones going through every kind of `kinds`
/// once (in a seeded order), so even a short run injects each kind.
pub fn schedule(seed: u64, nodes: u64, seconds: u64, kinds: &[FaultKind]) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6661_756c_7473);
    let mut out = Vec::new();
    if kinds.is_empty() || nodes == 0 {
        return out;
    }
    let mut first: Vec<FaultKind> = kinds.to_vec();
    // A seeded shuffle (Fisher–Yates).
    for i in (1..first.len()).rev() {
        let j = rng.random_range(0..=i);
        first.swap(i, j);
    }
    let end_ms = seconds * 1000;
    // The first fault after the cluster has taken some writes.
    let mut at_ms = 1_000 + rng.random_range(0..1_000);
    while at_ms < end_ms.saturating_sub(1_000) {
        let step = out.len();
        let kind = match first.get(step) {
            Some(k) => *k,
            None => kinds[rng.random_range(0..kinds.len())],
        };
        let node = rng.random_range(1..=nodes);
        let mut peer = rng.random_range(1..=nodes);
        if peer == node {
            peer = peer % nodes + 1;
        }
        let hold_ms = match kind {
            FaultKind::Bitrot => 0,
            FaultKind::WipedDisk => rng.random_range(200..1_500),
            // Sometimes past the health timeout, sometimes within it.
            _ => rng.random_range(500..6_000),
        };
        out.push(Planned {
            step,
            at_ms,
            kind,
            node,
            peer,
            hold_ms,
            salt: rng.random(),
        });
        at_ms += rng.random_range(1_500..4_500);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = schedule(7, 5, 120, &FaultKind::ALL);
        let b = schedule(7, 5, 120, &FaultKind::ALL);
        assert_eq!(a, b);
        let c = schedule(8, 5, 120, &FaultKind::ALL);
        assert_ne!(a, c);
    }

    #[test]
    fn every_kind_comes_early_and_targets_are_real_nodes() {
        for seed in 0..50 {
            let s = schedule(seed, 5, 60, &FaultKind::ALL);
            let early: std::collections::HashSet<_> = s
                .iter()
                .take(FaultKind::ALL.len())
                .map(|p| p.kind)
                .collect();
            assert_eq!(early.len(), FaultKind::ALL.len(), "seed {seed}");
            for p in &s {
                assert!((1..=5).contains(&p.node) && (1..=5).contains(&p.peer));
                assert_ne!(p.node, p.peer);
                assert!(p.at_ms < 60_000);
            }
            assert!(s.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        }
    }

    #[test]
    fn only_the_kinds_asked_for() {
        let s = schedule(1, 3, 60, &[FaultKind::Pause]);
        assert!(!s.is_empty());
        assert!(s.iter().all(|p| p.kind == FaultKind::Pause));
        assert!(schedule(1, 3, 60, &[]).is_empty());
    }

    #[test]
    fn names_round_trip() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::parse(k.name()), Some(k));
        }
        assert_eq!(FaultKind::parse("meteor"), None);
    }
}
