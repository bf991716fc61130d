//! Keeping every block at K+M shards.
//!
//! Two loops. The *coordinator* (it acts only on the Raft leader) scans the
//! block table, finds shards that are missing (written while their node was
//! down), on a node that is gone (silent longer than the grace time) or
//! removed, or on a node that left the block's desired set after a layout
//! change, and rebuilds or copies each to a healthy node, then records the
//! new placement through Raft (compare-and-set, so a concurrent change is
//! never overwritten). The *scrubber* runs on every node: it first counts
//! the shards this node should hold but lacks (a replaced disk), rebuilds
//! them from peers, then re-reads every local shard at a bounded rate and
//! rebuilds any whose checksum fails.

use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_config::{NodeId, RepairConfig};
use raft_meta::records::MemberState;
use raft_meta::types::PlacementChange;
use raft_meta::{BlockEntry, Command, MetaClient};
// tokio's clock: the same as std's in a node, the virtual one in the
// simulation, where scrub passes come due with the rest of the cluster.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::blocks::BlockStore;
use crate::health::{Health, RepairStatus, MAX_NAMED_FILES};
use crate::net::{NetRequest, SharedNet};
use crate::placement::View;

const PAGE: usize = 512;
/// Unreadable blocks remembered per user to name their files, at most.
const MAX_TRACKED_UNREADABLE: usize = 10_000;
/// Repairs in flight at once (a sliding window), so user traffic keeps a
/// share of the bandwidth while the disk stays busy.
const PARALLEL_REPAIRS: usize = 8;

pub struct Repair {
    blocks: Arc<BlockStore>,
    meta: MetaClient,
    health: Arc<Health>,
    net: Option<SharedNet>,
    config: RepairConfig,
    status: Mutex<RepairStatus>,
    scrubbed: AtomicU64,
    rebuilt: AtomicU64,
    local_missing: AtomicU64,
}

/// One shard to put somewhere else.
#[derive(Debug, Clone)]
struct Task {
    entry: BlockEntry,
    index: usize,
    /// Where the shard is recorded now (`None`: on no node).
    from: Option<NodeId>,
    to: NodeId,
    /// The shard on `from` is intact and can be copied (a move), rather
    /// than rebuilt from the others.
    copy: bool,
    /// Shards of the block on live nodes when planned: the fewest go first.
    live: usize,
}

/// What one block's placement says about its safety now.
struct Safety {
    /// Shards on live nodes (healthy, not gone).
    live: usize,
    total: usize,
    data: usize,
}

