//! libp2p transport: TCP + the secure channel (`secure.rs`) + yamux;
//! requests and answers on a few long-lived streams per peer, gossipsub
//! for heartbeats and hints.
//!
//! One task owns the swarm (dialing, the allow list, gossip); `P2pNet` is a
//! cheap handle. A call writes its request straight onto a stream to the
//! peer and waits for the answer on a oneshot; one task per stream reads
//! the answers (on streams this node opened) or serves the requests (on
//! streams the peer opened), so no message goes through the swarm's task
//! and no stream is negotiated per message. Lane 0 of each peer carries
//! Raft and other small messages; shards spread over the data lanes, so a
//! large transfer never holds up a heartbeat. Only peers whose key is
//! listed may connect (an allow list); the handshake proves each key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use cluster_config::NodeId;
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{allow_block_list, tcp, yamux, Multiaddr, PeerId, Stream, StreamProtocol, Swarm};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{self, KIND_ANSWER, KIND_HELLO, KIND_REQUEST};
use super::{
    BoxFuture, Gossip, InboundHandler, NetError, NetRequest, NetResponse, PeerAddr, PeerNet,
    WireCode,
};

const TOPIC: &str = "strata/gossip/1";
/// How long a stopping network waits for its tasks.
const DRAIN_TASKS: Duration = Duration::from_secs(10);
const PROTOCOL: StreamProtocol = StreamProtocol::new("/strata/rpc/3");
const COMMAND_QUEUE: usize = 1024;
/// Connections to cluster peers are kept, not idled away.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);
const REDIAL_EVERY: Duration = Duration::from_secs(1);
/// Streams per peer besides lane 0 and the Raft bulk lane.
const DATA_LANES: usize = 4;
/// The lane of large Raft messages.
const RAFT_BULK_LANE: usize = DATA_LANES + 1;
/// A Raft message up to this size stays on lane 0.
const SMALL_RAFT_MESSAGE: usize = 64 * 1024;
/// Requests waiting for their answer on one lane, at most.
const PENDING_PER_LANE: usize = 256;
/// Requests one inbound stream serves at the same time, at most.
const SERVING_PER_STREAM: usize = 64;
/// Requests queued for a lane's writer, at most.
const QUEUED_PER_LANE: usize = 64;
/// A stream whose frame makes no progress this long is given up.
const WRITE_STALL: Duration = Duration::from_secs(20);
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
const GREETING_TIMEOUT: Duration = Duration::from_secs(2);
const OPEN_ATTEMPTS: u32 = 5;

/// Inbound connections still in their handshake, at most: a flood of
/// half-open connections costs a bounded amount, and listed peers get in.
const MAX_PENDING_INCOMING: u32 = 32;
/// Connections one peer may hold (both may dial at once, and a restart
/// leaves one behind for a moment).
const MAX_CONNECTIONS_PER_PEER: u32 = 4;
const MAX_ESTABLISHED_INCOMING: u32 = 512;

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: libp2p::connection_limits::Behaviour,
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    streams: libp2p_stream::Behaviour,
    gossip: gossipsub::Behaviour,
}

