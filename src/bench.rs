//! `strata bench`: the block pipeline stage by stage, the whole pipeline,
//! and end-to-end HTTPS upload and download through `strata dev`, with the
//! end-to-end figures as ratios of the pipeline measured in the same run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::bench_node::{self as bench, Figure};
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use cluster_config::ErasureProfile;
use futures::StreamExt;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Each pipeline stage alone, then the whole pipeline.
    Pipeline(Opts),
    /// The whole pipeline, then HTTPS upload and download through `strata dev`.
    E2e(Opts),
    /// Both.
    All(Opts),
    /// A 3-node cluster: large files healthy and degraded, repair, small
    /// files against the disk, metadata commits (optionally next to etcd).
    Cluster(crate::bench_cluster::ClusterOpts),
    /// Sync: notification latency, a second device seeing a file, delta
    /// bytes next to rsync, initial sync of many small files.
    Sync(crate::bench_sync::SyncOpts),
}

#[derive(Args, Clone)]
pub struct Opts {
    /// Bytes per measurement, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Scratch directory (on the disk to measure).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const PROFILE: ErasureProfile = ErasureProfile { data: 2, parity: 1 };

fn print_table(rows: &[Figure]) {
    println!("| stage | MB/s | note |\n| --- | ---: | --- |");
    for r in rows {
        println!("| {} | {:.0} | {} |", r.name, r.mb_per_s, r.note);
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    format!("{cores} cores ({model})")
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let (opts, stages, e2e) = match cmd {
        BenchCmd::Cluster(o) => return crate::bench_cluster::run(o).await,
        BenchCmd::Sync(o) => return crate::bench_sync::run(o).await,
        BenchCmd::Pipeline(o) => (o, true, false),
        BenchCmd::E2e(o) => (o, false, true),
        BenchCmd::All(o) => (o, true, true),
    };
    let scratch = tempfile::Builder::new()
        .prefix("strata-bench-")
        .tempdir_in(opts.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let total = opts.size_mib << 20;
    println!(
        "machine: {}; {} MiB per measurement; erasure {}+{}\n",
        machine(),
        opts.size_mib,
        PROFILE.data,
        PROFILE.parity
    );
    if stages {
        let stage_total = total.min(256 << 20);
        let rows = tokio::task::spawn_blocking({
            let dir = scratch.path().to_path_buf();
            move || bench::stages(&dir, stage_total, PROFILE)
        })
        .await?
        .map_err(anyhow::Error::msg)?;
        println!("stages alone (one thread, {} MiB):", stage_total >> 20);
        print_table(&rows);
        println!();
    }
    let (up, down) = bench::whole(scratch.path(), total, PROFILE)
        .await
        .map_err(anyhow::Error::msg)?;
    println!("whole pipeline ({} MiB):", opts.size_mib);
    print_table(&[up.clone(), down.clone()]);
    println!();
    if e2e {
        let (e2e_up, e2e_down) = end_to_end(scratch.path(), total).await?;
        println!(
            "end to end, HTTPS through `strata dev` ({} MiB file):",
            opts.size_mib
        );
        println!(
            "| direction | MB/s | ratio to the pipeline alone (same run) |\n| --- | ---: | ---: |"
        );
        println!("| upload | {:.0} | {:.2} |", e2e_up, e2e_up / up.mb_per_s);
        println!(
            "| download | {:.0} | {:.2} |",
            e2e_down,
            e2e_down / down.mb_per_s
        );
    }
    Ok(())
}

struct DevProcess(Child);

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dev(data: &Path) -> anyhow::Result<(DevProcess, String)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["dev", "--nodes", "1", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let proc = DevProcess(child);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(url) = line.split("serving ").nth(1) {
            // Keep draining what it prints.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((proc, url.trim().to_string()));
        }
    }
    bail!("strata dev exited before serving")
}

async fn end_to_end(dir: &Path, total: usize) -> anyhow::Result<(f64, f64)> {
    let data = dir.join("dev");
    let (_proc, url) = start_dev(&data)?;
    let ca = std::fs::read(data.join("tls").join("cert.pem"))?;
    let anon = strata_client::Client::new(&url, Some(&ca))?;
    anon.signup("bench", "measured twice, cut once").await?;
    let mut c = strata_client::Client::new(&url, Some(&ca))?;
    c.login("bench", "measured twice, cut once", Some("bench"))
        .await?;
    // Unique data (dedup would measure nothing), generated before the clock starts.
    let body = Bytes::from(bench::noise(total, 3));
    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..total)
        .step_by(1 << 20)
        .map(|at| Ok(body.slice(at..(at + (1 << 20)).min(total))))
        .collect();
    let t = Instant::now();
    let meta = c
        .upload_stream("/bench.bin", total as u64, futures::stream::iter(pieces))
        .await?;
    let up = total as f64 / t.elapsed().as_secs_f64() / 1e6;
    if meta.size != total as u64 {
        bail!("uploaded {} of {total} bytes", meta.size);
    }
    let t = Instant::now();
    let mut got = 0usize;
    let mut s = c.download_stream("/bench.bin").await?;
    while let Some(piece) = s.next().await {
        got += piece?.len();
    }
    let down = total as f64 / t.elapsed().as_secs_f64() / 1e6;
    if got != total {
        bail!("downloaded {got} of {total} bytes");
    }
    Ok((up, down))
}
