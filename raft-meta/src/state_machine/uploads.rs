//! Resumable upload sessions. A session holds references on the blocks it
//! has stored so far and a quota reservation; finishing hands both over to
//! the new file version in the same command.

use cluster_config::{UploadId, UserId};

use super::namespace::{add_refs, drop_refs, parse_path, write_version, Ctx, Refs, WriteSpec};
use super::tx::Tx;
use super::Step;
use crate::hashing::TreeHasher;
use crate::keys;
use crate::kv::{self, Resolved};
use crate::path::PathError;
use crate::records::{decode, BlockRef, EntryKind, FinishedUpload, UploadRecord, UserRecord};
use crate::types::{AdvanceUpload, CommandError, CreateUpload, FileContent, OnConflict, Output};

pub(super) fn create(tx: &mut Tx<'_>, at: u64, c: &CreateUpload) -> Step<Output> {
    let path = parse_path(&c.path)?;
    if path.is_root() {
        return Err(CommandError::BadPath(PathError::IsRoot).into());
    }
    let key = keys::user(&c.user);
    let mut urec: UserRecord = tx.get("user", &key)?.ok_or(CommandError::NoSuchUser)?;
    let existing = match kv::resolve(tx, &c.user, path.segments())? {
        Resolved::ThroughFile => return Err(CommandError::ParentNotFolder.into()),
        Resolved::Found(_, rec) if rec.live && rec.kind == EntryKind::Folder => {
            return Err(CommandError::IsFolder.into())
        }
        Resolved::Found(_, rec) if rec.live => rec.size,
        _ => 0,
    };
    if c.expires_ms <= at {
        return Err(CommandError::BadRequest("upload would expire at once".into()).into());
    }
    let reserve = c.length.saturating_sub(existing);
    let available = urec
        .quota_bytes
        .saturating_sub(urec.used_bytes + urec.reserved_bytes);
    if reserve > available {
        return Err(CommandError::QuotaExceeded {
            needed: c.length,
            available,
        }
        .into());
    }
    if tx.get_raw(&keys::upload(&c.user, &c.upload))?.is_some() {
        return Err(CommandError::BadRequest("upload id already in use".into()).into());
    }
    urec.reserved_bytes += reserve;
    tx.put(key, &urec);
    let rec = UploadRecord {
        id: c.upload,
        path: c.path.clone(),
        length: c.length,
        offset: 0,
        device: c.device,
        created_ms: at,
        expires_ms: c.expires_ms,
        metadata: c.metadata.clone(),
        chunk_count: 0,
        chunked_bytes: 0,
        tail: Vec::new(),
        hash_state: Default::default(),
        base_version: c.base_version,
        on_conflict: c.on_conflict,
        reserved: reserve,
        finished: None,
    };
    tx.put(keys::upload(&c.user, &c.upload), &rec);
    tx.put_raw(
        keys::upload_expiry(c.expires_ms, &c.user, &c.upload),
        Vec::new(),
    );
    Ok(Output::Upload(Box::new(rec)))
}

fn load(tx: &Tx<'_>, at: u64, user: &UserId, id: &UploadId) -> Step<UploadRecord> {
    match tx.get::<UploadRecord>("upload", &keys::upload(user, id))? {
        Some(rec) if rec.expires_ms > at => Ok(rec),
        _ => Err(CommandError::UploadGone.into()),
    }
}

fn chunks(tx: &Tx<'_>, user: &UserId, id: &UploadId) -> Step<Vec<BlockRef>> {
    let mut out = Vec::new();
    for (_, v) in tx.scan(&keys::upload_chunks_of(user, id))? {
        out.push(decode("upload chunk", &v)?);
    }
    Ok(out)
}

