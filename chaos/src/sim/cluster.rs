//! A simulated cluster: real `Node`s on one in-memory switch, each with its
//! own virtual clock, stopped, restarted and damaged by the fault task.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_config::generate::{init_cluster, ClusterSpec};
use cluster_config::{Clock, ClusterSecret, Config, ErasureProfile, NodeId};
use raft_meta::MetaOptions;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata_node::net::mem::MemNetwork;
use strata_node::{Network, Node, Seams};

use crate::ChaosError;

/// Wall time at virtual zero: 2026-01-01, so every seed sees the same dates.
const EPOCH_MS: u64 = 1_767_225_600_000;

/// A node's clock: virtual time since the runtime started, plus a skew the
/// `clock_jump` fault sets.
#[derive(Debug, Clone)]
pub struct SimClock {
    origin: tokio::time::Instant,
    skew_ms: Arc<AtomicI64>,
}

impl SimClock {
    fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            skew_ms: Arc::default(),
        }
    }

    pub fn set_skew(&self, ms: i64) {
        self.skew_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let t = EPOCH_MS as i64 + self.monotonic_ms() as i64 + self.skew_ms.load(Ordering::SeqCst);
        t.max(0) as u64
    }

    fn monotonic_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// The configs every seed starts from: `init-cluster` once per run (keys
/// and certificates are never used on the switch); each seed gets its own
/// directories and a cluster secret derived from its number, so block ids
/// and placement are the same every time the seed runs.
pub struct Template {
    dir: PathBuf,
    configs: Vec<Config>,
}

impl Template {
    pub fn new(dir: &Path, nodes: usize, ec: (u8, u8)) -> Result<Self, ChaosError> {
        let out = dir.join("template");
        let spec = ClusterSpec {
            nodes,
            spare: 0,
            out: out.clone(),
            erasure: Some(ErasureProfile {
                data: ec.0,
                parity: ec.1,
            }),
            host: "127.0.0.x".into(),
            base_port: 7000,
            disks_per_node: 1,
            repair_grace: Some("8s".into()),
            zones: Vec::new(),
            extra_toml: String::new(),
        };
        let manifest = init_cluster(&spec).map_err(|e| ChaosError::Setup(e.to_string()))?;
        let mut configs = Vec::new();
        for n in &manifest.nodes {
            let mut c =
                Config::load(Path::new(&n.config)).map_err(|e| ChaosError::Setup(e.to_string()))?;
            // No argon2 hash per seed: the drive is set up without an admin.
            c.admin_password_file = None;
            c.repair.health_timeout = Duration::from_secs(3);
            c.repair.scan_interval = Duration::from_secs(2);
            c.repair.scrub_every = Duration::from_secs(15);
            c.repair.scrub_bytes_per_s = 1 << 30;
            configs.push(c);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            configs,
        })
    }

    pub fn seed_dir(&self, seed: u64) -> PathBuf {
        self.dir.join(format!("seed-{seed}"))
    }

    fn config(&self, i: usize, dir: &Path) -> Config {
        let mut c = self.configs[i].clone();
        let node = dir.join(format!("node-{}", i + 1));
        c.storage.meta_dir = node.join("meta");
        c.storage.shard_dirs = vec![node.join("disk-1")];
        c.cluster_secret_file = dir.join("secret.key");
        c
    }
}

/// One simulated node: its config and clock, and the running node when up.
pub struct SimNode {
    pub id: NodeId,
    pub config: Config,
    pub clock: SimClock,
    /// Milliseconds each of its shard writes waits (`slow_disk`).
    pub disk_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    running: Mutex<Option<Arc<Node>>>,
}

impl SimNode {
    /// The running node, `None` while it is stopped.
    pub fn get(&self) -> Option<Arc<Node>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn disk(&self) -> &Path {
        &self.config.storage.shard_dirs[0]
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.config.storage.meta_dir.join("raft-log")
    }
}

pub struct SimCluster {
    pub switch: MemNetwork,
    pub nodes: Vec<SimNode>,
}

impl SimCluster {
    pub async fn start(t: &Template, dir: &Path, seed: u64) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut key = [0u8; 32];
        ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed5e_c2e7).fill_bytes(&mut key);
        ClusterSecret::from_bytes(key)
            .write_new(&dir.join("secret.key"))
            .map_err(|e| e.to_string())?;
        let switch = MemNetwork::new();
        let nodes: Vec<SimNode> = (0..t.configs.len())
            .map(|i| {
                let config = t.config(i, dir);
                SimNode {
                    id: config.node_id,
                    config,
                    clock: SimClock::new(),
                    disk_delay_ms: Arc::default(),
                    running: Mutex::new(None),
                }
            })
            .collect();
        let c = Arc::new(Self { switch, nodes });
        let starts = (0..c.nodes.len()).map(|i| c.start_node(i));
        for r in futures::future::join_all(starts).await {
            r?;
        }
        Ok(c)
    }

    /// Starts node `i` from its directories (a restart after a stop).
    pub async fn start_node(&self, i: usize) -> Result<(), String> {
        let n = &self.nodes[i];
        // Segments of 1 MiB: a seed's log is small, and a 64 MiB segment
        // allocated per node per start was most of a seed's time. Election
        // timeouts differ by node and are not drawn at random, so a seed's
        // elections go the same way each time it runs.
        let base = 600 + 150 * (n.id.get() % 8);
        let seams = Seams {
            network: Network::Memory(self.switch.clone()),
            meta: MetaOptions {
                wal_segment_bytes: 1 << 20,
                election_timeout_ms: (base, base + 1),
                wal_flush_inline: true,
            },
            inline_io: true,
            disk_delay_ms: Some(n.disk_delay_ms.clone()),
        };
        let node = Node::start_with(
            n.config.clone(),
            Arc::new(n.clock.clone()),
            format!("https://node-{}.sim", n.id),
            seams,
        )
        .await
        .map_err(|e| format!("node {} did not start: {e}", n.id))?;
        self.switch.set_down(n.id, false);
        *n.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(node));
        Ok(())
    }

    /// Stops node `i` as a crash looks from outside: first it goes silent,
    /// then its tasks stop. Nothing it had not made durable survives.
    pub async fn stop_node(&self, i: usize) {
        let n = &self.nodes[i];
        self.switch.set_down(n.id, true);
        let node = n.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(node) = node {
            node.shutdown().await;
        }
        self.switch.leave(n.id);
    }

    pub async fn stop_all(&self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i).await;
        }
    }

    /// The index of the node that leads, as the running nodes see it.
    pub fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.get().is_some_and(|node| node.meta().is_leader()))
    }
}
