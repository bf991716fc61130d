//! `strata chaos run`: the fault-injection harness (the `strata-chaos` crate)
//! against real nodes started from this binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_chaos::{FaultKind, Options};

#[derive(Subcommand)]
pub enum ChaosCmd {
    /// Start a cluster, run a seeded workload under a seeded fault schedule, check every invariant.
    Run(RunArgs),
    /// Run the real node code as a cluster in one process, on a simulated
    /// network and clock, through many seeds of workload and faults.
    Sim(SimArgs),
}

#[derive(Args)]
pub struct SimArgs {
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many seeds, from the first on.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// Nodes of the simulated cluster (3 to 9).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Erasure profile K+M.
    #[arg(long, default_value = "2+1")]
    pub ec: String,
    /// Drive operations per seed.
    #[arg(long, default_value_t = 40)]
    pub ops: usize,
    /// Seeds run at once (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run every N-th seed twice and compare the traces (0: never).
    #[arg(long, default_value_t = 0)]
    pub replay_every: u64,
    /// Keep going after a failing seed.
    #[arg(long)]
    pub keep_going: bool,
    /// Where seeds keep their files (default: /dev/shm when present).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the report as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// One line per seed.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Nodes of the cluster (3 to 9).
    #[arg(long, default_value_t = 5)]
    pub nodes: u64,
    /// Erasure profile K+M.
    #[arg(long, default_value = "2+1")]
    pub ec: String,
    /// How long the workload and the faults run.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seed of the workload and the fault schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent workers (two per user).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Largest file a worker writes, in MiB.
    #[arg(long, default_value_t = 24)]
    pub max_file_mib: u64,
    /// New content the workers may send in all, in GiB (the disks keep
    /// every byte, times (K+M)/K); past it they move, delete, restore
    /// and read.
    #[arg(long, default_value_t = 4)]
    pub max_written_gib: u64,
    /// Fault kinds to inject, comma-separated (default: all): kill,
    /// kill_leader, pause, partition, loss, latency, bitrot, wiped_disk,
    /// disk_full, slow_disk, clock_jump.
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<String>,
    /// Write the report as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the cluster lives (default: a temporary folder, removed after a clean run).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the cluster's folder (logs and data) after the run.
    #[arg(long)]
    pub keep: bool,
}

impl RunArgs {
    pub fn kinds(&self) -> anyhow::Result<Vec<FaultKind>> {
        if self.faults.is_empty() {
            return Ok(FaultKind::ALL.to_vec());
        }
        self.faults
            .iter()
            .map(|f| {
                FaultKind::parse(f.trim()).with_context(|| {
                    let all: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                    format!("unknown fault {f:?} (known: {})", all.join(", "))
                })
            })
            .collect()
    }

    pub fn wants_network(&self) -> bool {
        self.kinds().is_ok_and(|k| k.iter().any(|k| k.is_network()))
    }
}

/// Runs the harness; `network` says whether this process is in a private
/// network namespace where network faults can be injected.
pub async fn run(cmd: ChaosCmd, network: Result<(), String>) -> anyhow::Result<()> {
    let args = match cmd {
        ChaosCmd::Run(args) => args,
        ChaosCmd::Sim(args) => return sim(args).await,
    };
    let (data, parity) = strata_chaos::parse_ec(&args.ec)?;
    let faults = args.kinds()?;
    if let Err(why) = &network {
        if faults.iter().any(|k| k.is_network()) {
            eprintln!("chaos: network faults off ({why})");
        }
    }
    let opts = Options {
        binary: std::env::current_exe().context("finding the strata binary")?,
        nodes: args.nodes,
        data,
        parity,
        seconds: args.seconds,
        seed: args.seed,
        clients: args.clients,
        max_file_bytes: args.max_file_mib << 20,
        max_written_bytes: args.max_written_gib << 30,
        faults,
        network: network.is_ok(),
        dir: args.dir.clone(),
        keep: args.keep,
    };
    let report = strata_chaos::run(opts).await?;
    show(&report.human(), &report, args.json.as_deref())?;
    if !report.ok() {
        anyhow::bail!(
            "{} invariant violations (seed {})",
            report.violations.len(),
            report.seed
        );
    }
    Ok(())
}

async fn sim(args: SimArgs) -> anyhow::Result<()> {
    let (data, parity) = strata_chaos::parse_ec(&args.ec)?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let opts = strata_chaos::sim::SimOptions {
        first_seed: args.seed,
        seeds: args.seeds,
        nodes: args.nodes,
        ec: (data, parity),
        ops: args.ops,
        threads,
        dir: args.dir.clone(),
        replay_every: args.replay_every,
        keep_going: args.keep_going,
        verbose: args.verbose,
    };
    let report = tokio::task::spawn_blocking(move || strata_chaos::sim::run(&opts)).await??;
    show(&report.human(), &report, args.json.as_deref())?;
    if !report.ok() {
        anyhow::bail!(
            "{} invariant violations in seeds {:?}",
            report.violations.len(),
            report.failed_seeds
        );
    }
    Ok(())
}

/// Prints a report for people and writes it as JSON when asked.
fn show(
    human: &str,
    report: &impl serde::Serialize,
    json: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    crate::say(human);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
