//! The Raft type configuration, the commands of the state machine, and what
//! applying them returns.
//!
//! Commands are deterministic: the proposer puts the time (`at_ms`) and any
//! fresh ids (or a seed to derive them from) into the command; applying the
//! same log on any node yields the same state.

use std::io::Cursor;

use cluster_config::{BlockId, DeviceId, EntryId, NodeId, ShareId, UploadId, UserId};
use serde::{Deserialize, Serialize};

use crate::hashing::TreeHashState;
use crate::records::{BlockRef, EntryRecord, LayoutRecord, StoredBlock, UploadRecord};

/// How a cluster member is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// HTTPS base URL of the member's gateway.
    pub api_url: String,
    /// libp2p multiaddr of the member (empty on a single-node drive).
    pub p2p_addr: String,
}

impl std::fmt::Display for MemberNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.api_url, self.p2p_addr)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;

/// One state machine command with the proposer's clock reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub at_ms: u64,
    pub cmd: Command,
}

/// What to do when a write finds the file changed since its base version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OnConflict {
    #[default]
    Fail,
    Rename,
    Overwrite,
}

/// A block this write stored and that the metadata may not know yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBlock {
    pub id: BlockId,
    pub plain_len: u32,
    pub stored: StoredBlock,
}

/// The content of a file version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    pub size: u64,
    pub content_hash: [u8; 32],
    pub blocks: Vec<BlockRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitFile {
    pub user: UserId,
    pub path: Vec<String>,
    pub device: DeviceId,
    pub content: FileContent,
    pub new_blocks: Vec<NewBlock>,
    pub base_version: Option<u64>,
    pub on_conflict: OnConflict,
    /// Seed for ids of entries this command creates.
    pub id_seed: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUpload {
    pub user: UserId,
    pub upload: UploadId,
    pub path: Vec<String>,
    pub length: u64,
    pub device: DeviceId,
    pub expires_ms: u64,
    pub metadata: Option<String>,
    pub base_version: Option<u64>,
    pub on_conflict: OnConflict,
}

/// Bytes `[expected_offset, new_offset)` of an upload are durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceUpload {
    pub user: UserId,
    pub upload: UploadId,
    pub expected_offset: u64,
    pub new_offset: u64,
    /// Chunks finished by this request, appended to the upload's list.
    pub chunks: Vec<BlockRef>,
    /// The new tail (replaces the old one, whose references are dropped).
    pub tail: Vec<BlockRef>,
    pub new_blocks: Vec<NewBlock>,
    pub hash_state: TreeHashState,
    /// Present on the request that delivers the last byte: commit the file.
    pub finish: Option<FinishUpload>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishUpload {
    pub id_seed: [u8; 16],
}

/// The operator's admin account, created with the drive's first layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapAdmin {
    pub user: UserId,
    pub username: String,
    pub password_hash: String,
    pub quota_bytes: u64,
}

