//! The cluster: several `strata serve` processes on 127.0.0.x forming one
//! drive. Writes through any node, reads through every other; node, leader,
//! zone, disk and bit-rot failures; unknown peers; adding and removing nodes.
//! Scenarios run one at a time (they share the machine's two cores).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{retry, upload_files, Cluster};
use common::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_read_through_every_other() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start(3, 0, "2+1");
    let alice = cluster.user(1, "alice").await;
    let mut files = Vec::new();
    for writer in 1..=3u64 {
        let c = cluster.via(writer, &alice);
        let data = noise(3_000_000 + writer as usize * 1000, writer);
        let path = format!("/from-node-{writer}.bin");
        retry(|| c.upload(&path, data.clone())).await;
        // Visible at once through every other node (linearizable reads).
        for reader in 1..=3u64 {
            let r = cluster.via(reader, &alice);
            assert_eq!(
                r.metadata(&path).await.unwrap().size,
                data.len() as u64,
                "{path} via {reader}"
            );
        }
        files.push((path, data));
    }
    for reader in 1..=3u64 {
        let r = cluster.via(reader, &alice);
        for (path, data) in &files {
            assert!(
                r.download(path).await.unwrap() == *data,
                "{path} via node {reader}"
            );
        }
    }
    // Shards really are spread: every block on three distinct nodes.
    let admin = cluster.admin(2).await;
    let v = cluster.verify(&admin).await;
    assert_eq!(v["shards_present"], v["shards_expected"]);
    assert_eq!(v["per_node"].as_object().unwrap().len(), 3, "{v}");
    let s = cluster.status(&admin).await;
    let roles: Vec<&str> = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{s}");
    assert_eq!(roles.iter().filter(|r| **r == "follower").count(), 2, "{s}");
    assert!(s["term"].as_u64().unwrap() >= 1);
    // The CLI shows the same.
    let out = cluster.admin_cli(&["status"]);
    assert!(
        out.contains("leader") && out.contains("repair backlog: 0"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_uploads_loses_nothing() {
    let _one = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, 0, "2+1");
    let admin = cluster.admin(1).await;
    let leader = cluster.status(&admin).await["leader"].as_u64().unwrap();
    let user = cluster.user(1, "lena").await;
    let token = user.token().unwrap().to_string();
    let acked: Arc<Mutex<Vec<(String, u64, usize)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A writer that spreads its uploads over the nodes and moves on from
    // any failure (a client retries another address).
    let writer = {
        let urls: Vec<String> = (1..=3).map(|i| cluster.url(i)).collect();
        let ca = cluster.ca();
        let acked = acked.clone();
        let stop = stop.clone();
        let token = token.clone();
        tokio::spawn(async move {
            for i in 0..100_000u64 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let c = strata_client::Client::new(&urls[(i % 3) as usize], Some(&ca))
                    .unwrap()
                    .with_token(token.clone());
                let len = 10_000 + (i as usize * 7919) % 300_000;
                let path = format!("/stream/{i}.bin");
                if c.upload(&path, noise(len, i)).await.is_ok() {
                    acked.lock().unwrap().push((path, i, len));
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    let wait_acks = |n: usize| {
        let acked = acked.clone();
        async move {
            for _ in 0..600 {
                if acked.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("uploads stalled at {}", acked.lock().unwrap().len());
        }
    };
    wait_acks(10).await;
    cluster.kill(leader);
    let killed_at = acked.lock().unwrap().len();
    // Writes resume through the survivors under a new leader.
    wait_acks(killed_at + 10).await;
    let other = if leader == 1 { 2 } else { 1 };
    let admin = cluster.admin(other).await;
    let s = cluster.status(&admin).await;
    assert_ne!(s["leader"].as_u64(), Some(leader), "{s}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    // The old leader comes back and catches up.
    cluster.launch(leader);
    let all = acked.lock().unwrap().clone();
    for node in 1..=3u64 {
        let c = cluster.client(node).with_token(token.clone());
        for (path, seed, len) in &all {
            let got = retry(|| c.download(path)).await;
            assert!(got == noise(*len, *seed), "{path} via {node}");
        }
    }
    cluster
        .wait_fully_repaired(&admin, Duration::from_secs(60))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_nodes_down_reads_go_on_and_they_catch_up() {
    let _one = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, 0, "2+1");
    let c = cluster.user(1, "mona").await;
    let mut files = upload_files(&c, "/before", 6, (700_000, 100_000), 100).await;
    // One node down (M = 1): everything still reads, through both survivors.
    cluster.kill(3);
    cluster.assert_reads(&c, &[1, 2], &files).await;
    // Writes go on with one node down: the third shard of each new block
    // goes to a second disk of a live node, so each keeps its spare.
    let r = cluster.via(2, &c);
    files.extend(upload_files(&r, "/during", 4, (500_000, 0), 200).await);
    // It comes back: it catches up on metadata, and repair puts the missing
    // shards on it.
    cluster.launch(3);
    let admin = cluster.admin(1).await;
    let v = cluster
        .wait_fully_repaired(&admin, Duration::from_secs(90))
        .await;
    assert_eq!(v["shards_unplaced"], 0, "{v}");
    assert_eq!(v["blocks_complete"], v["blocks"], "{v}");
    cluster.assert_reads(&c, &[3], &files).await;
}

/// Runs `strata admin --cluster DIR ARGS`; its exit status and output.
fn admin_cli_status(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(common::bin())
        .arg("admin")
        .arg("--cluster")
        .arg(cluster.out())
        .args(args)
        .output()
        .expect("strata admin");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_with_two_of_five_nodes_down_keep_a_spare() {
    let _one = SERIAL.lock().await;
    // Five nodes, 3+2, two disks each.
    let mut cluster = Cluster::start(5, 0, "3+2");
    let c = cluster.user(1, "sam").await;
    let admin = cluster.admin(1).await;
    let mut files = upload_files(&c, "/before", 4, (900_000, 0), 500).await;
    let healthy = cluster
        .wait_fully_repaired(&admin, Duration::from_secs(60))
        .await;
    let blocks_before = healthy["blocks"].as_u64().unwrap();
    // Two nodes go down.
    cluster.kill(4);
    cluster.kill(5);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = upload_files(&cluster.via(2, &c), "/during", 4, (900_000, 0), 600).await;
    files.extend(during.iter().cloned());
    // Every block written meanwhile has all five shards, on the three live
    // nodes' disks: K+1 and more, never K alone.
    let admin = cluster.admin(2).await;
    let v = cluster.verify(&admin).await;
    let new_blocks = v["blocks"].as_u64().unwrap() - blocks_before;
    assert!(new_blocks >= 4, "{v}");
    assert!(
        v["blocks_complete"].as_u64().unwrap() >= new_blocks,
        "blocks written with two nodes down are short: {v}"
    );
    // The old blocks miss their shards on the two down nodes: verify says
    // so and fails, and the status counts them (or says it is still
    // scanning, with no number it cannot know yet).
    assert!(v["blocks_short"].as_u64().unwrap() >= blocks_before, "{v}");
    assert_eq!(v["blocks_lost"], 0, "{v}");
    let (ok, out) = admin_cli_status(&cluster, &["verify"]);
    assert!(!ok, "verify passed with shards missing: {out}");
    assert!(out.contains("missing shards"), "{out}");
    let s = cluster.status(&admin).await;
    match s["repair_state"].as_str().unwrap() {
        "scanning" => assert!(s["repair_backlog"].is_null(), "{s}"),
        "repairing" => assert!(s["repair"]["blocks_short"].as_u64().unwrap() > 0, "{s}"),
        other => panic!("repair state {other} with two nodes down: {s}"),
    }
    // They return: repair moves the extra shards home, the fewest first.
    cluster.launch(4);
    cluster.launch(5);
    let v = cluster
        .wait_fully_repaired(&admin, Duration::from_secs(120))
        .await;
    assert_eq!(v["blocks_complete"], v["blocks"], "{v}");
    let s = cluster.status(&admin).await;
    let per_node = v["per_node"].as_object().unwrap();
    assert_eq!(per_node.len(), 5, "{v}");
    for (node, n) in per_node {
        assert_eq!(
            n, &v["blocks"],
            "node {node} does not hold one shard of each block: {v}\n{s}"
        );
    }
    let (ok, out) = admin_cli_status(&cluster, &["verify"]);
    assert!(ok, "{out}");
    // Any two nodes may now go, and every file still reads byte for byte.
    cluster.kill(1);
    cluster.kill(3);
    let r = cluster.via(2, &c);
    cluster.assert_reads(&r, &[2, 4, 5], &files).await;
}

/// One download through `c`: the whole file (`Ok(true)`), or `503
/// unavailable` with `Retry-After` before any body byte (`Ok(false)`).
/// Anything else — another status, a body cut short or different, no
/// answer within the bound — is the error.
async fn whole_or_unavailable(
    c: &strata_client::Client,
    path: &str,
    data: &[u8],
) -> Result<bool, String> {
    // A bound on waiting, far above what a read that skips a silent peer
    // takes and far below a read that waits on one.
    let bound = Duration::from_secs(20);
    let attempt = async {
        let resp = c
            .request(reqwest::Method::GET, "/api/v1/files/content")
            .query(&[("path", path)])
            .send()
            .await
            .map_err(|e| format!("{path}: no answer: {e}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            if resp.headers().get("retry-after").is_none() {
                return Err(format!("{path}: 503 without Retry-After"));
            }
            let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
            if body["error"]["code"] != "unavailable" {
                return Err(format!("{path}: 503 {body}"));
            }
            return Ok(false);
        }
        if status != reqwest::StatusCode::OK {
            return Err(format!("{path}: status {status}"));
        }
        match resp.bytes().await {
            Ok(b) if b.as_ref() == data => Ok(true),
            Ok(b) => Err(format!(
                "{path}: 200 with {} of {} bytes",
                b.len(),
                data.len()
            )),
            Err(e) => Err(format!("{path}: 200 cut short: {e}")),
        }
    };
    tokio::time::timeout(bound, attempt)
        .await
        .map_err(|_| format!("{path}: no whole answer within {bound:?}"))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_with_peers_paused_or_killed_are_whole_or_unavailable() {
    let _one = SERIAL.lock().await;
    // 2+1 on five nodes, two of them silent: Raft keeps its quorum, and a
    // block is readable exactly when at most one of its three shards is on
    // a silent node.
    let mut cluster = Cluster::start(5, 0, "2+1");
    let c = cluster.user(1, "pia").await;
    let files = upload_files(&c, "/f", 12, (3 * 1024 * 1024, 0), 900).await;
    let tally = |round: &str, outcomes: Vec<Result<bool, String>>| {
        let errors: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
        assert!(errors.is_empty(), "{round}: {errors:#?}");
        let whole = outcomes.iter().filter(|o| o == &&Ok(true)).count();
        eprintln!(
            "{round}: {whole} whole, {} unavailable",
            outcomes.len() - whole
        );
        whole
    };
    let round = |cluster: &Cluster| {
        let readers: Vec<_> = (1..=3u64).map(|n| cluster.via(n, &c)).collect();
        let files = files.clone();
        async move {
            let mut out = Vec::new();
            for (i, (path, data)) in files.iter().enumerate() {
                out.push(whole_or_unavailable(&readers[i % 3], path, data).await);
            }
            out
        }
    };
    // All up: every download is whole.
    let all_up = round(&cluster).await;
    assert_eq!(tally("all up", all_up), files.len());
    // Paused, at once: the health view still holds them up.
    cluster.pause(4);
    cluster.pause(5);
    let at_once = round(&cluster).await;
    tally("paused, at once", at_once);
    // Paused past the health timeout: marked down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = round(&cluster).await;
    let whole_paused = tally("paused, later", later);
    // Back: every file reads whole again.
    cluster.resume(4);
    cluster.resume(5);
    cluster.assert_reads(&c, &[1, 2, 3], &files).await;
    // Killed: the same promise.
    cluster.kill(4);
    cluster.kill(5);
    let killed = round(&cluster).await;
    let whole_killed = tally("killed, at once", killed);
    // The files whose blocks stay readable are read, not refused.
    assert!(whole_paused > 0 && whole_killed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_whole_zone_loses_nothing() {
    let _one = SERIAL.lock().await;
    // Zones b, c, a, a and 2+1: every block keeps one shard per zone, so
    // zone a can go although it is two nodes, more than M = 1. Without zones
    // half of the blocks would have two shards on nodes 3 and 4.
    let mut cluster = Cluster::start_with(4, 0, "2+1", &["--zones", "b,c,a,a"]);
    let admin = cluster.admin(1).await;
    let status = cluster.status(&admin).await;
    let mut zones: Vec<(u64, String)> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["zone"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    zones.sort();
    let want: Vec<(u64, String)> = [(1, "b"), (2, "c"), (3, "a"), (4, "a")]
        .iter()
        .map(|(i, z)| (*i, z.to_string()))
        .collect();
    assert_eq!(zones, want, "{status}");
    let c = cluster.user(1, "zoe").await;
    let files = upload_files(&c, "/zoned", 12, (300_000, 50_000), 300).await;
    cluster.kill(3);
    cluster.kill(4);
    cluster.assert_reads(&c, &[1, 2], &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_disks_are_rebuilt_and_bit_rot_is_repaired() {
    let _one = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, 0, "2+1");
    let c = cluster.user(1, "dora").await;
    let mut files = Vec::new();
    for i in 0..5u64 {
        let data = noise(1_500_000, 300 + i);
        let path = format!("/d/{i}.bin");
        retry(|| c.upload(&path, data.clone())).await;
        files.push((path, data));
    }
    let admin = cluster.admin(1).await;
    let before = cluster.verify(&admin).await;
    assert_eq!(before["shards_present"], before["shards_expected"]);

    // Node 2's disks are replaced: emptied, and the node restarted.
    cluster.stop(2);
    let out = cluster.out();
    for d in 0..2 {
        let dir = out.join(format!("node-2/disk-{d}"));
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
    }
    cluster.launch(2);
    let after = cluster
        .wait_fully_repaired(&admin, Duration::from_secs(90))
        .await;
    assert_eq!(
        after["per_node"], before["per_node"],
        "the same shards, rebuilt in place"
    );
    // The rebuilt counters travel in heartbeats (every 0.5 s, published
    // after each batch): they may trail the shards on disk for a moment.
    let wanted = before["per_node"]["2"].as_u64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = cluster.status(&admin).await;
        let rebuilt: u64 = s["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["shards_rebuilt"].as_u64().unwrap())
            .sum();
        if rebuilt >= wanted {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (path, data) in &files {
        assert!(c.download(path).await.unwrap() == *data);
    }

    // Bit rot: flip a byte in some of node 1's shard records on disk.
    let mut flipped = 0;
    for d in 0..2 {
        flipped += flip_shard_bytes(&out.join(format!("node-1/disk-{d}/packs")), 4 - flipped);
    }
    assert!(flipped > 0);
    // Reads stay correct through every node...
    for node in 1..=3u64 {
        let r = cluster.via(node, &c);
        for (path, data) in &files {
            assert!(
                r.download(path).await.unwrap() == *data,
                "{path} via {node}"
            );
        }
    }
    // ...and the scrubber (or read repair) rewrites every bad shard.
    cluster
        .wait_fully_repaired(&admin, Duration::from_secs(90))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumable_upload_continues_through_another_node() {
    let _one = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, 0, "2+1");
    let a = cluster.user(1, "rosa").await;
    let data = noise(6_000_000, 77);
    let loc = retry(|| a.start_resumable("/big/video.mov", data.len() as u64)).await;
    let half = 2_500_000;
    assert_eq!(
        a.upload_chunk(&loc, 0, data[..half].to_vec())
            .await
            .unwrap(),
        half as u64
    );
    // The node that took the first half dies.
    cluster.kill(1);
    let b = cluster.via(2, &a);
    let offset = retry(|| b.upload_offset(&loc)).await;
    assert_eq!(offset, half as u64);
    let end = retry(|| b.upload_chunk(&loc, half as u64, data[half..].to_vec())).await;
    assert_eq!(end, data.len() as u64);
    let c = cluster.via(3, &a);
    assert!(c.download("/big/video.mov").await.unwrap() == data);
    // Node 1 returns; then a simple upload cut off by a dying node leaves
    // nothing behind (nodes 1 and 2 keep the quorum).
    cluster.launch(1);
    let len = 40u64 << 20;
    let up = cluster.via(3, &a);
    let task = tokio::spawn(async move {
        up.upload_stream("/big/cut.bin", len, noise_stream(len, 9))
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.kill(3);
    let result = task.await.unwrap();
    let c = cluster.via(2, &a);
    match result {
        Ok(meta) => assert_eq!(c.metadata("/big/cut.bin").await.unwrap().size, meta.size),
        Err(_) => assert_eq!(status_of(c.metadata("/big/cut.bin").await), 404),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_peers_cannot_join_or_read() {
    use strata_node::net::{NetRequest, NetResponse, PeerAddr, PeerNet};
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start(3, 1, "2+1");
    let c = cluster.user(1, "vic").await;
    retry(|| c.upload("/secret.bin", noise(500_000, 1))).await;
    let target = &cluster.manifest["nodes"][0];
    let id = |n: u64| cluster_config::NodeId::new(n).unwrap();
    let victim = PeerAddr {
        id: id(1),
        peer_id: target["peer_id"].as_str().unwrap().into(),
        p2p_addr: target["p2p_addr"].as_str().unwrap().into(),
    };
    struct Nobody;
    impl strata_node::net::InboundHandler for Nobody {
        fn handle(
            &self,
            _: cluster_config::NodeId,
            _: NetRequest,
        ) -> strata_node::net::BoxFuture<NetResponse> {
            Box::pin(async { NetResponse::error(strata_node::net::WireCode::BadRequest, "no") })
        }
    }
    let secret = cluster_config::ClusterSecret::load(&cluster.out().join("secret.key")).unwrap();
    let psk = strata_node::KeyRing::new(secret).purpose_key(strata_node::net::secure::PSK_CONTEXT);
    let probe = |key: libp2p_identity::Keypair, psk: [u8; 32], port: u16| {
        let victim = victim.clone();
        async move {
            let stop = tokio_util::sync::CancellationToken::new();
            let (net, task) = strata_node::net::p2p::P2pNet::start(
                id(99),
                key,
                psk,
                &format!("/ip4/127.0.0.99/tcp/{port}"),
                vec![victim],
                std::sync::Arc::new(Nobody),
                stop.clone(),
            )
            .unwrap();
            let ask = NetRequest::HasShards { metas: vec![] };
            let r = net.call(id(1), ask, Duration::from_secs(5)).await;
            stop.cancel();
            let _ = task.await;
            r
        }
    };
    // A stranger's key: the connection is refused, nothing is answered.
    let stranger = probe(libp2p_identity::Keypair::generate_ed25519(), psk, 39001).await;
    assert!(stranger.is_err(), "a stranger got an answer: {stranger:?}");
    // A key the cluster lists (the spare node's), without the cluster
    // secret: refused as well (a key added to the layout is not enough).
    let listed =
        cluster_config::node_key::load_node_key(&cluster.out().join("node-4.key")).unwrap();
    let unsecret = probe(listed.clone(), [0; 32], 39003).await;
    assert!(
        unsecret.is_err(),
        "a peer without the secret got an answer: {unsecret:?}"
    );
    // The same probe with the listed key and the secret is answered: the
    // refusals above are the key and the secret, not the probe.
    let known = probe(listed.clone(), psk, 39002).await;
    assert!(matches!(known, Ok(NetResponse::Has(_))), "{known:?}");

    // A listed peer that is not in the Raft membership (the spare was
    // never added) forwards a write as a gateway would: a login for
    // another user. The leader refuses it without applying it, whichever
    // node leads.
    let vic = cluster.client(1).with_token(c.token().unwrap());
    let user_id = vic.account().await.unwrap().user_id;
    let login = raft_meta::types::Request {
        at_ms: 1,
        cmd: raft_meta::Command::Login {
            user: user_id.parse().unwrap(),
            token_hash: [7; 32],
            device: cluster_config::DeviceId::random(),
            device_name: "rogue".into(),
            expires_ms: u64::MAX,
        },
    };
    let payload = raft_meta::records::encode(&login);
    for (node, port) in [(1u64, 39004u16), (2, 39005), (3, 39006)] {
        let target = &cluster.manifest["nodes"][node as usize - 1];
        let peer = PeerAddr {
            id: id(node),
            peer_id: target["peer_id"].as_str().unwrap().into(),
            p2p_addr: target["p2p_addr"].as_str().unwrap().into(),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let (net, task) = strata_node::net::p2p::P2pNet::start(
            id(99),
            listed.clone(),
            psk,
            &format!("/ip4/127.0.0.99/tcp/{port}"),
            vec![peer],
            std::sync::Arc::new(Nobody),
            stop.clone(),
        )
        .unwrap();
        let ask = NetRequest::Raft {
            kind: raft_meta::network::RaftRpcKind::ClientWrite,
            payload: payload.clone().into(),
        };
        let r = net.call(id(node), ask, Duration::from_secs(5)).await;
        stop.cancel();
        let _ = task.await;
        let Ok(NetResponse::Raft(bytes)) = r else {
            panic!("node {node}: {r:?}");
        };
        let answer: Result<raft_meta::types::Response, raft_meta::network::ForwardError> =
            raft_meta::records::decode("answer", &bytes).unwrap();
        assert!(
            matches!(answer, Err(raft_meta::network::ForwardError::NotMember(4))),
            "node {node}: {answer:?}"
        );
    }
    // No forged session exists: the victim still has only its own.
    let sessions = vic.sessions().await.unwrap().sessions;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions.iter().all(|s| s.device != "rogue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_and_removing_nodes_moves_few_shards() {
    let _one = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, 1, "2+1");
    let c = cluster.user(1, "nina").await;
    let mut files = Vec::new();
    for i in 0..40u64 {
        let data = noise(400_000 + (i as usize % 5) * 50_000, 500 + i);
        let path = format!("/n/{i}.bin");
        retry(|| c.upload(&path, data.clone())).await;
        files.push((path, data));
    }
    let admin = cluster.admin(1).await;
    // A node that looked down for a moment while the files went in (a
    // loaded machine) leaves doubled shards that repair moves home; the
    // count starts once that is done.
    let before = cluster
        .wait_fully_repaired(&admin, Duration::from_secs(120))
        .await;
    let blocks = before["blocks"].as_u64().unwrap();
    let moved_before = cluster.status(&admin).await["repair"]["moved_total"]
        .as_u64()
        .unwrap();

    // Node 4 joins.
    cluster.launch(4);
    cluster.admin_cli(&["add-node", "4"]);
    let after = cluster
        .wait_repaired_at(&admin, 2, Duration::from_secs(120))
        .await;
    let s = cluster.status(&admin).await;
    let moved = s["repair"]["moved_total"].as_u64().unwrap() - moved_before;
    // Ideal: the blocks whose top three now include node 4 (3 in 4) move
    // exactly one shard each.
    let ideal = blocks as f64 * 3.0 / 4.0;
    assert!(
        (moved as f64 - ideal).abs() <= ideal * 0.35,
        "moved {moved}, ideal {ideal:.0} of {blocks} blocks"
    );
    let on_4 = after["per_node"]["4"].as_u64().unwrap_or(0);
    assert_eq!(
        on_4, moved,
        "every moved shard landed on the new node: {after}"
    );
    assert!(
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == 4 && m["healthy"] == true),
        "{s}"
    );
    for (path, data) in files.iter().step_by(3) {
        assert!(cluster.via(4, &c).download(path).await.unwrap() == *data);
    }

    // Node 1 leaves: its shards move to the others; reads go on throughout.
    cluster.admin_cli(&["remove-node", "1"]);
    let admin2 = cluster.admin(2).await;
    let drained = cluster
        .wait_repaired_at(&admin2, 3, Duration::from_secs(120))
        .await;
    assert!(
        drained["per_node"].get("1").is_none(),
        "node 1 still holds shards: {drained}"
    );
    cluster.stop(1);
    let via2 = cluster.via(2, &c);
    for (path, data) in &files {
        assert!(retry(|| via2.download(path)).await == *data, "{path}");
    }
    // Writes still work on the new layout.
    let via3 = cluster.via(3, &c);
    retry(|| via3.upload("/n/after.bin", noise(300_000, 1))).await;
}

/// Flips one payload byte (100 bytes before the end) in up to `limit`
/// shard records of the pack files under `packs`; returns how many.
fn flip_shard_bytes(packs: &std::path::Path, limit: usize) -> usize {
    use std::os::unix::fs::FileExt;
    let mut flipped = 0;
    let mut files: Vec<_> = std::fs::read_dir(packs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    files.sort();
    for path in files {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let size = f.metadata().unwrap().len();
        let mut at = 0u64;
        while at + 84 <= size && flipped < limit {
            let mut head = [0u8; 84];
            f.read_exact_at(&mut head, at).unwrap();
            if &head[..4] != b"SSHD" {
                at += 4096;
                continue;
            }
            let payload = u32::from_le_bytes(head[16..20].try_into().unwrap()) as u64;
            let end = at + 84 + payload;
            if payload > 200 {
                let mut b = [0u8; 1];
                f.read_exact_at(&mut b, end - 100).unwrap();
                f.write_all_at(&[b[0] ^ 0xff], end - 100).unwrap();
                flipped += 1;
            }
            at = end.div_ceil(4096) * 4096;
        }
    }
    flipped
}
