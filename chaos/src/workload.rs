//! The seeded workload: workers, each owning one folder of one user's
//! drive, write, overwrite, rename, delete, restore and read back files
//! through any node, keeping the model of what they were told.
//!
//! Every write ends one of three ways: acknowledged (the model takes
//! it), refused with a 4xx (the model does not), or unknown (a timeout, a
//! dropped connection, a 5xx): the worker leaves the path alone for
//! `LATE_APPLY` (the request may still be on its way through the
//! cluster), then reads it until a linearizable read settles whether the
//! write was applied; a read that shows neither outcome is a violation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata_client::{Client, ClientError};

use crate::linear::{Kind, Op};
use crate::model::{Applied, Content, Model, Pending, LATE_APPLY};
use crate::report::Violation;

/// Counters and findings shared by the workers and the harness.
#[derive(Default)]
pub struct Shared {
    pub stop: AtomicBool,
    pub ops: AtomicU64,
    pub acknowledged: AtomicU64,
    pub refused: AtomicU64,
    pub unknown: AtomicU64,
    pub reads_checked: AtomicU64,
    /// Downloads whose body broke off after their answer began.
    pub reads_cut_short: AtomicU64,
    /// Bytes of new content sent, and the most the run may send (no
    /// collection yet: every byte written stays on the disks).
    pub written: AtomicU64,
    pub max_written: u64,
    pub violations: Mutex<Vec<Violation>>,
    pub seed: u64,
    /// Operations on the files every worker of a user shares
    /// (`/common/s0`, `/common/s1`), by user and path, for the
    /// linearizability check; times in nanoseconds since `origin`.
    pub common: Mutex<BTreeMap<usize, Vec<Op>>>,
    /// Every content written to a shared file.
    pub common_contents: Mutex<BTreeSet<[u8; 32]>>,
    origin: Option<std::time::Instant>,
}

impl Shared {
    pub fn new(seed: u64, max_written: u64) -> Self {
        Self {
            seed,
            max_written,
            origin: Some(std::time::Instant::now()),
            ..Default::default()
        }
    }

    /// Now, on the clock every worker's operations are timed with.
    fn tick(&self) -> u64 {
        self.origin
            .map_or(0, |o| o.elapsed().as_nanos().min(u64::MAX as u128) as u64)
    }

    pub fn violation(&self, invariant: &'static str, step: u64, detail: String) {
        tracing::error!(invariant, step, %detail, "violation");
        self.violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Violation {
                invariant: invariant.into(),
                detail,
                seed: self.seed,
                step,
            });
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// The folder of the files every worker of a user shares.
pub const COMMON: &str = "/common";

/// How a request ended.
enum Outcome<T> {
    Acked(T),
    /// The server answered 4xx: it did not apply the request.
    Refused(ClientError),
    /// No answer, or a 5xx: applied or not, nobody said.
    Unknown(String),
}

impl<T> Outcome<T> {
    /// The outcome without the answer's body.
    fn done(self) -> Outcome<()> {
        match self {
            Outcome::Acked(_) => Outcome::Acked(()),
            Outcome::Refused(e) => Outcome::Refused(e),
            Outcome::Unknown(e) => Outcome::Unknown(e),
        }
    }
}

fn classify<T>(r: Result<Result<T, ClientError>, tokio::time::error::Elapsed>) -> Outcome<T> {
    match r {
        Err(_) => Outcome::Unknown("timed out".into()),
        Ok(Ok(v)) => Outcome::Acked(v),
        Ok(Err(e)) => match e.status() {
            Some(s) if (400..500).contains(&s) && s != 408 => Outcome::Refused(e),
            _ => Outcome::Unknown(e.to_string()),
        },
    }
}

/// What a settled read found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Missing,
    Hash([u8; 32]),
}

fn found_of(c: Option<Content>) -> Found {
    match c {
        None => Found::Missing,
        Some(c) => Found::Hash(c.hash),
    }
}

pub struct Worker {
    pub user: usize,
    pub folder: String,
    clients: Vec<Client>,
    at: usize,
    rng: ChaCha8Rng,
    seed_base: u64,
    max_file: u64,
    next_name: u64,
    step: u64,
    pub model: Model,
    shared: Arc<Shared>,
    /// Another user's `/common`, shared with this one as an editor: its
    /// owner and where it is mounted here.
    peer: Option<(usize, String)>,
}

