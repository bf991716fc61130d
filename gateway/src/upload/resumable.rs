//! Resumable uploads: tus 1.0 (core, creation, termination, checksum,
//! expiration) and the `PUT` + `Content-Range` → `308` + `Range` dialect on
//! the same upload URL.
//!
//! Every request that delivers bytes runs in its own task, detached from
//! the connection: when a client drops mid-body, the bytes that arrived are
//! still stored and committed (tus asks servers to keep what they got), and
//! the next `HEAD` reports the new offset. Bytes are durable before the
//! offset that covers them is acknowledged. The session lives in Raft, so
//! any node can continue it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use strata_api::ErrorCode;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use cluster_config::UploadId;
use http::{HeaderValue, StatusCode};
use raft_meta::hashing::TreeHasher;
use raft_meta::records::{BlockRef, UploadRecord};
use raft_meta::types::NewBlock;
use raft_meta::{DrivePath, OnConflict, Output};
use sha1::Digest;
use strata_node::drive::{UploadProgress, UploadSpec};
use strata_node::{Ingest, WholeHash};

use raft_meta::SHARED_ROOT;

use super::{check_quota, check_size, conflict_params, file_path};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{empty, json, metadata, DeviceNames, Response};
use crate::request::{BodyStream, Req};

pub const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,termination,checksum,expiration";
const CHECKSUM_ALGORITHMS: &str = "sha1,blake3";
/// Below this much tail, a request's bytes are appended as a piece instead
/// of re-chunking (keeps small `PATCH`es cheap).
const RECHUNK_AT: u64 = 8 * 1024 * 1024;
/// Pieces a tail holds at most before it is re-chunked.
const MAX_TAIL_PIECES: usize = 16;
/// How long a request waits for another one on the same upload to finish.
const LOCK_WAIT: Duration = Duration::from_secs(30);
const STATUS_CHECKSUM_MISMATCH: u16 = 460;

fn set(r: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
}

fn tus_headers(r: &mut Response) {
    set(r, "tus-resumable", TUS_VERSION);
    set(r, "cache-control", "no-store");
}

fn upload_location(id: &UploadId) -> String {
    format!("/api/v1/uploads/{id}")
}

/// 412 when a client announces a tus version we do not speak.
fn check_tus_version(req: &Req, required: bool) -> ApiResult<()> {
    match req.header("tus-resumable") {
        Some(TUS_VERSION) => Ok(()),
        None if !required => Ok(()),
        None => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            ErrorCode::PreconditionFailed,
            "the Tus-Resumable header is required; this server speaks 1.0.0",
        )
        .with_header("tus-version", TUS_VERSION)),
        _ => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            ErrorCode::PreconditionFailed,
            "unsupported tus version; this server speaks 1.0.0",
        )
        .with_header("tus-version", TUS_VERSION)),
    }
}

pub fn options(app: &App) -> Response {
    let mut r = empty(StatusCode::NO_CONTENT);
    set(&mut r, "tus-resumable", TUS_VERSION);
    set(&mut r, "tus-version", TUS_VERSION);
    set(&mut r, "tus-extension", TUS_EXTENSIONS);
    set(
        &mut r,
        "tus-max-size",
        &app.config.limits.max_file_bytes.to_string(),
    );
    set(&mut r, "tus-checksum-algorithm", CHECKSUM_ALGORITHMS);
    r
}

/// The `Upload-Metadata` header, kept with the session: bounded in size
/// before anything reaches the metadata (`413` past the limit).
fn upload_metadata(app: &App, req: &Req) -> ApiResult<Option<String>> {
    let Some(raw) = req.header("upload-metadata") else {
        return Ok(None);
    };
    let max = app.config.limits.max_upload_metadata_bytes;
    if raw.len() > max {
        return Err(ApiError::too_large(format!(
            "Upload-Metadata is {} bytes; at most {max} are kept",
            raw.len()
        )));
    }
    parse_metadata(raw)?;
    Ok(Some(raw.to_string()))
}

/// `Upload-Metadata`: `key base64,key base64`.
pub fn parse_metadata(raw: &str) -> ApiResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = match pair.split_once(' ') {
            Some((k, v)) => (k, v.trim()),
            None => (pair, ""),
        };
        let decoded = STANDARD.decode(value).map_err(|_| {
            ApiError::bad_request(format!("Upload-Metadata value of `{key}` is not base64"))
        })?;
        let text = String::from_utf8(decoded).map_err(|_| {
            ApiError::bad_request(format!("Upload-Metadata value of `{key}` is not UTF-8"))
        })?;
        if out.iter().any(|(k, _)| k == key) {
            return Err(ApiError::bad_request(format!(
                "Upload-Metadata repeats `{key}`"
            )));
        }
        out.push((key.to_string(), text));
    }
    Ok(out)
}

