//! Raft RPC and forwarded client requests over a `PeerNet`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cluster_config::NodeId;
use raft_meta::network::{
    handle_raft_rpc, BoxFuture as RaftFuture, RaftRpcKind, RaftTransport, TransportError,
};
use raft_meta::types::{MemberNode, Raft};

use super::{NetRequest, NetResponse, SharedNet, WireCode};

/// Heartbeats and votes must fail fast; a snapshot may be large.
fn timeout_for(kind: RaftRpcKind) -> Duration {
    match kind {
        RaftRpcKind::AppendEntries | RaftRpcKind::Vote => Duration::from_secs(2),
        RaftRpcKind::ReadIndex => Duration::from_secs(5),
        RaftRpcKind::ClientWrite => Duration::from_secs(15),
        RaftRpcKind::InstallSnapshot => Duration::from_secs(60),
    }
}

pub struct NetRaftTransport {
    net: SharedNet,
}

impl NetRaftTransport {
    pub fn new(net: SharedNet) -> Self {
        Self { net }
    }
}

impl RaftTransport for NetRaftTransport {
    fn call(
        &self,
        target: NodeId,
        _node: &MemberNode,
        kind: RaftRpcKind,
        payload: Vec<u8>,
    ) -> RaftFuture<Result<Vec<u8>, TransportError>> {
        let net = self.net.clone();
        Box::pin(async move {
            match net
                .call(
                    target,
                    NetRequest::Raft {
                        kind,
                        payload: payload.into(),
                    },
                    timeout_for(kind),
                )
                .await
            {
                Ok(NetResponse::Raft(bytes)) => Ok(Vec::from(bytes)),
                Ok(NetResponse::Error { code, message }) => Err(TransportError {
                    target,
                    reason: format!("{code:?}: {message}"),
                }),
                Ok(other) => Err(TransportError {
                    target,
                    reason: format!("unexpected answer {other:?}"),
                }),
                Err(e) => Err(TransportError {
                    target,
                    reason: e.to_string(),
                }),
            }
        })
    }
}

/// The Raft node, set once it exists (the transport is built first).
#[derive(Default, Clone)]
pub struct RaftSlot(Arc<OnceLock<Raft>>);

impl RaftSlot {
    pub fn set(&self, raft: Raft) {
        let _ = self.0.set(raft);
    }

    pub async fn handle(
        &self,
        from: NodeId,
        kind: RaftRpcKind,
        payload: bytes::Bytes,
    ) -> NetResponse {
        let Some(raft) = self.0.get() else {
            return NetResponse::error(WireCode::NotReady, "raft not started yet");
        };
        match handle_raft_rpc(raft, from, kind, &payload).await {
            Ok(bytes) => NetResponse::Raft(bytes.into()),
            Err(e) => NetResponse::error(WireCode::Raft, e),
        }
    }
}
