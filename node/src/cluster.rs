//! What a node runs besides serving: setting the drive up (the bootstrap),
//! and on a multi-node cluster the layout watcher and the duties of the
//! leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::health::Health;
use crate::net::{PeerAddr, SharedNet};
use crate::placement::Placement;
use crate::repair::Repair;
use cluster_config::{Config, NodeId, Peer};
use raft_meta::records::{LayoutMember, LayoutRecord, MemberState};
use raft_meta::types::BootstrapAdmin;
use raft_meta::{Command, CommandError, MetaClient, MetaError};
use tokio_util::sync::CancellationToken;

/// The cluster side of a node, for the admin API: cheap handles.
#[derive(Clone)]
pub struct Cluster {
    health: Arc<Health>,
    repair: Arc<Repair>,
    net: SharedNet,
    peers: Vec<Peer>,
}

impl Cluster {
    pub fn new(health: Arc<Health>, repair: Arc<Repair>, net: SharedNet, peers: Vec<Peer>) -> Self {
        Self {
            health,
            repair,
            net,
            peers,
        }
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub fn repair(&self) -> &Arc<Repair> {
        &self.repair
    }

    pub fn net(&self) -> &SharedNet {
        &self.net
    }

    /// The peers this node's config lists.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }
}

/// The first layout: the config's initial peers.
pub fn initial_layout(config: &Config) -> Option<LayoutRecord> {
    let cluster = config.cluster.as_ref()?;
    Some(LayoutRecord {
        version: 1,
        members: cluster
            .peers
            .iter()
            .filter(|p| p.initial)
            .map(|p| LayoutMember {
                id: p.id,
                peer_id: p.peer_id.to_string(),
                p2p_addr: p.p2p_addr.clone(),
                api_url: p.api_url.clone(),
                zone: p.zone.clone(),
                state: MemberState::Active,
            })
            .collect(),
        data_shards: config.erasure.data,
        parity_shards: config.erasure.parity,
    })
}

/// Everyone this node talks to: the configured peers and the layout's.
fn peer_list(config_peers: &[Peer], layout: Option<&LayoutRecord>) -> Vec<PeerAddr> {
    let mut all: BTreeMap<NodeId, PeerAddr> = config_peers
        .iter()
        .map(|p| {
            (
                p.id,
                PeerAddr {
                    id: p.id,
                    peer_id: p.peer_id.to_string(),
                    p2p_addr: p.p2p_addr.clone(),
                },
            )
        })
        .collect();
    if let Some(l) = layout {
        for m in &l.members {
            all.entry(m.id).or_insert_with(|| PeerAddr {
                id: m.id,
                peer_id: m.peer_id.clone(),
                p2p_addr: m.p2p_addr.clone(),
            });
        }
    }
    all.into_values().collect()
}

/// Keeps placement (layout, erasure profile, who is healthy) and the allowed
/// peers in step with the metadata and the heartbeats.
pub async fn watch_layout(
    meta: MetaClient,
    placement: Arc<Placement>,
    net: SharedNet,
    health: Arc<Health>,
    config: Arc<Config>,
    stop: CancellationToken,
) {
    let peers = config
        .cluster
        .as_ref()
        .map(|c| c.peers.clone())
        .unwrap_or_default();
    let fallback = initial_layout(&config);
    let mut last: Option<LayoutRecord> = None;
    let mut applied = meta.subscribe_applied();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            _ = applied.recv() => {}
        }
        let layout = match meta.local().layout() {
            Ok(Some(l)) => Some(l),
            Ok(None) => fallback.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the layout");
                continue;
            }
        };
        if layout != last {
            net.set_peers(peer_list(&peers, layout.as_ref()));
            last = layout.clone();
        }
        let healthy = layout
            .as_ref()
            .map(|l| {
                l.members
                    .iter()
                    .map(|m| m.id)
                    .filter(|id| health.is_healthy(*id))
                    .collect()
            })
            .unwrap_or_default();
        let disks = health.disks();
        placement.update(|v| {
            if let Some(l) = &layout {
                v.profile = cluster_config::ErasureProfile {
                    data: l.data_shards,
                    parity: l.parity_shards,
                };
            }
            v.layout = layout;
            v.healthy = healthy;
            v.disks = disks;
            v.min_write = config.min_write_shards;
        });
    }
}

