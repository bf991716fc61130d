//! Measurements of the block pipeline, stage by stage and whole, for
//! `strata bench pipeline`. Every figure is MB/s of plaintext (10^6 bytes).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cluster_config::{ClusterSecret, ErasureProfile, UserId};
use raft_meta::records::BlockRecord;

use strata_node::block::chunk::{self, MAX_CHUNK};
use strata_node::block::codec;
use strata_node::block::erasure::Erasure;
use strata_node::block::shard::ShardMeta;
use strata_node::block::store::LocalShards;
use strata_node::blocks::BlockStore;
use strata_node::ingest::{Ingest, WholeHash};
use strata_node::keys::KeyRing;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub mb_per_s: f64,
    pub note: String,
}

fn rate(bytes: usize, start: Instant) -> f64 {
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Fills a buffer with incompressible bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = vec![0u8; n];
    for c in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    out
}

/// Seals each piece with `algorithm` under a fixed key, copied into one
/// reused buffer first (the cipher alone, as the block frame runs it).
fn seal_each<'a>(
    algorithm: &'static ring::aead::Algorithm,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> Result<(), String> {
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(algorithm, &[7; 32]).map_err(|_| "cipher key")?,
    );
    let mut body = Vec::new();
    for piece in pieces {
        body.clear();
        body.extend_from_slice(piece);
        let _tag = key
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key([0; 12]),
                ring::aead::Aad::empty(),
                &mut body,
            )
            .map_err(|_| "seal")?;
    }
    Ok(())
}

/// How fast this machine's CPU is right now, on one thread: MB/s of
/// AES-256-GCM sealing and of plain copies over `total` bytes in 512 KB
/// pieces (two of the largest costs of a small upload). A low figure
/// marks a run whose host gave the machine less than usual without it
/// showing as stolen time. A high one does not clear a run: work that
/// switches threads and enters the kernel has been seen to slow while
/// these did not (BENCHMARKS.md).
pub fn cpu_probe(total: usize) -> Result<(f64, f64), String> {
    const PIECE: usize = 512 * 1024;
    let src = noise(PIECE, 5);
    let rounds = total.div_ceil(PIECE).max(1);
    let t = Instant::now();
    seal_each(
        &ring::aead::AES_256_GCM,
        std::iter::repeat_n(src.as_slice(), rounds),
    )?;
    let cipher = rate(rounds * PIECE, t);
    // Copies between buffers larger than the caches, as the upload path's
    // copies of a block are.
    let mut a = noise(32 * PIECE, 6);
    let mut b = vec![0u8; a.len()];
    let t = Instant::now();
    for i in 0..rounds {
        let at = (i % 32) * PIECE;
        b[at..at + PIECE].copy_from_slice(&a[at..at + PIECE]);
        if i % 32 == 31 {
            std::mem::swap(&mut a, &mut b);
        }
    }
    let copy = rate(rounds * PIECE, t);
    std::hint::black_box((&a, &b));
    Ok((cipher, copy))
}

