//! Sharing: one user's file or folder given to another, and the journal
//! lines that carry the owner's changes to the people it is shared with.
//!
//! A share names an entry by id, so it follows the entry across moves and
//! renames. The sharee sees it at `/Shared/<owner>/<name>`; every change the
//! owner's tree journals below a shared entry is also journaled, under that
//! path, for each sharee.

use cluster_config::{DeviceId, EntryId, ShareId, UserId};

use super::namespace::parse_path;
use super::tx::Tx;
use super::{Fail, Step};
use crate::keys;
use crate::kv::{self, Resolved};
use crate::path::MAX_SEGMENT_BYTES;
use crate::records::{
    ChangeKind, ChangeRecord, EntryKind, EntryRecord, ShareRecord, ShareRole, UserRecord,
};
use crate::types::{Command, CommandError, Output};

/// The top-level folder under which a user sees what others share.
pub const SHARED_ROOT: &str = "Shared";

/// Shares one user may hold out or in (a bound on per-change work).
pub const MAX_SHARES_PER_USER: usize = 1000;

/// Where a sharee sees a shared entry.
pub fn mount_path(owner_name: &str, share_name: &str) -> String {
    format!("/{SHARED_ROOT}/{owner_name}/{share_name}")
}

fn load_user(tx: &Tx<'_>, user: &UserId) -> Step<UserRecord> {
    Ok(tx
        .get("user", &keys::user(user))?
        .ok_or(CommandError::NoSuchUser)?)
}

/// Every share `owner` holds out, with its id.
pub(super) fn shares_out(tx: &Tx<'_>, owner: &UserId) -> Step<Vec<(ShareId, ShareRecord)>> {
    let mut out = Vec::new();
    for (k, _) in tx.scan(&keys::shares_out_of(owner))? {
        let Some(id) = ShareId::from_slice(&k[1 + 16..]) else {
            continue;
        };
        if let Some(rec) = tx.get::<ShareRecord>("share", &keys::share(&id))? {
            out.push((id, rec));
        }
    }
    Ok(out)
}

/// Appends one line to a user's journal (not the commanding user's: that
/// one goes through `Ctx`, which holds its record).
pub(super) fn append_line(tx: &mut Tx<'_>, user: &UserId, line: ChangeRecord) -> Step<()> {
    let mut urec = load_user(tx, user)?;
    let seq = urec.next_seq;
    urec.next_seq += 1;
    tx.put(keys::journal(user, seq), &line);
    while urec.next_seq - urec.journal_floor > super::namespace::JOURNAL_KEEP {
        tx.del(keys::journal(user, urec.journal_floor));
        urec.journal_floor += 1;
    }
    tx.put(keys::user(user), &urec);
    Ok(())
}

/// The entry's ancestors, itself first, each with the name below which the
/// walk came (`(id, name of id)`), up to (not including) the root.
fn ancestry(
    tx: &Tx<'_>,
    owner: &UserId,
    entry: EntryId,
    rec: &EntryRecord,
) -> Step<Vec<(EntryId, String)>> {
    let mut chain = vec![(entry, rec.name.clone())];
    let mut cur = rec.parent;
    for _ in 0..4096 {
        if cur == EntryId::ROOT {
            return Ok(chain);
        }
        let Some(r) = kv::entry(tx, owner, &cur)? else {
            return Ok(chain);
        };
        chain.push((cur, r.name.clone()));
        cur = r.parent;
    }
    Ok(chain)
}

/// What one owner's journal line means for the owner's sharees.
pub(super) struct Change<'a> {
    pub owner: &'a UserId,
    pub owner_name: &'a str,
    pub entry: EntryId,
    pub rec: &'a EntryRecord,
    pub kind: ChangeKind,
    pub from: Option<&'a str>,
    pub device: DeviceId,
    pub at: u64,
}

