//! strata configuration: the config file (`raw` as written, `validated` as
//! used), id newtypes, the clock seam, the cluster secret, and generation of
//! what a deployment needs on disk.
//!
//! This crate is the bottom of the dependency graph: it depends on no other
//! strata crate, and it does no I/O beyond reading and writing its own files.

pub mod clock;
pub mod error;
pub mod generate;
pub mod ids;
pub mod node_key;
pub mod raw;
pub mod secrets;
pub mod validated;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::ConfigError;
pub use ids::{BlockId, DeviceId, EntryId, NodeId, ShareId, UploadId, UserId};
pub use secrets::ClusterSecret;
pub use validated::{ApiConfig, ClusterConfig, Config, ErasureProfile, Limits, Peer, RepairConfig};
