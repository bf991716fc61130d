//! Changes, long polling, presence, and block-level (delta) sync.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Duration;
use strata_api::ErrorCode;

use bytes::Bytes;
use cluster_config::BlockId;
use http::StatusCode;
use raft_meta::records::{BlockRef, ChangeKind, EntryKind};
use raft_meta::Output;
use strata_api::{
    BlockEntry, BlocksResponse, Change, ChangesResponse, CommitRequest, CursorResponse,
    MissingRequest, MissingResponse, NodesResponse, PollResponse, PresenceEntry, PresenceRequest,
    PresenceResponse,
};

use super::{empty, json, metadata, parse_path, rfc3339, DeviceNames, Response};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use strata_node::notify::{encode_presence, Presence, PRESENCE_TOPIC};

const MAX_CHANGES_PAGE: u64 = 10_000;
const MAX_MISSING_QUERY: usize = 10_000;
/// Polls held on one node above which clients are told to back off.
const POLLS_BEFORE_BACKOFF: usize = 20_000;

fn parse_cursor(raw: Option<&str>) -> ApiResult<u64> {
    match raw {
        None => Err(ApiError::bad_request("missing query parameter `cursor`")),
        Some(c) => c.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request("`cursor` must come from /changes/latest or /changes")
        }),
    }
}

/// The newest journal line of a user (0 when there is none).
fn latest(user: &raft_meta::records::UserRecord) -> u64 {
    user.next_seq.saturating_sub(1)
}

fn gone() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        ErrorCode::Gone,
        "the cursor is older than the retained journal; list afresh and take /changes/latest",
    )
}

pub async fn latest_cursor(app: &App, caller: &Caller) -> ApiResult<Response> {
    let u = app
        .read()
        .await?
        .user(&caller.user)?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(json(
        StatusCode::OK,
        &CursorResponse {
            cursor: latest(&u).to_string(),
        },
    ))
}

pub async fn changes(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let cursor = parse_cursor(req.param("cursor"))?;
    let limit = req
        .param_u64("limit")?
        .unwrap_or(1000)
        .clamp(1, MAX_CHANGES_PAGE);
    let reader = app.read().await?;
    let u = reader
        .user(&caller.user)?
        .ok_or_else(ApiError::unauthorized)?;
    if cursor > latest(&u) {
        return Err(ApiError::bad_request("the cursor is ahead of the journal"));
    }
    if cursor + 1 < u.journal_floor {
        return Err(gone());
    }
    let lines = reader.journal(&caller.user, cursor + 1, limit as usize + 1)?;
    let has_more = lines.len() > limit as usize;
    let mut names = DeviceNames::new(reader, caller.user);
    let mut out = Vec::new();
    let mut last = cursor;
    for (seq, c) in lines.into_iter().take(limit as usize) {
        last = seq;
        let is_file = c.entry_kind == EntryKind::File;
        out.push(Change {
            seq,
            path: c.path,
            kind: match c.kind {
                ChangeKind::Created => strata_api::ChangeKind::Created,
                ChangeKind::Modified => strata_api::ChangeKind::Modified,
                ChangeKind::Deleted => strata_api::ChangeKind::Deleted,
                ChangeKind::Moved => strata_api::ChangeKind::Moved,
            },
            version: c.version,
            from: c.from,
            device: names.name(&c.device),
            at: rfc3339(c.at_ms),
            entry_kind: if is_file {
                strata_api::EntryKind::File
            } else {
                strata_api::EntryKind::Folder
            },
            id: c.entry.to_string(),
            size: c.size,
            content_hash: if is_file && c.kind != ChangeKind::Deleted {
                cluster_config::ids::to_hex(&c.content_hash)
            } else {
                String::new()
            },
        });
    }
    Ok(json(
        StatusCode::OK,
        &ChangesResponse {
            changes: out,
            cursor: last.to_string(),
            has_more,
        },
    ))
}

