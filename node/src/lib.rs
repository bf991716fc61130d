//! A strata node, without any front end: `server::Node` starts and stops
//! it (disks, the peer network, Raft, repair and scrub, health, the
//! leader's duties, the upload sweeper, the notification hub) and hands
//! front ends what they serve from. The HTTP gateway, and later WebDAV or
//! an S3 API, are given a running `Node`; nothing here knows HTTP.
//!
//! What the node writes:
//! - shards on its data disks (`block::store`): records in append-only
//!   pack files (and a marker file per disk), each a checksummed header
//!   and one Reed-Solomon shard of a sealed block (snap, then AES-256-GCM
//!   under a per-block key; `block::codec`), on disk (`fdatasync`, group
//!   commit) before a block is acknowledged; removals are tombstones and
//!   punched holes;
//! - metadata only through Raft (`raft_meta::MetaClient`): the leader's
//!   duties (bootstrap, layout, membership), repair's placement updates,
//!   upload sweeps; the Raft log and state live in `raft-meta`;
//! - its peer identity and TLS material are read, never written, at start.
//!
//! Invariants: a block is acknowledged only with K+1 or more shards on
//! distinct disks; every shard read is checksummed, every decoded block is
//! authenticated and its id re-derived from the plaintext; a shard that
//! crossed the network is verified again; reads never wait long on one
//! silent peer (`blocks::BlockStore::fetch_shards`).
//!
//! Depends on `cluster-config`, `raft-meta` and `api-types` (the chunking
//! parameters) only.

pub mod accounts;
pub mod block;
pub mod blocks;
pub mod cluster;
pub mod drive;
pub mod health;
pub mod ingest;
pub mod keys;
pub mod membership;
pub mod net;
pub mod notify;
pub mod offload;
pub mod passwords;
pub mod placement;
pub mod read;
pub mod repair;
pub mod server;
#[cfg(test)]
mod test_util;
pub mod verify;

pub use blocks::{BlockError, BlockStore};
pub use ingest::{Ingest, Ingested, Partial, WholeHash};
pub use keys::KeyRing;
pub use offload::Offload;
pub use server::{Network, Node, NodeError, Seams};
