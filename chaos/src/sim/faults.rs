//! The simulation's fault task: one fault at a time, chosen, aimed and
//! timed by the seed, healed before the next; a fault that damages shards
//! waits for repair before the next one, so the damage never exceeds
//! what the erasure profile survives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::cluster::SimCluster;
use super::workload::{violation, Trace};
use super::SeedOutcome;

/// How long repair may take to put every shard back after a disk fault.
const REPAIR_WAIT: Duration = Duration::from_secs(120);

const KINDS: [&str; 10] = [
    "kill",
    "kill_leader",
    "pause",
    "partition",
    "loss",
    "latency",
    "bitrot",
    "wiped_disk",
    "slow_disk",
    "clock_jump",
];

/// Injects faults until `done`; returns how many of each kind.
pub async fn run(
    c: Arc<SimCluster>,
    mut rng: ChaCha8Rng,
    trace: Trace,
    done: Arc<AtomicBool>,
) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let n = c.nodes.len();
    loop {
        let wait = rng.random_range(200..2500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if done.load(Ordering::SeqCst) {
            return counts;
        }
        let kind = KINDS[rng.random_range(0..KINDS.len())];
        let hold = Duration::from_millis(rng.random_range(300..6000));
        let mut i = rng.random_range(0..n);
        if kind == "kill_leader" || (kind == "partition" && rng.random_bool(0.5)) {
            match c.leader() {
                Some(l) => i = l,
                None => {
                    trace.event(format_args!("fault {kind} skipped: no leader"));
                    continue;
                }
            }
        }
        let id = c.nodes[i].id;
        trace.event(format_args!(
            "fault {kind} node {id} for {} ms",
            hold.as_millis()
        ));
        match kind {
            "kill" | "kill_leader" => {
                c.stop_node(i).await;
                if rng.random_bool(0.5) && tear_wal_tail(&c.nodes[i].wal_dir(), &mut rng) {
                    *counts.entry("torn_write".into()).or_default() += 1;
                }
                tokio::time::sleep(hold).await;
                restart(&c, i, &trace).await;
            }
            "pause" => {
                c.switch.set_down(id, true);
                tokio::time::sleep(hold).await;
                c.switch.set_down(id, false);
            }
            "partition" => {
                let others: Vec<_> = c.nodes.iter().map(|m| m.id).filter(|o| *o != id).collect();
                for o in &others {
                    c.switch.partition(id, *o, true);
                }
                tokio::time::sleep(hold).await;
                for o in &others {
                    c.switch.partition(id, *o, false);
                }
            }
            "loss" => {
                c.switch.set_drop_one_in(rng.random_range(2..8));
                tokio::time::sleep(hold).await;
                c.switch.set_drop_one_in(0);
            }
            "latency" => {
                c.switch
                    .set_delay(Duration::from_millis(rng.random_range(2..150)));
                tokio::time::sleep(hold).await;
                c.switch.set_delay(Duration::ZERO);
            }
            "bitrot" => {
                if !flip_a_byte(c.nodes[i].disk(), &mut rng) {
                    trace.event(format_args!("fault bitrot skipped: no shard"));
                    continue;
                }
                wait_repaired(&c, &trace).await;
            }
            "wiped_disk" => {
                c.stop_node(i).await;
                let disk = c.nodes[i].disk().to_path_buf();
                let _ = std::fs::remove_dir_all(&disk);
                let _ = std::fs::create_dir_all(&disk);
                restart(&c, i, &trace).await;
                wait_repaired(&c, &trace).await;
            }
            "slow_disk" => {
                // Every shard write of the node waits (in cluster time).
                let ms = rng.random_range(20..800);
                c.nodes[i].disk_delay_ms.store(ms, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                c.nodes[i].disk_delay_ms.store(0, Ordering::SeqCst);
            }
            "clock_jump" => {
                let secs: i64 = rng.random_range(1..7200);
                let sign = if rng.random_bool(0.5) { 1 } else { -1 };
                c.nodes[i].clock.set_skew(sign * secs * 1000);
                tokio::time::sleep(hold).await;
                c.nodes[i].clock.set_skew(0);
            }
            _ => continue,
        }
        *counts.entry(kind.into()).or_default() += 1;
    }
}

async fn restart(c: &SimCluster, i: usize, trace: &Trace) {
    for attempt in 0..5 {
        match c.start_node(i).await {
            Ok(()) => return,
            Err(e) => {
                trace.event(format_args!(
                    "restart {} failed ({attempt}): {e}",
                    c.nodes[i].id
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Every fault healed and every node running: the state the oracle checks.
pub async fn heal(c: &SimCluster, trace: &Trace, out: &mut SeedOutcome) {
    c.switch.set_drop_one_in(0);
    c.switch.set_delay(Duration::ZERO);
    for a in &c.nodes {
        a.clock.set_skew(0);
        a.disk_delay_ms.store(0, Ordering::SeqCst);
        c.switch.set_down(a.id, false);
        for b in &c.nodes {
            if a.id != b.id {
                c.switch.partition(a.id, b.id, false);
            }
        }
    }
    for i in 0..c.nodes.len() {
        if c.nodes[i].get().is_none() {
            restart(c, i, trace).await;
            if c.nodes[i].get().is_none() {
                out.violations.push(violation(
                    out.seed,
                    "nodes_restart",
                    format!("node {} does not start again", c.nodes[i].id),
                ));
            }
        }
    }
}

/// Waits (bounded) until every shard is in place, as `verify` counts.
pub async fn wait_repaired(c: &SimCluster, trace: &Trace) -> Option<strata_node::verify::Census> {
    let deadline = tokio::time::Instant::now() + REPAIR_WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(census) = census(c).await {
            if census.complete() {
                trace.event(format_args!("repaired"));
                return Some(census);
            }
            last = Some(census);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    trace.event(format_args!("not repaired"));
    last
}

/// The shard census through the first running node.
pub async fn census(c: &SimCluster) -> Option<strata_node::verify::Census> {
    let node = c.nodes.iter().find_map(|n| n.get())?;
    let reader = tokio::time::timeout(Duration::from_secs(10), node.meta().linearizable())
        .await
        .ok()?
        .ok()?
        .clone();
    let net = node.cluster().map(|cl| cl.net());
    strata_node::verify::census(&reader, node.blocks(), net, node.meta().node_id())
        .await
        .ok()
}

/// Every regular file under `dir`, sorted (the seed picks one by index).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Flips one bit of one shard pack on `disk`, in place: the file is not
/// rewritten, so shards its writer appends meanwhile are untouched.
fn flip_a_byte(disk: &Path, rng: &mut ChaCha8Rng) -> bool {
    use std::os::unix::fs::FileExt;
    let packs: Vec<(PathBuf, u64)> = files_under(disk)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .filter_map(|p| {
            let len = std::fs::metadata(&p).ok()?.len();
            (len > 0).then_some((p, len))
        })
        .collect();
    if packs.is_empty() {
        return false;
    }
    let (f, len) = &packs[rng.random_range(0..packs.len())];
    let at = rng.random_range(0..*len);
    let bit = 1u8 << rng.random_range(0..8);
    let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(f) else {
        return false;
    };
    let mut b = [0u8; 1];
    if file.read_exact_at(&mut b, at).is_err() {
        return false;
    }
    b[0] ^= bit;
    file.write_all_at(&b, at).is_ok()
}

/// Leaves a torn record after the last one of the newest WAL segment: a
/// write the crash cut short (its length says more bytes than follow).
fn tear_wal_tail(wal: &Path, rng: &mut ChaCha8Rng) -> bool {
    const HEADER: usize = 16;
    let Some(seg) = files_under(wal)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
    else {
        return false;
    };
    let Ok(bytes) = std::fs::read(&seg) else {
        return false;
    };
    // Walk the records: len(u32) crc(u32) then len bytes of kind and body.
    let mut at = HEADER;
    while at + 8 <= bytes.len() {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if len == 0 {
            break;
        }
        at += 8 + len;
    }
    let len: u32 = rng.random_range(64..4096);
    let written = rng.random_range(1..len as usize);
    if at + 8 + len as usize >= bytes.len() {
        return false;
    }
    let mut torn = Vec::with_capacity(8 + written);
    torn.extend_from_slice(&len.to_le_bytes());
    torn.extend_from_slice(&rng.random::<u32>().to_le_bytes());
    torn.extend((0..written).map(|_| rng.random::<u8>() | 1));
    use std::os::unix::fs::FileExt;
    match std::fs::OpenOptions::new().write(true).open(&seg) {
        Ok(f) => f.write_all_at(&torn, at as u64).is_ok(),
        Err(_) => false,
    }
}
