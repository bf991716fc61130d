//! The cluster layout and shard placement.

use super::tx::Tx;
use super::Step;
use crate::keys;
use crate::records::{BlockRecord, LayoutRecord};
use crate::types::{CommandError, Output, PlacementChange};

pub(super) fn set_layout(tx: &mut Tx<'_>, expected: u64, layout: &LayoutRecord) -> Step<Output> {
    let current = tx
        .get::<LayoutRecord>("layout", &keys::layout())?
        .map(|l| l.version)
        .unwrap_or(0);
    if current != expected {
        return Err(CommandError::LayoutChanged { current }.into());
    }
    if layout.version != expected + 1 {
        return Err(
            CommandError::BadRequest("a new layout must be the next version".into()).into(),
        );
    }
    let active = layout.active().count();
    if layout.data_shards == 0 || active < (layout.data_shards + layout.parity_shards) as usize {
        return Err(CommandError::BadRequest(format!(
            "{active} active nodes cannot hold {}+{} shards on distinct nodes",
            layout.data_shards, layout.parity_shards
        ))
        .into());
    }
    let mut ids: Vec<_> = layout.members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != layout.members.len() {
        return Err(CommandError::BadRequest("layout node ids must be unique".into()).into());
    }
    tx.put(keys::layout(), layout);
    Ok(Output::Done)
}

pub(super) fn update_placement(tx: &mut Tx<'_>, changes: &[PlacementChange]) -> Step<Output> {
    let mut applied = 0;
    for c in changes {
        let key = keys::block(&c.user, &c.block);
        let Some(mut rec) = tx.get::<BlockRecord>("block", &key)? else {
            continue;
        };
        let Some(slot) = rec.stored.nodes.get_mut(c.index as usize) else {
            continue;
        };
        if *slot != c.from {
            continue;
        }
        *slot = Some(c.to);
        tx.put(key, &rec);
        applied += 1;
    }
    Ok(Output::Placed(applied))
}
