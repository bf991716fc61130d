//! The one place where errors become HTTP: status, stable `code`, message.

use http::{HeaderValue, StatusCode};
use raft_meta::{CommandError, MetaError};
use strata_api::ErrorCode;
use strata_api::{ErrorBody, ErrorDetail};
use strata_node::drive::DriveError;
use strata_node::BlockError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub current_version: Option<u64>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            current_version: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or invalid credentials",
        )
        .with_header("www-authenticate", "Bearer realm=\"strata\"")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such file, folder or upload",
        )
    }

    pub fn not_found_msg(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
        .with_header("retry-after", "1")
    }

    /// `429` with `Retry-After`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_s: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            message,
        )
        .with_header("retry-after", retry_after_s.max(1).to_string())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_response(self) -> warp::reply::Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
            current_version: self.current_version,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = warp::reply::Response::new(json.into());
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::BadPath(p) => ApiError::bad_request(format!("invalid path: {p}")),
            CommandError::BadRequest(m) => ApiError::bad_request(m),
            CommandError::UsernameTaken => ApiError::conflict("username is taken"),
            CommandError::NoSuchUser => ApiError::unauthorized(),
            CommandError::NotFound => ApiError::not_found(),
            CommandError::ParentNotFolder => ApiError::conflict("a parent of the path is a file"),
            CommandError::IsFolder => ApiError::conflict("the path is a folder"),
            CommandError::AlreadyExists => {
                ApiError::conflict("something already exists at the path")
            }
            CommandError::Conflict { current, .. } => {
                let mut e =
                    ApiError::conflict(format!("the file changed: it is at version {current}"));
                e.current_version = Some(current);
                e
            }
            CommandError::QuotaExceeded { needed, available } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::QuotaExceeded,
                format!("quota exceeded: {needed} bytes needed, {available} available"),
            ),
            CommandError::OffsetMismatch { actual, .. } => {
                ApiError::conflict(format!("upload offset is {actual}"))
                    .with_header("upload-offset", actual.to_string())
            }
            CommandError::UploadGone => ApiError::not_found(),
            CommandError::MissingBlocks(_) => {
                ApiError::unavailable("stored blocks vanished; retry the upload")
            }
            CommandError::LayoutChanged { current } => ApiError::conflict(format!(
                "the layout changed meanwhile (now version {current}); retry"
            )),
            CommandError::AdminNameTaken(name) => {
                ApiError::conflict(format!("the account {name:?} exists"))
            }
            CommandError::Forbidden(m) => ApiError::forbidden(m),
            CommandError::Limit(m) => ApiError::conflict(m),
        }
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Command(c) => c.into(),
            // The reason names nodes and addresses: it goes to the log,
            // the user is told what it means for them.
            MetaError::Unavailable(m) => {
                tracing::warn!(reason = %m, "metadata unavailable");
                ApiError::unavailable(
                    "the drive cannot save or look up changes right now (too few of its servers are reachable); try again shortly",
                )
            }
            MetaError::TooLarge { .. } => ApiError::too_large(
                "the request would make a metadata change larger than the drive takes",
            ),
            MetaError::Storage(m) | MetaError::Corrupt(m) => {
                tracing::error!(error = %m, "metadata store failure");
                ApiError::internal("metadata store failure")
            }
        }
    }
}

impl From<BlockError> for ApiError {
    fn from(e: BlockError) -> Self {
        if e.is_disk_full() {
            tracing::error!(error = %e, "storage full");
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::InsufficientStorage,
                "the drive's storage is full; nothing was saved",
            );
        }
        match e {
            BlockError::Meta(m) => m.into(),
            BlockError::Unavailable { .. } => {
                tracing::warn!(error = %e, "read refused");
                ApiError::unavailable(
                    "part of this file is on storage nodes that cannot be reached right now; try again shortly",
                )
            }
            BlockError::TooFewDisks { .. } => {
                tracing::warn!(error = %e, "write refused");
                ApiError::unavailable(
                    "too few storage nodes are up to store this safely; nothing was saved, try again shortly",
                )
            }
            e if e.is_retryable() => {
                tracing::warn!(error = %e, "storage node not answering");
                ApiError::unavailable(
                    "a storage node did not answer in time; nothing was changed, try again shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "block store failure");
                ApiError::internal("block store failure")
            }
        }
    }
}

