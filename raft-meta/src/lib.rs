//! strata metadata: the replicated state machine (users, sessions, devices,
//! the file tree with stable ids, versions, block reference counts, the
//! per-user change journal, upload sessions) and openraft's storage: the
//! log in a write-ahead log of segment files, the state machine on fjall
//! (an LSM tree; a drive written by older builds on sled is migrated at
//! start).
//!
//! Depends only on `cluster-config`. Other crates use `MetaClient` (writes,
//! and reads with a named consistency) and never touch fjall or openraft.
//! Invariants: commands are deterministic (time and ids come in the
//! command); a command either applies whole or leaves no trace; nothing is
//! acknowledged before the log entry carrying it is flushed.

pub mod client;
pub mod error;
pub mod hashing;
pub mod keys;
pub mod kv;
pub mod network;
pub mod path;
pub mod reader;
pub mod records;
pub mod state_machine;
pub mod store;
pub mod table;
pub mod types;

pub use client::{MetaClient, MetaNode};
pub use error::MetaError;
pub use kv::Resolved;
pub use path::{DrivePath, PathError};
pub use reader::{BlockEntry, Listed, MetaReader};
pub use state_machine::normalize_username;
pub use types::{Command, CommandError, MemberNode, OnConflict, Output};
