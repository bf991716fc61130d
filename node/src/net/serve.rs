//! The inbound side of a node: Raft messages go to the Raft node, shard
//! messages to the block store.

use std::sync::{Arc, OnceLock};

use cluster_config::NodeId;

use super::raft::RaftSlot;
use super::{BoxFuture, InboundHandler, NetRequest, NetResponse, WireCode};
use crate::blocks::BlockStore;

#[derive(Default, Clone)]
pub struct NodeHandler {
    pub raft: RaftSlot,
    blocks: Arc<OnceLock<Arc<BlockStore>>>,
}

impl NodeHandler {
    pub fn set_blocks(&self, blocks: Arc<BlockStore>) {
        let _ = self.blocks.set(blocks);
    }
}

impl InboundHandler for NodeHandler {
    fn handle(&self, from: NodeId, req: NetRequest) -> BoxFuture<NetResponse> {
        let this = self.clone();
        Box::pin(async move {
            match req {
                NetRequest::Raft { kind, payload } => this.raft.handle(from, kind, payload).await,
                other => match this.blocks.get() {
                    Some(b) => {
                        tracing::trace!(%from, req = other.name(), "shard request");
                        b.handle(other).await
                    }
                    None => NetResponse::error(WireCode::NotReady, "block store not started yet"),
                },
            }
        })
    }
}
