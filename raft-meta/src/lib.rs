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

// What other crates use: `MetaClient` and `MetaNode`, the readers, the
// commands and their types, the records, paths, hashing of uploads, and
// the byte-level Raft transport. The state machine, its tables and keys,
// and openraft's storage stay inside.
pub mod hashing;
pub mod network;
pub mod path;
pub mod records;
pub mod types;

mod client;
mod error;
mod keys;
mod kv;
mod reader;
mod state_machine;
mod store;
mod table;

pub use client::{MetaClient, MetaNode, MetaOptions};
pub use error::MetaError;
pub use kv::Resolved;
pub use path::{DrivePath, PathError};
pub use reader::{BlockEntry, Listed, MetaReader, RefAudit, RefMismatch};
pub use state_machine::shares::SHARED_ROOT;
pub use state_machine::{normalize_username, MAX_ACCEPT_FROM, MAX_DEVICE_NAME_LEN};
pub use types::{Command, CommandError, MemberNode, OnConflict, Output};