impl From<DriveError> for ApiError {
    fn from(e: DriveError) -> Self {
        match e {
            DriveError::NotFound => ApiError::not_found(),
            DriveError::BadRequest(m) => ApiError::bad_request(m),
            DriveError::Forbidden(m) => ApiError::forbidden(m),
            DriveError::Unavailable => ApiError::unavailable(
                "part of this content is on storage nodes that cannot be reached right now; try again shortly",
            ),
            DriveError::Meta(m) => m.into(),
            DriveError::Block(b) => b.into(),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use strata_node::net::{NetError, WireCode};

    fn n(i: u64) -> cluster_config::NodeId {
        cluster_config::NodeId::new(i).unwrap()
    }

    fn answer(e: impl Into<ApiError>) -> (u16, ErrorCode, String, Option<String>) {
        let e = e.into();
        let retry = e
            .headers
            .iter()
            .find(|(n, _)| *n == "retry-after")
            .map(|(_, v)| v.clone());
        (e.status.as_u16(), e.code, e.message, retry)
    }

    #[test]
    fn a_silent_peer_is_a_retryable_503() {
        for e in [
            BlockError::Peer(NetError::Timeout {
                node: n(4),
                timeout: Duration::from_secs(4),
            }),
            BlockError::Peer(NetError::Unreachable {
                node: n(4),
                reason: "connection refused 127.0.0.4:7001".into(),
            }),
            BlockError::Peer(NetError::Closed),
            BlockError::PeerRefused {
                node: n(2),
                code: WireCode::NotReady,
                message: "block store not started yet".into(),
            },
            BlockError::Closed,
        ] {
            let (status, code, message, retry) = answer(e);
            assert_eq!((status, code), (503, ErrorCode::Unavailable));
            assert_eq!(retry.as_deref(), Some("1"));
            assert!(
                !message.contains("127.0.0") && !message.contains("node 4"),
                "{message}"
            );
        }
    }

    #[test]
    fn quorum_loss_says_what_it_means_without_addresses() {
        let e = MetaError::Unavailable(
            "no quorum: voters 1 (127.0.0.1:7001), 2 (127.0.0.2:7003) unreachable".into(),
        );
        let (status, code, message, retry) = answer(e);
        assert_eq!((status, code), (503, ErrorCode::Unavailable));
        assert!(retry.is_some());
        assert!(!message.contains("127.0.0"), "{message}");
        assert!(!message.contains("voters"), "{message}");
        // The same through the block store (a read's metadata lookup).
        let e = BlockError::Meta(MetaError::Unavailable("leader 3 at 127.0.0.3".into()));
        let (status, _, message, _) = answer(e);
        assert_eq!(status, 503);
        assert!(!message.contains("127.0.0"), "{message}");
    }

    #[test]
    fn a_full_disk_is_507_and_a_missing_file_404() {
        let full = strata_node::block::store::StoreError::Io {
            path: "/srv/strata/disk-1/shards/ab/cd".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        let (status, code, _, _) = answer(BlockError::Store(full));
        assert_eq!((status, code), (507, ErrorCode::InsufficientStorage));
        let (status, code, _, _) = answer(BlockError::PeerRefused {
            node: n(3),
            code: WireCode::DiskFull,
            message: "No space left on device".into(),
        });
        assert_eq!((status, code), (507, ErrorCode::InsufficientStorage));
        let (status, code, _, _) = answer(MetaError::Command(CommandError::NotFound));
        assert_eq!((status, code), (404, ErrorCode::NotFound));
        let (status, code, _, _) = answer(BlockError::TooFewDisks {
            block: cluster_config::BlockId([1; 32]),
            have: 1,
            needed: 3,
        });
        assert_eq!((status, code), (503, ErrorCode::Unavailable));
        // A failure inside the server is its fault and says so.
        let (status, code, _, _) = answer(BlockError::Task("join".into()));
        assert_eq!((status, code), (500, ErrorCode::Internal));
    }
}