pub async fn poll(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let cursor = parse_cursor(req.param("cursor"))?;
    let timeout_s = req.param_u64("timeout")?.unwrap_or(30);
    if !(1..=120).contains(&timeout_s) {
        return Err(ApiError::bad_request("`timeout` must be 1 to 120 seconds"));
    }
    // Subscribe before reading, so a change in between is not missed.
    let mut sub = app.hub.subscribe(&caller.user);
    let backoff = (app.hub.active_polls() > POLLS_BEFORE_BACKOFF).then_some(5);
    let u = app
        .read()
        .await?
        .user(&caller.user)?
        .ok_or_else(ApiError::unauthorized)?;
    // Ahead first: a cursor past the journal is a client's mistake (400),
    // whatever its size, never an overflow into "gone".
    if cursor > latest(&u) {
        return Err(ApiError::bad_request("the cursor is ahead of the journal"));
    }
    if cursor + 1 < u.journal_floor {
        return Err(gone());
    }
    let answer = |changes: bool, presence: bool| {
        json(
            StatusCode::OK,
            &PollResponse {
                changes,
                backoff,
                presence,
            },
        )
    };
    if latest(&u) > cursor {
        return Ok(answer(true, false));
    }
    sub.presence.borrow_and_update();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_s);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(answer(false, false)),
            r = sub.seq.changed() => {
                if r.is_err() {
                    return Ok(answer(false, false));
                }
                let seen = *sub.seq.borrow_and_update();
                if seen > cursor {
                    return Ok(answer(true, false));
                }
                // A lagged wake-up: check the metadata itself.
                if let Ok(r) = app.read().await {
                    if let Ok(Some(u)) = r.user(&caller.user) {
                        if latest(&u) > cursor {
                            return Ok(answer(true, false));
                        }
                    }
                }
            }
            r = sub.presence.changed() => {
                if r.is_ok() {
                    return Ok(answer(false, true));
                }
            }
        }
    }
}

pub async fn set_presence(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: PresenceRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let path = parse_path(&body.path)?;
    let editing = match body.state.as_str() {
        "editing" => true,
        "idle" => false,
        _ => return Err(ApiError::bad_request("state must be editing or idle")),
    };
    let device_name = app
        .meta
        .local()
        .device(&caller.user, &caller.device)?
        .map(|d| d.name)
        .unwrap_or_default();
    let p = Presence {
        user: caller.user,
        device: caller.device,
        device_name,
        path: path.to_string(),
        editing,
        at_ms: app.clock.now_ms(),
    };
    // Ephemeral: gossip to every node, never through Raft.
    if let Some(c) = &app.cluster {
        c.net().publish(PRESENCE_TOPIC, encode_presence(&p));
    }
    app.hub.record_presence(p);
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn get_presence(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = match req.param("path") {
        Some(p) => Some(parse_path(p)?.to_string()),
        None => None,
    };
    let devices = app
        .hub
        .presence_of(&caller.user, path.as_deref())
        .into_iter()
        .map(|p| PresenceEntry {
            device: p.device_name,
            path: p.path,
            state: if p.editing {
                "editing".into()
            } else {
                "idle".into()
            },
            at: rfc3339(p.at_ms),
        })
        .collect();
    Ok(json(StatusCode::OK, &PresenceResponse { devices }))
}

fn parse_block_id(raw: &str) -> ApiResult<BlockId> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("a block hash is 64 hex characters"))
}

pub async fn missing(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: MissingRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    if body.hashes.len() > MAX_MISSING_QUERY {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_MISSING_QUERY} hashes per query"
        )));
    }
    let reader = app.read().await?;
    let mut missing = Vec::new();
    for h in &body.hashes {
        let id = parse_block_id(h)?;
        if reader.block(&caller.user, &id)?.is_none() {
            missing.push(h.to_ascii_lowercase());
        }
    }
    Ok(json(StatusCode::OK, &MissingResponse { missing }))
}

/// Reads a block of the caller's (whole, in memory: at most a chunk).
async fn read_block(app: &App, caller: &Caller, id: &BlockId) -> ApiResult<Bytes> {
    let rec = app
        .read()
        .await?
        .block(&caller.user, id)?
        .ok_or_else(ApiError::not_found)?;
    let keys = app.blocks.user_keys(&caller.user);
    Ok(app.blocks.read_block(keys, *id, rec).await?)
}

