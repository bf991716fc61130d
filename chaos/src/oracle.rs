//! The checks after healing, one function per invariant. Each counts
//! what it checked in the report and files what it found broken.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_api::EntryKind;
use strata_client::Client;

use crate::report::{Report, Violation};
use crate::workload::Worker;
use cluster_config::ids::to_hex;

fn violation(report: &mut Report, invariant: &str, detail: String) {
    tracing::error!(invariant, %detail, "violation");
    report.violations.push(Violation {
        invariant: invariant.into(),
        detail,
        seed: report.seed,
        step: 0,
    });
}

/// Retries a read for a while: after healing every node must answer, but
/// a node that just came back may take a moment.
async fn patient<T, F, Fut>(mut f: F) -> Result<T, strata_client::ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, strata_client::ClientError>>,
{
    let mut last = None;
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_secs(60), f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if !e.is_transient() && e.status().is_some_and(|s| s < 500) => {
                return Err(e)
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(strata_client::ClientError::Protocol("timed out".into())),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| strata_client::ClientError::Protocol("no answer".into())))
}

/// Every write whose answer never came is settled now that every node
/// is back: a linearizable read must say applied or not.
pub async fn settled_after_healing(workers: &mut [Worker], report: &mut Report) {
    for w in workers.iter_mut() {
        let paths: Vec<String> = w.model.unsettled.keys().cloned().collect();
        for p in paths {
            w.settle(&p, Duration::from_secs(60)).await;
            report.check("settled_after_healing", 1);
            if w.model.unsettled.contains_key(&p) {
                violation(
                    report,
                    "settled_after_healing",
                    format!("no node answers for {p} (user {}) after healing", w.user),
                );
            }
        }
    }
}

/// Every acknowledged file, through every node: its metadata is the
/// model's current version and its content is the same bytes.
pub async fn acknowledged_readable(
    workers: &[Worker],
    nodes: &[(u64, Client)],
    report: &mut Report,
) {
    for w in workers {
        for (path, file) in &w.model.files {
            let Some(cur) = file.current() else { continue };
            let want = cur.bytes();
            for (id, base) in nodes {
                let c = w.session_on(base);
                report.check("acknowledged_readable", 1);
                match patient(|| c.download(path)).await {
                    Ok(bytes) if bytes == want => {}
                    Ok(bytes) => violation(
                        report,
                        "acknowledged_readable",
                        format!(
                            "{path} (user {}) through node {id}: {} bytes, blake3 {}; acknowledged {} bytes, {}",
                            w.user,
                            bytes.len(),
                            to_hex(blake3::hash(&bytes).as_bytes()),
                            cur.size,
                            cur.hex()
                        ),
                    ),
                    Err(e) => violation(
                        report,
                        "acknowledged_readable",
                        format!("{path} (user {}) through node {id}: {e}", w.user),
                    ),
                }
            }
        }
    }
}

