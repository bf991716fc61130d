//! strata's chaos harness: a cluster of real `strata serve` processes, a
//! seeded workload from many clients that keeps a model of what the drive
//! acknowledged, a seeded fault schedule (process, disk and network
//! faults), and one oracle that checks every invariant after healing.
//!
//! `strata chaos run` calls [`run`]; the same seed gives the same
//! workload generator and the same fault schedule (what a fault hits at
//! run time, such as the current leader, is looked up when it fires).
//!
//! - `procs.rs` — the process cluster (start, SIGKILL, SIGSTOP/SIGCONT).
//! - `schedule.rs` — the fault schedule, a pure function of the seed.
//! - `inject.rs` — carries it out within the availability and damage
//!   budgets; `net.rs` does the network faults with traffic control in a
//!   private network namespace.
//! - `workload.rs`, `model.rs` — the workers and what they believe.
//! - `oracle.rs` — the checks after healing; `report.rs` — the report.

pub mod inject;
pub mod linear;
pub mod model;
pub mod net;
pub mod oracle;
pub mod procs;
pub mod report;
pub mod schedule;
pub mod sim;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strata_client::Client;
use tokio::sync::Mutex as AsyncMutex;

pub use net::enter_private_network;
pub use report::{Report, Violation};
pub use schedule::FaultKind;

use crate::inject::Injector;
use crate::procs::{NodeState, ProcCluster};
use crate::workload::{Shared, Worker};

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The cluster could not be set up; nothing was tested.
    #[error("setting up the cluster: {0}")]
    Setup(String),
    #[error("bad option: {0}")]
    Option(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `strata` binary the nodes run.
    pub binary: PathBuf,
    pub nodes: u64,
    pub data: u8,
    pub parity: u8,
    pub seconds: u64,
    pub seed: u64,
    /// Concurrent workers (two per user).
    pub clients: usize,
    /// The largest file a worker writes.
    pub max_file_bytes: u64,
    /// New content the workers may send in all (a disk budget: nothing is
    /// collected yet, so every byte stays, times (K+M)/K).
    pub max_written_bytes: u64,
    pub faults: Vec<FaultKind>,
    /// Whether network faults can be injected (the process is in a
    /// private network namespace and `tc` works).
    pub network: bool,
    /// Where the cluster lives; a temporary folder when `None`.
    pub dir: Option<PathBuf>,
    /// Keep the cluster's folder (logs, data) after the run.
    pub keep: bool,
}

impl Options {
    pub fn validate(&self) -> Result<(), ChaosError> {
        if !(3..=9).contains(&self.nodes) {
            return Err(ChaosError::Option("--nodes must be 3 to 9".into()));
        }
        if self.data == 0 || self.parity == 0 {
            return Err(ChaosError::Option("--ec needs K ≥ 1 and M ≥ 1".into()));
        }
        if (self.data + self.parity) as u64 > self.nodes {
            return Err(ChaosError::Option(format!(
                "{}+{} needs at least {} nodes",
                self.data,
                self.parity,
                self.data + self.parity
            )));
        }
        if self.seconds == 0 || self.seconds > 7 * 24 * 3600 {
            return Err(ChaosError::Option("--seconds must be 1 to 604800".into()));
        }
        if !(1..=1024).contains(&(self.max_written_bytes >> 30)) {
            return Err(ChaosError::Option(
                "--max-written-gib must be 1 to 1024".into(),
            ));
        }
        if !(1..=64).contains(&self.clients) {
            return Err(ChaosError::Option("--clients must be 1 to 64".into()));
        }
        if self.max_file_bytes > 256 << 20 {
            return Err(ChaosError::Option(
                "--max-file-mib must be at most 256".into(),
            ));
        }
        Ok(())
    }
}

/// Parses `K+M`.
pub fn parse_ec(s: &str) -> Result<(u8, u8), ChaosError> {
    let bad = || ChaosError::Option(format!("--ec expects K+M such as 2+1, not {s:?}"));
    let (k, m) = s.split_once('+').ok_or_else(bad)?;
    Ok((
        k.trim().parse().map_err(|_| bad())?,
        m.trim().parse().map_err(|_| bad())?,
    ))
}

