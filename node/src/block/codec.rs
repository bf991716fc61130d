//! Sealing a chunk: snap compression where it pays, then AES-256-GCM under
//! a key of the owner's, in a self-describing frame.
//!
//! Frame (all integers little-endian):
//! ```text
//! 0..4   magic "SBLK"
//! 4      format version (4; 1, 2 and 3 are still read)
//! 5      flags (bit 0: snap-compressed)
//! 6      key version
//! 7      reserved (0)
//! 8..12  plaintext length
//! 12..24 nonce (version 4 only)
//! ..     ciphertext, then the 16-byte authentication tag
//! ```
//! Version 4 encrypts with AES-256-GCM (ring's assembly, AES-NI/VAES and
//! carry-less multiply where the CPU has them, constant-time otherwise)
//! under a key of its own per block, derived from the owner's encryption
//! key and the block id with keyed BLAKE3. Such a key seals one content
//! only, but that content has more than one possible body: plain, or
//! compressed by whichever snap version the sealing node runs. The nonce
//! is therefore derived from the body itself (a synthetic nonce): zeros
//! for the plain body (which the block id fixes), and for a compressed one
//! its flags byte then 11 bytes of keyed BLAKE3 of the body. Two different
//! bodies never share a nonce under one key, whatever mix of versions
//! seals them; the same body always seals to the same bytes. The nonce
//! travels in the frame. Version 3 was the same cipher with the nonce
//! fixed by the flags byte (sound only while every node's snap compresses
//! alike); version 2 used ChaCha20-Poly1305 (RFC 8439); version 1
//! XChaCha20-Poly1305 under the owner's key with a nonce derived from the
//! block id. On CPUs with AES instructions AES-256-GCM costs about a third
//! of what ChaCha20-Poly1305 does per byte (see BENCHMARKS.md).
//! The header and the block id are the AEAD's associated data, so a frame
//! moved to another block id, or with a flipped flag, fails to open. The
//! same (user, content) always seals to the same bytes, which keeps shard
//! writes idempotent and reveals nothing beyond what the keyed block id
//! already does.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use cluster_config::BlockId;
use ring::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

use super::chunk::MAX_CHUNK;
use crate::keys::{UserKeys, KEY_VERSION};

pub const MAGIC: &[u8; 4] = b"SBLK";
pub const FORMAT_V1: u8 = 1;
pub const FORMAT_V2: u8 = 2;
pub const FORMAT_V3: u8 = 3;
pub const FORMAT_V4: u8 = 4;
pub const HEADER_LEN: usize = 12;
/// The nonce a version 4 frame carries after its header.
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
const FLAG_SNAPPY: u8 = 1;
/// Largest plaintext a frame may claim; bounds decompression.
pub const MAX_PLAIN: usize = 2 * MAX_CHUNK;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("block frame is malformed: {0}")]
    Malformed(&'static str),
    #[error("block frame uses unknown format version {0}")]
    UnknownVersion(u8),
    #[error("block is sealed with key version {0}, which this node does not have")]
    UnknownKey(u8),
    #[error("block failed authentication (corrupt or not this user's)")]
    Authentication,
    #[error("block content does not match its id")]
    HashMismatch,
    #[error("block too large: {0} bytes")]
    TooLarge(usize),
}

fn nonce(keys: &UserKeys, id: &BlockId) -> XNonce {
    let mut h = blake3::Hasher::new_keyed(keys.encryption_key());
    h.update(b"strata block nonce v1");
    h.update(id.as_bytes());
    let mut n = [0u8; 24];
    n.copy_from_slice(&h.finalize().as_bytes()[..24]);
    XNonce::from(n)
}

fn aad(header: &[u8], id: &BlockId) -> [u8; HEADER_LEN + 32] {
    let mut a = [0u8; HEADER_LEN + 32];
    a[..HEADER_LEN].copy_from_slice(header);
    a[HEADER_LEN..].copy_from_slice(id.as_bytes());
    a
}

fn cipher(keys: &UserKeys) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(keys.encryption_key().into())
}

/// The key of one block for a version 2 (ChaCha20-Poly1305) or version 3
/// (AES-256-GCM) frame; the versions derive different keys.
fn block_key(keys: &UserKeys, id: &BlockId, version: u8) -> Result<LessSafeKey, CodecError> {
    let (context, algorithm): (&[u8], &'static Algorithm) = match version {
        FORMAT_V2 => (b"strata block key v2", &CHACHA20_POLY1305),
        FORMAT_V3 => (b"strata block key v3 aes-256-gcm", &AES_256_GCM),
        FORMAT_V4 => (b"strata block key v4 aes-256-gcm siv", &AES_256_GCM),
        v => return Err(CodecError::UnknownVersion(v)),
    };
    let mut h = blake3::Hasher::new_keyed(keys.encryption_key());
    h.update(context);
    h.update(id.as_bytes());
    let k = UnboundKey::new(algorithm, h.finalize().as_bytes())
        .map_err(|_| CodecError::Malformed("block key"))?;
    Ok(LessSafeKey::new(k))
}

