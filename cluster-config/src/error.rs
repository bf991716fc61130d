//! Configuration errors: one variant per broken invariant, each naming the
//! key and carrying the offending values.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("`{key}` = {value:?}: {reason}")]
    InvalidValue {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("`node.id` must be a positive integer (0 is reserved)")]
    NodeIdZero,
    #[error("`erasure` = {data}+{parity}: {reason}")]
    ErasureProfile {
        data: u64,
        parity: u64,
        reason: &'static str,
    },
    #[error("`storage.shard_dirs` is empty: a node needs at least one shard directory")]
    NoShardDirs,
    #[error("`storage.shard_dirs` lists {path} twice")]
    DuplicateShardDir { path: PathBuf },
    #[error(
        "`storage.meta_dir` ({path}) is also a shard directory; keep metadata and shards apart"
    )]
    MetaDirIsShardDir { path: PathBuf },
    #[error("`{key}` is required unless `api.insecure_http = true`")]
    MissingTls { key: &'static str },
    #[error("{path} is readable by group or others (mode {mode:o}); run `chmod 600` on it")]
    SecretFileTooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: {reason}")]
    BadSecretFile { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    #[error("a cluster node needs both `[p2p]` and `[cluster]`; `[{missing}]` is missing")]
    ClusterIncomplete { missing: &'static str },
    #[error("`cluster.peers` lists {what} {value} twice")]
    DuplicatePeer { what: &'static str, value: String },
    #[error("`cluster.peers` does not list this node (id {id})")]
    NotAPeer { id: u64 },
    #[error("{path}: not a node key: {reason}")]
    BadNodeKey { path: PathBuf, reason: String },
    #[error("cluster generation: {0}")]
    Generate(String),
}