/// Each stage alone, single-threaded, over `total` bytes in ~1 MiB blocks.
pub fn stages(dir: &Path, total: usize, profile: ErasureProfile) -> Result<Vec<Figure>, String> {
    let data = noise(total, 1);
    let text: Vec<u8> =
        b"strata stores files as content-defined chunks, sealed and erasure-coded. "
            .iter()
            .cycle()
            .take(total)
            .copied()
            .collect();
    let keys = KeyRing::new(ClusterSecret::from_bytes([9; 32])).user(&UserId([1; 16]));
    let mut out = Vec::new();

    let t = Instant::now();
    let mut pos = 0;
    let mut lens = Vec::new();
    while pos < data.len() {
        let end = (pos + 2 * MAX_CHUNK).min(data.len());
        let cut = chunk::cut(&data[pos..end], end == data.len());
        let used: usize = cut.iter().sum();
        lens.extend(cut);
        pos += used.max(1);
    }
    out.push(Figure {
        name: "chunk (FastCDC 2020, avg 1 MiB)".into(),
        mb_per_s: rate(total, t),
        note: format!("{} chunks", lens.len()),
    });
    let blocks: Vec<&[u8]> = {
        let mut v = Vec::new();
        let mut at = 0;
        for l in &lens {
            v.push(&data[at..at + l]);
            at += l;
        }
        v
    };

    let t = Instant::now();
    let ids: Vec<_> = blocks.iter().map(|b| keys.block_id(b)).collect();
    out.push(Figure {
        name: "hash (BLAKE3 keyed)".into(),
        mb_per_s: rate(total, t),
        note: String::new(),
    });

    for (label, input) in [("incompressible", &data), ("text", &text)] {
        let t = Instant::now();
        let mut enc = snap::raw::Encoder::new();
        let mut packed = 0usize;
        for b in input.chunks(1 << 20) {
            packed += enc.compress_vec(b).map_err(|e| e.to_string())?.len();
        }
        out.push(Figure {
            name: format!("compress (snap, {label})"),
            mb_per_s: rate(total, t),
            note: format!("ratio {:.2}", packed as f64 / total as f64),
        });
    }

    let t = Instant::now();
    let mut sealed = Vec::with_capacity(blocks.len());
    for (b, id) in blocks.iter().zip(&ids) {
        sealed.push(codec::seal(&keys, id, b, false).map_err(|e| e.to_string())?);
    }
    out.push(Figure {
        name: "encrypt (AES-256-GCM, block frame v3)".into(),
        mb_per_s: rate(total, t),
        note: String::new(),
    });
    // The two ciphers alone over the same blocks, into one reused buffer:
    // version 3 frames' against version 2 frames'.
    for (label, algorithm) in [
        ("AES-256-GCM", &ring::aead::AES_256_GCM),
        ("ChaCha20-Poly1305", &ring::aead::CHACHA20_POLY1305),
    ] {
        let t = Instant::now();
        seal_each(algorithm, blocks.iter().copied())?;
        out.push(Figure {
            name: format!("cipher alone ({label})"),
            mb_per_s: rate(total, t),
            note: if label == "AES-256-GCM" {
                "block frames v3".into()
            } else {
                "block frames v2".into()
            },
        });
    }

    let erasure = Erasure::new(profile.data as usize, profile.parity as usize);
    let t = Instant::now();
    let mut encoded = Vec::with_capacity(sealed.len());
    for s in &sealed {
        encoded.push(erasure.encode(s).map_err(|e| e.to_string())?);
    }
    out.push(Figure {
        name: format!(
            "erasure-code (Reed-Solomon {}+{}, encode)",
            profile.data, profile.parity
        ),
        mb_per_s: rate(total, t),
        note: "reed-solomon-simd".into(),
    });
    let t = Instant::now();
    for (s, shards) in sealed.iter().zip(&encoded) {
        let mut opt: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        opt[0] = None;
        let back = erasure.decode(&opt, s.len()).map_err(|e| e.to_string())?;
        if back.len() != s.len() {
            return Err("reconstruct gave a wrong length".into());
        }
    }
    out.push(Figure {
        name: "erasure-code (reconstruct, one data shard lost)".into(),
        mb_per_s: rate(total, t),
        note: "includes copying the surviving shards".into(),
    });

    let disks: Vec<_> = (0..profile.total())
        .map(|i| dir.join(format!("stage-disk-{i}")))
        .collect();
    let store = LocalShards::open(&disks).map_err(|e| e.to_string())?;
    let t = Instant::now();
    // As uploads run it: every shard of a block at once, on the disk
    // writers (this runs on the blocking pool, beside the runtime).
    let rt = tokio::runtime::Handle::current();
    for (id, shards) in ids.iter().zip(&encoded) {
        let puts = shards.iter().enumerate().map(|(i, payload)| {
            let meta = ShardMeta {
                block: *id,
                codec: 1,
                data: profile.data,
                parity: profile.parity,
                index: i as u8,
                sealed_len: 0,
            };
            let record = bytes::Bytes::from(strata_node::block::shard::file(&meta, payload));
            let store = &store;
            async move { store.put(&meta, record).await }
        });
        for r in rt.block_on(futures::future::join_all(puts)) {
            r.map_err(|e| e.to_string())?;
        }
    }
    let written: usize = encoded.iter().flatten().map(Vec::len).sum();
    out.push(Figure {
        name: "write (pack records, one flush per block)".into(),
        mb_per_s: rate(total, t),
        note: format!("{:.2}x bytes on disk", written as f64 / total as f64),
    });
    Ok(out)
}

/// The whole pipeline as uploads run it (parallel stores, fsync), then
/// reading everything back. Returns (ingest MB/s, read MB/s).
pub async fn whole(
    dir: &Path,
    total: usize,
    profile: ErasureProfile,
) -> Result<(Figure, Figure), String> {
    let disks: Vec<_> = (0..profile.total())
        .map(|i| dir.join(format!("pipe-disk-{i}")))
        .collect();
    let shards = LocalShards::open(&disks).map_err(|e| e.to_string())?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let store = Arc::new(BlockStore::new(
        cluster_config::NodeId::FIRST,
        KeyRing::new(ClusterSecret::from_bytes([9; 32])),
        shards,
        Arc::new(strata_node::placement::Placement::new(
            strata_node::placement::View::single(
                cluster_config::NodeId::FIRST,
                profile,
                disks.len(),
            ),
        )),
        None,
        2 * cores + 2,
    ));
    let meta =
        raft_meta::MetaReader::open_empty(&dir.join("pipe-meta")).map_err(|e| e.to_string())?;
    let user = UserId([2; 16]);
    // Generate ahead so the measurement is the pipeline, not the generator.
    let data = Bytes::from(noise(total, 2));
    let t = Instant::now();
    let mut ingest = Ingest::new(store.clone(), meta, user, WholeHash::Plain(Box::default()));
    for piece in data.chunks(64 * 1024) {
        ingest.push(piece).await.map_err(|e| e.to_string())?;
    }
    let done = ingest.finish().await.map_err(|e| e.to_string())?;
    let up = Figure {
        name: "whole pipeline, ingest (chunk+hash+snap+encrypt+RS+write, parallel)".into(),
        mb_per_s: rate(total, t),
        note: format!("{} blocks", done.chunks.len()),
    };
    let keys = store.user_keys(&user);
    let t = Instant::now();
    let mut got = 0usize;
    let mut fetches = Vec::new();
    for (c, n) in done.chunks.iter().zip(&done.new_blocks) {
        let rec = BlockRecord {
            refs: 1,
            plain_len: n.plain_len,
            stored: n.stored.clone(),
            created_ms: 0,
        };
        fetches.push((c.id, rec));
    }
    // Three in flight, as downloads prefetch.
    let mut iter = fetches.into_iter();
    let mut inflight = std::collections::VecDeque::new();
    loop {
        while inflight.len() < 3 {
            let Some((id, rec)) = iter.next() else { break };
            let s = store.clone();
            let k = keys.clone();
            inflight.push_back(tokio::spawn(async move { s.read_block(k, id, rec).await }));
        }
        let Some(h) = inflight.pop_front() else { break };
        got += h
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .len();
    }
    if got != total {
        return Err(format!("read back {got} of {total} bytes"));
    }
    let down = Figure {
        name: "whole pipeline, read back (read+verify+RS+decrypt+decompress)".into(),
        mb_per_s: rate(total, t),
        note: String::new(),
    };
    Ok((up, down))
}