enum Command {
    Publish(Vec<u8>),
    SetPeers(Vec<PeerAddr>),
    Redial,
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
    links: Arc<Links>,
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

#[derive(Default)]
struct Peers {
    by_node: HashMap<NodeId, Peer>,
    by_peer: HashMap<PeerId, NodeId>,
}

fn parse_peers(list: &[PeerAddr]) -> Peers {
    let mut peers = Peers::default();
    for p in list {
        let (Ok(peer), Ok(addr)) = (p.peer_id.parse::<PeerId>(), p.p2p_addr.parse::<Multiaddr>())
        else {
            tracing::warn!(
                node = %p.id,
                "ignoring a peer with a malformed key or address"
            );
            continue;
        };
        peers.by_peer.insert(peer, p.id);
        peers.by_node.insert(
            p.id,
            Peer {
                id: p.id,
                peer,
                addr,
            },
        );
    }
    peers
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Reply = oneshot::Sender<Result<NetResponse, NetError>>;

/// A frame waiting for its stream's writer task.
struct Outgoing {
    kind: u8,
    id: u64,
    head: Vec<u8>,
    payload: Bytes,
}

#[derive(Default)]
struct Waiting {
    replies: HashMap<u64, Reply>,
    dead: bool,
}

/// One stream this node opened to a peer. Calls queue their request for
/// the lane's writer task and wait for the answer, which the lane's reader
/// task hands over by request id. A frame is written whole or the lane
/// dies: a call that gives up never leaves half a frame on the stream.
struct Lane {
    node: NodeId,
    waiting: Mutex<Waiting>,
    next_id: AtomicU64,
    queue: mpsc::Sender<Outgoing>,
    slots: Semaphore,
    /// Cancelled when the lane dies; its tasks then drop the stream.
    closed: CancellationToken,
}

impl Lane {
    fn is_dead(&self) -> bool {
        lock(&self.waiting).dead
    }

    fn fail_all(&self, reason: &str) {
        let replies: Vec<Reply> = {
            let mut w = lock(&self.waiting);
            w.dead = true;
            w.replies.drain().map(|(_, r)| r).collect()
        };
        self.closed.cancel();
        for r in replies {
            let _ = r.send(Err(NetError::Unreachable {
                node: self.node,
                reason: reason.to_string(),
            }));
        }
    }

    async fn read_answers(self: Arc<Self>, mut reader: ReadHalf<Stream>) {
        let reason = loop {
            let frame = tokio::select! {
                biased;
                _ = self.closed.cancelled() => break "stream closed".to_string(),
                f = codec::read_frame(&mut reader) => f,
            };
            let frame = match frame {
                Ok(f) if f.kind == KIND_ANSWER => f,
                Ok(_) => break "peer sent a request on an answer stream".into(),
                Err(e) => break format!("stream closed: {e}"),
            };
            let id = frame.id;
            let answer = frame.into_answer().map_err(|e| NetError::Unreachable {
                node: self.node,
                reason: format!("bad answer: {e}"),
            });
            let reply = lock(&self.waiting).replies.remove(&id);
            if let Some(reply) = reply {
                let _ = reply.send(answer);
            }
        };
        self.fail_all(&reason);
    }

    async fn write_requests(
        self: Arc<Self>,
        mut writer: WriteHalf<Stream>,
        mut queue: mpsc::Receiver<Outgoing>,
    ) {
        let reason = loop {
            let out = tokio::select! {
                biased;
                _ = self.closed.cancelled() => return,
                o = queue.recv() => match o {
                    Some(o) => o,
                    None => return,
                },
            };
            let write = codec::write_frame(&mut writer, out.kind, out.id, &out.head, &out.payload);
            match tokio::time::timeout(WRITE_STALL, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break format!("write failed: {e}"),
                Err(_) => break format!("no progress writing for {WRITE_STALL:?}"),
            }
        };
        self.fail_all(&reason);
    }

    async fn call(&self, req: NetRequest) -> Result<NetResponse, NetError> {
        let unreachable = |reason: String| NetError::Unreachable {
            node: self.node,
            reason,
        };
        let _slot = self.slots.acquire().await.map_err(|_| NetError::Closed)?;
        let (head, payload) = codec::encode_request(req).map_err(|e| unreachable(e.to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut w = lock(&self.waiting);
            if w.dead {
                return Err(unreachable("stream closed".into()));
            }
            w.replies.insert(id, tx);
        }
        // Removes the entry however this call ends (answer, error, timeout).
        struct Forget<'a>(&'a Lane, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                lock(&self.0.waiting).replies.remove(&self.1);
            }
        }
        let _forget = Forget(self, id);
        self.queue
            .send(Outgoing {
                kind: KIND_REQUEST,
                id,
                head,
                payload,
            })
            .await
            .map_err(|_| unreachable("stream closed".into()))?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(unreachable("stream closed".into())),
        }
    }
}

/// A lane to one peer, opened by the first call that needs it.
type LaneSlot = Arc<tokio::sync::Mutex<Option<Arc<Lane>>>>;