impl Repair {
    pub fn new(
        blocks: Arc<BlockStore>,
        meta: MetaClient,
        health: Arc<Health>,
        net: Option<SharedNet>,
        config: RepairConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            blocks,
            meta,
            health,
            net,
            config,
            status: Mutex::new(RepairStatus::default()),
            scrubbed: AtomicU64::new(0),
            rebuilt: AtomicU64::new(0),
            local_missing: AtomicU64::new(0),
        })
    }

    pub fn status(&self) -> RepairStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self) {
        let status = self.meta.is_leader().then(|| self.status());
        let (scrubbed, rebuilt, missing) = (
            self.scrubbed.load(Ordering::Relaxed),
            self.rebuilt.load(Ordering::Relaxed),
            self.local_missing.load(Ordering::Relaxed),
        );
        self.health.update_mine(|h| {
            h.repair = status;
            h.shards_scrubbed = scrubbed;
            h.shards_rebuilt = rebuilt;
            h.local_missing = missing;
        });
    }

    /// The coordinator loop.
    pub async fn run_coordinator(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.scan_interval) => {}
            }
            if self.meta.is_leader() && self.blocks.placement().view().is_cluster() {
                if let Err(e) = self.scan_once(&stop).await {
                    tracing::warn!(error = %e, "repair scan failed");
                }
            }
            self.publish();
        }
    }

    /// Nodes whose shards must be rebuilt elsewhere: silent past the grace
    /// time, or removed from the layout.
    fn gone(&self) -> HashSet<NodeId> {
        let view = self.blocks.placement().view();
        let Some(layout) = &view.layout else {
            return HashSet::new();
        };
        layout
            .members
            .iter()
            .filter(|m| {
                m.state == MemberState::Removed || self.health.silent_for(m.id) > self.config.grace
            })
            .map(|m| m.id)
            .collect()
    }

    async fn scan_once(&self, stop: &CancellationToken) -> Result<(), raft_meta::MetaError> {
        // One picture for the whole scan: who is up and gone as of now.
        let gone = self.gone();
        let mut view = (*self.blocks.placement().view()).clone();
        let members: Vec<NodeId> = view
            .layout
            .as_ref()
            .map(|l| l.members.iter().map(|m| m.id).collect())
            .unwrap_or_default();
        view.healthy = members
            .iter()
            .copied()
            .filter(|n| self.health.is_healthy(*n))
            .collect();
        let down: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|n| !view.healthy.contains(n) && *n != view.me)
            .collect();
        let layout_version = view.layout.as_ref().map(|l| l.version).unwrap_or(0);
        let snap = Snapshot {
            view: &view,
            gone: &gone,
        };
        // Current as of the leader's commit: a leader that just took over
        // may not have applied everything yet, and a scan of less would
        // report a backlog it does not know.
        let reader = self.meta.linearizable().await?.clone();
        let mut after: Option<Vec<u8>> = None;
        let mut found = 0u64;
        let mut stuck = 0u64;
        let mut scanned = 0u64;
        let mut short = 0u64;
        let mut unreadable_by_user: HashMap<
            cluster_config::UserId,
            HashSet<cluster_config::BlockId>,
        > = HashMap::new();
        let mut unreadable_count = 0u64;
        let mut all = Vec::new();
        loop {
            let page = reader.blocks_after(after.as_deref(), PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for entry in &page {
                let safety = safety(entry, &snap);
                if safety.live < safety.total {
                    short += 1;
                }
                if safety.live < safety.data {
                    unreadable_count += 1;
                    let set = unreadable_by_user.entry(entry.user).or_default();
                    if set.len() < MAX_TRACKED_UNREADABLE {
                        set.insert(entry.block);
                    }
                }
                let (tasks, s) = plan(entry, &snap);
                found += tasks.len() as u64;
                stuck += s;
                all.extend(tasks);
            }
            scanned += page.len() as u64;
        }
        // The files behind unreadable blocks, named for the operator.
        let mut files = Vec::new();
        for (user, blocks) in &unreadable_by_user {
            if files.len() >= MAX_NAMED_FILES {
                break;
            }
            let name = reader
                .user(user)?
                .map(|u| u.username)
                .unwrap_or_else(|| user.to_string());
            for path in reader.files_using(user, blocks, MAX_NAMED_FILES - files.len())? {
                files.push(format!("{name}:{path}"));
            }
        }
        if unreadable_count > 0 {
            tracing::error!(blocks = unreadable_count, files = ?files, "blocks below K shards on live nodes: unreadable until their nodes return");
        }
        // The most endangered blocks first: those with the fewest shards.
        all.sort_by_key(|t: &Task| t.live);
        tracing::debug!(
            scanned,
            tasks = all.len(),
            stuck,
            short,
            unreadable = unreadable_count,
            gone = ?gone,
            "repair scan planned"
        );
        {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            st.backlog = found + stuck;
            st.blocks_scanned = scanned;
            st.blocks_short = short;
            st.blocks_unreadable = unreadable_count;
            st.unreadable_files = files;
            st.down = down;
            st.last_progress_ms = self.meta.now_ms();
        }
        self.publish();
        // A sliding window: a new task starts as soon as one finishes (their
        // placement updates share Raft entries). No task starts once the
        // node stops or is no longer the leader; those running finish.
        let mut queue = all.into_iter();
        let mut running = futures::stream::FuturesUnordered::new();
        let mut since_publish = 0usize;
        loop {
            while running.len() < PARALLEL_REPAIRS && !stop.is_cancelled() && self.meta.is_leader()
            {
                match queue.next() {
                    Some(t) => running.push(self.execute(t)),
                    None => break,
                }
            }
            let Some(r) = running.next().await else {
                break;
            };
            {
                let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
                st.last_progress_ms = self.meta.now_ms();
                match r {
                    Ok(true) => {
                        st.backlog = st.backlog.saturating_sub(1);
                        st.moved_total += 1;
                    }
                    Ok(false) => {
                        st.backlog = st.backlog.saturating_sub(1);
                        st.repaired_total += 1;
                    }
                    Err(e) => tracing::warn!(error = %e, "repair task failed; retried next scan"),
                }
            }
            since_publish += 1;
            if since_publish >= PARALLEL_REPAIRS {
                since_publish = 0;
                self.publish();
            }
        }
        self.publish();
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.scans_completed += 1;
        st.layout_version = layout_version;
        st.last_progress_ms = self.meta.now_ms();
        Ok(())
    }

    /// Carries out one task; `Ok(true)` for a move, `Ok(false)` for a rebuild.
    async fn execute(&self, t: Task) -> Result<bool, String> {
        let stored = &t.entry.record.stored;
        let meta = BlockStore::shard_meta(&t.entry.block, stored, t.index);
        let copied = match (t.copy, t.from) {
            (true, Some(from)) => self.blocks.get_shard(from, &meta).await,
            _ => None,
        };
        let payload = match copied {
            Some(p) => p,
            None => self
                .blocks
                .rebuild_shard(&t.entry.block, stored, t.index)
                .await
                .map_err(|e| e.to_string())?
                .into(),
        };
        self.blocks
            .put_shard(t.to, &meta, &payload)
            .await
            .map_err(|e| e.to_string())?;
        let out = self
            .meta
            .write(Command::UpdatePlacement {
                changes: vec![PlacementChange {
                    user: t.entry.user,
                    block: t.entry.block,
                    index: t.index as u8,
                    from: t.from,
                    to: t.to,
                }],
            })
            .await
            .map_err(|e| e.to_string())?;
        if out != raft_meta::Output::Placed(1) {
            return Err("placement changed meanwhile".into());
        }
        if let (true, Some(from)) = (t.copy, t.from) {
            // The old copy goes only after the new placement is committed.
            if let Some(net) = &self.net {
                let req = NetRequest::DeleteShard {
                    block: t.entry.block,
                    index: t.index as u8,
                };
                let _ = net.call(from, req, Duration::from_secs(10)).await;
            }
        }
        tracing::debug!(block = %t.entry.block, shard = t.index, from = ?t.from, to = %t.to, moved = t.copy, "shard placed");
        Ok(t.copy)
    }

    /// The scrubber loop: a census of the local shards every scan interval
    /// (a replaced disk is noticed at once), and a re-read of all of them
    /// at the scrub rate once every `scrub_every`.
    pub async fn run_scrubber(self: Arc<Self>, stop: CancellationToken) {
        let me = self.blocks.node_id();
        let mut reread_due = Instant::now();
        loop {
            let reread = Instant::now() >= reread_due;
            if reread {
                reread_due = Instant::now() + self.config.scrub_every;
            }
            if let Err(e) = self.scrub_pass(me, reread, &stop).await {
                tracing::warn!(error = %e, "scrub pass failed");
            }
            self.publish();
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.scan_interval) => {}
            }
        }
    }

    /// Every shard index this node holds, as of the local state machine.
    fn my_shards(&self, me: NodeId) -> Result<Vec<(BlockEntry, usize)>, raft_meta::MetaError> {
        let reader = self.meta.local();
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = reader.blocks_after(after.as_deref(), PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for e in page {
                for (i, n) in e.record.stored.nodes.iter().enumerate() {
                    if *n == Some(me) {
                        out.push((e.clone(), i));
                    }
                }
            }
        }
        Ok(out)
    }

    async fn rebuild_local(&self, entry: &BlockEntry, index: usize) -> bool {
        let stored = &entry.record.stored;
        match self.blocks.rebuild_shard(&entry.block, stored, index).await {
            Ok(payload) => {
                let meta = BlockStore::shard_meta(&entry.block, stored, index);
                match self
                    .blocks
                    .put_shard(self.blocks.node_id(), &meta, &payload)
                    .await
                {
                    Ok(()) => {
                        self.rebuilt.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(e) => {
                        tracing::warn!(block = %entry.block, shard = index, error = %e, "scrub: write failed");
                        false
                    }
                }
            }
            Err(e) => {
                tracing::warn!(block = %entry.block, shard = index, error = %e, "scrub: cannot rebuild yet");
                false
            }
        }
    }

    async fn scrub_pass(
        &self,
        me: NodeId,
        reread: bool,
        stop: &CancellationToken,
    ) -> Result<(), raft_meta::MetaError> {
        let mine = self.my_shards(me)?;
        // Census first: a replaced disk shows up at once, and is fixed first.
        let local = self.blocks.local().clone();
        let census: Vec<(BlockEntry, usize)> = mine.clone();
        let missing: Vec<(BlockEntry, usize)> = self
            .blocks
            .offload()
            .run(move || {
                census
                    .into_iter()
                    .filter(|(e, i)| !local.exists(&e.block, *i as u8))
                    .collect()
            })
            .await
            .unwrap_or_default();
        self.local_missing
            .store(missing.len() as u64, Ordering::Relaxed);
        self.publish();
        let mut queue = missing.iter();
        let mut running = futures::stream::FuturesUnordered::new();
        let mut since_publish = 0usize;
        loop {
            while running.len() < PARALLEL_REPAIRS && !stop.is_cancelled() {
                match queue.next() {
                    Some((e, i)) => running.push(self.rebuild_local(e, *i)),
                    None => break,
                }
            }
            let Some(ok) = running.next().await else {
                break;
            };
            if ok {
                let _ =
                    self.local_missing
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                            Some(v.saturating_sub(1))
                        });
            }
            since_publish += 1;
            if since_publish >= PARALLEL_REPAIRS {
                since_publish = 0;
                self.publish();
            }
        }
        self.publish();
        if stop.is_cancelled() || !reread {
            return Ok(());
        }
        // Then re-read everything at the configured rate.
        let rate = self.config.scrub_bytes_per_s.max(1);
        let started = Instant::now();
        let mut bytes = 0u64;
        for (entry, index) in mine {
            if stop.is_cancelled() {
                return Ok(());
            }
            let meta = BlockStore::shard_meta(&entry.block, &entry.record.stored, index);
            let local = self.blocks.local().clone();
            let read = self
                .blocks
                .offload()
                .run(move || local.read_any_disk(&meta))
                .await;
            self.scrubbed.fetch_add(1, Ordering::Relaxed);
            match read {
                Ok(Ok(p)) => bytes += p.len() as u64,
                _ => {
                    tracing::warn!(block = %entry.block, shard = index, "scrub found a bad or missing shard");
                    self.rebuild_local(&entry, index).await;
                }
            }
            // Pace to the configured rate.
            let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        Ok(())
    }
}

