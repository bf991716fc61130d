//! One seed's run: workers writing through random nodes while the fault
//! task breaks things, then healing and the oracle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_config::{DeviceId, UserId};
use raft_meta::{Command, DrivePath, MetaError, OnConflict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata_node::drive::{Actor, DriveError, NewContent, Seen};
use strata_node::{Ingest, Node, WholeHash};

use super::cluster::SimCluster;
use super::{oracle, SeedOutcome, SimOptions};
use crate::linear::{Kind, Op};
use crate::model::Content;
use crate::report::Violation;

/// How long one operation may take before it counts as unanswered.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Workers per seed; worker `k` writes as user `k % 2` in `/w{k}`.
const WORKERS: usize = 3;
/// The largest file a seed writes.
const MAX_FILE: u64 = 3 << 19;

/// Every event of a seed, in order, with its virtual time: two runs of a
/// seed are the same run when their digests are equal.
#[derive(Clone)]
pub struct Trace(Arc<(Mutex<blake3::Hasher>, tokio::time::Instant)>);

impl Trace {
    fn new() -> Self {
        Self(Arc::new((Mutex::default(), tokio::time::Instant::now())))
    }

    /// A trace nobody reads (the oracle's waits are not part of a run's
    /// events).
    pub fn detached() -> Self {
        Self::new()
    }

    pub fn event(&self, what: std::fmt::Arguments<'_>) {
        let ms = self.0 .1.elapsed().as_millis();
        let line = format!("{ms} {what}\n");
        tracing::trace!(target: "strata_chaos::sim::trace", "{}", line.trim_end());
        self.0
             .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(line.as_bytes());
    }

    fn digest(&self) -> [u8; 32] {
        *self
            .0
             .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finalize()
            .as_bytes()
    }
}

/// What a path may hold, as far as the worker knows.
#[derive(Debug, Clone, Default)]
pub struct PathModel {
    /// The possible contents now (`None`: no file). One entry: known.
    pub now: Vec<Option<Content>>,
    /// Every content the path held with an acknowledgement.
    pub past: Vec<Content>,
    /// The file's versions, oldest first, while every write to it was
    /// answered and it was neither moved nor deleted.
    pub clean: Option<Vec<Content>>,
    /// Deleted with an acknowledgement (so it can be restored).
    pub deleted: bool,
}

impl PathModel {
    pub fn known(&self) -> Option<Option<Content>> {
        match self.now.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    fn may_be(&mut self, c: Option<Content>) {
        if !self.now.contains(&c) {
            self.now.push(c);
        }
        self.clean = None;
    }
}

/// The files every worker of a user writes and reads at once
/// (`/common/s0`, `/common/s1`), and what each operation on them saw,
/// for the linearizability check.
#[derive(Default)]
pub struct SharedLog {
    /// One clock for every worker: the single-threaded runtime makes its
    /// order the real order of invocations and answers.
    ticks: AtomicU64,
    /// By user: the operations on its `/common` (files `s0` and `s1`).
    pub ops: Mutex<BTreeMap<UserId, Vec<Op>>>,
    /// Every content written to a shared file, to compare reads with.
    pub contents: Mutex<BTreeMap<[u8; 32], Content>>,
}

impl SharedLog {
    fn tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::SeqCst)
    }

    fn record(&self, user: UserId, who: String, invoke: u64, complete: Option<u64>, kind: Kind) {
        let op = Op {
            who,
            invoke,
            complete,
            kind,
        };
        self.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user)
            .or_default()
            .push(op);
    }
}

/// The shared files' folder.
pub const COMMON: &str = "/common";

pub struct Worker {
    pub k: usize,
    pub actor: Actor,
    pub folder: String,
    pub files: BTreeMap<String, PathModel>,
    pub ops: u64,
    pub acknowledged: u64,
    pub unanswered: u64,
    pub reads_checked: u64,
    pub violations: Vec<Violation>,
    pub shared: Arc<SharedLog>,
    rng: ChaCha8Rng,
    next_name: u32,
    seed: u64,
}

