//! Sharing: viewer and editor shares through the API, the `/Shared` view,
//! the sharee's journal, the `strata share` verb, and a sync agent that
//! receives, edits and loses a shared folder.

mod common;

use std::process::Command;
use std::time::Duration;

use common::agent::{converge, Agent};
use common::*;
use reqwest::Method;

const PASSWORD: &str = "correct horse battery";

fn cli(profile: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .arg("--profile")
        .arg(profile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_read_editors_write_and_strangers_see_nothing() {
    let drive = Drive::start();
    let alice = drive.user("alice").await;
    let bob = drive.user("bob").await;
    let carol = drive.user("carol").await;
    let plan: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    alice.upload("/team/plan.bin", plan.clone()).await.unwrap();
    alice
        .upload("/team/notes/a.txt", b"notes".to_vec())
        .await
        .unwrap();
    alice
        .upload("/private/diary.txt", b"dear diary".to_vec())
        .await
        .unwrap();
    let bob_cursor = bob.latest_cursor().await.unwrap();

    // Bad requests: unknown user, bad role, root, sharing with oneself.
    let share = |path: &str, user: &str, role: &str| {
        alice
            .request(Method::POST, "/api/v1/shares")
            .json(&serde_json::json!({"path": path, "user": user, "role": role}))
            .send()
    };
    assert_eq!(
        share("/team", "nobody", "viewer").await.unwrap().status(),
        404
    );
    assert_eq!(share("/team", "bob", "owner").await.unwrap().status(), 400);
    assert_eq!(share("/", "bob", "viewer").await.unwrap().status(), 400);
    assert_eq!(
        share("/team", "alice", "viewer").await.unwrap().status(),
        400
    );
    assert_eq!(share("/nope", "bob", "viewer").await.unwrap().status(), 404);
    let r = share("/team", "bob", "viewer").await.unwrap();
    assert_eq!(r.status(), 201);
    let created = r.json::<serde_json::Value>().await.unwrap();
    assert_eq!(created["state"], "pending");
    let id = created["share_id"].as_str().unwrap().to_string();

    // Offered, not mounted: bob sees nothing of it until he accepts, and
    // only bob can accept it.
    assert_eq!(
        status_of(bob.download("/Shared/alice/team/plan.bin").await),
        404
    );
    assert!(bob.list("/", false).await.unwrap().entries.is_empty());
    let offered = bob.shares().await.unwrap();
    assert_eq!(offered.shared_with_me.len(), 1);
    assert_eq!(offered.shared_with_me[0].state, "pending");
    assert_eq!(
        alice.shares().await.unwrap().shared_by_me[0].state,
        "pending"
    );
    assert_eq!(status_of(carol.accept_share(&id).await), 404);
    bob.accept_share(&id).await.unwrap();
    assert_eq!(
        bob.shares().await.unwrap().shared_with_me[0].state,
        "active"
    );

    // Bob reads it under /Shared/alice/team, byte for byte.
    assert_eq!(
        bob.download("/Shared/alice/team/plan.bin").await.unwrap(),
        plan
    );
    let root = bob.list("/", false).await.unwrap();
    let names: Vec<&str> = root.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, vec!["/Shared"]);
    let all = bob.list("/", true).await.unwrap();
    let paths: Vec<&str> = all.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/Shared",
            "/Shared/alice",
            "/Shared/alice/team",
            "/Shared/alice/team/notes",
            "/Shared/alice/team/plan.bin",
            "/Shared/alice/team/notes/a.txt",
        ]
    );
    assert!(all.entries.iter().all(|e| e.shared));
    let m = bob.metadata("/Shared/alice/team").await.unwrap();
    assert_eq!(m.name, "team");
    assert_eq!(
        bob.history("/Shared/alice/team/plan.bin")
            .await
            .unwrap()
            .versions
            .len(),
        1
    );
    // Alice sees her folder marked as shared.
    assert!(alice.metadata("/team").await.unwrap().shared);
    assert!(!alice.metadata("/private").await.unwrap().shared);

    // A viewer cannot change anything; nothing outside the share leaks.
    assert_eq!(
        status_of(bob.upload("/Shared/alice/team/x.txt", b"x".to_vec()).await),
        403
    );
    assert_eq!(
        status_of(bob.delete("/Shared/alice/team/plan.bin").await),
        403
    );
    assert_eq!(
        status_of(bob.create_folder("/Shared/alice/team/d").await),
        403
    );
    assert_eq!(status_of(bob.create_folder("/Shared/mine").await), 403);
    assert_eq!(
        status_of(bob.download("/Shared/alice/private/diary.txt").await),
        404
    );
    assert_eq!(
        status_of(
            bob.download("/Shared/alice/team/../private/diary.txt")
                .await
        ),
        400
    );
    assert_eq!(
        status_of(carol.list("/Shared/alice/team", false).await),
        404
    );
    assert_eq!(
        status_of(carol.download("/Shared/alice/team/plan.bin").await),
        404
    );
    assert!(carol.list("/", true).await.unwrap().entries.is_empty());
    // Carol cannot end bob's share either.
    let r = carol
        .request(Method::DELETE, &format!("/api/v1/shares/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Alice's changes inside the share reach bob's journal; outside do not.
    alice
        .upload("/team/plan.bin", b"v2".to_vec())
        .await
        .unwrap();
    alice
        .upload("/private/diary.txt", b"secret 2".to_vec())
        .await
        .unwrap();
    let page = bob.changes(&bob_cursor, 100).await.unwrap();
    let seen: Vec<(&str, &str)> = page
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("created", "/Shared/alice/team"),
            ("modified", "/Shared/alice/team/plan.bin"),
        ]
    );

    // Sharing again as editor changes the role (same id); bob now writes,
    // into alice's quota.
    let r = share("/team", "bob", "editor").await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["share_id"],
        id.as_str()
    );
    let before = alice.account().await.unwrap().used_bytes;
    let m = bob
        .upload("/Shared/alice/team/from-bob.txt", b"hello alice".to_vec())
        .await
        .unwrap();
    assert_eq!(m.path, "/Shared/alice/team/from-bob.txt");
    assert_eq!(
        alice.download("/team/from-bob.txt").await.unwrap(),
        b"hello alice"
    );
    assert_eq!(alice.account().await.unwrap().used_bytes, before + 11);
    assert_eq!(bob.account().await.unwrap().used_bytes, 0);
    let m = bob
        .move_entry(
            "/Shared/alice/team/from-bob.txt",
            "/Shared/alice/team/notes/b.txt",
        )
        .await
        .unwrap();
    assert_eq!(m.path, "/Shared/alice/team/notes/b.txt");
    assert_eq!(
        alice.download("/team/notes/b.txt").await.unwrap(),
        b"hello alice"
    );
    // Not out of the share into bob's own files, not the share itself.
    assert_eq!(
        status_of(
            bob.move_entry("/Shared/alice/team/notes/b.txt", "/mine.txt")
                .await
        ),
        400
    );
    assert_eq!(status_of(bob.delete("/Shared/alice/team").await), 403);
    // Resumable and block-level writes are for one's own files.
    assert_eq!(
        status_of(bob.start_resumable("/Shared/alice/team/big.bin", 10).await),
        403
    );
    bob.delete("/Shared/alice/team/notes/b.txt").await.unwrap();
    assert_eq!(status_of(alice.download("/team/notes/b.txt").await), 404);

    // The share follows the folder when alice renames it.
    alice
        .move_entry("/team", "/projects/team-2026")
        .await
        .unwrap();
    assert_eq!(
        bob.download("/Shared/alice/team/plan.bin").await.unwrap(),
        b"v2"
    );

    // Listing shares from both sides, then bob leaves it.
    let mine = alice.shares().await.unwrap();
    assert_eq!(mine.shared_by_me.len(), 1);
    assert_eq!(mine.shared_by_me[0].path, "/projects/team-2026");
    assert_eq!(mine.shared_by_me[0].user, "bob");
    assert_eq!(mine.shared_by_me[0].role, "editor");
    let theirs = bob.shares().await.unwrap();
    assert_eq!(theirs.shared_with_me[0].path, "/Shared/alice/team");
    bob.unshare(&id).await.unwrap();
    assert_eq!(
        status_of(bob.download("/Shared/alice/team/plan.bin").await),
        404
    );
    assert!(bob.list("/", true).await.unwrap().entries.is_empty());
    assert_eq!(
        alice
            .download("/projects/team-2026/plan.bin")
            .await
            .unwrap(),
        b"v2"
    );
    let last = bob.changes(&bob_cursor, 100).await.unwrap().changes;
    let last = last.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.path.as_str()),
        ("deleted", "/Shared/alice/team")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_folder_syncs_to_the_sharees_device_and_back() {
    let drive = Drive::start();
    let alice = drive.user("alice").await;
    drive.user("bob").await;
    let base = tempfile::tempdir().unwrap();
    let ca = drive.data().join("tls").join("cert.pem");
    let mut bob_dev = Agent::login(base.path(), "bob-pc", &drive.url, &ca, "bob", PASSWORD);
    let alice_dev = Agent::login(base.path(), "alice-pc", &drive.url, &ca, "alice", PASSWORD);

    let report: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
    alice
        .upload("/work/report.bin", report.clone())
        .await
        .unwrap();
    alice
        .upload("/work/sub/readme.txt", b"read me".to_vec())
        .await
        .unwrap();

    // The CLI shares it (as editor) and lists it.
    let out = cli(
        &alice_dev.profile,
        &["share", "/work", "--with", "bob", "--role", "editor"],
    );
    assert!(out.contains("offered to bob as editor"), "{out}");
    let listed = cli(&alice_dev.profile, &["share", "--list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let id = v["shared_by_me"][0]["share_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Bob's CLI lists the offer with how to take it, and takes it.
    let offered = cli(&bob_dev.profile, &["share", "--list"]);
    assert!(
        offered.contains(&format!("strata share --accept {id}")),
        "{offered}"
    );
    cli(&bob_dev.profile, &["share", "--accept", &id]);

    bob_dev.start();
    let hash = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let want_report = hash(&report);
    converge(&[&bob_dev], Duration::from_secs(60), |t| {
        t.get("Shared/alice/work/report.bin") == Some(&want_report)
            && t.get("Shared/alice/work/sub/readme.txt") == Some(&hash(b"read me"))
    })
    .await;

    // Alice edits: bob's folder follows.
    alice
        .upload("/work/sub/readme.txt", b"read me, v2".to_vec())
        .await
        .unwrap();
    converge(&[&bob_dev], Duration::from_secs(60), |t| {
        t.get("Shared/alice/work/sub/readme.txt") == Some(&hash(b"read me, v2"))
    })
    .await;

    // Bob edits and adds on his device: alice's drive has it.
    bob_dev.write("Shared/alice/work/from-bob.txt", b"bob was here");
    bob_dev.write("Shared/alice/work/sub/readme.txt", b"read me, v3 by bob");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let a = alice.download("/work/from-bob.txt").await.ok();
        let b = alice.download("/work/sub/readme.txt").await.ok();
        if a.as_deref() == Some(&b"bob was here"[..])
            && b.as_deref() == Some(&b"read me, v3 by bob"[..])
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob's edits did not reach alice: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The share ends: bob's copies go, alice keeps everything.
    cli(&alice_dev.profile, &["share", "--remove", &id]);
    converge(&[&bob_dev], Duration::from_secs(60), |t| {
        !t.keys().any(|k| k.starts_with("Shared/alice/work"))
    })
    .await;
    assert_eq!(alice.download("/work/report.bin").await.unwrap(), report);
    assert_eq!(
        alice.download("/work/from-bob.txt").await.unwrap(),
        b"bob was here"
    );
    bob_dev.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_share_never_reveal_the_owners_blocks() {
    let drive = Drive::start();
    let alice = drive.user("alice").await;
    let bob = drive.user("bob").await;
    let admin = drive.admin().await;
    // Alice's private file, which bob would like to confirm she has.
    let secret = noise(3_000_000, 77);
    let before = metric(&admin, "strata_blocks_written_total").await;
    alice
        .upload("/private/salary.xlsx", secret.clone())
        .await
        .unwrap();
    let chunks = metric(&admin, "strata_blocks_written_total").await - before;
    alice.create_folder("/team").await.unwrap();
    let id = alice.share("/team", "bob", "editor").await.unwrap();
    bob.accept_share(&id).await.unwrap();
    // The counters are not public.
    assert_eq!(
        drive
            .client()
            .request(Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Bob uploads his guess through the share, then an unrelated file:
    // both are sealed and written as new, so neither moves the dedup
    // counter, and the guess costs as many block writes as the original.
    let mut written: Vec<u64> = Vec::new();
    for (name, data) in [
        ("guess.xlsx", secret.clone()),
        ("other.bin", noise(3_000_000, 78)),
    ] {
        let dedup = metric(&admin, "strata_blocks_deduplicated_total").await;
        let blocks = metric(&admin, "strata_blocks_written_total").await;
        let path = format!("/Shared/alice/team/{name}");
        bob.upload(&path, data.clone()).await.unwrap();
        assert_eq!(bob.download(&path).await.unwrap(), data);
        assert_eq!(
            metric(&admin, "strata_blocks_deduplicated_total").await,
            dedup,
            "{name}"
        );
        written.push(metric(&admin, "strata_blocks_written_total").await - blocks);
    }
    assert!(chunks >= 1);
    assert_eq!(written[0], chunks, "{written:?}");
    assert!(written[1] >= 1, "{written:?}");
    // Alice's own re-upload of the same bytes still deduplicates.
    let dedup = metric(&admin, "strata_blocks_deduplicated_total").await;
    alice.upload("/private/copy.xlsx", secret).await.unwrap();
    assert!(metric(&admin, "strata_blocks_deduplicated_total").await > dedup);
}