/// The nonce of a version 3 frame: its flags byte, then zeros.
fn v3_nonce(flags: u8) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = flags;
    Nonce::assume_unique_for_key(n)
}

/// The nonce of a version 4 frame, from its body: zeros for the plain body
/// (the block id fixes it), else the flags byte then keyed BLAKE3 of the
/// body, so different bodies of one block never share a nonce.
fn v4_nonce(keys: &UserKeys, id: &BlockId, flags: u8, body: &[u8]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    if flags == 0 {
        return n;
    }
    let mut h = blake3::Hasher::new_keyed(keys.encryption_key());
    h.update(b"strata block nonce v4");
    h.update(id.as_bytes());
    h.update(body);
    n[0] = flags;
    n[1..].copy_from_slice(&h.finalize().as_bytes()[..NONCE_LEN - 1]);
    n
}

/// Bytes sampled to judge whether a chunk compresses.
const SAMPLE: usize = 64 * 1024;

/// Whether snap saves at least an eighth on a sample from the start and
/// one from the middle: incompressible chunks skip the full pass.
fn compresses(plain: &[u8], scratch: &mut Vec<u8>) -> bool {
    if plain.len() <= 2 * SAMPLE {
        return true;
    }
    let mid = plain.len() / 2;
    [&plain[..SAMPLE], &plain[mid..mid + SAMPLE]].iter().any(|s| {
        scratch.resize(snap::raw::max_compress_len(s.len()), 0);
        matches!(snap::raw::Encoder::new().compress(s, scratch), Ok(n) if n <= s.len() - s.len() / 8)
    })
}

/// Compresses (if asked and if it saves an eighth) and encrypts a chunk.
///
/// The block store always asks: whether a body is compressed then depends on the
/// content alone, so one (user, content) seals to the same bytes through
/// any gateway and any upload path, and concurrent stores of one block
/// write the same shards. `try_compress: false` is for measurements and
/// tests; the block store always passes true.
pub fn seal(
    keys: &UserKeys,
    id: &BlockId,
    plain: &[u8],
    try_compress: bool,
) -> Result<Vec<u8>, CodecError> {
    if plain.len() > MAX_PLAIN {
        return Err(CodecError::TooLarge(plain.len()));
    }
    let mut scratch = Vec::new();
    if try_compress && plain.len() >= 64 && compresses(plain, &mut scratch) {
        scratch.resize(snap::raw::max_compress_len(plain.len()), 0);
        if let Ok(n) = snap::raw::Encoder::new().compress(plain, &mut scratch) {
            if n <= plain.len() - plain.len() / 8 {
                return seal_body(keys, id, plain.len(), FLAG_SNAPPY, &scratch[..n]);
            }
        }
    }
    seal_body(keys, id, plain.len(), 0, plain)
}