/// How an operation ended.
enum Ended {
    Done,
    /// Refused for certain (nothing changed).
    Refused,
    /// No answer: it may or may not have happened.
    Unknown,
}

fn ended(e: &DriveError) -> Ended {
    match e {
        DriveError::NotFound
        | DriveError::BadRequest(_)
        | DriveError::Forbidden(_)
        | DriveError::Meta(MetaError::Command(_)) => Ended::Refused,
        _ => Ended::Unknown,
    }
}

pub async fn run(c: Arc<SimCluster>, opts: &SimOptions, seed: u64) -> SeedOutcome {
    let trace = Trace::new();
    let mut out = SeedOutcome {
        seed,
        ..SeedOutcome::default()
    };
    // Two users, written straight through Raft (no argon2 per seed).
    let users: Vec<UserId> = (0..2u8).map(|u| UserId([u + 1; 16])).collect();
    for (i, user) in users.iter().enumerate() {
        let cmd = Command::CreateUser {
            user: *user,
            username: format!("user{i}"),
            password_hash: "$argon2id$sim".into(),
            quota_bytes: 1 << 34,
            admin: false,
        };
        // A retry of a create that was applied without an answer finds the
        // name taken by this very user: that is success.
        let exists = |c: &SimCluster| {
            c.nodes.iter().find_map(|n| n.get()).is_some_and(|n| {
                matches!(n.meta().local().user_by_name(&format!("user{i}")), Ok(Some((u, _))) if u == *user)
            })
        };
        if let Err(e) = retry_write(&c, cmd)
            .await
            .or_else(|e| if exists(&c) { Ok(()) } else { Err(e) })
        {
            out.violations.push(violation(
                seed,
                "cluster_starts",
                format!("creating users: {e}"),
            ));
            c.stop_all().await;
            return out;
        }
    }
    let shared = Arc::new(SharedLog::default());
    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|k| Worker {
            k,
            actor: Actor {
                user: users[k % 2],
                device: DeviceId([0x40 + k as u8; 16]),
            },
            folder: format!("/w{k}"),
            files: BTreeMap::new(),
            ops: 0,
            acknowledged: 0,
            unanswered: 0,
            reads_checked: 0,
            violations: Vec::new(),
            shared: shared.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(k as u64)),
            next_name: 0,
            seed,
        })
        .collect();
    // Each worker's own folder, and its user's shared one (made once: the
    // second worker of a user finds it there).
    let folders: Vec<(Actor, String)> = workers
        .iter()
        .flat_map(|w| [(w.actor, w.folder.clone()), (w.actor, COMMON.to_string())])
        .collect();
    for (actor, name) in &folders {
        let folder = DrivePath::parse(name).expect("a worker's folder is a valid path");
        let mut made = false;
        for _ in 0..20 {
            let node = c.nodes[0].get();
            if let Some(node) = node {
                match node.drive().create_folder(actor, &folder).await {
                    Ok(_) => {
                        made = true;
                        break;
                    }
                    Err(DriveError::Meta(MetaError::Command(_))) => {
                        made = true;
                        break;
                    }
                    Err(_) => {}
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if !made {
            out.violations.push(violation(
                seed,
                "cluster_starts",
                format!("creating {name}"),
            ));
            c.stop_all().await;
            return out;
        }
    }
    trace.event(format_args!("ready"));

    // The workers and the fault task run together.
    let done = Arc::new(AtomicBool::new(false));
    let faults = tokio::spawn(super::faults::run(
        c.clone(),
        ChaCha8Rng::seed_from_u64(seed ^ 0xfa17),
        trace.clone(),
        done.clone(),
    ));
    let per_worker = opts.ops.div_ceil(WORKERS);
    let mut tasks = Vec::new();
    for mut w in workers.drain(..) {
        let c = c.clone();
        let trace = trace.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..per_worker {
                w.step(&c, &trace, step as u64).await;
                let pause = w.rng.random_range(0..400);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            w
        }));
    }
    for t in tasks {
        match t.await {
            Ok(w) => workers.push(w),
            Err(e) => out.violations.push(violation(
                seed,
                "no_panic",
                format!("a worker stopped: {e}"),
            )),
        }
    }
    done.store(true, Ordering::SeqCst);
    let fault_counts = match faults.await {
        Ok(f) => f,
        Err(e) => {
            out.violations.push(violation(
                seed,
                "no_panic",
                format!("the fault task stopped: {e}"),
            ));
            BTreeMap::new()
        }
    };
    out.faults = fault_counts;
    trace.event(format_args!("healing"));
    super::faults::heal(&c, &trace, &mut out).await;
    oracle::check(&c, &mut workers, &mut out).await;
    for w in &mut workers {
        out.ops += w.ops;
        out.acknowledged_ops += w.acknowledged;
        out.unanswered_ops += w.unanswered;
        out.reads_checked += w.reads_checked;
        out.violations.append(&mut w.violations);
    }
    c.stop_all().await;
    out.trace = trace.digest();
    out
}

