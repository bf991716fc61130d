//! The file tree: commits, folders, delete, move, restore, and the journal.

use std::collections::BTreeMap;

use cluster_config::{BlockId, DeviceId, EntryId, UserId};

use super::tx::Tx;
use super::{civil_date, Fail, Step};
use crate::keys;
use crate::kv::{self, Resolved};
use crate::path::{DrivePath, PathError, MAX_SEGMENT_BYTES};
use crate::records::{
    BlockRecord, BlockRef, ChangeKind, ChangeRecord, DeviceRecord, EntryKind, EntryRecord,
    UserRecord, VersionRecord,
};
use crate::types::{
    CommandError, CommitFile, EntryView, FileContent, NewBlock, OnConflict, Output,
};

/// Journal lines kept per user; a device offline for longer than this many
/// changes lists afresh (`410 gone`).
#[cfg(not(test))]
pub const JOURNAL_KEEP: u64 = 100_000;
/// Small in unit tests, so trimming is exercised.
#[cfg(test)]
pub const JOURNAL_KEEP: u64 = 20;

/// Per-command context: the user record is loaded once and saved at the end.
pub(super) struct Ctx {
    pub at: u64,
    pub user: UserId,
    pub urec: UserRecord,
    pub device: DeviceId,
    seed: [u8; 16],
    counter: u32,
}

impl Ctx {
    pub fn load(
        tx: &Tx<'_>,
        at: u64,
        user: &UserId,
        device: &DeviceId,
        seed: &[u8; 16],
    ) -> Step<Self> {
        let urec: UserRecord = tx
            .get("user", &keys::user(user))?
            .ok_or(CommandError::NoSuchUser)?;
        Ok(Self {
            at,
            user: *user,
            urec,
            device: *device,
            seed: *seed,
            counter: 0,
        })
    }

    pub fn save(self, tx: &mut Tx<'_>) {
        tx.put(keys::user(&self.user), &self.urec);
    }

    /// A fresh entry id: the command's time in milliseconds (48 bits, big
    /// endian), then 80 bits derived from the command's seed. Ids made
    /// later sort later, so a user's new entries land next to each other
    /// in the tables instead of at random places among all their entries.
    fn next_id(&mut self) -> EntryId {
        let mut h = blake3::Hasher::new();
        h.update(b"strata entry id v1");
        h.update(&self.seed);
        h.update(&self.counter.to_le_bytes());
        self.counter += 1;
        let mut id = [0u8; 16];
        id[..6].copy_from_slice(&self.at.to_be_bytes()[2..]);
        id[6..].copy_from_slice(&h.finalize().as_bytes()[..10]);
        if id == [0u8; 16] {
            id[0] = 1;
        }
        EntryId(id)
    }

    fn journal(
        &mut self,
        tx: &mut Tx<'_>,
        entry: EntryId,
        path: String,
        kind: ChangeKind,
        rec: &EntryRecord,
        from: Option<String>,
    ) -> Step<()> {
        super::shares::fan_out(
            tx,
            &super::shares::Change {
                owner: &self.user,
                owner_name: &self.urec.username,
                entry,
                rec,
                kind,
                from: from.as_deref(),
                device: self.device,
                at: self.at,
            },
        )?;
        let seq = self.urec.next_seq;
        self.urec.next_seq += 1;
        tx.put(
            keys::journal(&self.user, seq),
            &ChangeRecord {
                entry,
                path,
                kind,
                entry_kind: rec.kind,
                version: rec.head,
                size: rec.size,
                content_hash: rec.content_hash,
                from,
                device: self.device,
                at_ms: self.at,
            },
        );
        // Bounded: the oldest line goes once the journal holds JOURNAL_KEEP.
        while self.urec.next_seq - self.urec.journal_floor > JOURNAL_KEEP {
            tx.del(keys::journal(&self.user, self.urec.journal_floor));
            self.urec.journal_floor += 1;
        }
        Ok(())
    }
}

pub(super) fn parse_path(segments: &[String]) -> Step<DrivePath> {
    DrivePath::from_segments(segments.to_vec()).map_err(|e| CommandError::BadPath(e).into())
}

fn non_root(segments: &[String]) -> Step<DrivePath> {
    let p = parse_path(segments)?;
    if p.is_root() {
        return Err(CommandError::BadPath(PathError::IsRoot).into());
    }
    Ok(p)
}

