//! An in-memory network with injected faults: nodes can be taken down,
//! pairs partitioned, messages dropped or delayed. The same handlers and
//! logic as over libp2p run on it, so tests and the chaos harness can
//! exercise Raft, placement and repair without sockets.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_config::NodeId;
use tokio::sync::broadcast;

use super::{
    BoxFuture, Gossip, InboundHandler, NetError, NetRequest, NetResponse, PeerAddr, PeerNet,
};

#[derive(Default)]
struct State {
    handlers: HashMap<NodeId, Arc<dyn InboundHandler>>,
    gossip: HashMap<NodeId, broadcast::Sender<Gossip>>,
    down: HashSet<NodeId>,
    cut: HashSet<(NodeId, NodeId)>,
    /// One in `drop_one_in` messages is lost (0: none). Deterministic: a counter.
    drop_one_in: u64,
    sent: u64,
    delay: Duration,
}

/// The switch every in-memory node is plugged into.
#[derive(Clone, Default)]
pub struct MemNetwork(Arc<Mutex<State>>);

impl MemNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plugs in a node.
    pub fn join(&self, id: NodeId, handler: Arc<dyn InboundHandler>) -> MemNet {
        let mut s = self.state();
        s.handlers.insert(id, handler);
        s.down.remove(&id);
        s.gossip
            .entry(id)
            .or_insert_with(|| broadcast::channel(1024).0);
        MemNet {
            me: id,
            net: self.clone(),
        }
    }

    /// Unplugs a stopped node: its handler (which holds its block store,
    /// whose network port holds this switch) goes, so nothing of the node
    /// outlives it. `join` plugs it in again.
    pub fn leave(&self, id: NodeId) {
        let mut s = self.state();
        s.handlers.remove(&id);
        s.gossip.remove(&id);
        s.down.insert(id);
    }

    /// A down node neither sends nor receives.
    pub fn set_down(&self, id: NodeId, down: bool) {
        let mut s = self.state();
        if down {
            s.down.insert(id);
        } else {
            s.down.remove(&id);
        }
    }

    /// Cuts (or heals) the link between two nodes, both ways.
    pub fn partition(&self, a: NodeId, b: NodeId, cut: bool) {
        let mut s = self.state();
        for pair in [(a, b), (b, a)] {
            if cut {
                s.cut.insert(pair);
            } else {
                s.cut.remove(&pair);
            }
        }
    }

    pub fn set_drop_one_in(&self, n: u64) {
        self.state().drop_one_in = n;
    }

    pub fn set_delay(&self, d: Duration) {
        self.state().delay = d;
    }

    fn route(
        &self,
        from: NodeId,
        to: NodeId,
    ) -> Result<(Arc<dyn InboundHandler>, Duration), NetError> {
        let mut s = self.state();
        s.sent += 1;
        let dropped = s.drop_one_in > 0 && s.sent.is_multiple_of(s.drop_one_in);
        if s.down.contains(&from) || s.down.contains(&to) || s.cut.contains(&(from, to)) || dropped
        {
            return Err(NetError::Unreachable {
                node: to,
                reason: "injected fault".into(),
            });
        }
        let h = s
            .handlers
            .get(&to)
            .cloned()
            .ok_or(NetError::UnknownPeer(to))?;
        Ok((h, s.delay))
    }
}

/// One node's port on the switch.
#[derive(Clone)]
pub struct MemNet {
    me: NodeId,
    net: MemNetwork,
}

impl PeerNet for MemNet {
    fn local_id(&self) -> NodeId {
        self.me
    }

    fn call(
        &self,
        to: NodeId,
        req: NetRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<NetResponse, NetError>> {
        let net = self.net.clone();
        let me = self.me;
        Box::pin(async move {
            let (handler, delay) = net.route(me, to)?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let answer = tokio::time::timeout(timeout, handler.handle(me, req))
                .await
                .map_err(|_| NetError::Timeout { node: to, timeout })?;
            // The answer travels back over the same link.
            net.route(to, me)?;
            Ok(answer)
        })
    }

    fn publish(&self, topic: &str, data: Vec<u8>) {
        let targets: Vec<(NodeId, broadcast::Sender<Gossip>)> = {
            let s = self.net.state();
            if s.down.contains(&self.me) {
                return;
            }
            s.gossip
                .iter()
                .filter(|(id, _)| {
                    **id != self.me && !s.down.contains(id) && !s.cut.contains(&(self.me, **id))
                })
                .map(|(id, tx)| (*id, tx.clone()))
                .collect()
        };
        for (_, tx) in targets {
            let _ = tx.send(Gossip {
                from: self.me,
                topic: topic.to_string(),
                data: data.clone(),
            });
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Gossip> {
        let mut s = self.net.state();
        s.gossip
            .entry(self.me)
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    fn set_peers(&self, _peers: Vec<PeerAddr>) {}
}
