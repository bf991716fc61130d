//! Carries out the fault schedule against the process cluster.
//!
//! Each fault runs as its own task: inject, hold, heal. Two budgets keep
//! the run meaningful: at most `min(M, (n-1)/2)` nodes are out of service
//! at once (more would only make everything unavailable), and shards are
//! destroyed on at most M nodes between two moments the cluster reported
//! every shard in place (more could lose data any erasure code would
//! lose). A fault that would break a budget is skipped and counted.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata_client::Client;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinSet;

use crate::net::NetFaults;
use crate::procs::{NodeState, ProcCluster};
use crate::schedule::{FaultKind, Planned};
use crate::workload::Shared;

#[derive(Default)]
struct Budget {
    /// Nodes under a fault that takes them out of service.
    out: HashSet<u64>,
    /// Nodes whose shards were damaged since the cluster last reported
    /// every shard in place.
    damaged: HashSet<u64>,
    /// Destroying faults under way: a census taken meanwhile may not yet
    /// see their damage, so it cannot clear `damaged`.
    damaging: usize,
    /// Nodes with flipped bits: a census counts shards present, and a
    /// corrupt shard is present until the node's scrubber reads it. Each
    /// holds `(shards scrubbed when the bits flipped, shards to scrub
    /// since)`; its damage counts until the node has scrubbed that many
    /// (twice as many as it held: past one full pass).
    unscrubbed: BTreeMap<u64, (u64, u64)>,
}

pub struct Injector {
    pub cluster: Arc<AsyncMutex<ProcCluster>>,
    admin: Client,
    urls: BTreeMap<u64, String>,
    parity: usize,
    nodes: u64,
    budget: Mutex<Budget>,
    pub injected: Mutex<BTreeMap<String, u64>>,
    pub skipped: Mutex<BTreeMap<String, u64>>,
    net: Option<NetFaults>,
    shared: Arc<Shared>,
}

impl Injector {
    pub fn new(
        cluster: Arc<AsyncMutex<ProcCluster>>,
        admin: Client,
        urls: BTreeMap<u64, String>,
        parity: usize,
        net: Option<NetFaults>,
        shared: Arc<Shared>,
    ) -> Self {
        let nodes = urls.len() as u64;
        Self {
            cluster,
            admin,
            urls,
            parity,
            nodes,
            budget: Mutex::new(Budget::default()),
            injected: Mutex::new(BTreeMap::new()),
            skipped: Mutex::new(BTreeMap::new()),
            net,
            shared,
        }
    }

    pub fn net(&self) -> Option<&NetFaults> {
        self.net.as_ref()
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(map: &Mutex<BTreeMap<String, u64>>, kind: FaultKind) {
        *map.lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind.name().to_string())
            .or_default() += 1;
    }

    fn max_out(&self) -> usize {
        self.parity
            .min(((self.nodes as usize).saturating_sub(1)) / 2)
            .max(1)
    }

    /// The admin session, through node `id`.
    fn admin_via(&self, id: u64) -> Option<Client> {
        self.urls.get(&id).map(|u| self.admin.with_base(u))
    }

    /// An admin API answer from the first live node that gives one
    /// within `limit`.
    async fn admin_get(&self, path: &str, limit: Duration) -> Option<serde_json::Value> {
        for id in self.urls.keys() {
            if self.cluster.lock().await.state(*id) != NodeState::Up {
                continue;
            }
            let Some(c) = self.admin_via(*id) else {
                continue;
            };
            let r = tokio::time::timeout(limit, async {
                let resp = c
                    .request(strata_client::Method::GET, path)
                    .send()
                    .await
                    .ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                resp.json::<serde_json::Value>().await.ok()
            })
            .await;
            if let Ok(Some(v)) = r {
                return Some(v);
            }
        }
        None
    }

