//! Streaming: a 2 GiB upload and download keep the node's resident memory
//! under 300 MiB.

mod common;

use common::*;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_round_trip_in_bounded_memory() {
    let drive = Drive::start();
    let c = drive.user("mem").await;
    let len = 2u64 << 30;
    let meta = c
        .upload_stream("/2g.bin", len, noise_stream(len, 3))
        .await
        .unwrap();
    assert_eq!(meta.size, len);
    let want = noise_stream_hash(len, 3);
    assert_eq!(meta.content_hash, want.to_hex().to_string());
    let after_upload = drive.peak_rss_kib();
    let mut h = blake3::Hasher::new();
    let mut n = 0u64;
    let mut body = c.download_stream("/2g.bin").await.unwrap();
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        n += piece.len() as u64;
        h.update(&piece);
    }
    assert_eq!(n, len);
    assert_eq!(h.finalize(), want);
    let peak = drive.peak_rss_kib();
    eprintln!(
        "peak RSS: {} MiB after upload, {} MiB after download",
        after_upload / 1024,
        peak / 1024
    );
    assert!(peak > 0, "could not read the server's memory use");
    assert!(
        peak < 300 * 1024,
        "peak RSS {} MiB is over 300 MiB",
        peak / 1024
    );
}
