//! Routing: one warp filter extracts the request, `dispatch` matches method
//! and path, and every outcome — including errors — is turned into a
//! response in one place. Authentication happens here, before any handler
//! under `/api/v1` except signup, login and tus discovery.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Buf;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tracing::Instrument;
use warp::Filter;

use crate::app::App;
use crate::auth::{authenticate, Caller};
use crate::error::{ApiError, ApiResult};
use crate::handlers::{accounts, admin, download, files, ops, shares, sync, Response};
use crate::request::{parse_query, BodyStream, Req};
use crate::upload::{resumable, simple};

/// The client's address, set by the accept loop on every request.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub std::net::SocketAddr);

pub fn filter(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(body_stream())
        .and(warp::ext::optional::<RemoteAddr>())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body: BodyStream,
                  remote: Option<RemoteAddr>| {
                let app = app.clone();
                let request_id = format!("{:016x}", rand::random::<u64>());
                let req = Req {
                    method,
                    path: path.as_str().to_string(),
                    query: parse_query(&query),
                    headers,
                    body,
                    request_id: request_id.clone(),
                    idle_timeout: app.config.limits.idle_request_timeout,
                };
                let span = tracing::info_span!(
                    "request",
                    id = %request_id,
                    node = app.meta.node_id(),
                    method = %req.method,
                    path = %req.path,
                    peer = remote.map(|r| r.0.to_string()).unwrap_or_default(),
                );
                async move { respond(app, req).await }.instrument(span)
            },
        )
}

fn body_stream() -> impl Filter<Extract = (BodyStream,), Error = warp::Rejection> + Clone {
    warp::body::stream().map(|s| {
        let body: BodyStream = Box::pin(StreamExt::map(s, to_bytes));
        body
    })
}

fn to_bytes<B: Buf>(r: Result<B, warp::Error>) -> Result<bytes::Bytes, std::io::Error> {
    r.map(|mut b| {
        let n = b.remaining();
        b.copy_to_bytes(n)
    })
    .map_err(std::io::Error::other)
}

async fn respond(app: Arc<App>, req: Req) -> Response {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = req.request_id.clone();
    let mut resp = match dispatch(&app, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status == StatusCode::INTERNAL_SERVER_ERROR
                || e.status == StatusCode::SERVICE_UNAVAILABLE
            {
                tracing::warn!(status = e.status.as_u16(), code = e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(status = e.status.as_u16(), code = e.code, "request refused");
            }
            e.into_response()
        }
    };
    let counter = match resp.status().as_u16() {
        200..=299 => &app.metrics.responses_2xx,
        300..=399 => &app.metrics.responses_3xx,
        400..=499 => &app.metrics.responses_4xx,
        _ => &app.metrics.responses_5xx,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    tracing::debug!(status = resp.status().as_u16(), "done");
    resp
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    )
}

async fn dispatch(app: &Arc<App>, mut req: Req) -> ApiResult<Response> {
    // tus clients behind proxies that only pass GET/POST.
    if req.method == Method::POST {
        if let Some(m) = req.header("x-http-method-override") {
            match m.to_ascii_uppercase().as_str() {
                "PATCH" => req.method = Method::PATCH,
                "DELETE" => req.method = Method::DELETE,
                "HEAD" => req.method = Method::HEAD,
                _ => return Err(ApiError::bad_request("unsupported X-HTTP-Method-Override")),
            }
        }
    }
    let path = req.path.clone();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["healthz"] => return only_get(&req).map(|_| ops::healthz()),
        ["readyz"] => return only_get(&req).map(|_| ops::readyz(app)),
        ["metrics"] => return only_get(&req).map(|_| ops::metrics(app)),
        ["api", "openapi.json"] => return only_get(&req).map(|_| ops::openapi()),
        ["api", "v1", "auth", "signup"] if req.method == Method::POST => {
            return accounts::signup(app, req).await
        }
        ["api", "v1", "auth", "login"] if req.method == Method::POST => {
            return accounts::login(app, req).await
        }
        ["api", "v1", "uploads"] | ["api", "v1", "uploads", _] if req.method == Method::OPTIONS => {
            return Ok(resumable::options(app))
        }
        ["api", "v1", ..] => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            ))
        }
    }
    let caller = authenticate(app, &req.headers).await?;
    authed(app, &caller, req, &segs[2..]).await
}