fn p2p_port(addr: &str) -> Option<u16> {
    addr.rsplit('/').next()?.parse().ok()
}

async fn admin_session(cluster: &ProcCluster) -> Result<Client, ChaosError> {
    let m = &cluster.manifest.admin;
    let mut last = String::new();
    for _ in 0..150 {
        let mut c = cluster.client(1)?;
        match c.login(&m.username, &m.password, Some("chaos")).await {
            Ok(_) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(ChaosError::Setup(format!("admin login: {last}")))
}

async fn user_session(
    cluster: &ProcCluster,
    name: &str,
    device: &str,
) -> Result<Client, ChaosError> {
    let password = "chaos correct horse battery";
    let mut last = String::new();
    for _ in 0..150 {
        let c = cluster.client(1)?;
        match c.signup(name, password).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {}
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let mut c = cluster.client(1)?;
        match c.login(name, password, Some(device)).await {
            Ok(_) => return Ok(c),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(ChaosError::Setup(format!("signing up {name}: {last}")))
}

/// Each user shares its `/common` folder, as an editor, with the next
/// user, who accepts: the sharee's workers then write and read the
/// owner's shared files through `/Shared/<owner>/common`, and the
/// linearizability check sees both users' operations on one file.
async fn share_common_folders(workers: &mut [Worker]) -> Result<(), ChaosError> {
    let users = workers.iter().map(|w| w.user).max().map_or(0, |u| u + 1);
    if users < 2 {
        return Ok(());
    }
    let session = |u: usize, ws: &[Worker]| {
        ws.iter()
            .find(|w| w.user == u)
            .map(|w| w.client0())
            .ok_or_else(|| ChaosError::Setup(format!("no worker of user {u}")))
    };
    for owner in 0..users {
        let sharee = (owner + 1) % users;
        let (o, s) = (session(owner, workers)?, session(sharee, workers)?);
        let common = workload::COMMON;
        match o.create_folder(common).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {}
            Err(e) => return Err(ChaosError::Setup(format!("creating {common}: {e}"))),
        }
        let id = o
            .share(common, &format!("chaos{sharee}"), "editor")
            .await
            .map_err(|e| ChaosError::Setup(format!("sharing {common}: {e}")))?;
        s.accept_share(&id)
            .await
            .map_err(|e| ChaosError::Setup(format!("accepting a share: {e}")))?;
        // The mount is there for the sharee before the run starts.
        let mount = format!("/Shared/chaos{owner}{common}");
        s.metadata(&mount)
            .await
            .map_err(|e| ChaosError::Setup(format!("{mount} for chaos{sharee}: {e}")))?;
        for w in workers.iter_mut().filter(|w| w.user == sharee) {
            w.set_peer(owner, mount.clone());
        }
    }
    Ok(())
}

/// Runs the harness and returns its report. An `Err` means the cluster
/// could not be set up (nothing was tested); violations are in the report.
pub async fn run(opts: Options) -> Result<Report, ChaosError> {
    opts.validate()?;
    let temp;
    let dir = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| ChaosError::Setup(format!("{}: {e}", d.display())))?;
            d.clone()
        }
        None => {
            temp = std::env::temp_dir().join(format!(
                "strata-chaos-{}-{}",
                opts.seed,
                std::process::id()
            ));
            std::fs::create_dir_all(&temp)
                .map_err(|e| ChaosError::Setup(format!("{}: {e}", temp.display())))?;
            temp
        }
    };
    let ec = format!("{}+{}", opts.data, opts.parity);
    let mut report = Report {
        seed: opts.seed,
        nodes: opts.nodes,
        erasure: ec.clone(),
        seconds: opts.seconds,
        ..Default::default()
    };
    let cluster = ProcCluster::generate(
        &opts.binary,
        &dir,
        opts.nodes,
        &ec,
        opts.seed,
        procs::Needs {
            small_disk: opts.network && opts.faults.contains(&FaultKind::DiskFull),
            clocks: opts.faults.contains(&FaultKind::ClockJump),
            slow_disks: opts.faults.contains(&FaultKind::SlowDisk),
        },
    )
    .await?;
    let cluster = Arc::new(AsyncMutex::new(cluster));
    let result = drive(&opts, &cluster, &mut report).await;
    {
        let mut c = cluster.lock().await;
        c.stop_all().await;
        c.release().await;
    }
    let cluster_dir = dir.join("cluster");
    if opts.keep || !report.ok() {
        report.kept = Some(cluster_dir.display().to_string());
    } else if opts.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|()| report)
}

