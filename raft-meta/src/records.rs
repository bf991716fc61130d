//! Records as stored in the state machine's fjall keyspace.
//!
//! Every value is `[format version byte] ++ postcard(record)`. A reader that
//! meets a version it does not know fails loudly (`Corrupt`) instead of
//! misreading; a new version adds a migration arm in `decode`.

use cluster_config::{BlockId, DeviceId, EntryId, NodeId, UploadId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::hashing::TreeHashState;

pub const RECORD_V1: u8 = 1;

/// A stored value could not be decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("corrupt {what} record: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![RECORD_V1];
    // Serialising our own plain structs into a Vec cannot fail.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(e) => unreachable!("postcard encode of an in-memory record failed: {e}"),
    }
}

/// The length of `value`'s postcard encoding, without making it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .unwrap_or(usize::MAX)
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        Some((&RECORD_V1, rest)) => postcard::from_bytes(rest).map_err(|e| DecodeError {
            what,
            reason: e.to_string(),
        }),
        Some((v, _)) => Err(DecodeError {
            what,
            reason: format!("unknown format version {v}"),
        }),
        None => Err(DecodeError {
            what,
            reason: "empty value".into(),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    /// PHC string of an argon2id hash; never leaves the metadata store.
    pub password_hash: String,
    pub quota_bytes: u64,
    /// Bytes of the head versions of live files.
    pub used_bytes: u64,
    /// Bytes promised to open resumable uploads.
    pub reserved_bytes: u64,
    /// The next change-journal sequence number (cursor values are below it).
    pub next_seq: u64,
    /// The oldest journal line still kept; older cursors get `410 gone`.
    pub journal_floor: u64,
    pub created_ms: u64,
    pub admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub device_id: DeviceId,
    pub created_ms: u64,
    pub expires_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub name: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Folder,
}

/// A file or folder. Kept after deletion (as a tombstone, `live == false`)
/// so the path's history and restore survive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub parent: EntryId,
    pub name: String,
    pub kind: EntryKind,
    pub live: bool,
    /// Head version number (0 for folders and for files never written).
    pub head: u64,
    /// Size and hash of the head version (zero for folders and tombstones).
    pub size: u64,
    pub content_hash: [u8; 32],
    pub modified_ms: u64,
    pub modified_by: DeviceId,
    pub created_ms: u64,
}

/// A plaintext chunk of a file: which block, and how many bytes of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub id: BlockId,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub size: u64,
    pub content_hash: [u8; 32],
    pub blocks: Vec<BlockRef>,
    pub device: DeviceId,
    pub at_ms: u64,
    /// This version is a deletion marker.
    pub deleted: bool,
    /// The version the writer started from, when it said.
    pub base: Option<u64>,
}

/// How a block is laid out on storage; everything a reader needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlock {
    /// Length of the sealed (compressed + encrypted + framed) block.
    pub sealed_len: u32,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub key_version: u8,
    /// Layout generation the shards were placed under.
    pub layout: u64,
    /// The node holding shard i; `None` when shard i is not stored anywhere
    /// (written while its node was down) and waits for repair.
    #[serde(with = "shard_homes")]
    pub nodes: Vec<Option<NodeId>>,
}

/// The stored form of where a shard is: its node's number, 0 for a shard
/// that is on no node. Node ids are never 0, so the encoding is
/// unambiguous, and it is the same bytes records and log entries have
/// always had: nothing needs rewriting. The 0 lives only here; code sees
/// `Option<NodeId>`.
pub(crate) mod shard_home {
    use cluster_config::NodeId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(node: &Option<NodeId>, s: S) -> Result<S::Ok, S::Error> {
        node.map_or(0, NodeId::get).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NodeId>, D::Error> {
        Ok(NodeId::new(u64::deserialize(d)?))
    }
}

/// `shard_home` for every shard of a block.
mod shard_homes {
    use cluster_config::NodeId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(nodes: &[Option<NodeId>], s: S) -> Result<S::Ok, S::Error> {
        let raw: Vec<u64> = nodes.iter().map(|n| n.map_or(0, NodeId::get)).collect();
        raw.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<NodeId>>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(NodeId::new)
            .collect())
    }
}

/// One node of the cluster layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutMember {
    pub id: NodeId,
    pub peer_id: String,
    pub p2p_addr: String,
    pub api_url: String,
    pub zone: Option<String>,
    pub state: MemberState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Holds shards and receives new ones.
    Active,
    /// Leaving: its shards move away, it receives none.
    Removed,
}

/// Which nodes make up the cluster, and the erasure profile of new blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRecord {
    pub version: u64,
    pub members: Vec<LayoutMember>,
    pub data_shards: u8,
    pub parity_shards: u8,
}

impl LayoutRecord {
    pub fn active(&self) -> impl Iterator<Item = &LayoutMember> {
        self.members
            .iter()
            .filter(|m| m.state == MemberState::Active)
    }