/// Sizes from 0 B to `max`: mostly small, some of several MiB, a few
/// large.
fn pick_size(rng: &mut ChaCha8Rng, max: u64) -> u64 {
    let r: u32 = rng.random_range(0..100);
    let cap = |n: u64| n.min(max).max(1);
    match r {
        0..=4 => 0,
        5..=44 => rng.random_range(1..cap(64 << 10)),
        45..=84 => rng.random_range(0..cap(2 << 20)),
        85..=96 => rng.random_range(0..cap(8 << 20)),
        _ => rng.random_range(0..cap(max)),
    }
}

impl Worker {
    pub fn new(
        user: usize,
        index: usize,
        clients: Vec<Client>,
        seed: u64,
        max_file: u64,
        shared: Arc<Shared>,
    ) -> Self {
        let id = (user as u64) << 16 | index as u64;
        let at = (user + index) % clients.len().max(1);
        Self {
            user,
            folder: format!("/w{index}"),
            clients,
            at,
            rng: ChaCha8Rng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            seed_base: seed.wrapping_mul(1_000_003) ^ (id << 40),
            max_file,
            next_name: 0,
            step: 0,
            model: Model::default(),
            shared,
            peer: None,
        }
    }

    /// This worker's first session (setting up shares before the run).
    pub fn client0(&self) -> Client {
        self.clients[0].clone()
    }

    /// `owner`'s shared files, mounted at `mount` in this user's tree.
    pub fn set_peer(&mut self, owner: usize, mount: String) {
        self.peer = Some((owner, mount));
    }

    /// This worker's session on the node `base` points at.
    pub fn session_on(&self, base: &Client) -> Client {
        self.clients[0].with_base(base.base())
    }

    fn client(&self) -> &Client {
        &self.clients[self.at % self.clients.len()]
    }

    /// The next node, after a request through this one went unanswered.
    fn fail_over(&mut self) {
        self.at = (self.at + 1) % self.clients.len();
    }

    /// The model's current content of `path`.
    fn current(&self, path: &str) -> Option<Content> {
        self.model
            .files
            .get(path)
            .and_then(|f| f.current().copied())
    }

    fn fresh_content(&mut self) -> Content {
        let size = pick_size(&mut self.rng, self.max_file);
        self.step += 1;
        Content::new(self.seed_base.wrapping_add(self.step), size)
    }

    fn timeout_for(size: u64) -> Duration {
        Duration::from_secs(30 + size / (1 << 20) * 4)
    }

    /// Runs operations until told to stop.
    pub async fn run(mut self) -> Self {
        // Where this worker's changes start in its user's feed.
        for _ in 0..20 {
            let c = self.client().clone();
            match tokio::time::timeout(Duration::from_secs(10), c.latest_cursor()).await {
                Ok(Ok(cursor)) => {
                    self.model.cursor = Some(cursor);
                    break;
                }
                _ => self.fail_over(),
            }
        }
        while !self.shared.stopped() {
            self.one().await;
        }
        self
    }

    /// Settles the unanswered writes that can no longer apply.
    async fn settle_due(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<String> = self
            .model
            .unsettled
            .iter()
            .filter(|(_, p)| p.abandoned.is_none_or(|t| t + LATE_APPLY <= now))
            .map(|(path, _)| path.clone())
            .collect();
        for path in due {
            self.settle(&path, Duration::from_secs(5)).await;
        }
    }

