//! Metadata, listing, history, restore, delete, move, folders.

use http::StatusCode;
use raft_meta::records::EntryKind;
use raft_meta::{Output, Resolved};
use strata_api::{
    FolderRequest, HistoryResponse, ListResponse, MoveRequest, RestoreRequest, VersionInfo,
};

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

pub async fn get_metadata(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    let reader = app.read().await?;
    let t = match shares::resolve(reader, caller, &path)? {
        shares::Place::Tree(t) => t,
        _ => {
            return Ok(json(
                StatusCode::OK,
                &shares::virtual_folder(&path.to_string()),
            ))
        }
    };
    let (id, rec) = reader
        .live(&t.user, &t.path)?
        .ok_or_else(ApiError::not_found)?;
    let mut names = DeviceNames::new(reader, t.user);
    let mut meta = metadata(&mut names, &path.to_string(), &rec);
    if !t.is_shared() {
        meta.shared = shares::shared_ids(reader, &t.user)?.contains(&id);
    }
    Ok(json(StatusCode::OK, &meta))
}

pub async fn list(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.param("path").unwrap_or("/"))?;
    let recursive = req.param_bool("recursive")?;
    let limit = req
        .param_u64("limit")?
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let reader = app.read().await?;
    let limit = limit as usize;
    let mut entries = Vec::new();
    let mut has_more;
    // Everything under `/Shared` (or one owner's part of it): the mount
    // points, and below them with `recursive`.
    let list_mounts = |entries: &mut Vec<strata_api::FileMetadata>,
                       owner: Option<&cluster_config::UserId>,
                       with_root: bool|
     -> ApiResult<bool> {
        let mounts = shares::mounts(reader, caller, owner)?;
        let mut owners: Vec<String> = Vec::new();
        for (shown, owner_id, root, rec) in mounts {
            if with_root {
                let owner_dir = shown
                    .rsplit_once('/')
                    .map(|x| x.0)
                    .unwrap_or_default()
                    .to_string();
                if !owners.contains(&owner_dir) {
                    owners.push(owner_dir.clone());
                    entries.push(shares::virtual_folder(&owner_dir));
                }
            }
            let mut names = DeviceNames::new(reader, owner_id);
            entries.push(metadata(&mut names, &shown, &rec));
            if recursive && rec.kind == EntryKind::Folder {
                let root_path = parse_path(&root)?;
                let Some((id, _)) = reader.live(&owner_id, &root_path)? else {
                    continue;
                };
                let room = (limit + 1).saturating_sub(entries.len());
                for l in reader.list(&owner_id, &id, &shown, true, room)? {
                    entries.push(metadata(&mut names, &l.path, &l.record));
                }
            }
            if entries.len() > limit {
                return Ok(true);
            }
        }
        Ok(false)
    };
    match shares::resolve(reader, caller, &path)? {
        shares::Place::SharedRoot => {
            has_more = list_mounts(&mut entries, None, true)?;
            if !recursive {
                entries.retain(|e| e.path.matches('/').count() == 2);
            }
        }
        shares::Place::SharedOwner(owner, _) => {
            has_more = list_mounts(&mut entries, Some(&owner), false)?;
        }
        shares::Place::Tree(t) => {
            let (id, rec) = reader
                .live(&t.user, &t.path)?
                .ok_or_else(ApiError::not_found)?;
            if rec.kind != EntryKind::Folder {
                return Err(ApiError::bad_request("not a folder"));
            }
            let listed = reader.list(&t.user, &id, &path.to_string(), recursive, limit + 1)?;
            has_more = listed.len() > limit;
            let mine = if t.is_shared() {
                Vec::new()
            } else {
                shares::shared_ids(reader, &t.user)?
            };
            let mut names = DeviceNames::new(reader, t.user);
            for l in listed.iter().take(limit) {
                let mut m = metadata(&mut names, &l.path, &l.record);
                m.shared |= mine.contains(&l.id);
                entries.push(m);
            }
            // The caller's root shows `/Shared` when something is shared
            // with them (and, recursively, all of it).
            if path.is_root() && !t.is_shared() && !has_more {
                let before = entries.len();
                has_more = list_mounts(&mut entries, None, true)?;
                if before < entries.len() {
                    entries.insert(before, shares::virtual_folder("/Shared"));
                    if !recursive {
                        entries.truncate(before + 1);
                    }
                }
            }
        }
    }
    if entries.len() > limit {
        entries.truncate(limit);
        has_more = true;
    }
    Ok(json(StatusCode::OK, &ListResponse { entries, has_more }))
}

pub async fn history(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    let limit = req
        .param_u64("limit")?
        .unwrap_or(100)
        .clamp(1, MAX_HISTORY_LIMIT);
    let reader = app.read().await?;
    let t = shares::target(reader, caller, &path)?;
    let id = match reader.resolve(&t.user, &t.path)? {
        Resolved::Found(id, rec) if rec.kind == EntryKind::File => id,
        Resolved::Found(..) => return Err(ApiError::bad_request("folders have no history")),
        _ => return Err(ApiError::not_found()),
    };
    let mut names = DeviceNames::new(reader, t.user);
    let versions = reader
        .versions(&t.user, &id, limit as usize)?
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