/// `POST /api/v1/files?uploadType=resumable&path=P` with `Upload-Length`.
pub async fn create_from_files(app: &App, caller: &Caller, req: Req) -> ApiResult<Response> {
    let path = file_path(&req, req.required("path")?)?;
    let length = req
        .header_u64("upload-length")?
        .or(req.header_u64("x-upload-content-length")?)
        .ok_or_else(|| ApiError::bad_request("Upload-Length header is required"))?;
    let (base, on_conflict) = conflict_params(&req)?;
    let metadata = upload_metadata(app, &req)?;
    create(app, caller, path, length, metadata, base, on_conflict).await
}

/// `POST /api/v1/uploads` the tus way: the path comes in `Upload-Metadata`.
pub async fn create_tus(app: &App, caller: &Caller, req: Req) -> ApiResult<Response> {
    check_tus_version(&req, true)?;
    if req.header("upload-defer-length").is_some() {
        return Err(ApiError::bad_request(
            "Upload-Defer-Length is not supported; send Upload-Length",
        ));
    }
    let length = req
        .header_u64("upload-length")?
        .ok_or_else(|| ApiError::bad_request("Upload-Length header is required"))?;
    let raw = upload_metadata(app, &req)?;
    let meta = match &raw {
        Some(m) => parse_metadata(m)?,
        None => Vec::new(),
    };
    let find = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let path = match (find("path"), find("filename")) {
        (Some(p), _) => file_path(&req, &p)?,
        (None, Some(name)) => file_path(&req, &format!("/{name}"))?,
        (None, None) => {
            return Err(ApiError::bad_request(
                "Upload-Metadata needs `path` (or `filename`)",
            ))
        }
    };
    let (base, on_conflict) = conflict_params(&req)?;
    create(app, caller, path, length, raw, base, on_conflict).await
}

async fn create(
    app: &App,
    caller: &Caller,
    path: DrivePath,
    length: u64,
    metadata: Option<String>,
    base_version: Option<u64>,
    on_conflict: OnConflict,
) -> ApiResult<Response> {
    check_size(app, length)?;
    if path.segments().first().map(String::as_str) == Some(SHARED_ROOT) {
        return Err(ApiError::forbidden(
            "resumable uploads go to your own files; upload into a shared folder with \
             uploadType=simple",
        ));
    }
    check_quota(app, &caller.user, &path, length)?;
    let open = app
        .meta
        .local()
        .uploads_of(&caller.user, app.clock.now_ms())?;
    if open >= app.config.limits.max_open_uploads_per_user {
        return Err(ApiError::too_many_requests(
            format!(
                "{open} resumable uploads are open; finish or cancel some (DELETE the upload URL) first"
            ),
            60,
        ));
    }
    let expires_ms = app.clock.now_ms() + app.config.limits.upload_session_ttl.as_millis() as u64;
    let spec = UploadSpec {
        path,
        length,
        expires_ms,
        metadata,
        base_version,
        on_conflict,
    };
    let id = app.drive.open_upload(&caller.actor(), spec).await?;
    let location = upload_location(&id);
    let mut r = json(
        StatusCode::CREATED,
        &serde_json::json!({
            "upload_id": id.to_string(),
            "location": location,
            "expires_at": crate::handlers::rfc3339(expires_ms),
        }),
    );
    tus_headers(&mut r);
    set(&mut r, "location", &location);
    set(&mut r, "upload-offset", "0");
    set(&mut r, "upload-expires", &http_date(expires_ms));
    Ok(r)
}

fn parse_id(raw: &str) -> ApiResult<UploadId> {
    raw.parse().map_err(|_| ApiError::not_found())
}

/// The session, current as of the leader if this node has not seen it.
async fn load(app: &App, caller: &Caller, id: &UploadId) -> ApiResult<UploadRecord> {
    let now = app.clock.now_ms();
    let mut rec = app.read().await?.upload(&caller.user, id)?;
    if rec.is_none() && app.cluster.is_none() {
        rec = app.meta.linearizable().await?.upload(&caller.user, id)?;
    }
    match rec {
        Some(r) if r.expires_ms > now => Ok(r),
        _ => Err(ApiError::not_found()),
    }
}

