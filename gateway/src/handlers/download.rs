//! `GET /api/v1/files/content`: streaming download with a single Range.

use http::{HeaderValue, StatusCode};
use raft_meta::records::EntryKind;
use warp::Reply;

use super::{empty, parse_path, Response};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    Full,
    /// `[start, end)`.
    Part(u64, u64),
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, size: u64) -> RangeSpec {
    let Some(h) = header else {
        return RangeSpec::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Unsatisfiable;
    };
    if spec.contains(',') {
        // Several ranges: allowed to ignore, and we serve the whole body.
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match num(b) {
            Some(n) if n > 0 && size > 0 => RangeSpec::Part(size.saturating_sub(n), size),
            _ => RangeSpec::Unsatisfiable,
        },
        (false, true) => match num(a) {
            Some(start) if start < size => RangeSpec::Part(start, size),
            _ => RangeSpec::Unsatisfiable,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(start), Some(last)) if start <= last && start < size => {
                RangeSpec::Part(start, last.saturating_add(1).min(size))
            }
            _ => RangeSpec::Unsatisfiable,
        },
        (true, true) => RangeSpec::Unsatisfiable,
    }
}

pub async fn content(app: &App, caller: &Caller, req: &Req) -> ApiResult<Response> {
    let path = parse_path(req.required("path")?)?;
    let reader = app.read().await?;
    let t = super::shares::target(reader, caller, &path)?;
    let owner = t.user;
    let (id, rec) = reader
        .live(&owner, &t.path)?
        .ok_or_else(ApiError::not_found)?;
    if rec.kind != EntryKind::File {
        return Err(ApiError::bad_request("the path is a folder"));
    }
    let version_no = req.param_u64("version")?.unwrap_or(rec.head);
    let version = reader
        .version(&owner, &id, version_no)?
        .filter(|v| !v.deleted)
        .ok_or_else(ApiError::not_found)?;
    let size = version.size;
    let etag = format!("\"{}\"", cluster_config::ids::to_hex(&version.content_hash));

    if req
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut r = empty(StatusCode::NOT_MODIFIED);
        set(&mut r, "etag", &etag);
        return Ok(r);
    }
    let (status, start, end) = match parse_range(req.header("range"), size) {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        RangeSpec::Unsatisfiable => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {size} bytes"),
            )
            .with_header("content-range", format!("bytes */{size}")))
        }
    };
    let mut resp = if start == end {
        empty(status)
    } else {
        let stream = strata_node::read::stream_range(
            app.blocks.clone(),
            reader.clone(),
            owner,
            version.blocks,
            start,
            end,
        );
        let mut r = warp::reply::stream(stream).into_response();
        *r.status_mut() = status;
        r
    };
    app.metrics
        .bytes_sent
        .fetch_add(end - start, std::sync::atomic::Ordering::Relaxed);
    set(&mut resp, "content-length", &(end - start).to_string());
    set(&mut resp, "content-type", "application/octet-stream");
    set(&mut resp, "accept-ranges", "bytes");
    set(&mut resp, "etag", &etag);
    set(&mut resp, "strata-version", &version_no.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut resp,
            "content-range",
            &format!("bytes {}-{}/{size}", start, end - 1),
        );
    }
    Ok(resp)
}

fn set(r: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeSpec::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-0"), 10), Part(0, 1));
        assert_eq!(parse_range(Some("bytes=2-5"), 10), Part(2, 6));
        assert_eq!(parse_range(Some("bytes=2-"), 10), Part(2, 10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 10));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part(0, 10));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Part(5, 10));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=10-12"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("items=0-1"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=x-y"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
    }
}
