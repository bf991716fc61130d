//! `POST /api/v1/files?uploadType=simple`: the body is the file. The bytes
//! stream through the block pipeline; the file appears only when every
//! block is durable and the version is committed. An interrupted request
//! commits nothing.

use std::sync::atomic::Ordering;

use http::StatusCode;
use strata_node::drive::NewContent;
use strata_node::{Ingest, WholeHash};

use super::{check_quota, check_size, conflict_params, file_path};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::handlers::files::entry_response;
use crate::handlers::Response;
use crate::request::Req;

pub async fn upload(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let shown = file_path(&req, req.required("path")?)?;
    let target = app.drive.write_target(&caller.actor(), &shown).await?;
    let (owner, path) = (target.user, &target.path);
    let (base_version, on_conflict) = conflict_params(&req)?;
    let declared = req.header_u64("content-length")?;
    if let Some(len) = declared {
        check_size(app, len)?;
        check_quota(app, &owner, path, len)?;
    }
    let max = app.config.limits.max_file_bytes;
    let _slot = app.upload_slot(caller.user).await?;
    let mut ingest = Ingest::new(
        app.blocks.clone(),
        app.meta.local().clone(),
        owner,
        WholeHash::Plain(Box::default()),
    );
    if target.is_shared() {
        // Through a share, every block is sealed and written as if new:
        // whether the owner already stores a chunk never shows (no dedup
        // across the share boundary, so nothing to time or count).
        ingest = ingest.without_dedup();
    }
    if let Some(len) = declared {
        ingest.expect(len);
    }
    let started = std::time::Instant::now();
    let mut received = 0u64;
    while let Some(piece) = req.next_chunk().await {
        let piece = piece.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        received += piece.len() as u64;
        if received > max {
            return Err(ApiError::too_large(format!(
                "over the {max}-byte file limit"
            )));
        }
        ingest.push(&piece).await?;
    }
    app.metrics
        .bytes_received
        .fetch_add(received, Ordering::Relaxed);
    if declared.is_some_and(|d| d != received) {
        return Err(ApiError::bad_request(
            "body length differs from Content-Length",
        ));
    }
    let done = ingest.finish().await?;
    let stored_at = started.elapsed();
    let content_hash = done
        .content_hash
        .ok_or_else(|| ApiError::internal("content hash missing"))?;
    let content = NewContent {
        size: done.size,
        content_hash,
        blocks: done.chunks,
        new_blocks: done.new_blocks,
    };
    let out = app
        .drive
        .commit(&caller.actor(), &target, content, base_version, on_conflict)
        .await?;
    app.metrics
        .uploads_committed
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        user = %caller.user,
        owner = %owner,
        size = done.size,
        store_ms = stored_at.as_secs_f64() * 1e3,
        commit_ms = (started.elapsed() - stored_at).as_secs_f64() * 1e3,
        "file committed"
    );
    entry_response(app, &target, StatusCode::CREATED, out)
}
