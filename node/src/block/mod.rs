//! The block layer: chunking, sealing, erasure coding, shard files.

pub mod chunk;
pub mod codec;
pub mod erasure;
pub mod shard;
pub mod store;
