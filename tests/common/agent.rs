//! Sync agents (`strata sync`) as separate processes, one folder each.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::bin;

pub struct Agent {
    pub dir: PathBuf,
    pub profile: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// Logs in through `server` as `device` and prepares a folder.
    pub fn login(
        base: &Path,
        name: &str,
        server: &str,
        ca: &Path,
        user: &str,
        password: &str,
    ) -> Self {
        let dir = base.join(format!("{name}-folder"));
        let profile = base.join(format!("{name}-profile"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(bin())
            .args([
                "login",
                "--server",
                server,
                "--username",
                user,
                "--password-stdin",
                "--device",
                name,
            ])
            .arg("--ca")
            .arg(ca)
            .arg("--profile")
            .arg(&profile)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "strata login failed");
        Self {
            dir,
            profile,
            child: None,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(bin())
            .arg("sync")
            .arg(&self.dir)
            .arg("--profile")
            .arg(&self.profile)
            .args(["--rescan-s", "2", "--mass-delete-min", "50"])
            .env(
                "RUST_LOG",
                std::env::var("STRATA_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // Write beside, then rename, as editors do.
        let tmp = p.with_file_name(format!(".strata-test-{}", rand::random::<u32>()));
        std::fs::write(&tmp, data).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Everything under `dir` that syncs (the agent's ignore rules): path → content hash
/// (folders map to "dir").
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if strata_client::sync::scan::ignored(&name) {
                continue;
            }
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.insert(rel, blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    out
}

/// Waits until every folder holds the same tree (and `check` accepts it).
pub async fn converge(
    agents: &[&Agent],
    within: Duration,
    check: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let trees: Vec<_> = agents.iter().map(|a| tree(&a.dir)).collect();
        if trees.windows(2).all(|w| w[0] == w[1]) && check(&trees[0]) {
            return trees.into_iter().next().unwrap();
        }
        if Instant::now() > deadline {
            for (a, t) in agents.iter().zip(&trees) {
                eprintln!("{}: {:?}", a.dir.display(), t.keys().collect::<Vec<_>>());
            }
            panic!("folders did not converge within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
