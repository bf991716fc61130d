//! The admin API: cluster status, membership, and a full shard census.
//! Admin accounts only.

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_config::NodeId;
use http::StatusCode;
use raft_meta::records::{LayoutMember, MemberState};
use serde::{Deserialize, Serialize};
use strata_node::health::Heartbeat;

use super::{json, Response};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

pub async fn require_admin(app: &App, caller: &Caller) -> ApiResult<()> {
    let user = app
        .meta
        .local()
        .user(&caller.user)?
        .ok_or_else(ApiError::unauthorized)?;
    if user.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("admin accounts only"))
    }
}

#[derive(Serialize)]
struct MemberStatus {
    id: NodeId,
    role: &'static str,
    healthy: bool,
    state: &'static str,
    api_url: String,
    p2p_addr: String,
    zone: Option<String>,
    last_seen_ms: Option<u64>,
    local_missing: u64,
    shards_scrubbed: u64,
    shards_rebuilt: u64,
}

#[derive(Serialize)]
struct RepairView {
    repaired_total: u64,
    moved_total: u64,
    scans_completed: u64,
    blocks_scanned: u64,
    /// Layout version the last completed repair scan used.
    layout_version: u64,
    /// Share of the known repair work done, 0..1.
    progress: f64,
    /// Blocks with fewer than K+M shards on live nodes.
    blocks_short: u64,
    /// Blocks with fewer than K shards on live nodes: unreadable until
    /// their nodes return, lost if they do not.
    blocks_unreadable: u64,
    /// Files using such blocks (`user:/path`), the first 100.
    unreadable_files: Vec<String>,
}

#[derive(Serialize)]
struct ClusterStatus {
    node_id: NodeId,
    leader: Option<NodeId>,
    term: u64,
    layout_version: u64,
    erasure: String,
    members: Vec<MemberStatus>,
    /// Shards to rebuild or move; `null` while no repair scan has completed
    /// since this leader took over or since a member went down (it is not
    /// known yet).
    repair_backlog: Option<u64>,
    /// `scanning` (no current figures yet), `repairing` or `idle`.
    repair_state: &'static str,
    repair: RepairView,
}