fn view(id: EntryId, path: &DrivePath, record: EntryRecord) -> EntryView {
    EntryView {
        id,
        path: path.to_string(),
        record,
    }
}

fn new_entry(ctx: &Ctx, parent: EntryId, name: &str, kind: EntryKind) -> EntryRecord {
    EntryRecord {
        parent,
        name: name.to_string(),
        kind,
        live: true,
        head: 0,
        size: 0,
        content_hash: [0; 32],
        modified_ms: ctx.at,
        modified_by: ctx.device,
        created_ms: ctx.at,
    }
}

/// Makes sure every folder of `dir` exists and is live, creating or reviving
/// as needed. Returns the id of `dir`.
fn ensure_folders(tx: &mut Tx<'_>, ctx: &mut Ctx, dir: &DrivePath) -> Step<EntryId> {
    let mut id = EntryId::ROOT;
    let mut here = DrivePath::root();
    for seg in dir.segments() {
        here = here.join(seg).map_err(CommandError::BadPath)?;
        match kv::child(tx, &ctx.user, &id, seg)? {
            Some(cid) => {
                let mut rec =
                    kv::entry(tx, &ctx.user, &cid)?.ok_or_else(|| corrupt("dangling child"))?;
                match (rec.kind, rec.live) {
                    (EntryKind::Folder, true) => id = cid,
                    (EntryKind::File, true) => return Err(CommandError::ParentNotFolder.into()),
                    (EntryKind::Folder, false) => {
                        rec.live = true;
                        rec.modified_ms = ctx.at;
                        rec.modified_by = ctx.device;
                        ctx.journal(tx, cid, here.to_string(), ChangeKind::Created, &rec, None)?;
                        tx.put(keys::entry(&ctx.user, &cid), &rec);
                        id = cid;
                    }
                    (EntryKind::File, false) => {
                        // A deleted file's name is reused by a folder: the old
                        // file keeps its history but leaves the tree.
                        tx.del(keys::child(&ctx.user, &id, seg));
                        id = create_folder_entry(tx, ctx, id, seg, &here)?;
                    }
                }
            }
            None => id = create_folder_entry(tx, ctx, id, seg, &here)?,
        }
    }
    Ok(id)
}

fn create_folder_entry(
    tx: &mut Tx<'_>,
    ctx: &mut Ctx,
    parent: EntryId,
    name: &str,
    path: &DrivePath,
) -> Step<EntryId> {
    let id = ctx.next_id();
    let rec = new_entry(ctx, parent, name, EntryKind::Folder);
    tx.put_raw(
        keys::child(&ctx.user, &parent, name),
        id.as_bytes().to_vec(),
    );
    ctx.journal(tx, id, path.to_string(), ChangeKind::Created, &rec, None)?;
    tx.put(keys::entry(&ctx.user, &id), &rec);
    Ok(id)
}

fn corrupt(reason: &str) -> Fail {
    Fail::Fatal(super::tx::Fatal::Corrupt(crate::records::DecodeError {
        what: "entry",
        reason: reason.into(),
    }))
}

/// How a new version takes its block references.
pub(super) enum Refs<'a> {
    /// Add a reference per block; create records for blocks this write stored.
    Add(&'a [NewBlock]),
    /// The references already exist (an upload session hands over its own).
    Transfer,
}

pub(super) struct WriteSpec<'a> {
    pub path: DrivePath,
    pub content: &'a FileContent,
    pub base: Option<u64>,
    pub on_conflict: OnConflict,
    pub refs: Refs<'a>,
    /// Quota reserved by the upload being committed, released by this write.
    pub release_reserved: u64,
}

/// What `write_version` did.
pub(super) struct Written {
    pub view: EntryView,
    /// False when the content equalled the head and no version was added.
    pub changed: bool,
}

