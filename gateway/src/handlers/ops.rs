//! Health, readiness, metrics, and the OpenAPI document.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use http::{HeaderValue, StatusCode};

use subtle::ConstantTimeEq;

use super::{json, Response};
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

pub fn healthz() -> Response {
    let mut r = Response::new("ok\n".into());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    r
}

/// Who may read operational details: a scraper with the metrics token of
/// the node config, or an admin's session.
async fn privileged(app: &App, req: &Req) -> ApiResult<()> {
    let bearer = req
        .header("authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(token) = bearer else {
        return Err(ApiError::unauthorized());
    };
    if let Some(want) = &app.metrics_token {
        if bool::from(want.as_bytes().ct_eq(token.as_bytes())) {
            return Ok(());
        }
    }
    let caller = crate::auth::authenticate(app, &req.headers).await?;
    super::admin::require_admin(app, &caller).await
}

/// `/readyz`: whether this node is in a quorum, for load balancers; the
/// details (node, leader, term) only for a scraper or an admin.
pub async fn readyz(app: &App, req: &Req) -> ApiResult<Response> {
    let m = app.meta.raft_metrics();
    let ready = m.current_leader.is_some() && m.running_state.is_ok();
    let body = if privileged(app, req).await.is_ok() {
        serde_json::json!({
            "ready": ready,
            "node_id": app.meta.node_id(),
            "leader": m.current_leader,
            "term": m.current_term,
        })
    } else {
        serde_json::json!({ "ready": ready })
    };
    Ok(json(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    ))
}

pub async fn metrics(app: &App, req: &Req) -> ApiResult<Response> {
    privileged(app, req).await?;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    let m = &app.metrics;
    counter(
        "strata_http_requests_total",
        "HTTP requests received.",
        m.requests.load(Ordering::Relaxed),
    );
    counter(
        "strata_http_responses_2xx_total",
        "2xx responses.",
        m.responses_2xx.load(Ordering::Relaxed),
    );
    counter(
        "strata_http_responses_3xx_total",
        "3xx responses.",
        m.responses_3xx.load(Ordering::Relaxed),
    );
    counter(
        "strata_http_responses_4xx_total",
        "4xx responses.",
        m.responses_4xx.load(Ordering::Relaxed),
    );
    counter(
        "strata_http_responses_5xx_total",
        "5xx responses.",
        m.responses_5xx.load(Ordering::Relaxed),
    );
    counter(
        "strata_upload_bytes_received_total",
        "File content bytes received in request bodies.",
        m.bytes_received.load(Ordering::Relaxed),
    );
    counter(
        "strata_download_bytes_sent_total",
        "File content bytes sent.",
        m.bytes_sent.load(Ordering::Relaxed),
    );
    counter(
        "strata_files_committed_total",
        "File versions committed by uploads.",
        m.uploads_committed.load(Ordering::Relaxed),
    );
    let b = app.blocks.stats();
    counter(
        "strata_blocks_written_total",
        "Blocks sealed and written as shards.",
        b.blocks_written.load(Ordering::Relaxed),
    );
    counter(
        "strata_blocks_deduplicated_total",
        "Chunks found already stored.",
        b.blocks_deduplicated.load(Ordering::Relaxed),
    );
    counter(
        "strata_block_plain_bytes_written_total",
        "Plaintext bytes of written blocks.",
        b.plain_bytes_written.load(Ordering::Relaxed),
    );
    counter(
        "strata_block_sealed_bytes_written_total",
        "Sealed bytes of written blocks.",
        b.sealed_bytes_written.load(Ordering::Relaxed),
    );
    counter(
        "strata_blocks_read_total",
        "Blocks read and verified.",
        b.blocks_read.load(Ordering::Relaxed),
    );
    counter(
        "strata_degraded_reads_total",
        "Block reads that needed parity.",
        b.degraded_reads.load(Ordering::Relaxed),
    );
    counter(
        "strata_shards_repaired_total",
        "Shards rewritten after a failed check.",
        b.shards_repaired.load(Ordering::Relaxed),
    );
    let r = app.meta.raft_metrics();
    let _ = writeln!(
        out,
        "# HELP strata_raft_term Current Raft term.\n# TYPE strata_raft_term gauge\nstrata_raft_term {}\n\
         # HELP strata_raft_last_applied_index Last log index applied here.\n# TYPE strata_raft_last_applied_index gauge\nstrata_raft_last_applied_index {}\n\
         # HELP strata_raft_is_leader Whether this node leads.\n# TYPE strata_raft_is_leader gauge\nstrata_raft_is_leader {}",
        r.current_term,
        r.last_applied.map(|l| l.index).unwrap_or(0),
        u8::from(r.current_leader == Some(app.meta.node_id().get())),
    );
    let mut resp = Response::new(out.into());
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(resp)
}

pub fn openapi() -> Response {
    let mut r = Response::new(include_str!("../openapi.json").into());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_lists_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/api/v1/auth/signup",
            "/api/v1/auth/login",
            "/api/v1/auth/logout",
            "/api/v1/account",
            "/api/v1/files",
            "/api/v1/files/content",
            "/api/v1/files/metadata",
            "/api/v1/files/list",
            "/api/v1/files/history",
            "/api/v1/files/restore",
            "/api/v1/files/move",
            "/api/v1/files/commit",
            "/api/v1/files/blocks",
            "/api/v1/folders",
            "/api/v1/uploads",
            "/api/v1/uploads/{id}",
            "/api/v1/changes",
            "/api/v1/changes/latest",
            "/api/v1/changes/poll",
            "/api/v1/presence",
            "/api/v1/blocks/missing",
            "/api/v1/blocks/{hash}",
            "/api/v1/blocks/{hash}/signature",
            "/api/v1/cluster/nodes",
            "/api/v1/shares",
            "/api/v1/shares/{id}",
            "/api/v1/admin/cluster",
            "/api/v1/admin/verify",
            "/api/v1/admin/nodes",
            "/api/v1/admin/nodes/{id}",
            "/api/v1/admin/users",
            "/api/v1/admin/users/{username}",
            "/api/v1/account/sessions",
            "/api/v1/account/sessions/{id}",
            "/api/v1/account/password",
            "/api/v1/shares/{id}/accept",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(paths.contains_key(p), "{p} missing from openapi.json");
        }
    }
}
