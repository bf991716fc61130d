//! strata storage node: the block pipeline (content-defined chunking, BLAKE3
//! keyed ids, snap, AES-256-GCM, Reed-Solomon), the shard store on
//! local disks, and streaming ingest and read.
//!
//! Depends on `cluster-config` and on `raft-meta` only for record types and
//! the read-only `MetaReader`; it never writes metadata. Invariants: a block
//! is acknowledged only after every shard file and directory entry is
//! fsynced; every shard read is checksummed and every decoded block is
//! authenticated and its id re-derived from the plaintext.

pub mod bench;
pub mod block;
pub mod blocks;
pub mod cluster;
pub mod health;
pub mod ingest;
pub mod keys;
pub mod membership;
pub mod net;
pub mod notify;
pub mod passwords;
pub mod placement;
pub mod read;
pub mod repair;
pub mod server;

pub use blocks::{BlockError, BlockStore};
pub use ingest::{Ingest, Ingested, Partial, WholeHash};
pub use keys::KeyRing;
pub use server::{Node, NodeError};
