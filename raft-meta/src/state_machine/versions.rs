//! File versions: writing one (conflicts, conflicted copies, quota),
//! committing content, restoring an earlier one.

use cluster_config::{DeviceId, UserId};

use super::namespace::*;
use super::tx::Tx;
use super::{civil_date, Step};
use crate::keys;
use crate::kv::{self, Resolved};
use crate::path::{DrivePath, PathError, MAX_SEGMENT_BYTES};
use crate::records::{ChangeKind, DeviceRecord, EntryKind, VersionRecord};
use crate::types::{
    CommandError, CommitFile, EntryView, FileContent, NewBlock, OnConflict, Output,
};

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
pub(super) fn conflicted_path(
    tx: &Tx<'_>,
    ctx: &Ctx,
    path: &DrivePath,
    name: &str,
) -> Step<DrivePath> {
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
