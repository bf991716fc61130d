//! `MetaNode` runs the local Raft member; `MetaClient` is the only way other
//! crates read and write metadata.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::SharedClock;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::broadcast;

use crate::error::MetaError;
use crate::network::{NetworkFactory, RaftTransport};
use crate::reader::MetaReader;
use crate::store;
use crate::types::{Command, MemberNode, Output, Raft, Request};

/// How long a write may wait for a quorum before the caller hears `Unavailable`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Raft timing for a cluster on one LAN or one machine.
pub fn raft_config() -> Result<openraft::Config, MetaError> {
    let cfg = openraft::Config {
        cluster_name: "strata".into(),
        heartbeat_interval: 150,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        max_payload_entries: 512,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20_000),
        max_in_snapshot_log_to_keep: 2_000,
        ..Default::default()
    };
    cfg.validate()
        .map_err(|e| MetaError::Storage(format!("raft config: {e}")))
}

/// The local Raft member and its state machine.
pub struct MetaNode {
    raft: Raft,
    client: MetaClient,
}

impl MetaNode {
    /// Opens the store under `dir` and starts the Raft member. `initial`
    /// lists the voters to initialise a brand-new cluster with (only the
    /// bootstrapping node passes them); an initialised store ignores it.
    pub async fn start(
        node_id: u64,
        dir: &Path,
        transport: Arc<dyn RaftTransport>,
        initial: Option<BTreeMap<u64, MemberNode>>,
        clock: SharedClock,
    ) -> Result<Self, MetaError> {
        let (log, sm) = store::open(dir)?;
        let reader = MetaReader::new(sm.tree());
        let applied = sm.applied_events();
        let config = Arc::new(raft_config()?);
        let raft = Raft::new(node_id, config, NetworkFactory::new(transport), log, sm)
            .await
            .map_err(|e| MetaError::Unavailable(format!("raft start: {e}")))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| MetaError::Unavailable(e.to_string()))?;
        if let (false, Some(members)) = (initialized, initial) {
            raft.initialize(members)
                .await
                .map_err(|e| MetaError::Unavailable(format!("raft initialize: {e}")))?;
            tracing::info!(node = node_id, "initialised a new metadata cluster");
        }
        let client = MetaClient {
            inner: Arc::new(Inner {
                raft: raft.clone(),
                reader,
                clock,
                applied,
                node_id,
            }),
        };
        Ok(Self { raft, client })
    }

    pub fn client(&self) -> MetaClient {
        self.client.clone()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Waits until some member leads (or `timeout` passes).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, MetaError> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = metrics.borrow().current_leader {
                return Ok(l);
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(MetaError::Unavailable("raft stopped".into())),
                Err(_) => return Err(MetaError::Unavailable("no leader elected in time".into())),
            }
        }
    }

    /// Stops the Raft member; nothing is lost (the log is durable).
    pub async fn shutdown(self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

struct Inner {
    raft: Raft,
    reader: MetaReader,
    clock: SharedClock,
    applied: broadcast::Sender<u64>,
    node_id: u64,
}

/// A cheap handle for reading and writing metadata.
#[derive(Clone)]
pub struct MetaClient {
    inner: Arc<Inner>,
}

impl MetaClient {
    /// The local state machine: what this node has applied.
    pub fn local(&self) -> &MetaReader {
        &self.inner.reader
    }

    /// The state machine after this node has caught up with the leader:
    /// every write acknowledged anywhere before this call is visible.
    pub async fn linearizable(&self) -> Result<&MetaReader, MetaError> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.inner.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(&self.inner.reader),
            Ok(Err(e)) => Err(MetaError::Unavailable(e.to_string())),
            Err(_) => Err(MetaError::Unavailable("linearizable read timed out".into())),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// Wakes whenever this node applies new entries.
    pub fn subscribe_applied(&self) -> broadcast::Receiver<u64> {
        self.inner.applied.subscribe()
    }

    pub fn raft_metrics(&self) -> openraft::RaftMetrics<u64, MemberNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Proposes a command and waits until it is committed and applied here.
    pub async fn write(&self, cmd: Command) -> Result<Output, MetaError> {
        let name = cmd.name();
        let req = Request {
            at_ms: self.now_ms(),
            cmd,
        };
        let res = tokio::time::timeout(WRITE_TIMEOUT, self.inner.raft.client_write(req)).await;
        match res {
            Err(_) => Err(MetaError::Unavailable(format!(
                "{name}: no quorum within {WRITE_TIMEOUT:?}"
            ))),
            Ok(Ok(resp)) => resp.data.map_err(MetaError::Command),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(MetaError::Unavailable(format!(
                    "{name}: not the leader (leader is {:?})",
                    f.leader_id
                )))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(MetaError::Unavailable(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(e))) => Err(MetaError::Unavailable(format!("{name}: {e}"))),
        }
    }
}