/// New variants go at the end: log entries written by earlier versions
/// must keep decoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateUser {
        user: UserId,
        username: String,
        password_hash: String,
        quota_bytes: u64,
        admin: bool,
    },
    /// Opens a session; the device is created or, by name, reused.
    Login {
        user: UserId,
        token_hash: [u8; 32],
        device: DeviceId,
        device_name: String,
        expires_ms: u64,
    },
    Logout {
        user: UserId,
        token_hash: [u8; 32],
    },
    CommitFile(CommitFile),
    CreateFolder {
        user: UserId,
        path: Vec<String>,
        device: DeviceId,
        id_seed: [u8; 16],
    },
    Delete {
        user: UserId,
        path: Vec<String>,
        device: DeviceId,
    },
    Move {
        user: UserId,
        from: Vec<String>,
        to: Vec<String>,
        device: DeviceId,
        id_seed: [u8; 16],
    },
    Restore {
        user: UserId,
        path: Vec<String>,
        version: u64,
        device: DeviceId,
        id_seed: [u8; 16],
    },
    CreateUpload(CreateUpload),
    AdvanceUpload(AdvanceUpload),
    CancelUpload {
        user: UserId,
        upload: UploadId,
    },
    /// Drops upload sessions whose expiry is before `at_ms` (at most `limit`).
    ExpireUploads {
        limit: u32,
    },
    /// Replaces the cluster layout if it is still at `expected_version`.
    SetLayout {
        expected_version: u64,
        layout: LayoutRecord,
    },
    /// Moves shards between nodes in the block records; each change applies
    /// only if the shard is still where the proposer saw it.
    UpdatePlacement {
        changes: Vec<PlacementChange>,
    },
    /// Records blocks uploaded ahead of a commit (delta sync); a block that
    /// exists is left alone.
    RegisterBlocks {
        user: UserId,
        blocks: Vec<NewBlock>,
    },
    /// Gives `path` of `owner`'s tree to `sharee` (again: changes the role).
    CreateShare {
        owner: UserId,
        path: Vec<String>,
        sharee: UserId,
        role: crate::records::ShareRole,
        share: ShareId,
        device: DeviceId,
    },
    /// Ends a share; its owner or its sharee may.
    DeleteShare {
        by: UserId,
        share: ShareId,
        device: DeviceId,
    },
    /// Several writers' commands in one log entry (group commit), applied
    /// in order, each with its own time and its own result. Never nested.
    Batch(Vec<Request>),
    /// Sets the drive up, once: the first layout (a cluster) and the
    /// operator's admin account, in one entry, so no request can be served
    /// between them. Signups wait for it. Applying it again changes nothing.
    Bootstrap {
        layout: Option<LayoutRecord>,
        admin: Option<BootstrapAdmin>,
    },
    /// An administrator changes an account (the gateway checks the caller).
    UpdateUser {
        user: UserId,
        quota_bytes: Option<u64>,
        disabled: Option<bool>,
        admin: Option<bool>,
    },
    /// A user's new password; every session but `keep` ends.
    ChangePassword {
        user: UserId,
        password_hash: String,
        keep: Option<[u8; 32]>,
    },
    /// Offers `path` of `owner`'s tree to `sharee`: pending until the
    /// sharee accepts it, unless the sharee takes shares from the owner
    /// without asking. Offering it again changes the role.
    OfferShare {
        owner: UserId,
        path: Vec<String>,
        sharee: UserId,
        role: crate::records::ShareRole,
        share: ShareId,
        device: DeviceId,
    },
    /// The sharee accepts a pending share: it appears under `/Shared`.
    AcceptShare {
        sharee: UserId,
        share: ShareId,
        device: DeviceId,
    },
    /// Whose shares `user` takes without accepting each one.
    SetShareAcceptance {
        user: UserId,
        from: crate::records::AcceptFrom,
    },
    /// A write that `sharee` makes in the owner's tree through an editor
    /// share: applied only if the share still exists, is accepted, lets
    /// the sharee edit, and every path of `cmd` lies inside the shared
    /// entry. Checked when it applies, so a share revoked while an upload
    /// was in flight stops its commit.
    ViaShare {
        share: ShareId,
        sharee: UserId,
        cmd: Box<Command>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementChange {
    pub user: UserId,
    pub block: BlockId,
    pub index: u8,
    /// Where the shard is now (`None`: on no node yet).
    #[serde(with = "crate::records::shard_home")]
    pub from: Option<NodeId>,
    pub to: NodeId,
}

impl Command {
    /// A short name for logs (never the arguments: they may hold secrets).
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateUser { .. } => "create_user",
            Command::Login { .. } => "login",
            Command::Logout { .. } => "logout",
            Command::CommitFile(_) => "commit_file",
            Command::CreateFolder { .. } => "create_folder",
            Command::Delete { .. } => "delete",
            Command::Move { .. } => "move",
            Command::Restore { .. } => "restore",
            Command::CreateUpload(_) => "create_upload",
            Command::AdvanceUpload(_) => "advance_upload",
            Command::CancelUpload { .. } => "cancel_upload",
            Command::ExpireUploads { .. } => "expire_uploads",
            Command::SetLayout { .. } => "set_layout",
            Command::UpdatePlacement { .. } => "update_placement",
            Command::Batch(_) => "batch",
            Command::RegisterBlocks { .. } => "register_blocks",
            Command::CreateShare { .. } => "create_share",
            Command::DeleteShare { .. } => "delete_share",
            Command::Bootstrap { .. } => "bootstrap",
            Command::UpdateUser { .. } => "update_user",
            Command::ChangePassword { .. } => "change_password",
            Command::OfferShare { .. } => "offer_share",
            Command::AcceptShare { .. } => "accept_share",
            Command::SetShareAcceptance { .. } => "set_share_acceptance",
            Command::ViaShare { .. } => "via_share",
        }
    }
}

/// An entry and its path, as a command left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    pub id: EntryId,
    pub path: String,
    pub record: EntryRecord,
}

/// The successful result of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    Done,
    LoggedIn {
        device: DeviceId,
    },
    Entry(EntryView),
    Upload(Box<UploadRecord>),
    /// An upload advanced and, if it was finished, the committed entry.
    Advanced {
        offset: u64,
        committed: Option<EntryView>,
    },
    Expired(u32),
    /// How many placement changes applied.
    Placed(u32),
    /// A share was created (or its role changed).
    Share(ShareId),
    /// The result of each command of a batch, in order.
    Batch(Vec<Response>),
    /// A share was offered: its id, and whether it waits for the sharee.
    Offered {
        share: ShareId,
        pending: bool,
    },
}

/// Why a command was refused. Deterministic: every node computes the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("invalid path: {0}")]
    BadPath(crate::path::PathError),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("username is taken")]
    UsernameTaken,
    #[error("no such user")]
    NoSuchUser,
    #[error("not found")]
    NotFound,
    #[error("a parent of the path is a file")]
    ParentNotFolder,
    #[error("the path is a folder")]
    IsFolder,
    #[error("something already exists at the path")]
    AlreadyExists,
    #[error("the file changed since version {base:?}; it is at version {current}")]
    Conflict { base: Option<u64>, current: u64 },
    #[error("quota exceeded: {needed} bytes needed, {available} available")]
    QuotaExceeded { needed: u64, available: u64 },
    #[error("upload offset is {actual}, not {expected}")]
    OffsetMismatch { expected: u64, actual: u64 },
    #[error("upload not found or expired")]
    UploadGone,
    #[error("blocks are missing from the store")]
    MissingBlocks(Vec<BlockId>),
    #[error("the layout changed: it is at version {current}")]
    LayoutChanged { current: u64 },
    /// The bootstrap admin's name belongs to an account without admin
    /// rights (taken before the drive was set up): the operator decides.
    #[error("the account {0:?} exists and is not the operator's admin account")]
    AdminNameTaken(String),
    /// The caller may not do this (a share ended, a viewer role, ...).
    #[error("{0}")]
    Forbidden(String),
    /// A per-user cap on stored things was reached.
    #[error("{0}")]
    Limit(String),
}

pub type Response = Result<Output, CommandError>;
