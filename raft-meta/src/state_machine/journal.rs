//! What every tree command shares: the per-command context (the user
//! record, loaded once), the change journal it appends to, and path helpers.
//! The commands themselves are in `tree`, `versions` and `refs`.

use cluster_config::{DeviceId, EntryId, UserId};

use super::tx::Tx;
use super::{Fail, Step};
use crate::keys;
use crate::path::{DrivePath, PathError};
use crate::records::{ChangeKind, ChangeRecord, EntryKind, EntryRecord, UserRecord};
use crate::types::{CommandError, EntryView};

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
    pub(super) fn next_id(&mut self) -> EntryId {
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

    pub(super) fn journal(
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

pub(super) fn non_root(segments: &[String]) -> Step<DrivePath> {
    let p = parse_path(segments)?;
    if p.is_root() {
        return Err(CommandError::BadPath(PathError::IsRoot).into());
    }
    Ok(p)
}

pub(super) fn view(id: EntryId, path: &DrivePath, record: EntryRecord) -> EntryView {
    EntryView {
        id,
        path: path.to_string(),
        record,
    }
}

pub(super) fn new_entry(ctx: &Ctx, parent: EntryId, name: &str, kind: EntryKind) -> EntryRecord {
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

pub(super) fn corrupt(reason: &str) -> Fail {
    Fail::Fatal(super::tx::Fatal::Corrupt(crate::records::DecodeError {
        what: "entry",
        reason: reason.into(),
    }))
}
