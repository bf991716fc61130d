//! `strata bench cluster`: a 3-node local cluster (one process per node),
//! measured next to what the disk allows and, optionally, a 3-member etcd
//! cluster measured by `../shared/bench/peers/etcd.sh` in the same run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench_node::{cpu_probe, noise};
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use serde_json::Value;
use strata_client::Client;

#[derive(Args, Clone)]
pub struct ClusterOpts {
    /// Size of the large file, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Seconds of the small-file and metadata runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Scratch directory (on the disk to measure).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run `etcd.sh cluster3` (from this folder) before and after strata's runs.
    #[arg(long)]
    etcd_script: Option<PathBuf>,
    /// Only the metadata commit runs (for profiling).
    #[arg(long)]
    only_metadata: bool,
    /// Only the small-file runs (for profiling).
    #[arg(long)]
    only_small: bool,
    /// Client counts of the `--only-small` / `--only-metadata` runs.
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<usize>>,
    /// Runtime worker threads of each node (`TOKIO_WORKER_THREADS` of the
    /// `strata serve` processes); default: one per core.
    #[arg(long)]
    node_workers: Option<usize>,
}

pub(crate) struct Node(Child);

/// CPU seconds (user and system) the running nodes have used so far, from
/// `/proc/<pid>/stat` (Linux clock ticks of 1/100 s), as `etcd.sh` counts
/// its members' `server_cpu_s`.
fn nodes_cpu_seconds(nodes: &[Option<Node>]) -> f64 {
    let ticks: u64 = nodes
        .iter()
        .flatten()
        .filter_map(|n| std::fs::read_to_string(format!("/proc/{}/stat", n.0.id())).ok())
        .filter_map(|stat| {
            // Fields after the command name, which is in parentheses.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / 100.0
}

/// The share of the machine's CPU time the hypervisor gave to others
/// (`steal` in `/proc/stat`) over a stretch of a run. These machines are
/// shared: a run that lost half its CPU this way is not comparable with
/// one that lost none, and each figure says which it was.
struct Steal {
    total: u64,
    stolen: u64,
}

impl Steal {
    /// All ticks and stolen ticks of the machine so far (zero off Linux).
    fn read() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return (0, 0);
        };
        // user nice system idle iowait irq softirq steal (guest time is
        // already counted in user).
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|v| v.parse().ok())
            .collect();
        (f.iter().sum(), f.get(7).copied().unwrap_or(0))
    }

    fn start() -> Self {
        let (total, stolen) = Self::read();
        Self { total, stolen }
    }

    /// Percent of the CPU time since `start` that was stolen.
    fn percent(&self) -> f64 {
        let (total, stolen) = Self::read();
        let dt = total.saturating_sub(self.total);
        if dt == 0 {
            return 0.0;
        }
        stolen.saturating_sub(self.stolen) as f64 * 100.0 / dt as f64
    }
}