pub fn violation(seed: u64, invariant: &str, detail: String) -> Violation {
    Violation {
        invariant: invariant.into(),
        detail,
        seed,
        step: 0,
    }
}

/// A write through any node, retried while the cluster elects (bounded).
pub(super) async fn retry_write(c: &SimCluster, cmd: Command) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..30 {
        if let Some(node) = c.nodes[attempt % c.nodes.len()].get() {
            match node.meta().write(cmd.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last)
}

/// Stores `content` and commits it at `p` through `node`. An error before
/// the commit left nothing visible (`false`: refused for certain); the
/// commit's own failure may or may not have been applied (`true`).
pub(super) async fn write_file(
    node: &Node,
    actor: &Actor,
    p: &str,
    content: Content,
) -> Result<(), (bool, DriveError)> {
    let mut ingest = Ingest::new(
        node.blocks().clone(),
        node.meta().local().clone(),
        actor.user,
        WholeHash::Plain(Box::default()),
    );
    let bytes = content.bytes();
    for piece in bytes.chunks(256 << 10) {
        ingest.push(piece).await.map_err(|e| (false, e.into()))?;
    }
    let done = ingest.finish().await.map_err(|e| (false, e.into()))?;
    let drive = node.drive();
    let t = drive
        .write_target(actor, &path(p))
        .await
        .map_err(|e| (false, e))?;
    let hash = done
        .content_hash
        .ok_or((false, DriveError::BadRequest("no content hash".into())))?;
    drive
        .commit(
            actor,
            &t,
            NewContent {
                size: done.size,
                content_hash: hash,
                blocks: done.chunks,
                new_blocks: done.new_blocks,
            },
            None,
            OnConflict::Overwrite,
        )
        .await
        .map(|_| ())
        .map_err(|e| (true, e))
}

fn path(p: &str) -> DrivePath {
    DrivePath::parse(p).expect("the workload writes valid paths")
}

impl Worker {
    fn pick<'a>(&mut self, paths: &'a [String]) -> Option<&'a String> {
        (!paths.is_empty()).then(|| &paths[self.rng.random_range(0..paths.len())])
    }

    fn new_content(&mut self, step: u64) -> Content {
        // Mostly small: the simulation looks for wrong logic, not slow
        // bytes (the process run writes tens of MiB). One in ten spans
        // one to a few blocks.
        let size = match self.rng.random_range(0..20) {
            0..=10 => self.rng.random_range(0..4096),
            11..=17 => self.rng.random_range(4096..128 << 10),
            _ => self.rng.random_range(256 << 10..MAX_FILE),
        };
        let seed = self
            .seed
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add((self.k as u64) << 40)
            .wrapping_add(step);
        Content::new(seed, size)
    }

    fn fresh_path(&mut self) -> String {
        self.next_name += 1;
        format!("{}/f{}", self.folder, self.next_name)
    }

    /// One operation through a node the seed picks.
    async fn step(&mut self, c: &SimCluster, trace: &Trace, step: u64) {
        let live: Vec<String> = self
            .files
            .iter()
            .filter(|(_, m)| matches!(m.known(), Some(Some(_))))
            .map(|(p, _)| p.clone())
            .collect();
        let deleted: Vec<String> = self
            .files
            .iter()
            .filter(|(_, m)| m.deleted && m.known() == Some(None) && !m.past.is_empty())
            .map(|(p, _)| p.clone())
            .collect();
        let roll = self.rng.random_range(0..100);
        let i = self.rng.random_range(0..c.nodes.len());
        let node = c.nodes[i].get();
        self.ops += 1;
        let Some(node) = node else {
            // The chosen node is down: the client sees a refused connection.
            trace.event(format_args!("w{} {step} node {i} down", self.k));
            return;
        };
        if self.rng.random_range(0..5) == 0 {
            return self.shared_step(&node, trace, step).await;
        }
        let target = match roll {
            0..=34 => None,
            _ => self.pick(&live).cloned(),
        };
        match (roll, target) {
            (35..=59, Some(p)) => {
                let content = self.new_content(step);
                let r = self.put(&node, &p, content).await;
                self.after_put(trace, step, &p, content, r);
            }
            (60..=69, Some(from)) => {
                let to = self.fresh_path();
                let r = timed(
                    node.drive()
                        .move_entry(&self.actor, &path(&from), &path(&to)),
                )
                .await;
                let e = self.ended(trace, step, "move", &from, r.map(|_| ()));
                let was = self.files.get(&from).and_then(|m| m.known()).flatten();
                match e {
                    Ended::Done => {
                        let m = self.files.entry(from).or_default();
                        m.now = vec![None];
                        m.clean = None;
                        self.files.insert(
                            to,
                            PathModel {
                                now: vec![was],
                                past: was.into_iter().collect(),
                                clean: None,
                                deleted: false,
                            },
                        );
                    }
                    Ended::Refused => {}
                    Ended::Unknown => {
                        self.files.entry(from).or_default().may_be(None);
                        let mut m = PathModel {
                            now: vec![None],
                            ..PathModel::default()
                        };
                        m.may_be(was);
                        self.files.insert(to, m);
                    }
                }
            }
            (70..=81, Some(p)) => {
                let r = timed(node.drive().delete(&self.actor, &path(&p))).await;
                match self.ended(trace, step, "delete", &p, r) {
                    Ended::Done => {
                        let m = self.files.entry(p).or_default();
                        m.now = vec![None];
                        m.clean = None;
                        m.deleted = true;
                    }
                    Ended::Refused => {}
                    Ended::Unknown => self.files.entry(p).or_default().may_be(None),
                }
            }
            (82..=89, _) if !deleted.is_empty() => {
                let Some(p) = self.pick(&deleted).cloned() else {
                    return;
                };
                self.restore(&node, trace, step, &p).await;
            }
            (90..=99, Some(p)) => self.read_check(&node, trace, step, &p).await,
            _ => {
                let p = self.fresh_path();
                let content = self.new_content(step);
                self.files.insert(
                    p.clone(),
                    PathModel {
                        now: vec![None],
                        ..PathModel::default()
                    },
                );
                let r = self.put(&node, &p, content).await;
                self.after_put(trace, step, &p, content, r);
            }
        }
    }

    fn ended(
        &mut self,
        trace: &Trace,
        step: u64,
        what: &str,
        p: &str,
        r: Result<(), DriveError>,
    ) -> Ended {
        let e = match &r {
            Ok(()) => Ended::Done,
            Err(e) => ended(e),
        };
        let word = match e {
            Ended::Done => {
                self.acknowledged += 1;
                "ok"
            }
            Ended::Refused => "refused",
            Ended::Unknown => {
                self.unanswered += 1;
                "unknown"
            }
        };
        trace.event(format_args!("w{} {step} {what} {p} {word}", self.k));
        if let (Ended::Refused, Err(err)) = (&e, &r) {
            tracing::debug!(worker = self.k, step, what, path = p, error = %err, "refused");
        }
        e
    }

    async fn put(&self, node: &Node, p: &str, content: Content) -> Result<(), (bool, DriveError)> {
        match tokio::time::timeout(OP_TIMEOUT, write_file(node, &self.actor, p, content)).await {
            Ok(r) => r,
            Err(_) => Err((true, DriveError::Unavailable)),
        }
    }

    fn after_put(
        &mut self,
        trace: &Trace,
        step: u64,
        p: &str,
        content: Content,
        r: Result<(), (bool, DriveError)>,
    ) {
        let e = match r {
            Ok(()) => self.ended(trace, step, "put", p, Ok(())),
            // Nothing was committed: the file is as it was.
            Err((false, err)) => {
                trace.event(format_args!("w{} {step} put {p} not stored", self.k));
                tracing::debug!(worker = self.k, step, path = p, error = %err, "not stored");
                Ended::Refused
            }
            Err((true, err)) => self.ended(trace, step, "put", p, Err(err)),
        };
        let m = self.files.entry(p.to_string()).or_default();
        match e {
            Ended::Done => {
                let fresh = m.now == [None] && m.past.is_empty();
                m.clean = match (fresh, m.clean.take()) {
                    (true, _) => Some(vec![content]),
                    (false, Some(mut v)) => {
                        v.push(content);
                        Some(v)
                    }
                    (false, None) => None,
                };
                m.now = vec![Some(content)];
                m.past.push(content);
                m.deleted = false;
            }
            Ended::Refused => {}
            Ended::Unknown => {
                m.may_be(Some(content));
                m.past.push(content);
            }
        }
    }

    /// Restores the newest version of a deleted file that is not a
    /// deletion; the history answer says which.
    async fn restore(&mut self, node: &Node, trace: &Trace, step: u64, p: &str) {
        let drive = node.drive();
        let Ok(Ok(h)) =
            tokio::time::timeout(OP_TIMEOUT, drive.history(&self.actor, &path(p), 50)).await
        else {
            trace.event(format_args!("w{} {step} history {p} unavailable", self.k));
            return;
        };
        let Some((version, rec)) = h.versions.iter().find(|(_, v)| !v.deleted) else {
            self.violations.push(violation(
                self.seed,
                "history_matches_model",
                format!("{p}: deleted with an acknowledgement, but no version to restore"),
            ));
            return;
        };
        let Some(content) = self
            .files
            .get(p)
            .and_then(|m| m.past.iter().find(|c| c.hash == rec.content_hash).copied())
        else {
            self.violations.push(violation(
                self.seed,
                "history_matches_model",
                format!("{p}: version {version} holds content this worker never wrote"),
            ));
            return;
        };
        let r = timed(drive.restore(&self.actor, &path(p), *version)).await;
        match self.ended(trace, step, "restore", p, r.map(|_| ())) {
            Ended::Done => {
                let m = self.files.entry(p.to_string()).or_default();
                m.now = vec![Some(content)];
                m.deleted = false;
            }
            Ended::Refused => {}
            Ended::Unknown => self
                .files
                .entry(p.to_string())
                .or_default()
                .may_be(Some(content)),
        }
    }

    /// A write or a read of one of the user's shared files, or a listing
    /// of their folder, recorded with when it was sent and answered.
    async fn shared_step(&mut self, node: &Node, trace: &Trace, step: u64) {
        let file = format!("s{}", self.rng.random_range(0..2));
        let p = format!("{COMMON}/{file}");
        let who = format!("w{} step {step}", self.k);
        let log = self.shared.clone();
        if self.rng.random_bool(0.5) {
            // At least 64 bytes: no two writes put the same content.
            let size = self.rng.random_range(64..64 << 10);
            let seed = self
                .seed
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(1 << 50)
                .wrapping_add((self.k as u64) << 40)
                .wrapping_add(step);
            let content = Content::new(seed, size);
            log.contents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(content.hash, content);
            let invoke = log.tick();
            let r = self.put(node, &p, content).await;
            let complete = Some(log.tick());
            let complete = match r {
                Ok(()) => {
                    self.ended(trace, step, "put", &p, Ok(()));
                    complete
                }
                Err((false, _)) => {
                    trace.event(format_args!("w{} {step} put {p} not stored", self.k));
                    return;
                }
                Err((true, e)) => match self.ended(trace, step, "put", &p, Err(e)) {
                    Ended::Refused => return,
                    _ => None,
                },
            };
            log.record(
                self.actor.user,
                who,
                invoke,
                complete,
                Kind::Write {
                    file,
                    value: content.hash,
                },
            );
            return;
        }
        if self.rng.random_range(0..3) == 0 {
            return self.shared_list(node, trace, step, who).await;
        }
        let invoke = log.tick();
        let r =
            tokio::time::timeout(OP_TIMEOUT, oracle::read_file(node, self.actor.user, &p)).await;
        let complete = log.tick();
        let Ok(Ok(got)) = r else {
            trace.event(format_args!("w{} {step} read {p} unavailable", self.k));
            return;
        };
        self.reads_checked += 1;
        trace.event(format_args!(
            "w{} {step} read {p} {}",
            self.k,
            got.is_some()
        ));
        if let Some(g) = &got {
            let wrote = log
                .contents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&g.hash)
                .copied();
            if let Some(bad) = oracle::judge(&[wrote], Some(g)) {
                self.violations.push(Violation {
                    invariant: "acknowledged_readable".into(),
                    detail: format!("{p} through node {}: {bad}", node.meta().node_id()),
                    seed: self.seed,
                    step,
                });
            }
        }
        log.record(
            self.actor.user,
            who,
            invoke,
            Some(complete),
            Kind::Read {
                file,
                saw: got.map(|g| g.hash),
            },
        );
    }

    /// Lists the shared files' folder: one snapshot of both files.
    async fn shared_list(&mut self, node: &Node, trace: &Trace, step: u64, who: String) {
        let log = self.shared.clone();
        let invoke = log.tick();
        let r = timed(node.drive().list(&self.actor, &path(COMMON), false, 100)).await;
        let complete = log.tick();
        let Ok(listing) = r else {
            trace.event(format_args!("w{} {step} list {COMMON} unavailable", self.k));
            return;
        };
        let seen: BTreeMap<String, [u8; 32]> = listing
            .entries
            .iter()
            .filter_map(|e| match e {
                Seen::Entry { path, record, .. } => {
                    Some((path.rsplit('/').next()?.to_string(), record.content_hash))
                }
                Seen::Virtual(_) => None,
            })
            .collect();
        trace.event(format_args!(
            "w{} {step} list {COMMON} {}",
            self.k,
            seen.len()
        ));
        log.record(
            self.actor.user,
            who,
            invoke,
            Some(complete),
            Kind::List(seen),
        );
    }

    /// Reads a file while faults run: an answer must be a content the path
    /// may hold, byte for byte (no answer is fine).
    async fn read_check(&mut self, node: &Node, trace: &Trace, step: u64, p: &str) {
        let r = tokio::time::timeout(OP_TIMEOUT, oracle::read_file(node, self.actor.user, p)).await;
        let Ok(Ok(got)) = r else {
            trace.event(format_args!("w{} {step} read {p} unavailable", self.k));
            return;
        };
        self.reads_checked += 1;
        let may = self.files.get(p).map(|m| m.now.clone()).unwrap_or_default();
        trace.event(format_args!(
            "w{} {step} read {p} {}",
            self.k,
            got.is_some()
        ));
        if let Some(bad) = oracle::judge(&may, got.as_ref()) {
            self.violations.push(Violation {
                invariant: "acknowledged_readable".into(),
                detail: format!("{p} through node {}: {bad}", node.meta().node_id()),
                seed: self.seed,
                step,
            });
        }
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, DriveError>>,
) -> Result<T, DriveError> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(DriveError::Unavailable),
    }
}