    pub fn member(&self, id: NodeId) -> Option<&LayoutMember> {
        self.members.iter().find(|m| m.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// References from versions and open upload sessions.
    pub refs: u64,
    pub plain_len: u32,
    pub stored: StoredBlock,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Created,
    Modified,
    Deleted,
    Moved,
}

/// One line of a user's change journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub entry: EntryId,
    pub path: String,
    pub kind: ChangeKind,
    pub entry_kind: EntryKind,
    pub version: u64,
    /// Size and content hash of a file after the change (zero otherwise).
    pub size: u64,
    pub content_hash: [u8; 32],
    pub from: Option<String>,
    pub device: DeviceId,
    pub at_ms: u64,
}

/// What a share lets its user do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareRole {
    Viewer,
    Editor,
}

/// One entry of `owner`'s tree (a file or a folder, followed across moves
/// by its id) given to `sharee`, who sees it at `/Shared/<owner>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    pub owner: UserId,
    pub entry: EntryId,
    pub sharee: UserId,
    pub role: ShareRole,
    /// The name it is mounted under for the sharee (unique per owner).
    pub name: String,
    pub created_ms: u64,
}

/// The drive was set up: its first layout and its first admin exist.
/// Written once, by `Command::Bootstrap`; until then nobody can sign up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapRecord {
    /// The operator's admin account (none on a drive without one).
    pub admin: Option<UserId>,
    pub at_ms: u64,
}

/// Whose shares a user takes without accepting each one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AcceptFrom {
    /// Every share waits for the user to accept it.
    #[default]
    Nobody,
    Anyone,
    Users(Vec<UserId>),
}

/// Settings of a user kept beside the user record (which has a fixed
/// layout): absent means every field at its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserSettings {
    /// An administrator disabled the account: no login, no session works.
    pub disabled: bool,
    pub accept_shares_from: AcceptFrom,
}

/// A resumable upload in progress. Its finished chunks are stored under
/// their own keys (`keys::upload_chunk`), so advancing an upload costs the
/// new chunks only, not a rewrite of the whole list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: UploadId,
    pub path: Vec<String>,
    pub length: u64,
    pub offset: u64,
    pub device: DeviceId,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// Raw `Upload-Metadata` header, echoed back by HEAD.
    pub metadata: Option<String>,
    /// Number of finished content-defined chunks.
    pub chunk_count: u64,
    /// Sum of the sizes of finished chunks: the tail starts here.
    pub chunked_bytes: u64,
    /// Bytes after the last chunk boundary, stored as blocks in order.
    pub tail: Vec<BlockRef>,
    /// BLAKE3 tree state over `[0, offset)`.
    pub hash_state: TreeHashState,
    pub base_version: Option<u64>,
    pub on_conflict: crate::types::OnConflict,
    /// Quota reserved for this upload (zero once finished).
    pub reserved: u64,
    /// Set when the last byte arrived and the file was committed. The record
    /// stays until it expires so a client that missed the final answer can
    /// still learn the outcome.
    pub finished: Option<FinishedUpload>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedUpload {
    pub entry: EntryId,
    /// Where the content landed (a conflicted copy's path if it had to).
    pub path: String,
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_round_trip_and_unknown_version() {
        let d = DeviceRecord {
            name: "laptop".into(),
            created_ms: 7,
        };
        let bytes = encode(&d);
        assert_eq!(bytes[0], RECORD_V1);
        assert_eq!(decode::<DeviceRecord>("device", &bytes).unwrap(), d);
        let mut future = bytes.clone();
        future[0] = 99;
        assert!(decode::<DeviceRecord>("device", &future).is_err());
        assert!(decode::<DeviceRecord>("device", &[]).is_err());
        assert!(decode::<DeviceRecord>("device", &bytes[..3]).is_err());
    }

    /// `StoredBlock` as it was written when shard homes were plain numbers
    /// with 0 for "on no node".
    #[derive(Serialize, Deserialize)]
    struct NumberedStoredBlock {
        sealed_len: u32,
        data_shards: u8,
        parity_shards: u8,
        key_version: u8,
        layout: u64,
        nodes: Vec<u64>,
    }

    #[test]
    fn shard_homes_keep_their_stored_bytes() {
        let old = NumberedStoredBlock {
            sealed_len: 1 << 20,
            data_shards: 2,
            parity_shards: 1,
            key_version: 1,
            layout: 4,
            nodes: vec![3, 0, 300],
        };
        let old_bytes = encode(&old);
        let new: StoredBlock = decode("block", &old_bytes).unwrap();
        assert_eq!(
            new.nodes,
            vec![NodeId::new(3), None, NodeId::new(300)],
            "a 0 reads as no node"
        );
        assert_eq!(encode(&new), old_bytes, "the same bytes are written back");
        // A layout member with id 0 does not decode: there is no node 0.
        let member = |id: u64| {
            #[derive(Serialize)]
            struct NumberedMember<'a> {
                id: u64,
                peer_id: &'a str,
                p2p_addr: &'a str,
                api_url: &'a str,
                zone: Option<&'a str>,
                state: MemberState,
            }
            encode(&NumberedMember {
                id,
                peer_id: "p",
                p2p_addr: "a",
                api_url: "u",
                zone: None,
                state: MemberState::Active,
            })
        };
        assert_eq!(
            decode::<LayoutMember>("member", &member(2))
                .unwrap()
                .id
                .get(),
            2
        );
        assert!(decode::<LayoutMember>("member", &member(0)).is_err());
    }
}