async fn lock(app: &App, id: &UploadId) -> ApiResult<tokio::sync::OwnedMutexGuard<()>> {
    let l = app.upload_locks.get(id);
    tokio::time::timeout(LOCK_WAIT, l.lock_owned())
        .await
        .map_err(|_| ApiError::conflict("another request is still writing this upload"))
}

pub async fn head(app: &App, caller: &Caller, id: &str) -> ApiResult<Response> {
    let id = parse_id(id)?;
    // Wait for a request still storing bytes here, so the offset is final.
    let _guard = lock(app, &id).await?;
    let rec = load(app, caller, &id).await?;
    let mut r = empty(StatusCode::OK);
    tus_headers(&mut r);
    set(&mut r, "upload-offset", &rec.offset.to_string());
    set(&mut r, "upload-length", &rec.length.to_string());
    set(&mut r, "upload-expires", &http_date(rec.expires_ms));
    if let Some(m) = &rec.metadata {
        set(&mut r, "upload-metadata", m);
    }
    if let Some(f) = &rec.finished {
        set(&mut r, "strata-version", &f.version.to_string());
    }
    Ok(r)
}

pub async fn delete(app: &App, caller: &Caller, id: &str) -> ApiResult<Response> {
    let id = parse_id(id)?;
    let _guard = lock(app, &id).await?;
    load(app, caller, &id).await?;
    app.drive.cancel_upload(&caller.actor(), id).await?;
    let mut r = empty(StatusCode::NO_CONTENT);
    tus_headers(&mut r);
    Ok(r)
}

/// A checksum the client sent for one request body.
enum Checksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Blake3(Box<blake3::Hasher>, Vec<u8>),
}

impl Checksum {
    fn parse(raw: Option<&str>) -> ApiResult<Option<Self>> {
        let Some(raw) = raw else { return Ok(None) };
        let (algo, digest) = raw.trim().split_once(' ').ok_or_else(|| {
            ApiError::bad_request("Upload-Checksum must be `<algorithm> <base64>`")
        })?;
        let expected = STANDARD
            .decode(digest.trim())
            .map_err(|_| ApiError::bad_request("Upload-Checksum digest is not base64"))?;
        match algo {
            "sha1" => Ok(Some(Checksum::Sha1(sha1::Sha1::new(), expected))),
            "blake3" => Ok(Some(Checksum::Blake3(
                Box::new(blake3::Hasher::new()),
                expected,
            ))),
            _ => Err(ApiError::bad_request(format!(
                "unsupported checksum algorithm; use one of {CHECKSUM_ALGORITHMS}"
            ))),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Checksum::Sha1(h, _) => h.update(data),
            Checksum::Blake3(h, _) => {
                h.update(data);
            }
        }
    }

    fn matches(self) -> bool {
        match self {
            Checksum::Sha1(h, want) => h.finalize().as_slice() == want.as_slice(),
            Checksum::Blake3(h, want) => h.finalize().as_bytes().as_slice() == want.as_slice(),
        }
    }
}

/// What a byte-carrying request achieved.
struct Advanced {
    offset: u64,
    committed: Option<raft_meta::types::EntryView>,
}

/// One request's bytes, stored and committed in a task of its own.
struct Job {
    app: Arc<App>,
    caller: Caller,
    rec: UploadRecord,
    body: BodyStream,
    idle: Duration,
    pace: crate::request::Pace,
    declared: Option<u64>,
    /// Leading body bytes the session already has (a resent range).
    skip: u64,
    checksum: Option<Checksum>,
}

enum JobError {
    Api(ApiError),
    ChecksumMismatch,
}

impl From<ApiError> for JobError {
    fn from(e: ApiError) -> Self {
        JobError::Api(e)
    }
}

