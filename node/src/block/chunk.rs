//! Content-defined chunking (FastCDC 2020) over a growing buffer.
//!
//! Boundaries depend only on content from the chunk start, so chunking a
//! stream in pieces gives the same chunks as chunking it whole, and an
//! insertion early in a file moves only the boundaries near it.

use fastcdc::v2020::FastCDC;

/// The parameters are the API's: a client chunking with them finds the
/// server's blocks (`tests/chunking.rs` pins that both cut alike).
pub use strata_api::chunking::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};

/// Lengths of the chunks at the front of `buf`. Unless `eof`, the last chunk
/// (which might grow with more data) is left out; with `eof` the chunks
/// cover all of `buf`.
pub fn cut(buf: &[u8], eof: bool) -> Vec<usize> {
    let mut out = Vec::new();
    if buf.is_empty() {
        return out;
    }
    let cdc = FastCDC::new(buf, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
    let mut start = 0;
    while start < buf.len() {
        let (_, end) = cdc.cut(start, buf.len() - start);
        // A cut that ends at the buffer end is final only at end of input or
        // when it is forced by the maximum size.
        if end == buf.len() && !eof && end - start < MAX_CHUNK {
            break;
        }
        out.push(end - start);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn whole_and_piecewise_chunking_agree() {
        let data = noise(20 << 20, 42);
        let whole = cut(&data, true);
        assert_eq!(whole.iter().sum::<usize>(), data.len());
        assert!(whole[..whole.len() - 1]
            .iter()
            .all(|&l| (MIN_CHUNK..=MAX_CHUNK).contains(&l)));
        let avg = data.len() / whole.len();
        assert!(
            (AVG_CHUNK / 2..AVG_CHUNK * 2).contains(&avg),
            "average {avg}"
        );
        // Feed in uneven pieces, as a network stream would.
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for piece in data.chunks(777_777) {
            buf.extend_from_slice(piece);
            let lens = cut(&buf, false);
            let used: usize = lens.iter().sum();
            out.extend(lens);
            buf.drain(..used);
        }
        out.extend(cut(&buf, true));
        assert_eq!(out, whole);
    }

    #[test]
    fn an_insertion_moves_few_boundaries() {
        let data = noise(16 << 20, 7);
        let mut edited = data.clone();
        edited.splice(1000..1000, noise(1024, 9));
        let bounds = |d: &[u8]| {
            let mut pos = 0;
            cut(d, true)
                .into_iter()
                .map(|l| {
                    pos += l;
                    pos
                })
                .collect::<Vec<_>>()
        };
        let a = bounds(&data);
        let b: Vec<usize> = bounds(&edited).into_iter().map(|p| p - 1024).collect();
        let shared = a.iter().filter(|p| b.contains(p)).count();
        assert!(
            shared + 2 >= a.len(),
            "{shared} of {} boundaries kept",
            a.len()
        );
    }

    #[test]
    fn small_and_empty_inputs() {
        assert!(cut(&[], true).is_empty());
        assert_eq!(cut(&[1, 2, 3], true), vec![3]);
        assert!(cut(&[1, 2, 3], false).is_empty());
        // Data with no natural boundary is cut at the maximum.
        let zeros = vec![0u8; MAX_CHUNK * 2 + 5];
        assert_eq!(cut(&zeros, false), vec![MAX_CHUNK, MAX_CHUNK]);
        assert_eq!(cut(&zeros, true), vec![MAX_CHUNK, MAX_CHUNK, 5]);
    }
}