/// Writes a new head version of a file (shared by commit, restore and the
/// end of a resumable upload).
pub(super) fn write_version(tx: &mut Tx<'_>, ctx: &mut Ctx, spec: WriteSpec<'_>) -> Step<Written> {
    let content = spec.content;
    let sum: u64 = content.blocks.iter().map(|b| b.size as u64).sum();
    if sum != content.size || content.blocks.iter().any(|b| b.size == 0) {
        return Err(
            CommandError::BadRequest("block sizes do not add up to the file size".into()).into(),
        );
    }
    let mut path = spec.path;
    let name = path
        .name()
        .ok_or(CommandError::BadPath(PathError::IsRoot))?
        .to_string();

    match kv::resolve(tx, &ctx.user, path.segments())? {
        Resolved::ThroughFile => return Err(CommandError::ParentNotFolder.into()),
        Resolved::Found(id, rec) if rec.live => {
            if rec.kind == EntryKind::Folder {
                return Err(CommandError::IsFolder.into());
            }
            if rec.content_hash == content.content_hash && rec.size == content.size {
                // Same bytes as the head: nothing to write, nothing to conflict.
                return Ok(Written {
                    view: view(id, &path, rec),
                    changed: false,
                });
            }
            let conflict = match spec.base {
                Some(b) => b != rec.head,
                None => spec.on_conflict != OnConflict::Overwrite,
            };
            if conflict {
                match spec.on_conflict {
                    OnConflict::Overwrite => {}
                    OnConflict::Fail => {
                        return Err(CommandError::Conflict {
                            base: spec.base,
                            current: rec.head,
                        }
                        .into())
                    }
                    OnConflict::Rename => path = conflicted_path(tx, ctx, &path, &name)?,
                }
            }
        }
        _ => {}
    }

    let parent_path = path
        .parent()
        .ok_or(CommandError::BadPath(PathError::IsRoot))?;
    let parent = ensure_folders(tx, ctx, &parent_path)?;
    let name = path
        .name()
        .ok_or(CommandError::BadPath(PathError::IsRoot))?
        .to_string();
    let (id, mut rec, was_live) = match kv::child(tx, &ctx.user, &parent, &name)? {
        Some(cid) => {
            let rec = kv::entry(tx, &ctx.user, &cid)?.ok_or_else(|| corrupt("dangling child"))?;
            match (rec.kind, rec.live) {
                (EntryKind::File, live) => (cid, rec, live),
                (EntryKind::Folder, true) => return Err(CommandError::IsFolder.into()),
                (EntryKind::Folder, false) => {
                    tx.del(keys::child(&ctx.user, &parent, &name));
                    let nid = ctx.next_id();
                    tx.put_raw(
                        keys::child(&ctx.user, &parent, &name),
                        nid.as_bytes().to_vec(),
                    );
                    (nid, new_entry(ctx, parent, &name, EntryKind::File), false)
                }
            }
        }
        None => {
            let nid = ctx.next_id();
            tx.put_raw(
                keys::child(&ctx.user, &parent, &name),
                nid.as_bytes().to_vec(),
            );
            (nid, new_entry(ctx, parent, &name, EntryKind::File), false)
        }
    };

    let old_size = if was_live { rec.size } else { 0 };
    let u = &ctx.urec;
    let committed_elsewhere = u.used_bytes - old_size.min(u.used_bytes)
        + u.reserved_bytes.saturating_sub(spec.release_reserved);
    if content.size > old_size {
        let available = u.quota_bytes.saturating_sub(committed_elsewhere);
        if content.size > available {
            return Err(CommandError::QuotaExceeded {
                needed: content.size,
                available,
            }
            .into());
        }
    }
    if let Refs::Add(new_blocks) = spec.refs {
        add_refs(tx, ctx, &content.blocks, new_blocks)?;
    }

    let version = rec.head + 1;
    tx.put(
        keys::version(&ctx.user, &id, version),
        &VersionRecord {
            size: content.size,
            content_hash: content.content_hash,
            blocks: content.blocks.clone(),
            device: ctx.device,
            at_ms: ctx.at,
            deleted: false,
            base: spec.base,
        },
    );
    rec.head = version;
    rec.live = true;
    rec.size = content.size;
    rec.content_hash = content.content_hash;
    rec.modified_ms = ctx.at;
    rec.modified_by = ctx.device;
    ctx.urec.used_bytes = ctx.urec.used_bytes - old_size.min(ctx.urec.used_bytes) + content.size;
    ctx.urec.reserved_bytes = ctx
        .urec
        .reserved_bytes
        .saturating_sub(spec.release_reserved);
    let kind = if was_live {
        ChangeKind::Modified
    } else {
        ChangeKind::Created
    };
    ctx.journal(tx, id, path.to_string(), kind, &rec, None)?;
    tx.put(keys::entry(&ctx.user, &id), &rec);
    Ok(Written {
        view: view(id, &path, rec),
        changed: true,
    })
}

