//! The sync agent: keeps a local folder and the drive identical.
//!
//! The merge base is `state` (what both sides were when last in sync). A
//! local scan (on file-system events, and periodically as a safety net)
//! finds local changes; the change journal, read from a saved cursor and
//! woken by long polls, brings remote ones. Each path is reconciled against
//! the base, so no edit is ever lost: a path changed on both sides keeps
//! both (the server stores ours as a conflicted copy), a deletion never
//! removes unsynced content, a rename is a move, and a mass deletion is held
//! and reported instead of propagated.

pub mod decide;
pub mod scan;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_api::{Change, ChangeKind, EntryKind, ErrorCode, FileMetadata};
use tokio::sync::mpsc;

use crate::chunks::{hash_file_off, off_runtime};
use crate::profile::Profile;
use crate::transfer::{self, Traffic};
use crate::{Client, ClientError, Result};
use decide::{decide, Action, Facts, Local};
use scan::{absolute, stat, unchanged, walk, LocalInfo};
use state::{Kind, State, Synced};

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    /// Full rescan period (file-system events cover the rest).
    pub rescan: Duration,
    /// Deletions in one pass above which they are held (and reported).
    pub mass_delete_min: usize,
    /// Apply held mass deletions too.
    pub allow_mass_delete: bool,
    /// One pass and exit.
    pub once: bool,
}

impl Options {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            rescan: Duration::from_secs(60),
            mass_delete_min: 100,
            allow_mass_delete: false,
            once: false,
        }
    }
}

fn remote_path(rel: &str) -> String {
    format!("/{rel}")
}

fn rel_of_remote(path: &str) -> Option<String> {
    let r = path.trim_start_matches('/');
    (!r.is_empty()).then(|| r.to_string())
}

/// What one upload left on the server, and what it cost.
type Uploaded = (FileMetadata, Vec<strata_api::BlockEntry>, Traffic);

/// Uploads of new files in flight at once.
const PARALLEL_UPLOADS: usize = 16;