/// Node CPU seconds per operation since `since` (a `nodes_cpu_seconds`
/// reading) for `count` operations.
fn cpu_per_op(nodes: &[Option<Node>], since: f64, count: u64) -> f64 {
    (nodes_cpu_seconds(nodes) - since) / count.max(1) as f64
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_node(config: &str) -> anyhow::Result<Node> {
    start_node_with(config, None)
}

/// `start_node`, with `workers` runtime threads when given.
fn start_node_with(config: &str, workers: Option<usize>) -> anyhow::Result<Node> {
    let mut cmd = Command::new(std::env::current_exe()?);
    if let Some(n) = workers {
        cmd.env("TOKIO_WORKER_THREADS", n.to_string());
    }
    let mut child = cmd
        .args(["serve", "--config", config])
        .env(
            "RUST_LOG",
            std::env::var("STRATA_BENCH_LOG").unwrap_or_else(|_| "error,openraft=off".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line?.contains("serving") {
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(Node(child));
        }
    }
    bail!("node exited before serving")
}

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What the disk allows for uploads of `file` bytes at 2+1 (three shard
/// files of file/2, each fsynced, plus a directory fsync), with 16 writers.
fn disk_files_per_s(dir: &Path, file: usize, seconds: u64) -> anyhow::Result<f64> {
    let d = dir.join("disk-probe");
    std::fs::create_dir_all(&d)?;
    let shard = noise(file / 2, 1);
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds.min(10));
    std::thread::scope(|s| {
        for w in 0..16 {
            let (d, shard, count) = (d.clone(), &shard, count.clone());
            s.spawn(move || {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    for k in 0..3 {
                        let p = d.join(format!("{w}-{i}-{k}"));
                        if let Ok(mut f) = std::fs::File::create(&p) {
                            let _ = std::io::Write::write_all(&mut f, shard);
                            let _ = f.sync_data();
                        }
                    }
                    if let Ok(f) = std::fs::File::open(&d) {
                        let _ = f.sync_all();
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
    });
    let started = seconds.min(10) as f64;
    let _ = std::fs::remove_dir_all(&d);
    Ok(count.load(Ordering::Relaxed) as f64 / started)
}

/// The disk's rate for one writer, as the anchor figures measure it: 1 MiB
/// files written and fsynced one after another, in bytes per second.
fn disk_one_writer_bytes_per_s(dir: &Path, seconds: u64) -> anyhow::Result<f64> {
    let d = dir.join("disk-probe-one");
    std::fs::create_dir_all(&d)?;
    let data = noise(1 << 20, 2);
    let deadline = Instant::now() + Duration::from_secs(seconds.min(10));
    let t = Instant::now();
    let mut written = 0u64;
    let mut i = 0u64;
    while Instant::now() < deadline {
        let p = d.join(format!("{i}"));
        let mut f = std::fs::File::create(&p)?;
        std::io::Write::write_all(&mut f, &data)?;
        f.sync_all()?;
        written += data.len() as u64;
        i += 1;
    }
    let rate = written as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&d);
    Ok(rate)
}

/// What the disk allows for 500 KB uploads at 2+1, measured twice (before
/// and after the strata run, the machines are shared and noisy) and both
/// ways: 16 writers of shard-sized files, and one writer of 1 MiB files
/// (1.5 bytes written per byte uploaded).
#[derive(Clone, Copy, Default)]
struct Disk {
    sixteen: f64,
    one: f64,
}

impl Disk {
    fn measure(dir: &Path, seconds: u64) -> anyhow::Result<Self> {
        let seconds = (seconds / 2).clamp(3, 5);
        Ok(Self {
            sixteen: disk_files_per_s(dir, 500_000, seconds)?,
            one: disk_one_writer_bytes_per_s(dir, seconds)? / (1.5 * 500_000.0),
        })
    }

    fn mean(self, other: Self) -> Self {
        Self {
            sixteen: (self.sixteen + other.sixteen) / 2.0,
            one: (self.one + other.one) / 2.0,
        }
    }
}

async fn upload_big(c: &Client, path: &str, data: &Bytes) -> anyhow::Result<f64> {
    let total = data.len();
    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..total)
        .step_by(1 << 20)
        .map(|at| Ok(data.slice(at..(at + (1 << 20)).min(total))))
        .collect();
    let t = Instant::now();
    c.upload_stream(path, total as u64, futures::stream::iter(pieces))
        .await?;
    Ok(total as f64 / t.elapsed().as_secs_f64() / 1e6)
}

async fn download_big(c: &Client, path: &str, want: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut got = 0;
    let mut s = c.download_stream(path).await?;
    while let Some(p) = s.next().await {
        got += p?.len();
    }
    if got != want {
        bail!("downloaded {got} of {want} bytes");
    }
    Ok(want as f64 / t.elapsed().as_secs_f64() / 1e6)
}

/// Random bytes that files are cut from (generating each file's bytes
/// afresh would cost the client more CPU than the upload).
const POOL_BYTES: usize = 32 << 20;

/// A unique 500 KB file: a slice of the pool at a place chosen by (worker,
/// number), with the pair stamped into every 4 KiB, so no chunk of it is
/// the same as any other file's and dedup cannot help.
fn unique_file(pool: &[u8], worker: u64, n: u64) -> Vec<u8> {
    // `worker` carries the round in its high bits: no two files of a run,
    // whatever the round, share a block.
    const LEN: usize = 500_000;
    let seed = (worker << 32 | n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let at = (seed as usize) % (pool.len() - LEN);
    let mut data = pool[at..at + LEN].to_vec();
    let mut stamp = [0u8; 16];
    stamp[..8].copy_from_slice(&worker.to_le_bytes());
    stamp[8..].copy_from_slice(&n.to_le_bytes());
    for block in data.chunks_mut(4096) {
        let k = block.len().min(16);
        block[..k].copy_from_slice(&stamp[..k]);
    }
    data
}

/// 500 KB uploads from `clients` concurrent clients for `seconds`; `round`
/// keeps the files of successive runs apart (no dedup, no new versions).
async fn small_files(clients: &[Client], seconds: u64, round: u64) -> (f64, f64, f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let pool = Arc::new(noise(POOL_BYTES, 42));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (w, c) in clients.iter().enumerate() {
        let (c, done, pool) = (c.clone(), done.clone(), pool.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let data = unique_file(&pool, round << 32 | w as u64, i);
                let t = Instant::now();
                if c.upload(&format!("/small/{round}/{w}/{i}.bin"), data)
                    .await
                    .is_ok()
                {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            lat
        }));
    }
    let start = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let count = done.load(Ordering::Relaxed);
    let rate = count as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    (rate, pct(&lat, 0.5), pct(&lat, 0.99), count)
}

/// Metadata commits (one Raft entry each: a folder creation) from
/// `clients` concurrent clients over the connections `conns` (round
/// robin, as etcd's benchmark spreads its clients over 16 connections):
/// ops/s, p50 ms, p99 ms.
async fn commits(
    conns: &[Client],
    clients: usize,
    seconds: u64,
    tag: &str,
) -> (f64, f64, f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..clients {
        let c = conns[w % conns.len()].clone();
        let (done, tag) = (done.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                if c.create_folder(&format!("/meta-{tag}/{w}/{i}"))
                    .await
                    .is_ok()
                {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            lat
        }));
    }
    let start = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let count = done.load(Ordering::Relaxed);
    let rate = count as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    (rate, pct(&lat, 0.5), pct(&lat, 0.99), count)
}

/// Index (0-based) of the node that leads Raft, from the admin API; node 1
/// when it cannot be told.
async fn leader_index(admin: &Client, nodes: &[cluster_config::generate::ManifestNode]) -> usize {
    let Ok(r) = admin
        .request(reqwest::Method::GET, "/api/v1/admin/cluster")
        .send()
        .await
    else {
        return 0;
    };
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    let members = v["members"].as_array().cloned().unwrap_or_default();
    members
        .iter()
        .find(|m| m["role"] == "leader")
        .and_then(|m| m["id"].as_u64())
        .and_then(|id| nodes.iter().position(|n| n.id == id))
        .unwrap_or(0)
}

/// A scratch folder and a generated 3-node cluster (2+1) in it, nodes on
/// 127.0.0.1-3 from `base_port`.
pub(crate) fn three_nodes(
    prefix: &str,
    dir: Option<&Path>,
    base_port: u16,
) -> anyhow::Result<(tempfile::TempDir, cluster_config::generate::ClusterManifest)> {
    let scratch = tempfile::Builder::new().prefix(prefix).tempdir_in(
        dir.map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir),
    )?;
    let manifest =
        cluster_config::generate::init_cluster(&cluster_config::generate::ClusterSpec {
            nodes: 3,
            spare: 0,
            out: scratch.path().join("cluster"),
            erasure: None,
            host: "127.0.0.x".into(),
            base_port,
            // Two shard directories per node (on the one disk measured):
            // with a node down, a block's third shard goes to a second
            // disk of a live node, as a block needs K+1 shards to be
            // acknowledged.
            disks_per_node: 2,
            repair_grace: Some("1h".into()),
            zones: Vec::new(),
            extra_toml: String::new(),
        })?;
    Ok((scratch, manifest))
}

/// One line of etcd's put results.
struct EtcdPuts {
    workers: usize,
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU µs the members used per put.
    cpu_us: f64,
}

/// Runs `etcd.sh cluster3` (gRPC client) and reads its put lines to the leader.
fn etcd_puts(script: &Path) -> anyhow::Result<(Vec<EtcdPuts>, f64)> {
    let steal = Steal::start();
    let status = Command::new("bash")
        .arg(script)
        .arg("cluster3")
        .env("CLIENTS", "grpc")
        .env("SKIP_CHECK_PERF", "1")
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("etcd.sh failed");
    }
    let results = std::env::var("PEERS_SCRATCH").unwrap_or_else(|_| "/tmp/peers".into());
    let text = std::fs::read_to_string(Path::new(&results).join("etcd").join("results.txt"))?;
    // The last run's lines.
    let start = text.rfind("# 3-member: leader=").unwrap_or(0);
    let mut rows = Vec::new();
    for line in text[start..].lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let label = v["label"].as_str().unwrap_or("");
        if label.contains("put leader") && !label.contains("follower") {
            let ops = v["ops"].as_f64().unwrap_or(0.0).max(1.0);
            rows.push(EtcdPuts {
                workers: v["workers"].as_u64().unwrap_or(0) as usize,
                ops_per_s: v["ops_per_s"].as_f64().unwrap_or(0.0),
                p50_ms: v["p50_ms"].as_f64().unwrap_or(0.0),
                p99_ms: v["p99_ms"].as_f64().unwrap_or(0.0),
                cpu_us: v["server_cpu_s"].as_f64().unwrap_or(0.0) * 1e6 / ops,
            });
        }
    }
    Ok((rows, steal.percent()))
}

