//! `strata bench sync`: notification latency across nodes, time for a
//! second device to see a file, delta bytes on the wire next to rsync's,
//! and initial sync of many small files — on a 3-node local cluster.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench_node::noise;
use anyhow::{bail, Context};
use clap::Args;
use strata_client::profile::Profile;
use strata_client::sync::{tokio_util_stop::Stop, Agent, Options};
use strata_client::transfer::{self, Traffic, UploadSpec};
use strata_client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench_cluster::{pct, start_node};

#[derive(Args, Clone)]
pub struct SyncOpts {
    /// Scratch directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Notification round trips measured.
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// Small files for the initial-sync run.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Run `rsync-delta.sh` (from this folder) in the same run.
    #[arg(long)]
    rsync_script: Option<PathBuf>,
}

/// A TCP proxy that counts the bytes going each way.
async fn counting_proxy(
    target: std::net::SocketAddr,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let c1 = counter.clone();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = ri.read(&mut buf).await {
                        if n == 0 || wo.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        c1.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    let _ = wo.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = ro.read(&mut buf).await {
                        if n == 0 || wi.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    let _ = wi.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Ok(addr)
}

fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().context("no parent")?)?;
    let tmp = path.with_file_name(format!(".strata-bench-{}", rand::random::<u32>()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub async fn run(opts: SyncOpts) -> anyhow::Result<()> {
    let (scratch, manifest) =
        crate::bench_cluster::three_nodes("strata-bench-sync-", opts.dir.as_deref(), 28100)?;
    let mut nodes = Vec::new();
    for n in &manifest.nodes {
        nodes.push(start_node(&n.config)?);
    }
    let ca = std::fs::read(&manifest.ca_cert)?;
    let url = |i: usize| manifest.nodes[i].api_url.clone();
    let password = "measured twice, cut once";
    let signup = Client::new(&url(0), Some(&ca))?;
    let mut ok = false;
    for _ in 0..100 {
        if signup.signup("bench", password).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !ok {
        bail!("could not create the benchmark account");
    }
    let login = |i: usize, device: &str| {
        let (u, ca, device) = (url(i), ca.clone(), device.to_string());
        async move {
            let mut c = Client::new(&u, Some(&ca))?;
            c.login("bench", password, Some(&device)).await?;
            Ok::<Client, anyhow::Error>(c)
        }
    };
    println!(
        "3-node cluster on 127.0.0.1-3 ({} erasure)\n",
        manifest.erasure
    );

    // 1. Notification latency: a write through node 1 wakes a poll on node 2.
    let a = login(0, "writer").await?;
    let b = login(1, "watcher").await?;
    let mut lat = Vec::new();
    for i in 0..opts.rounds {
        let cursor = b.latest_cursor().await?;
        let poll = {
            let b = b.clone();
            tokio::spawn(async move {
                let r = b.poll(&cursor, 30).await;
                (r, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let t0 = Instant::now();
        a.create_folder(&format!("/notify/{i}")).await?;
        let (r, woke) = poll.await?;
        if !r?.changes {
            bail!("a poll returned without the change");
        }
        lat.push((woke - t0).as_secs_f64() * 1000.0);
    }
    lat.sort_by(|x, y| x.total_cmp(y));
    println!("| measure | value |\n| --- | ---: |");
    println!(
        "| notification: write via node 1 → poll wakes on node 2, p50 | {:.1} ms |",
        pct(&lat, 0.5)
    );
    println!(
        "| notification: write via node 1 → poll wakes on node 2, p99 | {:.1} ms |",
        pct(&lat, 0.99)
    );

    // 2. A 500 KB file saved on one device appears on another.
    let profile = |i: usize, device: &str, token: String| Profile {
        servers: vec![url(i)],
        ca: Some(PathBuf::from(&manifest.ca_cert)),
        username: "bench".into(),
        device: device.into(),
        token,
    };
    let da = scratch.path().join("device-a");
    let db = scratch.path().join("device-b");
    std::fs::create_dir_all(&da)?;
    std::fs::create_dir_all(&db)?;
    let ca_client = login(0, "device-a").await?;
    let cb_client = login(1, "device-b").await?;
    let stop = Stop::default();
    let mut agents = Vec::new();
    for (dir, p) in [
        (
            da.clone(),
            profile(
                0,
                "device-a",
                ca_client.token().unwrap_or_default().to_string(),
            ),
        ),
        (
            db.clone(),
            profile(
                1,
                "device-b",
                cb_client.token().unwrap_or_default().to_string(),
            ),
        ),
    ] {
        let agent = Agent::open(p, Options::new(dir)).await?;
        let stop = stop.clone();
        agents.push(tokio::spawn(async move { agent.run(stop).await }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut seen = Vec::new();
    for i in 0..10 {
        let data = noise(500_000, 1000 + i);
        let want = blake3::hash(&data);
        let target = db.join(format!("f{i}.bin"));
        let t0 = Instant::now();
        write_atomic(&da.join(format!("f{i}.bin")), &data)?;
        loop {
            if let Ok(got) = std::fs::read(&target) {
                if blake3::hash(&got) == want {
                    break;
                }
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the file never reached the second device");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    stop.trigger();
    for a in agents {
        let _ = a.await;
    }
    seen.sort_by(|x, y| x.total_cmp(y));
    println!(
        "| 500 KB file saved on device A → complete on device B, p50 | {:.0} ms |",
        pct(&seen, 0.5)
    );
    println!(
        "| 500 KB file saved on device A → complete on device B, max of 10 | {:.0} ms |",
        pct(&seen, 1.0)
    );

    // 3. Bytes on the wire (both directions, TLS included) for edits of a
    // 100 MiB file the server has, through a counting proxy.
    let counter = Arc::new(AtomicU64::new(0));
    let node1: std::net::SocketAddr = url(0).trim_start_matches("https://").parse()?;
    let proxy = counting_proxy(node1, counter.clone()).await?;
    let proxied = format!("https://{proxy}");
    let key = strata_client::chunks::parse_key(&a.account().await?.chunk_key)?;
    let base = noise(100 << 20, 77);
    let local = scratch.path().join("delta.bin");
    let mut rows = Vec::new();
    for (name, variant) in [
        ("1 byte changed in the middle", 0),
        ("1 KiB inserted at the start", 1),
        ("1 MiB appended", 2),
    ] {
        let remote = format!("/delta/{variant}.bin");
        std::fs::write(&local, &base)?;
        let direct = login(0, "delta").await?;
        let mut t = Traffic::default();
        transfer::upload(
            &direct,
            &key,
            &UploadSpec {
                local: &local,
                remote: &remote,
                base_version: None,
                base: &[],
                on_conflict: "overwrite",
            },
            &mut t,
        )
        .await?;
        let edited = match variant {
            0 => {
                let mut v = base.clone();
                let mid = v.len() / 2;
                v[mid] ^= 0xff;
                v
            }
            1 => {
                let mut v = noise(1024, 5);
                v.extend_from_slice(&base);
                v
            }
            _ => {
                let mut v = base.clone();
                v.extend(noise(1 << 20, 6));
                v
            }
        };
        std::fs::write(&local, &edited)?;
        let via_proxy = Client::new(&proxied, Some(&ca))?
            .with_token(direct.token().unwrap_or_default().to_string());
        let blocks = direct.file_blocks(&remote).await?;
        let version = direct.metadata(&remote).await?.version;
        counter.store(0, Ordering::Relaxed);
        let mut t = Traffic::default();
        transfer::upload(
            &via_proxy,
            &key,
            &UploadSpec {
                local: &local,
                remote: &remote,
                base_version: Some(version),
                base: &blocks,
                on_conflict: "fail",
            },
            &mut t,
        )
        .await?;
        let wire = counter.load(Ordering::Relaxed);
        if direct.download(&remote).await? != edited {
            bail!("delta upload corrupted the file");
        }
        rows.push((name, wire));
    }
    drop(base);
    let rsync = match &opts.rsync_script {
        Some(script) => {
            let status = std::process::Command::new("bash")
                .arg(script)
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                bail!("rsync-delta.sh failed");
            }
            let results = std::env::var("PEERS_SCRATCH").unwrap_or_else(|_| "/tmp/peers".into());
            let text =
                std::fs::read_to_string(Path::new(&results).join("rsync").join("results.txt"))?;
            let find = |case: &str| {
                text.lines()
                    .find(|l| l.starts_with("daemon") && l.contains(case))
                    .and_then(|l| {
                        l.split_whitespace()
                            .find_map(|w| w.strip_prefix("wire_total="))
                    })
                    .and_then(|v| v.parse::<u64>().ok())
            };
            vec![
                find("a_1byte_mid"),
                find("b_1k_insert_start"),
                find("c_1m_append"),
            ]
        }
        None => vec![None, None, None],
    };
    println!("\ndelta sync of a 100 MiB file the server has (bytes on the wire, both directions):");
    println!(
        "| change | strata | rsync (same run) | strata / rsync |\n| --- | ---: | ---: | ---: |"
    );
    for ((name, wire), r) in rows.iter().zip(rsync) {
        match r {
            Some(r) => println!("| {name} | {wire} | {r} | {:.2} |", *wire as f64 / r as f64),
            None => println!("| {name} | {wire} | — | — |"),
        }
    }

    // 4. Initial sync of many small files.
    let many = scratch.path().join("many");
    for i in 0..opts.files {
        let p = many.join(format!("d{}", i % 100)).join(format!("f{i}.txt"));
        std::fs::create_dir_all(p.parent().context("parent")?)?;
        std::fs::write(&p, noise(1000 + (i % 3000), i as u64))?;
    }
    let c = login(2, "many").await?;
    let mut options = Options::new(many.clone());
    options.once = true;
    let agent = Agent::open(
        profile(2, "many", c.token().unwrap_or_default().to_string()),
        options,
    )
    .await?;
    let t0 = Instant::now();
    agent.run(Stop::default()).await?;
    let secs = t0.elapsed().as_secs_f64();
    let listed = c.list("/d0", false).await?.entries.len();
    if listed == 0 {
        bail!("the small files did not arrive");
    }
    println!(
        "\n| initial sync of {} small files (1-4 KB, 100 folders) | {:.0} files/s ({:.1} s) |",
        opts.files,
        opts.files as f64 / secs,
        secs
    );
    drop(nodes);
    Ok(())
}
