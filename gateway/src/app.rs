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
    /// The drive's operations (paths through shares, writes).
    pub drive: strata_node::drive::Drive,
    /// Accounts, sessions and layout changes.
    pub accounts: strata_node::accounts::Accounts,
    pub meta: MetaClient,
    pub blocks: Arc<BlockStore>,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    /// Request bodies being turned into blocks at once, shared per account.
    pub upload_slots: Arc<crate::limits::UploadSlots>,
    pub password_slots: Semaphore,
    /// Password checks waiting for a slot (bounded: see `accounts`).
    pub password_queue: std::sync::atomic::AtomicUsize,
    /// Password checks per client address.
    pub password_waiters: Arc<crate::limits::PerAddress>,
    /// Back-off for failed logins.
    pub logins: crate::limits::LoginThrottle,
    /// Accounts created per address.
    pub signups: crate::limits::SignupLimit,
    /// Session tokens, hashed with a key from the cluster secret.
    pub tokens: crate::auth::Tokens,
    pub upload_locks: UploadLocks,
    pub metrics: Metrics,
    /// A hash to verify against when a username is unknown, so a login for
    /// a missing user costs as long as one with a wrong password.
    pub dummy_password_hash: String,
    /// Work that outlives its request (an upload request whose client went
    /// away still stores and commits what arrived): the node's, which waits
    /// for it when it stops.
    pub tasks: tokio_util::task::TaskTracker,
    /// Health, repair and peers of a cluster node (`None` on a single node).
    pub cluster: Option<strata_node::cluster::Cluster>,
    /// Long polls and presence.
    pub hub: Arc<strata_node::notify::Hub>,
    /// The scrape credential for `/metrics` and `/readyz` details.
    pub metrics_token: Option<String>,
}

impl App {
    /// The front end's state over a running node.
    pub fn new(node: &strata_node::Node) -> Self {
        let (meta, blocks, config, clock) = (
            node.meta().clone(),
            node.blocks().clone(),
            node.config().clone(),
            node.clock().clone(),
        );
        let upload_slots = crate::limits::UploadSlots::new(
            config.limits.max_inflight_uploads,
            config.limits.max_uploads_per_user,
        );
        let dummy_password_hash =
            crate::auth::hash_password(&crate::auth::random_token_secret_hex()).unwrap_or_default();
        let signups = crate::limits::SignupLimit::new(
            config.limits.signups_per_address_per_hour,
            std::time::Duration::from_secs(3600),
        );
        let tokens = crate::auth::Tokens::new(
            blocks
                .key_ring()
                .purpose_key("strata 2026-12 session token hash key v2"),
        );
        Self {
            drive: node.drive(),
            accounts: node.accounts(),
            meta,
            blocks,
            config,
            clock,
            upload_slots,
            password_slots: Semaphore::new(PASSWORD_SLOTS),
            password_queue: std::sync::atomic::AtomicUsize::new(0),
            password_waiters: Arc::default(),
            logins: crate::limits::LoginThrottle::default(),
            signups,
            tokens,
            upload_locks: UploadLocks::default(),
            metrics: Metrics::default(),
            dummy_password_hash,
            tasks: node.work().clone(),
            cluster: node.cluster().cloned(),
            hub: node.hub().clone(),
            metrics_token: None,
        }
    }
}

impl App {
    /// An upload slot for `user`, or `429` when the account holds its share.
    pub async fn upload_slot(
        &self,
        user: cluster_config::UserId,
    ) -> Result<crate::limits::UploadSlot, crate::error::ApiError> {
        match self.upload_slots.acquire(user).await {
            Ok(Some(slot)) => Ok(slot),
            Ok(None) => Err(crate::error::ApiError::too_many_requests(
                "this account is already uploading as much as it may at once; retry when one finishes",
                2,
            )),
            Err(()) => Err(crate::error::ApiError::unavailable("shutting down")),
        }
    }

    /// Metadata for answering a read: on a cluster node, current as of the
    /// leader (a write acknowledged through any node is visible); on a
    /// single node, the local state machine, which is the leader's.
    pub async fn read(&self) -> Result<&raft_meta::MetaReader, raft_meta::MetaError> {
        self.drive.read().await
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