/// One line with the CPU probe's figures (64 MiB on one thread), printed
/// at the start and the end of a run: the machine's speed can change
/// without showing as stolen time.
fn probe_line(when: &str) -> String {
    match cpu_probe(64 << 20) {
        Ok((cipher, copy)) => format!(
            "CPU probe {when} (one thread, 64 MiB in 512 KB pieces): AES-256-GCM seal {cipher:.0} MB/s, copy {copy:.0} MB/s"
        ),
        Err(e) => format!("CPU probe {when}: {e}"),
    }
}

pub async fn run(opts: ClusterOpts) -> anyhow::Result<()> {
    let etcd_before = match &opts.etcd_script {
        Some(script) if !opts.only_metadata && !opts.only_small => etcd_puts(script)?,
        _ => (Vec::new(), 0.0),
    };
    let (scratch, manifest) = three_nodes("strata-bench-cluster-", opts.dir.as_deref(), 27100)?;
    println!(
        "3-node cluster, erasure {}, one process per node on 127.0.0.1-3",
        manifest.erasure
    );
    println!("{}\n", probe_line("before"));

    let mut nodes: Vec<Option<Node>> = Vec::new();
    for n in &manifest.nodes {
        nodes.push(Some(start_node_with(&n.config, opts.node_workers)?));
    }
    let ca = std::fs::read(&manifest.ca_cert)?;
    let client = |i: usize| Client::new(&manifest.nodes[i].api_url, Some(&ca));
    let mut admin = client(0)?;
    for _ in 0..300 {
        if admin
            .login("admin", &manifest.admin.password, Some("bench"))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client(0)?
        .signup("bench", "measured twice, cut once")
        .await?;
    let mut users = Vec::new();
    for i in 0..3 {
        let mut c = client(i)?;
        c.login(
            "bench",
            "measured twice, cut once",
            Some(&format!("bench-{i}")),
        )
        .await?;
        users.push(c);
    }
    // Each concurrent client has a connection of its own, as separate
    // devices would (clones of one `Client` share its connection pool, and
    // over HTTP/2 a single connection).
    // Client `i` talks to node `i % 3`.
    let own = |i: usize| -> anyhow::Result<Client> {
        let token = users[i % 3].token().unwrap_or_default().to_string();
        Ok(client(i % 3)?.with_token(token))
    };
    // Metadata writes go to the Raft leader over up to 16 connections, as
    // etcd.sh sends its puts to etcd's leader.
    let leader = leader_index(&admin, &manifest.nodes).await;
    let to_leader = (0..16)
        .map(|_| own(leader))
        .collect::<anyhow::Result<Vec<Client>>>()?;
    let conns = |clients: usize| &to_leader[..clients.clamp(1, 16)];

    if opts.only_small {
        for (round, n) in opts
            .clients
            .clone()
            .unwrap_or(vec![1, 4, 16])
            .into_iter()
            .enumerate()
        {
            let clients = (0..n).map(own).collect::<anyhow::Result<Vec<Client>>>()?;
            let before = Disk::measure(scratch.path(), opts.seconds)?;
            let cpu = nodes_cpu_seconds(&nodes);
            let steal = Steal::start();
            let (rate, p50, p99, count) = small_files(&clients, opts.seconds, round as u64).await;
            let ms = cpu_per_op(&nodes, cpu, count) * 1e3;
            let stolen = steal.percent();
            let disk = before.mean(Disk::measure(scratch.path(), opts.seconds)?);
            println!(
                "| {n} clients | {rate:.0} files/s | p50 {p50:.1} ms | p99 {p99:.1} ms | node CPU {ms:.2} ms/file | steal {stolen:.0} % | disk 16 writers {:.0} ({:.2}) | disk 1 writer {:.0} ({:.2}) |",
                disk.sixteen,
                rate / disk.sixteen,
                disk.one,
                rate / disk.one
            );
        }
        println!("{}", probe_line("after"));
        return Ok(());
    }
    if opts.only_metadata {
        for clients in opts.clients.clone().unwrap_or(vec![1, 8, 32, 128]) {
            let cpu = nodes_cpu_seconds(&nodes);
            let steal = Steal::start();
            let (rate, p50, p99, count) = commits(
                conns(clients),
                clients,
                opts.seconds.min(15),
                &clients.to_string(),
            )
            .await;
            let us = cpu_per_op(&nodes, cpu, count) * 1e6;
            let stolen = steal.percent();
            println!("| {clients} | {rate:.0} | {p50:.1} | {p99:.1} | {us:.0} | {stolen:.0} % |");
        }
        println!("{}", probe_line("after"));
        return Ok(());
    }
    // Large file, healthy and with one node down.
    let total = opts.size_mib << 20;
    let a = Bytes::from(noise(total, 11));
    let up = upload_big(&users[0], "/big-a.bin", &a).await?;
    let down = download_big(&users[1], "/big-a.bin", total).await?;
    nodes[2] = None; // node 3 stops
    tokio::time::sleep(Duration::from_secs(4)).await;
    let down_degraded = download_big(&users[1], "/big-a.bin", total).await?;
    let b = Bytes::from(noise(total, 12));
    let up_degraded = upload_big(&users[0], "/big-b.bin", &b).await?;
    drop(a);
    drop(b);
    // Node 3 returns: repair moves home the shards the degraded upload put
    // on a second disk of a live node (and rebuilds any that are missing),
    // counted by the leader's repair totals; done when repair is idle and
    // the census finds every shard.
    let get = |admin: Client, path: &'static str| async move {
        match admin.request(reqwest::Method::GET, path).send().await {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };
    let work = |s: &Value| {
        s["repair"]["moved_total"].as_u64().unwrap_or(0)
            + s["repair"]["repaired_total"].as_u64().unwrap_or(0)
    };
    let before = get(admin.clone(), "/api/v1/admin/verify").await;
    let work_before = work(&get(admin.clone(), "/api/v1/admin/cluster").await);
    nodes[2] = Some(start_node_with(
        &manifest.nodes[2].config,
        opts.node_workers,
    )?);
    let t = Instant::now();
    let mut repaired = None;
    for _ in 0..600 {
        let v = get(admin.clone(), "/api/v1/admin/verify").await;
        let s = get(admin.clone(), "/api/v1/admin/cluster").await;
        if v["shards_unplaced"] == 0
            && v["shards_present"] == v["shards_expected"]
            && s["repair_state"] == "idle"
        {
            repaired = Some((t.elapsed(), work(&s).saturating_sub(work_before)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A shard of a 2+1 block is half its sealed chunk: about total/blocks/2.
    let blocks = before["blocks"].as_f64().unwrap_or(1.0).max(1.0);
    let shard_bytes = 2.0 * total as f64 / blocks / 2.0;
    let repair_rate = repaired.map(|(d, n)| (n, n as f64 * shard_bytes / d.as_secs_f64() / 1e6));

    // Small files, 16 concurrent clients spread over the nodes.
    let sixteen = (0..16).map(own).collect::<anyhow::Result<Vec<Client>>>()?;
    let before = Disk::measure(scratch.path(), opts.seconds)?;
    let cpu = nodes_cpu_seconds(&nodes);
    let steal = Steal::start();
    let (files_per_s, small_p50, small_p99, count) = small_files(&sixteen, opts.seconds, 0).await;
    let small_cpu_ms = cpu_per_op(&nodes, cpu, count) * 1e3;
    let small_steal = steal.percent();
    let disk = before.mean(Disk::measure(scratch.path(), opts.seconds)?);

    // Metadata commits.
    let mut meta_rows = Vec::new();
    for clients in [1usize, 8, 32, 128] {
        let cpu = nodes_cpu_seconds(&nodes);
        let steal = Steal::start();
        let r = commits(
            conns(clients),
            clients,
            opts.seconds.min(15),
            &clients.to_string(),
        )
        .await;
        let us = cpu_per_op(&nodes, cpu, r.3) * 1e6;
        meta_rows.push((clients, r, us, steal.percent()));
    }
    drop(nodes);
    let probe_after = probe_line("after");

    // The large file's size as run, not as defaulted.
    let big = if opts.size_mib.is_multiple_of(1024) {
        format!("{} GiB", opts.size_mib / 1024)
    } else {
        format!("{} MiB", opts.size_mib)
    };
    println!("| measure | strata | note |\n| --- | ---: | --- |");
    println!("| {big} upload, healthy | {up:.0} MB/s | via node 1 |");
    println!("| {big} download, healthy | {down:.0} MB/s | via node 2 |");
    println!(
        "| {big} upload, one node down | {up_degraded:.0} MB/s | three shards of three written, two on one node |"
    );
    println!("| {big} download, one node down | {down_degraded:.0} MB/s | degraded reads |");
    match repair_rate {
        Some((n, r)) => println!("| repair after the node returns | {r:.0} MB/s of shards | {n} shards moved home or rebuilt |"),
        None => println!("| repair after the node returns | did not finish within 150 s | |"),
    }
    println!("| 500 KB uploads, 16 clients | {files_per_s:.0} files/s | p50 {small_p50:.0} ms, p99 {small_p99:.0} ms; node CPU {small_cpu_ms:.2} ms per file; CPU steal {small_steal:.0} % |");
    println!("| disk alone: 3 shard files of 250 KB + fsyncs, 16 writers | {:.0} files/s | ratio strata/disk {:.2} |", disk.sixteen, files_per_s / disk.sixteen);
    println!("| disk alone: 1 MiB files + fsync, 1 writer, at 1.5x | {:.0} files/s | ratio strata/disk {:.2} |", disk.one, files_per_s / disk.one);
    println!("\nmetadata commits (HTTPS POST /api/v1/folders to the leader; concurrent commands share Raft entries):");
    println!("| clients | commits/s | p50 ms | p99 ms | node CPU µs per commit | CPU steal |\n| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (c, (rate, p50, p99, _), us, stolen) in &meta_rows {
        println!("| {c} | {rate:.0} | {p50:.1} | {p99:.1} | {us:.0} | {stolen:.0} % |");
    }
    if let Some(script) = &opts.etcd_script {
        // etcd runs once before strata's runs and once after: on a shared
        // machine the load moves in minutes, and the two bracket it.
        let after = etcd_puts(script)?;
        for (when, (rows, stolen)) in [("before", &etcd_before), ("after", &after)] {
            println!(
                "\netcd 3-member, same run, {when} strata's runs (etcd.sh cluster3, gRPC client; CPU steal {stolen:.0} % over the script):"
            );
            println!("| clients | puts/s | p50 ms | p99 ms | member CPU µs per put | strata/etcd commits/s | strata/etcd CPU per op |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            for r in rows.iter() {
                let ours = meta_rows.iter().find(|(c, ..)| *c == r.workers);
                let (ratio, cpu_ratio) = match ours {
                    Some((_, (rate, ..), us, _)) => (
                        format!("{:.2}", rate / r.ops_per_s.max(1.0)),
                        format!("{:.2}", us / r.cpu_us.max(1.0)),
                    ),
                    None => ("".into(), "".into()),
                };
                println!(
                    "| {} | {:.0} | {} | {} | {:.0} | {ratio} | {cpu_ratio} |",
                    r.workers, r.ops_per_s, r.p50_ms, r.p99_ms, r.cpu_us
                );
            }
        }
    }
    println!("\n{probe_after}");
    Ok(())
}