/// On the leader: set the drive up (first layout and the operator's admin,
/// in one command), and steer Raft membership after the layout.
pub async fn leader_duties(
    meta: MetaClient,
    health: Arc<Health>,
    config: Arc<Config>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // A round waits on Raft (a membership change commits only with a
        // quorum), so the stop is watched while it runs too: a leader cut
        // off in the middle of a change must still shut down.
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = leader_round(&meta, &health, &config) => {}
        }
    }
}

/// One round of [`leader_duties`]: nothing unless this node leads.
async fn leader_round(meta: &MetaClient, health: &Health, config: &Config) {
    if !meta.is_leader() {
        return;
    }
    match meta.local().bootstrap() {
        Ok(Some(b)) if b.admin.is_some() || config.admin_password_file.is_none() => {}
        Ok(_) => {
            match bootstrap(meta, config, initial_layout(config)).await {
                Ok(()) => tracing::info!("drive set up: first layout and admin account"),
                Err(e) => tracing::error!(error = %e, "setting the drive up"),
            }
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the bootstrap record");
            return;
        }
    }
    let layout = match meta.local().layout() {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading the layout");
            return;
        }
    };
    if let Err(e) = crate::membership::sync(meta, &layout, health).await {
        tracing::warn!(error = %e, "Raft membership change");
    }
}

/// The name of the operator's admin account.
pub const ADMIN_USERNAME: &str = "admin";

/// Why the drive could not be set up, or why its admin account is not the
/// operator's.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Config(#[from] cluster_config::ConfigError),
    #[error(transparent)]
    Hash(#[from] crate::passwords::HashError),
    #[error("hashing the admin password: {0}")]
    Task(String),
    #[error(
        "the account {ADMIN_USERNAME:?} exists without admin rights (it was signed up before the \
         drive was set up); the operator's admin account cannot be created. Rename or remove it \
         with a release that still has it, or start from an empty drive"
    )]
    AdminNameTaken,
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// The operator's password from the bootstrap file, trimmed.
pub fn admin_password(config: &Config) -> Result<Option<String>, cluster_config::ConfigError> {
    let Some(path) = &config.admin_password_file else {
        return Ok(None);
    };
    cluster_config::secrets::check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| cluster_config::ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(Some(text.trim().to_string()))
}

/// Sets the drive up: proposes `Bootstrap` with `layout` and the admin of
/// the config's password file. Nothing happens if it is set up already.
pub async fn bootstrap(
    meta: &MetaClient,
    config: &Config,
    layout: Option<LayoutRecord>,
) -> Result<(), BootstrapError> {
    let admin = match admin_password(config)? {
        None => None,
        Some(password) => {
            let hash =
                tokio::task::spawn_blocking(move || crate::passwords::hash_password(&password))
                    .await
                    .map_err(|e| BootstrapError::Task(e.to_string()))??;
            Some(BootstrapAdmin {
                user: cluster_config::UserId::random(),
                username: ADMIN_USERNAME.into(),
                password_hash: hash,
                quota_bytes: config.limits.default_quota_bytes,
            })
        }
    };
    match meta.write(Command::Bootstrap { layout, admin }).await {
        Ok(_) => Ok(()),
        Err(MetaError::Command(CommandError::AdminNameTaken(_))) => {
            Err(BootstrapError::AdminNameTaken)
        }
        Err(e) => Err(e.into()),
    }
}

/// At start: an account with the admin's name that is not the operator's
/// (taken by a sign-up on a drive set up before bootstrap records) is a
/// hard error; a bootstrap password that no longer logs in (changed
/// through the API since) is said once. Returns whether the file's
/// password logs in as the admin.
pub fn check_admin(meta: &MetaClient, config: &Config) -> Result<bool, BootstrapError> {
    let Some(password) = admin_password(config)? else {
        return Ok(false);
    };
    let reader = meta.local();
    let boot = reader.bootstrap()?;
    let Some((id, rec)) = reader.user_by_name(ADMIN_USERNAME)? else {
        return Ok(false);
    };
    let operator = match &boot {
        Some(b) => b.admin == Some(id),
        None => rec.admin,
    };
    if !operator {
        return Err(BootstrapError::AdminNameTaken);
    }
    let works = crate::passwords::verify_password(&password, &rec.password_hash);
    if !works {
        tracing::warn!(
            file = %config.admin_password_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "the admin password was changed through the API; the bootstrap file no longer logs in"
        );
    }
    Ok(works)
}