pub(super) fn advance(tx: &mut Tx<'_>, at: u64, c: &AdvanceUpload) -> Step<Output> {
    let mut rec = load(tx, at, &c.user, &c.upload)?;
    if rec.finished.is_some() || rec.offset != c.expected_offset {
        return Err(CommandError::OffsetMismatch {
            expected: c.expected_offset,
            actual: rec.offset,
        }
        .into());
    }
    if c.new_offset < rec.offset || c.new_offset > rec.length {
        return Err(CommandError::BadRequest("new offset out of range".into()).into());
    }
    let added: u64 = c.chunks.iter().map(|b| b.size as u64).sum();
    let tail: u64 = c.tail.iter().map(|b| b.size as u64).sum();
    if rec.chunked_bytes + added + tail != c.new_offset
        || c.chunks.iter().chain(&c.tail).any(|b| b.size == 0)
    {
        return Err(
            CommandError::BadRequest("chunk sizes do not add up to the offset".into()).into(),
        );
    }
    // The saved hash state must describe exactly the bytes received.
    let hasher = TreeHasher::resume(rec.length, c.hash_state.clone())
        .map_err(|e| CommandError::BadRequest(e.to_string()))?;
    if hasher.position() != c.new_offset {
        return Err(CommandError::BadRequest("hash state does not match the offset".into()).into());
    }

    let ctx = Ctx::load(tx, at, &c.user, &rec.device, &[0; 16])?;
    let mut refs: Vec<BlockRef> = c.chunks.clone();
    refs.extend_from_slice(&c.tail);
    add_refs(tx, &ctx, &refs, &c.new_blocks)?;
    drop_refs(tx, &c.user, &rec.tail)?;
    for b in &c.chunks {
        tx.put(keys::upload_chunk(&c.user, &c.upload, rec.chunk_count), b);
        rec.chunk_count += 1;
    }
    rec.chunked_bytes += added;
    rec.tail = c.tail.clone();
    rec.offset = c.new_offset;
    rec.hash_state = c.hash_state.clone();

    let Some(finish) = &c.finish else {
        tx.put(keys::upload(&c.user, &c.upload), &rec);
        return Ok(Output::Advanced {
            offset: rec.offset,
            committed: None,
        });
    };
    if rec.offset != rec.length || !rec.tail.is_empty() {
        return Err(CommandError::BadRequest("finish before the last byte".into()).into());
    }
    let content_hash = hasher
        .finalize()
        .map_err(|e| CommandError::BadRequest(e.to_string()))?;
    let blocks = chunks(tx, &c.user, &c.upload)?;
    let content = FileContent {
        size: rec.length,
        content_hash: *content_hash.as_bytes(),
        blocks: blocks.clone(),
    };
    let mut ctx = Ctx::load(tx, at, &c.user, &rec.device, &finish.id_seed)?;
    // Received bytes are never thrown away: a stale base becomes a conflicted copy.
    let on_conflict = match rec.on_conflict {
        OnConflict::Fail => OnConflict::Rename,
        other => other,
    };
    let written = write_version(
        tx,
        &mut ctx,
        WriteSpec {
            path: parse_path(&rec.path)?,
            content: &content,
            base: rec.base_version,
            on_conflict,
            refs: Refs::Transfer,
            release_reserved: rec.reserved,
        },
    )?;
    if !written.changed {
        // The head already had these bytes: the session's references go.
        drop_refs(tx, &c.user, &blocks)?;
        ctx.urec.reserved_bytes = ctx.urec.reserved_bytes.saturating_sub(rec.reserved);
    }
    ctx.save(tx);
    // The chunk list now lives in the version; keep a small record until expiry.
    for i in 0..rec.chunk_count {
        tx.del(keys::upload_chunk(&c.user, &c.upload, i));
    }
    rec.chunk_count = 0;
    rec.reserved = 0;
    rec.finished = Some(FinishedUpload {
        entry: written.view.id,
        path: written.view.path.clone(),
        version: written.view.record.head,
    });
    tx.put(keys::upload(&c.user, &c.upload), &rec);
    Ok(Output::Advanced {
        offset: rec.offset,
        committed: Some(written.view),
    })
}

fn remove(tx: &mut Tx<'_>, user: &UserId, rec: &UploadRecord) {
    for i in 0..rec.chunk_count {
        tx.del(keys::upload_chunk(user, &rec.id, i));
    }
    tx.del(keys::upload(user, &rec.id));
    tx.del(keys::upload_expiry(rec.expires_ms, user, &rec.id));
}

/// Ends a session without a file: references and reservation are released.
pub(super) fn cancel(tx: &mut Tx<'_>, user: &UserId, id: &UploadId) -> Step<()> {
    let rec: UploadRecord = tx
        .get("upload", &keys::upload(user, id))?
        .ok_or(CommandError::UploadGone)?;
    let mut refs = chunks(tx, user, id)?;
    refs.extend_from_slice(&rec.tail);
    drop_refs(tx, user, &refs)?;
    let key = keys::user(user);
    if let Some(mut urec) = tx.get::<UserRecord>("user", &key)? {
        urec.reserved_bytes = urec.reserved_bytes.saturating_sub(rec.reserved);
        tx.put(key, &urec);
    }
    remove(tx, user, &rec);
    Ok(())
}

pub(super) fn expire(tx: &mut Tx<'_>, at: u64, limit: u32) -> Step<Output> {
    let mut n = 0;
    for (k, _) in tx.scan_committed(&[keys::UPLOAD_EXPIRY], limit as usize)? {
        // Key: prefix, expiry (8), user (16), upload (16).
        if k.len() != 1 + 8 + 16 + 16 {
            continue;
        }
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&k[1..9]);
        if u64::from_be_bytes(exp) > at {
            break;
        }
        let (Some(user), Some(id)) = (
            UserId::from_slice(&k[9..25]),
            UploadId::from_slice(&k[25..41]),
        ) else {
            continue;
        };
        match cancel(tx, &user, &id) {
            Ok(()) => n += 1,
            Err(super::Fail::Cmd(_)) => tx.del(k),
            Err(e) => return Err(e),
        }
    }
    Ok(Output::Expired(n))
}