/// `name (conflicted copy DEVICE YYYY-MM-DD).ext`, numbered if taken.
fn conflicted_path(tx: &Tx<'_>, ctx: &Ctx, path: &DrivePath, name: &str) -> Step<DrivePath> {
    let device_name = tx
        .get::<DeviceRecord>("device", &keys::device(&ctx.user, &ctx.device))?
        .map(|d| d.name)
        .unwrap_or_else(|| "unknown device".into());
    let date = civil_date(ctx.at);
    for n in 1..=1000u32 {
        let candidate = conflicted_name(name, &device_name, &date, n);
        let p = path.with_name(&candidate).map_err(CommandError::BadPath)?;
        match kv::resolve(tx, &ctx.user, p.segments())? {
            Resolved::Found(_, rec) if rec.live => continue,
            _ => return Ok(p),
        }
    }
    Err(CommandError::AlreadyExists.into())
}

pub(crate) fn conflicted_name(name: &str, device: &str, date: &str, n: u32) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    };
    let label = if n == 1 {
        format!(" (conflicted copy {device} {date})")
    } else {
        format!(" (conflicted copy {device} {date} {n})")
    };
    let budget = MAX_SEGMENT_BYTES.saturating_sub(label.len() + ext.len());
    let mut cut = stem.len().min(budget);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{label}{ext}", &stem[..cut])
}

fn count_refs(blocks: &[BlockRef]) -> BTreeMap<BlockId, (u64, u32)> {
    let mut counts: BTreeMap<BlockId, (u64, u32)> = BTreeMap::new();
    for b in blocks {
        counts.entry(b.id).or_insert((0, b.size)).0 += 1;
    }
    counts
}

/// Adds one reference per occurrence; creates records for newly stored blocks.
pub(super) fn add_refs(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    blocks: &[BlockRef],
    new_blocks: &[NewBlock],
) -> Step<()> {
    let fresh: BTreeMap<BlockId, &NewBlock> = new_blocks.iter().map(|n| (n.id, n)).collect();
    let mut missing = Vec::new();
    for (id, (count, size)) in count_refs(blocks) {
        let key = keys::block(&ctx.user, &id);
        match tx.get::<BlockRecord>("block", &key)? {
            Some(mut rec) => {
                if rec.plain_len != size {
                    return Err(
                        CommandError::BadRequest(format!("block {id} size mismatch")).into(),
                    );
                }
                rec.refs += count;
                tx.put(key, &rec);
            }
            None => match fresh.get(&id) {
                Some(n) if n.plain_len == size => tx.put(
                    key,
                    &BlockRecord {
                        refs: count,
                        plain_len: n.plain_len,
                        stored: n.stored.clone(),
                        created_ms: ctx.at,
                    },
                ),
                Some(_) => {
                    return Err(
                        CommandError::BadRequest(format!("block {id} size mismatch")).into(),
                    )
                }
                None => missing.push(id),
            },
        }
    }
    if !missing.is_empty() {
        return Err(CommandError::MissingBlocks(missing).into());
    }
    Ok(())
}

/// Drops one reference per occurrence. A block at zero references keeps its
/// record (and shards) until garbage collection reaps it.
///
/// A reference to drop that the block does not have (its count would go
/// below zero, or its record is gone) means the counts are wrong: clamping
/// would let a collector reap a block something still uses. It is reported
/// as corruption, which stops this state machine from applying further
/// (on every replica alike) until an operator looks.
pub(super) fn drop_refs(tx: &mut Tx<'_>, user: &UserId, blocks: &[BlockRef]) -> Step<()> {
    for (id, (count, _)) in count_refs(blocks) {
        let key = keys::block(user, &id);
        let Some(mut rec) = tx.get::<BlockRecord>("block", &key)? else {
            return Err(refcount_corrupt(format!(
                "block {id} of user {user}: {count} reference(s) to drop, no record"
            )));
        };
        rec.refs = rec.refs.checked_sub(count).ok_or_else(|| {
            refcount_corrupt(format!(
                "block {id} of user {user}: {count} reference(s) to drop, {} held",
                rec.refs
            ))
        })?;
        tx.put(key, &rec);
    }
    Ok(())
}

