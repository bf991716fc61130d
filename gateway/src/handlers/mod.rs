//! One async function per endpoint; shared response builders.

pub mod accounts;
pub mod admin;
pub mod download;
pub mod files;
pub mod ops;
pub mod shares;
pub mod sync;

use std::collections::HashMap;

use cluster_config::{DeviceId, UserId};
use http::{HeaderValue, StatusCode};
use raft_meta::records::{EntryKind, EntryRecord};
use raft_meta::{DrivePath, MetaReader};
use serde::Serialize;
use strata_api::FileMetadata;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{ApiError, ApiResult};

pub type Response = warp::reply::Response;

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(bytes.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Vec::<u8>::new().into());
    *r.status_mut() = status;
    r
}

pub fn rfc3339(ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

pub fn parse_path(raw: &str) -> ApiResult<DrivePath> {
    DrivePath::parse(raw).map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))
}

/// Device names looked up once per request.
pub struct DeviceNames<'a> {
    meta: &'a MetaReader,
    user: UserId,
    cache: HashMap<DeviceId, String>,
}

impl<'a> DeviceNames<'a> {
    pub fn new(meta: &'a MetaReader, user: UserId) -> Self {
        Self {
            meta,
            user,
            cache: HashMap::new(),
        }
    }

    pub fn name(&mut self, id: &DeviceId) -> String {
        if *id == DeviceId::default() {
            return String::new();
        }
        if let Some(n) = self.cache.get(id) {
            return n.clone();
        }
        let name = match self.meta.device(&self.user, id) {
            Ok(Some(d)) => d.name,
            _ => String::new(),
        };
        self.cache.insert(*id, name.clone());
        name
    }
}

pub fn metadata(names: &mut DeviceNames<'_>, path: &str, rec: &EntryRecord) -> FileMetadata {
    let is_file = rec.kind == EntryKind::File;
    FileMetadata {
        path: path.to_string(),
        // From the path: a share's mount point has the name it is shared under.
        name: if path == "/" {
            "/".into()
        } else {
            path.rsplit('/').next().unwrap_or(&rec.name).to_string()
        },
        kind: if is_file {
            strata_api::EntryKind::File
        } else {
            strata_api::EntryKind::Folder
        },
        size: rec.size,
        version: rec.head,
        content_hash: if is_file {
            cluster_config::ids::to_hex(&rec.content_hash)
        } else {
            String::new()
        },
        modified_at: rfc3339(rec.modified_ms),
        modified_by_device: names.name(&rec.modified_by),
        shared: path.starts_with("/Shared/"),
    }
}
