//! The simulation: the real node — Raft metadata on its WAL and fjall,
//! the block store, placement, repair and scrub, the drive service — run
//! as N nodes in one process, plugged into the in-memory switch instead
//! of libp2p, on a one-thread tokio runtime whose clock is paused: virtual
//! time moves only when every task waits, so a minute of cluster life
//! (elections, heartbeats, repair grace) takes milliseconds. One seed
//! decides the workload, the faults, when they happen and what they hit.
//!
//! Faults are the process harness's, at the message and disk level:
//! a node stopped and restarted (its WAL sometimes left with a torn
//! record), the leader stopped, a node silent, partitions, message loss,
//! latency, flipped bytes in a shard, a shard disk emptied, a node's clock
//! jumped. The oracle's invariants carry the same names as the process
//! run's and read through each node's drive service.
//!
//! Every seed leaves a trace digest (every operation's outcome and every
//! fault, with its virtual time). `replay_every` runs some seeds twice and
//! compares the digests: a failing seed is replayed with `--seed S
//! --seeds 1`.

mod cluster;
mod faults;
mod oracle;
mod workload;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::report::Violation;
use crate::ChaosError;

pub use cluster::SimClock;

/// What `strata chaos sim` runs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub first_seed: u64,
    pub seeds: u64,
    pub nodes: usize,
    pub ec: (u8, u8),
    /// Drive operations per seed, over all workers.
    pub ops: usize,
    /// Seeds run at once (one OS thread and runtime each).
    pub threads: usize,
    /// Where the seeds' data directories go (a tmpfs is fastest).
    pub dir: Option<PathBuf>,
    /// Every `replay_every`-th seed runs twice and its traces are compared
    /// (0: never).
    pub replay_every: u64,
    /// Keep going after a seed fails (the default stops at the first).
    pub keep_going: bool,
    /// Print one line per seed.
    pub verbose: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            first_seed: 1,
            seeds: 100,
            nodes: 4,
            ec: (2, 1),
            ops: 40,
            threads: 2,
            dir: None,
            replay_every: 0,
            keep_going: false,
            verbose: false,
        }
    }
}

impl SimOptions {
    pub fn validate(&self) -> Result<(), ChaosError> {
        let (k, m) = self.ec;
        if !(3..=9).contains(&self.nodes) {
            return Err(ChaosError::Option(
                "the simulation runs 3 to 9 nodes".into(),
            ));
        }
        if k as usize + m as usize > self.nodes || k == 0 || m == 0 {
            return Err(ChaosError::Option(format!(
                "EC {k}+{m} needs K,M >= 1 and K+M <= nodes ({})",
                self.nodes
            )));
        }
        if self.seeds == 0 || self.seeds > 10_000_000 {
            return Err(ChaosError::Option("seeds: 1 to 10 000 000".into()));
        }
        if self.ops == 0 || self.ops > 10_000 {
            return Err(ChaosError::Option("ops: 1 to 10 000 per seed".into()));
        }
        if self.threads == 0 || self.threads > 64 {
            return Err(ChaosError::Option("threads: 1 to 64".into()));
        }
        Ok(())
    }
}

/// What one seed did.
#[derive(Debug, Clone, Default)]
pub struct SeedOutcome {
    pub seed: u64,
    pub ops: u64,
    pub acknowledged_ops: u64,
    pub unanswered_ops: u64,
    pub reads_checked: u64,
    pub faults: BTreeMap<String, u64>,
    pub checks: BTreeMap<String, u64>,
    pub violations: Vec<Violation>,
    /// blake3 of the seed's events, in order.
    pub trace: [u8; 32],
    pub virtual_ms: u64,
}

/// The simulation's report, for people and as JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimReport {
    pub first_seed: u64,
    pub seeds: u64,
    pub nodes: u64,
    pub erasure: String,
    pub ops_per_seed: u64,
    pub acknowledged_ops: u64,
    pub ops: u64,
    pub unanswered_ops: u64,
    pub reads_checked: u64,
    pub faults: BTreeMap<String, u64>,
    pub checks: BTreeMap<String, u64>,
    pub violations: Vec<Violation>,
    /// Seeds with at least one violation.
    pub failed_seeds: Vec<u64>,
    /// Seeds run twice, and how many of them gave the same trace.
    pub replays_checked: u64,
    pub replays_identical: u64,
    /// Seeds whose second run differed (the first 20).
    pub replays_differing: Vec<u64>,
    pub virtual_seconds: u64,
    pub elapsed_seconds: f64,
    pub seeds_per_minute: f64,
}

