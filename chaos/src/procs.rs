//! A cluster of real `strata serve` processes, one per node on its own
//! 127.0.0.x address, written by `strata init-cluster`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use strata_client::Client;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::ChaosError;

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestNode {
    pub id: u64,
    pub config: PathBuf,
    pub api_url: String,
    pub p2p_addr: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestAdmin {
    pub username: String,
    pub password: String,
}

/// `cluster.json` as `strata init-cluster` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub nodes: Vec<ManifestNode>,
    pub ca_cert: PathBuf,
    pub admin: ManifestAdmin,
}

/// Where a node is in the harness's eyes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Up,
    Paused,
    Down,
}

struct Proc {
    child: Child,
    paused: bool,
}

pub struct ProcCluster {
    binary: PathBuf,
    out: PathBuf,
    /// The node whose second shard disk is a small file system of its
    /// own (for `disk_full`), and that file system's mount point.
    small: Option<(u64, PathBuf)>,
    /// libfaketime, when node clocks can be moved (`clock_jump`).
    faketime: Option<PathBuf>,
    /// The slow-disk shim (`preload/slowdisk.c`, built for the run), when
    /// node fsyncs can be slowed (`slow_disk`).
    slowdisk: Option<PathBuf>,
    pub manifest: Manifest,
    ca: Vec<u8>,
    procs: BTreeMap<u64, Proc>,
}

/// A port range whose two ports per node are free on each node's address.
fn free_base_port(nodes: u64, seed: u64) -> Result<u16, ChaosError> {
    for attempt in 0..200u64 {
        let pick = (seed.wrapping_mul(31).wrapping_add(attempt * 7919)) % 10_000;
        let base = 30_000 + (pick as u16) * 2;
        let ok = (1..=nodes).all(|i| {
            let api = base as u64 + 2 * (i - 1);
            [api, api + 1]
                .iter()
                .all(|p| std::net::TcpListener::bind(format!("127.0.0.{i}:{p}")).is_ok())
        });
        if ok {
            return Ok(base);
        }
    }
    Err(ChaosError::Setup("no free port range on 127.0.0.x".into()))
}

/// What the fault kinds of a run need from the cluster's set-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// A small file system for one node's second disk (`disk_full`).
    pub small_disk: bool,
    /// Node clocks that can be moved (`clock_jump`).
    pub clocks: bool,
    /// Node fsyncs that can be slowed (`slow_disk`).
    pub slow_disks: bool,
}

/// The slow-disk shim's source; the harness builds it with the system's C
/// compiler (`$CC`, else `cc`) into the run's folder.
const SLOWDISK_C: &str = include_str!("../preload/slowdisk.c");

