//! The shard file format: a header that says what the shard is, then its
//! payload. A checksum over header and payload is checked on every read.
//! It is a record in a pack on disk (`store.rs`) and the unit sent between
//! nodes.
//!
//! The checksum finds a damaged shard, so that the block is decoded from
//! the others: version 2 uses CRC-32 (an order of magnitude cheaper than a
//! cryptographic hash, and enough to catch bit rot and torn writes);
//! what proves a block authentic is its AEAD tag, checked when it is
//! opened. Version 1 (BLAKE3) is still read.
//!
//! ```text
//! 0..4    magic "SSHD"
//! 4       format version (2)
//! 5       erasure codec (1 = reed-solomon-simd)
//! 6       data shards (k)
//! 7       parity shards (m)
//! 8       shard index
//! 9..12   reserved (0)
//! 12..16  sealed block length, little-endian
//! 16..20  payload length, little-endian
//! 20..52  block id
//! 52..84  v2: CRC-32 of bytes 0..52 and the payload (LE), then 28 zero bytes
//!         v1: BLAKE3 of bytes 0..52 followed by the payload
//! 84..    payload
//! ```

use cluster_config::BlockId;

pub const MAGIC: &[u8; 4] = b"SSHD";
pub const FORMAT_V1: u8 = 1;
pub const FORMAT_V2: u8 = 2;
pub const HEADER_LEN: usize = 84;

/// What a shard claims to be; checked against what the reader expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardMeta {
    pub block: BlockId,
    pub codec: u8,
    pub data: u8,
    pub parity: u8,
    pub index: u8,
    pub sealed_len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardFormatError {
    #[error("shard too short")]
    Truncated,
    #[error("bad shard magic")]
    Magic,
    #[error("unknown shard format version {0}")]
    Version(u8),
    #[error("shard checksum mismatch")]
    Checksum,
    #[error("shard is not the one expected: {0}")]
    Mismatch(&'static str),
}

/// The checksum field of a shard of format `version`.
fn checksum(version: u8, header: &[u8], payload: &[u8]) -> [u8; 32] {
    if version == FORMAT_V1 {
        let mut h = blake3::Hasher::new();
        h.update(header);
        h.update(payload);
        return *h.finalize().as_bytes();
    }
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    let mut out = [0u8; 32];
    out[..4].copy_from_slice(&h.finalize().to_le_bytes());
    out
}

/// The header of a shard file with this payload.
pub fn header(meta: &ShardMeta, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut hdr = [0u8; HEADER_LEN];
    hdr[..4].copy_from_slice(MAGIC);
    hdr[4] = FORMAT_V2;
    hdr[5] = meta.codec;
    hdr[6] = meta.data;
    hdr[7] = meta.parity;
    hdr[8] = meta.index;
    hdr[12..16].copy_from_slice(&meta.sealed_len.to_le_bytes());
    hdr[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    hdr[20..52].copy_from_slice(meta.block.as_bytes());
    let sum = checksum(FORMAT_V2, &hdr[..52], payload);
    hdr[52..84].copy_from_slice(&sum);
    hdr
}

/// Largest payload a shard header may claim (a shard of the largest block).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// What a header says, without checking the checksum (which needs the
/// payload): its shard and the payload length. `None` if it is not a
/// shard header at all.
pub fn peek_header(hdr: &[u8]) -> Option<(ShardMeta, usize)> {
    if hdr.len() < HEADER_LEN || &hdr[..4] != MAGIC || !matches!(hdr[4], FORMAT_V1 | FORMAT_V2) {
        return None;
    }
    let payload_len = u32::from_le_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]) as usize;
    if payload_len > MAX_PAYLOAD {
        return None;
    }
    let meta = ShardMeta {
        block: BlockId::from_slice(&hdr[20..52])?,
        codec: hdr[5],
        data: hdr[6],
        parity: hdr[7],
        index: hdr[8],
        sealed_len: u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]),
    };
    Some((meta, payload_len))
}