impl Job {
    async fn run(mut self) -> Result<Advanced, JobError> {
        let rec = self.rec.clone();
        let remaining = rec.length - rec.offset;
        let tail_bytes: u64 = rec.tail.iter().map(|b| b.size as u64).sum();
        let hasher = TreeHasher::resume(rec.length, rec.hash_state.clone())
            .map_err(|e| ApiError::internal(format!("upload hash state: {e}")))?;
        let app = self.app.clone();
        let _slot = app.upload_slot(self.caller.user).await?;
        // Small requests add a piece to the tail; every `MAX_TAIL_PIECES`
        // pieces (or 8 MiB) the tail is cut into chunks again, so what each
        // request writes to the metadata stays bounded however small the
        // requests are.
        let append_only = self.declared.is_some_and(|l| {
            tail_bytes + l < RECHUNK_AT
                && rec.tail.len() < MAX_TAIL_PIECES
                && rec.offset + l.saturating_sub(self.skip) < rec.length
        });

        let mut ingest = Ingest::new(
            app.blocks.clone(),
            app.meta.local().clone(),
            self.caller.user,
            WholeHash::Tree(hasher),
        );
        let mut piece_buf: Vec<u8> = Vec::new();
        if !append_only {
            // Re-chunk the stored tail first: chunks then come out exactly as
            // a single pass over the whole file would cut them.
            let keys = app.blocks.user_keys(&self.caller.user);
            for t in &rec.tail {
                let block = app
                    .meta
                    .local()
                    .block(&self.caller.user, &t.id)
                    .map_err(ApiError::from)?
                    .ok_or_else(|| ApiError::unavailable("upload tail block missing"))?;
                let data = app
                    .blocks
                    .read_block(keys.clone(), t.id, block)
                    .await
                    .map_err(ApiError::from)?;
                ingest.push_rechunk(&data).await.map_err(ApiError::from)?;
            }
        }

        let mut received = 0u64;
        let mut interrupted = false;
        let mut to_skip = self.skip;
        let mut pace = crate::request::PaceCheck::new(self.pace);
        loop {
            let next =
                match tokio::time::timeout(self.idle, futures::StreamExt::next(&mut self.body))
                    .await
                {
                    Ok(n) => n,
                    Err(_) => Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "stalled",
                    ))),
                };
            let next = match next {
                Some(Ok(p)) => match pace.add(p.len()) {
                    Ok(()) => Some(Ok(p)),
                    Err(e) => Some(Err(e)),
                },
                other => other,
            };
            let mut piece: Bytes = match next {
                None => break,
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    tracing::info!(upload = %rec.id, received, error = %e, "upload request interrupted; keeping what arrived");
                    interrupted = true;
                    break;
                }
            };
            if let Some(c) = &mut self.checksum {
                c.update(&piece);
            }
            if to_skip > 0 {
                let n = to_skip.min(piece.len() as u64);
                piece = piece.slice(n as usize..);
                to_skip -= n;
            }
            if received + piece.len() as u64 > remaining {
                return Err(ApiError::bad_request("body goes past Upload-Length").into());
            }
            received += piece.len() as u64;
            if append_only {
                piece_buf.extend_from_slice(&piece);
            } else {
                ingest.push(&piece).await.map_err(ApiError::from)?;
            }
        }
        app.metrics
            .bytes_received
            .fetch_add(received, Ordering::Relaxed);
        if let Some(c) = self.checksum.take() {
            if interrupted || !c.matches() {
                return Err(JobError::ChecksumMismatch);
            }
        }
        if received == 0 {
            return Ok(Advanced {
                offset: rec.offset,
                committed: None,
            });
        }
        let new_offset = rec.offset + received;

        let (chunks, tail, new_blocks, hash_state, finish): (
            Vec<BlockRef>,
            Vec<BlockRef>,
            Vec<NewBlock>,
            _,
            _,
        ) = if append_only {
            let mut hasher = TreeHasher::resume(rec.length, rec.hash_state.clone())
                .map_err(|e| ApiError::internal(format!("upload hash state: {e}")))?;
            hasher
                .update(&piece_buf)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            drop(ingest);
            let keys = app.blocks.user_keys(&self.caller.user);
            let meta = app.meta.local().clone();
            let user = self.caller.user;
            let exists: Arc<dyn Fn(&cluster_config::BlockId) -> bool + Send + Sync> =
                Arc::new(move |id| matches!(meta.block(&user, id), Ok(Some(_))));
            let stored = app
                .blocks
                .store_chunk(keys, Bytes::from(piece_buf), exists)
                .await
                .map_err(ApiError::from)?;
            let mut tail = rec.tail.clone();
            tail.push(stored.reference);
            (
                vec![],
                tail,
                stored.new.into_iter().collect(),
                hasher.state().clone(),
                false,
            )
        } else if new_offset == rec.length {
            let done = ingest.finish().await.map_err(ApiError::from)?;
            let state = done
                .hash_state
                .ok_or_else(|| ApiError::internal("hash state missing"))?;
            (done.chunks, vec![], done.new_blocks, state, true)
        } else {
            let part = ingest.finish_partial().await.map_err(ApiError::from)?;
            let state = part
                .hash_state
                .ok_or_else(|| ApiError::internal("hash state missing"))?;
            (part.chunks, part.tail, part.new_blocks, state, false)
        };
        let progress = UploadProgress {
            expected_offset: rec.offset,
            new_offset,
            chunks,
            tail,
            new_blocks,
            hash_state,
            finish,
        };
        let out = app
            .drive
            .advance_upload(&self.caller.actor(), rec.id, progress)
            .await
            .map_err(ApiError::from)?;
        let Output::Advanced { offset, committed } = out else {
            return Err(ApiError::internal("unexpected upload result").into());
        };
        if committed.is_some() {
            app.metrics
                .uploads_committed
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(upload = %rec.id, user = %self.caller.user, size = rec.length, "resumable upload committed");
        }
        Ok(Advanced { offset, committed })
    }
}

