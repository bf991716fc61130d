//! A whole node, started and stopped in straight-line order, with no front
//! end: a front end (the HTTPS gateway, a WebDAV server, the chaos
//! harness's simulation) is given the running `Node` and serves from it.
//!
//! Start: secret and data directories → shard disks → network and
//! placement → block store → metadata (Raft) → the drive set up (a single
//! node, before anything is served) → health, repair, the layout watcher,
//! the leader's duties, the notification hub, the upload sweeper. Stop
//! (after the front ends have drained): background work → work that
//! outlived its request → Raft → the disks. Every task the node starts is
//! owned here and awaited on stop; one cancellation token per stage, all
//! children of the node's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::node_key::load_node_key;
use cluster_config::{ClusterSecret, Config, ConfigError, SharedClock};
use raft_meta::network::{NoPeers, RaftTransport};
use raft_meta::{Command, MemberNode, MetaClient, MetaError, MetaNode};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::block::store::{LocalShards, StoreError};
use crate::cluster::{BootstrapError, Cluster};
use crate::health::Health;
use crate::net::p2p::P2pNet;
use crate::net::raft::NetRaftTransport;
use crate::net::serve::NodeHandler;
use crate::net::{PeerAddr, SharedNet};
use crate::notify::Hub;
use crate::placement::{Placement, View};
use crate::repair::Repair;
use crate::{BlockStore, KeyRing};

/// How often expired upload sessions are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
const SWEEP_BATCH: u32 = 256;
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// A cluster node waits this long for a leader before serving anyway.
const CLUSTER_LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long stop waits for work that outlived its request.
const DETACHED_DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("shard store: {0}")]
    Store(#[from] StoreError),
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("p2p: {0}")]
    P2p(String),
    #[error("setting the drive up: {0}")]
    Bootstrap(#[from] BootstrapError),
}

/// What runs until the node stops, with the token that stops each stage.
struct Running {
    meta: MetaNode,
    background: JoinSet<()>,
    background_stop: CancellationToken,
    p2p: Option<tokio::task::JoinHandle<()>>,
    net_stop: CancellationToken,
}

/// How a node reaches its peers.
#[derive(Clone, Default)]
pub enum Network {
    /// libp2p over TCP, with the config's key, addresses and cluster key.
    #[default]
    P2p,
    /// An in-memory switch: the simulation plugs every node of a cluster
    /// into one and injects its faults there.
    Memory(crate::net::mem::MemNetwork),
}

/// Where a node meets the world, for a simulation to replace.
#[derive(Clone, Default)]
pub struct Seams {
    pub network: Network,
    pub meta: raft_meta::MetaOptions,
    /// Shard writes and blocking work run on the task that asks for them
    /// (`LocalShards::open_inline`, `Offload`).
    pub inline_io: bool,
    /// With `inline_io`: milliseconds each shard write waits first (the
    /// simulation's slow disk; 0: none).
    pub disk_delay_ms: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// A running node. Cheap handles to its parts are given to front ends;
/// `shutdown` stops it.
pub struct Node {
    config: Arc<Config>,
    clock: SharedClock,
    meta: MetaClient,
    blocks: Arc<BlockStore>,
    cluster: Option<Cluster>,
    hub: Arc<Hub>,
    /// Work a request left running (an upload whose client went away still
    /// stores and commits what arrived); stop waits for it.
    work: TaskTracker,
    stop: CancellationToken,
    running: Mutex<Option<Running>>,
}

impl Node {
    /// Starts a node. `api_url` is where clients reach this node's front
    /// end (a single node's Raft membership records it).
    pub async fn start(
        config: Config,
        clock: SharedClock,
        api_url: String,
    ) -> Result<Self, NodeError> {
        Self::start_with(config, clock, api_url, Seams::default()).await
    }