/// A version 4 frame of `body` (the plaintext, or its snap compression
/// with `FLAG_SNAPPY`) for `plain_len` bytes of content.
fn seal_body(
    keys: &UserKeys,
    id: &BlockId,
    plain_len: usize,
    flags: u8,
    body: &[u8],
) -> Result<Vec<u8>, CodecError> {
    let nonce = v4_nonce(keys, id, flags, body);
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + body.len() + TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[FORMAT_V4, flags, KEY_VERSION, 0]);
    out.extend_from_slice(&(plain_len as u32).to_le_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(body);
    let (header, rest) = out.split_at_mut(HEADER_LEN);
    let tag = block_key(keys, id, FORMAT_V4)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(header, id)),
            &mut rest[NONCE_LEN..],
        )
        .map_err(|_| CodecError::Malformed("encryption failed"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Authenticates, decrypts, decompresses and checks the content against `id`.
pub fn open(keys: &UserKeys, id: &BlockId, mut sealed: Vec<u8>) -> Result<Vec<u8>, CodecError> {
    if sealed.len() < HEADER_LEN + TAG_LEN {
        return Err(CodecError::Malformed("shorter than header and tag"));
    }
    if &sealed[..4] != MAGIC {
        return Err(CodecError::Malformed("bad magic"));
    }
    let version = sealed[4];
    if !matches!(version, FORMAT_V1 | FORMAT_V2 | FORMAT_V3 | FORMAT_V4) {
        return Err(CodecError::UnknownVersion(version));
    }
    let body_at = if version == FORMAT_V4 {
        HEADER_LEN + NONCE_LEN
    } else {
        HEADER_LEN
    };
    if sealed.len() < body_at + TAG_LEN {
        return Err(CodecError::Malformed("shorter than header, nonce and tag"));
    }
    if sealed[6] != KEY_VERSION {
        return Err(CodecError::UnknownKey(sealed[6]));
    }
    let flags = sealed[5];
    let plain_len = u32::from_le_bytes([sealed[8], sealed[9], sealed[10], sealed[11]]) as usize;
    if plain_len > MAX_PLAIN {
        return Err(CodecError::TooLarge(plain_len));
    }
    let tag_at = sealed.len() - TAG_LEN;
    if version == FORMAT_V1 {
        let tag = Tag::try_from(&sealed[tag_at..]).map_err(|_| CodecError::Malformed("tag"))?;
        let (header, rest) = sealed.split_at_mut(HEADER_LEN);
        let body = &mut rest[..tag_at - HEADER_LEN];
        cipher(keys)
            .decrypt_inout_detached(&nonce(keys, id), &aad(header, id), body.into(), &tag)
            .map_err(|_| CodecError::Authentication)?;
    } else {
        let (header, rest) = sealed.split_at_mut(HEADER_LEN);
        let (nonce, rest) = match version {
            FORMAT_V4 => {
                let (n, rest) = rest.split_at_mut(NONCE_LEN);
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(n);
                (Nonce::assume_unique_for_key(nonce), rest)
            }
            FORMAT_V3 => (v3_nonce(flags), rest),
            _ => (Nonce::assume_unique_for_key([0; 12]), rest),
        };
        block_key(keys, id, version)?
            .open_in_place(nonce, Aad::from(aad(header, id)), rest)
            .map_err(|_| CodecError::Authentication)?;
    }
    let body = &sealed[body_at..tag_at];
    let plain = if flags & FLAG_SNAPPY != 0 {
        let n =
            snap::raw::decompress_len(body).map_err(|_| CodecError::Malformed("snappy length"))?;
        if n != plain_len {
            return Err(CodecError::Malformed("snappy length differs from header"));
        }
        snap::raw::Decoder::new()
            .decompress_vec(body)
            .map_err(|_| CodecError::Malformed("snappy body"))?
    } else {
        if body.len() != plain_len {
            return Err(CodecError::Malformed("length differs from header"));
        }
        sealed.truncate(tag_at);
        sealed.drain(..body_at);
        sealed
    };
    if keys.block_id(&plain) != *id {
        return Err(CodecError::HashMismatch);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRing;
    use cluster_config::{ClusterSecret, UserId};

    fn keys(u: u8) -> UserKeys {
        KeyRing::new(ClusterSecret::from_bytes([1; 32])).user(&UserId([u; 16]))
    }

    #[test]
    fn round_trip_compressible_and_not() {
        let k = keys(1);
        let text = b"the quick brown fox jumps over the lazy dog. ".repeat(5000);
        let noise = crate::test_util::noise(100_000, 1);
        for (data, compress, expect_small) in [
            (&text[..], true, true),
            (&text[..], false, false),
            (&noise[..], true, false),
            (&[][..], true, false),
        ] {
            let id = k.block_id(data);
            let sealed = seal(&k, &id, data, compress).unwrap();
            assert_eq!(sealed[5] & FLAG_SNAPPY != 0, expect_small);
            if expect_small {
                assert!(sealed.len() < data.len() / 4);
            }
            assert_eq!(open(&k, &id, sealed.clone()).unwrap(), data);
            // Deterministic: same input, same bytes.
            assert_eq!(seal(&k, &id, data, compress).unwrap(), sealed);
        }
    }

    #[test]
    fn tampering_and_wrong_keys_are_detected() {
        let k = keys(1);
        let data = b"hello world".repeat(100);
        let id = k.block_id(&data);
        let sealed = seal(&k, &id, &data, true).unwrap();
        for i in [0, 4, 5, 6, 9, 12, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert!(open(&k, &id, bad).is_err(), "flip at {i} went unnoticed");
        }
        assert_eq!(
            open(&keys(2), &id, sealed.clone()),
            Err(CodecError::Authentication)
        );
        let other = BlockId([9; 32]);
        assert_eq!(
            open(&k, &other, sealed.clone()),
            Err(CodecError::Authentication)
        );
        assert!(open(&k, &id, sealed[..10].to_vec()).is_err());
    }

    /// A header for `plain_len` bytes of content, then the unsealed `body`.
    fn frame(version: u8, flags: u8, plain_len: usize, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[version, flags, KEY_VERSION, 0]);
        out.extend_from_slice(&(plain_len as u32).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A frame as version 1 wrote it (XChaCha20-Poly1305, no compression).
    fn seal_v1(keys: &UserKeys, id: &BlockId, plain: &[u8]) -> Vec<u8> {
        let mut out = frame(FORMAT_V1, 0, plain.len(), plain);
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let tag = cipher(keys)
            .encrypt_inout_detached(&nonce(keys, id), &aad(header, id), body.into())
            .unwrap();
        out.extend_from_slice(tag.as_slice());
        out
    }

    #[test]
    fn version_one_frames_still_open() {
        let k = keys(3);
        let data = b"written by an earlier version".repeat(300);
        let id = k.block_id(&data);
        let old = seal_v1(&k, &id, &data);
        assert_eq!(open(&k, &id, old.clone()).unwrap(), data);
        let mut bad = old;
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert_eq!(open(&k, &id, bad), Err(CodecError::Authentication));
        // New frames are version 4, and differ per block key.
        let new = seal(&k, &id, &data, false).unwrap();
        assert_eq!(new[4], FORMAT_V4);
        let other = keys(4);
        let id2 = other.block_id(&data);
        assert_ne!(seal(&other, &id2, &data, false).unwrap()[12..], new[12..]);
    }

    /// A frame as version 2 wrote it: ChaCha20-Poly1305 under the block's
    /// version 2 key, the body compressed when `compress`.
    fn seal_v2(keys: &UserKeys, id: &BlockId, plain: &[u8], compress: bool) -> Vec<u8> {
        let body = if compress {
            snap::raw::Encoder::new().compress_vec(plain).unwrap()
        } else {
            plain.to_vec()
        };
        let mut out = frame(FORMAT_V2, u8::from(compress), plain.len(), &body);
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let tag = block_key(keys, id, FORMAT_V2)
            .unwrap()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(aad(header, id)),
                body,
            )
            .unwrap();
        out.extend_from_slice(tag.as_ref());
        out
    }

    #[test]
    fn version_two_frames_still_open_and_differ_from_version_three() {
        let k = keys(5);
        let text = b"sealed with ChaCha20-Poly1305 ".repeat(400);
        for compress in [false, true] {
            let id = k.block_id(&text);
            let old = seal_v2(&k, &id, &text, compress);
            assert_eq!(open(&k, &id, old.clone()).unwrap(), text);
            let new = seal(&k, &id, &text, compress).unwrap();
            assert_eq!(new.len(), old.len() + NONCE_LEN);
            assert_ne!(new[HEADER_LEN..], old[HEADER_LEN..]);
            // A version 2 body under a version 3 header (or the reverse)
            // fails to open: the version picks the cipher and the key.
            let mut relabelled = old.clone();
            relabelled[4] = FORMAT_V3;
            assert_eq!(open(&k, &id, relabelled), Err(CodecError::Authentication));
            let mut relabelled = new;
            relabelled[4] = FORMAT_V2;
            assert_eq!(open(&k, &id, relabelled), Err(CodecError::Authentication));
            let mut bad = old;
            let n = bad.len();
            bad[n - 1] ^= 1;
            assert_eq!(open(&k, &id, bad), Err(CodecError::Authentication));
        }
        let mut unknown = seal(&k, &k.block_id(b"x"), b"x", false).unwrap();
        unknown[4] = 5;
        assert_eq!(
            open(&k, &k.block_id(b"x"), unknown),
            Err(CodecError::UnknownVersion(5))
        );
    }

    #[test]
    fn compressed_and_plain_bodies_of_one_block_use_different_nonces() {
        // The same content sealed both ways, under the same block key: were
        // the nonce the same, the two ciphertexts XORed with their bodies
        // would give the same keystream.
        let k = keys(6);
        let text = b"one content, two bodies ".repeat(4000);
        let id = k.block_id(&text);
        let packed = seal(&k, &id, &text, true).unwrap();
        let plain = seal(&k, &id, &text, false).unwrap();
        assert_eq!(packed[5], FLAG_SNAPPY);
        assert_eq!(plain[5], 0);
        let body = snap::raw::Encoder::new().compress_vec(&text).unwrap();
        let n = body.len().min(64);
        let at = HEADER_LEN + NONCE_LEN;
        let stream = |sealed: &[u8], body: &[u8]| -> Vec<u8> {
            (0..n).map(|i| sealed[at + i] ^ body[i]).collect()
        };
        assert_ne!(stream(&packed, &body), stream(&plain, &text));
        assert_eq!(open(&k, &id, packed).unwrap(), text);
        assert_eq!(open(&k, &id, plain).unwrap(), text);
    }

    /// Another valid snappy encoding of `plain`: literals only, as a snap
    /// release that compresses differently could produce.
    fn literal_snappy(plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = plain.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        for piece in plain.chunks(60) {
            out.push(((piece.len() - 1) as u8) << 2);
            out.extend_from_slice(piece);
        }
        out
    }

    #[test]
    fn two_encodings_of_one_content_never_share_a_nonce() {
        // Two nodes whose snap compresses one content differently seal it
        // under the same block key: the nonces differ, both frames open.
        let k = keys(7);
        let text = b"mixed versions in one cluster ".repeat(2000);
        let id = k.block_id(&text);
        let ours = seal(&k, &id, &text, true).unwrap();
        let theirs_body = literal_snappy(&text);
        assert_eq!(
            snap::raw::Decoder::new()
                .decompress_vec(&theirs_body)
                .unwrap(),
            text
        );
        let theirs = seal_body(&k, &id, text.len(), FLAG_SNAPPY, &theirs_body).unwrap();
        let nonce = |f: &[u8]| f[HEADER_LEN..HEADER_LEN + NONCE_LEN].to_vec();
        assert_ne!(nonce(&ours), nonce(&theirs));
        assert_ne!(nonce(&ours), nonce(&seal(&k, &id, &text, false).unwrap()));
        assert_eq!(open(&k, &id, ours.clone()).unwrap(), text);
        assert_eq!(open(&k, &id, theirs).unwrap(), text);
        // The nonce is authenticated: changed, the frame fails to open.
        let mut bad = ours;
        bad[HEADER_LEN + 3] ^= 1;
        assert_eq!(open(&k, &id, bad), Err(CodecError::Authentication));
    }

    /// A frame as version 3 wrote it: AES-256-GCM under the version 3 key,
    /// the nonce the flags byte.
    #[test]
    fn version_three_frames_still_open() {
        let k = keys(8);
        let text = b"sealed by version three ".repeat(500);
        let id = k.block_id(&text);
        for compress in [false, true] {
            let body = if compress {
                snap::raw::Encoder::new().compress_vec(&text).unwrap()
            } else {
                text.clone()
            };
            let flags = u8::from(compress);
            let mut out = frame(FORMAT_V3, flags, text.len(), &body);
            let (header, body) = out.split_at_mut(HEADER_LEN);
            let tag = block_key(&k, &id, FORMAT_V3)
                .unwrap()
                .seal_in_place_separate_tag(v3_nonce(flags), Aad::from(aad(header, &id)), body)
                .unwrap();
            out.extend_from_slice(tag.as_ref());
            assert_eq!(open(&k, &id, out).unwrap(), text);
        }
    }

    /// The content of a block must seal to the same bytes on every node
    /// of one version, so concurrent stores write the same shards: snap's
    /// output is pinned here. A release that compresses differently fails
    /// this test (its frames still open, with their own nonces).
    #[test]
    fn snap_output_is_pinned() {
        let mut text = Vec::new();
        for i in 0u32..20_000 {
            text.extend_from_slice(format!("line {i} of a pinned text, {}\n", i % 97).as_bytes());
        }
        let body = snap::raw::Encoder::new().compress_vec(&text).unwrap();
        assert_eq!(
            blake3::hash(&body).to_hex().as_str(),
            PINNED_SNAP_OUTPUT,
            "snap's output changed"
        );
    }

    const PINNED_SNAP_OUTPUT: &str =
        "aca53a09a620361e9285e7385963b30dae4f234ff9640b966aa017832735e842";

    #[test]
    fn a_chunk_compressible_only_in_the_middle_is_compressed() {
        let k = keys(1);
        let mut data = crate::test_util::noise(600_000, 7);
        for b in &mut data[200_000..500_000] {
            *b = b'a';
        }
        let id = k.block_id(&data);
        let sealed = seal(&k, &id, &data, true).unwrap();
        assert!(sealed[5] & FLAG_SNAPPY != 0);
        assert!(sealed.len() < data.len() * 3 / 4);
        assert_eq!(open(&k, &id, sealed).unwrap(), data);
    }
}
