//! Node-to-node messages and the transport they travel on.
//!
//! `PeerNet` is the seam: `p2p::P2pNet` carries messages over libp2p (TCP,
//! the Noise-based secure channel of `secure`, yamux; only peers whose
//! keys the cluster lists may connect; each peer is reached over a few
//! long-lived streams, `codec` their format), and
//! `mem::MemNet` carries them in memory with injected faults, so the same
//! Raft, placement and repair logic can run in a deterministic harness.

pub mod codec;
pub mod mem;
pub mod p2p;
pub mod raft;
pub mod secure;
pub mod serve;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster_config::{BlockId, NodeId};
use raft_meta::network::RaftRpcKind;
use tokio::sync::broadcast;

use crate::block::shard::ShardMeta;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Largest message on the wire (a shard file is at most a few MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub enum NetRequest {
    Raft {
        kind: RaftRpcKind,
        payload: Bytes,
    },
    /// Store a whole shard file (header and payload; re-verified on receipt).
    PutShard {
        meta: ShardMeta,
        file: Bytes,
    },
    GetShard {
        meta: ShardMeta,
    },
    /// Which of these shards does the node hold, intact?
    HasShards {
        metas: Vec<ShardMeta>,
    },
    DeleteShard {
        block: BlockId,
        index: u8,
    },
}

impl NetRequest {
    pub fn name(&self) -> &'static str {
        match self {
            NetRequest::Raft { .. } => "raft",
            NetRequest::PutShard { .. } => "put_shard",
            NetRequest::GetShard { .. } => "get_shard",
            NetRequest::HasShards { .. } => "has_shards",
            NetRequest::DeleteShard { .. } => "delete_shard",
        }
    }
}

#[derive(Debug, Clone)]
pub enum NetResponse {
    Raft(Bytes),
    Done,
    /// The whole shard file, or `None` if the node does not hold it intact.
    Shard(Option<Bytes>),
    Has(Vec<bool>),
    /// The request failed or was refused: why, as a code the caller acts
    /// on, and a message for the log.
    Error {
        code: WireCode,
        message: String,
    },
}

impl NetResponse {
    pub fn error(code: WireCode, message: impl Into<String>) -> Self {
        NetResponse::Error {
            code,
            message: message.into(),
        }
    }
}

/// Why a peer did not do what was asked, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WireCode {
    /// The peer is starting or stopping: ask again, or another holder.
    NotReady,
    /// The request does not parse or does not fit this kind of message.
    BadRequest,
    /// A shard that failed verification was refused.
    Refused,
    /// The peer's disks are full.
    DiskFull,
    /// The peer's storage failed.
    Storage,
    /// Raft refused or failed the message.
    Raft,
}

impl WireCode {
    /// The same request may succeed later or elsewhere.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            WireCode::NotReady | WireCode::DiskFull | WireCode::Storage
        )
    }
}

/// Why a message got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    #[error("node {0} is not a known peer")]
    UnknownPeer(NodeId),
    #[error("node {node}: {reason}")]
    Unreachable { node: NodeId, reason: String },
    #[error("node {node} did not answer within {timeout:?}")]
    Timeout { node: NodeId, timeout: Duration },
    #[error("network stopped")]
    Closed,
}

/// A gossiped message: who sent it, on which topic, what it says.
#[derive(Debug, Clone)]
pub struct Gossip {
    pub from: NodeId,
    pub topic: String,
    pub data: Vec<u8>,
}

/// Serves requests that arrive from peers.
pub trait InboundHandler: Send + Sync + 'static {
    fn handle(&self, from: NodeId, req: NetRequest) -> BoxFuture<NetResponse>;
}

/// Where a peer is and which key it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub id: NodeId,
    pub peer_id: String,
    pub p2p_addr: String,
}

/// The transport between nodes.
pub trait PeerNet: Send + Sync + 'static {
    fn local_id(&self) -> NodeId;
    /// Sends one request and waits for its answer.
    fn call(
        &self,
        to: NodeId,
        req: NetRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<NetResponse, NetError>>;
    /// Best-effort delivery to every connected peer.
    fn publish(&self, topic: &str, data: Vec<u8>);
    fn subscribe(&self) -> broadcast::Receiver<Gossip>;
    /// The peers this node may talk to (replaces the previous set).
    fn set_peers(&self, peers: Vec<PeerAddr>);
}

pub type SharedNet = Arc<dyn PeerNet>;