fn refcount_corrupt(reason: String) -> Fail {
    tracing::error!(%reason, "block reference count would go below zero");
    Fail::Fatal(super::tx::Fatal::Corrupt(crate::records::DecodeError {
        what: "block reference count",
        reason,
    }))
}

pub(super) fn commit_file(tx: &mut Tx<'_>, at: u64, c: &CommitFile) -> Step<Output> {
    let path = non_root(&c.path)?;
    let mut ctx = Ctx::load(tx, at, &c.user, &c.device, &c.id_seed)?;
    let written = write_version(
        tx,
        &mut ctx,
        WriteSpec {
            path,
            content: &c.content,
            base: c.base_version,
            on_conflict: c.on_conflict,
            refs: Refs::Add(&c.new_blocks),
            release_reserved: 0,
        },
    )?;
    ctx.save(tx);
    Ok(Output::Entry(written.view))
}

pub(super) fn create_folder(
    tx: &mut Tx<'_>,
    at: u64,
    user: &UserId,
    segments: &[String],
    device: &DeviceId,
    seed: &[u8; 16],
) -> Step<Output> {
    let path = non_root(segments)?;
    let mut ctx = Ctx::load(tx, at, user, device, seed)?;
    match kv::resolve(tx, user, path.segments())? {
        Resolved::Found(_, rec) if rec.live => return Err(CommandError::AlreadyExists.into()),
        Resolved::ThroughFile => return Err(CommandError::ParentNotFolder.into()),
        _ => {}
    }
    let id = ensure_folders(tx, &mut ctx, &path)?;
    let rec = kv::entry(tx, user, &id)?.ok_or_else(|| corrupt("folder vanished"))?;
    ctx.save(tx);
    Ok(Output::Entry(view(id, &path, rec)))
}

pub(super) fn delete(
    tx: &mut Tx<'_>,
    at: u64,
    user: &UserId,
    segments: &[String],
    device: &DeviceId,
) -> Step<Output> {
    let path = non_root(segments)?;
    let mut ctx = Ctx::load(tx, at, user, device, &[0; 16])?;
    let (id, rec) = match kv::resolve(tx, user, path.segments())? {
        Resolved::Found(id, rec) if rec.live => (id, rec),
        _ => return Err(CommandError::NotFound.into()),
    };
    delete_tree(tx, &mut ctx, id, rec, path.to_string())?;
    ctx.save(tx);
    Ok(Output::Done)
}

/// Deletes an entry and, for a folder, everything live below it. Files get a
/// deletion version; history is kept.
fn delete_tree(
    tx: &mut Tx<'_>,
    ctx: &mut Ctx,
    id: EntryId,
    rec: EntryRecord,
    path: String,
) -> Step<()> {
    // Depth-first with an explicit stack: deep trees cannot overflow ours.
    let mut stack = vec![(id, rec, path)];
    while let Some((id, mut rec, path)) = stack.pop() {
        if rec.kind == EntryKind::Folder {
            for (k, v) in tx.scan(&keys::children_of(&ctx.user, &id))? {
                let Some(cid) = EntryId::from_slice(&v) else {
                    continue;
                };
                let name = String::from_utf8_lossy(&k[1 + 16 + 16..]).into_owned();
                if let Some(crec) = kv::entry(tx, &ctx.user, &cid)? {
                    if crec.live {
                        stack.push((cid, crec, format!("{path}/{name}")));
                    }
                }
            }
        } else {
            rec.head += 1;
            tx.put(
                keys::version(&ctx.user, &id, rec.head),
                &VersionRecord {
                    size: 0,
                    content_hash: [0; 32],
                    blocks: Vec::new(),
                    device: ctx.device,
                    at_ms: ctx.at,
                    deleted: true,
                    base: Some(rec.head - 1),
                },
            );
            ctx.urec.used_bytes = ctx.urec.used_bytes.saturating_sub(rec.size);
            rec.size = 0;
            rec.content_hash = [0; 32];
        }
        rec.live = false;
        rec.modified_ms = ctx.at;
        rec.modified_by = ctx.device;
        ctx.journal(tx, id, path, ChangeKind::Deleted, &rec, None)?;
        tx.put(keys::entry(&ctx.user, &id), &rec);
    }
    Ok(())
}

