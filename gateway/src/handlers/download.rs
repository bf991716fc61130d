//! `GET /api/v1/files/content`: streaming download with a single Range.

use http::{HeaderValue, StatusCode};
use raft_meta::records::EntryKind;
use strata_api::ErrorCode;
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

/// Whether a `Range` may be honoured under `If-Range` (RFC 9110 13.1.5):
/// only when the validator is the current entity tag, compared strongly.
/// A date is never taken: two versions written within one second share a
/// `Last-Modified`, so a date cannot tell them apart, and the whole body
/// is the answer that can never splice two versions.
pub fn if_range_matches(if_range: Option<&str>, etag: &str) -> bool {
    match if_range.map(str::trim) {
        None => true,
        Some(v) => v.starts_with('"') && v == etag,
    }
}

/// `Content-Disposition` for a download of `name`: an ASCII fallback and
/// the exact name in RFC 8187 form.
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, RFC8187).to_string();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Everything but RFC 8187's `attr-char` is percent-encoded.
const RFC8187: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Headers every file download carries: the type from the name, served as
/// an attachment, never sniffed or run as a page.
pub fn download_headers(r: &mut Response, name: &str) {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    set(r, "content-type", mime.essence_str());
    set(r, "content-disposition", &content_disposition(name));
    set(r, "x-content-type-options", "nosniff");
    set(r, "content-security-policy", "sandbox; default-src 'none'");
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
    let last_modified = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(version.at_ms),
    );

    if req
        .header("if-none-match")
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut r = empty(StatusCode::NOT_MODIFIED);
        set(&mut r, "etag", &etag);
        return Ok(r);
    }
    // A Range under a validator that no longer matches is ignored: the
    // whole current body, never a splice of two versions.
    let range = if if_range_matches(req.header("if-range"), &etag) {
        req.header("range")
    } else {
        None
    };
    let (status, start, end) = match parse_range(range, size) {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        RangeSpec::Unsatisfiable => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::RangeNotSatisfiable,
                format!("the file has {size} bytes"),
            )
            .with_header("content-range", format!("bytes */{size}")))
        }
    };
    let mut resp = if start == end || req.head {
        empty(status)
    } else {
        // Every block readable and the first one read before the answer
        // starts: a download that cannot complete is a 503 before the body,
        // not a 200 cut short.
        let stream = strata_node::read::open_range(
            app.blocks.clone(),
            reader.clone(),
            owner,
            version.blocks,
            start,
            end,
        )
        .await?;
        let mut r = warp::reply::stream(stream).into_response();
        *r.status_mut() = status;
        app.metrics
            .bytes_sent
            .fetch_add(end - start, std::sync::atomic::Ordering::Relaxed);
        r
    };
    set(&mut resp, "content-length", &(end - start).to_string());
    download_headers(&mut resp, path.name().unwrap_or("download"));
    set(&mut resp, "accept-ranges", "bytes");
    set(&mut resp, "etag", &etag);
    set(&mut resp, "last-modified", &last_modified);
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

    #[test]
    fn if_range_compares_strongly() {
        let etag = "\"abc\"";
        assert!(if_range_matches(None, etag));
        assert!(if_range_matches(Some("\"abc\""), etag));
        assert!(!if_range_matches(Some("\"abd\""), etag));
        assert!(!if_range_matches(Some("W/\"abc\""), etag));
        assert!(!if_range_matches(
            Some("Tue, 15 Nov 1994 08:12:31 GMT"),
            etag
        ));
    }

    #[test]
    fn dispositions_keep_the_name_and_never_break_the_header() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        let d = content_disposition("naïve \"quote\"\\.txt");
        assert!(
            d.starts_with("attachment; filename=\"na_ve _quote__.txt\""),
            "{d}"
        );
        assert!(
            d.ends_with("filename*=UTF-8''na%C3%AFve%20%22quote%22%5C.txt"),
            "{d}"
        );
        assert!(http::HeaderValue::from_str(&d).is_ok());
    }
}