/// Each file's history holds the model's versions in order (a move
/// keeps them; consecutive entries with one content count once), and
/// every old version reads back as the bytes written.
pub async fn history_matches_model(
    workers: &[Worker],
    nodes: &[(u64, Client)],
    report: &mut Report,
) {
    let mut turn = 0usize;
    for w in workers {
        for (path, file) in &w.model.files {
            turn += 1;
            let (id, base) = &nodes[turn % nodes.len()];
            let c = w.session_on(base);
            report.check("history_matches_model", 1);
            let h = match patient(|| c.history(path)).await {
                Ok(h) => h,
                Err(e) => {
                    violation(
                        report,
                        "history_matches_model",
                        format!("history of {path} (user {}) through node {id}: {e}", w.user),
                    );
                    continue;
                }
            };
            // Newest first on the wire; oldest first here, as written.
            let mut seen: Vec<&str> = Vec::new();
            for v in h.versions.iter().rev().filter(|v| !v.deleted) {
                if seen.last() != Some(&v.content_hash.as_str()) {
                    seen.push(&v.content_hash);
                }
            }
            // Writing the content a file already has (two empty files in a
            // row) need not make a version.
            let mut want: Vec<String> = file.versions.iter().map(|c| c.hex()).collect();
            want.dedup();
            // The model starts where the file was created; the history of
            // that entry may not go further back.
            if seen.len() < want.len() || seen[seen.len() - want.len()..] != want[..] {
                violation(
                    report,
                    "history_matches_model",
                    format!(
                        "{path} (user {}) through node {id}: history {seen:?}, written {want:?}",
                        w.user
                    ),
                );
                continue;
            }
            // Old versions read back, byte for byte.
            for v in h.versions.iter().filter(|v| !v.deleted) {
                let Some(content) = file.versions.iter().find(|c| c.hex() == v.content_hash) else {
                    continue;
                };
                report.check("old_versions_readable", 1);
                match patient(|| c.download_version(path, v.version)).await {
                    Ok(bytes) if bytes == content.bytes() => {}
                    Ok(bytes) => violation(
                        report,
                        "old_versions_readable",
                        format!(
                            "{path} v{} (user {}) through node {id}: {} bytes, not the {} written",
                            v.version,
                            w.user,
                            bytes.len(),
                            content.size
                        ),
                    ),
                    Err(e) => violation(
                        report,
                        "old_versions_readable",
                        format!(
                            "{path} v{} (user {}) through node {id}: {e}",
                            v.version, w.user
                        ),
                    ),
                }
            }
        }
    }
}

/// A worker's folder, listed through every node, holds exactly the files
/// of its model, with their sizes and hashes; deleted paths stay gone.
pub async fn listing_matches_model(
    workers: &[Worker],
    nodes: &[(u64, Client)],
    report: &mut Report,
) {
    for w in workers {
        let want: BTreeMap<String, (u64, String)> = w
            .model
            .files
            .iter()
            .filter_map(|(p, f)| f.current().map(|c| (p.clone(), (c.size, c.hex()))))
            .collect();
        for (id, base) in nodes {
            let c = w.session_on(base);
            report.check("listing_matches_model", 1);
            let listed = match patient(|| c.list(&w.folder, true)).await {
                Ok(l) => l,
                Err(e) if e.status() == Some(404) && want.is_empty() => continue,
                Err(e) => {
                    violation(
                        report,
                        "listing_matches_model",
                        format!(
                            "listing {} (user {}) through node {id}: {e}",
                            w.folder, w.user
                        ),
                    );
                    continue;
                }
            };
            let got: BTreeMap<String, (u64, String)> = listed
                .entries
                .into_iter()
                .filter(|e| e.kind == EntryKind::File)
                .map(|e| (e.path, (e.size, e.content_hash)))
                .collect();
            if got != want {
                let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
                let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
                let differ: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                    .map(|(k, _)| k)
                    .collect();
                violation(
                    report,
                    "listing_matches_model",
                    format!(
                        "{} (user {}) through node {id}: extra {extra:?}, missing {missing:?}, different {differ:?}",
                        w.folder, w.user
                    ),
                );
            }
        }
        for path in &w.model.deleted {
            if w.model.files.contains_key(path) {
                continue;
            }
            let (id, base) = &nodes[0];
            let c = w.session_on(base);
            report.check("deleted_stays_deleted", 1);
            match patient(|| c.metadata(path)).await {
                Err(e) if e.status() == Some(404) => {}
                Ok(m) => violation(
                    report,
                    "deleted_stays_deleted",
                    format!(
                        "{path} (user {}) was deleted and node {id} shows version {}",
                        w.user, m.version
                    ),
                ),
                Err(e) => violation(
                    report,
                    "deleted_stays_deleted",
                    format!("{path} (user {}) through node {id}: {e}", w.user),
                ),
            }
        }
    }
}