/// Runs a job detached from the connection and waits for its answer.
async fn run_detached(job: Job) -> Result<Advanced, JobError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tasks = job.app.tasks.clone();
    tasks.spawn(async move {
        let _ = tx.send(job.run().await);
    });
    rx.await.unwrap_or_else(|_| {
        Err(JobError::Api(ApiError::internal(
            "upload task ended without an answer",
        )))
    })
}

fn take_body(req: &mut Req) -> BodyStream {
    std::mem::replace(&mut req.body, Box::pin(futures::stream::empty()))
}

pub async fn patch(app: &Arc<App>, caller: &Caller, id: &str, mut req: Req) -> ApiResult<Response> {
    check_tus_version(&req, false)?;
    let id = parse_id(id)?;
    let content_type = req.header("content-type").unwrap_or("");
    if !content_type.starts_with("application/offset+octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "PATCH needs Content-Type: application/offset+octet-stream",
        ));
    }
    let offset = req
        .header_u64("upload-offset")?
        .ok_or_else(|| ApiError::bad_request("Upload-Offset header is required"))?;
    let checksum = Checksum::parse(req.header("upload-checksum"))?;
    let declared = req.header_u64("content-length")?;
    let guard = lock(app, &id).await?;
    let rec = load(app, caller, &id).await?;
    if rec.finished.is_some() || offset != rec.offset {
        return Err(
            ApiError::conflict(format!("upload offset is {}", rec.offset))
                .with_header("upload-offset", rec.offset.to_string())
                .with_header("tus-resumable", TUS_VERSION),
        );
    }
    if declared.is_some_and(|d| rec.offset + d > rec.length) {
        return Err(ApiError::bad_request("body goes past Upload-Length"));
    }
    let expires = rec.expires_ms;
    let job = Job {
        app: app.clone(),
        caller: caller.clone(),
        rec,
        body: take_body(&mut req),
        idle: req.idle_timeout,
        pace: req.pace,
        declared,
        skip: 0,
        checksum,
    };
    let result = run_detached(job).await;
    drop(guard);
    let done = match result {
        Ok(d) => d,
        Err(JobError::Api(e)) => return Err(e),
        Err(JobError::ChecksumMismatch) => {
            let status =
                StatusCode::from_u16(STATUS_CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST);
            return Err(ApiError::new(
                status,
                ErrorCode::BadRequest,
                "checksum mismatch; the bytes were discarded",
            )
            .with_header("tus-resumable", TUS_VERSION));
        }
    };
    let mut r = empty(StatusCode::NO_CONTENT);
    tus_headers(&mut r);
    set(&mut r, "upload-offset", &done.offset.to_string());
    set(&mut r, "upload-expires", &http_date(expires));
    if let Some(v) = &done.committed {
        set(&mut r, "strata-version", &v.record.head.to_string());
        set(
            &mut r,
            "strata-content-hash",
            &cluster_config::ids::to_hex(&v.record.content_hash),
        );
    }
    Ok(r)
}

/// `Content-Range: bytes a-b/N`, `bytes a-b/*`, `bytes */N`, `bytes */*`.
#[derive(Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// `(first, last)` byte, inclusive; `None` for a status query.
    pub span: Option<(u64, u64)>,
    pub total: Option<u64>,
}

