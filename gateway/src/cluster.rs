//! What a node of a multi-node cluster runs besides the API: the layout
//! watcher, and the duties of the leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::{Config, Peer};
use raft_meta::records::{LayoutMember, LayoutRecord, MemberState};
use raft_meta::{Command, CommandError, MetaClient, MetaError};
use strata_node::health::Health;
use strata_node::net::{PeerAddr, SharedNet};
use strata_node::placement::Placement;
use strata_node::repair::Repair;
use tokio_util::sync::CancellationToken;

/// The cluster side of a node, for the admin API.
pub struct Cluster {
    pub health: Arc<Health>,
    pub repair: Arc<Repair>,
    pub net: SharedNet,
    pub peers: Vec<Peer>,
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
    let mut all: BTreeMap<u64, PeerAddr> = config_peers
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
        placement.update(|v| {
            if let Some(l) = &layout {
                v.profile = cluster_config::ErasureProfile {
                    data: l.data_shards,
                    parity: l.parity_shards,
                };
            }
            v.layout = layout;
            v.healthy = healthy;
        });
    }
}

/// On the leader: write the first layout, create the bootstrap admin
/// account, and steer Raft membership after the layout.
pub async fn leader_duties(
    meta: MetaClient,
    health: Arc<Health>,
    config: Arc<Config>,
    stop: CancellationToken,
) {
    let mut admin_done = config.admin_password_file.is_none();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !meta.is_leader() {
            continue;
        }
        let layout = match meta.local().layout() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "reading the layout");
                continue;
            }
        };
        let Some(layout) = layout else {
            if let Some(first) = initial_layout(&config) {
                match meta
                    .write(Command::SetLayout {
                        expected_version: 0,
                        layout: first,
                    })
                    .await
                {
                    Ok(_) => tracing::info!("first cluster layout written"),
                    Err(e) => tracing::warn!(error = %e, "writing the first layout"),
                }
            }
            continue;
        };
        if !admin_done {
            admin_done = ensure_admin(&meta, &config).await;
        }
        if let Err(e) = strata_node::membership::sync(&meta, &layout, &health).await {
            tracing::warn!(error = %e, "Raft membership change");
        }
    }
}

async fn ensure_admin(meta: &MetaClient, config: &Config) -> bool {
    let Some(path) = &config.admin_password_file else {
        return true;
    };
    match meta.local().user_by_name("admin") {
        Ok(Some(_)) => return true,
        Ok(None) => {}
        Err(_) => return false,
    }
    let password = match cluster_config::secrets::check_private(path).and_then(|_| {
        std::fs::read_to_string(path).map_err(|source| cluster_config::ConfigError::Io {
            path: path.clone(),
            source,
        })
    }) {
        Ok(p) => p.trim().to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "admin password file");
            return true;
        }
    };
    let Ok(hash) = crate::auth::hash_password(&password) else {
        return false;
    };
    match meta
        .write(Command::CreateUser {
            user: cluster_config::UserId::random(),
            username: "admin".into(),
            password_hash: hash,
            quota_bytes: config.limits.default_quota_bytes,
            admin: true,
        })
        .await
    {
        Ok(_) => {
            tracing::info!("admin account created");
            true
        }
        Err(MetaError::Command(CommandError::UsernameTaken)) => true,
        Err(e) => {
            tracing::warn!(error = %e, "creating the admin account");
            false
        }
    }
}
