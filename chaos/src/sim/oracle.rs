//! The simulation's oracle, after healing: the invariants of the process
//! run (same names), checked through every node's drive service.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster_config::UserId;
use raft_meta::DrivePath;
use strata_node::drive::{Actor, DriveError, Seen};
use strata_node::Node;

use super::cluster::SimCluster;
use super::faults;
use super::workload::{violation, Worker};
use super::SeedOutcome;
use crate::model::Content;

/// How long a node may take to answer a read after healing.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A file as a node serves it: its head's hash and its bytes.
pub struct Got {
    pub hash: [u8; 32],
    pub bytes: Vec<u8>,
}

/// Reads the head of `p` through `node` after a linearizable read:
/// `Ok(None)` when there is no file.
pub async fn read_file(node: &Node, user: UserId, p: &str) -> Result<Option<Got>, String> {
    let reader = node
        .meta()
        .linearizable()
        .await
        .map_err(|e| e.to_string())?
        .clone();
    read_with(node, reader, user, p).await
}

/// `read_file` from the node's own replica of the metadata, as it is now.
#[cfg(test)]
pub async fn read_local(node: &Node, user: UserId, p: &str) -> Result<Option<Got>, String> {
    read_with(node, node.meta().local().clone(), user, p).await
}

async fn read_with(
    node: &Node,
    reader: raft_meta::MetaReader,
    user: UserId,
    p: &str,
) -> Result<Option<Got>, String> {
    let path = DrivePath::parse(p).map_err(|e| e.to_string())?;
    let Some((id, _)) = reader.live(&user, &path).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let Some((_, version)) = reader
        .versions(&user, &id, 1)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
    else {
        return Err("a live file without versions".into());
    };
    let bytes = read_blocks(node, &reader, user, &version.blocks, version.size).await?;
    Ok(Some(Got {
        hash: version.content_hash,
        bytes,
    }))
}