async fn drive(
    opts: &Options,
    shared_cluster: &Arc<AsyncMutex<ProcCluster>>,
    report: &mut Report,
) -> Result<(), ChaosError> {
    let mut guard = shared_cluster.lock().await;
    let cluster = &mut *guard;
    for id in cluster.ids() {
        cluster.launch(id).await?;
    }
    let admin = admin_session(cluster).await?;
    let urls: BTreeMap<u64, String> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| Some((id, cluster.url(id)?)))
        .collect();
    let shared = Arc::new(Shared::new(opts.seed, opts.max_written_bytes));
    // Two workers per user, each with a session on every node.
    let mut workers = Vec::new();
    for i in 0..opts.clients {
        let user = i / 2;
        let session = user_session(cluster, &format!("chaos{user}"), &format!("worker{i}")).await?;
        let clients: Vec<Client> = urls.values().map(|u| session.with_base(u)).collect();
        workers.push(Worker::new(
            user,
            i % 2,
            clients,
            opts.seed,
            opts.max_file_bytes,
            shared.clone(),
        ));
    }
    share_common_folders(&mut workers).await?;
    let net = if opts.network && opts.faults.iter().any(|k| k.is_network()) {
        let ports: BTreeMap<u64, u16> = cluster
            .manifest
            .nodes
            .iter()
            .filter_map(|n| Some((n.id, p2p_port(&n.p2p_addr)?)))
            .collect();
        match net::NetFaults::setup(ports).await {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("network faults off: {e}");
                None
            }
        }
    } else {
        None
    };
    report.network = net.is_some();
    let (small_disk, clocks, slow_disks) = (
        cluster.small_disk().is_some(),
        cluster.clocks(),
        cluster.slow_disks(),
    );
    let kinds: Vec<FaultKind> = opts
        .faults
        .iter()
        .copied()
        .filter(|k| match k {
            k if k.is_network() => net.is_some(),
            FaultKind::DiskFull => small_disk,
            FaultKind::ClockJump => clocks,
            FaultKind::SlowDisk => slow_disks,
            _ => true,
        })
        .collect();
    for k in opts.faults.iter().filter(|k| !kinds.contains(k)) {
        report.faults_skipped.insert(k.name().to_string(), 0);
    }
    let plan = schedule::schedule(opts.seed, opts.nodes, opts.seconds, &kinds);
    drop(guard);
    let injector = Arc::new(Injector::new(
        shared_cluster.clone(),
        admin.clone(),
        urls.clone(),
        opts.parity as usize,
        net,
        shared.clone(),
    ));
    eprintln!(
        "chaos: {} nodes, {}+{}, {} workers, {} s, seed {}, {} faults planned ({})",
        opts.nodes,
        opts.data,
        opts.parity,
        opts.clients,
        opts.seconds,
        opts.seed,
        plan.len(),
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let start = tokio::time::Instant::now();
    let faults = tokio::spawn(injector.clone().run(plan, start));
    let mut running = tokio::task::JoinSet::new();
    for w in workers {
        running.spawn(w.run());
    }
    // Progress while it runs.
    let end = start + Duration::from_secs(opts.seconds);
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5).min(end - tokio::time::Instant::now())).await;
        let injected: u64 = injector
            .injected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum();
        let down: Vec<String> = {
            let c = shared_cluster.lock().await;
            c.ids()
                .into_iter()
                .filter_map(|id| match c.state(id) {
                    NodeState::Up => None,
                    NodeState::Paused => Some(format!("{id} paused")),
                    NodeState::Down => Some(format!("{id} down")),
                })
                .collect()
        };
        eprintln!(
            "  t={:>4}s ops {} acknowledged {} unanswered {} faults {} violations {}{}",
            start.elapsed().as_secs(),
            shared.ops.load(Ordering::Relaxed),
            shared.acknowledged.load(Ordering::Relaxed),
            shared.unknown.load(Ordering::Relaxed),
            injected,
            shared
                .violations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
            if down.is_empty() {
                String::new()
            } else {
                format!(" [{}]", down.join(", "))
            }
        );
    }
    shared.stop.store(true, Ordering::Relaxed);
    eprintln!("chaos: stopping the workload and healing every fault");
    let _ = faults.await;
    let mut workers = Vec::new();
    while let Some(w) = running.join_next().await {
        match w {
            Ok(w) => workers.push(w),
            Err(e) => report.violations.push(Violation {
                invariant: "harness".into(),
                detail: format!("a worker failed: {e}"),
                seed: opts.seed,
                step: 0,
            }),
        }
    }
    workers.sort_by_key(|w| (w.user, w.folder.clone()));
    // Heal: every node up and running.
    {
        let mut c = shared_cluster.lock().await;
        for id in c.ids() {
            match c.state(id) {
                NodeState::Paused => {
                    c.resume(id);
                }
                NodeState::Down => {
                    if let Err(e) = c.launch(id).await {
                        report.violations.push(Violation {
                            invariant: "nodes_restart".into(),
                            detail: e.to_string(),
                            seed: opts.seed,
                            step: 0,
                        });
                    }
                }
                NodeState::Up => {}
            }
        }
    }
    if let Some(n) = injector.net() {
        n.teardown().await;
    }
    report.faults = injector
        .injected
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (k, v) in injector
        .skipped
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        *report.faults_skipped.entry(k.clone()).or_default() += v;
    }
    let nodes: Vec<(u64, Client)> = urls
        .iter()
        .map(|(id, u)| (*id, admin.with_base(u)))
        .collect();
    eprintln!(
        "chaos: checking (settling unanswered writes, repair, every file through every node)"
    );
    oracle::settled_after_healing(&mut workers, report).await;
    repair_restores_shards(&injector, report).await;
    oracle::acknowledged_readable(&workers, &nodes, report).await;
    oracle::history_matches_model(&workers, &nodes, report).await;
    oracle::listing_matches_model(&workers, &nodes, report).await;
    oracle::users_isolated(&workers, &nodes, report).await;
    oracle::change_feed_exactly_once(&workers, &nodes, report).await;
    oracle::linearizable(&shared, &workers, &nodes, report).await;
    report.ops = shared.ops.load(Ordering::Relaxed);
    report.acknowledged_ops = shared.acknowledged.load(Ordering::Relaxed);
    report.refused_ops = shared.refused.load(Ordering::Relaxed);
    report.unanswered_ops = shared.unknown.load(Ordering::Relaxed);
    report.reads_checked = shared.reads_checked.load(Ordering::Relaxed);
    report.reads_cut_short = shared.reads_cut_short.load(Ordering::Relaxed);
    report.check("acknowledged_readable", report.reads_checked);
    report.violations.extend(
        shared
            .violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..),
    );
    Ok(())
}

/// After healing, repair brings every block back to K+M shards in place,
/// and the cluster's own `verify` agrees (bounded: 4 minutes).
async fn repair_restores_shards(injector: &Injector, report: &mut Report) {
    report.check("repair_restores_shards", 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut last = serde_json::Value::Null;
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = injector.all_shards_in_place().await {
            if v["shards_present"] == v["shards_expected"]
                && v["blocks_lost"] == 0
                && v["shards_unplaced"] == 0
            {
                return;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    report.violations.push(Violation {
        invariant: "repair_restores_shards".into(),
        detail: format!("not every shard in place 4 minutes after healing: {last}"),
        seed: report.seed,
        step: 0,
    });
}