pub async fn get_block(app: &App, caller: &Caller, hash: &str) -> ApiResult<Response> {
    let id = parse_block_id(hash)?;
    let data = read_block(app, caller, &id).await?;
    let mut r = Response::new(data.to_vec().into());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

pub async fn block_signature(app: &App, caller: &Caller, hash: &str) -> ApiResult<Response> {
    let id = parse_block_id(hash)?;
    let data = read_block(app, caller, &id).await?;
    let sig = tokio::task::spawn_blocking(move || strata_api::delta::signature(&data))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut r = Response::new(sig.into());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

/// `PUT /api/v1/blocks/{hash}`: the chunk as raw bytes, snappy-framed
/// (`Content-Encoding: snappy`), or a delta against a block the caller has
/// (`?base=HASH`, `Content-Type: application/vnd.strata.delta`). The block
/// id is recomputed from the bytes: a mismatch is refused.
pub async fn put_block(
    app: &App,
    caller: &Caller,
    hash: &str,
    mut req: Req,
) -> ApiResult<Response> {
    let id = parse_block_id(hash)?;
    let max = strata_api::chunking::MAX_CHUNK * 2;
    let _slot = app.upload_slot(caller.user).await?;
    let mut body = Vec::new();
    while let Some(piece) = req.next_chunk().await {
        let piece = piece.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        if body.len() + piece.len() > max + 1024 {
            return Err(ApiError::too_large("a block is at most 8 MiB"));
        }
        body.extend_from_slice(&piece);
    }
    app.metrics
        .bytes_received
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let data = match (req.header("content-encoding"), req.param("base")) {
        (_, Some(base)) => {
            let base_id = parse_block_id(base)?;
            let base = read_block(app, caller, &base_id).await?;
            strata_api::delta::apply(&base, &body, max)
                .ok_or_else(|| ApiError::bad_request("malformed delta"))?
        }
        (Some(enc), None) if enc.eq_ignore_ascii_case("snappy") => {
            let mut out = Vec::new();
            let mut rd = snap::read::FrameDecoder::new(&body[..]);
            (&mut rd)
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request(format!("bad snappy frame: {e}")))?;
            out
        }
        (Some(enc), None) if !enc.eq_ignore_ascii_case("identity") => {
            return Err(ApiError::bad_request(
                "Content-Encoding must be snappy or identity",
            ))
        }
        _ => body,
    };
    if data.is_empty() || data.len() > max {
        return Err(ApiError::bad_request("a block is 1 byte to 8 MiB"));
    }
    app.drive
        .put_block(&caller.actor(), id, Bytes::from(data))
        .await?;
    Ok(empty(StatusCode::CREATED))
}

pub async fn commit(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: CommitRequest = req
        .json(app.config.limits.max_json_body_bytes.max(16 << 20))
        .await?;
    let path = parse_path(&body.path)?;
    if path.is_root() {
        return Err(ApiError::bad_request("a file path needs a name"));
    }
    refuse_shared(&path)?;
    let on_conflict = crate::upload::on_conflict(body.base_version, body.on_conflict.as_deref())?;
    let mut blocks = Vec::with_capacity(body.blocks.len());
    let mut size = 0u64;
    for b in &body.blocks {
        let id = parse_block_id(&b.hash)?;
        if b.size == 0 || b.size > strata_api::chunking::MAX_CHUNK as u64 * 2 {
            return Err(ApiError::bad_request("block sizes are 1 byte to 8 MiB"));
        }
        size += b.size;
        blocks.push(BlockRef {
            id,
            size: b.size as u32,
        });
    }
    super::super::upload::check_size(app, size)?;
    let out = app
        .drive
        .commit_blocks(
            &caller.actor(),
            &path,
            blocks,
            body.base_version,
            on_conflict,
        )
        .await?;
    let Output::Entry(view) = out else {
        return Err(ApiError::internal("unexpected commit result"));
    };
    let reader = app.meta.local();
    let mut names = DeviceNames::new(reader, caller.user);
    Ok(json(
        StatusCode::CREATED,
        &metadata(&mut names, &view.path, &view.record),
    ))
}

/// Block ids are keyed per owner, so block-level sync covers the caller's
/// own files; shared files move whole (simple upload, content download).
fn refuse_shared(path: &raft_meta::DrivePath) -> ApiResult<()> {
    if path.segments().first().map(String::as_str) == Some(raft_meta::SHARED_ROOT) {
        return Err(ApiError::forbidden(
            "block-level sync is for your own files; shared files are uploaded and \
             downloaded whole",
        ));
    }
    Ok(())
}

pub async fn file_blocks(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    refuse_shared(&path)?;
    let reader = app.read().await?;
    let (id, rec) = reader
        .live(&caller.user, &path)?
        .ok_or_else(ApiError::not_found)?;
    if rec.kind != EntryKind::File {
        return Err(ApiError::bad_request("the path is a folder"));
    }
    let version = req.param_u64("version")?.unwrap_or(rec.head);
    let v = reader
        .version(&caller.user, &id, version)?
        .filter(|v| !v.deleted)
        .ok_or_else(ApiError::not_found)?;
    let blocks = v
        .blocks
        .iter()
        .map(|b| BlockEntry {
            hash: b.id.to_string(),
            size: b.size as u64,
        })
        .collect();
    Ok(json(StatusCode::OK, &BlocksResponse { blocks }))
}

pub async fn nodes(app: &App) -> ApiResult<Response> {
    let nodes = match app.meta.local().layout()? {
        Some(l) => l.active().map(|m| m.api_url.clone()).collect(),
        None => Vec::new(),
    };
    Ok(json(StatusCode::OK, &NodesResponse { nodes }))
}