impl ProcCluster {
    /// Writes a cluster of `nodes` with `strata init-cluster` under `dir`
    /// (fast repair scans and scrubbing, as a test cluster wants) and
    /// starts nothing.
    pub async fn generate(
        binary: &Path,
        dir: &Path,
        nodes: u64,
        ec: &str,
        seed: u64,
        needs: Needs,
    ) -> Result<Self, ChaosError> {
        let Needs {
            small_disk,
            clocks,
            slow_disks,
        } = needs;
        let out = dir.join("cluster");
        let base = free_base_port(nodes, seed)?;
        let status = Command::new(binary)
            .args(["init-cluster", "--nodes", &nodes.to_string(), "--ec", ec])
            .args(["--host", "127.0.0.x", "--base-port", &base.to_string()])
            .args(["--repair-grace", "5s"])
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| ChaosError::Setup(format!("running init-cluster: {e}")))?;
        if !status.status.success() {
            return Err(ChaosError::Setup(format!(
                "init-cluster failed: {}",
                String::from_utf8_lossy(&status.stderr).trim()
            )));
        }
        for i in 1..=nodes {
            let p = out.join(format!("node-{i}.toml"));
            let text = std::fs::read_to_string(&p).map_err(|e| io_setup(&p, e))?;
            let text = text.replace(
                "[repair]\ngrace = \"5s\"\n",
                "[repair]\ngrace = \"5s\"\nscan_interval = \"1s\"\nscrub_rate = \"256MiB\"\nscrub_every = \"2s\"\n",
            );
            std::fs::write(&p, text).map_err(|e| io_setup(&p, e))?;
        }
        // The last node's second disk on a small file system of its own.
        let mut small = None;
        if small_disk {
            let mount = out.join(format!("node-{nodes}/small"));
            std::fs::create_dir_all(&mount).map_err(|e| io_setup(&mount, e))?;
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1536m,mode=0700", "tmpfs"])
                .arg(&mount)
                .status()
                .await
                .is_ok_and(|s| s.success());
            if ok {
                let p = out.join(format!("node-{nodes}.toml"));
                let text = std::fs::read_to_string(&p).map_err(|e| io_setup(&p, e))?;
                let from = format!("\"node-{nodes}/disk-1\"");
                let to = format!("\"node-{nodes}/small/disk-1\"");
                std::fs::write(&p, text.replace(&from, &to)).map_err(|e| io_setup(&p, e))?;
                small = Some((nodes, mount));
            } else {
                tracing::warn!("no small file system for disk_full (mount failed)");
            }
        }
        let faketime = clocks.then(faketime_library).flatten();
        if let Some(lib) = &faketime {
            tracing::debug!(lib = %lib.display(), "node clocks can jump");
            for i in 1..=nodes {
                let f = out.join(format!("node-{i}.faketime"));
                std::fs::write(&f, "+0\n").map_err(|e| io_setup(&f, e))?;
            }
        }
        let slowdisk = if slow_disks {
            build_slowdisk(&out).await
        } else {
            None
        };
        if slowdisk.is_some() {
            for i in 1..=nodes {
                let f = out.join(format!("node-{i}.slowdisk"));
                std::fs::write(&f, "0\n").map_err(|e| io_setup(&f, e))?;
            }
        }
        let path = out.join("cluster.json");
        let bytes = std::fs::read(&path).map_err(|e| io_setup(&path, e))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ChaosError::Setup(format!("cluster.json: {e}")))?;
        let ca = std::fs::read(&manifest.ca_cert).map_err(|e| io_setup(&manifest.ca_cert, e))?;
        Ok(Self {
            binary: binary.to_path_buf(),
            out,
            small,
            faketime,
            slowdisk,
            manifest,
            ca,
            procs: BTreeMap::new(),
        })
    }

    pub fn ids(&self) -> Vec<u64> {
        self.manifest.nodes.iter().map(|n| n.id).collect()
    }

    fn node(&self, id: u64) -> Result<&ManifestNode, ChaosError> {
        self.manifest
            .nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| ChaosError::Setup(format!("no node {id}")))
    }

    /// The shard directories of node `id`.
    pub fn shard_dirs(&self, id: u64) -> Vec<PathBuf> {
        let home = self.out.join(format!("node-{id}"));
        let mut dirs: Vec<PathBuf> = [home.clone(), home.join("small")]
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("disk-"))
            })
            .collect();
        dirs.sort();
        dirs
    }

    /// The node with a small disk, and where that file system is mounted.
    pub fn small_disk(&self) -> Option<&(u64, PathBuf)> {
        self.small.as_ref()
    }

    /// Whether node clocks can be moved.
    pub fn clocks(&self) -> bool {
        self.faketime.is_some()
    }

    /// Whether node fsyncs can be slowed.
    pub fn slow_disks(&self) -> bool {
        self.slowdisk.is_some()
    }

    /// Makes every fsync of node `id` wait `ms` milliseconds (0: none);
    /// the node's next fsync sees it.
    pub fn set_disk_delay(&self, id: u64, ms: u64) -> std::io::Result<()> {
        let f = self.out.join(format!("node-{id}.slowdisk"));
        std::fs::write(f, format!("{ms}\n"))
    }

    /// Sets node `id`'s wall clock `offset_s` seconds off (monotonic time
    /// is left alone, as a stepped clock does); the node sees it within
    /// a second.
    pub fn set_clock(&self, id: u64, offset_s: i64) -> std::io::Result<()> {
        let f = self.out.join(format!("node-{id}.faketime"));
        std::fs::write(f, format!("{offset_s:+}\n"))
    }

    /// Unmounts the small file system (the mount namespace goes with the
    /// process anyway).
    pub async fn release(&mut self) {
        if let Some((_, mount)) = self.small.take() {
            let _ = Command::new("umount").arg(&mount).status().await;
        }
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.out.join(format!("node-{id}.log"))
    }

    pub fn client(&self, id: u64) -> Result<Client, ChaosError> {
        let url = &self.node(id)?.api_url;
        Client::new(url, Some(&self.ca)).map_err(|e| ChaosError::Setup(format!("client: {e}")))
    }

    pub fn url(&self, id: u64) -> Option<String> {
        self.node(id).ok().map(|n| n.api_url.clone())
    }

    pub fn state(&self, id: u64) -> NodeState {
        match self.procs.get(&id) {
            None => NodeState::Down,
            Some(p) if p.paused => NodeState::Paused,
            Some(_) => NodeState::Up,
        }
    }

    /// Starts node `id` and waits until it serves (at most 120 s). Its
    /// output goes to `node-<id>.log`, appended across restarts.
    pub async fn launch(&mut self, id: u64) -> Result<(), ChaosError> {
        if self.procs.contains_key(&id) {
            return Ok(());
        }
        let config = self.node(id)?.config.clone();
        let log_path = self.log_path(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_setup(&log_path, e))?;
        let mut cmd = Command::new(&self.binary);
        let preload: Vec<&Path> = [&self.faketime, &self.slowdisk]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        if !preload.is_empty() {
            let list: Vec<String> = preload.iter().map(|p| p.display().to_string()).collect();
            cmd.env("LD_PRELOAD", list.join(":"));
        }
        if self.slowdisk.is_some() {
            cmd.env(
                "STRATA_SLOW_DISK_FILE",
                self.out.join(format!("node-{id}.slowdisk")),
            );
        }
        if self.faketime.is_some() {
            cmd.env(
                "FAKETIME_TIMESTAMP_FILE",
                self.out.join(format!("node-{id}.faketime")),
            )
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn,openraft=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ChaosError::Setup(format!("starting node {id}: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ChaosError::Setup("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("serving") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(ChaosError::Setup(format!(
                "node {id} did not start (see {})",
                log_path.display()
            )));
        }
        // Keep reading so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.procs.insert(
            id,
            Proc {
                child,
                paused: false,
            },
        );
        Ok(())
    }

    /// SIGKILL, by the child's own process id.
    pub async fn kill(&mut self, id: u64) {
        if let Some(mut p) = self.procs.remove(&id) {
            let pid = p.child.id();
            let _ = p.child.start_kill();
            let _ = p.child.wait().await;
            remove_faketime_segments(pid);
        }
    }

    fn signal(&self, id: u64, sig: libc::c_int) -> bool {
        let Some(pid) = self.procs.get(&id).and_then(|p| p.child.id()) else {
            return false;
        };
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill(2) with a child's own pid and a valid signal number
        // has no memory effects.
        unsafe { libc::kill(pid, sig) == 0 }
    }

    /// SIGSTOP: the sockets stay open and nothing answers.
    pub fn pause(&mut self, id: u64) -> bool {
        let ok = self.signal(id, libc::SIGSTOP);
        if let Some(p) = self.procs.get_mut(&id) {
            p.paused |= ok;
        }
        ok
    }

    /// SIGCONT after `pause`.
    pub fn resume(&mut self, id: u64) -> bool {
        let ok = self.signal(id, libc::SIGCONT);
        if let Some(p) = self.procs.get_mut(&id) {
            p.paused &= !ok;
        }
        ok
    }

    /// Stops every node: resumed if paused, then SIGTERM, then SIGKILL
    /// after 20 s.
    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in &ids {
            self.resume(*id);
            self.signal(*id, libc::SIGTERM);
        }
        for id in ids {
            if let Some(mut p) = self.procs.remove(&id) {
                let pid = p.child.id();
                if tokio::time::timeout(Duration::from_secs(20), p.child.wait())
                    .await
                    .is_err()
                {
                    let _ = p.child.start_kill();
                    let _ = p.child.wait().await;
                }
                remove_faketime_segments(pid);
            }
        }
    }
}