/// No user reads another's bytes: every user's folders have the same
/// names, so reading another user's path must give the reader's own file
/// or nothing.
pub async fn users_isolated(workers: &[Worker], nodes: &[(u64, Client)], report: &mut Report) {
    let Some((id, base)) = nodes.first() else {
        return;
    };
    // What each user holds, over all of its workers' folders.
    let mut holds: BTreeMap<usize, BTreeMap<&String, &crate::model::Content>> = BTreeMap::new();
    for w in workers {
        for (path, f) in &w.model.files {
            if let Some(c) = f.current() {
                holds.entry(w.user).or_default().insert(path, c);
            }
        }
    }
    for (i, a) in workers.iter().enumerate() {
        let Some(b) = workers
            .iter()
            .cycle()
            .skip(i + 1)
            .take(workers.len())
            .find(|b| b.user != a.user)
        else {
            return;
        };
        for path in a.model.files.keys().take(20) {
            let c = b.session_on(base);
            report.check("users_isolated", 1);
            let got = patient(|| c.download(path)).await;
            let own = holds
                .get(&b.user)
                .and_then(|h| h.get(path))
                .map(|c| c.bytes());
            match (got, own) {
                (Err(e), None) if e.status() == Some(404) => {}
                (Ok(bytes), Some(own)) if bytes == own => {}
                (got, own) => violation(
                    report,
                    "users_isolated",
                    format!(
                        "user {} read {path} (user {}'s) through node {id}: {:?} where its own file is {:?} bytes",
                        b.user,
                        a.user,
                        got.map(|b| b.len()),
                        own.map(|o| o.len())
                    ),
                ),
            }
        }
    }
}

/// Each worker's changes, read from its user's change feed after
/// healing: every change the drive applied is there exactly once, and
/// the changes of each path come in the order they were made.
pub async fn change_feed_exactly_once(
    workers: &[Worker],
    nodes: &[(u64, Client)],
    report: &mut Report,
) {
    use crate::model::Applied;
    use strata_api::ChangeKind;
    let Some((id, base)) = nodes.first() else {
        return;
    };
    for w in workers {
        let Some(start) = w.model.cursor.clone() else {
            violation(
                report,
                "change_feed_exactly_once",
                format!("{} (user {}) never got a feed position", w.folder, w.user),
            );
            continue;
        };
        report.check("change_feed_exactly_once", 1);
        let c = w.session_on(base);
        let prefix = format!("{}/", w.folder);
        let mine = |p: &str| p.starts_with(&prefix);
        let mut feed: Vec<Applied> = Vec::new();
        let mut last_seq = 0u64;
        let mut cursor = start;
        // Writing the content a path already has may or may not be a
        // change; it is not counted.
        let mut holds: BTreeMap<String, String> = BTreeMap::new();
        let mut failed = None;
        for _ in 0..10_000 {
            let page = match patient(|| c.changes(&cursor, 1000)).await {
                Ok(p) => p,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            };
            for ch in page.changes {
                if ch.seq <= last_seq {
                    violation(
                        report,
                        "change_feed_exactly_once",
                        format!(
                            "user {} through node {id}: change {} after {} (out of order or repeated)",
                            w.user, ch.seq, last_seq
                        ),
                    );
                }
                last_seq = last_seq.max(ch.seq);
                let from_mine = ch.from.as_deref().is_some_and(mine);
                if ch.entry_kind != EntryKind::File || !(mine(&ch.path) || from_mine) {
                    continue;
                }
                let entry = match ch.kind {
                    ChangeKind::Created | ChangeKind::Modified | ChangeKind::Restored => {
                        if holds.get(&ch.path) == Some(&ch.content_hash) {
                            continue;
                        }
                        holds.insert(ch.path.clone(), ch.content_hash.clone());
                        Applied::Wrote {
                            path: ch.path,
                            hash: ch.content_hash,
                        }
                    }
                    ChangeKind::Moved => {
                        let from = ch.from.unwrap_or_default();
                        if let Some(h) = holds.remove(&from) {
                            holds.insert(ch.path.clone(), h);
                        }
                        Applied::Moved { from, to: ch.path }
                    }
                    ChangeKind::Deleted => {
                        holds.remove(&ch.path);
                        Applied::Deleted { path: ch.path }
                    }
                    ChangeKind::Unknown => {
                        violation(
                            report,
                            "change_feed_exactly_once",
                            format!(
                                "user {}: a change of an unknown kind at {}",
                                w.user, ch.path
                            ),
                        );
                        continue;
                    }
                };
                feed.push(entry);
            }
            cursor = page.cursor;
            if !page.has_more {
                break;
            }
        }
        if let Some(e) = failed {
            violation(
                report,
                "change_feed_exactly_once",
                format!("reading the feed of user {} through node {id}: {e}", w.user),
            );
            continue;
        }
        let want = &w.model.applied;
        let mut a = feed.clone();
        let mut b = want.clone();
        a.sort();
        b.sort();
        if a != b {
            let extra: Vec<_> = a.iter().filter(|x| !b.contains(x)).take(5).collect();
            let missing: Vec<_> = b.iter().filter(|x| !a.contains(x)).take(5).collect();
            violation(
                report,
                "change_feed_exactly_once",
                format!(
                    "{} (user {}): the feed holds {} changes, the workload made {}; extra {extra:?}, missing {missing:?}",
                    w.folder,
                    w.user,
                    feed.len(),
                    want.len()
                ),
            );
            continue;
        }
        // Per path, the same order.
        let per_path = |list: &[Applied]| {
            let mut m: BTreeMap<String, Vec<Applied>> = BTreeMap::new();
            for x in list {
                for p in x.paths() {
                    m.entry(p.to_string()).or_default().push(x.clone());
                }
            }
            m
        };
        let (got, wanted) = (per_path(&feed), per_path(want));
        if let Some((p, _)) = wanted.iter().find(|(p, v)| got.get(*p) != Some(*v)) {
            violation(
                report,
                "change_feed_exactly_once",
                format!(
                    "{p} (user {}): the feed orders its changes {:?}, they were made {:?}",
                    w.user,
                    got.get(p),
                    wanted.get(p)
                ),
            );
        }
    }
}

