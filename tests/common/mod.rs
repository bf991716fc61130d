//! Test harness: runs the real `strata` binary in a temporary folder and
//! talks to it over HTTPS.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_client::Client;

pub mod agent;
pub mod cluster;

/// The `strata` binary under test: this build's, or another given in
/// `STRATA_TEST_BIN` (to run the suite against an earlier release, for
/// instance to see a test reproduce the bug it guards against).
pub fn bin() -> String {
    std::env::var("STRATA_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_strata").to_string())
}

/// A running drive. Killed (by its own pid) when dropped.
pub struct Drive {
    pub dir: tempfile::TempDir,
    pub url: String,
    child: Option<Child>,
    mode: Mode,
    listen: String,
}

#[derive(Clone)]
enum Mode {
    Dev,
    Serve(PathBuf),
}

fn wait_for_url(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving ").nth(1) {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("strata did not report its URL within 120 s")
}

impl Drive {
    /// `strata dev` in a fresh folder, on a free port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = Drive {
            dir,
            url: String::new(),
            child: None,
            mode: Mode::Dev,
            listen: "127.0.0.1:0".into(),
        };
        d.launch();
        d
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(bin());
        match &self.mode {
            Mode::Dev => {
                cmd.arg("dev")
                    .arg("--nodes")
                    .arg("1")
                    .arg("--data")
                    .arg(self.data())
                    .arg("--listen")
                    .arg(&self.listen);
            }
            Mode::Serve(cfg) => {
                cmd.arg("serve").arg("--config").arg(cfg);
            }
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("STRATA_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn strata");
        self.url = wait_for_url(&mut child);
        // Restarts keep the port, so clients and upload URLs stay valid.
        self.listen = self.url.trim_start_matches("https://").to_string();
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "strata exited with {status}");
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("strata did not stop within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Stops, appends `extra` TOML to the dev node config, and runs it with
    /// `strata serve --config`.
    pub fn reconfigure(&mut self, extra: &str) {
        self.stop();
        let cfg = self.data().join("node-1").join("node.toml");
        let mut text = std::fs::read_to_string(&cfg).expect("node.toml");
        text.push_str(extra);
        let custom = self.data().join("node-1").join("custom.toml");
        std::fs::write(&custom, text).expect("write config");
        self.mode = Mode::Serve(custom);
        self.launch();
    }

    /// Stops, edits the dev node config with `edit`, and runs it with
    /// `strata serve --config`.
    pub fn reconfigure_text(&mut self, edit: impl FnOnce(String) -> String) {
        self.stop();
        let cfg = self.data().join("node-1").join("node.toml");
        let text = edit(std::fs::read_to_string(&cfg).expect("node.toml"));
        let custom = self.data().join("node-1").join("custom.toml");
        std::fs::write(&custom, text).expect("write config");
        self.mode = Mode::Serve(custom);
        self.launch();
    }

    pub fn ca(&self) -> Vec<u8> {
        std::fs::read(self.data().join("tls").join("cert.pem")).expect("cert")
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(&self.ca())).expect("client")
    }

    /// The operator's admin account, logged in.
    pub async fn admin(&self) -> Client {
        let pw =
            std::fs::read_to_string(self.data().join("admin-password")).expect("admin password");
        let mut c = self.client();
        c.login("admin", pw.trim(), Some("admin"))
            .await
            .expect("admin login");
        c
    }

    /// A new account, logged in.
    pub async fn user(&self, name: &str) -> Client {
        let c = self.client();
        c.signup(name, "correct horse battery")
            .await
            .expect("signup");
        let mut c = self.client();
        c.login(
            name,
            "correct horse battery",
            Some(&format!("{name}-laptop")),
        )
        .await
        .expect("login");
        c
    }

    /// Peak resident memory of the server, from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Drive {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deterministic incompressible bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    fill_noise(&mut out, seed);
    out
}

pub fn fill_noise(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// A stream of `len` noise bytes generated on the fly (nothing held whole).
pub fn noise_stream(
    len: u64,
    seed: u64,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static {
    const PIECE: u64 = 1 << 20;
    futures::stream::unfold(0u64, move |sent| async move {
        if sent >= len {
            return None;
        }
        let n = PIECE.min(len - sent) as usize;
        let mut buf = vec![0u8; n];
        fill_noise(&mut buf, seed ^ (sent / PIECE));
        Some((Ok(bytes::Bytes::from(buf)), sent + n as u64))
    })
}

/// BLAKE3 of what `noise_stream(len, seed)` yields.
pub fn noise_stream_hash(len: u64, seed: u64) -> blake3::Hash {
    const PIECE: u64 = 1 << 20;
    let mut h = blake3::Hasher::new();
    let mut sent = 0;
    let mut buf = vec![0u8; PIECE as usize];
    while sent < len {
        let n = PIECE.min(len - sent) as usize;
        fill_noise(&mut buf[..n], seed ^ (sent / PIECE));
        h.update(&buf[..n]);
        sent += n as u64;
    }
    h.finalize()
}

/// A counter of `/metrics`, read with `c` (an admin's session): the read
/// must succeed and the counter be there.
pub async fn metric(c: &Client, name: &str) -> u64 {
    let r = c
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200, "GET /metrics");
    let text = r.text().await.expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

pub fn status_of<T: std::fmt::Debug>(r: Result<T, strata_client::ClientError>) -> u16 {
    match r {
        Err(e) => e
            .status()
            .unwrap_or_else(|| panic!("not an API error: {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

pub fn python_has(module: &str) -> bool {
    Command::new("python3")
        .arg("-c")
        .arg(format!("import {module}"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
