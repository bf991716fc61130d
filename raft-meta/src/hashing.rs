//! A BLAKE3 hasher whose state can be saved between requests.
//!
//! A resumable upload may receive its bytes over many requests, through
//! different nodes, days apart. Its whole-content hash must still be the
//! plain BLAKE3 of the file, without reading the file back at the end. BLAKE3
//! is a tree hash: we keep the chaining values of the completed, aligned,
//! power-of-two subtrees (at most one per bit of the length) plus at most one
//! BLAKE3 chunk (1 KiB) of unhashed bytes, and merge them at the end.
//!
//! Invariant: the last byte of the file is never folded into a subtree
//! before `finalize`, so no subtree ever spans the whole input and every
//! chaining value computed before the end is correctly a non-root one.

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use serde::{Deserialize, Serialize};

const CHUNK: u64 = blake3::CHUNK_LEN as u64;

/// The saved state: subtree chaining values with their byte lengths, the
/// offset they reach, and the pending bytes after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TreeHashState {
    stack: Vec<([u8; 32], u64)>,
    hashed: u64,
    pending: Vec<u8>,
}

/// Why a saved state cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeHashError {
    #[error("saved hash state is inconsistent")]
    Inconsistent,
    #[error("more bytes than the declared length")]
    TooLong,
}

/// Hashes a stream of known total length in pieces.
#[derive(Debug, Clone)]
pub struct TreeHasher {
    total: u64,
    state: TreeHashState,
}

impl TreeHasher {
    pub fn new(total: u64) -> Self {
        Self {
            total,
            state: TreeHashState::default(),
        }
    }

    /// Continues from a saved state; checks that it is self-consistent.
    pub fn resume(total: u64, state: TreeHashState) -> Result<Self, TreeHashError> {
        let covered: u64 = state.stack.iter().map(|(_, n)| n).sum();
        if covered != state.hashed
            || !state.hashed.is_multiple_of(CHUNK)
            || state.pending.len() as u64 > CHUNK
            || state.hashed + state.pending.len() as u64 > total
        {
            return Err(TreeHashError::Inconsistent);
        }
        Ok(Self { total, state })
    }

    /// Bytes seen so far.
    pub fn position(&self) -> u64 {
        self.state.hashed + self.state.pending.len() as u64
    }

    pub fn state(&self) -> &TreeHashState {
        &self.state
    }

    pub fn update(&mut self, mut data: &[u8]) -> Result<(), TreeHashError> {
        if self.position() + data.len() as u64 > self.total {
            return Err(TreeHashError::TooLong);
        }
        // Complete a partly filled chunk first.
        if !self.state.pending.is_empty() {
            let need = (CHUNK as usize - self.state.pending.len()).min(data.len());
            self.state.pending.extend_from_slice(&data[..need]);
            data = &data[need..];
            if self.state.pending.len() as u64 == CHUNK && self.state.hashed + CHUNK < self.total {
                let chunk = std::mem::take(&mut self.state.pending);
                self.push_subtree(&chunk);
            }
            if !self.state.pending.is_empty() {
                // Either still partial, or it is the file's final chunk.
                self.state.pending.extend_from_slice(data);
                debug_assert!(self.state.pending.len() as u64 <= CHUNK);
                return Ok(());
            }
        }
        // Hash the largest aligned subtrees that end before the file's last byte.
        while !data.is_empty() {
            let start = self.state.hashed;
            let room_before_end = self.total - 1 - start; // bytes we may fold
            let full_chunks = (data.len() as u64).min(room_before_end) / CHUNK;
            if full_chunks == 0 {
                break;
            }
            let mut size = CHUNK << (63 - full_chunks.leading_zeros());
            if let Some(max) = blake3::hazmat::max_subtree_len(start) {
                size = size.min(max);
            }
            let (head, rest) = data.split_at(size as usize);
            self.push_subtree(head);
            data = rest;
        }
        self.state.pending.extend_from_slice(data);
        debug_assert!(self.state.pending.len() as u64 <= CHUNK);
        Ok(())
    }

    fn push_subtree(&mut self, bytes: &[u8]) {
        let mut h = blake3::Hasher::new();
        h.set_input_offset(self.state.hashed);
        h.update(bytes);
        let mut cv = h.finalize_non_root();
        let mut len = bytes.len() as u64;
        self.state.hashed += len;
        // Merge equal neighbours, like carrying in a binary counter.
        while let Some(&(left, left_len)) = self.state.stack.last() {
            if left_len != len {
                break;
            }
            self.state.stack.pop();
            cv = merge_subtrees_non_root(&left, &cv, Mode::Hash);
            len += left_len;
        }
        self.state.stack.push((cv, len));
    }

    /// The BLAKE3 hash of the whole input. Requires every byte.
    pub fn finalize(self) -> Result<blake3::Hash, TreeHashError> {
        if self.position() != self.total {
            return Err(TreeHashError::Inconsistent);
        }
        let TreeHashState {
            stack,
            hashed,
            pending,
        } = self.state;
        if stack.is_empty() {
            return Ok(blake3::hash(&pending));
        }
        let mut h = blake3::Hasher::new();
        h.set_input_offset(hashed);
        h.update(&pending);
        let mut right: ChainingValue = h.finalize_non_root();
        let mut rest = stack.into_iter().rev().peekable();
        while let Some((left, _)) = rest.next() {
            if rest.peek().is_none() {
                return Ok(merge_subtrees_root(&left, &right, Mode::Hash));
            }
            right = merge_subtrees_non_root(&left, &right, Mode::Hash);
        }
        Err(TreeHashError::Inconsistent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn matches_blake3_for_many_lengths_and_splits() {
        let lens = [
            0usize,
            1,
            1023,
            1024,
            1025,
            2048,
            2049,
            3072,
            4096,
            5000,
            8192,
            8193,
            65536,
            100_000,
            1 << 20,
            (1 << 20) + 7,
        ];
        for &len in &lens {
            let input = data(len);
            let want = blake3::hash(&input);
            for piece in [1usize, 7, 1000, 1024, 1500, 4096, 65536, usize::MAX] {
                let mut h = TreeHasher::new(len as u64);
                let mut state_trips = 0;
                for part in input.chunks(piece.min(len.max(1))) {
                    h.update(part).unwrap();
                    // Save and resume every time, as an upload session does.
                    let saved = h.state().clone();
                    h = TreeHasher::resume(len as u64, saved).unwrap();
                    state_trips += 1;
                }
                assert!(state_trips > 0 || len == 0);
                assert_eq!(h.finalize().unwrap(), want, "len {len} piece {piece}");
            }
        }
    }

    #[test]
    fn refuses_overflow_and_early_finalize() {
        let mut h = TreeHasher::new(10);
        assert_eq!(h.update(&[0; 11]), Err(TreeHashError::TooLong));
        h.update(&[0; 5]).unwrap();
        assert_eq!(h.clone().finalize(), Err(TreeHashError::Inconsistent));
        let bad = TreeHashState {
            stack: vec![([0; 32], 1024)],
            hashed: 0,
            pending: vec![],
        };
        assert!(TreeHasher::resume(5000, bad).is_err());
    }
}
