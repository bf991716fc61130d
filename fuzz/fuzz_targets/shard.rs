//! Shard files as read from a disk or a peer: never a panic, and a file
//! that verifies carries the metadata asked for.
#![no_main]

use cluster_config::BlockId;
use libfuzzer_sys::fuzz_target;
use strata_node::block::shard::{self, ShardMeta};

fuzz_target!(|data: &[u8]| {
    let meta = ShardMeta {
        block: BlockId([7; 32]),
        codec: 1,
        data: 2,
        parity: 1,
        index: 1,
        sealed_len: 1000,
    };
    let _ = shard::parse(data, &meta);
    let _ = shard::verify(data, &meta);
});
