//! Key encoding of the state machine tree.
//!
//! One fjall keyspace holds every table, each under a one-byte prefix, so
//! a whole command applies as one atomic batch. Every key of user data starts with
//! the user id: splitting the metadata by user (multi-Raft) later is a range
//! split, not a migration.

use cluster_config::{BlockId, DeviceId, EntryId, ShareId, UploadId, UserId};

pub const USER: u8 = 0x01;
pub const USERNAME: u8 = 0x02;
pub const SESSION: u8 = 0x03;
pub const DEVICE: u8 = 0x04;
pub const ENTRY: u8 = 0x05;
pub const CHILD: u8 = 0x06;
pub const VERSION: u8 = 0x07;
pub const BLOCK: u8 = 0x08;
pub const JOURNAL: u8 = 0x09;
pub const UPLOAD: u8 = 0x0a;
pub const UPLOAD_EXPIRY: u8 = 0x0b;
pub const UPLOAD_CHUNK: u8 = 0x0c;
pub const LAYOUT: u8 = 0x0d;
pub const SHARE: u8 = 0x0e;
/// Index of shares by owner: `owner ++ share id`.
pub const SHARE_OUT: u8 = 0x0f;
/// Index of shares by the user they are given to: `sharee ++ share id`.
pub const SHARE_IN: u8 = 0x10;
/// The bootstrap record: the drive is set up (first layout, first admin).
pub const BOOTSTRAP: u8 = 0x11;
/// Per-user settings kept beside the user record: `user`.
pub const USER_SETTINGS: u8 = 0x12;
/// A share offered and not accepted yet: `share id`.
pub const SHARE_PENDING: u8 = 0x13;
/// Raft bookkeeping kept in the same tree so it commits with the data.
pub const SM_META: u8 = 0xf0;

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn user(u: &UserId) -> Vec<u8> {
    key(USER, &[u.as_bytes()])
}

pub fn username(name: &str) -> Vec<u8> {
    key(USERNAME, &[name.as_bytes()])
}

pub fn session(u: &UserId, token_hash: &[u8; 32]) -> Vec<u8> {
    key(SESSION, &[u.as_bytes(), token_hash])
}

pub fn sessions_of(u: &UserId) -> Vec<u8> {
    key(SESSION, &[u.as_bytes()])
}

pub fn users() -> Vec<u8> {
    vec![USER]
}

pub fn user_settings(u: &UserId) -> Vec<u8> {
    key(USER_SETTINGS, &[u.as_bytes()])
}

pub fn bootstrap() -> Vec<u8> {
    key(BOOTSTRAP, &[b"done"])
}

pub fn share_pending(id: &ShareId) -> Vec<u8> {
    key(SHARE_PENDING, &[id.as_bytes()])
}

pub fn device(u: &UserId, d: &DeviceId) -> Vec<u8> {
    key(DEVICE, &[u.as_bytes(), d.as_bytes()])
}

pub fn devices_of(u: &UserId) -> Vec<u8> {
    key(DEVICE, &[u.as_bytes()])
}

pub fn entry(u: &UserId, e: &EntryId) -> Vec<u8> {
    key(ENTRY, &[u.as_bytes(), e.as_bytes()])
}

pub fn child(u: &UserId, parent: &EntryId, name: &str) -> Vec<u8> {
    key(CHILD, &[u.as_bytes(), parent.as_bytes(), name.as_bytes()])
}

pub fn children_of(u: &UserId, parent: &EntryId) -> Vec<u8> {
    key(CHILD, &[u.as_bytes(), parent.as_bytes()])
}

pub fn version(u: &UserId, e: &EntryId, v: u64) -> Vec<u8> {
    key(VERSION, &[u.as_bytes(), e.as_bytes(), &v.to_be_bytes()])
}

pub fn versions_of_user(u: &UserId) -> Vec<u8> {
    key(VERSION, &[u.as_bytes()])
}

pub fn versions_of(u: &UserId, e: &EntryId) -> Vec<u8> {
    key(VERSION, &[u.as_bytes(), e.as_bytes()])
}

pub fn block(u: &UserId, b: &BlockId) -> Vec<u8> {
    key(BLOCK, &[u.as_bytes(), b.as_bytes()])
}

pub fn journal(u: &UserId, seq: u64) -> Vec<u8> {
    key(JOURNAL, &[u.as_bytes(), &seq.to_be_bytes()])
}

pub fn journal_of(u: &UserId) -> Vec<u8> {
    key(JOURNAL, &[u.as_bytes()])
}

pub fn upload(u: &UserId, id: &UploadId) -> Vec<u8> {
    key(UPLOAD, &[u.as_bytes(), id.as_bytes()])
}

pub fn uploads_of(u: &UserId) -> Vec<u8> {
    key(UPLOAD, &[u.as_bytes()])
}

pub fn upload_expiry(expires_ms: u64, u: &UserId, id: &UploadId) -> Vec<u8> {
    key(
        UPLOAD_EXPIRY,
        &[&expires_ms.to_be_bytes(), u.as_bytes(), id.as_bytes()],
    )
}

pub fn upload_chunk(u: &UserId, id: &UploadId, index: u64) -> Vec<u8> {
    key(
        UPLOAD_CHUNK,
        &[u.as_bytes(), id.as_bytes(), &index.to_be_bytes()],
    )
}

pub fn upload_chunks_of(u: &UserId, id: &UploadId) -> Vec<u8> {
    key(UPLOAD_CHUNK, &[u.as_bytes(), id.as_bytes()])
}

pub fn share(id: &ShareId) -> Vec<u8> {
    key(SHARE, &[id.as_bytes()])
}

pub fn share_out(owner: &UserId, id: &ShareId) -> Vec<u8> {
    key(SHARE_OUT, &[owner.as_bytes(), id.as_bytes()])
}

pub fn shares_out_of(owner: &UserId) -> Vec<u8> {
    key(SHARE_OUT, &[owner.as_bytes()])
}

pub fn share_in(sharee: &UserId, id: &ShareId) -> Vec<u8> {
    key(SHARE_IN, &[sharee.as_bytes(), id.as_bytes()])
}

pub fn shares_in_of(sharee: &UserId) -> Vec<u8> {
    key(SHARE_IN, &[sharee.as_bytes()])
}

pub fn layout() -> Vec<u8> {
    key(LAYOUT, &[b"current"])
}

pub fn sm_last_applied() -> Vec<u8> {
    key(SM_META, &[b"last_applied"])
}

pub fn sm_membership() -> Vec<u8> {
    key(SM_META, &[b"membership"])
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
