//! Raft membership follows the layout: 3 voters (5 from five nodes up),
//! every other active node a learner, removed nodes dropped. Run by the
//! leader only.

use std::collections::{BTreeMap, BTreeSet};

use cluster_config::NodeId;
use raft_meta::records::{LayoutRecord, MemberState};
use raft_meta::{MemberNode, MetaClient, MetaError};

use crate::health::Health;

/// How many voters a cluster of `n` active nodes wants.
pub use cluster_config::generate::voter_target;

/// One step towards the membership the layout asks for; returns whether
/// anything changed.
pub async fn sync(
    meta: &MetaClient,
    layout: &LayoutRecord,
    health: &Health,
) -> Result<bool, MetaError> {
    if !meta.is_leader() {
        return Ok(false);
    }
    let metrics = meta.raft_metrics();
    let membership = metrics.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return Ok(false); // a change is in progress
    }
    // openraft numbers members with plain u64s; a 0 never joins.
    let voters: BTreeSet<NodeId> = membership.voter_ids().filter_map(NodeId::new).collect();
    let known: BTreeMap<NodeId, MemberNode> = membership
        .nodes()
        .filter_map(|(id, n)| Some((NodeId::new(*id)?, n.clone())))
        .collect();
    let active: Vec<&raft_meta::records::LayoutMember> = layout
        .members
        .iter()
        .filter(|m| m.state == MemberState::Active)
        .collect();

    // New members first join as learners.
    for m in &active {
        if !known.contains_key(&m.id) {
            let node = MemberNode {
                api_url: m.api_url.clone(),
                p2p_addr: m.p2p_addr.clone(),
            };
            meta.add_learner(m.id, node, false).await?;
            tracing::info!(node = %m.id, "added as a Raft learner");
            return Ok(true);
        }
    }
    // Voters: keep the healthy active ones, fill up with healthy learners.
    let target = voter_target(active.len());
    let active_ids: BTreeSet<NodeId> = active.iter().map(|m| m.id).collect();
    let mut want: BTreeSet<NodeId> = voters
        .iter()
        .copied()
        .filter(|v| active_ids.contains(v) && (health.is_healthy(*v) || *v == meta.node_id()))
        .collect();
    for m in &active {
        if want.len() >= target {
            break;
        }
        if health.is_healthy(m.id) {
            want.insert(m.id);
        }
    }
    // Never shrink below a majority of the old set because nodes look down:
    // only change when the new set is full.
    if want != voters && want.len() == target.min(active.len()) && want.contains(&meta.node_id()) {
        meta.set_voters(want.clone()).await?;
        tracing::info!(voters = ?want, "Raft voters changed");
        return Ok(true);
    }
    // Removed nodes leave the membership once they vote no more.
    let stale: BTreeSet<NodeId> = known
        .keys()
        .copied()
        .filter(|id| !active_ids.contains(id) && !voters.contains(id))
        .collect();
    if !stale.is_empty() {
        meta.remove_nodes(stale.clone()).await?;
        tracing::info!(nodes = ?stale, "removed from Raft membership");
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn voter_targets() {
        assert_eq!(super::voter_target(1), 1);
        assert_eq!(super::voter_target(3), 3);
        assert_eq!(super::voter_target(4), 3);
        assert_eq!(super::voter_target(6), 5);
    }
}
