//! `MetaNode` runs the local Raft member; `MetaClient` is the only way other
//! crates read and write metadata.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::{NodeId, SharedClock};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use strata_api::backoff::Backoff;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::MetaError;
use crate::network::{ForwardError, NetworkFactory, RaftRpcKind, RaftTransport};
use crate::reader::MetaReader;
use crate::records::{decode, encode};
use crate::store;
use crate::types::{Command, LogId, MemberNode, Output, Raft, Request, Response};

/// How long a write may wait for a quorum before the caller hears `Unavailable`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Commands folded into one log entry at most.
const MAX_BATCH: usize = 256;
/// Encoded bytes of one command at most: the largest a gateway makes is
/// the commit of a 10 GiB file cut into the smallest chunks (~4 MB).
/// Anything larger is refused before it reaches Raft.
pub const MAX_COMMAND_BYTES: usize = 8 << 20;
/// Encoded bytes folded into one log entry at most (a command larger than
/// this goes alone): one user's burst of large commands cannot make an
/// entry that takes replication and elections down with it.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Batches proposed at once; while they are in flight, new writes queue
/// up and go out together in the next one. Two, so that one batch
/// replicates while the one before it is applied: with four, batches were
/// smaller and 8–128 clients committed less (BENCHMARKS.md).
const BATCHES_IN_FLIGHT: usize = 2;

/// A write waiting for the batcher.
struct Pending {
    req: Request,
    /// Its encoded size.
    bytes: usize,
    reply: tokio::sync::oneshot::Sender<Result<Response, MetaError>>,
}

