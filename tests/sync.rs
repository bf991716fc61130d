//! Sync across devices: the change feed and long polls, presence, the
//! block-level API, and `strata sync` agents on separate folders over a
//! real cluster.

mod common;

use std::time::{Duration, Instant};

use common::agent::{converge, Agent};
use common::cluster::{retry, Cluster};
use common::*;
use reqwest::Method;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_feed_long_polls_and_presence_across_nodes() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start(3, 0, "2+1");
    let a = cluster.user(1, "feed").await;
    let b = cluster.via(2, &a);
    let cursor = retry(|| b.latest_cursor()).await;
    // A poll held on node 2 wakes when node 1 takes a write.
    let poller = {
        let b = b.clone();
        let cursor = cursor.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            (b.poll(&cursor, 30).await.unwrap(), t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.upload("/docs/a.txt", b"one".to_vec()).await.unwrap();
    let (r, waited) = poller.await.unwrap();
    assert!(r.changes, "{r:?}");
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
    // An idle poll times out with no changes.
    let now = b.latest_cursor().await.unwrap();
    let r = b.poll(&now, 1).await.unwrap();
    assert!(!r.changes);
    // The feed: created, modified, moved (with from), deleted, in order.
    a.upload("/docs/a.txt", b"two".to_vec()).await.unwrap();
    a.move_entry("/docs/a.txt", "/docs/b.txt").await.unwrap();
    a.delete("/docs/b.txt").await.unwrap();
    let page = b.changes(&cursor, 100).await.unwrap();
    let kinds: Vec<(&str, &str)> = page
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.path.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("created", "/docs"),
            ("created", "/docs/a.txt"),
            ("modified", "/docs/a.txt"),
            ("moved", "/docs/b.txt"),
            ("deleted", "/docs/b.txt")
        ]
    );
    let moved = &page.changes[3];
    assert_eq!(moved.from.as_deref(), Some("/docs/a.txt"));
    assert_eq!(moved.id, page.changes[1].id, "a move keeps the stable id");
    assert_eq!(
        page.changes[2].content_hash,
        blake3::hash(b"two").to_hex().to_string()
    );
    assert_eq!(page.changes[1].device, "test");
    // Paging.
    let p1 = b.changes(&cursor, 2).await.unwrap();
    assert!(p1.has_more && p1.changes.len() == 2);
    let p2 = b.changes(&p1.cursor, 100).await.unwrap();
    assert_eq!(p2.changes.len(), 3);
    assert!(!p2.has_more);
    // Bad cursors and timeouts.
    for (cursor, timeout) in [("x", "5"), ("999999", "5"), ("0", "0"), ("0", "121")] {
        let r = b
            .request(Method::GET, "/api/v1/changes/poll")
            .query(&[("cursor", cursor), ("timeout", timeout)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{cursor} {timeout}");
    }
    // Another user's changes never show.
    let other = cluster.user(3, "other").await;
    let theirs = other.latest_cursor().await.unwrap();
    assert_eq!(theirs, "0");
    assert!(other.changes("0", 100).await.unwrap().changes.is_empty());

    // Presence: reported through node 1, seen through node 3 within a second,
    // and it wakes a poll there.
    let c = cluster.via(3, &a);
    let cur = c.latest_cursor().await.unwrap();
    let poller = {
        let c = c.clone();
        tokio::spawn(async move { c.poll(&cur, 20).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    a.set_presence("/docs/report.odt", true).await.unwrap();
    let r = poller.await.unwrap();
    assert!(r.presence && !r.changes, "{r:?}");
    let mut seen = false;
    while t.elapsed() < Duration::from_secs(1) {
        let p = c.presence("/docs/report.odt").await.unwrap();
        if p.devices
            .iter()
            .any(|d| d.device == "test" && d.state == "editing")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "presence did not reach node 3 within a second");
    a.set_presence("/docs/report.odt", false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_api_checks_hashes_and_conflicts() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start(3, 0, "2+1");
    let a = cluster.user(1, "blocks").await;
    let key = strata_client::chunks::parse_key(&a.account().await.unwrap().chunk_key).unwrap();
    let c1 = noise(300_000, 1);
    let c2 = noise(200_000, 2);
    let (h1, h2) = (
        strata_client::chunks::block_id(&key, &c1),
        strata_client::chunks::block_id(&key, &c2),
    );
    let missing = a
        .missing_blocks(vec![h1.clone(), h2.clone()])
        .await
        .unwrap();
    assert_eq!(missing, vec![h1.clone(), h2.clone()]);
    // Wrong bytes for the hash: 400.
    assert_eq!(status_of(a.put_block(&h1, c2.clone(), None).await), 400);
    a.put_block(&h1, c1.clone(), None).await.unwrap();
    // Snappy-framed.
    let mut framed = Vec::new();
    {
        let mut w = snap::write::FrameEncoder::new(&mut framed);
        std::io::Write::write_all(&mut w, &c2).unwrap();
    }
    let r = a
        .request(Method::PUT, &format!("/api/v1/blocks/{h2}"))
        .header("content-encoding", "snappy")
        .body(framed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(a
        .missing_blocks(vec![h1.clone(), h2.clone()])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(a.get_block(&h2).await.unwrap(), c2);
    // A delta against a block the server has.
    let mut c3 = c1.clone();
    c3[150_000] ^= 0xff;
    let h3 = strata_client::chunks::block_id(&key, &c3);
    let sig = a.block_signature(&h1).await.unwrap();
    let d = strata_api::delta::delta(&c3, &sig).unwrap();
    assert!(d.len() < 10_000, "delta of one byte is {} bytes", d.len());
    a.put_block(&h3, d, Some(&h1)).await.unwrap();
    assert_eq!(a.get_block(&h3).await.unwrap(), c3);
    // Commit a block list.
    let blocks = |hs: &[(&String, usize)]| {
        hs.iter()
            .map(|(h, n)| strata_api::BlockEntry {
                hash: (*h).clone(),
                size: *n as u64,
            })
            .collect::<Vec<_>>()
    };
    let commit = |path: &str,
                  bl: Vec<strata_api::BlockEntry>,
                  base: Option<u64>,
                  oc: Option<&str>| strata_api::CommitRequest {
        path: path.into(),
        blocks: bl,
        base_version: base,
        on_conflict: oc.map(str::to_string),
    };
    let m = a
        .commit(&commit(
            "/f.bin",
            blocks(&[(&h1, c1.len()), (&h2, c2.len())]),
            None,
            None,
        ))
        .await
        .unwrap();
    let mut whole = c1.clone();
    whole.extend_from_slice(&c2);
    assert_eq!(m.content_hash, blake3::hash(&whole).to_hex().to_string());
    assert_eq!(cluster.via(2, &a).download("/f.bin").await.unwrap(), whole);
    let listed = a.file_blocks("/f.bin").await.unwrap();
    assert_eq!(listed, blocks(&[(&h1, c1.len()), (&h2, c2.len())]));
    // A stale base: 409 with the current version; rename keeps both.
    a.commit(&commit("/f.bin", blocks(&[(&h3, c3.len())]), Some(1), None))
        .await
        .unwrap();
    match a
        .commit(&commit(
            "/f.bin",
            blocks(&[(&h2, c2.len())]),
            Some(1),
            Some("fail"),
        ))
        .await
    {
        Err(strata_client::ClientError::Api {
            status: 409,
            current_version,
            ..
        }) => assert_eq!(current_version, Some(2)),
        other => panic!("expected 409, got {other:?}"),
    }
    let copy = a
        .commit(&commit(
            "/f.bin",
            blocks(&[(&h2, c2.len())]),
            Some(1),
            Some("rename"),
        ))
        .await
        .unwrap();
    assert!(
        copy.path.starts_with("/f (conflicted copy test "),
        "{}",
        copy.path
    );
    assert_eq!(a.download(&copy.path).await.unwrap(), c2);
    // Unknown blocks and wrong sizes are refused; nothing changes.
    assert_eq!(
        status_of(
            a.commit(&commit(
                "/g.bin",
                blocks(&[(&"ab".repeat(32), 10)]),
                None,
                None
            ))
            .await
        ),
        400
    );
    assert_eq!(
        status_of(
            a.commit(&commit("/g.bin", blocks(&[(&h1, 7)]), None, None))
                .await
        ),
        400
    );
    assert_eq!(status_of(a.metadata("/g.bin").await), 404);
    // Blocks are per user: another user cannot read or probe them.
    let b = cluster.user(2, "probe").await;
    assert_eq!(status_of(b.get_block(&h1).await), 404);
    assert_eq!(
        b.missing_blocks(vec![h1.clone()]).await.unwrap(),
        vec![h1.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_converge_conflicts_survive_and_offline_edits_are_pushed() {
    let _one = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, 0, "2+1");
    cluster.user(1, "dev").await;
    let base = cluster.dir.path().to_path_buf();
    let ca = std::path::PathBuf::from(cluster.manifest["ca_cert"].as_str().unwrap());
    let mut a = Agent::login(&base, "laptop", &cluster.url(1), &ca, "dev", PASSWORD);
    let mut b = Agent::login(&base, "phone", &cluster.url(2), &ca, "dev", PASSWORD);
    let mut c = Agent::login(&base, "desktop", &cluster.url(3), &ca, "dev", PASSWORD);
    // Content before the first sync, on both sides.
    a.write("notes/today.md", b"# today\n");
    a.write("empty.txt", b"");
    a.write("naïve café/日本語 ✓.txt", "unicode".as_bytes());
    std::fs::create_dir_all(a.path("deep/er/still")).unwrap();
    b.write("from-phone.txt", b"phone");
    let big = noise(200 << 20, 42);
    a.write("media/big.bin", &big);
    drop(big);
    a.start();
    b.start();
    c.start();
    let t = converge(&[&a, &b, &c], Duration::from_secs(240), |t| {
        t.contains_key("media/big.bin") && t.contains_key("from-phone.txt")
    })
    .await;
    assert_eq!(t["empty.txt"], blake3::hash(b"").to_hex().to_string());
    assert_eq!(t["deep/er/still"], "dir");
    assert!(t.contains_key("naïve café/日本語 ✓.txt"));

    // Edit, delete, rename, nested folders — from different devices.
    b.write("notes/today.md", b"# today\nedited on the phone\n");
    std::fs::remove_file(c.path("empty.txt")).unwrap();
    std::fs::rename(a.path("naïve café"), a.path("renamed café")).unwrap();
    c.write("a/b/c/d.txt", b"nested");
    converge(&[&a, &b, &c], Duration::from_secs(60), |t| {
        !t.contains_key("empty.txt")
            && t.contains_key("renamed café/日本語 ✓.txt")
            && t.contains_key("a/b/c/d.txt")
            && t.get("notes/today.md")
                == Some(
                    &blake3::hash(b"# today\nedited on the phone\n")
                        .to_hex()
                        .to_string(),
                )
    })
    .await;
    // The rename was a move: same stable id, history kept.
    let api = cluster.client(1);
    let mut api = api;
    api.login("dev", PASSWORD, None).await.unwrap();
    let h = api.history("/renamed café/日本語 ✓.txt").await.unwrap();
    assert_eq!(h.versions.len(), 1);

    // The same file edited on two devices before either syncs.
    a.stop();
    b.stop();
    a.write("notes/today.md", b"laptop version\n");
    b.write("notes/today.md", b"phone version\n");
    a.start();
    b.start();
    let t = converge(&[&a, &b, &c], Duration::from_secs(60), |t| {
        t.keys().any(|k| k.contains("conflicted copy"))
    })
    .await;
    let versions: Vec<&String> = t
        .iter()
        .filter(|(k, _)| k.starts_with("notes/today"))
        .map(|(_, v)| v)
        .collect();
    let want = [
        blake3::hash(b"laptop version\n").to_hex().to_string(),
        blake3::hash(b"phone version\n").to_hex().to_string(),
    ];
    for w in &want {
        assert!(versions.contains(&w), "a side was lost: {t:?}");
    }

    // A device offline: it catches up, and pushes what it did meanwhile.
    c.stop();
    a.write("while-away.txt", b"written while the desktop was off");
    c.write("offline-edit.txt", b"edited offline");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.start();
    converge(&[&a, &b, &c], Duration::from_secs(60), |t| {
        t.contains_key("while-away.txt") && t.contains_key("offline-edit.txt")
    })
    .await;

    // Temporary and editor files never travel.
    a.write("draft.tmp", b"scratch");
    a.write(".notes.swp", b"vim");
    a.write("real.txt", b"real");
    converge(&[&a, &b, &c], Duration::from_secs(60), |t| {
        t.contains_key("real.txt")
    })
    .await;
    assert!(!b.path("draft.tmp").exists() && !b.path(".notes.swp").exists());

    // The node a device talks to dies: it carries on through another.
    cluster.kill(1);
    a.write("after-node-1.txt", b"still syncing");
    converge(&[&a, &b, &c], Duration::from_secs(90), |t| {
        t.contains_key("after-node-1.txt")
    })
    .await;
    a.stop();
    b.stop();
    c.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_edit_in_a_large_file_uploads_at_most_one_chunk() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start(3, 0, "2+1");
    cluster.user(1, "delta").await;
    let base = cluster.dir.path().to_path_buf();
    let ca = std::path::PathBuf::from(cluster.manifest["ca_cert"].as_str().unwrap());
    let mut a = Agent::login(&base, "editor", &cluster.url(1), &ca, "delta", PASSWORD);
    let mut b = Agent::login(&base, "viewer", &cluster.url(2), &ca, "delta", PASSWORD);
    let mut data = noise(100 << 20, 9);
    a.write("db.bin", &data);
    a.start();
    b.start();
    converge(&[&a, &b], Duration::from_secs(120), |t| {
        t.contains_key("db.bin")
    })
    .await;
    let admin = cluster.admin(1).await;
    let received = |cluster: &Cluster| {
        let nodes: Vec<strata_client::Client> = (1..=3).map(|i| cluster.via(i, &admin)).collect();
        async move {
            let mut sum = 0u64;
            for c in &nodes {
                sum += metric(c, "strata_upload_bytes_received_total").await;
            }
            sum
        }
    };
    let before = received(&cluster).await;
    data[50 << 20] ^= 0x01;
    a.write("db.bin", &data);
    let want = blake3::hash(&data).to_hex().to_string();
    converge(&[&a, &b], Duration::from_secs(120), |t| {
        t.get("db.bin") == Some(&want)
    })
    .await;
    let sent = received(&cluster).await - before;
    assert!(
        sent <= strata_api::chunking::MAX_CHUNK as u64,
        "a one-byte edit uploaded {sent} bytes"
    );
    eprintln!("one-byte edit of a 100 MiB file: {sent} bytes uploaded");
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_deletions_are_held_and_restarts_do_not_reupload() {
    let _one = SERIAL.lock().await;
    let cluster = Cluster::start(3, 0, "2+1");
    cluster.user(1, "mass").await;
    let base = cluster.dir.path().to_path_buf();
    let ca = std::path::PathBuf::from(cluster.manifest["ca_cert"].as_str().unwrap());
    let mut a = Agent::login(&base, "a", &cluster.url(1), &ca, "mass", PASSWORD);
    let mut b = Agent::login(&base, "b", &cluster.url(2), &ca, "mass", PASSWORD);
    for i in 0..60 {
        a.write(&format!("many/{i}.txt"), format!("file {i}").as_bytes());
    }
    a.write("keep/big.bin", &noise(8 << 20, 3));
    a.start();
    b.start();
    converge(&[&a, &b], Duration::from_secs(120), |t| t.len() >= 63).await;

    // A restart picks up from the saved state: nothing is uploaded again.
    let admin = cluster.admin(1).await;
    let received = |c: strata_client::Client| async move {
        metric(&c, "strata_upload_bytes_received_total").await
    };
    let before = received(admin.clone()).await;
    a.stop();
    a.start();
    a.write("keep/after-restart.txt", b"x");
    converge(&[&a, &b], Duration::from_secs(60), |t| {
        t.contains_key("keep/after-restart.txt")
    })
    .await;
    let after = received(admin.clone()).await;
    assert!(
        after - before < 100_000,
        "a restart uploaded {} bytes",
        after - before
    );

    // Deleting nearly everything at once is held, not propagated.
    std::fs::remove_dir_all(a.path("many")).unwrap();
    std::fs::remove_dir_all(a.path("keep")).unwrap();
    let report = a.path(".strata-sync/held-deletions.txt");
    let t0 = Instant::now();
    while !report.exists() && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(report.exists(), "no report of the held deletion");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("held") && text.contains("many/0.txt"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        b.path("many/59.txt").exists(),
        "the mass deletion reached the other device"
    );
    let mut api = cluster.client(2);
    api.login("mass", PASSWORD, None).await.unwrap();
    assert!(
        api.metadata("/many/0.txt").await.is_ok(),
        "the mass deletion reached the server"
    );
    a.stop();
    b.stop();
}
