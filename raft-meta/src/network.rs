//! Raft RPC over a pluggable transport.
//!
//! openraft talks to `RaftNetworkFactory`; we adapt it to `RaftTransport`, a
//! byte-level request/response trait. The node crate implements it over
//! libp2p; tests and the chaos harness can implement it in memory. A single
//! node uses `NoPeers`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::records::{decode, encode};
use crate::store::wal::Durability;
use crate::types::{MemberNode, Raft, TypeConfig};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Which Raft RPC a payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRpcKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
    /// A client write forwarded to the leader.
    ClientWrite,
    /// A follower asks the leader for a log index that covers every write
    /// acknowledged so far (a read index).
    ReadIndex,
}

/// Why the leader could not serve a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    #[error("not the leader (leader is {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("{0}")]
    Unavailable(String),
}

/// Delivery failed; the peer may be down.
#[derive(Debug, Clone, thiserror::Error)]
#[error("raft transport to node {target}: {reason}")]
pub struct TransportError {
    pub target: u64,
    pub reason: String,
}

pub trait RaftTransport: Send + Sync + 'static {
    /// Sends one encoded RPC to `target` and returns its encoded answer.
    fn call(
        &self,
        target: u64,
        node: &MemberNode,
        kind: RaftRpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, TransportError>>;
}

/// The transport of a single-node drive: there is nobody to call.
pub struct NoPeers;

impl RaftTransport for NoPeers {
    fn call(
        &self,
        target: u64,
        _: &MemberNode,
        _: RaftRpcKind,
        _: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            Err(TransportError {
                target,
                reason: "this node has no peers".into(),
            })
        })
    }
}

#[derive(Clone)]
pub struct NetworkFactory {
    transport: Arc<dyn RaftTransport>,
    durable: Option<Durability>,
}

impl NetworkFactory {
    pub fn new(transport: Arc<dyn RaftTransport>) -> Self {
        Self {
            transport,
            durable: None,
        }
    }

    /// Tells followers a commit index only once the local log's durable
    /// watermark covers it: the leader's own appends count towards a
    /// commit before they are durable (`store/log.rs`).
    pub fn gated_by(mut self, durable: Durability) -> Self {
        self.durable = Some(durable);
        self
    }
}

pub struct PeerNetwork {
    transport: Arc<dyn RaftTransport>,
    durable: Option<Durability>,
    target: u64,
    node: MemberNode,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> Self::Network {
        PeerNetwork {
            transport: self.transport.clone(),
            durable: self.durable.clone(),
            target,
            node: node.clone(),
        }
    }
}

impl PeerNetwork {
    async fn rpc<Req, Resp, E>(
        &self,
        kind: RaftRpcKind,
        req: &Req,
    ) -> Result<Resp, RPCError<u64, MemberNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let bytes = self
            .transport
            .call(self.target, &self.node, kind, encode(req))
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let answer: Result<Resp, RaftError<u64, E>> = decode("raft rpc answer", &bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        if let (Some(durable), Some(commit)) = (&self.durable, rpc.leader_commit) {
            durable
                .wait(commit.index)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        }
        self.rpc(RaftRpcKind::AppendEntries, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, MemberNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(RaftRpcKind::InstallSnapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        self.rpc(RaftRpcKind::Vote, &rpc).await
    }
}

/// Serves one inbound RPC on the local Raft node; the answer is encoded
/// whatever happens, so the caller always gets a typed reply.
pub async fn handle_raft_rpc(
    raft: &Raft,
    kind: RaftRpcKind,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    match kind {
        RaftRpcKind::AppendEntries => {
            let req: AppendEntriesRequest<TypeConfig> =
                decode("append entries", payload).map_err(|e| e.to_string())?;
            Ok(encode(&raft.append_entries(req).await))
        }
        RaftRpcKind::Vote => {
            let req: VoteRequest<u64> = decode("vote", payload).map_err(|e| e.to_string())?;
            Ok(encode(&raft.vote(req).await))
        }
        RaftRpcKind::InstallSnapshot => {
            let req: InstallSnapshotRequest<TypeConfig> =
                decode("install snapshot", payload).map_err(|e| e.to_string())?;
            Ok(encode(&raft.install_snapshot(req).await))
        }
        RaftRpcKind::ClientWrite => {
            let req: crate::types::Request =
                decode("client write", payload).map_err(|e| e.to_string())?;
            let answer: Result<crate::types::Response, ForwardError> =
                match raft.client_write(req).await {
                    Ok(r) => Ok(r.data),
                    Err(openraft::error::RaftError::APIError(
                        openraft::error::ClientWriteError::ForwardToLeader(f),
                    )) => Err(ForwardError::NotLeader {
                        leader: f.leader_id,
                    }),
                    Err(e) => Err(ForwardError::Unavailable(e.to_string())),
                };
            Ok(encode(&answer))
        }
        RaftRpcKind::ReadIndex => {
            let answer: Result<Option<crate::types::LogId>, ForwardError> =
                match raft.ensure_linearizable().await {
                    Ok(id) => Ok(id),
                    Err(openraft::error::RaftError::APIError(
                        openraft::error::CheckIsLeaderError::ForwardToLeader(f),
                    )) => Err(ForwardError::NotLeader {
                        leader: f.leader_id,
                    }),
                    Err(e) => Err(ForwardError::Unavailable(e.to_string())),
                };
            Ok(encode(&answer))
        }
    }
}
