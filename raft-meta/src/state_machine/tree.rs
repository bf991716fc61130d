//! The folder tree: folders made on the way, create, delete (with
//! history) and move.

use cluster_config::{DeviceId, EntryId, UserId};

use super::namespace::*;
use super::tx::Tx;
use super::Step;
use crate::keys;
use crate::kv::{self, Resolved};
use crate::path::{DrivePath, PathError};
use crate::records::{ChangeKind, EntryKind, EntryRecord, VersionRecord};
use crate::types::{CommandError, Output};

/// Makes sure every folder of `dir` exists and is live, creating or reviving
/// as needed. Returns the id of `dir`.
pub(super) fn ensure_folders(tx: &mut Tx<'_>, ctx: &mut Ctx, dir: &DrivePath) -> Step<EntryId> {
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

pub(super) fn create_folder_entry(
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
pub(super) fn delete_tree(
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