/// libfaketime gives each process a shared-memory segment and a semaphore
/// in /dev/shm, named by its pid; a SIGKILLed node never removes them, so
/// the harness does once the node is reaped (missing ones are fine).
fn remove_faketime_segments(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::fs::remove_file(format!("/dev/shm/faketime_shm_{pid}"));
        let _ = std::fs::remove_file(format!("/dev/shm/sem.faketime_sem_{pid}"));
    }
}

/// libfaketime's multi-threaded build, where Debian puts it.
fn faketime_library() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Builds the slow-disk shim into `out`; `None` (and `slow_disk` is not
/// injected) without a working C compiler.
async fn build_slowdisk(out: &Path) -> Option<PathBuf> {
    let src = out.join("slowdisk.c");
    let lib = out.join("slowdisk.so");
    std::fs::write(&src, SLOWDISK_C).ok()?;
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let built = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    match built {
        Ok(o) if o.status.success() => Some(lib),
        Ok(o) => {
            tracing::warn!(
                error = %String::from_utf8_lossy(&o.stderr).trim(),
                "no slow_disk: building the shim failed"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "no slow_disk: no C compiler");
            None
        }
    }
}

fn io_setup(path: &Path, e: std::io::Error) -> ChaosError {
    ChaosError::Setup(format!("{}: {e}", path.display()))
}