pub fn parse_content_range(raw: &str) -> Option<ContentRange> {
    let rest = raw.trim().strip_prefix("bytes ")?.trim();
    let (span, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let span = match span.trim() {
        "*" => None,
        s => {
            let (a, b) = s.split_once('-')?;
            let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if b < a {
                return None;
            }
            Some((a, b))
        }
    };
    Some(ContentRange { span, total })
}

fn resume_incomplete(offset: u64) -> Response {
    // 308 without Location: "resume incomplete", not a redirect.
    let mut r = empty(StatusCode::PERMANENT_REDIRECT);
    if offset > 0 {
        set(&mut r, "range", &format!("bytes=0-{}", offset - 1));
    }
    r
}

fn finished_response(app: &App, caller: &Caller, rec: &UploadRecord) -> ApiResult<Response> {
    let f = rec
        .finished
        .as_ref()
        .ok_or_else(|| ApiError::internal("not finished"))?;
    let reader = app.meta.local();
    let path = reader.entry_path(&caller.user, &f.entry)?;
    let entry = reader
        .entry(&caller.user, &f.entry)?
        .ok_or_else(ApiError::not_found)?;
    let mut names = DeviceNames::new(reader, caller.user);
    let mut r = json(StatusCode::CREATED, &metadata(&mut names, &path, &entry));
    set(&mut r, "strata-version", &f.version.to_string());
    Ok(r)
}

/// `PUT` (or `POST`) on the upload URL with `Content-Range`.
pub async fn put(app: &Arc<App>, caller: &Caller, id: &str, mut req: Req) -> ApiResult<Response> {
    let id = parse_id(id)?;
    let declared = req.header_u64("content-length")?;
    let range = match req.header("content-range") {
        Some(raw) => parse_content_range(raw)
            .ok_or_else(|| ApiError::bad_request("malformed Content-Range"))?,
        // A single-request upload: the whole body, from the start.
        None => ContentRange {
            span: declared.filter(|d| *d > 0).map(|d| (0, d - 1)),
            total: None,
        },
    };
    let guard = lock(app, &id).await?;
    let rec = load(app, caller, &id).await?;
    if range.total.is_some_and(|t| t != rec.length) {
        return Err(ApiError::bad_request(format!(
            "this upload is {} bytes long",
            rec.length
        )));
    }
    if rec.finished.is_some() {
        return finished_response(app, caller, &rec);
    }
    let Some((first, last)) = range.span else {
        return Ok(resume_incomplete(rec.offset));
    };
    if declared.is_some_and(|d| d != last - first + 1) {
        return Err(ApiError::bad_request(
            "Content-Length differs from Content-Range",
        ));
    }
    if last >= rec.length {
        return Err(ApiError::bad_request(
            "Content-Range goes past the upload length",
        ));
    }
    if first > rec.offset || last < rec.offset {
        // A gap before these bytes, or nothing new: say what we have.
        return Ok(resume_incomplete(rec.offset));
    }
    let job = Job {
        app: app.clone(),
        caller: caller.clone(),
        skip: rec.offset - first,
        rec,
        body: take_body(&mut req),
        idle: req.idle_timeout,
        pace: req.pace,
        declared,
        checksum: None,
    };
    let result = run_detached(job).await;
    drop(guard);
    let done = match result {
        Ok(d) => d,
        Err(JobError::Api(e)) => return Err(e),
        Err(JobError::ChecksumMismatch) => return Err(ApiError::bad_request("checksum mismatch")),
    };
    match done.committed {
        Some(_) => {
            let rec = load(app, caller, &id).await?;
            finished_response(app, caller, &rec)
        }
        None => Ok(resume_incomplete(done.offset)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some(ContentRange {
                span: Some((0, 99)),
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes */1000"),
            Some(ContentRange {
                span: None,
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some(ContentRange {
                span: Some((5, 9)),
                total: None
            })
        );
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes 0-x/2"), None);
    }

    #[test]
    fn upload_metadata() {
        let m = parse_metadata("path L2EvYi50eHQ=,filename Yi50eHQ=, empty").unwrap();
        assert_eq!(m[0], ("path".into(), "/a/b.txt".into()));
        assert_eq!(m[1], ("filename".into(), "b.txt".into()));
        assert_eq!(m[2], ("empty".into(), "".into()));
        assert!(parse_metadata("path !!!").is_err());
        assert!(parse_metadata("a YQ==,a YQ==").is_err());
    }
}