fn only_get(req: &Req) -> ApiResult<()> {
    if req.method == Method::GET || req.method == Method::HEAD {
        Ok(())
    } else {
        Err(method_not_allowed())
    }
}

async fn authed(app: &Arc<App>, caller: &Caller, req: Req, segs: &[&str]) -> ApiResult<Response> {
    let m = req.method.clone();
    match segs {
        ["auth", "logout"] if m == Method::POST => accounts::logout(app, caller).await,
        ["account"] if m == Method::GET => accounts::account(app, caller).await,
        ["files"] if m == Method::POST => match req.param("uploadType").unwrap_or("simple") {
            "simple" | "media" => simple::upload(app, caller, req).await,
            "resumable" => resumable::create_from_files(app, caller, req).await,
            _ => Err(ApiError::bad_request(
                "uploadType must be simple or resumable",
            )),
        },
        ["files"] if m == Method::DELETE => files::delete(app, caller, &req).await,
        ["files", "content"] if m == Method::GET => download::content(app, caller, &req).await,
        ["files", "metadata"] if m == Method::GET => files::get_metadata(app, caller, &req).await,
        ["files", "list"] if m == Method::GET => files::list(app, caller, &req).await,
        ["files", "history"] if m == Method::GET => files::history(app, caller, &req).await,
        ["files", "restore"] if m == Method::POST => files::restore(app, caller, req).await,
        ["files", "move"] if m == Method::POST => files::move_entry(app, caller, req).await,
        ["folders"] if m == Method::POST => files::create_folder(app, caller, req).await,
        ["uploads"] if m == Method::POST => resumable::create_tus(app, caller, req).await,
        ["changes", "latest"] if m == Method::GET => sync::latest_cursor(app, caller).await,
        ["changes"] if m == Method::GET => sync::changes(app, caller, &req).await,
        ["changes", "poll"] if m == Method::GET => sync::poll(app, caller, &req).await,
        ["presence"] if m == Method::POST => sync::set_presence(app, caller, req).await,
        ["presence"] if m == Method::GET => sync::get_presence(app, caller, &req).await,
        ["blocks", "missing"] if m == Method::POST => sync::missing(app, caller, req).await,
        ["blocks", hash] if m == Method::PUT => sync::put_block(app, caller, hash, req).await,
        ["blocks", hash] if m == Method::GET => sync::get_block(app, caller, hash).await,
        ["blocks", hash, "signature"] if m == Method::GET => {
            sync::block_signature(app, caller, hash).await
        }
        ["files", "commit"] if m == Method::POST => sync::commit(app, caller, req).await,
        ["files", "blocks"] if m == Method::GET => sync::file_blocks(app, caller, &req).await,
        ["cluster", "nodes"] if m == Method::GET => sync::nodes(app).await,
        ["shares"] if m == Method::POST => shares::create(app, caller, req).await,
        ["shares"] if m == Method::GET => shares::list(app, caller).await,
        ["shares", id] if m == Method::DELETE => shares::delete(app, caller, id).await,
        ["admin", "cluster"] if m == Method::GET => admin::cluster(app, caller).await,
        ["admin", "verify"] if m == Method::GET => admin::verify(app, caller).await,
        ["admin", "nodes"] if m == Method::POST => admin::add_node(app, caller, req).await,
        ["admin", "nodes", id] if m == Method::DELETE => admin::remove_node(app, caller, id).await,
        ["uploads", id] => {
            let id = id.to_string();
            match m {
                Method::HEAD => resumable::head(app, caller, &id).await,
                Method::PATCH => resumable::patch(app, caller, &id, req).await,
                Method::PUT | Method::POST => resumable::put(app, caller, &id, req).await,
                Method::DELETE => resumable::delete(app, caller, &id).await,
                _ => Err(method_not_allowed()),
            }
        }
        ["auth", "logout"]
        | ["account"]
        | ["files"]
        | ["files", "content" | "metadata" | "list" | "history" | "restore" | "move"]
        | ["folders"]
        | ["shares"]
        | ["shares", _]
        | ["uploads"] => Err(method_not_allowed()),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        )),
    }
}
