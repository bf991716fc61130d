//! Crash safety: SIGKILL the node while uploads stream in, restart it, and
//! check that everything acknowledged is intact, nothing partial is listed,
//! and an unfinished resumable upload continues from its offset.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use strata_client::Client;

#[derive(Clone, Debug)]
struct Sent {
    path: String,
    seed: u64,
    len: usize,
}

async fn upload_loop(
    c: Client,
    round: u64,
    acked: Arc<Mutex<Vec<Sent>>>,
    attempt: Arc<Mutex<Option<Sent>>>,
) {
    for i in 0..10_000u64 {
        let seed = round * 100_000 + i;
        let len = 1_000 + (seed * 7919 % 700_000) as usize;
        let s = Sent {
            path: format!("/stream/r{round}/f{i}.bin"),
            seed,
            len,
        };
        *attempt.lock().unwrap() = Some(s.clone());
        match c.upload(&s.path, noise(len, seed)).await {
            Ok(meta) => {
                assert_eq!(meta.size, len as u64);
                acked.lock().unwrap().push(s);
            }
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_uploads_loses_nothing_acknowledged() {
    let mut drive = Drive::start();
    let c = drive.user("crash").await;
    let token = c.token().unwrap().to_string();

    // A resumable upload left half done across the crashes.
    let resumable = noise(6 << 20, 999);
    let loc = c
        .start_resumable("/half/done.bin", resumable.len() as u64)
        .await
        .unwrap();
    let first = (5 << 20) / 2;
    assert_eq!(
        c.upload_chunk(&loc, 0, resumable[..first].to_vec())
            .await
            .unwrap(),
        first as u64
    );

    let acked: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut attempts: Vec<Sent> = Vec::new();
    for round in 0..3u64 {
        let c = drive.client().with_token(token.clone());
        let attempt: Arc<Mutex<Option<Sent>>> = Arc::default();
        let before = acked.lock().unwrap().len();
        let task = tokio::spawn(upload_loop(c, round, acked.clone(), attempt.clone()));
        // Let a number of uploads land, then kill at an arbitrary moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 8 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * (round + 1))).await;
        drive.kill();
        let _ = task.await;
        if let Some(a) = attempt.lock().unwrap().clone() {
            attempts.push(a);
        }
        drive.restart();
    }

    let c = drive.client().with_token(token.clone());
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 24,
        "only {} uploads acknowledged",
        acked.len()
    );
    for s in &acked {
        let got = c
            .download(&s.path)
            .await
            .unwrap_or_else(|e| panic!("{} lost: {e}", s.path));
        assert!(got == noise(s.len, s.seed), "{} corrupted", s.path);
    }
    // Every listed file is complete: acknowledged, or the one in flight at
    // the kill (committed, but its answer was lost) with its full content.
    let listed = c.list("/stream", true).await.unwrap();
    for e in listed
        .entries
        .iter()
        .filter(|e| e.kind == strata_api::EntryKind::File)
    {
        let known = acked
            .iter()
            .chain(attempts.iter())
            .find(|s| s.path == e.path);
        let s = known.unwrap_or_else(|| panic!("unexpected file {}", e.path));
        assert_eq!(
            e.size, s.len as u64,
            "{} listed with a partial size",
            e.path
        );
        assert!(c.download(&e.path).await.unwrap() == noise(s.len, s.seed));
    }
    for s in &acked {
        assert!(
            listed.entries.iter().any(|e| e.path == s.path),
            "{} not listed",
            s.path
        );
    }

    // The resumable upload continues from its acknowledged offset.
    assert_eq!(c.upload_offset(&loc).await.unwrap(), first as u64);
    assert_eq!(status_of(c.download("/half/done.bin").await), 404);
    let end = c
        .upload_chunk(&loc, first as u64, resumable[first..].to_vec())
        .await
        .unwrap();
    assert_eq!(end, resumable.len() as u64);
    assert_eq!(c.download("/half/done.bin").await.unwrap(), resumable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_large_upload_leaves_nothing_visible() {
    let mut drive = Drive::start();
    let c = drive.user("big").await;
    let token = c.token().unwrap().to_string();
    let len = 300u64 << 20;
    let uploader = c.clone();
    let task = tokio::spawn(async move {
        uploader
            .upload_stream("/big/partial.bin", len, noise_stream(len, 5))
            .await
    });
    // Kill once a good part of the body has gone through the pipeline.
    let admin = drive.admin().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let written = metric(&admin, "strata_block_plain_bytes_written_total").await;
        if written >= 64 << 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "upload made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drive.kill();
    assert!(
        task.await.unwrap().is_err(),
        "the upload cannot have completed"
    );
    drive.restart();
    let c = drive.client().with_token(token);
    assert_eq!(status_of(c.download("/big/partial.bin").await), 404);
    assert_eq!(status_of(c.metadata("/big/partial.bin").await), 404);
    assert_eq!(c.account().await.unwrap().used_bytes, 0);
    // The drive works normally afterwards.
    c.upload("/big/after.bin", noise(100_000, 1)).await.unwrap();
    assert_eq!(
        c.download("/big/after.bin").await.unwrap(),
        noise(100_000, 1)
    );
}
