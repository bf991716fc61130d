//! The one place where errors become HTTP: status, stable `code`, message.

use http::{HeaderValue, StatusCode};
use raft_meta::{CommandError, MetaError};
use strata_api::{ErrorBody, ErrorDetail};
use strata_node::BlockError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub current_version: Option<u64>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            current_version: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid credentials",
        )
        .with_header("www-authenticate", "Bearer realm=\"strata\"")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such file, folder or upload",
        )
    }

    pub fn not_found_msg(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            .with_header("retry-after", "1")
    }

    /// `429` with `Retry-After`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_s: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            .with_header("retry-after", retry_after_s.max(1).to_string())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_response(self) -> warp::reply::Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
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
                "quota_exceeded",
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
            MetaError::Unavailable(m) => ApiError::unavailable(m),
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
        match e {
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
            other => {
                tracing::error!(error = %other, "block store failure");
                ApiError::internal("block store failure")
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
