//! Metadata, listing, history, restore, delete, move, folders.

use http::StatusCode;
use raft_meta::records::EntryKind;
use raft_meta::{Command, Output, Resolved};
use strata_api::{
    FolderRequest, HistoryResponse, ListResponse, MoveRequest, RestoreRequest, VersionInfo,
};

use super::{empty, json, metadata, parse_path, rfc3339, DeviceNames, Response};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

const DEFAULT_LIST_LIMIT: u64 = 10_000;
const MAX_LIST_LIMIT: u64 = 100_000;
const MAX_HISTORY_LIMIT: u64 = 10_000;

fn seed() -> [u8; 16] {
    rand::random()
}

/// The answer for a command that returns an entry.
fn entry_response(
    app: &App,
    caller: &Caller,
    status: StatusCode,
    out: Output,
) -> ApiResult<Response> {
    let Output::Entry(view) = out else {
        return Err(ApiError::internal("unexpected command result"));
    };
    let reader = app.meta.local();
    let mut names = DeviceNames::new(reader, caller.user);
    Ok(json(
        status,
        &metadata(&mut names, &view.path, &view.record),
    ))
}

pub async fn get_metadata(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    let reader = app.read().await?;
    let (_, rec) = reader
        .live(&caller.user, &path)?
        .ok_or_else(ApiError::not_found)?;
    let mut names = DeviceNames::new(reader, caller.user);
    Ok(json(
        StatusCode::OK,
        &metadata(&mut names, &path.to_string(), &rec),
    ))
}

pub async fn list(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.param("path").unwrap_or("/"))?;
    let recursive = req.param_bool("recursive")?;
    let limit = req
        .param_u64("limit")?
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let reader = app.read().await?;
    let (id, rec) = reader
        .live(&caller.user, &path)?
        .ok_or_else(ApiError::not_found)?;
    if rec.kind != EntryKind::Folder {
        return Err(ApiError::bad_request("not a folder"));
    }
    let listed = reader.list(
        &caller.user,
        &id,
        &path.to_string(),
        recursive,
        limit as usize + 1,
    )?;
    let has_more = listed.len() > limit as usize;
    let mut names = DeviceNames::new(reader, caller.user);
    let entries = listed
        .iter()
        .take(limit as usize)
        .map(|l| metadata(&mut names, &l.path, &l.record))
        .collect();
    Ok(json(StatusCode::OK, &ListResponse { entries, has_more }))
}

pub async fn history(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    let limit = req
        .param_u64("limit")?
        .unwrap_or(100)
        .clamp(1, MAX_HISTORY_LIMIT);
    let reader = app.read().await?;
    let id = match reader.resolve(&caller.user, &path)? {
        Resolved::Found(id, rec) if rec.kind == EntryKind::File => id,
        Resolved::Found(..) => return Err(ApiError::bad_request("folders have no history")),
        _ => return Err(ApiError::not_found()),
    };
    let mut names = DeviceNames::new(reader, caller.user);
    let versions = reader
        .versions(&caller.user, &id, limit as usize)?
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
    let out = app
        .meta
        .write(Command::Restore {
            user: caller.user,
            path: path.segments().to_vec(),
            version: body.version,
            device: caller.device,
            id_seed: seed(),
        })
        .await?;
    entry_response(app, caller, StatusCode::CREATED, out)
}

pub async fn delete(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    if path.is_root() {
        return Err(ApiError::bad_request("the root folder cannot be deleted"));
    }
    app.meta
        .write(Command::Delete {
            user: caller.user,
            path: path.segments().to_vec(),
            device: caller.device,
        })
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn move_entry(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: MoveRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let from = parse_path(&body.from)?;
    let to = parse_path(&body.to)?;
    if from.is_root() || to.is_root() {
        return Err(ApiError::bad_request(
            "the root folder cannot be moved or replaced",
        ));
    }
    let out = app
        .meta
        .write(Command::Move {
            user: caller.user,
            from: from.segments().to_vec(),
            to: to.segments().to_vec(),
            device: caller.device,
            id_seed: seed(),
        })
        .await?;
    entry_response(app, caller, StatusCode::OK, out)
}

pub async fn create_folder(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: FolderRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let path = parse_path(&body.path)?;
    if path.is_root() {
        return Err(ApiError::conflict("the root folder exists"));
    }
    let out = app
        .meta
        .write(Command::CreateFolder {
            user: caller.user,
            path: path.segments().to_vec(),
            device: caller.device,
            id_seed: seed(),
        })
        .await?;
    entry_response(app, caller, StatusCode::CREATED, out)
}
