//! End-to-end tests of one `strata dev` drive over HTTPS.

mod common;

use common::*;
use futures::StreamExt;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_round_trips_byte_for_byte() {
    let drive = Drive::start();
    let c = drive.user("alice").await;
    let text = b"All happy families are alike; each unhappy family is unhappy in its own way.\n"
        .repeat(40_000);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/empty", vec![]),
        ("/one", vec![0x42]),
        ("/docs/random-5m.bin", noise(5 << 20, 1)),
        ("/docs/novel.txt", text.clone()),
    ];
    for (path, data) in &cases {
        let meta = c.upload(path, data.clone()).await.unwrap();
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(meta.version, 1);
        assert_eq!(meta.content_hash, blake3::hash(data).to_hex().to_string());
        assert_eq!(meta.path, *path);
        assert_eq!(c.download(path).await.unwrap(), *data, "{path}");
    }
    // The compressible file really took less room on disk than its size.
    let account = c.account().await.unwrap();
    let total: u64 = cases.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(account.used_bytes, total);

    // 200 MiB, streamed both ways without holding it whole.
    let len = 200u64 << 20;
    let meta = c
        .upload_stream("/big/200m.bin", len, noise_stream(len, 77))
        .await
        .unwrap();
    assert_eq!(meta.size, len);
    let want = noise_stream_hash(len, 77);
    assert_eq!(meta.content_hash, want.to_hex().to_string());
    let mut h = blake3::Hasher::new();
    let mut got = 0u64;
    let mut body = c.download_stream("/big/200m.bin").await.unwrap();
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        got += piece.len() as u64;
        h.update(&piece);
    }
    assert_eq!(got, len);
    assert_eq!(h.finalize(), want);

    // Everything survives a clean restart.
    let mut drive = drive;
    drive.stop();
    drive.restart();
    let c2 = drive.client().with_token(c.token().unwrap());
    for (path, data) in &cases {
        assert_eq!(
            c2.download(path).await.unwrap(),
            *data,
            "{path} after restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads() {
    let drive = Drive::start();
    let c = drive.user("rita").await;
    let data = noise(3_000_000, 5);
    c.upload("/r.bin", data.clone()).await.unwrap();
    let get = |range: &'static str| {
        let c = c.clone();
        async move {
            c.request(Method::GET, "/api/v1/files/content")
                .query(&[("path", "/r.bin")])
                .header("range", range)
                .send()
                .await
                .unwrap()
        }
    };
    let n = data.len();
    for (range, from, to) in [
        ("bytes=0-0", 0, 1),
        ("bytes=0-99", 0, 100),
        ("bytes=1048570-2097160", 1_048_570, 2_097_161),
        ("bytes=2999990-", 2_999_990, n),
        ("bytes=-1000", n - 1000, n),
        ("bytes=10-99999999", 10, n),
    ] {
        let r = get(range).await;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes {}-{}/{}", from, to - 1, n)
        );
        assert_eq!(r.bytes().await.unwrap(), &data[from..to], "{range}");
    }
    for bad in [
        "bytes=3000000-",
        "bytes=5-2",
        "bytes=-0",
        "pages=1-2",
        "bytes=a-b",
    ] {
        let r = get(bad).await;
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes */{n}")
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "range_not_satisfiable");
    }
    // Conditional GET with the ETag.
    let etag = get("bytes=0-0").await.headers()["etag"].clone();
    let r = c
        .request(Method::GET, "/api/v1/files/content")
        .query(&[("path", "/r.bin")])
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_history_delete_restore_move() {
    let drive = Drive::start();
    let c = drive.user("vera").await;
    let v1 = b"first draft".to_vec();
    let v2 = b"second draft, longer".to_vec();
    c.upload("/notes/plan.md", v1.clone()).await.unwrap();
    let m2 = c.upload("/notes/plan.md", v2.clone()).await.unwrap();
    assert_eq!(m2.version, 2);
    let h = c.history("/notes/plan.md").await.unwrap();
    assert_eq!(
        h.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(h.versions[1].size, v1.len() as u64);
    assert_eq!(h.versions[1].modified_by_device, "vera-laptop");
    assert_eq!(c.download_version("/notes/plan.md", 1).await.unwrap(), v1);

    // A write based on a stale version conflicts, then lands as a copy.
    let stale = c
        .upload_with(
            "/notes/plan.md",
            b"from another device".to_vec(),
            Some(1),
            None,
        )
        .await;
    match stale {
        Err(strata_client::ClientError::Api {
            status,
            current_version,
            ..
        }) => {
            assert_eq!(status, 409);
            assert_eq!(current_version, Some(2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let copy = c
        .upload_with(
            "/notes/plan.md",
            b"from another device".to_vec(),
            Some(1),
            Some("rename"),
        )
        .await
        .unwrap();
    assert!(
        copy.path
            .starts_with("/notes/plan (conflicted copy vera-laptop "),
        "{}",
        copy.path
    );
    assert_eq!(c.download("/notes/plan.md").await.unwrap(), v2);

    // Delete: gone from reads and listings, history kept.
    c.delete("/notes/plan.md").await.unwrap();
    assert_eq!(status_of(c.download("/notes/plan.md").await), 404);
    assert_eq!(status_of(c.metadata("/notes/plan.md").await), 404);
    let listed = c.list("/notes", false).await.unwrap();
    assert!(listed.entries.iter().all(|e| e.path != "/notes/plan.md"));
    let h = c.history("/notes/plan.md").await.unwrap();
    assert_eq!(h.versions[0].version, 3);
    assert!(h.versions[0].deleted);
    assert_eq!(status_of(c.delete("/notes/plan.md").await), 404);

    // Restore version 1.
    let r = c.restore("/notes/plan.md", 1).await.unwrap();
    assert_eq!(r.version, 4);
    assert_eq!(c.download("/notes/plan.md").await.unwrap(), v1);
    assert_eq!(status_of(c.restore("/notes/plan.md", 3).await), 400);
    assert_eq!(status_of(c.restore("/notes/plan.md", 99).await), 404);

    // Move a file, then its folder; content and history follow.
    let moved = c
        .move_entry("/notes/plan.md", "/archive/2026/plan.md")
        .await
        .unwrap();
    assert_eq!(moved.path, "/archive/2026/plan.md");
    assert_eq!(status_of(c.download("/notes/plan.md").await), 404);
    c.move_entry("/archive", "/old").await.unwrap();
    assert_eq!(c.download("/old/2026/plan.md").await.unwrap(), v1);
    assert_eq!(
        c.history("/old/2026/plan.md").await.unwrap().versions.len(),
        4
    );
    assert_eq!(status_of(c.move_entry("/old", "/old/inside").await), 400);
    assert_eq!(status_of(c.move_entry("/missing", "/x").await), 404);
    c.upload("/taken", b"x".to_vec()).await.unwrap();
    assert_eq!(status_of(c.move_entry("/old", "/taken").await), 409);

    // Folders: create, conflict, recursive delete.
    let f = c.create_folder("/photos/2026").await.unwrap();
    assert_eq!(f.kind, strata_api::EntryKind::Folder);
    assert_eq!(status_of(c.create_folder("/photos/2026").await), 409);
    c.upload("/photos/2026/a.jpg", noise(1000, 3))
        .await
        .unwrap();
    assert_eq!(
        status_of(c.upload("/photos/2026/a.jpg/inner", b"x".to_vec()).await),
        409
    );
    c.delete("/photos").await.unwrap();
    assert_eq!(status_of(c.download("/photos/2026/a.jpg").await), 404);
    let root = c.list("/", true).await.unwrap();
    let paths: Vec<&str> = root.entries.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"/old/2026/plan.md"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/photos")), "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_and_quota() {
    let mut drive = Drive::start();
    // A small quota for new accounts, through `strata serve --config`.
    drive.reconfigure("\n[limits]\ndefault_quota = \"3MiB\"\n");
    let c = drive.user("quinn").await;
    assert_eq!(c.account().await.unwrap().quota_bytes, 3 << 20);

    // Over the 10 GiB file limit: refused from the declared size alone.
    let r = c
        .request(Method::POST, "/api/v1/files")
        .query(&[("uploadType", "resumable"), ("path", "/huge.bin")])
        .header("upload-length", (10u64 << 30) + 1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    let r = c
        .request(Method::POST, "/api/v1/uploads")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", (10u64 << 30) + 1)
        .header("upload-metadata", "filename aHVnZS5iaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Quota: the declared size is checked before any byte is stored.
    c.upload("/a.bin", noise(2 << 20, 1)).await.unwrap();
    let r = c.upload("/b.bin", noise(2 << 20, 2)).await;
    match r {
        Err(strata_client::ClientError::Api { status, code, .. }) => {
            assert_eq!(status, 507);
            assert_eq!(code, strata_api::ErrorCode::QuotaExceeded);
        }
        other => panic!("expected 507, got {other:?}"),
    }
    assert_eq!(status_of(c.download("/b.bin").await), 404);
    assert_eq!(status_of(c.start_resumable("/c.bin", 2 << 20).await), 507);
    // Replacing a file only needs the difference.
    c.upload("/a.bin", noise(3 << 20, 3)).await.unwrap();
    assert_eq!(c.account().await.unwrap().used_bytes, 3 << 20);
    // Resumable uploads reserve their length.
    c.delete("/a.bin").await.unwrap();
    let loc = c.start_resumable("/c.bin", 2 << 20).await.unwrap();
    assert_eq!(c.account().await.unwrap().reserved_bytes, 2 << 20);
    assert_eq!(status_of(c.start_resumable("/d.bin", 2 << 20).await), 507);
    let r = c
        .request(Method::DELETE, &loc)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(c.account().await.unwrap().reserved_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_isolated_and_authenticated() {
    let drive = Drive::start();
    let alice = drive.user("alice").await;
    let bob = drive.user("bob").await;
    alice
        .upload("/secret/diary.txt", b"dear diary".to_vec())
        .await
        .unwrap();
    let loc = alice.start_resumable("/secret/big.bin", 100).await.unwrap();

    // Bob sees none of it, and cannot tell it exists.
    assert_eq!(status_of(bob.download("/secret/diary.txt").await), 404);
    assert_eq!(status_of(bob.metadata("/secret/diary.txt").await), 404);
    assert_eq!(status_of(bob.list("/secret", false).await), 404);
    assert_eq!(status_of(bob.history("/secret/diary.txt").await), 404);
    assert_eq!(status_of(bob.delete("/secret/diary.txt").await), 404);
    assert!(bob.list("/", true).await.unwrap().entries.is_empty());
    assert_eq!(status_of(bob.upload_offset(&loc).await), 404);
    assert_eq!(
        status_of(bob.upload_chunk(&loc, 0, vec![0u8; 100]).await),
        404
    );
    let r = bob.request(Method::DELETE, &loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Bob writing the same path writes his own file.
    bob.upload("/secret/diary.txt", b"bob's".to_vec())
        .await
        .unwrap();
    assert_eq!(
        alice.download("/secret/diary.txt").await.unwrap(),
        b"dear diary"
    );
    assert_eq!(alice.upload_offset(&loc).await.unwrap(), 0);

    // No token, a garbage token, a forged token: 401.
    let anon = drive.client();
    assert_eq!(status_of(anon.download("/secret/diary.txt").await), 401);
    assert_eq!(
        status_of(anon.clone().with_token("nope").account().await),
        401
    );
    let forged = format!("st1_{}", "A".repeat(64));
    assert_eq!(
        status_of(anon.clone().with_token(forged).account().await),
        401
    );

    // Logout ends the session.
    let mut c = drive.client();
    c.login("alice", "correct horse battery", None)
        .await
        .unwrap();
    c.account().await.unwrap();
    c.logout().await.unwrap();
    assert_eq!(status_of(c.account().await), 401);
    alice.account().await.unwrap();

    // Wrong password and unknown user look the same.
    let r1 = anon
        .request(Method::POST, "/api/v1/auth/login")
        .json(&serde_json::json!({"username": "alice", "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    let r2 = anon
        .request(Method::POST, "/api/v1/auth/login")
        .json(&serde_json::json!({"username": "nobody", "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (401, 401));
    assert_eq!(r1.text().await.unwrap(), r2.text().await.unwrap());
    // Signup rules.
    assert_eq!(
        status_of(anon.signup("alice", "another password").await),
        409
    );
    assert_eq!(
        status_of(anon.signup("ALICE", "another password").await),
        409
    );
    assert_eq!(
        status_of(anon.signup("bad name", "another password").await),
        400
    );
    assert_eq!(status_of(anon.signup("carol", "short").await), 400);
    let r = anon
        .request(Method::POST, "/api/v1/auth/signup")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = anon
        .request(Method::POST, "/api/v1/auth/signup")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_are_rejected() {
    let drive = Drive::start();
    let c = drive.user("pat").await;
    let long_segment = format!("/{}", "x".repeat(256));
    let long_path = "/abcdefgh".repeat(600);
    for bad in [
        "relative",
        "",
        "//x",
        "/a//b",
        "/a/",
        "/a/./b",
        "/a/../b",
        "/..",
        "/a\u{0}b",
        "/a\nb",
        &long_segment,
        &long_path,
    ] {
        assert_eq!(
            status_of(c.upload(bad, b"x".to_vec()).await),
            400,
            "upload {bad:?}"
        );
        assert_eq!(status_of(c.metadata(bad).await), 400, "metadata {bad:?}");
        assert_eq!(status_of(c.download(bad).await), 400, "download {bad:?}");
        assert_eq!(status_of(c.create_folder(bad).await), 400, "folder {bad:?}");
        assert_eq!(
            status_of(c.start_resumable(bad, 1).await),
            400,
            "resumable {bad:?}"
        );
    }
    assert_eq!(status_of(c.upload("/", b"x".to_vec()).await), 400);
    assert_eq!(status_of(c.delete("/").await), 400);
    assert_eq!(status_of(c.move_entry("/", "/x").await), 400);
    // Nothing was created by any of it.
    assert!(c.list("/", true).await.unwrap().entries.is_empty());
    // NFC: two spellings of "café" are one file.
    c.upload("/caf\u{e9}", b"one".to_vec()).await.unwrap();
    assert_eq!(c.download("/cafe\u{301}").await.unwrap(), b"one");
    // Unknown endpoints and methods.
    let r = c
        .request(Method::GET, "/api/v1/nothing")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .request(Method::PUT, "/api/v1/account")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = c
        .request(Method::POST, "/api/v1/files")
        .query(&[("uploadType", "sideways"), ("path", "/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