    /// The node the live nodes say leads, if one answers.
    async fn leader(&self) -> Option<u64> {
        let v = self
            .admin_get("/api/v1/admin/cluster", Duration::from_secs(5))
            .await?;
        v["leader"].as_u64()
    }

    /// The cluster's shard census (`/admin/verify`), from a live node.
    pub async fn all_shards_in_place(&self) -> Option<serde_json::Value> {
        self.admin_get("/api/v1/admin/verify", Duration::from_secs(60))
            .await
    }

    /// Runs the schedule until `stop`, then waits for every fault to heal.
    pub async fn run(self: Arc<Self>, plan: Vec<Planned>, start: tokio::time::Instant) {
        let mut tasks = JoinSet::new();
        for p in plan {
            let at = start + Duration::from_millis(p.at_ms);
            loop {
                if self.shared.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let now = tokio::time::Instant::now();
                if now >= at {
                    break;
                }
                tokio::time::sleep((at - now).min(Duration::from_millis(200))).await;
            }
            if self.shared.stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let this = self.clone();
            tasks.spawn(async move { this.one(p).await });
            // Reap the finished ones as we go.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Takes `node` out of service in the budget, waiting (at most 10 s)
    /// for earlier faults to heal when the budget is spent.
    async fn reserve(&self, node: u64) -> bool {
        for _ in 0..50 {
            {
                let mut b = self.budget();
                if !b.out.contains(&node) && b.out.len() < self.max_out() {
                    b.out.insert(node);
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    async fn one(&self, p: Planned) {
        let mut node = p.node;
        if p.kind == FaultKind::KillLeader {
            // Right after a leader change nobody may know the leader yet.
            let mut found = None;
            for _ in 0..10 {
                found = self.leader().await;
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            match found {
                Some(l) => node = l,
                None => return Self::count(&self.skipped, p.kind),
            }
        }
        if p.kind.takes_a_node_down() && !self.reserve(node).await {
            return Self::count(&self.skipped, p.kind);
        }
        if p.kind.destroys_shards() && !self.may_damage(node).await {
            if p.kind.takes_a_node_down() {
                self.budget().out.remove(&node);
            }
            return Self::count(&self.skipped, p.kind);
        }
        let done = match p.kind {
            FaultKind::Kill | FaultKind::KillLeader => self.kill(node, p.hold_ms).await,
            FaultKind::Pause => self.pause(node, p.hold_ms).await,
            FaultKind::WipedDisk => self.wipe(node, p.salt, p.hold_ms).await,
            FaultKind::Bitrot => self.bitrot(node, p.salt).await,
            FaultKind::DiskFull => self.fill_disk(p.hold_ms).await,
            FaultKind::ClockJump => self.jump_clock(node, p.salt, p.hold_ms).await,
            FaultKind::SlowDisk => self.slow_disk(node, p.salt, p.hold_ms).await,
            FaultKind::Partition | FaultKind::Loss | FaultKind::Latency => match &self.net {
                Some(net) => net.apply(&p, self.nodes).await,
                None => false,
            },
        };
        if p.kind.takes_a_node_down() {
            self.budget().out.remove(&node);
        }
        if p.kind.destroys_shards() {
            let mut b = self.budget();
            b.damaging = b.damaging.saturating_sub(1);
        }
        if done {
            tracing::info!(step = p.step, kind = %p.kind, node, "fault injected and healed");
            Self::count(&self.injected, p.kind);
        } else {
            Self::count(&self.skipped, p.kind);
        }
    }

    /// Whether shards of `node` may be destroyed now; asks the cluster
    /// whether earlier damage has been repaired when the budget is spent.
    async fn may_damage(&self, node: u64) -> bool {
        {
            let mut b = self.budget();
            if b.damaged.contains(&node) || b.damaged.len() < self.parity {
                b.damaged.insert(node);
                b.damaging += 1;
                return true;
            }
            if b.damaging > 0 {
                // Earlier damage is still being done: no census can vouch
                // for it yet.
                return false;
            }
        }
        // Wait (at most about 20 s) for the cluster to report the
        // earlier damage repaired.
        let mut healed = false;
        for _ in 0..10 {
            healed = self.all_shards_in_place().await.is_some_and(|v| {
                v["shards_present"] == v["shards_expected"] && v["blocks_lost"] == 0
            }) && self.scrubbed_since_bitrot().await;
            if healed {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let mut b = self.budget();
        // Only a census with no destroying fault under way, before or
        // during it, clears the damage.
        if healed && b.damaging == 0 {
            b.damaged.clear();
            b.unscrubbed.clear();
            b.damaged.insert(node);
            b.damaging += 1;
            return true;
        }
        false
    }

    async fn kill(&self, node: u64, hold_ms: u64) -> bool {
        {
            let mut c = self.cluster.lock().await;
            if c.state(node) != NodeState::Up {
                return false;
            }
            c.kill(node).await;
        }
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        self.relaunch(node).await;
        true
    }

    async fn pause(&self, node: u64, hold_ms: u64) -> bool {
        if !self.cluster.lock().await.pause(node) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        self.cluster.lock().await.resume(node);
        true
    }

    async fn relaunch(&self, node: u64) {
        for attempt in 0..3 {
            let r = self.cluster.lock().await.launch(node).await;
            match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(node, attempt, error = %e, "restart failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        self.shared.violation(
            "nodes_restart",
            0,
            format!("node {node} did not start again after a fault"),
        );
    }

    /// Stops the node, empties one of its shard directories (a replaced
    /// disk), starts it again.
    async fn wipe(&self, node: u64, salt: u64, hold_ms: u64) -> bool {
        let dir = {
            let mut c = self.cluster.lock().await;
            if c.state(node) != NodeState::Up {
                return false;
            }
            let dirs = c.shard_dirs(node);
            if dirs.is_empty() {
                return false;
            }
            c.kill(node).await;
            dirs[(salt % dirs.len() as u64) as usize].clone()
        };
        if let Err(e) = empty_dir(&dir) {
            tracing::warn!(node, dir = %dir.display(), error = %e, "wiping failed");
        }
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        self.relaunch(node).await;
        true
    }

    /// Fills the small disk to the last byte, holds, frees it again.
    async fn fill_disk(&self, hold_ms: u64) -> bool {
        let Some((node, mount)) = self.cluster.lock().await.small_disk().cloned() else {
            return false;
        };
        let filler = mount.join("filler");
        let fill = filler.clone();
        let filled = tokio::task::spawn_blocking(move || fill_up(&fill)).await;
        match filled {
            Ok(Ok(bytes)) => {
                tracing::info!(node, bytes, "disk filled");
            }
            other => {
                tracing::warn!(node, result = ?other.map(|r| r.map_err(|e| e.to_string())), "filling the disk");
                let _ = std::fs::remove_file(&filler);
                return false;
            }
        }
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        let _ = std::fs::remove_file(&filler);
        true
    }

    /// Moves a node's wall clock 1 to 60 minutes forward or back, holds,
    /// sets it right.
    async fn jump_clock(&self, node: u64, salt: u64, hold_ms: u64) -> bool {
        let mut rng = ChaCha8Rng::seed_from_u64(salt);
        let minutes: i64 = rng.random_range(1..=60);
        let offset = if rng.random_bool(0.5) {
            minutes * 60
        } else {
            -minutes * 60
        };
        {
            let c = self.cluster.lock().await;
            if !c.clocks() || c.set_clock(node, offset).is_err() {
                return false;
            }
        }
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        let c = self.cluster.lock().await;
        if let Err(e) = c.set_clock(node, 0) {
            tracing::warn!(node, error = %e, "setting the clock right");
        }
        true
    }

    /// Makes every fsync of `node` wait 20–800 ms (its Raft log, its
    /// metadata store and its shard writes alike) for the hold.
    async fn slow_disk(&self, node: u64, salt: u64, hold_ms: u64) -> bool {
        let ms = ChaCha8Rng::seed_from_u64(salt).random_range(20..=800);
        {
            let c = self.cluster.lock().await;
            if !c.slow_disks() || c.set_disk_delay(node, ms).is_err() {
                return false;
            }
        }
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        let c = self.cluster.lock().await;
        if let Err(e) = c.set_disk_delay(node, 0) {
            tracing::warn!(node, error = %e, "making the disk fast again");
        }
        true
    }

    /// Flips a few bytes inside one of the node's larger shard files,
    /// without changing its length.
    /// Shards scrubbed so far by each node, as the cluster reports them.
    async fn scrubbed(&self) -> Option<BTreeMap<u64, u64>> {
        let v = self
            .admin_get("/api/v1/admin/cluster", Duration::from_secs(5))
            .await?;
        Some(
            v["members"]
                .as_array()?
                .iter()
                .filter_map(|m| Some((m["id"].as_u64()?, m["shards_scrubbed"].as_u64()?)))
                .collect(),
        )
    }

    /// Whether every node with flipped bits has scrubbed enough since to
    /// have read them (a restart starts its count again from zero).
    async fn scrubbed_since_bitrot(&self) -> bool {
        let due = self.budget().unscrubbed.clone();
        if due.is_empty() {
            return true;
        }
        let Some(now) = self.scrubbed().await else {
            return false;
        };
        due.iter().all(|(node, (start, needed))| {
            now.get(node).is_some_and(|&cur| {
                let done = if cur >= *start { cur - start } else { cur };
                done >= *needed
            })
        })
    }

    async fn bitrot(&self, node: u64, salt: u64) -> bool {
        // Before the flip: where the node's scrub count stands, and how
        // many shards it holds. Twice that is past one full pass even
        // with as many stray shards (moved away, not yet dropped) on its
        // disks.
        let start = self.scrubbed().await.and_then(|m| m.get(&node).copied());
        let expected = self
            .all_shards_in_place()
            .await
            .and_then(|v| v["per_node"][node.to_string()].as_u64())
            .map(|n| 2 * n);
        let (Some(start), Some(expected)) = (start, expected) else {
            return false;
        };
        let flipped = self.flip_bits(node, salt).await;
        if flipped {
            self.budget()
                .unscrubbed
                .entry(node)
                // A second flip counts from now: the stricter start.
                .and_modify(|e| *e = (start, e.1.max(expected)))
                .or_insert((start, expected.max(1)));
        }
        flipped
    }

    async fn flip_bits(&self, node: u64, salt: u64) -> bool {
        let dirs = self.cluster.lock().await.shard_dirs(node);
        let mut files = Vec::new();
        for d in &dirs {
            collect_files(d, &mut files);
        }
        files.retain(|(_, len)| *len >= 64 << 10);
        files.sort();
        if files.is_empty() {
            return false;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(salt);
        let (path, len) = files[rng.random_range(0..files.len())].clone();
        let flips = rng.random_range(1..=8);
        match flip(&path, len, flips, &mut rng) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(node, file = %path.display(), error = %e, "bit flip failed");
                false
            }
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.metadata() {
            Ok(m) if m.is_dir() => collect_files(&p, out),
            Ok(m) if m.is_file() => out.push((p, m.len())),
            _ => {}
        }
    }
}

/// Writes zeros to `path` until the file system is full; returns the
/// bytes written.
fn fill_up(path: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(total),
            Err(e) => return Err(e),
        }
    }
}

fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

fn flip(path: &Path, len: u64, flips: u32, rng: &mut ChaCha8Rng) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    for _ in 0..flips {
        let at = rng.random_range(0..len);
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut b)?;
        b[0] ^= 1 << rng.random_range(0..8);
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&b)?;
    }
    f.sync_all()
}
