//! Routing: one warp filter extracts the request, `dispatch` matches method
//! and path, and every outcome — including errors — is turned into a
//! response in one place. Authentication happens here, before any handler
//! under `/api/v1` except signup, login and tus discovery.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use strata_api::ErrorCode;

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
                    remote: remote.map(|r| r.0.ip()),
                    head: false,
                    pace: crate::request::Pace {
                        min_bytes_per_s: app.config.limits.min_upload_bytes_per_s,
                        grace: app.config.limits.upload_rate_grace,
                    },
                    pace_check: None,
                };
                let span = tracing::info_span!(
                    "request",
                    id = %request_id,
                    node = app.meta.node_id().get(),
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
    let head = req.method == Method::HEAD;
    let mut resp = match dispatch(&app, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status == StatusCode::INTERNAL_SERVER_ERROR
                || e.status == StatusCode::SERVICE_UNAVAILABLE
            {
                tracing::warn!(status = e.status.as_u16(), code = %e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(status = e.status.as_u16(), code = %e.code, "request refused");
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
    if head {
        // A HEAD answer has the headers of the GET answer and no body, on
        // every status: a body there is a protocol error over HTTP/2.
        *resp.body_mut() = Vec::<u8>::new().into();
    }
    tracing::debug!(status = resp.status().as_u16(), "done");
    resp
}

fn method_not_allowed(allow: &[Method]) -> ApiError {
    let mut list: Vec<&str> = allow.iter().map(Method::as_str).collect();
    if allow.contains(&Method::GET) {
        list.push("HEAD");
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("this path takes {}", list.join(", ")),
    )
    .with_header("allow", list.join(", "))
}

fn no_such_endpoint() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint",
    )
}

use Method as M;

/// The methods each path answers, for `405` and its `Allow` (HEAD goes
/// wherever GET does).
fn allowed(segs: &[&str]) -> Option<&'static [Method]> {
    Some(match segs {
        ["healthz"] | ["readyz"] | ["metrics"] | ["api", "openapi.json"] => &[M::GET],
        ["api", "v1", rest @ ..] => match rest {
            ["auth", "signup" | "login" | "logout"] => &[M::POST],
            ["account"] => &[M::GET, M::PATCH],
            ["account", "sessions"] => &[M::GET],
            ["account", "sessions", _] => &[M::DELETE],
            ["account", "password"] => &[M::POST],
            ["files"] => &[M::POST, M::DELETE],
            ["files", "content" | "metadata" | "list" | "history" | "blocks"] => &[M::GET],
            ["files", "restore" | "move" | "commit"] => &[M::POST],
            ["folders"] => &[M::POST],
            ["uploads"] => &[M::POST, M::OPTIONS],
            ["uploads", _] => &[M::HEAD, M::PATCH, M::PUT, M::POST, M::DELETE, M::OPTIONS],
            ["changes"] | ["changes", "latest" | "poll"] | ["cluster", "nodes"] => &[M::GET],
            ["presence"] => &[M::GET, M::POST],
            ["blocks", "missing"] => &[M::POST],
            ["blocks", _] => &[M::GET, M::PUT],
            ["blocks", _, "signature"] => &[M::GET],
            ["shares"] => &[M::GET, M::POST],
            ["shares", _] => &[M::DELETE],
            ["shares", _, "accept"] => &[M::POST],
            ["admin", "cluster" | "verify"] => &[M::GET],
            ["admin", "nodes"] => &[M::POST],
            ["admin", "nodes", _] => &[M::DELETE],
            ["admin", "users"] => &[M::GET],
            ["admin", "users", _] => &[M::PATCH],
            _ => return None,
        },
        _ => return None,
    })
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
    let Some(allow) = allowed(&segs) else {
        return Err(no_such_endpoint());
    };
    // HEAD is GET without the body (the tus upload URL has a HEAD of its own).
    if req.method == Method::HEAD && !allow.contains(&Method::HEAD) {
        req.method = Method::GET;
        req.head = true;
    }
    if !allow.contains(&req.method) {
        return Err(method_not_allowed(allow));
    }
    match segs.as_slice() {
        ["healthz"] => return Ok(ops::healthz()),
        ["readyz"] => return ops::readyz(app, &req).await,
        ["metrics"] => return ops::metrics(app, &req).await,
        ["api", "openapi.json"] => return Ok(ops::openapi()),
        ["api", "v1", "auth", "signup"] => return accounts::signup(app, req).await,
        ["api", "v1", "auth", "login"] => return accounts::login(app, req).await,
        ["api", "v1", "uploads"] | ["api", "v1", "uploads", _] if req.method == Method::OPTIONS => {
            return Ok(resumable::options(app))
        }
        _ => {}
    }
    let caller = authenticate(app, &req.headers).await?;
    authed(app, &caller, req, &segs[2..]).await
}

