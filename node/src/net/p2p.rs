//! libp2p transport: TCP + noise + yamux, a request-response protocol for
//! Raft and shard traffic, gossipsub for heartbeats and hints.
//!
//! One task owns the swarm; `P2pNet` is a cheap handle that sends it
//! commands on a bounded channel and gets answers on oneshots. Only peers
//! whose key is listed may connect (an allow list); noise proves each key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::NodeId;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::codec::{Codec, PROTOCOL};
use super::{
    BoxFuture, Gossip, InboundHandler, NetError, NetRequest, NetResponse, PeerAddr, PeerNet,
};

const TOPIC: &str = "strata/gossip/1";
const COMMAND_QUEUE: usize = 1024;
/// Connections to cluster peers are kept, not idled away.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);
const REDIAL_EVERY: Duration = Duration::from_secs(1);

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    rpc: request_response::Behaviour<Codec>,
    gossip: gossipsub::Behaviour,
}

enum Command {
    Call {
        to: NodeId,
        req: NetRequest,
        reply: oneshot::Sender<Result<NetResponse, NetError>>,
    },
    Publish(Vec<u8>),
    SetPeers(Vec<PeerAddr>),
}

/// A gossip message as sent: the sender's node id travels inside.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    from: NodeId,
    topic: String,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct P2pNet {
    me: NodeId,
    commands: mpsc::Sender<Command>,
    gossip: broadcast::Sender<Gossip>,
}

#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("libp2p setup: {0}")]
    Setup(String),
    #[error("bad multiaddr {addr:?}: {reason}")]
    Addr { addr: String, reason: String },
}

struct Peer {
    id: NodeId,
    peer: PeerId,
    addr: Multiaddr,
}

struct Peers {
    by_node: HashMap<NodeId, Peer>,
    by_peer: HashMap<PeerId, NodeId>,
}

fn parse_peers(list: &[PeerAddr]) -> Peers {
    let mut by_node = HashMap::new();
    let mut by_peer = HashMap::new();
    for p in list {
        let (Ok(peer), Ok(addr)) = (p.peer_id.parse::<PeerId>(), p.p2p_addr.parse::<Multiaddr>())
        else {
            tracing::warn!(
                node = p.id,
                "ignoring a peer with a malformed key or address"
            );
            continue;
        };
        by_peer.insert(peer, p.id);
        by_node.insert(
            p.id,
            Peer {
                id: p.id,
                peer,
                addr,
            },
        );
    }
    Peers { by_node, by_peer }
}

impl P2pNet {
    /// Starts the swarm on `listen` and returns its handle and the task
    /// that runs it (stopped by `stop`).
    pub fn start(
        me: NodeId,
        key: Keypair,
        listen: &str,
        peers: Vec<PeerAddr>,
        handler: Arc<dyn InboundHandler>,
        stop: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), P2pError> {
        let listen: Multiaddr =
            listen
                .parse()
                .map_err(|e: libp2p::multiaddr::Error| P2pError::Addr {
                    addr: listen.to_string(),
                    reason: e.to_string(),
                })?;
        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(500))
            .validation_mode(gossipsub::ValidationMode::Strict)
            .max_transmit_size(1 << 20)
            .build()
            .map_err(|e| P2pError::Setup(e.to_string()))?;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| P2pError::Setup(e.to_string()))?
            .with_behaviour(|key| {
                let gossip = gossipsub::Behaviour::new(
                    MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?;
                Ok(Behaviour {
                    allow: allow_block_list::Behaviour::default(),
                    rpc: request_response::Behaviour::with_codec(
                        Codec,
                        [(PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(Duration::from_secs(60))
                            .with_max_concurrent_streams(512),
                    ),
                    gossip,
                })
            })
            .map_err(|e| P2pError::Setup(e.to_string()))?
            .with_swarm_config(|c| {
                // One protocol per stream: announce it and send the request
                // at once instead of waiting a round trip for the echo.
                c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
                    .with_substream_upgrade_protocol_override(
                        libp2p::core::upgrade::Version::V1Lazy,
                    )
            })
            .build();
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&IdentTopic::new(TOPIC))
            .map_err(|e| P2pError::Setup(e.to_string()))?;
        swarm
            .listen_on(listen)
            .map_err(|e| P2pError::Setup(e.to_string()))?;
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let (gossip, _) = broadcast::channel(1024);
        let net = Self {
            me,
            commands,
            gossip: gossip.clone(),
        };
        let mut event_loop = EventLoop {
            me,
            swarm,
            peers: parse_peers(&[]),
            pending: HashMap::new(),
            handler,
            gossip,
            responses: mpsc::channel(COMMAND_QUEUE),
        };
        event_loop.set_peers(peers);
        let task = tokio::spawn(async move { event_loop.run(rx, stop).await });
        Ok((net, task))
    }
}

