//! A whole node process, started and stopped in straight-line order.
//!
//! Start: secret → shard directories → block store → metadata (Raft) →
//! leader → HTTPS listener → background tasks. Stop: stop accepting and
//! drain requests → stop background tasks → stop Raft → close stores.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::node_key::load_node_key;
use cluster_config::{ClusterSecret, Config, ConfigError, SharedClock};
use raft_meta::network::{NoPeers, RaftTransport};
use raft_meta::{Command, MemberNode, MetaError, MetaNode};
use strata_node::block::store::{LocalShards, StoreError};
use strata_node::health::Health;
use strata_node::net::p2p::P2pNet;
use strata_node::net::raft::NetRaftTransport;
use strata_node::net::serve::NodeHandler;
use strata_node::net::{PeerAddr, SharedNet};
use strata_node::placement::{Placement, View};
use strata_node::repair::Repair;
use strata_node::{BlockStore, KeyRing};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::http::{self, TlsError};

/// How often expired upload sessions are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
const SWEEP_BATCH: u32 = 256;
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// A cluster node waits this long for a leader before serving anyway.
const CLUSTER_LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long shutdown waits for upload work detached from its connection.
const DETACHED_DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("shard store: {0}")]
    Store(#[from] StoreError),
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("p2p: {0}")]
    P2p(String),
    #[error("setting the drive up: {0}")]
    Bootstrap(#[from] crate::cluster::BootstrapError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct NodeServer {
    app: Arc<App>,
    meta: Option<MetaNode>,
    local_addr: SocketAddr,
    scheme: &'static str,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl NodeServer {
    pub async fn start(config: Config, clock: SharedClock) -> Result<Self, ServerError> {
        let config = Arc::new(config);
        let me = config.node_id;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();

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
        let shards = LocalShards::open(&config.storage.shard_dirs)?;
        if !shards.replaced_disks().is_empty() {
            tracing::info!(disks = ?shards.replaced_disks(), "new or replaced shard directories");
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);

        // 2. The API listener (bound early so its address is known).
        let scheme = if config.api.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let listener = TcpListener::bind(config.api.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.api.listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: config.api.listen,
                source,
            })?;

        // 3. The network, placement and the block store.
        let handler = NodeHandler::default();
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
                let key = load_node_key(&cluster.key_file)?;
                let layout = crate::cluster::initial_layout(&config);
                let peers = cluster
                    .peers
                    .iter()
                    .map(|p| PeerAddr {
                        id: p.id,
                        peer_id: p.peer_id.to_string(),
                        p2p_addr: p.p2p_addr.clone(),
                    })
                    .collect();
                let psk = strata_node::KeyRing::new(secret.clone())
                    .purpose_key(strata_node::net::secure::PSK_CONTEXT);
                let (p2p, task) = P2pNet::start(
                    me,
                    key,
                    psk,
                    &cluster.p2p_listen,
                    peers,
                    Arc::new(handler.clone()),
                    stop.clone(),
                )
                .map_err(|e| ServerError::P2p(e.to_string()))?;
                tasks.spawn(async move {
                    let _ = task.await;
                });
                let net: SharedNet = Arc::new(p2p);
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

        // 4. Metadata: the Raft member. A single node, or the lowest-numbered
        // initial peer of a new cluster, initialises the membership.
        let member = |api_url: String, p2p_addr: String| MemberNode { api_url, p2p_addr };
        let initial = match &config.cluster {
            None => Some(BTreeMap::from([(
                me,
                member(format!("{scheme}://{local_addr}"), String::new()),
            )])),
            Some(cluster) => {
                let voters: Vec<&cluster_config::Peer> =
                    cluster.peers.iter().filter(|p| p.initial).collect();
                let first = voters.iter().map(|p| p.id).min();
                (first == Some(me)).then(|| {
                    voters
                        .iter()
                        .take(strata_node::membership::voter_target(voters.len()))
                        .map(|p| (p.id, member(p.api_url.clone(), p.p2p_addr.clone())))
                        .collect()
                })
            }
        };
        let meta = MetaNode::start(
            me,
            &config.storage.meta_dir,
            transport,
            initial,
            clock.clone(),
        )
        .await?;
        handler.raft.set(meta.raft().clone());
        let leader_wait = if config.cluster.is_some() {
            CLUSTER_LEADER_WAIT
        } else {
            LEADER_WAIT
        };
        match meta.wait_for_leader(leader_wait).await {
            Ok(leader) => tracing::info!(node = me, leader, "metadata ready"),
            // A cluster node serves anyway: /readyz says it is not ready,
            // writes answer 503 until a quorum forms.
            Err(e) if config.cluster.is_some() => {
                tracing::warn!(node = me, error = %e, "no leader yet")
            }
            Err(e) => return Err(e.into()),
        }
        // An admin account that is not the operator's stops the node here.
        crate::cluster::check_admin(&meta.client(), &config)?;
        let set_up = meta.client().local().bootstrap()?;
        let needs_admin = config.admin_password_file.is_some()
            && set_up.as_ref().is_none_or(|b| b.admin.is_none());
        if config.cluster.is_none() && (set_up.is_none() || needs_admin) {
            // A single node sets itself up before it serves a request, so
            // nobody can sign up before the operator's admin exists.
            crate::cluster::bootstrap(&meta.client(), &config, None).await?;
        }

        // 5. Health, repair, the layout watcher and the leader's duties.
        let health = Arc::new(Health::new(me, config.repair.health_timeout));
        let disk_count = u16::try_from(config.storage.shard_dirs.len()).unwrap_or(u16::MAX);
        health.update_mine(|h| h.disks = disk_count);
        let repair = Repair::new(
            blocks.clone(),
            meta.client(),
            health.clone(),
            net.clone(),
            config.repair.clone(),
        );
        tasks.spawn(repair.clone().run_scrubber(stop.clone()));
        let cluster = match (&net, &config.cluster) {
            (Some(net), Some(c)) => {
                tasks.spawn(health.clone().run(net.clone(), stop.clone()));
                tasks.spawn(repair.clone().run_coordinator(stop.clone()));
                tasks.spawn(crate::cluster::watch_layout(
                    meta.client(),
                    placement.clone(),
                    net.clone(),
                    health.clone(),
                    config.clone(),
                    stop.clone(),
                ));
                tasks.spawn(crate::cluster::leader_duties(
                    meta.client(),
                    health.clone(),
                    config.clone(),
                    stop.clone(),
                ));
                Some(crate::cluster::Cluster {
                    health,
                    repair,
                    net: net.clone(),
                    peers: c.peers.clone(),
                })
            }
            _ => None,
        };

        // 6. The API.
        let mut app = App::new(meta.client(), blocks, config.clone(), clock);
        app.cluster = cluster;
        app.metrics_token = load_metrics_token(&config)?;
        let app = Arc::new(app);
        tasks.spawn(app.hub.clone().run(meta.client(), stop.clone()));
        if let Some(net) = &net {
            tasks.spawn(app.hub.clone().run_gossip(net.clone(), stop.clone()));
        }
        let tls = match &config.api.tls {
            Some(t) => Some(http::tls_acceptor(&t.cert, &t.key)?),
            None => None,
        };
        tasks.spawn(http::serve(
            listener,
            tls,
            app.clone(),
            http::ConnLimits::from_config(&config.api),
            stop.clone(),
        ));
        tasks.spawn(sweep_uploads(app.clone(), stop.clone()));
        tracing::info!(node = me, addr = %local_addr, scheme, "serving");
        Ok(Self {
            app,
            meta: Some(meta),
            local_addr,
            scheme,
            stop,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Whether the bootstrap file's password logs in as the admin now.
    pub fn admin_password_works(&self) -> bool {
        crate::cluster::check_admin(&self.app.meta, &self.app.config).unwrap_or(false)
    }

    /// Stops in order; every acknowledged write is already durable.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "task ended abnormally");
            }
        }
        self.app.tasks.close();
        if tokio::time::timeout(DETACHED_DRAIN, self.app.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("upload work still running after {DETACHED_DRAIN:?}; stopping anyway");
        }
        if let Some(meta) = self.meta.take() {
            meta.shutdown().await;
        }
        tracing::info!("node stopped");
    }
}

/// The scrape credential, from a file only the service user may read.
fn load_metrics_token(config: &Config) -> Result<Option<String>, ServerError> {
    let Some(path) = &config.metrics_token_file else {
        return Ok(None);
    };
    cluster_config::secrets::check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    let token = text.trim().to_string();
    if token.len() < 16 {
        return Err(ConfigError::BadSecretFile {
            path: path.clone(),
            reason: "a metrics token needs at least 16 characters".into(),
        }
        .into());
    }
    Ok(Some(token))
}

/// Drops expired upload sessions and their references, on the leader only.
async fn sweep_uploads(app: Arc<App>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !app.meta.is_leader() {
            continue;
        }
        match app
            .meta
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
