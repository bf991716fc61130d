//! The real Raft logic (openraft on the WAL and fjall store, forwarding, read index)
//! over the in-memory network, with a partition injected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::{DeviceId, NodeId, SystemClock, UserId};
use raft_meta::{Command, MemberNode, MetaClient, MetaNode};
use strata_node::net::mem::MemNetwork;
use strata_node::net::raft::NetRaftTransport;
use strata_node::net::serve::NodeHandler;

fn create_user(name: &str) -> Command {
    Command::CreateUser {
        user: UserId::random(),
        username: name.into(),
        password_hash: "$argon2id$test".into(),
        quota_bytes: 1 << 30,
        admin: false,
    }
}

async fn leader_of(clients: &[(NodeId, MetaClient)], exclude: Option<NodeId>) -> NodeId {
    for _ in 0..200 {
        for (id, c) in clients {
            if Some(*id) == exclude {
                continue;
            }
            if let Some(l) = c.raft_metrics().current_leader.and_then(NodeId::new) {
                if Some(l) != exclude && clients.iter().any(|(i, c)| *i == l && c.is_leader()) {
                    return l;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader elected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_elects_forwards_and_survives_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let switch = MemNetwork::new();
    let ids: Vec<NodeId> = (1..=3).filter_map(NodeId::new).collect();
    let members: BTreeMap<NodeId, MemberNode> =
        ids.iter().map(|i| (*i, MemberNode::default())).collect();
    let mut nodes = Vec::new();
    for &id in &ids {
        let handler = NodeHandler::default();
        let net = Arc::new(switch.join(id, Arc::new(handler.clone())));
        let node = MetaNode::start(
            id,
            &dir.path().join(id.to_string()),
            Arc::new(NetRaftTransport::new(net)),
            (id == NodeId::FIRST).then(|| members.clone()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        handler.raft.set(node.raft().clone());
        nodes.push(node);
    }
    let clients: Vec<(NodeId, MetaClient)> = nodes
        .iter()
        .map(|n| (n.client().node_id(), n.client()))
        .collect();
    let leader = leader_of(&clients, None).await;
    let follower = clients
        .iter()
        .find(|(id, _)| *id != leader)
        .unwrap()
        .1
        .clone();
    let other = clients
        .iter()
        .find(|(id, c)| *id != leader && c.node_id() != follower.node_id())
        .unwrap()
        .1
        .clone();

    // A write through a follower is forwarded to the leader...
    follower.write(create_user("ann")).await.unwrap();
    // ...and a linearizable read through the other follower sees it.
    assert!(other
        .linearizable()
        .await
        .unwrap()
        .user_by_name("ann")
        .unwrap()
        .is_some());
    // Logins are device-deterministic through any node.
    let u = other
        .linearizable()
        .await
        .unwrap()
        .user_by_name("ann")
        .unwrap()
        .unwrap()
        .0;
    let out = other
        .write(Command::Login {
            user: u,
            token_hash: [1; 32],
            device: DeviceId::random(),
            device_name: "phone".into(),
            expires_ms: u64::MAX,
        })
        .await
        .unwrap();
    assert!(matches!(out, raft_meta::Output::LoggedIn { .. }));

    // Cut the leader off: the others elect a new leader and take writes.
    for (id, _) in &clients {
        if *id != leader {
            switch.partition(leader, *id, true);
        }
    }
    let new_leader = leader_of(&clients, Some(leader)).await;
    assert_ne!(new_leader, leader);
    follower.write(create_user("bob")).await.unwrap();
    // The old leader cannot commit anything alone.
    let isolated = clients
        .iter()
        .find(|(id, _)| *id == leader)
        .unwrap()
        .1
        .clone();
    assert!(isolated.write(create_user("lost")).await.is_err());

    // Healed, the old leader catches up and sees what it missed.
    for (id, _) in &clients {
        switch.partition(leader, *id, false);
    }
    let mut caught_up = false;
    for _ in 0..200 {
        if let Ok(r) = isolated.linearizable().await {
            if r.user_by_name("bob").unwrap().is_some() {
                caught_up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(caught_up, "the old leader did not catch up");
    assert!(isolated.local().user_by_name("lost").unwrap().is_none());
    for n in nodes {
        n.shutdown().await;
    }
}