impl SimReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "simulation: seeds {}..{} ({} seeds), {} nodes, EC {}, {} ops a seed",
            self.first_seed,
            self.first_seed + self.seeds,
            self.seeds,
            self.nodes,
            self.erasure,
            self.ops_per_seed
        );
        let _ = writeln!(
            s,
            "  {:.1} s wall, {} s virtual, {:.0} seeds a minute",
            self.elapsed_seconds, self.virtual_seconds, self.seeds_per_minute
        );
        let _ = writeln!(
            s,
            "  operations: {} ({} acknowledged, {} unanswered), reads compared: {}",
            self.ops, self.acknowledged_ops, self.unanswered_ops, self.reads_checked
        );
        let _ = writeln!(s, "  faults: {}", crate::report::counts(&self.faults));
        let _ = writeln!(s, "  checks: {}", crate::report::counts(&self.checks));
        if self.replays_checked > 0 {
            let _ = writeln!(
                s,
                "  replays: {} of {} seeds run twice gave the same trace",
                self.replays_identical, self.replays_checked
            );
        }
        if self.violations.is_empty() {
            let _ = writeln!(s, "  violations: 0");
        } else {
            let _ = writeln!(
                s,
                "  violations: {} in seeds {:?}",
                self.violations.len(),
                self.failed_seeds
            );
            for v in self.violations.iter().take(20) {
                let _ = writeln!(
                    s,
                    "    seed {} step {}: {}: {}",
                    v.seed, v.step, v.invariant, v.detail
                );
            }
            let _ = writeln!(
                s,
                "  replay one: strata chaos sim --seed {} --seeds 1 --nodes {} --ec {} --ops {} -v",
                self.failed_seeds.first().copied().unwrap_or_default(),
                self.nodes,
                self.erasure,
                self.ops_per_seed
            );
        }
        s
    }
}

/// Cluster time one seed may take, workload, healing and checks together;
/// a seed that runs past it is a finding (something waits forever).
const SEED_BUDGET: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// A seed's outcome, and its replay's trace when it ran twice.
type Ran = (SeedOutcome, Option<[u8; 32]>);

