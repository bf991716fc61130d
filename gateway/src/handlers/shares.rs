//! Sharing: `/api/v1/shares`, and the `/Shared/<owner>/<name>` view through
//! which every file endpoint reaches what others share with the caller.
//!
//! Every path a file endpoint receives goes through [`resolve`]: a path of
//! the caller's own tree maps to itself; a path under `/Shared` maps to the
//! owner's tree, with the share's role deciding whether writes are allowed.
//! The caller never learns anything about an owner's tree outside what was
//! shared (an unknown or revoked share is a plain `404`).

use cluster_config::{ShareId, UserId};
use http::StatusCode;
use raft_meta::records::{EntryKind, ShareRecord, ShareRole};
use raft_meta::SHARED_ROOT;
use raft_meta::{DrivePath, MetaReader};
use strata_api::{ShareCreated, ShareInfo, ShareList, ShareRequest};
use strata_node::drive;

use super::{empty, json, rfc3339, Response};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

pub use strata_node::drive::Target;

/// A path that must lead into a tree.
pub fn target(reader: &MetaReader, caller: &Caller, path: &DrivePath) -> ApiResult<Target> {
    Ok(drive::target(reader, &caller.user, path)?)
}

/// A virtual folder's metadata.
pub fn virtual_folder(path: &str) -> strata_api::FileMetadata {
    strata_api::FileMetadata {
        path: path.to_string(),
        name: path.rsplit('/').next().unwrap_or_default().to_string(),
        kind: strata_api::EntryKind::Folder,
        size: 0,
        version: 0,
        content_hash: String::new(),
        modified_at: rfc3339(0),
        modified_by_device: String::new(),
        shared: true,
    }
}

fn state_name(pending: bool) -> String {
    if pending { "pending" } else { "active" }.to_string()
}

fn role_name(r: ShareRole) -> String {
    match r {
        ShareRole::Viewer => "viewer",
        ShareRole::Editor => "editor",
    }
    .to_string()
}

/// `POST /api/v1/shares`.
pub async fn create(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: ShareRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let role = match body.role.as_str() {
        "viewer" => ShareRole::Viewer,
        "editor" => ShareRole::Editor,
        _ => return Err(ApiError::bad_request("role must be viewer or editor")),
    };
    let path = super::parse_path(&body.path)?;
    let (id, pending) = app
        .drive
        .offer_share(&caller.actor(), &path, &body.user, role)
        .await
        .map_err(|e| match e {
            strata_node::drive::DriveError::NotFound => ApiError::not_found_msg("no such user"),
            e => e.into(),
        })?;
    tracing::info!(user = %caller.user, share = %id, pending, "share offered");
    Ok(json(
        StatusCode::CREATED,
        &ShareCreated {
            share_id: id.to_string(),
            state: state_name(pending),
        },
    ))
}

/// `GET /api/v1/shares`.
pub async fn list(app: &App, caller: &Caller) -> ApiResult<Response> {
    let reader = app.read().await?;
    let name_of = |u: &UserId| -> ApiResult<String> {
        Ok(reader.user(u)?.map(|r| r.username).unwrap_or_default())
    };
    let me = name_of(&caller.user)?;
    let kind_of = |owner: &UserId, s: &ShareRecord| -> ApiResult<Option<String>> {
        Ok(reader
            .entry(owner, &s.entry)?
            .filter(|r| r.live)
            .map(|r| match r.kind {
                EntryKind::File => "file".to_string(),
                EntryKind::Folder => "folder".to_string(),
            }))
    };
    let mut by_me = Vec::new();
    for (id, s) in reader.shares_out(&caller.user)? {
        let Some(kind) = kind_of(&caller.user, &s)? else {
            continue;
        };
        by_me.push(ShareInfo {
            share_id: id.to_string(),
            path: reader.entry_path(&caller.user, &s.entry)?,
            owner: me.clone(),
            user: name_of(&s.sharee)?,
            role: role_name(s.role),
            kind,
            created_at: rfc3339(s.created_ms),
            state: state_name(reader.share_pending(&id)?),
        });
    }
    let mut with_me = Vec::new();
    for (id, s) in reader.shares_in(&caller.user)? {
        let Some(kind) = kind_of(&s.owner, &s)? else {
            continue;
        };
        let owner = name_of(&s.owner)?;
        with_me.push(ShareInfo {
            share_id: id.to_string(),
            path: format!("/{SHARED_ROOT}/{owner}/{}", s.name),
            owner,
            user: me.clone(),
            role: role_name(s.role),
            kind,
            created_at: rfc3339(s.created_ms),
            state: state_name(reader.share_pending(&id)?),
        });
    }
    Ok(json(
        StatusCode::OK,
        &ShareList {
            shared_by_me: by_me,
            shared_with_me: with_me,
        },
    ))
}

/// `POST /api/v1/shares/{id}/accept`: the sharee mounts a pending share.
pub async fn accept(app: &App, caller: &Caller, id: &str) -> ApiResult<Response> {
    let id: ShareId = id.parse().map_err(|_| ApiError::not_found())?;
    app.drive.accept_share(&caller.actor(), id).await?;
    tracing::info!(user = %caller.user, share = %id, "share accepted");
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `DELETE /api/v1/shares/{id}`: by the owner (revoke) or the sharee
/// (leave, or decline a pending one).
pub async fn delete(app: &App, caller: &Caller, id: &str) -> ApiResult<Response> {
    let id: ShareId = id.parse().map_err(|_| ApiError::not_found())?;
    app.drive.remove_share(&caller.actor(), id).await?;
    tracing::info!(user = %caller.user, share = %id, "share removed");
    Ok(empty(StatusCode::NO_CONTENT))
}
