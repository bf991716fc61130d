//! What every handler shares: metadata, blocks, config, limits, counters.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use cluster_config::{Config, SharedClock, UploadId};
use raft_meta::MetaClient;
use strata_node::BlockStore;
use tokio::sync::Semaphore;

/// Password hashes computed at once (each costs ~20 MiB and tens of ms).
const PASSWORD_SLOTS: usize = 2;

pub struct App {
    pub meta: MetaClient,
    pub blocks: Arc<BlockStore>,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    /// Request bodies being turned into blocks at once.
    pub upload_slots: Arc<Semaphore>,
    pub password_slots: Semaphore,
    pub upload_locks: UploadLocks,
    pub metrics: Metrics,
    /// A hash to verify against when a username is unknown, so a login for
    /// a missing user costs as long as one with a wrong password.
    pub dummy_password_hash: String,
    /// Work that outlives its request (an upload request whose client went
    /// away still stores and commits what arrived); shutdown waits for it.
    pub tasks: tokio_util::task::TaskTracker,
    /// Health, repair and peers of a cluster node (`None` on a single node).
    pub cluster: Option<crate::cluster::Cluster>,
    /// Long polls and presence.
    pub hub: Arc<crate::notify::Hub>,
}

impl App {
    pub fn new(
        meta: MetaClient,
        blocks: Arc<BlockStore>,
        config: Arc<Config>,
        clock: SharedClock,
    ) -> Self {
        let upload_slots = Arc::new(Semaphore::new(config.limits.max_inflight_uploads));
        let dummy_password_hash =
            crate::auth::hash_password(&crate::auth::random_token_secret_hex()).unwrap_or_default();
        Self {
            meta,
            blocks,
            config,
            clock,
            upload_slots,
            password_slots: Semaphore::new(PASSWORD_SLOTS),
            upload_locks: UploadLocks::default(),
            metrics: Metrics::default(),
            dummy_password_hash,
            tasks: tokio_util::task::TaskTracker::new(),
            cluster: None,
            hub: Arc::new(crate::notify::Hub::default()),
        }
    }
}

impl App {
    /// Metadata for answering a read: on a cluster node, current as of the
    /// leader (a write acknowledged through any node is visible); on a
    /// single node, the local state machine, which is the leader's.
    pub async fn read(&self) -> Result<&raft_meta::MetaReader, raft_meta::MetaError> {
        if self.cluster.is_some() {
            self.meta.linearizable().await
        } else {
            Ok(self.meta.local())
        }
    }
}

/// Serialises requests on one upload session within this node.
#[derive(Default)]
pub struct UploadLocks(Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>);

impl UploadLocks {
    pub fn get(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Drop locks nobody holds, so the map stays as small as the live set.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(*id).or_default().clone()
    }
}

/// Prometheus counters.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub responses_2xx: AtomicU64,
    pub responses_3xx: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub uploads_committed: AtomicU64,
}
