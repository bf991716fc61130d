//! Network faults between nodes, set up in a network namespace the
//! harness made for itself (`enter_private_network`): nothing outside the
//! run is touched, and nothing in the product knows.
//!
//! Nodes talk to each other from and to their p2p ports (the transport
//! reuses its listening port when it dials), so a packet from node i to
//! node j is one with source port P(i) and destination port P(j).
//! Partitions and loss are nftables rules on the output hook (drop all,
//! or a random quarter); added latency is an HTB class of a few Mbit/s
//! that u32 filters steer a node's traffic into, so its packets queue
//! (this kernel has no `netem`; a squeezed link is the delay it can add).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::process::Command;

use crate::schedule::{FaultKind, Planned};

/// Moves this process into network and mount namespaces of its own,
/// with its loopback up and every mount private (a file system the
/// harness mounts is gone with it). Call before any thread starts:
/// threads created later inherit them, and so do the nodes the harness
/// starts. Needs root; returns why not otherwise.
pub fn enter_private_network() -> Result<(), String> {
    // SAFETY: unshare(2) only changes this process's namespaces; it
    // touches no memory.
    if unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) } != 0 {
        return Err(format!(
            "private namespaces need root: {}",
            std::io::Error::last_os_error()
        ));
    }
    let private = std::process::Command::new("mount")
        .args(["--make-rprivate", "/"])
        .status()
        .map_err(|e| format!("mount --make-rprivate /: {e}"))?;
    if !private.success() {
        return Err("mount --make-rprivate / failed".into());
    }
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("ip link set lo up: {e}"))?;
    if !up.success() {
        return Err("ip link set lo up failed".into());
    }
    Ok(())
}

pub struct NetFaults {
    /// p2p port of each node.
    ports: BTreeMap<u64, u16>,
    next: AtomicU32,
}

async fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

const TABLE: &str = "strata_chaos";
/// The HTB class of the squeezed link.
const SLOW: &str = "1:2";

impl NetFaults {
    /// Makes the nftables table and the HTB classes on `lo`.
    pub async fn setup(ports: BTreeMap<u64, u16>) -> Result<Self, String> {
        run("nft", &["add", "table", "inet", TABLE]).await?;
        run(
            "tc",
            &[
                "qdisc", "replace", "dev", "lo", "root", "handle", "1:", "htb", "default", "1",
            ],
        )
        .await?;
        run(
            "tc",
            &[
                "class", "replace", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate",
                "100gbit", "quantum", "60000",
            ],
        )
        .await?;
        run(
            "tc",
            &[
                "class", "replace", "dev", "lo", "parent", "1:", "classid", SLOW, "htb", "rate",
                "4mbit", "ceil", "4mbit",
            ],
        )
        .await?;
        Ok(Self {
            ports,
            next: AtomicU32::new(1),
        })
    }

    fn port(&self, n: u64) -> Result<String, String> {
        self.ports
            .get(&n)
            .map(|p| p.to_string())
            .ok_or_else(|| format!("no port for node {n}"))
    }

    /// Injects `p`, holds it, heals it. Returns whether it was injected.
    pub async fn apply(&self, p: &Planned, nodes: u64) -> bool {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut rng = ChaCha8Rng::seed_from_u64(p.salt);
        let r = match p.kind {
            FaultKind::Partition | FaultKind::Loss => {
                let mut pairs: Vec<(u64, u64)> = Vec::new();
                let mut share = 100;
                if p.kind == FaultKind::Partition {
                    let all: Vec<u64> = (1..=nodes).collect();
                    let (a, b): (Vec<u64>, Vec<u64>) = match rng.random_range(0..3) {
                        // One node alone.
                        0 => all.iter().partition(|n| **n == p.node),
                        // A minority of two against the rest (five nodes or more).
                        1 if nodes >= 5 => all.iter().partition(|n| **n == p.node || **n == p.peer),
                        // A bridge: `node` talks to everyone, the others are
                        // split in two halves that cannot talk to each other.
                        _ => {
                            let rest: Vec<u64> =
                                all.iter().copied().filter(|n| *n != p.node).collect();
                            let half = rest.len() / 2;
                            (rest[..half].to_vec(), rest[half..].to_vec())
                        }
                    };
                    for x in &a {
                        for y in &b {
                            pairs.push((*x, *y));
                            pairs.push((*y, *x));
                        }
                    }
                } else {
                    // One way only: everything, or a random quarter.
                    pairs.push((p.node, p.peer));
                    if rng.random_bool(0.5) {
                        share = 25;
                    }
                }
                self.drop_between(id, &pairs, share, p.hold_ms).await
            }
            FaultKind::Latency => self.squeeze(id, p.node, nodes, p.hold_ms).await,
            _ => return false,
        };
        match r {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "network fault");
                false
            }
        }
    }

    async fn drop_between(
        &self,
        id: u32,
        pairs: &[(u64, u64)],
        share: u32,
        hold_ms: u64,
    ) -> Result<(), String> {
        if pairs.is_empty() {
            return Err("nothing to cut".into());
        }
        let chain = format!("f{id}");
        run(
            "nft",
            &[
                "add",
                "chain",
                "inet",
                TABLE,
                &chain,
                "{ type filter hook output priority 0; }",
            ],
        )
        .await?;
        let mut r = Ok(());
        for (a, b) in pairs {
            let (pa, pb) = (self.port(*a)?, self.port(*b)?);
            let mut rule = vec![
                "add", "rule", "inet", TABLE, &chain, "tcp", "sport", &pa, "tcp", "dport", &pb,
            ];
            let cut = share.to_string();
            if share < 100 {
                rule.extend(["numgen", "random", "mod", "100", "<", &cut]);
            }
            rule.push("drop");
            r = run("nft", &rule).await;
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() {
            tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        }
        let _ = run("nft", &["flush", "chain", "inet", TABLE, &chain]).await;
        if let Err(e) = run("nft", &["delete", "chain", "inet", TABLE, &chain]).await {
            tracing::warn!(error = %e, "removing a network fault");
        }
        r
    }

    async fn squeeze(&self, id: u32, node: u64, nodes: u64, hold_ms: u64) -> Result<(), String> {
        let pref = (100 + id % 30_000).to_string();
        let pn = self.port(node)?;
        let mut r = Ok(());
        for other in (1..=nodes).filter(|n| *n != node) {
            let po = self.port(other)?;
            r = run(
                "tc",
                &[
                    "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", &pref,
                    "u32", "match", "ip", "sport", &pn, "0xffff", "match", "ip", "dport", &po,
                    "0xffff", "flowid", SLOW,
                ],
            )
            .await;
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() {
            tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        }
        if let Err(e) = run(
            "tc",
            &[
                "filter", "del", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", &pref,
            ],
        )
        .await
        {
            tracing::warn!(error = %e, "removing a network fault");
        }
        r
    }

    /// Removes the rules and classes (the namespace goes with the
    /// process anyway).
    pub async fn teardown(&self) {
        let _ = run("nft", &["delete", "table", "inet", TABLE]).await;
        let _ = run("tc", &["qdisc", "del", "dev", "lo", "root"]).await;
    }
}