/// What repair plans from: the placement view of one moment (layout,
/// desired sets, who is up) and the nodes gone past the grace time. Plans
/// depend on nothing else, so they are tested case by case.
pub(crate) struct Snapshot<'a> {
    view: &'a View,
    gone: &'a HashSet<NodeId>,
}

impl Snapshot<'_> {
    fn up(&self, n: NodeId) -> bool {
        n == self.view.me || self.view.healthy.contains(&n)
    }
}

fn safety(entry: &BlockEntry, snap: &Snapshot<'_>) -> Safety {
    let nodes = &entry.record.stored.nodes;
    Safety {
        live: nodes
            .iter()
            .flatten()
            .filter(|n| !snap.gone.contains(n) && snap.up(**n))
            .count(),
        total: nodes.len(),
        data: entry.record.stored.data_shards as usize,
    }
}

/// The tasks that bring one block back to its full, desired placement,
/// and how many of its shards cannot be placed now.
fn plan(entry: &BlockEntry, snap: &Snapshot<'_>) -> (Vec<Task>, u64) {
    let view = snap.view;
    let gone = snap.gone;
    let Some(layout) = &view.layout else {
        return (Vec::new(), 0);
    };
    let live = safety(entry, snap).live;
    let nodes = &entry.record.stored.nodes;
    let total = nodes.len();
    let desired = view.desired(&entry.block, total);
    let in_layout = |n: NodeId| {
        layout
            .member(n)
            .is_some_and(|m| m.state == MemberState::Active)
    };
    let mut holding: HashSet<NodeId> = nodes
        .iter()
        .copied()
        .flatten()
        .filter(|n| !gone.contains(n))
        .collect();
    let mut tasks = Vec::new();
    let mut stuck = 0;
    // Shards to rebuild: nowhere, or on a node that is gone.
    let mut lost: Vec<usize> = (0..total)
        .filter(|&i| match nodes[i] {
            None => true,
            Some(n) => gone.contains(&n) || layout.member(n).is_none(),
        })
        .collect();
    // Shards to move: on a live node outside the desired set, or a
    // second shard a live node took while the block's own node was
    // down; each goes when a desired node holding nothing of the block
    // is up.
    let mut movable: Vec<usize> = (0..total)
        .filter(|&i| {
            // Not lost, so on a node.
            let Some(n) = nodes[i] else { return false };
            !lost.contains(&i) && (!desired.contains(&n) || nodes[..i].contains(&nodes[i]))
        })
        .collect();
    let mut free: Vec<NodeId> = desired
        .iter()
        .copied()
        .filter(|n| !holding.contains(n))
        .collect();
    let pick = |holding: &mut HashSet<NodeId>, free: &mut Vec<NodeId>| -> Option<NodeId> {
        let pos = free.iter().position(|n| snap.up(*n))?;
        let n = free.remove(pos);
        holding.insert(n);
        Some(n)
    };
    for i in lost.drain(..) {
        // A desired node first; failing that, any healthy active node
        // that holds nothing of this block (better than no shard).
        let target = pick(&mut holding, &mut free).or_else(|| {
            let n = view
                .ranking(&entry.block)
                .into_iter()
                .find(|n| in_layout(*n) && snap.up(*n) && !holding.contains(n))?;
            holding.insert(n);
            Some(n)
        });
        match target {
            Some(to) => tasks.push(Task {
                entry: entry.clone(),
                index: i,
                from: nodes[i],
                to,
                copy: false,
                live,
            }),
            None => stuck += 1,
        }
    }
    for i in movable.drain(..) {
        match pick(&mut holding, &mut free) {
            Some(to) => tasks.push(Task {
                entry: entry.clone(),
                index: i,
                from: nodes[i],
                to,
                copy: true,
                live,
            }),
            // A second shard on one node waits for its home to come
            // up: until then the block has less spread than it should,
            // which the backlog says.
            None if nodes[..i].contains(&nodes[i]) => stuck += 1,
            None => {}
        }
    }
    (tasks, stuck)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::n;
    use cluster_config::{BlockId, ErasureProfile, UserId};
    use raft_meta::records::{BlockRecord, LayoutMember, LayoutRecord, StoredBlock};

    /// Five active nodes (`removed` among them marked removed), 2+1.
    fn view(healthy: &[u64], removed: &[u64]) -> View {
        View {
            me: n(1),
            layout: Some(LayoutRecord {
                version: 2,
                members: (1..=5)
                    .map(|id| LayoutMember {
                        id: n(id),
                        peer_id: String::new(),
                        p2p_addr: String::new(),
                        api_url: String::new(),
                        zone: None,
                        state: if removed.contains(&id) {
                            MemberState::Removed
                        } else {
                            MemberState::Active
                        },
                    })
                    .collect(),
                data_shards: 2,
                parity_shards: 1,
            }),
            profile: ErasureProfile { data: 2, parity: 1 },
            healthy: healthy.iter().copied().map(n).collect(),
            disks: HashMap::new(),
            min_write: None,
        }
    }

    /// A block with every shard on a node.
    fn entry(block: BlockId, nodes: Vec<NodeId>) -> BlockEntry {
        entry_on(block, nodes.into_iter().map(Some).collect())
    }

    fn entry_on(block: BlockId, nodes: Vec<Option<NodeId>>) -> BlockEntry {
        BlockEntry {
            key: Vec::new(),
            user: UserId([1; 16]),
            block,
            record: BlockRecord {
                refs: 1,
                plain_len: 100,
                stored: StoredBlock {
                    sealed_len: 120,
                    data_shards: 2,
                    parity_shards: 1,
                    key_version: 1,
                    layout: 2,
                    nodes,
                },
                created_ms: 0,
            },
        }
    }

    fn block(i: u32) -> BlockId {
        BlockId(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    fn v_me() -> NodeId {
        view(&[], &[]).me
    }

    /// A block placed where the view wants it, all up: nothing to do.
    #[test]
    fn a_block_at_home_needs_nothing() {
        let v = view(&[1, 2, 3, 4, 5], &[]);
        let gone = HashSet::new();
        let snap = Snapshot {
            view: &v,
            gone: &gone,
        };
        for i in 0..50 {
            let b = block(i);
            let e = entry(b, v.desired(&b, 3));
            let (tasks, stuck) = plan(&e, &snap);
            assert!(tasks.is_empty() && stuck == 0, "{tasks:?}");
            let s = safety(&e, &snap);
            assert_eq!((s.live, s.total, s.data), (3, 3, 2));
        }
    }

    /// A shard never written (on no node) or on a gone node is rebuilt on an
    /// up node that holds nothing of the block; a node that is only down
    /// (not gone) is waited for.
    #[test]
    fn lost_shards_are_rebuilt_on_up_nodes_and_down_ones_are_waited_for() {
        for i in 0..50 {
            let b = block(i);
            let all = view(&[1, 2, 3, 4, 5], &[]);
            let home = all.desired(&b, 3);
            let victim = home[1];
            if victim == v_me() {
                continue; // the planning node is always up to itself
            }
            let up: Vec<u64> = (1..=5).filter(|i| n(*i) != victim).collect();
            let v = view(&up, &[]);
            // Down, not gone: the shard stays, the block counts as short.
            let none = HashSet::new();
            let snap = Snapshot {
                view: &v,
                gone: &none,
            };
            let e = entry(b, home.clone());
            let (tasks, _) = plan(&e, &snap);
            assert!(tasks.is_empty(), "{tasks:?}");
            assert_eq!(safety(&e, &snap).live, 2);
            // Gone: rebuilt elsewhere, from the others, once.
            let gone = HashSet::from([victim]);
            let snap = Snapshot {
                view: &v,
                gone: &gone,
            };
            let (tasks, stuck) = plan(&e, &snap);
            assert_eq!((tasks.len(), stuck), (1, 0), "{tasks:?}");
            let t = &tasks[0];
            assert_eq!(
                (t.index, t.from, t.copy, t.live),
                (1, Some(victim), false, 2)
            );
            assert!(v.healthy.contains(&t.to) && !home.contains(&t.to), "{t:?}");
            // Never written: the same.
            let mut nodes: Vec<_> = home.iter().copied().map(Some).collect();
            nodes[2] = None;
            let (tasks, _) = plan(&entry_on(b, nodes), &snap);
            assert!(tasks.iter().any(|t| t.index == 2 && !t.copy), "{tasks:?}");
        }
    }

    /// A second shard a node took while the block's own node was down
    /// goes home (a copy, not a rebuild) once that node is up, and waits
    /// (counted as stuck) while it is not.
    #[test]
    fn a_doubled_shard_moves_home_when_its_node_is_up() {
        for i in 0..50 {
            let b = block(i);
            let v = view(&[1, 2, 3, 4, 5], &[]);
            let home = v.desired(&b, 3);
            if home[2] == v_me() {
                continue; // the planning node is always up to itself
            }
            let mut nodes = home.clone();
            nodes[2] = nodes[0];
            let e = entry(b, nodes.clone());
            let gone = HashSet::new();
            let snap = Snapshot {
                view: &v,
                gone: &gone,
            };
            let (tasks, stuck) = plan(&e, &snap);
            assert_eq!((tasks.len(), stuck), (1, 0), "{tasks:?}");
            let t = &tasks[0];
            assert_eq!(
                (t.index, t.from, t.to, t.copy),
                (2, Some(home[0]), home[2], true)
            );
            // Its home down: stuck, nothing planned.
            let up: Vec<u64> = (1..=5).filter(|i| n(*i) != home[2]).collect();
            let v = view(&up, &[]);
            let snap = Snapshot {
                view: &v,
                gone: &gone,
            };
            let (tasks, stuck) = plan(&e, &snap);
            assert!(tasks.iter().all(|t| t.index != 2), "{tasks:?}");
            assert_eq!(stuck, 1);
        }
    }

    /// A node removed from the layout: its shards are rebuilt elsewhere
    /// even while it still answers.
    #[test]
    fn shards_on_a_removed_node_are_placed_again() {
        let mut moved = 0;
        for i in 0..50 {
            let b = block(i);
            let before = view(&[1, 2, 3, 4, 5], &[]);
            let home = before.desired(&b, 3);
            if !home.contains(&n(5)) {
                continue;
            }
            let v = view(&[1, 2, 3, 4, 5], &[5]);
            let gone = HashSet::from([n(5)]);
            let snap = Snapshot {
                view: &v,
                gone: &gone,
            };
            let (tasks, _) = plan(&entry(b, home.clone()), &snap);
            let idx = home.iter().position(|h| *h == n(5)).unwrap();
            assert!(
                tasks
                    .iter()
                    .any(|t| t.index == idx && t.from == Some(n(5)) && t.to != n(5)),
                "{tasks:?}"
            );
            assert!(tasks.iter().all(|t| t.to != n(5)));
            moved += 1;
        }
        assert!(moved > 10);
    }
}
