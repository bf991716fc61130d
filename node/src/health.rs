//! Node health from gossiped heartbeats.
//!
//! Every node publishes a heartbeat every half second; a node not heard
//! from within the health timeout is down. Heartbeats also carry what
//! the admin API aggregates: the sender's repair counters, and on the
//! leader, the repair backlog of the whole cluster.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cluster_config::{NodeId, SharedClock};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::net::SharedNet;

pub const TOPIC: &str = "health";
const BEAT_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Heartbeat {
    pub node: NodeId,
    /// Shards this node knows it should hold but does not (yet).
    pub local_missing: u64,
    pub shards_scrubbed: u64,
    pub shards_rebuilt: u64,
    /// Set by the repair coordinator (the leader).
    pub repair: Option<RepairStatus>,
    /// Shard disks of this node (writes put at most one shard of a block on
    /// each).
    pub disks: u16,
}

impl Heartbeat {
    /// What `node` says before it has anything to report.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            local_missing: 0,
            shards_scrubbed: 0,
            shards_rebuilt: 0,
            repair: None,
            disks: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepairStatus {
    /// Shards misplaced or missing as of the last full scan, minus those
    /// fixed since. Meaningless until `scans_completed` is above zero.
    pub backlog: u64,
    pub repaired_total: u64,
    pub moved_total: u64,
    pub scans_completed: u64,
    pub blocks_scanned: u64,
    /// The layout version the last completed scan planned against.
    pub layout_version: u64,
    /// Blocks with fewer than K+M shards on live nodes, as of the last scan.
    pub blocks_short: u64,
    /// Blocks with fewer than K shards on live nodes: unreadable until
    /// their nodes return, lost if they do not.
    pub blocks_unreadable: u64,
    /// Files that use an unreadable block (`user:/path`), at most
    /// `MAX_NAMED_FILES`.
    pub unreadable_files: Vec<String>,
    /// When the coordinator last planned or finished a repair (Unix
    /// milliseconds): figures older than a few scan intervals are not
    /// taken as current.
    pub last_progress_ms: u64,
    /// Members that were not healthy when the last scan planned: a member
    /// down now but not in this set went down after it, and the figures
    /// above do not count its shards yet.
    pub down: Vec<NodeId>,
}

/// Files named in a repair status at most.
pub const MAX_NAMED_FILES: usize = 100;

#[derive(Debug, Clone)]
pub struct PeerHealth {
    pub healthy: bool,
    pub last_seen: Option<Duration>,
    pub beat: Option<Heartbeat>,
}

/// Who is up, from heartbeats, on the clock seam's monotonic time (a
/// simulation or a test moves it by hand).
pub struct Health {
    me: NodeId,
    clock: SharedClock,
    started: u64,
    timeout: Duration,
    /// When each peer was last heard from (monotonic ms), and what it said.
    seen: Mutex<HashMap<NodeId, (u64, Heartbeat)>>,
    mine: Mutex<Heartbeat>,
}

impl Health {
    pub fn new(me: NodeId, timeout: Duration, clock: SharedClock) -> Self {
        Self {
            me,
            started: clock.monotonic_ms(),
            clock,
            timeout,
            seen: Mutex::new(HashMap::new()),
            mine: Mutex::new(Heartbeat::new(me)),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, (u64, Heartbeat)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Time since the monotonic instant `t`.
    fn since(&self, t: u64) -> Duration {
        Duration::from_millis(self.clock.monotonic_ms().saturating_sub(t))
    }

    /// Changes what this node's next heartbeats say.
    pub fn update_mine(&self, f: impl FnOnce(&mut Heartbeat)) {
        let mut m = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m);
    }

    pub fn mine(&self) -> Heartbeat {
        self.mine.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_healthy(&self, id: NodeId) -> bool {
        id == self.me
            || self
                .seen()
                .get(&id)
                .is_some_and(|(t, _)| self.since(*t) < self.timeout)
    }

    /// How long a node has been silent (since this process started, for a
    /// node never heard from).
    pub fn silent_for(&self, id: NodeId) -> Duration {
        if id == self.me {
            return Duration::ZERO;
        }
        match self.seen().get(&id) {
            Some((t, _)) => self.since(*t),
            None => self.since(self.started),
        }
    }

    /// Shard disks of every node heard from within the health timeout.
    pub fn disks(&self) -> HashMap<NodeId, usize> {
        let mut out: HashMap<NodeId, usize> = self
            .seen()
            .iter()
            .filter(|(_, (t, _))| self.since(*t) < self.timeout)
            .map(|(id, (_, b))| (*id, b.disks as usize))
            .collect();
        out.insert(self.me, self.mine().disks as usize);
        out
    }

    pub fn peer(&self, id: NodeId) -> PeerHealth {
        if id == self.me {
            return PeerHealth {
                healthy: true,
                last_seen: Some(Duration::ZERO),
                beat: Some(self.mine()),
            };
        }
        match self.seen().get(&id) {
            Some((t, beat)) => PeerHealth {
                healthy: self.since(*t) < self.timeout,
                last_seen: Some(self.since(*t)),
                beat: Some(beat.clone()),
            },
            None => PeerHealth {
                healthy: false,
                last_seen: None,
                beat: None,
            },
        }
    }

    fn record(&self, from: NodeId, beat: Heartbeat) {
        if beat.node == from {
            let now = self.clock.monotonic_ms();
            self.seen().insert(from, (now, beat));
        }
    }

    /// Publishes heartbeats and records the peers' until `stop`.
    pub async fn run(self: std::sync::Arc<Self>, net: SharedNet, stop: CancellationToken) {
        let mut rx = net.subscribe();
        let mut tick = tokio::time::interval(BEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Ok(bytes) = postcard::to_stdvec(&self.mine()) {
                        net.publish(TOPIC, bytes);
                    }
                }
                msg = rx.recv() => match msg {
                    Ok(g) if g.topic == TOPIC => {
                        if let Ok(beat) = postcard::from_bytes::<Heartbeat>(&g.data) {
                            self.record(g.from, beat);
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::n;
    use cluster_config::ManualClock;
    use std::sync::Arc;

    #[test]
    fn a_peer_is_up_until_silent_for_the_timeout() {
        let clock = ManualClock::new(1_000);
        let h = Health::new(n(1), Duration::from_secs(3), Arc::new(clock.clone()));
        assert!(h.is_healthy(n(1)), "this node is always up");
        assert!(!h.is_healthy(n(2)), "never heard from");
        clock.advance_ms(500);
        assert_eq!(h.silent_for(n(2)), Duration::from_millis(500));
        h.record(
            n(2),
            Heartbeat {
                disks: 2,
                ..Heartbeat::new(n(2))
            },
        );
        assert!(h.is_healthy(n(2)));
        assert_eq!(h.disks().get(&n(2)), Some(&2));
        clock.advance_ms(2_999);
        assert!(h.is_healthy(n(2)));
        clock.advance_ms(1);
        assert!(!h.is_healthy(n(2)));
        assert_eq!(h.silent_for(n(2)), Duration::from_secs(3));
        assert!(!h.peer(n(2)).healthy);
        assert!(!h.disks().contains_key(&n(2)));
        // A beat that claims to be from someone else is not taken.
        h.record(n(3), Heartbeat::new(n(4)));
        assert!(!h.is_healthy(n(3)) && !h.is_healthy(n(4)));
    }
}