/// Runs the seeds, `threads` at a time.
pub fn run(opts: &SimOptions) -> Result<SimReport, ChaosError> {
    opts.validate()?;
    let base = match &opts.dir {
        Some(d) => d.clone(),
        None => default_dir(),
    };
    std::fs::create_dir_all(&base)
        .map_err(|e| ChaosError::Setup(format!("{}: {e}", base.display())))?;
    let work = tempfile::Builder::new()
        .prefix("strata-sim-")
        .tempdir_in(&base)
        .map_err(|e| ChaosError::Setup(format!("{}: {e}", base.display())))?;
    let template = Arc::new(cluster::Template::new(work.path(), opts.nodes, opts.ec)?);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Ran>>> = Arc::default();
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.min(opts.seeds as usize) {
            let next = next.clone();
            let stop = stop.clone();
            let outcomes = outcomes.clone();
            let template = template.clone();
            scope.spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= opts.seeds {
                    return;
                }
                let seed = opts.first_seed + i;
                let out = run_seed(&template, opts, seed);
                let replay = (opts.replay_every > 0 && i.is_multiple_of(opts.replay_every))
                    .then(|| run_seed(&template, opts, seed).trace);
                if opts.verbose {
                    eprintln!(
                        "seed {seed}: {} ops, {} acknowledged, faults {}, {} violations, trace {}{}",
                        out.ops,
                        out.acknowledged_ops,
                        crate::report::counts(&out.faults),
                        out.violations.len(),
                        &cluster_config::ids::to_hex(&out.trace)[..16],
                        match replay {
                            Some(t) if t == out.trace => ", replayed identically",
                            Some(_) => ", REPLAY DIFFERED",
                            None => "",
                        }
                    );
                    for v in &out.violations {
                        eprintln!("  {}: {}", v.invariant, v.detail);
                    }
                }
                if !out.violations.is_empty() && !opts.keep_going {
                    stop.store(true, Ordering::Relaxed);
                }
                outcomes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((out, replay));
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|p| p.into_inner()));
    outcomes.sort_by_key(|(o, _)| o.seed);
    let mut r = SimReport {
        first_seed: opts.first_seed,
        seeds: outcomes.len() as u64,
        nodes: opts.nodes as u64,
        erasure: format!("{}+{}", opts.ec.0, opts.ec.1),
        ops_per_seed: opts.ops as u64,
        elapsed_seconds: elapsed,
        ..SimReport::default()
    };
    let mut virtual_ms = 0;
    for (o, replay) in outcomes {
        r.ops += o.ops;
        r.acknowledged_ops += o.acknowledged_ops;
        r.unanswered_ops += o.unanswered_ops;
        r.reads_checked += o.reads_checked;
        virtual_ms += o.virtual_ms;
        for (k, v) in o.faults {
            *r.faults.entry(k).or_default() += v;
        }
        for (k, v) in o.checks {
            *r.checks.entry(k).or_default() += v;
        }
        if !o.violations.is_empty() {
            r.failed_seeds.push(o.seed);
        }
        r.violations.extend(o.violations);
        if let Some(t) = replay {
            r.replays_checked += 1;
            if t == o.trace {
                r.replays_identical += 1;
            } else if r.replays_differing.len() < 20 {
                r.replays_differing.push(o.seed);
            }
        }
    }
    r.virtual_seconds = virtual_ms / 1000;
    r.seeds_per_minute = r.seeds as f64 * 60.0 / elapsed.max(0.001);
    Ok(r)
}

