//! Helpers shared by the node's integration tests.

/// Incompressible bytes from a seed.
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

/// Node `i` (tests name nodes by small numbers).
#[allow(dead_code)]
pub fn node(i: u64) -> cluster_config::NodeId {
    cluster_config::NodeId::new(i).expect("test node ids start at 1")
}