/// Groups concurrent writes into one Raft entry each time (group commit of
/// Raft entries, and with it of log flushes, replication and applies).
async fn run_batcher(
    inner: std::sync::Weak<Inner>,
    slots: Arc<tokio::sync::Semaphore>,
    mut rx: tokio::sync::mpsc::Receiver<Pending>,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    // A write that did not fit in the last batch opens the next one.
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
            },
        };
        // Holding the client only per batch lets it (and this task) go away.
        let Some(inner) = inner.upgrade() else { return };
        let client = MetaClient { inner };
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) if bytes + p.bytes > MAX_BATCH_BYTES => {
                    carry = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.bytes;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        tasks.spawn(async move {
            let _permit = permit;
            if batch.len() == 1 {
                if let Some(p) = batch.pop() {
                    let _ = p.reply.send(client.submit(&p.req).await);
                }
                return;
            }
            let (reqs, replies): (Vec<Request>, Vec<_>) =
                batch.into_iter().map(|p| (p.req, p.reply)).unzip();
            let combined = Request {
                at_ms: client.now_ms(),
                cmd: Command::Batch(reqs),
            };
            match client.submit(&combined).await {
                Ok(Ok(Output::Batch(results))) if results.len() == replies.len() => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Ok(other) => {
                    for reply in replies {
                        let _ = reply.send(Err(MetaError::Corrupt(format!(
                            "unexpected batch answer: {other:?}"
                        ))));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// What a deployment never changes but the simulation does.
#[derive(Debug, Clone)]
pub struct MetaOptions {
    /// The size a Raft log segment is allocated with.
    pub wal_segment_bytes: u64,
    /// The election timeout's range in milliseconds, `[min, max)`.
    pub election_timeout_ms: (u64, u64),
    /// Log appends are made durable on the appending thread instead of
    /// the flusher thread.
    pub wal_flush_inline: bool,
}

impl Default for MetaOptions {
    fn default() -> Self {
        Self {
            wal_segment_bytes: crate::store::wal::SEGMENT_BYTES,
            election_timeout_ms: (600, 1200),
            wal_flush_inline: false,
        }
    }
}

/// Raft timing for a cluster on one LAN or one machine.
fn raft_config(opts: &MetaOptions) -> Result<openraft::Config, MetaError> {
    let cfg = openraft::Config {
        cluster_name: "strata".into(),
        heartbeat_interval: 150,
        election_timeout_min: opts.election_timeout_ms.0,
        election_timeout_max: opts.election_timeout_ms.1,
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
    /// The batcher and the batches it proposed, waited for at shutdown.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl MetaNode {
    /// Opens the store under `dir` and starts the Raft member. `initial`
    /// lists the voters to initialise a brand-new cluster with (only the
    /// bootstrapping node passes them); an initialised store ignores it.
    pub async fn start(
        node_id: NodeId,
        dir: &Path,
        transport: Arc<dyn RaftTransport>,
        initial: Option<BTreeMap<NodeId, MemberNode>>,
        clock: SharedClock,
    ) -> Result<Self, MetaError> {
        Self::start_with(
            node_id,
            dir,
            transport,
            initial,
            clock,
            &MetaOptions::default(),
        )
        .await
    }

    /// `start` with settings of the log and of elections (the simulation's).
    pub async fn start_with(
        node_id: NodeId,
        dir: &Path,
        transport: Arc<dyn RaftTransport>,
        initial: Option<BTreeMap<NodeId, MemberNode>>,
        clock: SharedClock,
        opts: &MetaOptions,
    ) -> Result<Self, MetaError> {
        // openraft's ids are plain numbers; ours never 0.
        let id = node_id;
        let node_id = node_id.get();
        let initial: Option<BTreeMap<u64, MemberNode>> =
            initial.map(|m| m.into_iter().map(|(id, n)| (id.get(), n)).collect());
        let (log, sm) = store::open_with(dir, opts).await?;
        let log = log.for_member(node_id);
        let durable = log.durability();
        let sm = sm.gated_by(durable.clone());
        let reader = MetaReader::new(sm.tree());
        let applied = sm.applied_events();
        let journal = sm.journal_events();
        let config = Arc::new(raft_config(opts)?);
        let raft = Raft::new(
            node_id,
            config,
            NetworkFactory::new(transport.clone()).gated_by(durable),
            log,
            sm,
        )
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
                journal,
                node_id,
                id,
                transport,
                batcher: tokio::sync::OnceCell::new(),
                slots: Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT)),
            }),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
        let _ = client.inner.batcher.set(tx);
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        tasks.spawn(run_batcher(
            Arc::downgrade(&client.inner),
            client.inner.slots.clone(),
            rx,
            tasks.clone(),
            stop.clone(),
        ));
        Ok(Self {
            raft,
            client,
            tasks,
            stop,
        })
    }

    pub fn client(&self) -> MetaClient {
        self.client.clone()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Waits until some member leads (or `timeout` passes).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, MetaError> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = metrics.borrow().current_leader.and_then(NodeId::new) {
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
    /// Stops taking writes (those queued get "metadata writer stopped"),
    /// stops Raft, then waits for the batches in flight to be answered.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("metadata writes still in flight after Raft stopped");
        }
    }
}

struct Inner {
    raft: Raft,
    reader: MetaReader,
    clock: SharedClock,
    applied: broadcast::Sender<u64>,
    journal: crate::store::sm_journal::JournalTx,
    node_id: u64,
    /// `node_id` as strata knows it.
    id: NodeId,
    transport: Arc<dyn RaftTransport>,
    batcher: tokio::sync::OnceCell<tokio::sync::mpsc::Sender<Pending>>,
    /// Entries proposed and not yet answered, at most `BATCHES_IN_FLIGHT`.
    slots: Arc<tokio::sync::Semaphore>,
}

/// A cheap handle for reading and writing metadata.
#[derive(Clone)]
pub struct MetaClient {
    inner: Arc<Inner>,
}

/// Whether a failed write attempt may be retried: only when it certainly
/// was not applied.
enum Attempt {
    Retry(String),
    Fail(MetaError),
}

impl MetaClient {
    /// The local state machine: what this node has applied.
    pub fn local(&self) -> &MetaReader {
        &self.inner.reader
    }

    /// The state machine once this node has applied every write that was
    /// acknowledged anywhere before this call (a read index from the leader).
    pub async fn linearizable(&self) -> Result<&MetaReader, MetaError> {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.try_read_index()).await;
            match attempt {
                Err(_) => return Err(MetaError::Unavailable("linearizable read timed out".into())),
                Ok(Ok(())) => return Ok(&self.inner.reader),
                Ok(Err(Attempt::Fail(e))) => return Err(e),
                Ok(Err(Attempt::Retry(why))) => {
                    let wait = backoff.next_delay();
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(MetaError::Unavailable(why));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn try_read_index(&self) -> Result<(), Attempt> {
        let raft = &self.inner.raft;
        match raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                let (Some(leader), Some(node)) = (f.leader_id.and_then(NodeId::new), f.leader_node)
                else {
                    return Err(Attempt::Retry("no leader".into()));
                };
                let bytes = self
                    .inner
                    .transport
                    .call(leader, &node, RaftRpcKind::ReadIndex, Vec::new())
                    .await
                    .map_err(|e| Attempt::Retry(e.to_string()))?;
                let answer: Result<Option<LogId>, ForwardError> = decode("read index", &bytes)
                    .map_err(|e| Attempt::Fail(MetaError::Corrupt(e.to_string())))?;
                match answer {
                    Ok(index) => {
                        raft.wait(Some(WRITE_TIMEOUT))
                            .applied_index_at_least(index.map(|l| l.index), "read index")
                            .await
                            .map_err(|e| Attempt::Retry(e.to_string()))?;
                        Ok(())
                    }
                    Err(ForwardError::NotLeader { .. }) => {
                        Err(Attempt::Retry("leader changed".into()))
                    }
                    Err(ForwardError::Unavailable(e)) => Err(Attempt::Retry(e)),
                    Err(e @ (ForwardError::NotMember(_) | ForwardError::Refused(_))) => {
                        Err(Attempt::Fail(MetaError::Unavailable(e.to_string())))
                    }
                }
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(Attempt::Retry(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(Attempt::Fail(MetaError::Unavailable(e.to_string()))),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// Wakes whenever this node applies new entries.
    pub fn subscribe_applied(&self) -> broadcast::Receiver<u64> {
        self.inner.applied.subscribe()
    }

    /// Journal heads (user, newest sequence) as this node applies them.
    pub fn subscribe_journal(
        &self,
    ) -> broadcast::Receiver<Arc<Vec<(cluster_config::UserId, u64)>>> {
        self.inner.journal.subscribe()
    }

    pub fn raft_metrics(&self) -> openraft::RaftMetrics<u64, MemberNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.raft_metrics().current_leader == Some(self.inner.node_id)
    }

    /// Proposes a command and waits until it is committed and applied. Any
    /// member accepts writes: a follower forwards them to the leader.
    /// Concurrent writes share log entries.
    pub async fn write(&self, cmd: Command) -> Result<Output, MetaError> {
        let req = Request {
            at_ms: self.now_ms(),
            cmd,
        };
        let bytes = crate::records::encoded_len(&req);
        if bytes > MAX_COMMAND_BYTES {
            return Err(MetaError::TooLarge {
                bytes,
                limit: MAX_COMMAND_BYTES,
            });
        }
        let Some(batcher) = self.inner.batcher.get() else {
            return self.submit(&req).await?.map_err(MetaError::Command);
        };
        // Nothing queued and nothing in flight: there is nothing to share
        // an entry with, so the write is proposed from this task, without
        // the two task switches through the batcher.
        if batcher.capacity() == batcher.max_capacity()
            && self.inner.slots.available_permits() == BATCHES_IN_FLIGHT
        {
            if let Ok(_slot) = self.inner.slots.try_acquire() {
                return self.submit(&req).await?.map_err(MetaError::Command);
            }
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        batcher
            .send(Pending { req, bytes, reply })
            .await
            .map_err(|_| MetaError::Unavailable("metadata writer stopped".into()))?;
        rx.await
            .map_err(|_| MetaError::Unavailable("metadata writer stopped".into()))??
            .map_err(MetaError::Command)
    }

    /// Proposes one log entry, forwarding to the leader when needed, and
    /// retrying while it certainly was not applied.
    async fn submit(&self, req: &Request) -> Result<Response, MetaError> {
        let name = req.cmd.name();
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            match tokio::time::timeout_at(deadline, self.try_write(req)).await {
                Err(_) => {
                    return Err(MetaError::Unavailable(format!(
                        "{name}: no quorum within {WRITE_TIMEOUT:?}"
                    )))
                }
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(Attempt::Fail(e))) => return Err(e),
                Ok(Err(Attempt::Retry(why))) => {
                    let wait = backoff.next_delay();
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(MetaError::Unavailable(format!("{name}: {why}")));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn try_write(&self, req: &Request) -> Result<Response, Attempt> {
        match self.inner.raft.client_write(req.clone()).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let (Some(leader), Some(node)) = (f.leader_id.and_then(NodeId::new), f.leader_node)
                else {
                    return Err(Attempt::Retry("no leader elected yet".into()));
                };
                if leader == self.inner.id {
                    return Err(Attempt::Retry("leadership changing".into()));
                }
                // Not applied here; after the leader receives it, a lost answer
                // is not retried (it may have been applied).
                let bytes = self
                    .inner
                    .transport
                    .call(leader, &node, RaftRpcKind::ClientWrite, encode(req))
                    .await
                    .map_err(|e| {
                        Attempt::Fail(MetaError::Unavailable(format!(
                            "forwarding to the leader: {e}"
                        )))
                    })?;
                let answer: Result<Response, ForwardError> = decode("forwarded write", &bytes)
                    .map_err(|e| Attempt::Fail(MetaError::Corrupt(e.to_string())))?;
                match answer {
                    Ok(r) => Ok(r),
                    Err(ForwardError::NotLeader { .. }) => {
                        Err(Attempt::Retry("leader changed".into()))
                    }
                    Err(ForwardError::Unavailable(e)) => {
                        Err(Attempt::Fail(MetaError::Unavailable(e)))
                    }
                    Err(e @ (ForwardError::NotMember(_) | ForwardError::Refused(_))) => {
                        Err(Attempt::Fail(MetaError::Unavailable(e.to_string())))
                    }
                }
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Attempt::Fail(MetaError::Unavailable(e.to_string())))
            }
            Err(RaftError::Fatal(e)) => Err(Attempt::Fail(MetaError::Unavailable(e.to_string()))),
        }
    }

    /// Adds a node as a learner (leader only); waits until it has caught up
    /// when `blocking`.
    pub async fn add_learner(
        &self,
        id: NodeId,
        node: MemberNode,
        blocking: bool,
    ) -> Result<(), MetaError> {
        self.inner
            .raft
            .add_learner(id.get(), node, blocking)
            .await
            .map(|_| ())
            .map_err(|e| MetaError::Unavailable(format!("add learner {id}: {e}")))
    }

    /// Sets the voters (leader only); non-voters stay learners.
    pub async fn set_voters(
        &self,
        voters: std::collections::BTreeSet<NodeId>,
    ) -> Result<(), MetaError> {
        let voters = voters.into_iter().map(NodeId::get).collect();
        self.inner
            .raft
            .change_membership(openraft::ChangeMembers::ReplaceAllVoters(voters), true)
            .await
            .map(|_| ())
            .map_err(|e| MetaError::Unavailable(format!("change voters: {e}")))
    }

    /// Removes nodes from the membership entirely (leader only).
    pub async fn remove_nodes(
        &self,
        ids: std::collections::BTreeSet<NodeId>,
    ) -> Result<(), MetaError> {
        let ids = ids.into_iter().map(NodeId::get).collect();
        self.inner
            .raft
            .change_membership(openraft::ChangeMembers::RemoveNodes(ids), false)
            .await
            .map(|_| ())
            .map_err(|e| MetaError::Unavailable(format!("remove nodes: {e}")))
    }
}
