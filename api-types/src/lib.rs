//! Request and response bodies of the strata HTTPS API (`API.md`).
//!
//! A leaf crate: the gateway serialises these, the client deserialises them,
//! and neither links the other.

use serde::{Deserialize, Serialize};

pub mod backoff;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupResponse {
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub device_id: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user_id: String,
    pub username: String,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    /// Bytes held for resumable uploads in progress.
    pub reserved_bytes: u64,
    /// Hex key of this account's block ids (BLAKE3 keyed by it): a client
    /// computes ids of its chunks to ask which the server lacks.
    #[serde(default)]
    pub chunk_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Folder,
}

/// The file metadata object of API.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMetadata {
    pub path: String,
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    pub version: u64,
    /// Hex BLAKE3 of the whole content; empty for folders.
    pub content_hash: String,
    /// RFC 3339.
    pub modified_at: String,
    pub modified_by_device: String,
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    pub entries: Vec<FileMetadata>,
    /// More entries exist than the `limit` allowed.
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u64,
    pub size: u64,
    pub content_hash: String,
    pub modified_at: String,
    pub modified_by_device: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub versions: Vec<VersionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub path: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRequest {
    pub path: String,
}

/// `{"error": {"code", "message"}}`, with `current_version` on a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// The `code` of an error answer: what a client decides on (the status
/// number alone is ambiguous, the message is for people).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    PasswordRequired,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    Gone,
    PreconditionFailed,
    TooLarge,
    RangeNotSatisfiable,
    TooManyRequests,
    Internal,
    Unavailable,
    Restoring,
    QuotaExceeded,
    /// The server's disks are full: nothing was stored.
    InsufficientStorage,
    /// A code this client does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The status an answer with this code usually has.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized | ErrorCode::PasswordRequired => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::Gone => 410,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::TooLarge => 413,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
            ErrorCode::Unavailable | ErrorCode::Restoring => 503,
            ErrorCode::QuotaExceeded | ErrorCode::InsufficientStorage => 507,
        }
    }

    /// The same request may succeed later, unchanged (after `Retry-After`).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::TooManyRequests
                | ErrorCode::Unavailable
                | ErrorCode::Restoring
                | ErrorCode::Internal
                | ErrorCode::Unknown
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::PasswordRequired => "password_required",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Gone => "gone",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Restoring => "restoring",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::InsufficientStorage => "insufficient_storage",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a path, in the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Modified,
    Deleted,
    Moved,
    Restored,
    /// A kind this client does not know (a newer server): the path's
    /// current state is to be fetched.
    #[serde(other)]
    Unknown,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Moved => "moved",
            ChangeKind::Restored => "restored",
            ChangeKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The content-defined chunking every client and server uses (FastCDC
/// 2020): a client that chunks with these finds the server's blocks.
pub mod chunking {
    pub const MIN_CHUNK: usize = 256 * 1024;
    pub const AVG_CHUNK: usize = 1024 * 1024;
    pub const MAX_CHUNK: usize = 4 * 1024 * 1024;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorResponse {
    pub cursor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    pub path: String,
    pub kind: ChangeKind,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub device: String,
    pub at: String,
    /// file | folder
    pub entry_kind: EntryKind,
    /// Stable id of the file or folder (survives moves).
    pub id: String,
    pub size: u64,
    pub content_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesResponse {
    pub changes: Vec<Change>,
    pub cursor: String,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResponse {
    pub changes: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<u64>,
    /// Another device's presence changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presence: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRequest {
    pub path: String,
    /// editing | idle
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEntry {
    pub device: String,
    pub path: String,
    pub state: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceResponse {
    pub devices: Vec<PresenceEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingRequest {
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingResponse {
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    pub hash: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRequest {
    pub path: String,
    pub blocks: Vec<BlockEntry>,
    #[serde(
        default,
        rename = "baseVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_version: Option<u64>,
    #[serde(
        default,
        rename = "onConflict",
        skip_serializing_if = "Option::is_none"
    )]
    pub on_conflict: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksResponse {
    pub blocks: Vec<BlockEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesResponse {
    /// HTTPS base URLs of the cluster's active nodes.
    pub nodes: Vec<String>,
}

/// Deltas within a chunk, rsync style: the server describes a chunk it has
/// by a signature; the client sends only what differs from it.
pub mod delta {
    use std::collections::HashMap;

    /// Bytes per signature block.
    pub const BLOCK: usize = 2048;

    fn weak(data: &[u8]) -> (u32, u32) {
        let mut a: u32 = 0;
        let mut b: u32 = 0;
        for (i, &x) in data.iter().enumerate() {
            a = a.wrapping_add(x as u32);
            b = b.wrapping_add((data.len() - i) as u32 * x as u32);
        }
        (a & 0xffff, b & 0xffff)
    }

    fn strong(data: &[u8]) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&blake3::hash(data).as_bytes()[..8]);
        out
    }

    /// Signature: for each BLOCK-sized block, a rolling and a strong hash.
    /// Encoded as `len u32, then per block: weak u32, strong [u8; 8]`.
    pub fn signature(base: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + base.len() / BLOCK * 12 + 12);
        out.extend_from_slice(&(base.len() as u32).to_le_bytes());
        for block in base.chunks(BLOCK) {
            let (a, b) = weak(block);
            out.extend_from_slice(&(a | (b << 16)).to_le_bytes());
            out.extend_from_slice(&strong(block));
        }
        out
    }

    /// A delta: `0, index u32, count u32` copies `count` base blocks from
    /// `index`; `1, len u32, bytes` is literal data.
    pub fn delta(new: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() < 4 || !(signature.len() - 4).is_multiple_of(12) {
            return None;
        }
        let base_len = u32::from_le_bytes(signature[..4].try_into().ok()?) as usize;
        let blocks = (signature.len() - 4) / 12;
        let mut by_weak: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut strongs = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let at = 4 + i * 12;
            let w = u32::from_le_bytes(signature[at..at + 4].try_into().ok()?);
            strongs.push(<[u8; 8]>::try_from(&signature[at + 4..at + 12]).ok()?);
            // Only full blocks are matched while rolling.
            let full = (i + 1) * BLOCK <= base_len;
            if full {
                by_weak.entry(w).or_default().push(i);
            }
        }
        let mut out = Vec::new();
        let mut literal: Vec<u8> = Vec::new();
        let flush = |out: &mut Vec<u8>, literal: &mut Vec<u8>| {
            if !literal.is_empty() {
                out.push(1);
                out.extend_from_slice(&(literal.len() as u32).to_le_bytes());
                out.extend_from_slice(literal);
                literal.clear();
            }
        };
        let mut copy: Option<(usize, usize)> = None;
        let emit_copy = |out: &mut Vec<u8>, copy: &mut Option<(usize, usize)>| {
            if let Some((index, count)) = copy.take() {
                out.push(0);
                out.extend_from_slice(&(index as u32).to_le_bytes());
                out.extend_from_slice(&(count as u32).to_le_bytes());
            }
        };
        let mut pos = 0;
        if new.len() >= BLOCK && !by_weak.is_empty() {
            let (mut a, mut b) = weak(&new[..BLOCK]);
            loop {
                let w = a | (b << 16);
                let mut matched = None;
                if let Some(cands) = by_weak.get(&w) {
                    let s = strong(&new[pos..pos + BLOCK]);
                    matched = cands.iter().copied().find(|&i| strongs[i] == s);
                }
                match matched {
                    Some(i) => {
                        flush(&mut out, &mut literal);
                        copy = match copy {
                            Some((start, n)) if start + n == i => Some((start, n + 1)),
                            other => {
                                let mut c = other;
                                emit_copy(&mut out, &mut c);
                                Some((i, 1))
                            }
                        };
                        pos += BLOCK;
                        if pos + BLOCK > new.len() {
                            break;
                        }
                        let (na, nb) = weak(&new[pos..pos + BLOCK]);
                        a = na;
                        b = nb;
                    }
                    None => {
                        emit_copy(&mut out, &mut copy);
                        let x = new[pos] as u32;
                        literal.push(new[pos]);
                        if pos + BLOCK >= new.len() {
                            pos += 1;
                            break;
                        }
                        let y = new[pos + BLOCK] as u32;
                        // Roll the window one byte forward.
                        a = (a.wrapping_sub(x).wrapping_add(y)) & 0xffff;
                        b = (b.wrapping_sub(BLOCK as u32 * x).wrapping_add(a)) & 0xffff;
                        pos += 1;
                    }
                }
            }
        }
        emit_copy(&mut out, &mut copy);
        literal.extend_from_slice(&new[pos.min(new.len())..]);
        flush(&mut out, &mut literal);
        Some(out)
    }

    /// Rebuilds the new chunk from the base and a delta; `None` if the delta
    /// is malformed or reaches outside the base or past `max_len`.
    pub fn apply(base: &[u8], delta: &[u8], max_len: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < delta.len() {
            let op = delta[at];
            at += 1;
            match op {
                0 => {
                    let index =
                        u32::from_le_bytes(delta.get(at..at + 4)?.try_into().ok()?) as usize;
                    let count =
                        u32::from_le_bytes(delta.get(at + 4..at + 8)?.try_into().ok()?) as usize;
                    at += 8;
                    let start = index.checked_mul(BLOCK)?;
                    let end = index
                        .checked_add(count)?
                        .checked_mul(BLOCK)?
                        .min(base.len());
                    out.extend_from_slice(base.get(start..end)?);
                }
                1 => {
                    let len = u32::from_le_bytes(delta.get(at..at + 4)?.try_into().ok()?) as usize;
                    at += 4;
                    out.extend_from_slice(delta.get(at..at.checked_add(len)?)?);
                    at += len;
                }
                _ => return None,
            }
            if out.len() > max_len {
                return None;
            }
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn noise(n: usize, seed: u64) -> Vec<u8> {
            let mut x = seed | 1;
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        }

        #[test]
        fn deltas_are_small_and_exact() {
            let base = noise(1 << 20, 1);
            let sig = signature(&base);
            let mut changed = base.clone();
            changed[500_000] ^= 1;
            let mut inserted = noise(1024, 2);
            inserted.extend_from_slice(&base);
            let mut appended = base.clone();
            appended.extend(noise(300_000, 3));
            let unrelated = noise(100_000, 4);
            for (new, limit) in [
                (&changed, 3 * BLOCK),
                (&inserted, 2 * BLOCK),
                (&appended, 301_000),
                (&unrelated, 101_000),
                (&base, 100),
            ] {
                let d = delta(new, &sig).unwrap();
                assert!(d.len() <= limit, "delta {} > {limit}", d.len());
                assert_eq!(apply(&base, &d, 8 << 20).unwrap(), *new);
            }
            // Tiny inputs.
            for new in [vec![], vec![7u8], noise(BLOCK - 1, 5)] {
                let d = delta(&new, &sig).unwrap();
                assert_eq!(apply(&base, &d, 8 << 20).unwrap(), new);
            }
        }

        #[test]
        fn malformed_deltas_are_refused() {
            let base = noise(10_000, 1);
            assert!(apply(&base, &[9], 1 << 20).is_none());
            assert!(apply(&base, &[0, 1, 0, 0, 0], 1 << 20).is_none());
            assert!(apply(&base, &[0, 100, 0, 0, 0, 1, 0, 0, 0], 1 << 20).is_none());
            assert!(apply(&base, &[1, 255, 255, 255, 255], 1 << 20).is_none());
            assert!(delta(b"x", &[1, 2]).is_none());
        }
    }
}

/// `POST /api/v1/shares`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    pub path: String,
    /// The username to share with.
    pub user: String,
    /// `viewer` or `editor`.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareCreated {
    pub share_id: String,
    /// `pending` until the recipient accepts it, or `active`.
    #[serde(default = "active")]
    pub state: String,
}

fn active() -> String {
    "active".into()
}

/// One share, as `GET /api/v1/shares` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInfo {
    pub share_id: String,
    /// In the owner's tree for shares I made; under `/Shared` for shares
    /// given to me.
    pub path: String,
    pub owner: String,
    pub user: String,
    pub role: String,
    /// `file` or `folder`.
    pub kind: String,
    pub created_at: String,
    /// `pending` (offered, not accepted yet) or `active` (mounted).
    #[serde(default = "active")]
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareList {
    pub shared_by_me: Vec<ShareInfo>,
    pub shared_with_me: Vec<ShareInfo>,
}

/// `PATCH /api/v1/account`: whose shares this account takes without
/// accepting each (`"anyone"`, a list of usernames, or `[]` for nobody).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    pub accept_shares_from: Option<AcceptSharesFrom>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AcceptSharesFrom {
    /// `"anyone"`.
    Anyone(String),
    Users(Vec<String>),
}

/// One session of `GET /api/v1/account/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub device: String,
    pub created_at: String,
    pub expires_at: String,
    /// The session this request was made with.
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

/// `POST /api/v1/account/password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub old: String,
    pub new: String,
}

/// One account of `GET /api/v1/admin/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUser {
    pub username: String,
    pub admin: bool,
    pub disabled: bool,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUserList {
    pub users: Vec<AdminUser>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `PATCH /api/v1/admin/users/{username}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminUserPatch {
    pub quota_bytes: Option<u64>,
    pub disabled: Option<bool>,
    pub admin: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_their_snake_case_names() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::PasswordRequired,
            ErrorCode::TooManyRequests,
            ErrorCode::InsufficientStorage,
            ErrorCode::Unavailable,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let newer: ErrorCode = serde_json::from_str("\"some_new_code\"").unwrap();
        assert_eq!(newer, ErrorCode::Unknown);
        assert!(ErrorCode::Unavailable.is_retryable());
        assert!(!ErrorCode::NotFound.is_retryable());
        assert_eq!(ErrorCode::QuotaExceeded.status(), 507);
    }

    #[test]
    fn change_kinds_read_and_unknown_ones_degrade() {
        let k: ChangeKind = serde_json::from_str("\"deleted\"").unwrap();
        assert_eq!(k, ChangeKind::Deleted);
        let k: ChangeKind = serde_json::from_str("\"shared\"").unwrap();
        assert_eq!(k, ChangeKind::Unknown);
        assert_eq!(
            serde_json::to_string(&ChangeKind::Moved).unwrap(),
            "\"moved\""
        );
    }
}
