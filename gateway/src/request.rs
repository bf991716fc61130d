//! The request as handlers see it, and small helpers to read it.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync>>;

pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: BodyStream,
    pub request_id: String,
    /// Longest wait for the next piece of a request body.
    pub idle_timeout: Duration,
    /// The client's address (absent only in tests that build requests).
    pub remote: Option<std::net::IpAddr>,
    /// A HEAD request routed as GET: answer with headers only.
    pub head: bool,
    /// The slowest a body may arrive.
    pub pace: Pace,
    /// The pace of this body so far (from its first read).
    pub pace_check: Option<PaceCheck>,
}

/// The slowest pace a request body may keep: after `grace`, its average
/// rate must stay at or above `min_bytes_per_s`. A body that trickles a
/// byte now and then to hold an upload slot is cut off.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub min_bytes_per_s: u64,
    pub grace: Duration,
}

/// Checks one body against its `Pace` as its pieces arrive.
pub struct PaceCheck {
    pace: Pace,
    started: std::time::Instant,
    bytes: u64,
}

impl PaceCheck {
    pub fn new(pace: Pace) -> Self {
        Self {
            pace,
            started: std::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` more bytes; an error once the body is too slow.
    pub fn add(&mut self, n: usize) -> Result<(), std::io::Error> {
        self.bytes += n as u64;
        let elapsed = self.started.elapsed();
        if elapsed > self.pace.grace {
            let want = (self.pace.min_bytes_per_s as f64 * elapsed.as_secs_f64()) as u64;
            if self.bytes < want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "request body slower than {} bytes/s",
                        self.pace.min_bytes_per_s
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Req {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> ApiResult<&str> {
        self.param(name)
            .ok_or_else(|| ApiError::bad_request(format!("missing query parameter `{name}`")))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A numeric header; absent is `None`, malformed is an error.
    pub fn header_u64(&self, name: &str) -> ApiResult<Option<u64>> {
        match self.headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("header `{name}` must be a non-negative integer"))
                }),
        }
    }

    pub fn param_u64(&self, name: &str) -> ApiResult<Option<u64>> {
        match self.param(name) {
            None => Ok(None),
            Some(s) => s.parse::<u64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("`{name}` must be a non-negative integer"))
            }),
        }
    }

    pub fn param_bool(&self, name: &str) -> ApiResult<bool> {
        match self.param(name) {
            None => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(_) => Err(ApiError::bad_request(format!(
                "`{name}` must be true or false"
            ))),
        }
    }

    /// The next piece of the body, failing if the client stalls or the
    /// body arrives slower than its pace.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let check = self
            .pace_check
            .get_or_insert_with(|| PaceCheck::new(self.pace));
        match tokio::time::timeout(self.idle_timeout, self.body.next()).await {
            Ok(Some(Ok(piece))) => match check.add(piece.len()) {
                Ok(()) => Some(Ok(piece)),
                Err(e) => Some(Err(e)),
            },
            Ok(item) => item,
            Err(_) => Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body stalled",
            ))),
        }
    }

    /// Reads a JSON body of at most `limit` bytes.
    pub async fn json<T: DeserializeOwned>(&mut self, limit: u64) -> ApiResult<T> {
        if let Some(len) = self.header_u64("content-length")? {
            if len > limit {
                return Err(ApiError::too_large(format!("JSON body over {limit} bytes")));
            }
        }
        let mut buf = Vec::new();
        while let Some(piece) = self.next_chunk().await {
            let piece = piece.map_err(|e| ApiError::bad_request(format!("reading body: {e}")))?;
            if buf.len() + piece.len() > limit as usize {
                return Err(ApiError::too_large(format!("JSON body over {limit} bytes")));
            }
            buf.extend_from_slice(&piece);
        }
        serde_json::from_slice(&buf)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

pub fn parse_query(raw: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}