/// The lanes to every peer, opened on first use and again after a failure.
struct Links {
    me: NodeId,
    control: libp2p_stream::Control,
    peers: Arc<RwLock<Peers>>,
    slots: Mutex<HashMap<(NodeId, usize), LaneSlot>>,
    next_data: AtomicUsize,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    /// Every task of the network (lane readers and writers, inbound
    /// streams and their requests), waited for when it stops.
    tasks: TaskTracker,
}

impl Links {
    async fn lane(&self, to: NodeId, lane: usize) -> Result<Arc<Lane>, NetError> {
        let slot = lock(&self.slots).entry((to, lane)).or_default().clone();
        let mut open = slot.lock().await;
        if let Some(l) = open.as_ref() {
            if !l.is_dead() {
                return Ok(l.clone());
            }
        }
        let peer = read(&self.peers)
            .by_node
            .get(&to)
            .map(|p| p.peer)
            .ok_or(NetError::UnknownPeer(to))?;
        let (reader, writer) = self.open(to, peer).await?;
        let (queue, queued) = mpsc::channel(QUEUED_PER_LANE);
        let l = Arc::new(Lane {
            node: to,
            waiting: Mutex::new(Waiting::default()),
            next_id: AtomicU64::new(1),
            queue,
            slots: Semaphore::new(PENDING_PER_LANE),
            closed: self.stop.child_token(),
        });
        self.tasks.spawn(l.clone().read_answers(reader));
        self.tasks.spawn(l.clone().write_requests(writer, queued));
        tracing::debug!(node = %self.me, peer = %to, lane, "stream opened");
        *open = Some(l.clone());
        Ok(l)
    }

    /// Opens a stream and waits for the peer to greet back: a stream the
    /// peer could not take up (its accept queue was full) is dropped on its
    /// side, and is retried here before any request is put on it.
    async fn open(
        &self,
        to: NodeId,
        peer: PeerId,
    ) -> Result<(ReadHalf<Stream>, WriteHalf<Stream>), NetError> {
        let unreachable = |reason: String| NetError::Unreachable { node: to, reason };
        let mut last = String::new();
        let mut backoff =
            strata_api::backoff::Backoff::new(Duration::from_millis(40), Duration::from_secs(2));
        for attempt in 0..OPEN_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            let mut control = self.control.clone();
            let stream =
                match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, PROTOCOL)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        // Not connected: no point retrying before a redial.
                        let _ = self.commands.try_send(Command::Redial);
                        return Err(unreachable(e.to_string()));
                    }
                    Err(_) => return Err(unreachable("no stream within the open timeout".into())),
                };
            let (mut reader, mut writer) = stream.split();
            let greeted = async {
                codec::write_frame(&mut writer, KIND_HELLO, 0, &[], &[]).await?;
                let f = codec::read_frame(&mut reader).await?;
                if f.kind == KIND_HELLO {
                    Ok(())
                } else {
                    Err(std::io::Error::other("peer did not greet"))
                }
            };
            match tokio::time::timeout(GREETING_TIMEOUT, greeted).await {
                Ok(Ok(())) => return Ok((reader, writer)),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no greeting".into(),
            }
        }
        Err(unreachable(format!("stream not taken up: {last}")))
    }

    /// Lane 0 carries what must never wait behind bulk: votes, heartbeats
    /// and small appends, read indexes, small shard requests. Large Raft
    /// messages (appends with many entries, forwarded writes) have a lane
    /// of their own, so a burst of them cannot hold up an election; shard
    /// transfers and snapshots spread over the data lanes.
    fn lane_for(&self, req: &NetRequest) -> usize {
        use raft_meta::network::RaftRpcKind;
        match req {
            NetRequest::Raft { kind, payload } => match kind {
                RaftRpcKind::InstallSnapshot => {
                    1 + self.next_data.fetch_add(1, Ordering::Relaxed) % DATA_LANES
                }
                RaftRpcKind::ClientWrite => RAFT_BULK_LANE,
                RaftRpcKind::AppendEntries if payload.len() > SMALL_RAFT_MESSAGE => RAFT_BULK_LANE,
                _ => 0,
            },
            NetRequest::HasShards { .. } | NetRequest::DeleteShard { .. } => 0,
            _ => 1 + self.next_data.fetch_add(1, Ordering::Relaxed) % DATA_LANES,
        }
    }
}