async fn authed(app: &Arc<App>, caller: &Caller, req: Req, segs: &[&str]) -> ApiResult<Response> {
    let m = req.method.clone();
    match (segs, m) {
        (["auth", "logout"], _) => accounts::logout(app, caller).await,
        (["account"], M::GET) => accounts::account(app, caller).await,
        (["account"], _) => accounts::patch_account(app, caller, req).await,
        (["account", "sessions"], _) => accounts::sessions(app, caller).await,
        (["account", "sessions", id], _) => accounts::end_session(app, caller, id).await,
        (["account", "password"], _) => accounts::change_password(app, caller, req).await,
        (["files"], M::POST) => match req.param("uploadType").unwrap_or("simple") {
            "simple" | "media" => simple::upload(app, caller, req).await,
            "resumable" => resumable::create_from_files(app, caller, req).await,
            _ => Err(ApiError::bad_request(
                "uploadType must be simple or resumable",
            )),
        },
        (["files"], _) => files::delete(app, caller, &req).await,
        (["files", "content"], _) => download::content(app, caller, &req).await,
        (["files", "metadata"], _) => files::get_metadata(app, caller, &req).await,
        (["files", "list"], _) => files::list(app, caller, &req).await,
        (["files", "history"], _) => files::history(app, caller, &req).await,
        (["files", "restore"], _) => files::restore(app, caller, req).await,
        (["files", "move"], _) => files::move_entry(app, caller, req).await,
        (["files", "commit"], _) => sync::commit(app, caller, req).await,
        (["files", "blocks"], _) => sync::file_blocks(app, caller, &req).await,
        (["folders"], _) => files::create_folder(app, caller, req).await,
        (["uploads"], _) => resumable::create_tus(app, caller, req).await,
        (["uploads", id], m) => {
            let id = id.to_string();
            match m {
                M::HEAD => resumable::head(app, caller, &id).await,
                M::PATCH => resumable::patch(app, caller, &id, req).await,
                M::DELETE => resumable::delete(app, caller, &id).await,
                _ => resumable::put(app, caller, &id, req).await,
            }
        }
        (["changes", "latest"], _) => sync::latest_cursor(app, caller).await,
        (["changes"], _) => sync::changes(app, caller, &req).await,
        (["changes", "poll"], _) => sync::poll(app, caller, &req).await,
        (["presence"], M::POST) => sync::set_presence(app, caller, req).await,
        (["presence"], _) => sync::get_presence(app, caller, &req).await,
        (["blocks", "missing"], _) => sync::missing(app, caller, req).await,
        (["blocks", hash], M::PUT) => sync::put_block(app, caller, hash, req).await,
        (["blocks", hash], _) => sync::get_block(app, caller, hash).await,
        (["blocks", hash, "signature"], _) => sync::block_signature(app, caller, hash).await,
        (["cluster", "nodes"], _) => sync::nodes(app).await,
        (["shares"], M::POST) => shares::create(app, caller, req).await,
        (["shares"], _) => shares::list(app, caller).await,
        (["shares", id], _) => shares::delete(app, caller, id).await,
        (["shares", id, "accept"], _) => shares::accept(app, caller, id).await,
        (["admin", "cluster"], _) => admin::cluster(app, caller).await,
        (["admin", "verify"], _) => admin::verify(app, caller).await,
        (["admin", "nodes"], _) => admin::add_node(app, caller, req).await,
        (["admin", "nodes", id], _) => admin::remove_node(app, caller, id).await,
        (["admin", "users"], _) => admin::users(app, caller, &req).await,
        (["admin", "users", name], _) => admin::update_user(app, caller, name, req).await,
        _ => Err(no_such_endpoint()),
    }
}
