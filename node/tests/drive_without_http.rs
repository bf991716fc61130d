//! A front end that is not HTTP: a node started on its own and driven
//! through `node::drive` alone — folders, content in and out, move,
//! delete, restore — then stopped. Nothing here links the gateway.

mod common;
use common::noise;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use cluster_config::generate::{ensure_secret, write_dev_node_config, DevSpec};
use cluster_config::{ErasureProfile, SystemClock};
use raft_meta::{DrivePath, OnConflict, Output};
use strata_node::drive::{Actor, DriveError, NewContent, Seen};
use strata_node::{Ingest, Node, WholeHash};

fn path(p: &str) -> DrivePath {
    DrivePath::parse(p).unwrap()
}

async fn read_all(node: &Node, actor: &Actor, p: &str) -> Vec<u8> {
    let reader = node.meta().local().clone();
    let (id, _) = reader.live(&actor.user, &path(p)).unwrap().unwrap();
    let (_, version) = reader
        .versions(&actor.user, &id, 1)
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let mut stream = strata_node::read::open_range(
        node.blocks().clone(),
        reader,
        actor.user,
        version.blocks.clone(),
        0,
        version.size,
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    while let Some(piece) = futures::StreamExt::next(&mut stream).await {
        out.extend_from_slice(&piece.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_end_without_http_uses_the_drive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    ensure_secret(&data.join("secret.key")).unwrap();
    let pw = data.join("admin-password");
    std::fs::write(&pw, "a long enough operator password\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let spec = DevSpec {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        node_id: 1,
        erasure: ErasureProfile { data: 2, parity: 1 },
        insecure_http: true,
    };
    let (_, config) = write_dev_node_config(&spec, None).unwrap();
    let node = Node::start(config, Arc::new(SystemClock), String::new())
        .await
        .unwrap();
    let drive = node.drive();
    // The operator's account exists before anything is served.
    let (user, _) = node.meta().local().user_by_name("admin").unwrap().unwrap();
    let actor = Actor {
        user,
        device: cluster_config::DeviceId([5; 16]),
    };

    // A folder, then 5 MB of content committed into it.
    drive.create_folder(&actor, &path("/docs")).await.unwrap();
    let body = noise(5_000_000, 11);
    let mut ingest = Ingest::new(
        node.blocks().clone(),
        node.meta().local().clone(),
        user,
        WholeHash::Plain(Box::default()),
    );
    for piece in body.chunks(300_000) {
        ingest.push(piece).await.unwrap();
    }
    let done = ingest.finish().await.unwrap();
    let target = drive
        .write_target(&actor, &path("/docs/report.bin"))
        .await
        .unwrap();
    let out = drive
        .commit(
            &actor,
            &target,
            NewContent {
                size: done.size,
                content_hash: done.content_hash.unwrap(),
                blocks: done.chunks,
                new_blocks: done.new_blocks,
            },
            None,
            OnConflict::Fail,
        )
        .await
        .unwrap();
    assert!(matches!(out, Output::Entry(_)));
    assert_eq!(read_all(&node, &actor, "/docs/report.bin").await, body);

    // Moved, deleted (history kept), restored: the same bytes.
    drive
        .move_entry(&actor, &path("/docs/report.bin"), &path("/docs/final.bin"))
        .await
        .unwrap();
    assert!(node
        .meta()
        .local()
        .live(&user, &path("/docs/report.bin"))
        .unwrap()
        .is_none());
    drive
        .delete(&actor, &path("/docs/final.bin"))
        .await
        .unwrap();
    assert!(node
        .meta()
        .local()
        .live(&user, &path("/docs/final.bin"))
        .unwrap()
        .is_none());
    drive
        .restore(&actor, &path("/docs/final.bin"), 1)
        .await
        .unwrap();
    assert_eq!(read_all(&node, &actor, "/docs/final.bin").await, body);

    // Listed, with its history: committed, deleted, restored.
    let listing = drive.list(&actor, &path("/docs"), false, 10).await.unwrap();
    let names: Vec<String> = listing
        .entries
        .iter()
        .map(|e| match e {
            Seen::Entry { path, .. } | Seen::Virtual(path) => path.clone(),
        })
        .collect();
    assert_eq!(names, vec!["/docs/final.bin".to_string()]);
    assert!(!listing.has_more);
    let history = drive
        .history(&actor, &path("/docs/final.bin"), 10)
        .await
        .unwrap();
    let deleted: Vec<bool> = history.versions.iter().map(|(_, v)| v.deleted).collect();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    assert_eq!(deleted.iter().filter(|d| **d).count(), 1, "{deleted:?}");
    assert!(matches!(
        drive.history(&actor, &path("/docs"), 10).await,
        Err(DriveError::BadRequest(_))
    ));

    // Refusals keep their meaning: the root cannot go, a path under
    // `/Shared` nobody shared is not found.
    assert!(matches!(
        drive.delete(&actor, &path("/")).await,
        Err(DriveError::BadRequest(_))
    ));
    assert!(matches!(
        drive.delete(&actor, &path("/Shared/nobody/x")).await,
        Err(DriveError::NotFound)
    ));
    node.shutdown().await;
}
