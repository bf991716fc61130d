//! Multi-process cluster harness: `strata init-cluster`, then one
//! `strata serve` process per node on its own 127.0.0.x address.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_client::Client;

use super::bin;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub manifest: Value,
    procs: BTreeMap<u64, Child>,
}

fn free_base_port(nodes: usize) -> u16 {
    // Each node listens on its own address, so only that address's two
    // ports must be free.
    for _ in 0..200 {
        let base = 20_000 + (rand::random::<u16>() % 20_000) * 2;
        let ok = (1..=nodes).all(|i| {
            let ip = format!("127.0.0.{i}");
            let api = base as usize + 2 * (i - 1);
            [api, api + 1]
                .iter()
                .all(|p| std::net::TcpListener::bind(format!("{ip}:{p}")).is_ok())
        });
        if ok {
            return base;
        }
    }
    panic!("no free port range");
}

impl Cluster {
    /// Generates a cluster of `nodes` (+ `spare`) and starts the initial nodes.
    pub fn start(nodes: usize, spare: usize, ec: &str) -> Self {
        Self::start_with(nodes, spare, ec, &[])
    }

    /// `start`, with more `strata init-cluster` arguments.
    pub fn start_with(nodes: usize, spare: usize, ec: &str, init_args: &[&str]) -> Self {
        let mut c = Self::generate(nodes, spare, ec, init_args);
        for i in 1..=nodes as u64 {
            c.launch(i);
        }
        c
    }