    /// Starts a node with the simulation's seams: its network (libp2p for
    /// a real node, an in-memory switch) and its Raft log and election
    /// settings. Everything else is the same code.
    pub async fn start_with(
        config: Config,
        clock: SharedClock,
        api_url: String,
        seams: Seams,
    ) -> Result<Self, NodeError> {
        let Seams {
            network,
            meta: meta_options,
            inline_io,
            disk_delay_ms,
        } = seams;
        let config = Arc::new(config);
        let me = config.node_id;
        let stop = CancellationToken::new();
        let background_stop = stop.child_token();
        let net_stop = stop.child_token();
        let mut background = JoinSet::new();

        if !config.accounts.ignored_admins.is_empty() {
            tracing::warn!(
                names = ?config.accounts.ignored_admins,
                "accounts.admins is ignored: admin rights come from the bootstrap admin or another admin"
            );
        }
        // 1. Secrets and local disks, private to the service user.
        let secret = ClusterSecret::load(&config.cluster_secret_file)?;
        for dir in std::iter::once(&config.storage.meta_dir).chain(&config.storage.shard_dirs) {
            let n = cluster_config::secrets::secure_data_dir(dir)?;
            if n > 0 {
                tracing::warn!(dir = %dir.display(), entries = n, "data directory was readable by others; made private to this user");
            }
        }
        let shards = if inline_io {
            LocalShards::open_inline(&config.storage.shard_dirs)?.with_delay(disk_delay_ms)
        } else {
            LocalShards::open(&config.storage.shard_dirs)?
        };
        if !shards.replaced_disks().is_empty() {
            tracing::info!(disks = ?shards.replaced_disks(), "new or replaced shard directories");
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);

        // 2. The network, placement and the block store.
        let handler = NodeHandler::default();
        let mut p2p_task = None;
        let (net, placement, transport): (
            Option<SharedNet>,
            Arc<Placement>,
            Arc<dyn RaftTransport>,
        ) = match &config.cluster {
            None => {
                let mut view = View::single(me, config.erasure, config.storage.shard_dirs.len());
                view.min_write = config.min_write_shards;
                (None, Arc::new(Placement::new(view)), Arc::new(NoPeers))
            }
            Some(cluster) => {
                let layout = crate::cluster::initial_layout(&config);
                let net: SharedNet = match network {
                    Network::P2p => {
                        let key = load_node_key(&cluster.key_file)?;
                        let peers = cluster
                            .peers
                            .iter()
                            .map(|p| PeerAddr {
                                id: p.id,
                                peer_id: p.peer_id.to_string(),
                                p2p_addr: p.p2p_addr.clone(),
                            })
                            .collect();
                        let psk = KeyRing::new(secret.clone())
                            .purpose_key(crate::net::secure::PSK_CONTEXT);
                        let (p2p, task) = P2pNet::start(
                            me,
                            key,
                            psk,
                            &cluster.p2p_listen,
                            peers,
                            Arc::new(handler.clone()),
                            net_stop.clone(),
                        )
                        .map_err(|e| NodeError::P2p(e.to_string()))?;
                        p2p_task = Some(task);
                        Arc::new(p2p)
                    }
                    Network::Memory(switch) => Arc::new(switch.join(me, Arc::new(handler.clone()))),
                };
                let view = View {
                    me,
                    layout,
                    profile: config.erasure,
                    healthy: std::collections::HashSet::from([me]),
                    disks: std::collections::HashMap::from([(me, config.storage.shard_dirs.len())]),
                    min_write: config.min_write_shards,
                };
                (
                    Some(net.clone()),
                    Arc::new(Placement::new(view)),
                    Arc::new(NetRaftTransport::new(net)),
                )
            }
        };
        let blocks = Arc::new(BlockStore::new(
            me,
            KeyRing::new(secret),
            shards,
            placement.clone(),
            net.clone(),
            2 * cores + 2,
        ));
        handler.set_blocks(blocks.clone());

        // 3. Metadata: the Raft member. A single node, or the lowest-numbered
        // initial peer of a new cluster, initialises the membership.
        let member = |api_url: String, p2p_addr: String| MemberNode { api_url, p2p_addr };
        let initial = match &config.cluster {
            None => Some(BTreeMap::from([(me, member(api_url, String::new()))])),
            Some(cluster) => {
                let voters: Vec<&cluster_config::Peer> =
                    cluster.peers.iter().filter(|p| p.initial).collect();
                let first = voters.iter().map(|p| p.id).min();
                (first == Some(me)).then(|| {
                    voters
                        .iter()
                        .take(crate::membership::voter_target(voters.len()))
                        .map(|p| (p.id, member(p.api_url.clone(), p.p2p_addr.clone())))
                        .collect()
                })
            }
        };
        let meta = MetaNode::start_with(
            me,
            &config.storage.meta_dir,
            transport,
            initial,
            clock.clone(),
            &meta_options,
        )
        .await?;
        handler.raft.set(meta.raft().clone());
        let leader_wait = if config.cluster.is_some() {
            CLUSTER_LEADER_WAIT
        } else {
            LEADER_WAIT
        };
        match meta.wait_for_leader(leader_wait).await {
            Ok(leader) => tracing::info!(node = %me, %leader, "metadata ready"),
            // A cluster node serves anyway: readiness says it is not ready,
            // writes answer 503 until a quorum forms.
            Err(e) if config.cluster.is_some() => {
                tracing::warn!(node = %me, error = %e, "no leader yet")
            }
            Err(e) => return Err(e.into()),
        }
        // An admin account that is not the operator's stops the node here.
        crate::cluster::check_admin(&meta.client(), &config)?;
        let set_up = meta.client().local().bootstrap()?;
        let needs_admin = config.admin_password_file.is_some()
            && set_up.as_ref().is_none_or(|b| b.admin.is_none());
        if config.cluster.is_none() && (set_up.is_none() || needs_admin) {
            // A single node sets itself up before anything is served, so
            // nobody can sign up before the operator's admin exists.
            crate::cluster::bootstrap(&meta.client(), &config, None).await?;
        }

        // 4. Health, repair, the layout watcher and the leader's duties.
        let health = Arc::new(Health::new(me, config.repair.health_timeout, clock.clone()));
        let disk_count = u16::try_from(config.storage.shard_dirs.len()).unwrap_or(u16::MAX);
        health.update_mine(|h| h.disks = disk_count);
        let repair = Repair::new(
            blocks.clone(),
            meta.client(),
            health.clone(),
            net.clone(),
            config.repair.clone(),
        );
        background.spawn(repair.clone().run_scrubber(background_stop.clone()));
        let cluster = match (&net, &config.cluster) {
            (Some(net), Some(c)) => {
                background.spawn(health.clone().run(net.clone(), background_stop.clone()));
                background.spawn(repair.clone().run_coordinator(background_stop.clone()));
                background.spawn(crate::cluster::watch_layout(
                    meta.client(),
                    placement.clone(),
                    net.clone(),
                    health.clone(),
                    config.clone(),
                    background_stop.clone(),
                ));
                background.spawn(crate::cluster::leader_duties(
                    meta.client(),
                    health.clone(),
                    config.clone(),
                    background_stop.clone(),
                ));
                Some(Cluster::new(health, repair, net.clone(), c.peers.clone()))
            }
            _ => None,
        };

        // 5. The notification hub and the upload sweeper.
        let hub = Arc::new(Hub::default());
        background.spawn(hub.clone().run(meta.client(), background_stop.clone()));
        if let Some(net) = &net {
            background.spawn(hub.clone().run_gossip(net.clone(), background_stop.clone()));
        }
        background.spawn(sweep_uploads(meta.client(), background_stop.clone()));
        tracing::info!(node = %me, "node running");
        Ok(Self {
            config,
            clock,
            meta: meta.client(),
            blocks,
            cluster,
            hub,
            work: TaskTracker::new(),
            stop,
            running: Mutex::new(Some(Running {
                meta,
                background,
                background_stop,
                p2p: p2p_task,
                net_stop,
            })),
        })
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub fn meta(&self) -> &MetaClient {
        &self.meta
    }

    pub fn blocks(&self) -> &Arc<BlockStore> {
        &self.blocks
    }

    /// Accounts, sessions and layout changes, for front ends.
    pub fn accounts(&self) -> crate::accounts::Accounts {
        crate::accounts::Accounts::new(self.meta.clone())
    }

    /// The drive's operations, for front ends.
    pub fn drive(&self) -> crate::drive::Drive {
        crate::drive::Drive::new(
            self.meta.clone(),
            self.blocks.clone(),
            self.cluster.is_some(),
        )
    }

    /// Health, repair and peers of a cluster node (`None` on a single node).
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Long polls and presence.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Where front ends run work that outlives a request.
    pub fn work(&self) -> &TaskTracker {
        &self.work
    }

    /// Whether the bootstrap file's password logs in as the admin now.
    pub fn admin_password_works(&self) -> bool {
        crate::cluster::check_admin(&self.meta, &self.config).unwrap_or(false)
    }

    /// Stops the node, stage by stage, each awaited: background work, then
    /// work a request left running, then Raft and the network, then the
    /// disks (with the last handle to the block store). Front ends stop
    /// first. Calling it again does nothing.
    pub async fn shutdown(&self) {
        let Some(mut running) = self.running.lock().await.take() else {
            return;
        };
        running.background_stop.cancel();
        while let Some(r) = running.background.join_next().await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "background task ended abnormally");
            }
        }
        self.work.close();
        self.blocks.tasks().close();
        let drained = async {
            self.work.wait().await;
            self.blocks.tasks().wait().await;
        };
        if tokio::time::timeout(DETACHED_DRAIN, drained).await.is_err() {
            tracing::warn!("request work still running after {DETACHED_DRAIN:?}; stopping anyway");
        }
        running.meta.shutdown().await;
        running.net_stop.cancel();
        if let Some(p2p) = running.p2p.take() {
            let _ = p2p.await;
        }
        self.stop.cancel();
        tracing::info!(node = %self.config.node_id, "node stopped");
    }
}

/// Drops expired upload sessions and their references, on the leader only.
async fn sweep_uploads(meta: MetaClient, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !meta.is_leader() {
            continue;
        }
        match meta
            .write(Command::ExpireUploads { limit: SWEEP_BATCH })
            .await
        {
            Ok(raft_meta::Output::Expired(n)) if n > 0 => {
                tracing::info!(expired = n, "upload sessions expired")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "upload sweep failed"),
        }
    }
}
