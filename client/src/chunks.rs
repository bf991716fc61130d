//! Chunking local files the way the server does (FastCDC with the shared
//! parameters), naming chunks with the account's key, and whole-file hashes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use strata_api::chunking::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};

use crate::{ClientError, Result};

/// A chunk of a local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub hash: String,
    pub offset: u64,
    pub size: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Block ids are BLAKE3 keyed by the account's chunk key.
pub fn block_id(key: &[u8; 32], data: &[u8]) -> String {
    blake3::keyed_hash(key, data).to_hex().to_string()
}

pub fn parse_key(hex: &str) -> Result<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(ClientError::Protocol("the server gave no chunk key".into()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let s =
            std::str::from_utf8(pair).map_err(|_| ClientError::Protocol("bad chunk key".into()))?;
        out[i] =
            u8::from_str_radix(s, 16).map_err(|_| ClientError::Protocol("bad chunk key".into()))?;
    }
    Ok(out)
}

/// Chunks of a file and its whole-content BLAKE3, reading it once with
/// bounded memory (one window of two maximum chunks).
pub fn chunk_file(path: &Path, key: &[u8; 32]) -> Result<(Vec<Chunk>, String)> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut whole = blake3::Hasher::new();
    let mut buf: Vec<u8> = Vec::with_capacity(2 * MAX_CHUNK);
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut eof = false;
    loop {
        while !eof && buf.len() < 2 * MAX_CHUNK {
            let start = buf.len();
            buf.resize(2 * MAX_CHUNK, 0);
            let n = f.read(&mut buf[start..]).map_err(io(path))?;
            buf.truncate(start + n);
            whole.update(&buf[start..]);
            if n == 0 {
                eof = true;
            }
        }
        if buf.is_empty() {
            break;
        }
        let cdc = fastcdc::v2020::FastCDC::new(&buf, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
        let mut start = 0;
        while start < buf.len() {
            let (_, end) = cdc.cut(start, buf.len() - start);
            if end == buf.len() && !eof && end - start < MAX_CHUNK {
                break;
            }
            out.push(Chunk {
                hash: block_id(key, &buf[start..end]),
                offset,
                size: (end - start) as u64,
            });
            offset += (end - start) as u64;
            start = end;
        }
        buf.drain(..start);
        if eof && buf.is_empty() {
            break;
        }
    }
    Ok((out, whole.finalize().to_hex().to_string()))
}

/// Runs blocking file work (hashing, walking, reading) on the blocking
/// pool, so it never holds up the async runtime's threads.
pub async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClientError::Protocol(format!("file task failed: {e}")))?
}

/// `hash_file` on the blocking pool.
pub async fn hash_file_off(path: &Path) -> Result<String> {
    let path = path.to_path_buf();
    off_runtime(move || hash_file(&path)).await
}

/// `read_at` on the blocking pool.
pub async fn read_at_off(path: &Path, offset: u64, size: u64) -> Result<Vec<u8>> {
    let path = path.to_path_buf();
    off_runtime(move || read_at(&path, offset, size)).await
}

/// The whole-content BLAKE3 of a file.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Reads `size` bytes at `offset`.
pub fn read_at(path: &Path, offset: u64, size: u64) -> Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).map_err(io(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut buf = vec![0u8; size as usize];
    f.read_exact(&mut buf).map_err(io(path))?;
    Ok(buf)
}