/// A tmpfs when there is one: the seeds' WALs and shards never need a disk.
fn default_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// One seed on its own runtime: a fresh cluster, the workload and faults,
/// healing, the oracle, and the cluster stopped and its files removed.
pub fn run_seed(template: &cluster::Template, opts: &SimOptions, seed: u64) -> SeedOutcome {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return setup_failure(seed, format!("runtime: {e}")),
    };
    let dir = template.seed_dir(seed);
    let out = rt.block_on(async {
        let started = tokio::time::Instant::now();
        let mut out = match cluster::SimCluster::start(template, &dir, seed).await {
            Ok(c) => {
                match tokio::time::timeout(SEED_BUDGET, workload::run(c.clone(), opts, seed)).await
                {
                    Ok(out) => out,
                    Err(_) => {
                        c.stop_all().await;
                        let mut out = setup_failure(seed, String::new());
                        out.violations[0].invariant = "seed_finishes".into();
                        out.violations[0].detail = format!(
                            "the seed ran past {} minutes of cluster time",
                            SEED_BUDGET.as_secs() / 60
                        );
                        out
                    }
                }
            }
            Err(e) => setup_failure(seed, e),
        };
        out.virtual_ms = started.elapsed().as_millis() as u64;
        out
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn setup_failure(seed: u64, detail: String) -> SeedOutcome {
    SeedOutcome {
        seed,
        violations: vec![Violation {
            invariant: "cluster_starts".into(),
            detail,
            seed,
            step: 0,
        }],
        ..SeedOutcome::default()
    }
}

#[cfg(test)]
mod tests {
    //! Scenarios on the simulated cluster: bugs a seed found, kept as
    //! tests that do not depend on the seed's run staying the same.

    use std::time::Duration;

    use cluster_config::{DeviceId, UserId};
    use raft_meta::{Command, DrivePath};
    use strata_node::drive::Actor;

    use super::cluster::{SimCluster, Template};
    use super::{oracle, workload};
    use crate::model::Content;

    /// Runs `f` on a fresh 4-node 2+1 simulated cluster (cluster secret
    /// from `seed`) on a one-thread runtime with a paused clock.
    fn scenario<F, Fut>(seed: u64, f: F)
    where
        F: FnOnce(std::sync::Arc<SimCluster>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let dir = tempfile::tempdir().unwrap();
        let template = Template::new(dir.path(), 4, (2, 1)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let c = SimCluster::start(&template, &template.seed_dir(seed), seed)
                .await
                .unwrap();
            f(c).await
        });
    }

    /// Found by seed 469: a node back from a partition answered 503 for
    /// files whose shards were all in place, until its next heartbeat,
    /// because its health view still held every other node down.
    #[test]
    fn a_node_back_from_a_partition_reads_at_once() {
        scenario(1, |c| async move {
            let user = UserId([9; 16]);
            workload::retry_write(
                &c,
                Command::CreateUser {
                    user,
                    username: "ann".into(),
                    password_hash: "$argon2id$sim".into(),
                    quota_bytes: 1 << 30,
                    admin: false,
                },
            )
            .await
            .unwrap();
            let actor = Actor {
                user,
                device: DeviceId([1; 16]),
            };
            let first = c.nodes[0].get().unwrap();
            first
                .drive()
                .create_folder(&actor, &DrivePath::parse("/t").unwrap())
                .await
                .unwrap();
            // Several blocks: the first and the later ones are checked
            // on different paths.
            let content = Content::new(7, 2_500_000);
            workload::write_file(&first, &actor, "/t/a", content)
                .await
                .map_err(|(_, e)| e)
                .unwrap();
            // Node 4 alone long enough for its view to hold the others
            // down, then back: the read follows at once.
            let four = c.nodes[3].id;
            for n in &c.nodes[..3] {
                c.switch.partition(four, n.id, true);
            }
            tokio::time::sleep(Duration::from_secs(6)).await;
            for n in &c.nodes[..3] {
                c.switch.partition(four, n.id, false);
            }
            // Before the next heartbeat: node 4's view still holds every
            // other node down (its own replica of the metadata is current:
            // nothing was written during the partition).
            let node = c.nodes[3].get().unwrap();
            let health = node.cluster().unwrap().health();
            assert!(c.nodes[..3].iter().all(|n| !health.is_healthy(n.id)));
            let got = oracle::read_local(&node, user, "/t/a").await;
            let got = got.unwrap().expect("the file is there");
            assert_eq!(oracle::judge(&[Some(content)], Some(&got)), None);
            c.stop_all().await;
        });
    }

    /// Found by seed 146666: the leader, cut off while a Raft membership
    /// change waited for a quorum, never finished stopping: its leader
    /// duties awaited the change without watching the stop.
    #[test]
    fn a_leader_cut_off_during_a_membership_change_stops() {
        scenario(2, |c| async move {
            let mut l = None;
            for _ in 0..100 {
                l = c.leader();
                if l.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let l = l.expect("a leader within 10 s");
            let leader = c.nodes[l].get().unwrap();
            let me = c.nodes[l].id;
            let membership = || {
                leader
                    .meta()
                    .raft_metrics()
                    .membership_config
                    .membership()
                    .clone()
            };
            // Three voters of four nodes: one voter cut off long enough for
            // the leader to see it down ...
            let voter = membership()
                .voter_ids()
                .find(|v| *v != me.get())
                .and_then(cluster_config::NodeId::new)
                .unwrap();
            for n in c.nodes.iter().filter(|n| n.id != voter) {
                c.switch.partition(voter, n.id, true);
            }
            let health = leader.cluster().unwrap().health().clone();
            for _ in 0..200 {
                if !health.is_healthy(voter) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(!health.is_healthy(voter));
            // ... and at that moment the leader is cut off from the rest:
            // it starts replacing the voter, a change that cannot commit.
            for n in c.nodes.iter().filter(|n| n.id != me) {
                c.switch.partition(me, n.id, true);
            }
            let mut changing = false;
            for _ in 0..100 {
                changing = membership().get_joint_config().len() > 1;
                if changing {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(changing, "the leader started a membership change");
            let stopped = tokio::time::timeout(Duration::from_secs(120), c.stop_node(l)).await;
            assert!(stopped.is_ok(), "the cut-off leader stopped");
            c.stop_all().await;
        });
    }
}
