//! Sealed blocks (framed, compressed, encrypted): opening any bytes never
//! panics, and nothing opens that was not sealed with the key.
#![no_main]

use std::sync::OnceLock;

use cluster_config::{BlockId, ClusterSecret, UserId};
use libfuzzer_sys::fuzz_target;
use strata_node::block::codec;
use strata_node::keys::{KeyRing, UserKeys};

fn keys() -> &'static UserKeys {
    static KEYS: OnceLock<UserKeys> = OnceLock::new();
    KEYS.get_or_init(|| KeyRing::new(ClusterSecret::from_bytes([7; 32])).user(&UserId([1; 16])))
}

fuzz_target!(|data: &[u8]| {
    let id = BlockId([3; 32]);
    let _ = codec::open(keys(), &id, data.to_vec());
});
