//! Blocks and their reference counts: added by versions and uploads,
//! dropped when those go; a count never goes below zero unnoticed.
use std::collections::BTreeMap;

use cluster_config::{BlockId, UserId};

use super::namespace::*;
use super::tx::Tx;
use super::{Fail, Step};
use crate::keys;
use crate::records::{BlockRecord, BlockRef};
use crate::types::{CommandError, NewBlock, Output};

pub(super) fn count_refs(blocks: &[BlockRef]) -> BTreeMap<BlockId, (u64, u32)> {
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

pub(super) fn refcount_corrupt(reason: String) -> Fail {
    tracing::error!(%reason, "block reference count would go below zero");
    Fail::Fatal(super::tx::Fatal::Corrupt(crate::records::DecodeError {
        what: "block reference count",
        reason,
    }))
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