pub async fn cluster(app: &App, caller: &Caller) -> ApiResult<Response> {
    require_admin(app, caller).await?;
    let me = app.meta.node_id();
    let metrics = app.meta.raft_metrics();
    let membership = metrics.membership_config.membership().clone();
    // openraft numbers members with plain u64s; a 0 is never one.
    let voters: BTreeSet<NodeId> = membership.voter_ids().filter_map(NodeId::new).collect();
    let leader = metrics.current_leader.and_then(NodeId::new);
    let layout = app.meta.local().layout()?;
    let view = app.blocks.placement().view();
    let role = |id: NodeId| {
        if leader == Some(id) {
            "leader"
        } else if voters.contains(&id) {
            "follower"
        } else {
            "learner"
        }
    };
    let mut members = Vec::new();
    let mut local_missing = 0;
    let mut leader_repair = None;
    let mut down_now = Vec::new();
    match (&app.cluster, &layout) {
        (Some(cluster), Some(layout)) => {
            for (id, m) in layout.members.iter().map(|m| (m.id, m)) {
                let h = cluster.health().peer(id);
                let beat = h.beat.clone().unwrap_or_else(|| Heartbeat::new(id));
                if !h.healthy && m.state == MemberState::Active {
                    down_now.push(id);
                }
                if h.healthy {
                    local_missing += beat.local_missing;
                }
                if leader == Some(id) {
                    leader_repair = if id == me {
                        Some(cluster.repair().status())
                    } else {
                        beat.repair.clone()
                    };
                }
                members.push(MemberStatus {
                    id,
                    role: role(id),
                    healthy: h.healthy,
                    state: match m.state {
                        MemberState::Active => "active",
                        MemberState::Removed => "removed",
                    },
                    api_url: m.api_url.clone(),
                    p2p_addr: m.p2p_addr.clone(),
                    zone: m.zone.clone(),
                    last_seen_ms: h.last_seen.map(|d| d.as_millis() as u64),
                    local_missing: beat.local_missing,
                    shards_scrubbed: beat.shards_scrubbed,
                    shards_rebuilt: beat.shards_rebuilt,
                });
            }
        }
        _ => {
            members.push(MemberStatus {
                id: me,
                role: role(me),
                healthy: true,
                state: "active",
                api_url: String::new(),
                p2p_addr: String::new(),
                zone: app.config.zone.clone(),
                last_seen_ms: Some(0),
                local_missing: 0,
                shards_scrubbed: 0,
                shards_rebuilt: app
                    .blocks
                    .stats()
                    .shards_repaired
                    .load(std::sync::atomic::Ordering::Relaxed),
            });
        }
    }
    let repair = leader_repair.unwrap_or_default();
    let backlog = repair.backlog + local_missing;
    let done = repair.repaired_total + repair.moved_total;
    // No figures yet, or figures older than a few scans (the coordinator
    // is busy or failing): what is known now is that nothing is known.
    let stale_after = (app.config.repair.scan_interval * 5).max(Duration::from_secs(15));
    let stale =
        app.meta.now_ms().saturating_sub(repair.last_progress_ms) > stale_after.as_millis() as u64;
    // A member went down after the last scan planned: its shards are not
    // counted yet, and "idle" would be a guess.
    let went_down = down_now.iter().any(|id| !repair.down.contains(id));
    let scanning = app.cluster.is_some() && (repair.scans_completed == 0 || stale || went_down);
    let status = ClusterStatus {
        node_id: me,
        leader,
        term: metrics.current_term,
        layout_version: layout.as_ref().map(|l| l.version).unwrap_or(0),
        erasure: format!("{}+{}", view.profile.data, view.profile.parity),
        members,
        repair_backlog: (!scanning).then_some(backlog),
        repair_state: if scanning {
            "scanning"
        } else if backlog > 0 || repair.blocks_short > 0 {
            "repairing"
        } else {
            "idle"
        },
        repair: RepairView {
            blocks_short: repair.blocks_short,
            blocks_unreadable: repair.blocks_unreadable,
            unreadable_files: repair.unreadable_files.clone(),
            repaired_total: repair.repaired_total,
            moved_total: repair.moved_total,
            scans_completed: repair.scans_completed,
            blocks_scanned: repair.blocks_scanned,
            layout_version: repair.layout_version,
            progress: if done + backlog == 0 {
                1.0
            } else {
                done as f64 / (done + backlog) as f64
            },
        },
    };
    Ok(json(StatusCode::OK, &status))
}

#[derive(Deserialize)]
struct AddNode {
    /// From 1: a 0 is refused when the body is read.
    id: NodeId,
    peer_id: String,
    p2p_addr: String,
    api_url: String,
    zone: Option<String>,
}

pub async fn add_node(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    require_admin(app, caller).await?;
    let body: AddNode = req.json(app.config.limits.max_json_body_bytes).await?;
    if body.peer_id.is_empty() || !body.p2p_addr.starts_with('/') {
        return Err(ApiError::bad_request(
            "id, peer_id and p2p_addr (a multiaddr) are required",
        ));
    }
    let layout = app
        .meta
        .linearizable()
        .await?
        .layout()?
        .ok_or_else(|| ApiError::bad_request("this drive is not a cluster"))?;
    if layout
        .member(body.id)
        .is_some_and(|m| m.state == MemberState::Active)
    {
        return Err(ApiError::conflict(format!(
            "node {} is already a member",
            body.id
        )));
    }
    let mut next = layout.clone();
    next.version += 1;
    next.members.retain(|m| m.id != body.id);
    next.members.push(LayoutMember {
        id: body.id,
        peer_id: body.peer_id,
        p2p_addr: body.p2p_addr,
        api_url: body.api_url,
        zone: body.zone,
        state: MemberState::Active,
    });
    app.accounts
        .set_layout(layout.version, next.clone())
        .await?;
    tracing::info!(
        node = %body.id,
        version = next.version,
        "node added to the layout"
    );
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"layout_version": next.version}),
    ))
}