/// One upload: a small file in one request (it is a single chunk anyway),
/// a larger one by blocks with deltas against `base`.
async fn upload_one(
    client: &Client,
    key: &[u8; 32],
    root: &Path,
    rel: &str,
    base_version: Option<u64>,
    base: &[strata_api::BlockEntry],
) -> Result<Uploaded> {
    let local = absolute(root, rel);
    let remote = remote_path(rel);
    let mut traffic = Traffic::default();
    let size = tokio::fs::metadata(&local).await.map_err(io(&local))?.len();
    if transfer::is_shared(&remote) {
        // Someone else's file: whole, streamed (no block-level delta).
        traffic.sent += size;
        let meta = client
            .upload_file_with(&remote, &local, base_version, Some("rename"))
            .await?;
        return Ok((meta, Vec::new(), traffic));
    }
    if size < strata_api::chunking::MIN_CHUNK as u64 {
        let bytes = tokio::fs::read(&local).await.map_err(io(&local))?;
        let blocks = if bytes.is_empty() {
            Vec::new()
        } else {
            vec![strata_api::BlockEntry {
                hash: crate::chunks::block_id(key, &bytes),
                size: bytes.len() as u64,
            }]
        };
        traffic.sent += bytes.len() as u64;
        let meta = client
            .upload_with(&remote, bytes, base_version, Some("rename"))
            .await?;
        return Ok((meta, blocks, traffic));
    }
    let spec = transfer::UploadSpec {
        local: &local,
        remote: &remote,
        base_version,
        base,
        on_conflict: "rename",
    };
    let (meta, chunks) = transfer::upload(client, key, &spec, &mut traffic).await?;
    let blocks = chunks
        .iter()
        .map(|c| strata_api::BlockEntry {
            hash: c.hash.clone(),
            size: c.size,
        })
        .collect();
    Ok((meta, blocks, traffic))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Whether a failure means "try another node / later" rather than a refusal.
fn transient(e: &ClientError) -> bool {
    e.is_transient()
}

pub struct Agent {
    opts: Options,
    profile: Profile,
    server: usize,
    client: Client,
    key: [u8; 32],
    state: State,
    pub traffic: Traffic,
    held: Vec<String>,
}

enum Wake {
    Local,
    Remote,
}

impl Agent {
    pub async fn open(profile: Profile, opts: Options) -> Result<Self> {
        let meta_dir = opts.root.join(".strata-sync");
        std::fs::create_dir_all(&meta_dir).map_err(io(&meta_dir))?;
        let state = State::open(&meta_dir)?;
        let mut agent = Self {
            client: profile.client(0)?,
            server: 0,
            profile,
            opts,
            key: [0; 32],
            state,
            traffic: Traffic::default(),
            held: Vec::new(),
        };
        let account = agent.call(|c| async move { c.account().await }).await?;
        agent.key = crate::chunks::parse_key(&account.chunk_key)?;
        // Learn the other nodes, to fail over to them.
        if let Ok(nodes) = agent.call(|c| async move { c.cluster_nodes().await }).await {
            for n in nodes {
                if !agent.profile.servers.contains(&n) {
                    agent.profile.servers.push(n);
                }
            }
        }
        Ok(agent)
    }

    /// Runs a call, moving to the next node on a transport failure.
    async fn call<T, F, Fut>(&mut self, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut last = None;
        for _ in 0..self.profile.servers.len().max(1) * 2 {
            match f(self.client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) => {
                    tracing::warn!(server = self.client.base(), error = %e, "server unreachable; trying another");
                    self.server += 1;
                    self.client = self.profile.client(self.server)?;
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no server".into())))
    }

    fn root(&self) -> &Path {
        &self.opts.root
    }

    fn record_file(
        &self,
        rel: &str,
        version: u64,
        hash: &str,
        blocks: Vec<strata_api::BlockEntry>,
    ) -> Result<()> {
        let info = stat(&absolute(self.root(), rel));
        self.state.put(
            rel,
            &Synced {
                kind: Kind::File,
                size: info.map(|i| i.size).unwrap_or(0),
                mtime_ns: info.map(|i| i.mtime_ns).unwrap_or(0),
                ino: info.map(|i| i.ino).unwrap_or(0),
                hash: hash.to_string(),
                version,
                blocks,
            },
        )
    }

    fn record_folder(&self, rel: &str) -> Result<()> {
        let info = stat(&absolute(self.root(), rel));
        self.state.put(
            rel,
            &Synced {
                kind: Kind::Folder,
                size: 0,
                mtime_ns: 0,
                ino: info.map(|i| i.ino).unwrap_or(0),
                hash: String::new(),
                version: 0,
                blocks: Vec::new(),
            },
        )
    }

    /// Uploads a local file (from `base`, the version it was edited from).
    /// Our content may land as a conflicted copy: the local file is then
    /// renamed to match.
    async fn push_file(&mut self, rel: &str, base: Option<&Synced>) -> Result<()> {
        let base_version = base.map(|b| b.version).or(Some(0));
        let blocks = base.map(|b| b.blocks.clone()).unwrap_or_default();
        let result = match upload_one(
            &self.client,
            &self.key,
            self.root(),
            rel,
            base_version,
            &blocks,
        )
        .await
        {
            Err(e) if transient(&e) => {
                self.server += 1;
                self.client = self.profile.client(self.server)?;
                upload_one(
                    &self.client,
                    &self.key,
                    self.root(),
                    rel,
                    base_version,
                    &blocks,
                )
                .await
            }
            other => other,
        };
        let (meta, blocks, traffic) = result?;
        self.traffic.sent += traffic.sent;
        self.traffic.received += traffic.received;
        self.finish_push(rel, meta, blocks).await
    }

    /// Uploads many new files, several at a time.
    async fn push_many(&mut self, rels: Vec<String>) {
        use futures::StreamExt;
        let client = self.client.clone();
        let key = self.key;
        let root = self.root().to_path_buf();
        let results: Vec<(String, Result<Uploaded>)> =
            futures::stream::iter(rels.into_iter().map(|rel| {
                let (client, root) = (client.clone(), root.clone());
                async move {
                    let r = upload_one(&client, &key, &root, &rel, Some(0), &[]).await;
                    (rel, r)
                }
            }))
            .buffer_unordered(PARALLEL_UPLOADS)
            .collect()
            .await;
        for (rel, r) in results {
            let outcome = match r {
                Ok((meta, blocks, traffic)) => {
                    self.traffic.sent += traffic.sent;
                    self.finish_push(&rel, meta, blocks).await
                }
                Err(e) if transient(&e) => self.push_file(&rel, None).await,
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                tracing::warn!(path = rel, error = %e, "upload failed; retried on the next pass");
            }
        }
    }

    async fn finish_push(
        &mut self,
        rel: &str,
        meta: FileMetadata,
        blocks: Vec<strata_api::BlockEntry>,
    ) -> Result<()> {
        let remote = remote_path(rel);
        if meta.path == remote {
            return self.record_file(rel, meta.version, &meta.content_hash, blocks);
        }
        // The server kept our bytes as a conflicted copy: name the local file
        // the same, and fetch the version that won the original path.
        let Some(copy_rel) = rel_of_remote(&meta.path) else {
            return Ok(());
        };
        let local = absolute(self.root(), rel);
        let copy_abs = absolute(self.root(), &copy_rel);
        std::fs::rename(&local, &copy_abs).map_err(io(&copy_abs))?;
        self.record_file(&copy_rel, meta.version, &meta.content_hash, blocks)?;
        tracing::warn!(
            path = rel,
            copy = copy_rel,
            "edited on two devices: kept both"
        );
        self.state.remove(rel)?;
        self.pull_file(rel).await
    }

    /// Downloads the current server version of a file.
    async fn pull_file(&mut self, rel: &str) -> Result<()> {
        let remote = remote_path(rel);
        let meta: FileMetadata = {
            let r = remote.clone();
            self.call(|c| {
                let r = r.clone();
                async move { c.metadata(&r).await }
            })
            .await?
        };
        let target = absolute(self.root(), rel);
        let mut traffic = Traffic::default();
        let key = self.key;
        let blocks = transfer::download(&self.client, &key, &remote, &target, &mut traffic).await?;
        self.traffic.received += traffic.received;
        self.record_file(rel, meta.version, &meta.content_hash, blocks)?;
        Ok(())
    }

    /// First contact: merge the folder and the drive, losing nothing.
    async fn initial(&mut self) -> Result<()> {
        let cursor = self
            .call(|c| async move { c.latest_cursor().await })
            .await?;
        let listing = self
            .call(|c| async move { c.list("/", true).await })
            .await?;
        let remote: HashMap<String, FileMetadata> = listing
            .entries
            .into_iter()
            .filter_map(|e| rel_of_remote(&e.path).map(|r| (r, e)))
            .collect();
        let root = self.root().to_path_buf();
        let local: HashMap<String, LocalInfo> = off_runtime(move || Ok(walk(&root)))
            .await?
            .into_iter()
            .collect();
        let mut all: Vec<&String> = remote
            .keys()
            .chain(local.keys())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        all.sort();
        let all: Vec<String> = all.into_iter().cloned().collect();
        let mut uploads = Vec::new();
        for rel in all {
            let (l, r) = (local.get(&rel).copied(), remote.get(&rel).cloned());
            if r.is_none()
                && l.is_some_and(|l| l.kind == Kind::File)
                && self.state.get(&rel)?.is_none()
            {
                uploads.push(rel);
                continue;
            }
            if let Err(e) = self.merge_initial(&rel, l, r).await {
                tracing::warn!(path = rel, error = %e, "initial sync of a path failed; retried later");
            }
        }
        self.push_many(uploads).await;
        self.state.set_cursor(&cursor)?;
        self.state.flush()
    }

    async fn merge_initial(
        &mut self,
        rel: &str,
        local: Option<LocalInfo>,
        remote: Option<FileMetadata>,
    ) -> Result<()> {
        if self.state.get(rel)?.is_some() {
            return Ok(());
        }
        match (local, remote) {
            (None, None) => Ok(()),
            (Some(l), None) if l.kind == Kind::Folder => {
                let r = remote_path(rel);
                let _ = self
                    .call(|c| {
                        let r = r.clone();
                        async move { c.create_folder(&r).await }
                    })
                    .await;
                self.record_folder(rel)
            }
            (Some(_), None) => self.push_file(rel, None).await,
            (None, Some(r)) if r.kind == EntryKind::Folder => {
                let p = absolute(self.root(), rel);
                std::fs::create_dir_all(&p).map_err(io(&p))?;
                self.record_folder(rel)
            }
            (None, Some(_)) => self.pull_file(rel).await,
            (Some(l), Some(r)) => match (l.kind, r.kind) {
                (Kind::Folder, EntryKind::Folder) => self.record_folder(rel),
                (Kind::File, EntryKind::File) => {
                    if self
                        .record_if_same(rel, &r.path, r.version, &r.content_hash)
                        .await?
                    {
                        return Ok(());
                    }
                    // Different content on both sides: keep both.
                    self.push_file(rel, Some(&Synced::nothing_synced())).await
                }
                _ => {
                    tracing::warn!(
                        path = rel,
                        "a file on one side, a folder on the other: left alone"
                    );
                    Ok(())
                }
            },
        }
    }

    /// Local pass: what changed on disk since the base, pushed to the drive.
    async fn scan_local(&mut self) -> Result<()> {
        let root = self.root().to_path_buf();
        let present: Vec<(String, LocalInfo)> = off_runtime(move || Ok(walk(&root))).await?;
        let seen: HashSet<&str> = present.iter().map(|(p, _)| p.as_str()).collect();
        // Gone from disk: candidates for deletion (or the old side of a move).
        let mut gone: Vec<(String, Synced)> = Vec::new();
        for item in self.state.paths() {
            let (path, s) = item?;
            if !seen.contains(path.as_str()) {
                gone.push((path, s));
            }
        }
        let mut created: Vec<(String, LocalInfo)> = Vec::new();
        let mut changed: Vec<(String, Synced)> = Vec::new();
        for (rel, info) in &present {
            match self.state.get(rel)? {
                None => created.push((rel.clone(), *info)),
                Some(base) if !unchanged(info, &base) => changed.push((rel.clone(), base)),
                Some(_) => {}
            }
        }
        // Renames and moves: the same inode under a new name.
        let mut moved_from: HashSet<String> = HashSet::new();
        let mut moved_to: HashSet<String> = HashSet::new();
        let by_ino: HashMap<u64, &(String, Synced)> = gone
            .iter()
            .filter(|(_, s)| s.ino != 0)
            .map(|g| (g.1.ino, g))
            .collect();
        for (rel, info) in &created {
            if moved_to.iter().any(|m| rel.starts_with(&format!("{m}/"))) {
                continue;
            }
            let Some((from, base)) = by_ino.get(&info.ino).map(|g| (&g.0, &g.1)) else {
                continue;
            };
            if base.kind != info.kind
                || moved_from
                    .iter()
                    .any(|m| from.starts_with(&format!("{m}/")))
            {
                continue;
            }
            if self.remote_move(from, rel).await.is_ok() {
                moved_from.insert(from.clone());
                moved_to.insert(rel.clone());
            }
        }
        let under = |set: &HashSet<String>, p: &str| {
            set.iter()
                .any(|m| p == m || p.starts_with(&format!("{m}/")))
        };
        // New folders, then new and changed files.
        let mut new_files = Vec::new();
        for (rel, info) in &created {
            if under(&moved_to, rel) {
                continue;
            }
            if info.kind == Kind::File {
                new_files.push(rel.clone());
                continue;
            }
            let r = if info.kind == Kind::Folder {
                let rp = remote_path(rel);
                let res = self
                    .call(|c| {
                        let rp = rp.clone();
                        async move { c.create_folder(&rp).await }
                    })
                    .await;
                match res {
                    Ok(_) => self.record_folder(rel),
                    Err(ClientError::Api {
                        code: ErrorCode::Conflict,
                        ..
                    }) => self.record_folder(rel),
                    // `Shared` and `Shared/<owner>` exist on the drive by
                    // themselves (what others share with this user).
                    Err(ClientError::Api {
                        code: ErrorCode::Forbidden,
                        ..
                    }) if rel == "Shared"
                        || (rel.starts_with("Shared/") && rel.matches('/').count() == 1) =>
                    {
                        self.record_folder(rel)
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.push_file(rel, None).await
            };
            if let Err(e) = r {
                tracing::warn!(path = rel, error = %e, "upload failed; retried on the next pass");
            }
        }
        self.push_many(new_files).await;
        for (rel, base) in &changed {
            if base.kind == Kind::Folder {
                continue;
            }
            let abs = absolute(self.root(), rel);
            let hash = match hash_file_off(&abs).await {
                Ok(h) => h,
                Err(_) => continue,
            };
            if hash == base.hash {
                // Touched, not changed.
                self.record_file(rel, base.version, &hash, base.blocks.clone())?;
                continue;
            }
            if let Err(e) = self.push_file(rel, Some(base)).await {
                tracing::warn!(path = rel, error = %e, "upload failed; retried on the next pass");
            }
        }
        // Deletions, deepest first, unless it is a mass deletion.
        let mut deletions: Vec<(String, Synced)> = gone
            .into_iter()
            .filter(|(p, _)| !under(&moved_from, p))
            .collect();
        let synced = self.state.len().max(1);
        if deletions.len() >= self.opts.mass_delete_min
            && deletions.len() * 2 >= synced
            && !self.opts.allow_mass_delete
        {
            self.hold(
                &deletions.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
                "local",
            )?;
            return Ok(());
        }
        deletions.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, base) in deletions {
            let rp = remote_path(&rel);
            // Only what is still the version we synced: never a newer edit.
            let current = self
                .call(|c| {
                    let rp = rp.clone();
                    async move { c.metadata(&rp).await }
                })
                .await;
            match current {
                Ok(m) if base.kind == Kind::File && m.version != base.version => {
                    tracing::warn!(
                        path = rel,
                        "deleted here but changed elsewhere: fetching it back"
                    );
                    self.state.remove(&rel)?;
                    let _ = self.pull_file(&rel).await;
                    continue;
                }
                Ok(_) => {
                    let r = self
                        .call(|c| {
                            let rp = rp.clone();
                            async move { c.delete(&rp).await }
                        })
                        .await;
                    match r {
                        Ok(())
                        | Err(ClientError::Api {
                            code: ErrorCode::NotFound,
                            ..
                        }) => self.state.remove(&rel)?,
                        Err(e) => {
                            tracing::warn!(path = rel, error = %e, "delete failed; retried later")
                        }
                    }
                }
                Err(ClientError::Api {
                    code: ErrorCode::NotFound,
                    ..
                }) => self.state.remove(&rel)?,
                Err(e) => tracing::warn!(path = rel, error = %e, "delete deferred"),
            }
        }
        self.state.flush()
    }

    async fn remote_move(&mut self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (remote_path(from), remote_path(to));
        self.call(|c| {
            let (f, t) = (f.clone(), t.clone());
            async move { c.move_entry(&f, &t).await }
        })
        .await?;
        for (p, mut s) in self.state.subtree(from)? {
            self.state.remove(&p)?;
            let new = format!("{to}{}", &p[from.len()..]);
            if let Some(i) = stat(&absolute(self.root(), &new)) {
                s.ino = i.ino;
                s.mtime_ns = if s.kind == Kind::File { i.mtime_ns } else { 0 };
            }
            self.state.put(&new, &s)?;
        }
        tracing::info!(from, to, "moved");
        Ok(())
    }

    fn hold(&mut self, paths: &[String], side: &str) -> Result<()> {
        let report = self.root().join(".strata-sync").join("held-deletions.txt");
        let mut text = format!(
            "{} {side} deletions were held, not propagated (more than half the folder). \
             Restart with --allow-mass-delete to apply them.\n",
            paths.len()
        );
        for p in paths {
            text.push_str(p);
            text.push('\n');
        }
        std::fs::write(&report, text).map_err(io(&report))?;
        if self.held.len() != paths.len() {
            tracing::warn!(count = paths.len(), side, report = %report.display(), "mass deletion held");
        }
        self.held = paths.to_vec();
        Ok(())
    }

    /// Remote pass: journal lines after the cursor, applied to the folder.
    async fn pull_changes(&mut self) -> Result<()> {
        let Some(mut cursor) = self.state.cursor()? else {
            return self.initial().await;
        };
        loop {
            let page = {
                let cur = cursor.clone();
                self.call(|c| {
                    let cur = cur.clone();
                    async move { c.changes(&cur, 1000).await }
                })
                .await
            };
            let page = match page {
                Ok(p) => p,
                Err(ClientError::Api {
                    code: ErrorCode::Gone,
                    ..
                }) => {
                    tracing::warn!("journal moved past our cursor: merging afresh");
                    for item in self.state.paths().collect::<Vec<_>>() {
                        let (p, _) = item?;
                        self.state.remove(&p)?;
                    }
                    return self.initial().await;
                }
                Err(e) => return Err(e),
            };
            let deletes = page
                .changes
                .iter()
                .filter(|c| c.kind == ChangeKind::Deleted)
                .count();
            let hold = deletes >= self.opts.mass_delete_min
                && deletes * 2 >= self.state.len().max(1)
                && !self.opts.allow_mass_delete;
            let mut held = Vec::new();
            for ch in &page.changes {
                if hold && ch.kind == ChangeKind::Deleted {
                    held.push(ch.path.clone());
                    continue;
                }
                if let Err(e) = self.apply_change(ch).await {
                    tracing::warn!(path = ch.path, error = %e, "applying a remote change failed");
                }
            }
            if !held.is_empty() {
                self.hold(&held, "remote")?;
            }
            cursor = page.cursor.clone();
            self.state.set_cursor(&cursor)?;
            if !page.has_more {
                break;
            }
        }
        self.state.flush()
    }

    async fn apply_change(&mut self, ch: &Change) -> Result<()> {
        let Some(rel) = rel_of_remote(&ch.path) else {
            return Ok(());
        };
        if rel.split('/').any(scan::ignored) {
            return Ok(());
        }
        let abs = absolute(self.root(), &rel);
        let base = self.state.get(&rel)?;
        let local = stat(&abs);
        let against = |local: Option<LocalInfo>, base: Option<&Synced>| match (local, base) {
            (None, _) => Local::Absent,
            (Some(l), Some(b)) if unchanged(&l, b) => Local::AsSynced(l.kind),
            (Some(l), _) => Local::Differs(l.kind),
        };
        let from_rel = match ch.kind {
            ChangeKind::Moved => ch.from.as_deref().and_then(rel_of_remote),
            _ => None,
        };
        let source = match &from_rel {
            Some(from) => {
                let from_base = self.state.get(from)?;
                let from_local = stat(&absolute(self.root(), from));
                Some(match from_base {
                    Some(b) => against(from_local, Some(&b)),
                    // Not synced from there: nothing to move.
                    None => Local::Differs(Kind::File),
                })
            }
            None => None,
        };
        let facts = Facts {
            change: ch.kind,
            entry: ch.entry_kind,
            // A share's mount point (`Shared/<owner>/<name>`) appears whole
            // when the share is made and goes whole when it ends.
            mount: rel.starts_with("Shared/") && rel.matches('/').count() == 2,
            has_base: base.is_some(),
            base_current: base
                .as_ref()
                .is_some_and(|b| b.version >= ch.version || b.hash == ch.content_hash),
            local: against(local, base.as_ref()),
            source,
        };
        let action = decide(facts);
        tracing::debug!(path = rel, ?facts, ?action, "remote change");
        match action {
            Action::Skip => Ok(()),
            Action::DropTree => self.drop_tree(&rel),
            Action::PullTree => self.pull_tree(&rel).await,
            Action::PullFile => self.pull_file(&rel).await,
            Action::RemoveFile => {
                tokio::fs::remove_file(&abs).await.map_err(io(&abs))?;
                self.state.remove(&rel)
            }
            Action::RemoveEmptyFolder => {
                let _ = tokio::fs::remove_dir(&abs).await;
                if !tokio::fs::try_exists(&abs).await.unwrap_or(true) {
                    self.state.remove(&rel)?;
                }
                Ok(())
            }
            Action::Forget => {
                if facts.local != Local::Absent {
                    tracing::warn!(path = rel, "deleted elsewhere but edited here: kept");
                }
                self.state.remove(&rel)
            }
            Action::MoveLocal => {
                let Some(from) = from_rel else {
                    return Ok(());
                };
                let from_abs = absolute(self.root(), &from);
                if let Some(dir) = abs.parent() {
                    tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
                }
                tokio::fs::rename(&from_abs, &abs).await.map_err(io(&abs))?;
                for (p, mut s) in self.state.subtree(&from)? {
                    self.state.remove(&p)?;
                    let new = format!("{rel}{}", &p[from.len()..]);
                    if let Some(i) = stat(&absolute(self.root(), &new)) {
                        s.ino = i.ino;
                        if s.kind == Kind::File {
                            s.mtime_ns = i.mtime_ns;
                        }
                    }
                    self.state.put(&new, &s)?;
                }
                Ok(())
            }
            Action::MakeFolder { record } => {
                tokio::fs::create_dir_all(&abs).await.map_err(io(&abs))?;
                if record {
                    self.record_folder(&rel)?;
                }
                Ok(())
            }
            Action::Reconcile => {
                // The same content on both sides is simply synced; else
                // ours goes up against what we last synced (a conflict
                // keeps both).
                if self
                    .record_if_same(&rel, &ch.path, ch.version, &ch.content_hash)
                    .await?
                {
                    return Ok(());
                }
                let stale = base.clone().unwrap_or_else(Synced::nothing_synced);
                self.push_file(&rel, Some(&stale)).await
            }
        }
    }

    /// Records the local file at `rel` as synced with the remote version
    /// at `remote` when their content is the same (`true`); leaves it
    /// alone otherwise (`false`).
    async fn record_if_same(
        &mut self,
        rel: &str,
        remote: &str,
        version: u64,
        remote_hash: &str,
    ) -> Result<bool> {
        let hash = hash_file_off(&absolute(self.root(), rel)).await?;
        if hash != remote_hash {
            return Ok(false);
        }
        let blocks = self
            .call(|c| {
                let p = remote.to_string();
                async move { c.file_blocks(&p).await }
            })
            .await
            .unwrap_or_default();
        self.record_file(rel, version, &hash, blocks)?;
        Ok(true)
    }

    /// Removes a local tree the drive no longer has (a share that ended),
    /// keeping every file edited here since it was synced.
    fn drop_tree(&mut self, rel: &str) -> Result<()> {
        let mut known = self.state.subtree(rel)?;
        // Deepest first, so folders are empty by the time they are reached.
        known.sort_by_key(|k| std::cmp::Reverse(k.0.len()));
        for (p, s) in known {
            let abs = absolute(self.root(), &p);
            match stat(&abs) {
                Some(l) if l.kind == Kind::File && unchanged(&l, &s) => {
                    std::fs::remove_file(&abs).map_err(io(&abs))?;
                }
                Some(l) if l.kind == Kind::Folder => {
                    let _ = std::fs::remove_dir(&abs);
                }
                Some(_) => tracing::warn!(path = p, "no longer shared but edited here: kept"),
                None => {}
            }
            self.state.remove(&p)?;
        }
        Ok(())
    }

    /// A folder that appeared by a move we could not replay: fetch it.
    async fn pull_tree(&mut self, rel: &str) -> Result<()> {
        let rp = remote_path(rel);
        let listing = self
            .call(|c| {
                let rp = rp.clone();
                async move { c.list(&rp, true).await }
            })
            .await?;
        let abs = absolute(self.root(), rel);
        std::fs::create_dir_all(&abs).map_err(io(&abs))?;
        self.record_folder(rel)?;
        for e in listing.entries {
            let Some(r) = rel_of_remote(&e.path) else {
                continue;
            };
            if e.kind == EntryKind::Folder {
                let a = absolute(self.root(), &r);
                std::fs::create_dir_all(&a).map_err(io(&a))?;
                self.record_folder(&r)?;
            } else {
                self.pull_file(&r).await?;
            }
        }
        Ok(())
    }

    /// Syncs until stopped (or once, with `Options::once`).
    pub async fn run(mut self, stop: tokio_util_stop::Stop) -> Result<()> {
        if self.state.cursor()?.is_none() {
            self.initial().await?;
        } else {
            self.pull_changes().await?;
        }
        self.scan_local().await?;
        self.pull_changes().await?;
        if self.opts.once {
            return self.state.flush();
        }
        let (tx, mut rx) = mpsc::channel::<Wake>(64);
        // File-system events.
        let watch_tx = tx.clone();
        let root = self.opts.root.clone();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                let relevant = ev.paths.iter().any(|p| {
                    p.strip_prefix(&root)
                        .map(|r| {
                            !r.components()
                                .any(|c| c.as_os_str().to_str().is_none_or(scan::ignored))
                        })
                        .unwrap_or(false)
                });
                if relevant {
                    let _ = watch_tx.try_send(Wake::Local);
                }
            }
        })
        .map_err(|e| ClientError::Protocol(format!("watching the folder: {e}")))?;
        notify::Watcher::watch(
            &mut watcher,
            &self.opts.root,
            notify::RecursiveMode::Recursive,
        )
        .map_err(|e| ClientError::Protocol(format!("watching the folder: {e}")))?;
        // Long polls for remote changes.
        let (cursor_tx, cursor_rx) =
            tokio::sync::watch::channel(self.state.cursor()?.unwrap_or_default());
        let poll_tx = tx.clone();
        let profile = self.profile.clone();
        let poller = tokio::spawn(async move {
            let mut server = 0usize;
            let mut backoff = strata_api::backoff::Backoff::new(
                Duration::from_millis(200),
                Duration::from_secs(10),
            );
            loop {
                let Ok(c) = profile.client(server) else {
                    return;
                };
                let cursor = cursor_rx.borrow().clone();
                match c.poll(&cursor, 30).await {
                    Ok(r) => {
                        backoff.reset();
                        if r.changes && poll_tx.send(Wake::Remote).await.is_err() {
                            return;
                        }
                        if let Some(b) = r.backoff {
                            tokio::time::sleep(Duration::from_secs(b)).await;
                        }
                        if !r.changes {
                            continue;
                        }
                        // Let the main loop move the cursor first.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => {
                        server += 1;
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        });
        let mut rescan = tokio::time::interval(self.opts.rescan);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rescan.tick().await;
        let result = loop {
            let wake = tokio::select! {
                _ = stop.wait() => break Ok(()),
                _ = rescan.tick() => Wake::Local,
                w = rx.recv() => match w { Some(w) => w, None => break Ok(()) },
            };
            // Let a burst of events settle, then take everything queued.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut local = matches!(wake, Wake::Local);
            let mut remote = matches!(wake, Wake::Remote);
            while let Ok(w) = rx.try_recv() {
                match w {
                    Wake::Local => local = true,
                    Wake::Remote => remote = true,
                }
            }
            if remote {
                if let Err(e) = self.pull_changes().await {
                    tracing::warn!(error = %e, "remote changes: retrying later");
                }
            }
            if local {
                if let Err(e) = self.scan_local().await {
                    tracing::warn!(error = %e, "local changes: retrying later");
                }
                // Our own uploads come back through the journal; catch up.
                let _ = self.pull_changes().await;
            }
            if let Ok(Some(c)) = self.state.cursor() {
                let _ = cursor_tx.send(c);
            }
        };
        poller.abort();
        drop(watcher);
        self.state.flush()?;
        result
    }
}

/// A stop signal the caller triggers (Ctrl-C, a test).
pub mod tokio_util_stop {
    use std::sync::Arc;

    #[derive(Clone, Default)]
    pub struct Stop(Arc<tokio::sync::Notify>, Arc<std::sync::atomic::AtomicBool>);

    impl Stop {
        pub fn trigger(&self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
            self.0.notify_waiters();
        }

        pub async fn wait(&self) {
            loop {
                let notified = self.0.notified();
                if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        }
    }
}
