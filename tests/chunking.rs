//! Client and server cut content into the same chunks: the parameters are
//! defined once (`strata_api::chunking`) and both chunkers, fed the same
//! bytes in different ways, agree on every boundary. Delta sync and dedup
//! depend on it.

use std::io::Write;

use strata_api::chunking::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
use strata_node::block::chunk;

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The server's way: bytes arrive in pieces of `piece` bytes, are cut once
/// two maximum chunks are buffered, and the rest is cut at the end.
fn server_cuts(data: &[u8], piece: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    for p in data.chunks(piece) {
        buf.extend_from_slice(p);
        if buf.len() >= 2 * MAX_CHUNK {
            let lens = chunk::cut(&buf, false);
            let used: usize = lens.iter().sum();
            out.extend(lens);
            buf.drain(..used);
        }
    }
    out.extend(chunk::cut(&buf, true));
    out
}

#[test]
fn the_parameters_are_the_apis() {
    assert_eq!(chunk::MIN_CHUNK, MIN_CHUNK);
    assert_eq!(chunk::AVG_CHUNK, AVG_CHUNK);
    assert_eq!(chunk::MAX_CHUNK, MAX_CHUNK);
}

#[test]
fn client_and_server_cut_alike() {
    // Noise, a long run of zeros (forced maximum cuts), noise again.
    let mut data = noise(9 * 1024 * 1024 + 12_345, 7);
    data.extend(std::iter::repeat_n(0u8, 2 * MAX_CHUNK + 77));
    data.extend(noise(5 * 1024 * 1024 + 3, 11));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&data)
        .unwrap();
    let key = [3u8; 32];
    let (chunks, whole) = strata_client::chunks::chunk_file(&path, &key).unwrap();
    assert_eq!(whole, blake3::hash(&data).to_hex().to_string());
    let client: Vec<usize> = chunks.iter().map(|c| c.size as usize).collect();
    assert_eq!(client.iter().sum::<usize>(), data.len());
    assert!(client.len() > 10, "{client:?}");
    // Offsets and names follow from the lengths.
    let mut at = 0usize;
    for c in &chunks {
        assert_eq!(c.offset as usize, at);
        let end = at + c.size as usize;
        assert_eq!(
            c.hash,
            strata_client::chunks::block_id(&key, &data[at..end])
        );
        at = end;
    }
    // However the server receives the bytes, it cuts where the client does.
    for piece in [1 << 20, 64 * 1024 + 7, 3 * MAX_CHUNK, data.len()] {
        assert_eq!(server_cuts(&data, piece), client, "pieces of {piece} bytes");
    }
}