struct EventLoop {
    me: NodeId,
    swarm: Swarm<Behaviour>,
    peers: Peers,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<NetResponse, NetError>>>,
    handler: Arc<dyn InboundHandler>,
    gossip: broadcast::Sender<Gossip>,
    #[allow(clippy::type_complexity)]
    responses: (
        mpsc::Sender<(ResponseChannel<NetResponse>, NetResponse)>,
        mpsc::Receiver<(ResponseChannel<NetResponse>, NetResponse)>,
    ),
}

impl EventLoop {
    fn set_peers(&mut self, list: Vec<PeerAddr>) {
        let new = parse_peers(&list);
        let allow = &mut self.swarm.behaviour_mut().allow;
        for peer in self.peers.by_peer.keys() {
            if !new.by_peer.contains_key(peer) {
                allow.disallow_peer(*peer);
            }
        }
        for peer in new.by_peer.keys() {
            allow.allow_peer(*peer);
        }
        self.peers = new;
        self.dial_missing();
    }

    fn dial_missing(&mut self) {
        let targets: Vec<(PeerId, Multiaddr)> = self
            .peers
            .by_node
            .values()
            .filter(|p| p.id != self.me && !self.swarm.is_connected(&p.peer))
            .map(|p| (p.peer, p.addr.clone()))
            .collect();
        for (peer, addr) in targets {
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    async fn run(&mut self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                Some((channel, resp)) = self.responses.1.recv() => {
                    let _ = self.swarm.behaviour_mut().rpc.send_response(channel, resp);
                }
                _ = redial.tick() => self.dial_missing(),
                event = self.swarm.select_next_some() => self.event(event),
            }
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(NetError::Closed));
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Call { to, req, reply } => {
                let Some(peer) = self.peers.by_node.get(&to) else {
                    let _ = reply.send(Err(NetError::UnknownPeer(to)));
                    return;
                };
                let id = self.swarm.behaviour_mut().rpc.send_request_with_addresses(
                    &peer.peer,
                    req,
                    vec![peer.addr.clone()],
                );
                self.pending.insert(id, reply);
            }
            Command::Publish(data) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(IdentTopic::new(TOPIC), data)
                {
                    tracing::trace!(error = %e, "gossip publish");
                }
            }
            Command::SetPeers(list) => self.set_peers(list),
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(e)) => self.rpc_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                message,
                ..
            })) => {
                let Some(source) = message.source else { return };
                let Some(&node) = self.peers.by_peer.get(&source) else {
                    return;
                };
                let Ok(env) = postcard::from_bytes::<Envelope>(&message.data) else {
                    return;
                };
                // The signature binds the message to its source key.
                if env.from != node {
                    return;
                }
                let _ = self.gossip.send(Gossip {
                    from: node,
                    topic: env.topic,
                    data: env.data,
                });
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::debug!(node = ?self.peers.by_peer.get(&peer_id), "peer connected");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(node = ?self.peers.by_peer.get(&peer_id), "peer disconnected");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(node = self.me, %address, "p2p listening");
            }
            _ => {}
        }
    }

    fn rpc_event(&mut self, e: request_response::Event<NetRequest, NetResponse>) {
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let Some(&from) = self.peers.by_peer.get(&peer) else {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .rpc
                            .send_response(channel, NetResponse::Error("unknown peer".into()));
                        return;
                    };
                    let handler = self.handler.clone();
                    let responses = self.responses.0.clone();
                    tokio::spawn(async move {
                        let resp = handler.handle(from, request).await;
                        let _ = responses.send((channel, resp)).await;
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let node = self.peers.by_peer.get(&peer).copied().unwrap_or(0);
                    let _ = reply.send(Err(NetError::Unreachable {
                        node,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { error, .. } => {
                tracing::debug!(error = %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

impl PeerNet for P2pNet {
    fn local_id(&self) -> NodeId {
        self.me
    }

    fn call(
        &self,
        to: NodeId,
        req: NetRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<NetResponse, NetError>> {
        let commands = self.commands.clone();
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            commands
                .send(Command::Call { to, req, reply })
                .await
                .map_err(|_| NetError::Closed)?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(NetError::Closed),
                Err(_) => Err(NetError::Timeout { node: to, timeout }),
            }
        })
    }

    fn publish(&self, topic: &str, data: Vec<u8>) {
        let env = Envelope {
            from: self.me,
            topic: topic.to_string(),
            data,
        };
        if let Ok(bytes) = postcard::to_stdvec(&env) {
            let _ = self.commands.try_send(Command::Publish(bytes));
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Gossip> {
        self.gossip.subscribe()
    }

    fn set_peers(&self, peers: Vec<PeerAddr>) {
        let _ = self.commands.try_send(Command::SetPeers(peers));
    }
}