/// Serves the requests a peer sends on one stream it opened: each request
/// in its own task, the answers written whole, one at a time, by a writer
/// task (a failed or stalled write closes the stream).
async fn serve(
    from: NodeId,
    stream: Stream,
    handler: Arc<dyn InboundHandler>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let (mut reader, mut writer) = stream.split();
    let closed = stop.child_token();
    let (answers, mut queued) = mpsc::channel::<Outgoing>(SERVING_PER_STREAM);
    let write_closed = closed.clone();
    let write_task = tasks.spawn(async move {
        loop {
            let out = tokio::select! {
                biased;
                _ = write_closed.cancelled() => break,
                o = queued.recv() => match o {
                    Some(o) => o,
                    None => break,
                },
            };
            let write = codec::write_frame(&mut writer, out.kind, out.id, &out.head, &out.payload);
            if !matches!(tokio::time::timeout(WRITE_STALL, write).await, Ok(Ok(()))) {
                write_closed.cancel();
                break;
            }
        }
        writer
    });
    let slots = Arc::new(Semaphore::new(SERVING_PER_STREAM));
    loop {
        let frame = tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            f = codec::read_frame(&mut reader) => f,
        };
        let frame = match frame {
            Ok(f) if f.kind == KIND_REQUEST => f,
            Ok(f) if f.kind == KIND_HELLO => {
                let hello = Outgoing {
                    kind: KIND_HELLO,
                    id: 0,
                    head: Vec::new(),
                    payload: Bytes::new(),
                };
                if answers.send(hello).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(_) => {
                tracing::debug!(peer = %from, "answer on a request stream; closing it");
                break;
            }
            Err(_) => break,
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (handler, answers) = (handler.clone(), answers.clone());
        tasks.spawn(async move {
            let id = frame.id;
            let answer = match frame.into_request() {
                Ok(req) => handler.handle(from, req).await,
                Err(e) => NetResponse::error(WireCode::BadRequest, format!("bad request: {e}")),
            };
            let encoded = codec::encode_answer(answer).or_else(|e| {
                codec::encode_answer(NetResponse::error(
                    WireCode::BadRequest,
                    format!("answer not encodable: {e}"),
                ))
            });
            if let Ok((head, payload)) = encoded {
                let answer = Outgoing {
                    kind: KIND_ANSWER,
                    id,
                    head,
                    payload,
                };
                let _ = answers.send(answer).await;
            }
            drop(slot);
        });
    }
    // The writer finishes the answers still being worked on, then the
    // stream goes (both halves dropped).
    drop(answers);
    let _ = write_task.await;
    closed.cancel();
}

/// Accepts the streams peers open and serves each in its own task.
async fn accept(
    mut control: libp2p_stream::Control,
    peers: Arc<RwLock<Peers>>,
    handler: Arc<dyn InboundHandler>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let mut incoming = match control.accept(PROTOCOL) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "cannot accept streams");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            n = incoming.next() => n,
        };
        let Some((peer, stream)) = next else { return };
        let Some(&from) = read(&peers).by_peer.get(&peer) else {
            tracing::debug!(%peer, "stream from a peer that is not listed; dropped");
            continue;
        };
        tasks.spawn(serve(
            from,
            stream,
            handler.clone(),
            stop.clone(),
            tasks.clone(),
        ));
    }
}

