//! strata client SDK: typed calls to the HTTPS API of `API.md`.
//!
//! Depends only on the API types, never on server crates. The CLI verbs and
//! the sync agent build on this.

pub mod chunks;
pub mod profile;
pub mod sync;
pub mod transfer;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
pub use reqwest::Method;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_api::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{status}: {code}: {message}")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
        current_version: Option<u64>,
    },
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code, for an error answer.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the answer's status and headers came, and its body then
    /// broke off (the server failed mid-stream, or the link did).
    pub fn cut_short(&self) -> bool {
        matches!(self, ClientError::Transport(e) if e.is_body() || e.is_decode())
    }

    /// Whether the same request may succeed later or through another
    /// node: no answer at all, or an answer that says so.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Api { code, .. } => code.is_retryable(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Installs the process-wide rustls crypto provider (once; later calls are no-ops).
/// The query of a simple upload with conflict control.
fn simple_query<'a>(
    path: &str,
    base_version: Option<u64>,
    on_conflict: Option<&str>,
) -> Vec<(&'a str, String)> {
    let mut q = vec![("uploadType", "simple".into()), ("path", path.into())];
    if let Some(b) = base_version {
        q.push(("baseVersion", b.to_string()));
    }
    if let Some(c) = on_conflict {
        q.push(("onConflict", c.into()));
    }
    q
}

pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// A client for `base` (e.g. `https://127.0.0.1:8443`). With `ca_pem`,
    /// only that certificate (or CA) is trusted; otherwise the system roots.
    pub fn new(base: &str, ca_pem: Option<&[u8]>) -> Result<Self> {
        install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            let cert =
                reqwest::Certificate::from_pem(pem).map_err(|e| ClientError::Tls(e.to_string()))?;
            b = b.tls_certs_only([cert]);
        }
        Ok(Self {
            http: b.build()?,
            base: base.trim_end_matches('/').to_string(),
            token: None,
        })
    }

    pub fn from_ca_file(base: &str, ca: &Path) -> Result<Self> {
        let pem = std::fs::read(ca).map_err(|source| ClientError::Io {
            path: ca.display().to_string(),
            source,
        })?;
        Self::new(base, Some(&pem))
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for requests the SDK does not wrap.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
        if resp.status().is_success() || resp.status() == StatusCode::PERMANENT_REDIRECT {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => Err(ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
                current_version: e.current_version,
            }),
            // Not an API error body (a proxy's page, a cut answer): the
            // status is all there is.
            Err(_) => Err(ClientError::Api {
                status,
                code: if status >= 500 {
                    ErrorCode::Unavailable
                } else {
                    ErrorCode::Unknown
                },
                message: String::from_utf8_lossy(&body).into_owned(),
                current_version: None,
            }),
        }
    }

    async fn json<T: DeserializeOwned>(rb: reqwest::RequestBuilder) -> Result<T> {
        let resp = Self::check(rb.send().await?).await?;
        Ok(resp.json().await?)
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        Self::json(self.request(Method::POST, path).json(body)).await
    }

    pub async fn signup(&self, username: &str, password: &str) -> Result<SignupResponse> {
        self.post_json(
            "/api/v1/auth/signup",
            &SignupRequest {
                username: username.into(),
                password: password.into(),
            },
        )
        .await
    }

    /// Logs in and keeps the token for later calls.
    pub async fn login(
        &mut self,
        username: &str,
        password: &str,
        device: Option<&str>,
    ) -> Result<LoginResponse> {
        let r: LoginResponse = self
            .post_json(
                "/api/v1/auth/login",
                &LoginRequest {
                    username: username.into(),
                    password: password.into(),
                    device_name: device.map(str::to_string),
                },
            )
            .await?;
        self.token = Some(r.token.clone());
        Ok(r)
    }

    pub async fn logout(&self) -> Result<()> {
        Self::check(
            self.request(Method::POST, "/api/v1/auth/logout")
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    pub async fn account(&self) -> Result<Account> {
        Self::json(self.request(Method::GET, "/api/v1/account")).await
    }

    /// Simple upload of bytes held in memory.
    pub async fn upload(&self, path: &str, data: impl Into<Bytes>) -> Result<FileMetadata> {
        let rb = self
            .request(Method::POST, "/api/v1/files")
            .query(&[("uploadType", "simple"), ("path", path)])
            .body(data.into());
        Self::json(rb).await
    }

    /// Simple upload with conflict control.
    pub async fn upload_with(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        base_version: Option<u64>,
        on_conflict: Option<&str>,
    ) -> Result<FileMetadata> {
        Self::json(
            self.request(Method::POST, "/api/v1/files")
                .query(&simple_query(path, base_version, on_conflict))
                .body(data.into()),
        )
        .await
    }

    /// Simple upload of a stream of known length (nothing held in memory).
    pub async fn upload_stream<S>(&self, path: &str, len: u64, stream: S) -> Result<FileMetadata>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        let rb = self
            .request(Method::POST, "/api/v1/files")
            .query(&[("uploadType", "simple"), ("path", path)])
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        Self::json(rb).await
    }

    pub async fn download(&self, path: &str) -> Result<Vec<u8>> {
        let resp = Self::check(
            self.request(Method::GET, "/api/v1/files/content")
                .query(&[("path", path)])
                .send()
                .await?,
        )
        .await?;
        Ok(resp.bytes().await?.to_vec())
    }

    pub async fn download_version(&self, path: &str, version: u64) -> Result<Vec<u8>> {
        let resp = Self::check(
            self.request(Method::GET, "/api/v1/files/content")
                .query(&[("path", path), ("version", &version.to_string())])
                .send()
                .await?,
        )
        .await?;
        Ok(resp.bytes().await?.to_vec())
    }

    /// The body of a download as a stream (nothing held in memory).
    pub async fn download_stream(&self, path: &str) -> Result<impl Stream<Item = Result<Bytes>>> {
        let resp = Self::check(
            self.request(Method::GET, "/api/v1/files/content")
                .query(&[("path", path)])
                .send()
                .await?,
        )
        .await?;
        Ok(resp.bytes_stream().map(|r| r.map_err(ClientError::from)))
    }

    pub async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        Self::json(
            self.request(Method::GET, "/api/v1/files/metadata")
                .query(&[("path", path)]),
        )
        .await
    }

    pub async fn list(&self, path: &str, recursive: bool) -> Result<ListResponse> {
        let rec = if recursive { "true" } else { "false" };
        Self::json(
            self.request(Method::GET, "/api/v1/files/list")
                .query(&[("path", path), ("recursive", rec)]),
        )
        .await
    }

    pub async fn history(&self, path: &str) -> Result<HistoryResponse> {
        Self::json(
            self.request(Method::GET, "/api/v1/files/history")
                .query(&[("path", path)]),
        )
        .await
    }

    /// The newest `limit` versions of `path` (the server caps `limit`).
    pub async fn history_up_to(&self, path: &str, limit: u64) -> Result<HistoryResponse> {
        Self::json(
            self.request(Method::GET, "/api/v1/files/history")
                .query(&[("path", path), ("limit", &limit.to_string())]),
        )
        .await
    }

    pub async fn restore(&self, path: &str, version: u64) -> Result<FileMetadata> {
        self.post_json(
            "/api/v1/files/restore",
            &RestoreRequest {
                path: path.into(),
                version,
            },
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        Self::check(
            self.request(Method::DELETE, "/api/v1/files")
                .query(&[("path", path)])
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    pub async fn move_entry(&self, from: &str, to: &str) -> Result<FileMetadata> {
        self.post_json(
            "/api/v1/files/move",
            &MoveRequest {
                from: from.into(),
                to: to.into(),
            },
        )
        .await
    }

    pub async fn create_folder(&self, path: &str) -> Result<FileMetadata> {
        self.post_json("/api/v1/folders", &FolderRequest { path: path.into() })
            .await
    }

    /// Shares `path` with another user (`viewer` or `editor`); returns the
    /// share id.
    pub async fn share(&self, path: &str, user: &str, role: &str) -> Result<String> {
        let r: strata_api::ShareCreated = self
            .post_json(
                "/api/v1/shares",
                &strata_api::ShareRequest {
                    path: path.into(),
                    user: user.into(),
                    role: role.into(),
                },
            )
            .await?;
        Ok(r.share_id)
    }

    /// Accepts a share offered to me: it appears under `/Shared`.
    pub async fn accept_share(&self, share_id: &str) -> Result<()> {
        Self::check(
            self.request(Method::POST, &format!("/api/v1/shares/{share_id}/accept"))
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    /// Whose shares this account takes without accepting each one:
    /// `None` for everyone, else these usernames (empty: nobody).
    pub async fn accept_shares_from(&self, users: Option<Vec<String>>) -> Result<Account> {
        let from = match users {
            None => AcceptSharesFrom::Anyone("anyone".into()),
            Some(u) => AcceptSharesFrom::Users(u),
        };
        Self::json(
            self.request(Method::PATCH, "/api/v1/account")
                .json(&AccountPatch {
                    accept_shares_from: Some(from),
                }),
        )
        .await
    }

    /// The sessions of this account.
    pub async fn sessions(&self) -> Result<SessionList> {
        Self::json(self.request(Method::GET, "/api/v1/account/sessions")).await
    }

    /// Signs one session out everywhere.
    pub async fn end_session(&self, id: &str) -> Result<()> {
        Self::check(
            self.request(Method::DELETE, &format!("/api/v1/account/sessions/{id}"))
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    /// A new password; every other session of the account ends.
    pub async fn change_password(&self, old: &str, new: &str) -> Result<()> {
        Self::check(
            self.request(Method::POST, "/api/v1/account/password")
                .json(&PasswordChange {
                    old: old.into(),
                    new: new.into(),
                })
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    /// What I share, and what is shared with me.
    pub async fn shares(&self) -> Result<strata_api::ShareList> {
        Self::json(self.request(Method::GET, "/api/v1/shares")).await
    }

    /// Ends a share (as its owner) or leaves it (as the one it was given to).
    pub async fn unshare(&self, share_id: &str) -> Result<()> {
        Self::check(
            self.request(Method::DELETE, &format!("/api/v1/shares/{share_id}"))
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    /// Simple upload of a local file, streamed, with conflict control.
    pub async fn upload_file_with(
        &self,
        path: &str,
        local: &std::path::Path,
        base_version: Option<u64>,
        on_conflict: Option<&str>,
    ) -> Result<FileMetadata> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|source| ClientError::Io {
                path: local.display().to_string(),
                source,
            })?;
        let len = file
            .metadata()
            .await
            .map_err(|source| ClientError::Io {
                path: local.display().to_string(),
                source,
            })?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        Self::json(
            self.request(Method::POST, "/api/v1/files")
                .query(&simple_query(path, base_version, on_conflict))
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body),
        )
        .await
    }

    /// Starts a resumable upload; returns the upload URL path.
    pub async fn start_resumable(&self, path: &str, length: u64) -> Result<String> {
        let resp = Self::check(
            self.request(Method::POST, "/api/v1/files")
                .query(&[("uploadType", "resumable"), ("path", path)])
                .header("upload-length", length)
                .send()
                .await?,
        )
        .await?;
        resp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol("no Location on the created upload".into()))
    }

    /// `HEAD` on an upload URL: the offset the server has.
    pub async fn upload_offset(&self, location: &str) -> Result<u64> {
        let resp = Self::check(
            self.request(Method::HEAD, location)
                .header("tus-resumable", "1.0.0")
                .send()
                .await?,
        )
        .await?;
        header_u64(&resp, "upload-offset")
    }

    /// Sends bytes at `offset`; returns the new offset.
    pub async fn upload_chunk(
        &self,
        location: &str,
        offset: u64,
        data: impl Into<Bytes>,
    ) -> Result<u64> {
        let resp = Self::check(
            self.request(Method::PATCH, location)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", offset)
                .header("content-type", "application/offset+octet-stream")
                .body(data.into())
                .send()
                .await?,
        )
        .await?;
        header_u64(&resp, "upload-offset")
    }
}

fn header_u64(resp: &reqwest::Response, name: &str) -> Result<u64> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("missing {name}")))
}

impl Client {
    pub async fn latest_cursor(&self) -> Result<String> {
        let r: CursorResponse =
            Self::json(self.request(Method::GET, "/api/v1/changes/latest")).await?;
        Ok(r.cursor)
    }

    pub async fn changes(&self, cursor: &str, limit: u64) -> Result<ChangesResponse> {
        Self::json(
            self.request(Method::GET, "/api/v1/changes")
                .query(&[("cursor", cursor), ("limit", &limit.to_string())]),
        )
        .await
    }

    pub async fn poll(&self, cursor: &str, timeout_s: u64) -> Result<PollResponse> {
        Self::json(
            self.request(Method::GET, "/api/v1/changes/poll")
                .query(&[("cursor", cursor), ("timeout", &timeout_s.to_string())])
                .timeout(Duration::from_secs(timeout_s + 30)),
        )
        .await
    }

    pub async fn set_presence(&self, path: &str, editing: bool) -> Result<()> {
        let body = PresenceRequest {
            path: path.into(),
            state: if editing { "editing" } else { "idle" }.into(),
        };
        Self::check(
            self.request(Method::POST, "/api/v1/presence")
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    pub async fn presence(&self, path: &str) -> Result<PresenceResponse> {
        Self::json(
            self.request(Method::GET, "/api/v1/presence")
                .query(&[("path", path)]),
        )
        .await
    }

    pub async fn missing_blocks(&self, hashes: Vec<String>) -> Result<Vec<String>> {
        let r: MissingResponse = self
            .post_json("/api/v1/blocks/missing", &MissingRequest { hashes })
            .await?;
        Ok(r.missing)
    }

    /// Uploads a chunk; `delta_base` sends a delta against that block instead.
    pub async fn put_block(
        &self,
        hash: &str,
        body: Vec<u8>,
        delta_base: Option<&str>,
    ) -> Result<()> {
        let mut rb = self.request(Method::PUT, &format!("/api/v1/blocks/{hash}"));
        if let Some(base) = delta_base {
            rb = rb
                .query(&[("base", base)])
                .header("content-type", "application/vnd.strata.delta");
        }
        Self::check(rb.body(body).send().await?).await?;
        Ok(())
    }

    pub async fn get_block(&self, hash: &str) -> Result<Vec<u8>> {
        let r = Self::check(
            self.request(Method::GET, &format!("/api/v1/blocks/{hash}"))
                .send()
                .await?,
        )
        .await?;
        Ok(r.bytes().await?.to_vec())
    }

    pub async fn block_signature(&self, hash: &str) -> Result<Vec<u8>> {
        let r = Self::check(
            self.request(Method::GET, &format!("/api/v1/blocks/{hash}/signature"))
                .send()
                .await?,
        )
        .await?;
        Ok(r.bytes().await?.to_vec())
    }

    pub async fn commit(&self, req: &CommitRequest) -> Result<FileMetadata> {
        self.post_json("/api/v1/files/commit", req).await
    }

    pub async fn file_blocks(&self, path: &str) -> Result<Vec<BlockEntry>> {
        let r: BlocksResponse = Self::json(
            self.request(Method::GET, "/api/v1/files/blocks")
                .query(&[("path", path)]),
        )
        .await?;
        Ok(r.blocks)
    }

    /// HTTPS URLs of the cluster's nodes (empty on a single node).
    pub async fn cluster_nodes(&self) -> Result<Vec<String>> {
        let r: NodesResponse =
            Self::json(self.request(Method::GET, "/api/v1/cluster/nodes")).await?;
        Ok(r.nodes)
    }

    /// Another node of the same cluster, with the same session.
    pub fn with_base(&self, base: &str) -> Self {
        let mut c = self.clone();
        c.base = base.trim_end_matches('/').to_string();
        c
    }
}