/// Copies a change of the owner's tree into the journal of everyone a
/// containing entry is shared with, under their `/Shared/...` path.
pub(super) fn fan_out(tx: &mut Tx<'_>, ch: &Change<'_>) -> Step<()> {
    let shares = shares_out(tx, ch.owner)?;
    if shares.is_empty() {
        return Ok(());
    }
    let chain = ancestry(tx, ch.owner, ch.entry, ch.rec)?;
    for (_, share) in shares {
        let mount = mount_path(ch.owner_name, &share.name);
        let idx = chain.iter().position(|(id, _)| *id == share.entry);
        // The shared entry's own path in the owner's tree, for `from`.
        let root_path = if ch.kind == ChangeKind::Moved {
            match kv::entry(tx, ch.owner, &share.entry)? {
                Some(r) if r.live => Some(kv::entry_path(tx, ch.owner, &share.entry)?),
                _ => None,
            }
        } else {
            None
        };
        let new_path = idx.map(|i| {
            let mut p = mount.clone();
            for (_, name) in chain[..i].iter().rev() {
                p.push('/');
                p.push_str(name);
            }
            p
        });
        let old_path = match (ch.from, &root_path) {
            (Some(from), Some(root)) => from
                .strip_prefix(root.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(|rest| format!("{mount}{rest}")),
            _ => None,
        };
        let (kind, path, from) = match (ch.kind, new_path, old_path) {
            // The shared entry itself moved: the sharee's view is unchanged.
            (ChangeKind::Moved, Some(_), _) if idx == Some(0) => continue,
            (ChangeKind::Moved, Some(new), Some(old)) => (ChangeKind::Moved, new, Some(old)),
            (ChangeKind::Moved, Some(new), None) => (ChangeKind::Created, new, None),
            (ChangeKind::Moved, None, Some(old)) => (ChangeKind::Deleted, old, None),
            (ChangeKind::Moved, None, None) => continue,
            (kind, Some(new), _) => (kind, new, None),
            (_, None, _) => continue,
        };
        let deleted = kind == ChangeKind::Deleted;
        append_line(
            tx,
            &share.sharee,
            ChangeRecord {
                entry: ch.entry,
                path,
                kind,
                entry_kind: ch.rec.kind,
                version: ch.rec.head,
                size: if deleted { 0 } else { ch.rec.size },
                content_hash: if deleted {
                    [0; 32]
                } else {
                    ch.rec.content_hash
                },
                from,
                device: ch.device,
                at_ms: ch.at,
            },
        )?;
    }
    Ok(())
}

/// The name a share is mounted under: the entry's name, made unique among
/// what this owner already shares with this sharee by a ` (n)` suffix, and
/// never longer than a path segment may be (the name is cut, on a
/// character boundary, to make room for the suffix).
fn mount_name(mine: &[(ShareId, ShareRecord)], sharee: &UserId, base: &str) -> String {
    let taken: Vec<&str> = mine
        .iter()
        .filter(|(_, s)| s.sharee == *sharee)
        .map(|(_, s)| s.name.as_str())
        .collect();
    let fit = |suffix: &str| {
        let room = MAX_SEGMENT_BYTES - suffix.len();
        let mut end = base.len().min(room);
        while !base.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{suffix}", &base[..end])
    };
    let mut name = fit("");
    let mut n = 2u32;
    while taken.contains(&name.as_str()) {
        name = fit(&format!(" ({n})"));
        n += 1;
    }
    name
}

/// A share about to be made: the entry, and what the owner already shares.
struct NewShare {
    owner_name: String,
    entry: EntryId,
    name: String,
    mine: usize,
}

/// What giving `path` of `owner`'s tree to `sharee` starts from: the share
/// that exists already (its role now `role`), or what a new one needs.
fn prepare(
    tx: &mut Tx<'_>,
    owner: &UserId,
    path: &[String],
    sharee: &UserId,
    role: ShareRole,
) -> Step<Result<ShareId, NewShare>> {
    let path = parse_path(path)?;
    if path.is_root() {
        return Err(CommandError::BadRequest("the root folder cannot be shared".into()).into());
    }
    if owner == sharee {
        return Err(
            CommandError::BadRequest("a file cannot be shared with its owner".into()).into(),
        );
    }
    let owner_rec = load_user(tx, owner)?;
    let _ = load_user(tx, sharee)?;
    let (entry, rec) = match kv::resolve(tx, owner, path.segments())? {
        Resolved::Found(e, r) if r.live => (e, r),
        _ => return Err(CommandError::NotFound.into()),
    };
    let mine = shares_out(tx, owner)?;
    if let Some((existing, mut s)) = mine
        .iter()
        .find(|(_, s)| s.entry == entry && s.sharee == *sharee)
        .cloned()
    {
        s.role = role;
        tx.put(keys::share(&existing), &s);
        return Ok(Ok(existing));
    }
    Ok(Err(NewShare {
        owner_name: owner_rec.username,
        entry,
        name: mount_name(&mine, sharee, &rec.name),
        mine: mine.len(),
    }))
}

/// Stores a new share, mounted at once (a journal line tells the sharee)
/// or pending until accepted.
#[allow(clippy::too_many_arguments)]
fn insert(
    tx: &mut Tx<'_>,
    at: u64,
    owner: &UserId,
    new: NewShare,
    sharee: &UserId,
    role: ShareRole,
    id: &ShareId,
    device: &DeviceId,
    pending: bool,
) -> Step<()> {
    let share = ShareRecord {
        owner: *owner,
        entry: new.entry,
        sharee: *sharee,
        role,
        name: new.name,
        created_ms: at,
    };
    tx.put(keys::share(id), &share);
    tx.put_raw(keys::share_out(owner, id), Vec::new());
    tx.put_raw(keys::share_in(sharee, id), Vec::new());
    if pending {
        tx.put_raw(keys::share_pending(id), Vec::new());
        Ok(())
    } else {
        mounted_line(tx, at, &new.owner_name, &share, device)
    }
}

/// Gives an entry of `owner`'s tree to `sharee`, mounted at once (the
/// command of earlier versions, kept so their log entries still apply);
/// giving it again changes the role and keeps the id.
#[allow(clippy::too_many_arguments)]
pub(super) fn create(
    tx: &mut Tx<'_>,
    at: u64,
    owner: &UserId,
    path: &[String],
    sharee: &UserId,
    role: ShareRole,
    id: &ShareId,
    device: &DeviceId,
) -> Step<Output> {
    let new = match prepare(tx, owner, path, sharee, role)? {
        Ok(existing) => return Ok(Output::Share(existing)),
        Err(new) => new,
    };
    if new.mine >= MAX_SHARES_PER_USER
        || tx.scan(&keys::shares_in_of(sharee))?.len() >= MAX_SHARES_PER_USER
    {
        return Err(CommandError::BadRequest(format!(
            "at most {MAX_SHARES_PER_USER} shares per user"
        ))
        .into());
    }
    insert(tx, at, owner, new, sharee, role, id, device, false)?;
    Ok(Output::Share(*id))
}

/// Ends a share. Its owner or its sharee may; to anyone else it does not
/// exist.
pub(super) fn delete(
    tx: &mut Tx<'_>,
    at: u64,
    by: &UserId,
    id: &ShareId,
    device: &DeviceId,
) -> Step<Output> {
    let share: ShareRecord = tx
        .get("share", &keys::share(id))?
        .ok_or(CommandError::NotFound)?;
    if share.owner != *by && share.sharee != *by {
        return Err(Fail::Cmd(CommandError::NotFound));
    }
    let owner_rec = load_user(tx, &share.owner)?;
    let kind = kv::entry(tx, &share.owner, &share.entry)?
        .map(|r| r.kind)
        .unwrap_or(EntryKind::Folder);
    let pending = tx.get_raw(&keys::share_pending(id))?.is_some();
    tx.del(keys::share(id));
    tx.del(keys::share_out(&share.owner, id));
    tx.del(keys::share_in(&share.sharee, id));
    tx.del(keys::share_pending(id));
    if pending {
        // Never mounted: nothing to take away from the sharee's view.
        return Ok(Output::Done);
    }
    append_line(
        tx,
        &share.sharee,
        ChangeRecord {
            entry: share.entry,
            path: mount_path(&owner_rec.username, &share.name),
            kind: ChangeKind::Deleted,
            entry_kind: kind,
            version: 0,
            size: 0,
            content_hash: [0; 32],
            from: None,
            device: *device,
            at_ms: at,
        },
    )?;
    Ok(Output::Done)
}

/// Pending shares one user may have waiting, at most, and of those, from
/// one owner: a stranger cannot fill anyone's list of shares.
pub const MAX_PENDING_PER_USER: usize = 200;
pub const MAX_PENDING_FROM_ONE: usize = 20;

fn is_pending(tx: &Tx<'_>, id: &ShareId) -> Step<bool> {
    Ok(tx.get_raw(&keys::share_pending(id))?.is_some())
}

/// The journal line that shows a newly mounted share to its sharee.
fn mounted_line(
    tx: &mut Tx<'_>,
    at: u64,
    owner_name: &str,
    share: &ShareRecord,
    device: &DeviceId,
) -> Step<()> {
    let rec = kv::entry(tx, &share.owner, &share.entry)?.ok_or(CommandError::NotFound)?;
    append_line(
        tx,
        &share.sharee,
        ChangeRecord {
            entry: share.entry,
            path: mount_path(owner_name, &share.name),
            kind: ChangeKind::Created,
            entry_kind: rec.kind,
            version: rec.head,
            size: rec.size,
            content_hash: rec.content_hash,
            from: None,
            device: *device,
            at_ms: at,
        },
    )
}

/// Offers an entry of `owner`'s tree to `sharee`: pending until accepted
/// unless the sharee takes the owner's shares without asking.
#[allow(clippy::too_many_arguments)]
pub(super) fn offer(
    tx: &mut Tx<'_>,
    at: u64,
    owner: &UserId,
    path: &[String],
    sharee: &UserId,
    role: ShareRole,
    id: &ShareId,
    device: &DeviceId,
) -> Step<Output> {
    let new = match prepare(tx, owner, path, sharee, role)? {
        Ok(existing) => {
            return Ok(Output::Offered {
                share: existing,
                pending: is_pending(tx, &existing)?,
            })
        }
        Err(new) => new,
    };
    if new.mine >= MAX_SHARES_PER_USER {
        return Err(
            CommandError::Limit(format!("at most {MAX_SHARES_PER_USER} shares per user")).into(),
        );
    }
    let auto = super::accounts::accepts_from(tx, sharee, owner)?;
    // What the sharee already has: mounted, waiting, and waiting from this owner.
    let (mut mounted, mut waiting, mut from_owner) = (0, 0, 0);
    for (k, _) in tx.scan(&keys::shares_in_of(sharee))? {
        let Some(sid) = ShareId::from_slice(&k[1 + 16..]) else {
            continue;
        };
        if is_pending(tx, &sid)? {
            waiting += 1;
            if tx
                .get::<ShareRecord>("share", &keys::share(&sid))?
                .is_some_and(|s| s.owner == *owner)
            {
                from_owner += 1;
            }
        } else {
            mounted += 1;
        }
    }
    if auto && mounted >= MAX_SHARES_PER_USER {
        return Err(CommandError::Limit(format!(
            "the recipient already has {MAX_SHARES_PER_USER} shares"
        ))
        .into());
    }
    if !auto && (waiting >= MAX_PENDING_PER_USER || from_owner >= MAX_PENDING_FROM_ONE) {
        return Err(CommandError::Limit(
            "the recipient has too many shares waiting to be accepted".into(),
        )
        .into());
    }
    insert(tx, at, owner, new, sharee, role, id, device, !auto)?;
    Ok(Output::Offered {
        share: *id,
        pending: !auto,
    })
}

/// The sharee takes a pending share: it is mounted under `/Shared`.
pub(super) fn accept(
    tx: &mut Tx<'_>,
    at: u64,
    sharee: &UserId,
    id: &ShareId,
    device: &DeviceId,
) -> Step<Output> {
    let share: ShareRecord = tx
        .get("share", &keys::share(id))?
        .ok_or(CommandError::NotFound)?;
    if share.sharee != *sharee {
        return Err(CommandError::NotFound.into());
    }
    if !is_pending(tx, id)? {
        return Ok(Output::Done);
    }
    let mut mounted = 0;
    for (k, _) in tx.scan(&keys::shares_in_of(sharee))? {
        if let Some(sid) = ShareId::from_slice(&k[1 + 16..]) {
            if !is_pending(tx, &sid)? {
                mounted += 1;
            }
        }
    }
    if mounted >= MAX_SHARES_PER_USER {
        return Err(
            CommandError::Limit(format!("at most {MAX_SHARES_PER_USER} shares per user")).into(),
        );
    }
    tx.del(keys::share_pending(id));
    let owner_rec = load_user(tx, &share.owner)?;
    mounted_line(tx, at, &owner_rec.username, &share, device)?;
    Ok(Output::Done)
}

/// The paths a write through a share touches, or `None` for a command
/// that cannot be made through one.
fn share_paths(cmd: &Command) -> Option<(&UserId, Vec<&[String]>, bool)> {
    match cmd {
        Command::CommitFile(c) => Some((&c.user, vec![&c.path[..]], false)),
        Command::CreateFolder { user, path, .. } => Some((user, vec![&path[..]], false)),
        Command::Restore { user, path, .. } => Some((user, vec![&path[..]], false)),
        Command::Delete { user, path, .. } => Some((user, vec![&path[..]], true)),
        Command::Move { user, from, to, .. } => Some((user, vec![&from[..], &to[..]], true)),
        _ => None,
    }
}

/// Whether `sharee` may make `cmd` in the owner's tree through `share`
/// now: the share exists, is accepted and lets them edit, and every path
/// of the command lies inside the shared entry (strictly inside for a
/// delete or a move, which the sharee may not apply to the entry itself).
pub(super) fn check_grant(tx: &Tx<'_>, id: &ShareId, sharee: &UserId, cmd: &Command) -> Step<()> {
    let gone = || CommandError::Forbidden("the share was removed or changed".into());
    let share: ShareRecord = tx.get("share", &keys::share(id))?.ok_or_else(gone)?;
    if share.sharee != *sharee || is_pending(tx, id)? {
        return Err(gone().into());
    }
    if share.role != ShareRole::Editor {
        return Err(CommandError::Forbidden(
            "this is shared with you as a viewer: it cannot be changed".into(),
        )
        .into());
    }
    let (user, paths, strictly) = share_paths(cmd).ok_or_else(|| {
        CommandError::BadRequest("this change cannot be made through a share".into())
    })?;
    if *user != share.owner {
        return Err(gone().into());
    }
    match kv::entry(tx, &share.owner, &share.entry)? {
        Some(r) if r.live => {}
        _ => return Err(gone().into()),
    }
    let root = parse_path_str(&kv::entry_path(tx, &share.owner, &share.entry)?)?;
    for p in paths {
        let inside = p.len() >= root.len() && p[..root.len()] == root[..];
        if !inside || (strictly && p.len() == root.len()) {
            return Err(CommandError::Forbidden(
                "the path is outside what is shared with you".into(),
            )
            .into());
        }
    }
    Ok(())
}

fn parse_path_str(p: &str) -> Step<Vec<String>> {
    let path = crate::path::DrivePath::parse(p).map_err(CommandError::BadPath)?;
    Ok(path.segments().to_vec())
}
