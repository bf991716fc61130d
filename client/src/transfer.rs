//! Moving file content with as few bytes as possible.
//!
//! Upload: chunk the file locally, ask which chunks the server lacks, send
//! only those — each as a delta against the chunk the server has at the
//! same place in the previous version when that is smaller — then commit
//! the chunk list. Download: reuse every chunk the local file already has,
//! fetch the rest, write a temporary file, fsync, rename over the target.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

use strata_api::{BlockEntry, CommitRequest, FileMetadata};

use crate::chunks::{chunk_file, read_at_off, Chunk};
use crate::{Client, ClientError, Result};

/// Bytes this client sent and received as content (for reports and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The block of `base` that covers `offset` (a good delta base).
fn base_at(base: &[BlockEntry], offset: u64) -> Option<&BlockEntry> {
    let mut at = 0u64;
    for b in base {
        if offset < at + b.size {
            return Some(b);
        }
        at += b.size;
    }
    base.last()
}

/// What `upload` sends where.
pub struct UploadSpec<'a> {
    pub local: &'a Path,
    pub remote: &'a str,
    /// The version the local file was edited from.
    pub base_version: Option<u64>,
    /// That version's block list (deltas are taken against it).
    pub base: &'a [BlockEntry],
    pub on_conflict: &'a str,
}

/// Uploads a local file by blocks.
pub async fn upload(
    c: &Client,
    key: &[u8; 32],
    spec: &UploadSpec<'_>,
    traffic: &mut Traffic,
) -> Result<(FileMetadata, Vec<Chunk>)> {
    let UploadSpec {
        local,
        remote,
        base_version,
        base,
        on_conflict,
    } = *spec;
    let path = local.to_path_buf();
    let key2 = *key;
    let (chunks, _) = tokio::task::spawn_blocking(move || chunk_file(&path, &key2))
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))??;
    let mut missing = std::collections::HashSet::new();
    for group in chunks.chunks(5000) {
        let hashes: Vec<String> = group.iter().map(|c| c.hash.clone()).collect();
        for m in c.missing_blocks(hashes).await? {
            missing.insert(m);
        }
    }
    let mut sent_now = std::collections::HashSet::new();
    for ch in &chunks {
        if !missing.contains(&ch.hash) || !sent_now.insert(ch.hash.clone()) {
            continue;
        }
        let data = read_at_off(local, ch.offset, ch.size).await?;
        let mut done = false;
        if let Some(b) = base_at(base, ch.offset) {
            if b.hash != ch.hash {
                if let Ok(sig) = c.block_signature(&b.hash).await {
                    traffic.received += sig.len() as u64;
                    if let Some(d) = strata_api::delta::delta(&data, &sig) {
                        if d.len() < data.len() * 9 / 10 {
                            let n = d.len() as u64;
                            if c.put_block(&ch.hash, d, Some(&b.hash)).await.is_ok() {
                                traffic.sent += n;
                                done = true;
                            }
                        }
                    }
                }
            }
        }
        if !done {
            traffic.sent += data.len() as u64;
            c.put_block(&ch.hash, data, None).await?;
        }
    }
    let req = CommitRequest {
        path: remote.to_string(),
        blocks: chunks
            .iter()
            .map(|ch| BlockEntry {
                hash: ch.hash.clone(),
                size: ch.size,
            })
            .collect(),
        base_version,
        on_conflict: Some(on_conflict.to_string()),
    };
    let meta = c.commit(&req).await?;
    Ok((meta, chunks))
}

/// A path under `/Shared`: someone else's file, reached through a share.
pub fn is_shared(remote: &str) -> bool {
    remote.starts_with("/Shared/")
}

/// A temporary name beside `target` that the sync agent ignores.
pub fn temp_beside(target: &Path) -> PathBuf {
    let dir = target.parent().unwrap_or(Path::new("."));
    dir.join(format!(".strata-tmp-{:016x}", rand::random::<u64>()))
}

/// Downloads `remote` into `target` atomically, reusing chunks of the
/// current local file. Returns the block list written.
pub async fn download(
    c: &Client,
    key: &[u8; 32],
    remote: &str,
    target: &Path,
    traffic: &mut Traffic,
) -> Result<Vec<BlockEntry>> {
    // Shared files (owned by someone else) come whole: their block ids are
    // keyed by the owner's key, which this client does not hold.
    let shared = is_shared(remote);
    let blocks = if shared {
        Vec::new()
    } else {
        c.file_blocks(remote).await?
    };
    let mut have: HashMap<String, Chunk> = HashMap::new();
    let is_file = tokio::fs::metadata(target).await.is_ok_and(|m| m.is_file());
    if is_file && !shared {
        let t = target.to_path_buf();
        let k = *key;
        if let Ok(Ok((local, _))) = tokio::task::spawn_blocking(move || chunk_file(&t, &k)).await {
            for ch in local {
                have.insert(ch.hash.clone(), ch);
            }
        }
    }
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    }
    let tmp = temp_beside(target);
    let result = async {
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        if shared || (have.is_empty() && !blocks.is_empty()) {
            // Nothing to reuse: one streaming download.
            let mut s = c.download_stream(remote).await?;
            while let Some(piece) = futures::StreamExt::next(&mut s).await {
                let piece = piece?;
                traffic.received += piece.len() as u64;
                f.write_all(&piece).await.map_err(io(&tmp))?;
            }
        } else {
            for b in &blocks {
                let data = match have.get(&b.hash) {
                    Some(ch) => read_at_off(target, ch.offset, ch.size).await?,
                    None => {
                        let d = c.get_block(&b.hash).await?;
                        traffic.received += d.len() as u64;
                        d
                    }
                };
                if data.len() as u64 != b.size {
                    return Err(ClientError::Protocol(format!(
                        "block {} has the wrong size",
                        b.hash
                    )));
                }
                f.write_all(&data).await.map_err(io(&tmp))?;
            }
        }
        f.sync_all().await.map_err(io(&tmp))?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, target).await.map_err(io(target))?;
    Ok(blocks)
}