/// Writes the header into the first `HEADER_LEN` bytes of `record`, whose
/// remainder is the payload: the shard file, built in place.
pub fn fill_header(meta: &ShardMeta, record: &mut [u8]) {
    let hdr = header(meta, &record[HEADER_LEN..]);
    record[..HEADER_LEN].copy_from_slice(&hdr);
}

/// A whole shard file (header and payload).
pub fn file(meta: &ShardMeta, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(meta, payload));
    out.extend_from_slice(payload);
    out
}

/// Verifies a whole shard file and returns its payload.
pub fn parse(file: &[u8], expect: &ShardMeta) -> Result<Vec<u8>, ShardFormatError> {
    verify(file, expect).map(|p| p.to_vec())
}

/// Verifies a whole shard file and returns its payload, borrowed.
pub fn verify<'a>(file: &'a [u8], expect: &ShardMeta) -> Result<&'a [u8], ShardFormatError> {
    if file.len() < HEADER_LEN {
        return Err(ShardFormatError::Truncated);
    }
    let (hdr, payload) = file.split_at(HEADER_LEN);
    if &hdr[..4] != MAGIC {
        return Err(ShardFormatError::Magic);
    }
    let version = hdr[4];
    if version != FORMAT_V1 && version != FORMAT_V2 {
        return Err(ShardFormatError::Version(version));
    }
    let payload_len = u32::from_le_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]) as usize;
    if payload.len() != payload_len {
        return Err(ShardFormatError::Truncated);
    }
    if checksum(version, &hdr[..52], payload)[..] != hdr[52..84] {
        return Err(ShardFormatError::Checksum);
    }
    let found = ShardMeta {
        block: BlockId::from_slice(&hdr[20..52]).ok_or(ShardFormatError::Truncated)?,
        codec: hdr[5],
        data: hdr[6],
        parity: hdr[7],
        index: hdr[8],
        sealed_len: u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]),
    };
    if found.block != expect.block {
        return Err(ShardFormatError::Mismatch("block id"));
    }
    if (found.codec, found.data, found.parity) != (expect.codec, expect.data, expect.parity) {
        return Err(ShardFormatError::Mismatch("erasure profile"));
    }
    if found.index != expect.index {
        return Err(ShardFormatError::Mismatch("shard index"));
    }
    if found.sealed_len != expect.sealed_len {
        return Err(ShardFormatError::Mismatch("block length"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ShardMeta {
        ShardMeta {
            block: BlockId([5; 32]),
            codec: 1,
            data: 2,
            parity: 1,
            index: 1,
            sealed_len: 999,
        }
    }

    #[test]
    fn version_one_shards_are_still_read() {
        let payload = vec![3u8; 1000];
        let mut hdr = header(&meta(), &payload);
        hdr[4] = FORMAT_V1;
        let sum = checksum(FORMAT_V1, &hdr[..52], &payload);
        hdr[52..84].copy_from_slice(&sum);
        let mut file = hdr.to_vec();
        file.extend_from_slice(&payload);
        assert_eq!(parse(&file, &meta()).unwrap(), payload);
        file[500] ^= 1;
        assert_eq!(parse(&file, &meta()), Err(ShardFormatError::Checksum));
    }

    #[test]
    fn round_trip_and_every_flipped_byte_is_caught() {
        let payload = vec![7u8; 500];
        let mut file = header(&meta(), &payload).to_vec();
        file.extend_from_slice(&payload);
        assert_eq!(parse(&file, &meta()).unwrap(), payload);
        for i in (0..HEADER_LEN).chain((HEADER_LEN..file.len()).step_by(13)) {
            let mut bad = file.clone();
            bad[i] ^= 1;
            assert!(parse(&bad, &meta()).is_err(), "flip at {i}");
        }
        let mut other = meta();
        other.index = 0;
        assert_eq!(
            parse(&file, &other),
            Err(ShardFormatError::Mismatch("shard index"))
        );
        assert_eq!(
            parse(&file[..50], &meta()),
            Err(ShardFormatError::Truncated)
        );
        assert_eq!(
            parse(&file[..file.len() - 1], &meta()),
            Err(ShardFormatError::Truncated)
        );
    }
}
