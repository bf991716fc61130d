//! Uploads: simple (one request) and resumable (tus 1.0 and the
//! `Content-Range` / `308` dialect), sharing the quota and size checks.

pub mod resumable;
pub mod simple;

use raft_meta::records::EntryKind;
use raft_meta::{DrivePath, OnConflict};

use cluster_config::UserId;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

/// Refuses a declared size over the file limit, before any byte is read.
pub fn check_size(app: &App, declared: u64) -> ApiResult<()> {
    let max = app.config.limits.max_file_bytes;
    if declared > max {
        return Err(ApiError::too_large(format!(
            "{declared} bytes is over the {max}-byte file limit"
        )));
    }
    Ok(())
}

/// Refuses a declared size that cannot fit in the caller's quota, before any
/// byte is read (the commit checks again with the real size).
/// The quota is the owner's: writes into a share count against its owner.
pub fn check_quota(app: &App, owner: &UserId, path: &DrivePath, declared: u64) -> ApiResult<()> {
    let reader = app.meta.local();
    let user = reader.user(owner)?.ok_or_else(ApiError::unauthorized)?;
    let existing = match reader.live(owner, path)? {
        Some((_, rec)) if rec.kind == EntryKind::File => rec.size,
        _ => 0,
    };
    let committed = user.used_bytes.saturating_sub(existing) + user.reserved_bytes;
    let available = user.quota_bytes.saturating_sub(committed);
    if declared > available {
        return Err(raft_meta::CommandError::QuotaExceeded {
            needed: declared,
            available,
        }
        .into());
    }
    Ok(())
}

/// `baseVersion` and `onConflict` from the query (API.md defaults).
pub fn conflict_params(req: &Req) -> ApiResult<(Option<u64>, OnConflict)> {
    let base = req.param_u64("baseVersion")?;
    Ok((base, on_conflict(base, req.param("onConflict"))?))
}

/// `onConflict` as given, or its default: `fail` with a base version,
/// else `overwrite`.
pub fn on_conflict(base: Option<u64>, raw: Option<&str>) -> ApiResult<OnConflict> {
    match raw {
        None if base.is_some() => Ok(OnConflict::Fail),
        None => Ok(OnConflict::Overwrite),
        Some("fail") => Ok(OnConflict::Fail),
        Some("rename") => Ok(OnConflict::Rename),
        Some("overwrite") => Ok(OnConflict::Overwrite),
        Some(_) => Err(ApiError::bad_request(
            "onConflict must be fail, rename or overwrite",
        )),
    }
}

pub fn file_path(req: &Req, raw: &str) -> ApiResult<DrivePath> {
    let _ = req;
    let path = crate::handlers::parse_path(raw)?;
    if path.is_root() {
        return Err(ApiError::bad_request("a file path needs a name"));
    }
    Ok(path)
}