pub async fn remove_node(app: &App, caller: &Caller, id: &str) -> ApiResult<Response> {
    require_admin(app, caller).await?;
    let id: NodeId = id
        .parse()
        .map_err(|_| ApiError::bad_request("node id must be a number from 1"))?;
    let layout = app
        .meta
        .linearizable()
        .await?
        .layout()?
        .ok_or_else(|| ApiError::bad_request("this drive is not a cluster"))?;
    if !layout
        .member(id)
        .is_some_and(|m| m.state == MemberState::Active)
    {
        return Err(ApiError::not_found());
    }
    let mut next = layout.clone();
    next.version += 1;
    for m in &mut next.members {
        if m.id == id {
            m.state = MemberState::Removed;
        }
    }
    app.accounts
        .set_layout(layout.version, next.clone())
        .await?;
    tracing::info!(node = %id, version = next.version, "node leaving the layout");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"layout_version": next.version}),
    ))
}

/// Asks every holder whether it has each shard, intact.
pub async fn verify(app: &App, caller: &Caller) -> ApiResult<Response> {
    require_admin(app, caller).await?;
    let reader = app.meta.linearizable().await?.clone();
    let net = app.cluster.as_ref().map(|c| c.net());
    let census = strata_node::verify::census(&reader, &app.blocks, net, app.meta.node_id()).await?;
    Ok(json(StatusCode::OK, &census))
}

/// Accounts per page of `GET /api/v1/admin/users`.
const USERS_PAGE: usize = 500;

/// `GET /api/v1/admin/users?after=<id>`: every account, a page at a time.
pub async fn users(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    require_admin(app, caller).await?;
    let after = match req.param("after") {
        None => None,
        Some(raw) => Some(
            raw.parse::<cluster_config::UserId>()
                .map_err(|_| ApiError::bad_request("`after` is the `next` of a previous page"))?,
        ),
    };
    let reader = app.read().await?;
    let page = reader.users_after(after.as_ref(), USERS_PAGE + 1)?;
    let next = (page.len() > USERS_PAGE).then(|| page[USERS_PAGE - 1].0.to_string());
    let mut users = Vec::new();
    for (id, u) in page.into_iter().take(USERS_PAGE) {
        users.push(strata_api::AdminUser {
            disabled: reader.user_settings(&id)?.disabled,
            username: u.username,
            admin: u.admin,
            quota_bytes: u.quota_bytes,
            used_bytes: u.used_bytes,
            created_at: super::rfc3339(u.created_ms),
        });
    }
    Ok(json(
        StatusCode::OK,
        &strata_api::AdminUserList { users, next },
    ))
}

/// `PATCH /api/v1/admin/users/{username}`: quota, disabled, admin rights.
/// Admin rights come from another admin (or the bootstrap), never from a
/// name chosen at sign-up.
pub async fn update_user(
    app: &App,
    caller: &Caller,
    username: &str,
    mut req: Req,
) -> ApiResult<Response> {
    require_admin(app, caller).await?;
    let body: strata_api::AdminUserPatch = req.json(app.config.limits.max_json_body_bytes).await?;
    if body == strata_api::AdminUserPatch::default() {
        return Err(ApiError::bad_request(
            "give at least one of quota_bytes, disabled, admin",
        ));
    }
    let (user, _) = app
        .read()
        .await?
        .user_by_name(username)?
        .ok_or_else(|| ApiError::not_found_msg("no such user"))?;
    let change = strata_node::accounts::AccountChange {
        quota_bytes: body.quota_bytes,
        disabled: body.disabled,
        admin: body.admin,
    };
    app.accounts.change_account(user, change).await?;
    tracing::info!(by = %caller.user, user = %user, admin = ?body.admin, disabled = ?body.disabled, quota = ?body.quota_bytes, "account changed by an admin");
    let reader = app.read().await?;
    let u = reader.user(&user)?.ok_or_else(ApiError::not_found)?;
    Ok(json(
        StatusCode::OK,
        &strata_api::AdminUser {
            disabled: reader.user_settings(&user)?.disabled,
            username: u.username,
            admin: u.admin,
            quota_bytes: u.quota_bytes,
            used_bytes: u.used_bytes,
            created_at: super::rfc3339(u.created_ms),
        },
    ))
}