async fn read_blocks(
    node: &Node,
    reader: &raft_meta::MetaReader,
    user: UserId,
    blocks: &[raft_meta::records::BlockRef],
    size: u64,
) -> Result<Vec<u8>, String> {
    let mut stream = strata_node::read::open_range(
        node.blocks().clone(),
        reader.clone(),
        user,
        blocks.to_vec(),
        0,
        size,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(size as usize);
    while let Some(piece) = futures::StreamExt::next(&mut stream).await {
        out.extend_from_slice(&piece.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Whether what a node served is one of the contents the path may hold,
/// byte for byte; `Some(reason)` when it is not.
pub fn judge(may: &[Option<Content>], got: Option<&Got>) -> Option<String> {
    match got {
        None if may.contains(&None) => None,
        None => Some("missing: the file was acknowledged".into()),
        Some(g) => {
            let Some(c) = may.iter().flatten().find(|c| c.hash == g.hash) else {
                return Some(format!(
                    "holds {} which the path never had (may hold {} contents)",
                    &cluster_config::ids::to_hex(&g.hash)[..16],
                    may.len()
                ));
            };
            if g.bytes.len() as u64 != c.size || *blake3::hash(&g.bytes).as_bytes() != c.hash {
                return Some(format!(
                    "{} bytes served do not match the {} bytes written",
                    g.bytes.len(),
                    c.size
                ));
            }
            None
        }
    }
}

pub async fn check(c: &SimCluster, workers: &mut [Worker], out: &mut SeedOutcome) {
    repair_restores_shards(c, out).await;
    acknowledged_readable(c, workers, out).await;
    listing_matches_model(c, workers, out).await;
    history_matches_model(c, workers, out).await;
    replicas_agree(c, workers, out).await;
    users_isolated(c, workers, out).await;
    linearizable(c, workers, out).await;
    refcounts_match(c, out).await;
    change_feed_replays(c, workers, out).await;
}

/// Each user's change feed, replayed from its first line, rebuilds each
/// worker's folder exactly as it is listed after healing: every change is
/// in it once and in order (a missing, doubled or reordered change leaves
/// another tree), with the content the worker wrote.
async fn change_feed_replays(c: &SimCluster, workers: &[Worker], out: &mut SeedOutcome) {
    use raft_meta::records::{ChangeKind, EntryKind};
    let Some((node, reader)) = current(c).await else {
        return;
    };
    for w in workers {
        let user = w.actor.user;
        // A trimmed feed cannot be replayed from the start (100 000 lines
        // a user: not in a seed).
        match reader.user(&user) {
            Ok(Some(u)) if u.journal_floor <= 1 => {}
            _ => continue,
        }
        count(out, "change_feed_exactly_once", 1);
        let lines = match reader.journal(&user, 0, 1_000_000) {
            Ok(l) => l,
            Err(e) => {
                out.violations.push(violation(
                    out.seed,
                    "change_feed_exactly_once",
                    format!("{}: {e}", w.folder),
                ));
                continue;
            }
        };
        let prefix = format!("{}/", w.folder);
        let mine = |p: &str| p.starts_with(&prefix);
        let mut tree: BTreeMap<String, [u8; 32]> = BTreeMap::new();
        let mut bad = Vec::new();
        for pair in lines.windows(2) {
            if pair[1].0 <= pair[0].0 {
                bad.push(format!("line {} after line {}", pair[1].0, pair[0].0));
            }
        }
        for (seq, ch) in &lines {
            if ch.entry_kind != EntryKind::File {
                continue;
            }
            match ch.kind {
                ChangeKind::Created | ChangeKind::Modified if mine(&ch.path) => {
                    if !w
                        .files
                        .values()
                        .any(|m| m.past.iter().any(|c| c.hash == ch.content_hash))
                    {
                        bad.push(format!(
                            "line {seq}: {} with content never written",
                            ch.path
                        ));
                    }
                    tree.insert(ch.path.clone(), ch.content_hash);
                }
                ChangeKind::Deleted if mine(&ch.path) && tree.remove(&ch.path).is_none() => {
                    bad.push(format!("line {seq}: {} deleted, not there", ch.path));
                }
                ChangeKind::Moved => {
                    let from = ch.from.as_deref().unwrap_or_default();
                    let moved = if mine(from) { tree.remove(from) } else { None };
                    if mine(&ch.path) {
                        match moved {
                            Some(h) => {
                                tree.insert(ch.path.clone(), h);
                            }
                            None => bad.push(format!("line {seq}: {from} moved, not there")),
                        }
                    }
                }
                _ => {}
            }
        }
        let listed = match listing(&node, &w.actor, &w.folder).await {
            Ok(l) => l,
            Err(_) => continue,
        };
        // A worker's folder holds files only.
        let files: BTreeMap<String, [u8; 32]> =
            listed.into_iter().map(|(p, (_, hash))| (p, hash)).collect();
        if tree != files {
            let only_feed: Vec<&String> = tree.keys().filter(|p| !files.contains_key(*p)).collect();
            let only_tree: Vec<&String> = files.keys().filter(|p| !tree.contains_key(*p)).collect();
            let differ: Vec<&String> = tree
                .iter()
                .filter(|(p, h)| files.get(*p).is_some_and(|f| f != *h))
                .map(|(p, _)| p)
                .collect();
            bad.push(format!(
                "replayed feed and listing differ: only in the feed {only_feed:?}, only listed {only_tree:?}, other content {differ:?}"
            ));
        }
        for b in bad.into_iter().take(5) {
            out.violations.push(violation(
                out.seed,
                "change_feed_exactly_once",
                format!("{} (user {user}): {b}", w.folder),
            ));
        }
    }
}

/// On every node, each block's reference count equals the references its
/// metadata holds (versions, open uploads): a count too high keeps a
/// block forever, one too low lets collection delete data in use.
async fn refcounts_match(c: &SimCluster, out: &mut SeedOutcome) {
    for n in &c.nodes {
        let Some(node) = n.get() else { continue };
        match node.meta().local().reference_audit() {
            Ok(audit) => {
                count(out, "refcounts_match", audit.blocks);
                for w in audit.wrong.iter().take(5) {
                    out.violations.push(violation(
                        out.seed,
                        "refcounts_match",
                        format!(
                            "node {}: block {} of user {}: count {:?}, {} references",
                            n.id,
                            &w.block.to_string()[..16],
                            w.user,
                            w.recorded,
                            w.counted
                        ),
                    ));
                }
            }
            Err(e) => out.violations.push(violation(
                out.seed,
                "refcounts_match",
                format!("node {}: {e}", n.id),
            )),
        }
    }
}

/// A running node, and its metadata as of now (a linearizable read).
async fn current(c: &SimCluster) -> Option<(std::sync::Arc<Node>, raft_meta::MetaReader)> {
    let node = c.nodes.iter().find_map(|n| n.get())?;
    let reader = node.meta().linearizable().await.ok()?.clone();
    Some((node, reader))
}

/// Why a bounded call gave no value: its error, or no answer in time.
fn why_not<T>(r: Result<Result<T, DriveError>, tokio::time::error::Elapsed>) -> String {
    match r {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => "answered".into(),
        Err(_) => "no answer".into(),
    }
}

fn count(out: &mut SeedOutcome, invariant: &str, n: u64) {
    *out.checks.entry(invariant.into()).or_default() += n;
}

/// After healing, every block is back to K+M shards in place.
async fn repair_restores_shards(c: &SimCluster, out: &mut SeedOutcome) {
    count(out, "repair_restores_shards", 1);
    let trace = super::workload::Trace::detached();
    match faults::wait_repaired(c, &trace).await {
        Some(census) if census.complete() => {}
        Some(census) => out.violations.push(violation(
            out.seed,
            "repair_restores_shards",
            format!(
                "after healing: {} of {} shards present, {} blocks lost, {} unplaced: {:?}",
                census.shards_present,
                census.shards_expected,
                census.blocks_lost,
                census.shards_unplaced,
                census.lost_files
            ),
        )),
        None => out.violations.push(violation(
            out.seed,
            "repair_restores_shards",
            "no node answered the census after healing".into(),
        )),
    }
}

/// Every path the model knows, through every node, byte for byte; a path
/// whose last write was unanswered holds one of its candidates whole.
async fn acknowledged_readable(c: &SimCluster, workers: &[Worker], out: &mut SeedOutcome) {
    for n in &c.nodes {
        let Some(node) = n.get() else { continue };
        // A node that fails reads after healing is one finding, not one per
        // file (and its timeouts would stretch the seed).
        let mut failures = 0;
        'node: for w in workers {
            for (p, m) in &w.files {
                count(out, "acknowledged_readable", 1);
                let got =
                    match tokio::time::timeout(READ_TIMEOUT, read_file(&node, w.actor.user, p))
                        .await
                    {
                        Ok(Ok(g)) => g,
                        failed => {
                            let why = match failed {
                                Ok(Err(e)) => e,
                                _ => format!("no answer in {READ_TIMEOUT:?}"),
                            };
                            out.violations.push(violation(
                                out.seed,
                                "acknowledged_readable",
                                format!("{p} through node {}: {why}", n.id),
                            ));
                            failures += 1;
                            if failures >= 3 {
                                break 'node;
                            }
                            continue;
                        }
                    };
                if let Some(bad) = judge(&m.now, got.as_ref()) {
                    out.violations.push(violation(
                        out.seed,
                        "acknowledged_readable",
                        format!("{p} through node {}: {bad}", n.id),
                    ));
                }
            }
        }
    }
}

/// Each worker's folder lists exactly the files the model says exist (and
/// for unanswered writes, may exist).
async fn listing_matches_model(c: &SimCluster, workers: &[Worker], out: &mut SeedOutcome) {
    for n in &c.nodes {
        let Some(node) = n.get() else { continue };
        for w in workers {
            count(out, "listing_matches_model", 1);
            let names = match listing(&node, &w.actor, &w.folder).await {
                Ok(l) => l,
                Err(e) => {
                    out.violations.push(violation(
                        out.seed,
                        "listing_matches_model",
                        format!("{} through node {}: {e}", w.folder, n.id),
                    ));
                    continue;
                }
            };
            let listed: BTreeSet<&String> = names.keys().collect();
            for (p, m) in &w.files {
                let there = listed.contains(p);
                let may_be_there = m.now.iter().any(Option::is_some);
                let may_be_gone = m.now.contains(&None);
                if (there && !may_be_there) || (!there && !may_be_gone) {
                    out.violations.push(violation(
                        out.seed,
                        "listing_matches_model",
                        format!(
                            "{p} through node {}: listed {there}, model {:?}",
                            n.id,
                            m.now.iter().map(|c| c.map(|c| c.size)).collect::<Vec<_>>()
                        ),
                    ));
                }
            }
            for p in listed {
                if !w.files.contains_key(p) {
                    out.violations.push(violation(
                        out.seed,
                        "listing_matches_model",
                        format!("{p} through node {}: listed, never written", n.id),
                    ));
                }
            }
        }
    }
}

/// A folder's files: path → (head, content hash).
async fn listing(node: &Node, actor: &Actor, folder: &str) -> Result<Tree, String> {
    let path = DrivePath::parse(folder).map_err(|e| e.to_string())?;
    let l = tokio::time::timeout(READ_TIMEOUT, node.drive().list(actor, &path, true, 100_000))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(l.entries
        .into_iter()
        .filter_map(|e| match e {
            Seen::Entry { path, record, .. } => Some((path, (record.head, record.content_hash))),
            Seen::Virtual(_) => None,
        })
        .collect())
}

/// A file every write to which was answered, never moved or deleted, has
/// exactly the versions the worker wrote, in order.
async fn history_matches_model(c: &SimCluster, workers: &[Worker], out: &mut SeedOutcome) {
    let Some(node) = c.nodes.iter().find_map(|n| n.get()) else {
        return;
    };
    for w in workers {
        for (p, m) in &w.files {
            let Some(clean) = &m.clean else { continue };
            count(out, "history_matches_model", 1);
            let Ok(path) = DrivePath::parse(p) else {
                continue;
            };
            let h = match tokio::time::timeout(
                READ_TIMEOUT,
                node.drive().history(&w.actor, &path, 10_000),
            )
            .await
            {
                Ok(Ok(h)) => h,
                other => {
                    let why = why_not(other);
                    out.violations.push(violation(
                        out.seed,
                        "history_matches_model",
                        format!("{p}: {why}"),
                    ));
                    continue;
                }
            };
            let seen: Vec<[u8; 32]> = h
                .versions
                .iter()
                .rev()
                .map(|(_, v)| v.content_hash)
                .collect();
            let want: Vec<[u8; 32]> = clean.iter().map(|c| c.hash).collect();
            if seen != want {
                out.violations.push(violation(
                    out.seed,
                    "history_matches_model",
                    format!(
                        "{p}: {} versions, the worker wrote {}",
                        seen.len(),
                        want.len()
                    ),
                ));
            }
        }
    }
}

/// A folder as one node lists it: path → (head, content hash).
type Tree = BTreeMap<String, (u64, [u8; 32])>;

/// Every node's tree is the same, entry for entry.
async fn replicas_agree(c: &SimCluster, workers: &[Worker], out: &mut SeedOutcome) {
    let mut first: Option<(cluster_config::NodeId, Vec<Tree>)> = None;
    for n in &c.nodes {
        let Some(node) = n.get() else { continue };
        let mut trees = Vec::new();
        for w in workers {
            match listing(&node, &w.actor, &w.folder).await {
                Ok(l) => trees.push(l),
                Err(_) => return, // listing_matches_model said so
            }
        }
        count(out, "replicas_agree", 1);
        match &first {
            None => first = Some((n.id, trees)),
            Some((id, t)) if *t != trees => out.violations.push(violation(
                out.seed,
                "replicas_agree",
                format!("node {} and node {id} list different trees", n.id),
            )),
            Some(_) => {}
        }
    }
}

/// Nobody reads another's files: not by path, and not by block id (the
/// other user's key cannot open them).
async fn users_isolated(c: &SimCluster, workers: &[Worker], out: &mut SeedOutcome) {
    let Some((node, reader)) = current(c).await else {
        return;
    };
    for w in workers {
        let Some(other) = workers.iter().find(|o| o.actor.user != w.actor.user) else {
            continue;
        };
        for (p, m) in &w.files {
            let Some(Some(content)) = m.known() else {
                continue;
            };
            count(out, "users_isolated", 1);
            let Ok(path) = DrivePath::parse(p) else {
                continue;
            };
            match node.drive().stat(&other.actor, &path).await {
                Err(DriveError::NotFound) => {}
                other_answer => out.violations.push(violation(
                    out.seed,
                    "users_isolated",
                    format!(
                        "{p} of another user: stat answered {:?}",
                        other_answer.map(|_| ())
                    ),
                )),
            }
            let Ok(Some((id, _))) = reader.live(&w.actor.user, &path) else {
                continue;
            };
            let Ok(versions) = reader.versions(&w.actor.user, &id, 1) else {
                continue;
            };
            let Some((_, v)) = versions.into_iter().next() else {
                continue;
            };
            if v.blocks.is_empty() {
                continue;
            }
            if let Ok(bytes) =
                read_blocks(&node, &reader, other.actor.user, &v.blocks, v.size).await
            {
                if *blake3::hash(&bytes).as_bytes() == content.hash {
                    out.violations.push(violation(
                        out.seed,
                        "users_isolated",
                        format!("{p}: another user read its blocks by id"),
                    ));
                }
            }
        }
    }
}

/// Each user's shared files' recorded operations (writes, reads and
/// listings of their folder) against the files' histories after healing
/// (`crate::linear`): one order of them all explains what each worker
/// saw, and respects real time.
async fn linearizable(c: &SimCluster, workers: &[Worker], out: &mut SeedOutcome) {
    let Some(log) = workers.first().map(|w| w.shared.clone()) else {
        return;
    };
    let Some(node) = c.nodes.iter().find_map(|n| n.get()) else {
        return;
    };
    let users = log.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
    'users: for (user, ops) in users {
        count(out, "linearizable", ops.len() as u64);
        let actor = strata_node::drive::Actor {
            user,
            device: cluster_config::DeviceId([0x7f; 16]),
        };
        let mut applied = BTreeMap::new();
        for file in ["s0", "s1"] {
            let p = format!("{}/{file}", super::workload::COMMON);
            let Ok(path) = DrivePath::parse(&p) else {
                continue;
            };
            let versions: Vec<[u8; 32]> = match tokio::time::timeout(
                READ_TIMEOUT,
                node.drive().history(&actor, &path, 10_000),
            )
            .await
            {
                Ok(Ok(h)) => h
                    .versions
                    .iter()
                    .rev()
                    .map(|(_, v)| v.content_hash)
                    .collect(),
                // Never written: no history.
                Ok(Err(DriveError::NotFound)) => Vec::new(),
                other => {
                    let why = why_not(other);
                    out.violations.push(violation(
                        out.seed,
                        "linearizable",
                        format!("{p}: history: {why}"),
                    ));
                    continue 'users;
                }
            };
            applied.insert(file.to_string(), versions);
        }
        if let Err(e) = crate::linear::check(&ops, &applied) {
            out.violations.push(violation(
                out.seed,
                "linearizable",
                format!("{} of user {user}: {e}", super::workload::COMMON),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(c: &Content) -> Got {
        Got {
            hash: c.hash,
            bytes: c.bytes(),
        }
    }

    #[test]
    fn judge_accepts_only_what_the_path_may_hold_byte_for_byte() {
        let a = Content::new(1, 5000);
        let b = Content::new(2, 70);
        // Known content, served whole: fine.
        assert_eq!(judge(&[Some(a)], Some(&got(&a))), None);
        // An acknowledged file that is gone.
        assert!(judge(&[Some(a)], None).is_some());
        // Content the path never had.
        assert!(judge(&[Some(a)], Some(&got(&b))).is_some());
        // The right hash over the wrong bytes (a half-written file).
        let mut torn = got(&a);
        torn.bytes.truncate(4096);
        assert!(judge(&[Some(a)], Some(&torn)).is_some());
        let mut flipped = got(&a);
        flipped.bytes[10] ^= 1;
        assert!(judge(&[Some(a)], Some(&flipped)).is_some());
        // An unanswered write: either outcome, but only whole.
        assert_eq!(judge(&[Some(a), Some(b)], Some(&got(&b))), None);
        assert_eq!(judge(&[None, Some(b)], None), None);
        // Deleted with an acknowledgement: must be gone.
        assert!(judge(&[None], Some(&got(&a))).is_some());
    }
}