impl P2pNet {
    /// Starts the swarm on `listen` and returns its handle and the task
    /// that runs it (stopped by `stop`). `psk` is the channel's pre-shared
    /// key, derived from the cluster secret (`secure::PSK_CONTEXT`): peers
    /// must hold it as well as a listed identity key.
    pub fn start(
        me: NodeId,
        key: Keypair,
        psk: [u8; 32],
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
                move |k: &Keypair| super::secure::Config::new(k, psk),
                yamux::Config::default,
            )
            .map_err(|e| P2pError::Setup(e.to_string()))?
            .with_behaviour(|key| {
                let gossip = gossipsub::Behaviour::new(
                    MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?;
                let limits = libp2p::connection_limits::ConnectionLimits::default()
                    .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                    .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING))
                    .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER));
                Ok(Behaviour {
                    limits: libp2p::connection_limits::Behaviour::new(limits),
                    allow: allow_block_list::Behaviour::default(),
                    streams: libp2p_stream::Behaviour::new(),
                    gossip,
                })
            })
            .map_err(|e| P2pError::Setup(e.to_string()))?
            .with_swarm_config(|c| {
                // One protocol per stream: announce it and send at once
                // instead of waiting a round trip for the echo.
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
        let control = swarm.behaviour().streams.new_control();
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let (gossip, _) = broadcast::channel(1024);
        let shared_peers = Arc::new(RwLock::new(Peers::default()));
        let links = Arc::new(Links {
            me,
            control: control.clone(),
            peers: shared_peers.clone(),
            slots: Mutex::new(HashMap::new()),
            next_data: AtomicUsize::new(0),
            commands: commands.clone(),
            stop: stop.clone(),
            tasks: TaskTracker::new(),
        });
        let net = Self {
            me,
            commands,
            gossip: gossip.clone(),
            links,
        };
        let mut event_loop = EventLoop {
            me,
            swarm,
            peers: shared_peers.clone(),
            gossip,
        };
        event_loop.set_peers(peers);
        let tasks = net.links.tasks.clone();
        let acceptor = tasks.spawn(accept(
            control,
            shared_peers,
            handler,
            stop.clone(),
            tasks.clone(),
        ));
        let task = tokio::spawn(async move {
            event_loop.run(rx, stop).await;
            let _ = acceptor.await;
            // Lanes and streams end with the stop token; requests being
            // served finish (each is bounded by its own timeouts).
            tasks.close();
            if tokio::time::timeout(DRAIN_TASKS, tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!("network tasks still running after {DRAIN_TASKS:?}");
            }
        });
        Ok((net, task))
    }
}

struct EventLoop {
    me: NodeId,
    swarm: Swarm<Behaviour>,
    peers: Arc<RwLock<Peers>>,
    gossip: broadcast::Sender<Gossip>,
}

impl EventLoop {
    fn set_peers(&mut self, list: Vec<PeerAddr>) {
        let new = parse_peers(&list);
        {
            let old = read(&self.peers);
            let allow = &mut self.swarm.behaviour_mut().allow;
            for peer in old.by_peer.keys() {
                if !new.by_peer.contains_key(peer) {
                    allow.disallow_peer(*peer);
                }
            }
            for peer in new.by_peer.keys() {
                allow.allow_peer(*peer);
            }
        }
        *self.peers.write().unwrap_or_else(|p| p.into_inner()) = new;
        self.dial_missing();
    }

    fn dial_missing(&mut self) {
        let targets: Vec<(PeerId, Multiaddr)> = read(&self.peers)
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
                biased;
                _ = stop.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                _ = redial.tick() => self.dial_missing(),
                event = self.swarm.select_next_some() => self.event(event),
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
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
            Command::Redial => self.dial_missing(),
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                message,
                ..
            })) => {
                let Some(source) = message.source else { return };
                let Some(node) = read(&self.peers).by_peer.get(&source).copied() else {
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
                tracing::debug!(node = ?read(&self.peers).by_peer.get(&peer_id), "peer connected");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(node = ?read(&self.peers).by_peer.get(&peer_id), "peer disconnected");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(node = %self.me, %address, "p2p listening");
            }
            _ => {}
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
        let links = self.links.clone();
        Box::pin(async move {
            let lane = links.lane_for(&req);
            // A stream can break under a call (the peer restarted, or did
            // not take the stream up); a request that is safe to repeat is
            // sent once more on a new one. A forwarded client write is not.
            let forwarded_write = matches!(
                req,
                NetRequest::Raft {
                    kind: raft_meta::network::RaftRpcKind::ClientWrite,
                    ..
                }
            );
            let again = (!forwarded_write).then(|| req.clone());
            let attempt = async {
                let l = links.lane(to, lane).await?;
                match (l.call(req).await, again) {
                    (Err(NetError::Unreachable { .. }), Some(req)) => {
                        links.lane(to, lane).await?.call(req).await
                    }
                    (other, _) => other,
                }
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(r) => r,
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
