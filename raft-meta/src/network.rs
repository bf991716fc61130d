//! Raft RPC over a pluggable transport.
//!
//! openraft talks to `RaftNetworkFactory`; we adapt it to `RaftTransport`, a
//! byte-level request/response trait. The node crate implements it over
//! libp2p; tests and the chaos harness can implement it in memory. A single
//! node uses `NoPeers`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cluster_config::NodeId;
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
    /// The forwarding node is not in the Raft membership: its writes and
    /// reads are not taken.
    #[error("node {0} is not a member of the metadata group")]
    NotMember(u64),
    /// A command no gateway forwards.
    #[error("refused: {0}")]
    Refused(String),
}

/// Whether `from` is a voter or a learner of the membership `raft` knows.
fn is_member(raft: &Raft, from: u64) -> bool {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let known = m
        .membership_config
        .membership()
        .nodes()
        .any(|(id, _)| *id == from);
    known
}

/// Commands a gateway never forwards: an account with admin rights is made
/// only by the drive's bootstrap on the leader itself.
fn forwardable(cmd: &crate::types::Command) -> Result<(), String> {
    use crate::types::Command;
    match cmd {
        Command::CreateUser { admin: true, .. } => {
            Err("an admin account is never created through another node".into())
        }
        Command::Batch(reqs) => reqs.iter().try_for_each(|r| forwardable(&r.cmd)),
        _ => Ok(()),
    }
}

/// Delivery failed; the peer may be down.
#[derive(Debug, Clone, thiserror::Error)]
#[error("raft transport to node {target}: {reason}")]
pub struct TransportError {
    pub target: NodeId,
    pub reason: String,
}

pub trait RaftTransport: Send + Sync + 'static {
    /// Sends one encoded RPC to `target` and returns its encoded answer.
    fn call(
        &self,
        target: NodeId,
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
        target: NodeId,
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

#[cfg(test)]
mod tests {
    #[test]
    fn appends_are_cut_by_bytes_but_never_to_nothing() {
        let small = vec![vec![0u8; 1000]; 10];
        assert_eq!(super::entries_that_fit(&small), 10);
        let big = vec![vec![0u8; 6 << 20]; 10];
        assert_eq!(super::entries_that_fit(&big), 2);
        let huge = vec![vec![0u8; 40 << 20]; 3];
        assert_eq!(super::entries_that_fit(&huge), 1);
        assert_eq!(super::entries_that_fit::<Vec<u8>>(&[]), 0);
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
        // openraft only asks for members, and members are never node 0.
        let Some(target) = NodeId::new(self.target) else {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "node id 0");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let bytes = self
            .transport
            .call(target, &self.node, kind, encode(req))
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let answer: Result<Resp, RaftError<u64, E>> = decode("raft rpc answer", &bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

/// Encoded entries in one AppendEntries message at most (a single larger
/// entry still goes, alone). openraft counts entries, not bytes; a run of
/// large entries is sent as several messages, each acknowledged as a
/// partial success, so no message outgrows its timeout or the lane.
pub const MAX_APPEND_BYTES: usize = 16 << 20;

/// How many of `entries` fit in one message of `MAX_APPEND_BYTES`.
fn entries_that_fit<T: Serialize>(entries: &[T]) -> usize {
    let mut total = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let n = crate::records::encoded_len(e);
        if i > 0 && total.saturating_add(n) > MAX_APPEND_BYTES {
            return i;
        }
        total = total.saturating_add(n);
    }
    entries.len()
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        if let (Some(durable), Some(commit)) = (&self.durable, rpc.leader_commit) {
            durable
                .wait(commit.index)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        }
        let fit = entries_that_fit(&rpc.entries);
        let partial = fit < rpc.entries.len();
        if partial {
            rpc.entries.truncate(fit);
        }
        let last = rpc.entries.last().map(|e| e.log_id);
        match self.rpc(RaftRpcKind::AppendEntries, &rpc).await? {
            AppendEntriesResponse::Success if partial => {
                Ok(AppendEntriesResponse::PartialSuccess(last))
            }
            other => Ok(other),
        }
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

/// Serves one inbound RPC from node `from` on the local Raft node; the
/// answer is encoded whatever happens, so the caller always gets a typed
/// reply. Forwarded writes and read indexes are taken only from members
/// of the metadata group (a key that is merely listed as a peer is not
/// enough), and never for commands no gateway forwards.
pub async fn handle_raft_rpc(
    raft: &Raft,
    from: NodeId,
    kind: RaftRpcKind,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let from = from.get();
    if matches!(kind, RaftRpcKind::ClientWrite | RaftRpcKind::ReadIndex) && !is_member(raft, from) {
        tracing::warn!(
            from,
            ?kind,
            "forwarded request from a node outside the membership refused"
        );
        let answer: Result<(), ForwardError> = Err(ForwardError::NotMember(from));
        return Ok(encode(&answer));
    }
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
            if let Err(why) = forwardable(&req.cmd) {
                tracing::warn!(
                    from,
                    command = req.cmd.name(),
                    "forwarded write refused: {why}"
                );
                let answer: Result<crate::types::Response, ForwardError> =
                    Err(ForwardError::Refused(why));
                return Ok(encode(&answer));
            }
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