/// Each user's shared files' recorded operations (writes, reads and
/// listings of their folder, by either user of the share) against the
/// files' histories after healing (`crate::linear`): one order of them all
/// explains what each worker saw, and respects real time.
pub async fn linearizable(
    shared: &crate::workload::Shared,
    workers: &[Worker],
    nodes: &[(u64, Client)],
    report: &mut Report,
) {
    let users = shared
        .common
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    'users: for (turn, (user, ops)) in users.into_iter().enumerate() {
        let Some(w) = workers.iter().find(|w| w.user == user) else {
            continue;
        };
        let (id, base) = &nodes[turn % nodes.len()];
        let c = w.session_on(base);
        report.check("linearizable", ops.len() as u64);
        let mut applied = BTreeMap::new();
        for file in ["s0", "s1"] {
            let path = format!("{}/{file}", crate::workload::COMMON);
            let versions: Vec<[u8; 32]> = match patient(|| c.history_up_to(&path, 10_000)).await {
                Ok(h) => h
                    .versions
                    .iter()
                    .rev()
                    .filter(|v| !v.deleted)
                    .filter_map(|v| cluster_config::ids::from_hex::<32>(&v.content_hash).ok())
                    .collect(),
                Err(e) if e.status() == Some(404) => Vec::new(),
                Err(e) => {
                    violation(
                        report,
                        "linearizable",
                        format!("history of {path} (user {user}) through node {id}: {e}"),
                    );
                    continue 'users;
                }
            };
            applied.insert(file.to_string(), versions);
        }
        if let Err(e) = crate::linear::check(&ops, &applied) {
            violation(
                report,
                "linearizable",
                format!("{} (user {user}): {e}", crate::workload::COMMON),
            );
        }
    }
}
