//! A whole node process, started and stopped in straight-line order.
//!
//! Start: secret → shard directories → block store → metadata (Raft) →
//! leader → HTTPS listener → background tasks. Stop: stop accepting and
//! drain requests → stop background tasks → stop Raft → close stores.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::{ClusterSecret, Config, ConfigError, SharedClock};
use raft_meta::network::NoPeers;
use raft_meta::{Command, MemberNode, MetaError, MetaNode};
use strata_node::block::store::{LocalShards, StoreError};
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
        let secret = ClusterSecret::load(&config.cluster_secret_file)?;
        let shards = LocalShards::open(&config.storage.shard_dirs)?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let blocks = Arc::new(BlockStore::new(
            KeyRing::new(secret),
            shards,
            config.erasure,
            2 * cores + 2,
        ));

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
        let me = MemberNode {
            api_url: format!("{scheme}://{local_addr}"),
            p2p_addr: String::new(),
        };
        let initial = BTreeMap::from([(config.node_id, me)]);
        let meta = MetaNode::start(
            config.node_id,
            &config.storage.meta_dir,
            Arc::new(NoPeers),
            Some(initial),
            clock.clone(),
        )
        .await?;
        let leader = meta.wait_for_leader(LEADER_WAIT).await?;
        tracing::info!(node = config.node_id, leader, "metadata ready");

        let app = Arc::new(App::new(meta.client(), blocks, config.clone(), clock));
        let tls = match &config.api.tls {
            Some(t) => Some(http::tls_acceptor(&t.cert, &t.key)?),
            None => None,
        };
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(http::serve(
            listener,
            tls,
            app.clone(),
            config.api.max_connections,
            stop.clone(),
        ));
        tasks.spawn(sweep_uploads(app.clone(), stop.clone()));
        tracing::info!(node = config.node_id, addr = %local_addr, scheme, "serving");
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

    /// Creates an account unless the username exists (for `strata dev`).
    pub async fn ensure_user(
        &self,
        username: &str,
        password: &str,
        admin: bool,
    ) -> Result<bool, ServerError> {
        if self.app.meta.local().user_by_name(username)?.is_some() {
            return Ok(false);
        }
        let password_hash = crate::auth::hash_password(password)
            .map_err(|e| ServerError::Meta(MetaError::Storage(e.message)))?;
        self.app
            .meta
            .write(Command::CreateUser {
                user: cluster_config::UserId::random(),
                username: username.to_string(),
                password_hash,
                quota_bytes: self.app.config.limits.default_quota_bytes,
                admin,
            })
            .await?;
        Ok(true)
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

/// Drops expired upload sessions and their references, on the leader only.
async fn sweep_uploads(app: Arc<App>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if app.meta.raft_metrics().current_leader != Some(app.meta.node_id()) {
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