    async fn one(&mut self) {
        self.settle_due().await;
        // Paths an unsettled write may still change are left alone.
        let busy: std::collections::HashSet<&String> = self
            .model
            .unsettled
            .iter()
            .flat_map(|(p, w)| std::iter::once(p).chain(w.other.as_ref().map(|o| &o.0)))
            .collect();
        let live: Vec<String> = self
            .model
            .files
            .keys()
            .filter(|p| !busy.contains(p))
            .cloned()
            .collect();
        let mut roll: u32 = self.rng.random_range(0..100);
        // Past the byte budget, no new content and no deletes (the files
        // stay to be read): moves, restores (which reuse stored blocks)
        // and reads go on.
        let may_write = self.shared.written.load(Ordering::Relaxed) < self.shared.max_written;
        if !may_write && roll <= 62 {
            roll = match roll % 3 {
                0 => 45,
                1 => 63,
                _ => 73 + roll % 27,
            };
        }
        if live.is_empty() && !may_write {
            // Nothing left to do: wait for the end without spinning.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        self.shared.ops.fetch_add(1, Ordering::Relaxed);
        if self.rng.random_range(0..10) == 0 {
            return self.common(may_write).await;
        }
        match roll {
            _ if live.len() < 3 && may_write => self.create().await,
            0..=24 => self.create().await,
            25..=44 => {
                let path = live[self.rng.random_range(0..live.len())].clone();
                self.overwrite(&path).await
            }
            45..=54 => {
                let path = live[self.rng.random_range(0..live.len())].clone();
                self.rename(&path).await
            }
            55..=62 => {
                let path = live[self.rng.random_range(0..live.len())].clone();
                self.delete(&path).await
            }
            63..=72 => {
                let path = live[self.rng.random_range(0..live.len())].clone();
                self.restore(&path).await
            }
            _ => {
                let path = live[self.rng.random_range(0..live.len())].clone();
                self.read(&path).await
            }
        }
    }

    fn new_path(&mut self) -> String {
        self.next_name += 1;
        format!("{}/f{}.bin", self.folder, self.next_name)
    }

    /// Simple or resumable upload of fresh content to `path`.
    async fn put(&mut self, path: &str, content: &Content) -> Outcome<()> {
        self.shared
            .written
            .fetch_add(content.size, Ordering::Relaxed);
        let resumable = content.size >= 256 << 10 && self.rng.random_bool(0.4);
        let limit = Self::timeout_for(content.size);
        let data = bytes::Bytes::from(content.bytes());
        if !resumable {
            let c = self.client().clone();
            let r = tokio::time::timeout(limit, c.upload(path, data)).await;
            return classify(r).done();
        }
        // Resumable, in pieces; an unanswered piece is continued through
        // another node from the offset the drive reports.
        let c = self.client().clone();
        let location = match classify(
            tokio::time::timeout(limit, c.start_resumable(path, content.size)).await,
        ) {
            Outcome::Acked(l) => l,
            // Nothing of the file exists before its last piece lands.
            Outcome::Refused(e) => return Outcome::Refused(e),
            Outcome::Unknown(_) => {
                self.fail_over();
                return Outcome::Refused(ClientError::Protocol(
                    "upload session not created".into(),
                ));
            }
        };
        let piece = (1u64 << 20).max(content.size / 4);
        let mut offset = 0u64;
        let mut misses = 0;
        while offset < content.size {
            let end = (offset + piece).min(content.size);
            let c = self.client().clone();
            let chunk = data.slice(offset as usize..end as usize);
            let r = tokio::time::timeout(limit, c.upload_chunk(&location, offset, chunk)).await;
            match classify(r) {
                Outcome::Acked(o) => offset = o,
                Outcome::Refused(e) if e.status() == Some(409) => {
                    // Offset mismatch: ask where the drive is.
                    let c = self.client().clone();
                    match tokio::time::timeout(limit, c.upload_offset(&location)).await {
                        Ok(Ok(o)) => offset = o,
                        _ => return Outcome::Unknown("offset unknown".into()),
                    }
                }
                Outcome::Refused(e) => return Outcome::Refused(e),
                Outcome::Unknown(e) => {
                    self.fail_over();
                    misses += 1;
                    if misses > 5 || self.shared.stopped() {
                        // The last piece may have committed the file.
                        return Outcome::Unknown(e);
                    }
                    let c = self.client().clone();
                    match tokio::time::timeout(limit, c.upload_offset(&location)).await {
                        Ok(Ok(o)) => offset = o,
                        // A finished upload's session is gone: the file
                        // may be committed.
                        Ok(Err(e)) if e.status() == Some(404) => {
                            return Outcome::Unknown("session gone".into())
                        }
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
        }
        Outcome::Acked(())
    }

    async fn create(&mut self) {
        let path = self.new_path();
        self.write(&path, "create").await;
    }

    async fn overwrite(&mut self, path: &str) {
        self.write(path, "overwrite").await;
    }

    /// Fresh content to `path`, over whatever it holds.
    async fn write(&mut self, path: &str, what: &'static str) {
        let before = self.current(path);
        let content = self.fresh_content();
        let out = self.put(path, &content).await;
        self.settle_write(
            path,
            out,
            Pending {
                step: self.step,
                what,
                applied: Some(content),
                not_applied: before,
                other: None,
                abandoned: None,
            },
        )
        .await;
    }

    async fn rename(&mut self, from: &str) {
        let to = self.new_path();
        let cur = self.current(from);
        self.step += 1;
        let c = self.client().clone();
        let r = tokio::time::timeout(Duration::from_secs(30), c.move_entry(from, &to)).await;
        let out = classify(r).done();
        self.settle_write(
            &to,
            out,
            Pending {
                step: self.step,
                what: "move",
                applied: cur,
                not_applied: None,
                other: Some((from.to_string(), None, cur)),
                abandoned: None,
            },
        )
        .await;
    }

    async fn delete(&mut self, path: &str) {
        let cur = self.current(path);
        self.step += 1;
        let c = self.client().clone();
        let r = tokio::time::timeout(Duration::from_secs(30), c.delete(path)).await;
        self.settle_write(
            path,
            classify(r),
            Pending {
                step: self.step,
                what: "delete",
                applied: None,
                not_applied: cur,
                other: None,
                abandoned: None,
            },
        )
        .await;
    }

    /// Restores an older version whose content differs from the current.
    async fn restore(&mut self, path: &str) {
        self.step += 1;
        let Some(file) = self.model.files.get(path).cloned() else {
            return;
        };
        let Some(cur) = file.current().copied() else {
            return;
        };
        let c = self.client().clone();
        let history = match tokio::time::timeout(Duration::from_secs(30), c.history(path)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) if !e.is_transient() && e.status().is_some_and(|s| s < 500) => {
                self.shared.violation(
                    "acknowledged_readable",
                    self.step,
                    format!("history of {path} (user {}): {e}", self.user),
                );
                return;
            }
            _ => {
                self.fail_over();
                return;
            }
        };
        let old: Vec<_> = history
            .versions
            .iter()
            .filter(|v| !v.deleted && v.content_hash != cur.hex())
            .collect();
        if old.is_empty() {
            return;
        }
        let v = old[self.rng.random_range(0..old.len())].clone();
        let Some(target) = file
            .versions
            .iter()
            .find(|c| c.hex() == v.content_hash)
            .copied()
        else {
            self.shared.violation(
                "history_matches_model",
                self.step,
                format!(
                    "{path} (user {}) lists version {} with content {} that was never written there",
                    self.user, v.version, v.content_hash
                ),
            );
            return;
        };
        let c = self.client().clone();
        let r = tokio::time::timeout(Duration::from_secs(30), c.restore(path, v.version)).await;
        let out = classify(r).done();
        self.settle_write(
            path,
            out,
            Pending {
                step: self.step,
                what: "restore",
                applied: Some(target),
                not_applied: Some(cur),
                other: None,
                abandoned: None,
            },
        )
        .await;
    }

    /// A write (when the byte budget allows) or a read of one of the
    /// files all workers of this user share, timed for the
    /// linearizability check. Writes are simple uploads of fresh content
    /// (64 B to 64 KiB: no two alike); reads compare the bytes with every
    /// content written there.
    async fn common(&mut self, may_write: bool) {
        self.step += 1;
        let name = format!("s{}", self.rng.random_range(0..2));
        // One in three through the other user's share, when there is one:
        // the log keys a file by its owner and its owner's path.
        let (owner, folder) = match &self.peer {
            Some((owner, mount)) if self.rng.random_range(0..3) == 0 => (*owner, mount.clone()),
            _ => (self.user, COMMON.to_string()),
        };
        let path = format!("{folder}/{name}");
        let who = format!(
            "user {} {} step {} ({path})",
            self.user, self.folder, self.step
        );
        let c = self.client().clone();
        if may_write && self.rng.random_bool(0.5) {
            let size = self.rng.random_range(64..64 << 10);
            let content = Content::new(
                self.seed_base.wrapping_add(1 << 62).wrapping_add(self.step),
                size,
            );
            self.shared.written.fetch_add(size, Ordering::Relaxed);
            self.shared
                .common_contents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(content.hash);
            let invoke = self.shared.tick();
            let r = tokio::time::timeout(Self::timeout_for(size), c.upload(&path, content.bytes()))
                .await;
            let answered = self.shared.tick();
            let complete = match classify(r) {
                Outcome::Acked(_) => {
                    self.shared.acknowledged.fetch_add(1, Ordering::Relaxed);
                    Some(answered)
                }
                Outcome::Refused(_) => {
                    self.shared.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Outcome::Unknown(_) => {
                    self.shared.unknown.fetch_add(1, Ordering::Relaxed);
                    self.fail_over();
                    None
                }
            };
            self.record_common(
                owner,
                who,
                invoke,
                complete,
                Kind::Write {
                    file: name,
                    value: content.hash,
                },
            );
            return;
        }
        if self.rng.random_range(0..3) == 0 {
            return self.list_common(owner, &folder, who).await;
        }
        let invoke = self.shared.tick();
        let r = tokio::time::timeout(Self::timeout_for(64 << 10), c.download(&path)).await;
        self.count_cut_short(&r);
        let complete = Some(self.shared.tick());
        let saw = match classify(r) {
            Outcome::Acked(bytes) => {
                let hash = *blake3::hash(&bytes).as_bytes();
                let known = self
                    .shared
                    .common_contents
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&hash);
                if !known {
                    self.shared.violation(
                        "acknowledged_readable",
                        self.step,
                        format!(
                            "{path} (user {}) read {} bytes that no worker wrote there",
                            self.user,
                            bytes.len()
                        ),
                    );
                    return;
                }
                Some(hash)
            }
            Outcome::Refused(e) if e.status() == Some(404) => None,
            Outcome::Refused(_) => return,
            Outcome::Unknown(_) => {
                self.fail_over();
                return;
            }
        };
        self.shared.reads_checked.fetch_add(1, Ordering::Relaxed);
        self.record_common(owner, who, invoke, complete, Kind::Read { file: name, saw });
    }

    /// Lists the shared files' folder: one snapshot of both files.
    async fn list_common(&mut self, owner: usize, folder: &str, who: String) {
        let c = self.client().clone();
        let invoke = self.shared.tick();
        let r = tokio::time::timeout(Self::timeout_for(0), c.list(folder, false)).await;
        let complete = Some(self.shared.tick());
        let listing = match classify(r) {
            Outcome::Acked(l) => l,
            Outcome::Refused(_) => return,
            Outcome::Unknown(_) => {
                self.fail_over();
                return;
            }
        };
        let seen: BTreeMap<String, [u8; 32]> = listing
            .entries
            .iter()
            .filter_map(|e| {
                let hash = cluster_config::ids::from_hex::<32>(&e.content_hash).ok()?;
                Some((e.name.clone(), hash))
            })
            .collect();
        self.shared.reads_checked.fetch_add(1, Ordering::Relaxed);
        self.record_common(owner, who, invoke, complete, Kind::List(seen));
    }

    fn count_cut_short<T>(&self, r: &Result<Result<T, ClientError>, tokio::time::error::Elapsed>) {
        if matches!(r, Ok(Err(e)) if e.cut_short()) {
            self.shared.reads_cut_short.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_common(
        &self,
        owner: usize,
        who: String,
        invoke: u64,
        complete: Option<u64>,
        kind: Kind,
    ) {
        let op = Op {
            who,
            invoke,
            complete,
            kind,
        };
        self.shared
            .common
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(owner)
            .or_default()
            .push(op);
    }

    /// Reads a file back; it must be the model's current content, byte
    /// for byte (never a mix, never another user's bytes).
    async fn read(&mut self, path: &str) {
        self.step += 1;
        let Some(cur) = self.current(path) else {
            return;
        };
        let c = self.client().clone();
        let r = tokio::time::timeout(Self::timeout_for(cur.size), c.download(path)).await;
        self.count_cut_short(&r);
        match classify(r) {
            Outcome::Acked(bytes) => {
                self.shared.reads_checked.fetch_add(1, Ordering::Relaxed);
                if bytes != cur.bytes() {
                    self.shared.violation(
                        "acknowledged_readable",
                        self.step,
                        format!(
                            "{path} (user {}) read {} bytes, blake3 {}; the model holds {} bytes, {}",
                            self.user,
                            bytes.len(),
                            cluster_config::ids::to_hex(blake3::hash(&bytes).as_bytes()),
                            cur.size,
                            cur.hex()
                        ),
                    );
                }
            }
            Outcome::Refused(e) if e.status() == Some(429) => {}
            Outcome::Refused(e) => self.shared.violation(
                "acknowledged_readable",
                self.step,
                format!("{path} (user {}): {e}", self.user),
            ),
            Outcome::Unknown(_) => self.fail_over(),
        }
    }

    /// Applies a write's outcome to the model; an unknown outcome is
    /// settled by reading (for a bounded time while the run goes on).
    async fn settle_write(&mut self, path: &str, out: Outcome<()>, p: Pending) {
        match out {
            Outcome::Acked(()) => {
                self.shared.acknowledged.fetch_add(1, Ordering::Relaxed);
                self.apply(path, &p);
            }
            Outcome::Refused(e) => {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                // Limits and conflicts with nothing are expected under
                // load; anything else means the drive disagrees with the
                // model about the path.
                let expected = matches!(e.status(), Some(429) | Some(413) | Some(507) | Some(503))
                    || matches!(e, ClientError::Protocol(_));
                if !expected {
                    self.shared.violation(
                        "model_agrees",
                        p.step,
                        format!("{} {path} (user {}) refused: {e}", p.what, self.user),
                    );
                }
            }
            Outcome::Unknown(_) => {
                self.shared.unknown.fetch_add(1, Ordering::Relaxed);
                self.fail_over();
                // Settled later (`settle_due`): the worker goes on with
                // other paths, and leaves this one alone meanwhile.
                let mut p = p;
                p.abandoned = Some(tokio::time::Instant::now());
                self.model.unsettled.insert(path.to_string(), p);
            }
        }
    }

    fn apply(&mut self, path: &str, p: &Pending) {
        if let Some((from, _, _)) = &p.other {
            // A move: the file and its history go to the new path.
            if let Some(f) = self.model.files.remove(from) {
                self.model.files.insert(path.to_string(), f);
            }
            self.model.applied.push(Applied::Moved {
                from: from.clone(),
                to: path.to_string(),
            });
            return;
        }
        match p.applied {
            Some(c) => {
                let file = self.model.files.entry(path.to_string()).or_default();
                // Writing the content a file already has need not be a
                // change.
                if file.current().map(|cur| cur.hash) != Some(c.hash) {
                    self.model.applied.push(Applied::Wrote {
                        path: path.to_string(),
                        hash: c.hex(),
                    });
                }
                file.versions.push(c);
            }
            None => {
                self.model.files.remove(path);
                self.model.deleted.push(path.to_string());
                self.model.applied.push(Applied::Deleted {
                    path: path.to_string(),
                });
            }
        }
    }

    /// What a linearizable read shows at `path` now (`None`: no answer).
    async fn look(&mut self, path: &str) -> Option<Found> {
        let c = self.client().clone();
        match tokio::time::timeout(Duration::from_secs(10), c.metadata(path)).await {
            Ok(Ok(m)) => {
                let mut h = [0u8; 32];
                let ok = m.content_hash.len() == 64
                    && (0..32).all(|i| {
                        u8::from_str_radix(&m.content_hash[2 * i..2 * i + 2], 16)
                            .map(|b| h[i] = b)
                            .is_ok()
                    });
                ok.then_some(Found::Hash(h))
            }
            Ok(Err(e)) if e.status() == Some(404) => Some(Found::Missing),
            _ => {
                self.fail_over();
                None
            }
        }
    }

    /// Settles the unknown write at `path` by reading, for at most
    /// `within`; leaves it unsettled if no read answers in time.
    pub async fn settle(&mut self, path: &str, within: Duration) {
        let Some(p) = self.model.unsettled.get(path).cloned() else {
            return;
        };
        if let Some(t) = p.abandoned {
            tokio::time::sleep_until(t + LATE_APPLY).await;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let here = self.look(path).await;
            let there = match &p.other {
                Some((other, _, _)) => self.look(other).await,
                None => Some(Found::Missing),
            };
            if let (Some(here), Some(there)) = (here, there) {
                let (other_applied, other_not) = match &p.other {
                    Some((_, a, n)) => (found_of(*a), found_of(*n)),
                    None => (Found::Missing, Found::Missing),
                };
                if here == found_of(p.applied) && there == other_applied {
                    self.model.unsettled.remove(path);
                    self.apply(path, &p);
                } else if here == found_of(p.not_applied) && there == other_not {
                    self.model.unsettled.remove(path);
                } else {
                    self.model.unsettled.remove(path);
                    self.shared.violation(
                        "model_agrees",
                        p.step,
                        format!(
                            "after an unanswered {} of {path} (user {}) the drive shows {here:?} there and {there:?} at the other path: neither the write applied nor not",
                            p.what, self.user
                        ),
                    );
                    // Trust the drive from here on, to find more.
                    self.model.files.remove(path);
                    if let Some((other, _, _)) = &p.other {
                        self.model.files.remove(other);
                    }
                }
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