    /// Writes the cluster's files with `strata init-cluster` and starts
    /// nothing.
    pub fn generate(nodes: usize, spare: usize, ec: &str, init_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("cluster");
        let base = free_base_port(nodes + spare);
        let status = Command::new(bin())
            .args([
                "init-cluster",
                "--nodes",
                &nodes.to_string(),
                "--spare",
                &spare.to_string(),
            ])
            .args([
                "--ec",
                ec,
                "--host",
                "127.0.0.x",
                "--base-port",
                &base.to_string(),
            ])
            .args(["--repair-grace", "4s"])
            .args(init_args)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("init-cluster");
        assert!(status.success(), "init-cluster failed");
        // Fast repair scans and scrubbing for tests.
        for i in 1..=(nodes + spare) {
            let p = out.join(format!("node-{i}.toml"));
            let mut text = std::fs::read_to_string(&p).unwrap();
            text = text.replace(
                "[repair]\ngrace = \"4s\"\n",
                "[repair]\ngrace = \"4s\"\nscan_interval = \"1s\"\nscrub_rate = \"256MiB\"\nscrub_every = \"1s\"\n",
            );
            std::fs::write(&p, text).unwrap();
        }
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out.join("cluster.json")).unwrap()).unwrap();
        Cluster {
            dir,
            manifest,
            procs: BTreeMap::new(),
        }
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn node(&self, id: u64) -> &Value {
        self.manifest["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn url(&self, id: u64) -> String {
        self.node(id)["api_url"].as_str().unwrap().to_string()
    }

    pub fn launch(&mut self, id: u64) {
        let config = self.node(id)["config"].as_str().unwrap().to_string();
        let mut child = Command::new(bin())
            .args(["serve", "--config", &config])
            .env(
                "RUST_LOG",
                std::env::var("STRATA_TEST_LOG").unwrap_or_else(|_| "warn,openraft=off".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn strata serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("serving") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("node {id} did not start"));
        self.procs.insert(id, child);
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.procs.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process stays, its sockets stay open, and it answers
    /// nothing until `resume`.
    pub fn pause(&mut self, id: u64) {
        let pid = self.procs[&id].id();
        let ok = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "SIGSTOP {pid}");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&mut self, id: u64) {
        let pid = self.procs[&id].id();
        let ok = Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "SIGCONT {pid}");
    }

    /// SIGTERM, waiting for a clean exit.
    pub fn stop(&mut self, id: u64) {
        if let Some(mut c) = self.procs.remove(&id) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn running(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    pub fn ca(&self) -> Vec<u8> {
        std::fs::read(self.manifest["ca_cert"].as_str().unwrap()).unwrap()
    }

    pub fn client(&self, id: u64) -> Client {
        Client::new(&self.url(id), Some(&self.ca())).unwrap()
    }

    /// The same session, through another node.
    pub fn via(&self, id: u64, c: &Client) -> Client {
        self.client(id).with_token(c.token().unwrap())
    }

    pub async fn user(&self, via: u64, name: &str) -> Client {
        let c = self.client(via);
        for _ in 0..100 {
            match c.signup(name, "correct horse battery").await {
                Ok(_) => break,
                Err(e) if e.status() == Some(409) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let mut c = self.client(via);
        let mut last = None;
        for _ in 0..100 {
            match c.login(name, "correct horse battery", Some("test")).await {
                Ok(_) => return c,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("login failed: {last:?}");
    }

    pub async fn admin(&self, via: u64) -> Client {
        let mut c = self.client(via);
        let pw = self.manifest["admin"]["password"]
            .as_str()
            .unwrap()
            .to_string();
        for _ in 0..150 {
            if c.login("admin", &pw, Some("admin")).await.is_ok() {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("admin login failed");
    }

    pub async fn status(&self, admin: &Client) -> Value {
        get_json(admin, "/api/v1/admin/cluster").await
    }

    pub async fn verify(&self, admin: &Client) -> Value {
        get_json(admin, "/api/v1/admin/verify").await
    }

    /// Runs `strata admin` against the cluster folder.
    pub fn admin_cli(&self, args: &[&str]) -> String {
        let out = Command::new(bin())
            .arg("admin")
            .arg("--cluster")
            .arg(self.out())
            .args(args)
            .output()
            .expect("strata admin");
        assert!(
            out.status.success(),
            "strata admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until every shard of every block is where the metadata says,
    /// intact, and the repair backlog is empty.
    pub async fn wait_fully_repaired(&self, admin: &Client, within: Duration) -> Value {
        self.wait_repaired_at(admin, 0, within).await
    }

    /// As `wait_fully_repaired`, after a repair scan of layout `version`.
    pub async fn wait_repaired_at(&self, admin: &Client, version: u64, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.verify(admin).await;
            let s = self.status(admin).await;
            let scanned = s["repair"]["layout_version"].as_u64().unwrap_or(0) >= version;
            // Idle: a completed scan found nothing to rebuild or move and
            // every block has all its shards on live nodes.
            if scanned
                && v["shards_present"] == v["shards_expected"]
                && s["repair_backlog"] == 0
                && s["repair_state"] == "idle"
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "not repaired in {within:?}: {v}\n{s}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn get_json(c: &Client, path: &str) -> Value {
    for _ in 0..50 {
        if let Ok(r) = c.request(reqwest::Method::GET, path).send().await {
            if r.status().is_success() {
                return r.json().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("GET {path} kept failing");
}

/// Retries an idempotent call while the cluster settles (bounded).
pub async fn retry<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    mut f: impl FnMut() -> F,
) -> T {
    let mut last = None;
    for _ in 0..100 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("still failing: {last:?}");
}

/// Uploads `n` files of noise, `dir/<i>.bin` of `base + i * step` bytes,
/// through `c` (retried while the cluster settles); returns path and content.
pub async fn upload_files(
    c: &Client,
    dir: &str,
    n: u64,
    (base, step): (usize, usize),
    seed: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..n {
        let data = super::noise(base + i as usize * step, seed + i);
        let path = format!("{dir}/{i}.bin");
        retry(|| c.upload(&path, data.clone())).await;
        files.push((path, data));
    }
    files
}

impl Cluster {
    /// Every file downloads byte for byte through each of `nodes`.
    pub async fn assert_reads(&self, c: &Client, nodes: &[u64], files: &[(String, Vec<u8>)]) {
        for node in nodes {
            let r = self.via(*node, c);
            for (path, data) in files {
                assert!(
                    retry(|| r.download(path)).await == *data,
                    "{path} via {node}"
                );
            }
        }
    }
}