pub(super) fn move_entry(
    tx: &mut Tx<'_>,
    at: u64,
    user: &UserId,
    from: &[String],
    to: &[String],
    device: &DeviceId,
    seed: &[u8; 16],
) -> Step<Output> {
    let from = non_root(from)?;
    let to = non_root(to)?;
    let mut ctx = Ctx::load(tx, at, user, device, seed)?;
    let (id, mut rec) = match kv::resolve(tx, user, from.segments())? {
        Resolved::Found(id, rec) if rec.live => (id, rec),
        _ => return Err(CommandError::NotFound.into()),
    };
    if to == from {
        return Ok(Output::Entry(view(id, &to, rec)));
    }
    if rec.kind == EntryKind::Folder && to.starts_with(&from) {
        return Err(CommandError::BadRequest("cannot move a folder into itself".into()).into());
    }
    let to_parent_path = to
        .parent()
        .ok_or(CommandError::BadPath(PathError::IsRoot))?;
    let to_name = to
        .name()
        .ok_or(CommandError::BadPath(PathError::IsRoot))?
        .to_string();
    match kv::resolve(tx, user, to.segments())? {
        Resolved::Found(_, r) if r.live => return Err(CommandError::AlreadyExists.into()),
        Resolved::ThroughFile => return Err(CommandError::ParentNotFolder.into()),
        _ => {}
    }
    let new_parent = ensure_folders(tx, &mut ctx, &to_parent_path)?;
    // A tombstone at the destination leaves the tree (its history stays).
    if kv::child(tx, user, &new_parent, &to_name)?.is_some() {
        tx.del(keys::child(user, &new_parent, &to_name));
    }
    tx.del(keys::child(user, &rec.parent, &rec.name));
    tx.put_raw(
        keys::child(user, &new_parent, &to_name),
        id.as_bytes().to_vec(),
    );
    rec.parent = new_parent;
    rec.name = to_name;
    rec.modified_by = ctx.device;
    ctx.journal(
        tx,
        id,
        to.to_string(),
        ChangeKind::Moved,
        &rec,
        Some(from.to_string()),
    )?;
    tx.put(keys::entry(user, &id), &rec);
    ctx.save(tx);
    Ok(Output::Entry(view(id, &to, rec)))
}

pub(super) fn restore(
    tx: &mut Tx<'_>,
    at: u64,
    user: &UserId,
    segments: &[String],
    version: u64,
    device: &DeviceId,
    seed: &[u8; 16],
) -> Step<Output> {
    let path = non_root(segments)?;
    let mut ctx = Ctx::load(tx, at, user, device, seed)?;
    let (id, rec) = match kv::resolve(tx, user, path.segments())? {
        Resolved::Found(id, rec) => (id, rec),
        _ => return Err(CommandError::NotFound.into()),
    };
    if rec.kind == EntryKind::Folder {
        return Err(CommandError::IsFolder.into());
    }
    let old: VersionRecord = tx
        .get("version", &keys::version(user, &id, version))?
        .ok_or(CommandError::NotFound)?;
    if old.deleted {
        return Err(CommandError::BadRequest("that version is a deletion".into()).into());
    }
    let content = FileContent {
        size: old.size,
        content_hash: old.content_hash,
        blocks: old.blocks,
    };
    let written = write_version(
        tx,
        &mut ctx,
        WriteSpec {
            path,
            content: &content,
            base: None,
            on_conflict: OnConflict::Overwrite,
            refs: Refs::Add(&[]),
            release_reserved: 0,
        },
    )?;
    ctx.save(tx);
    Ok(Output::Entry(written.view))
}

pub(super) fn register_blocks(
    tx: &mut Tx<'_>,
    at: u64,
    user: &UserId,
    blocks: &[NewBlock],
) -> Step<Output> {
    if tx.get_raw(&keys::user(user))?.is_none() {
        return Err(CommandError::NoSuchUser.into());
    }
    for n in blocks {
        let key = keys::block(user, &n.id);
        if tx.get_raw(&key)?.is_none() {
            tx.put(
                key,
                &BlockRecord {
                    refs: 0,
                    plain_len: n.plain_len,
                    stored: n.stored.clone(),
                    created_ms: at,
                },
            );
        }
    }
    Ok(Output::Done)
}
