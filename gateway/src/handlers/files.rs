//! Metadata, listing, history, restore, delete, move, folders.

use http::StatusCode;
use std::collections::HashMap;

use cluster_config::UserId;
use raft_meta::{MetaReader, Output};
use strata_api::{
    FolderRequest, HistoryResponse, ListResponse, MoveRequest, RestoreRequest, VersionInfo,
};
use strata_node::drive::Seen;

use super::shares::{self, Target};
use super::{empty, json, metadata, parse_path, rfc3339, DeviceNames, Response};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

const DEFAULT_LIST_LIMIT: u64 = 10_000;
const MAX_LIST_LIMIT: u64 = 100_000;
const MAX_HISTORY_LIMIT: u64 = 10_000;

/// The answer for a command that returns an entry.
pub(crate) fn entry_response(
    app: &App,
    target: &Target,
    status: StatusCode,
    out: Output,
) -> ApiResult<Response> {
    let Output::Entry(view) = out else {
        return Err(ApiError::internal("unexpected command result"));
    };
    let reader = app.meta.local();
    let mut names = DeviceNames::new(reader, target.user);
    Ok(json(
        status,
        &metadata(&mut names, &target.show(&view.path), &view.record),
    ))
}

/// A seen entry as the API's file metadata (device names from the tree's
/// owner, one lookup cache per owner).
fn seen_metadata<'a>(
    reader: &'a MetaReader,
    names: &mut HashMap<UserId, DeviceNames<'a>>,
    seen: &Seen,
) -> strata_api::FileMetadata {
    match seen {
        Seen::Virtual(path) => shares::virtual_folder(path),
        Seen::Entry {
            path,
            owner,
            record,
            shared,
        } => {
            let names = names
                .entry(*owner)
                .or_insert_with(|| DeviceNames::new(reader, *owner));
            let mut m = metadata(names, path, record);
            m.shared |= *shared;
            m
        }
    }
}

pub async fn get_metadata(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    let seen = app.drive.stat(&caller.actor(), &path).await?;
    let mut names = HashMap::new();
    let meta = seen_metadata(app.meta.local(), &mut names, &seen);
    Ok(json(StatusCode::OK, &meta))
}

pub async fn list(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.param("path").unwrap_or("/"))?;
    let recursive = req.param_bool("recursive")?;
    let limit = req
        .param_u64("limit")?
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let listing = app
        .drive
        .list(&caller.actor(), &path, recursive, limit as usize)
        .await?;
    let reader = app.meta.local();
    let mut names = HashMap::new();
    let entries = listing
        .entries
        .iter()
        .map(|seen| seen_metadata(reader, &mut names, seen))
        .collect();
    Ok(json(
        StatusCode::OK,
        &ListResponse {
            entries,
            has_more: listing.has_more,
        },
    ))
}

pub async fn history(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    let limit = req
        .param_u64("limit")?
        .unwrap_or(100)
        .clamp(1, MAX_HISTORY_LIMIT);
    let history = app
        .drive
        .history(&caller.actor(), &path, limit as usize)
        .await?;
    let mut names = DeviceNames::new(app.meta.local(), history.owner);
    let versions = history
        .versions
        .into_iter()
        .map(|(n, v)| VersionInfo {
            version: n,
            size: v.size,
            content_hash: if v.deleted {
                String::new()
            } else {
                cluster_config::ids::to_hex(&v.content_hash)
            },
            modified_at: rfc3339(v.at_ms),
            modified_by_device: names.name(&v.device),
            deleted: v.deleted,
        })
        .collect();
    Ok(json(StatusCode::OK, &HistoryResponse { versions }))
}

pub async fn restore(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: RestoreRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let path = parse_path(&body.path)?;
    let (t, out) = app
        .drive
        .restore(&caller.actor(), &path, body.version)
        .await?;
    entry_response(app, &t, StatusCode::CREATED, out)
}

pub async fn delete(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    app.drive.delete(&caller.actor(), &path).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn move_entry(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: MoveRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let from = parse_path(&body.from)?;
    let to = parse_path(&body.to)?;
    let (dst, out) = app.drive.move_entry(&caller.actor(), &from, &to).await?;
    entry_response(app, &dst, StatusCode::OK, out)
}

pub async fn create_folder(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: FolderRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let path = parse_path(&body.path)?;
    if path.is_root() {
        return Err(ApiError::conflict("the root folder exists"));
    }
    let (t, out) = app.drive.create_folder(&caller.actor(), &path).await?;
    entry_response(app, &t, StatusCode::CREATED, out)
}
