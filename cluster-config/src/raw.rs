//! The configuration file exactly as written (stage one of two). Unknown keys
//! are rejected by serde so a typo never passes silently.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub node: RawNode,
    #[serde(default)]
    pub api: RawApi,
    pub storage: RawStorage,
    #[serde(default)]
    pub erasure: RawErasure,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub accounts: RawAccounts,
    pub secrets: RawSecrets,
    /// Present on a node of a multi-node cluster.
    pub p2p: Option<RawP2p>,
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub repair: RawRepair,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawP2p {
    /// libp2p multiaddr to listen on, e.g. "/ip4/10.0.0.5/tcp/7001".
    pub listen: String,
    /// This node's ed25519 key (protobuf encoding), readable only by its owner.
    pub key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Every node this node accepts as a peer.
    pub peers: Vec<RawPeer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub id: u64,
    pub peer_id: String,
    pub p2p_addr: String,
    pub api_url: String,
    pub zone: Option<String>,
    /// Member of the cluster's first layout (a spare node joins later with
    /// `strata admin add-node`).
    #[serde(default = "default_true")]
    pub initial: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepair {
    /// How long a node may be silent before its shards are rebuilt elsewhere.
    #[serde(default = "default_grace")]
    pub grace: RawDuration,
    /// Without a heartbeat for this long, a node counts as down.
    #[serde(default = "default_health_timeout")]
    pub health_timeout: RawDuration,
    /// Pause between repair scans of the block table.
    #[serde(default = "default_scan_interval")]
    pub scan_interval: RawDuration,
    /// Shard bytes the scrubber re-reads per second on this node.
    #[serde(default = "default_scrub_rate")]
    pub scrub_rate: RawSize,
    /// How often the scrubber starts re-reading every local shard.
    #[serde(default = "default_scrub_every")]
    pub scrub_every: RawDuration,
}

impl Default for RawRepair {
    fn default() -> Self {
        Self {
            grace: default_grace(),
            health_timeout: default_health_timeout(),
            scan_interval: default_scan_interval(),
            scrub_rate: default_scrub_rate(),
            scrub_every: default_scrub_every(),
        }
    }
}

fn default_grace() -> RawDuration {
    "10m".into()
}

fn default_health_timeout() -> RawDuration {
    "3s".into()
}

fn default_scan_interval() -> RawDuration {
    "5s".into()
}

fn default_scrub_rate() -> RawSize {
    RawSize::Text("32MiB".into())
}

fn default_scrub_every() -> RawDuration {
    "7d".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub id: u64,
    pub name: Option<String>,
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    #[serde(default = "default_listen")]
    pub listen: String,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    #[serde(default)]
    pub insecure_http: bool,
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Connections one client address may hold at once.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: u64,
    /// A new connection must send its first byte, and finish its TLS
    /// handshake, within this.
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte_timeout: RawDuration,
    /// A connection with no request in flight and no bytes moving for this
    /// long is closed (HTTP/1.1 keep-alive and HTTP/2 alike).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: RawDuration,
    /// A connection older than this is asked to close once its requests
    /// finish (clients reconnect; no one holds a slot forever).
    #[serde(default = "default_max_connection_age")]
    pub max_connection_age: RawDuration,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            first_byte_timeout: default_first_byte_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connection_age: default_max_connection_age(),
        }
    }
}

fn default_max_connections_per_address() -> u64 {
    128
}

fn default_first_byte_timeout() -> RawDuration {
    "10s".into()
}

fn default_idle_timeout() -> RawDuration {
    "120s".into()
}

fn default_max_connection_age() -> RawDuration {
    "1h".into()
}

fn default_listen() -> String {
    "127.0.0.1:8443".to_string()
}

fn default_max_connections() -> u64 {
    1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub meta_dir: String,
    pub shard_dirs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErasure {
    #[serde(default = "default_data")]
    pub data_shards: u64,
    #[serde(default = "default_parity")]
    pub parity_shards: u64,
    /// Shards, on distinct disks, that must be durable before a block is
    /// acknowledged: at least K+1 when there is parity (the default), at
    /// most K+M.
    pub min_write_shards: Option<u64>,
}

impl Default for RawErasure {
    fn default() -> Self {
        Self {
            data_shards: default_data(),
            parity_shards: default_parity(),
            min_write_shards: None,
        }
    }
}

fn default_data() -> u64 {
    2
}

fn default_parity() -> u64 {
    1
}

/// A byte size as an integer or a string with a unit ("10GiB", "512 KiB").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

/// A duration as a string with a unit ("30s", "7d", "250ms").
pub type RawDuration = String;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "default_max_file")]
    pub max_file_size: RawSize,
    #[serde(default = "default_quota")]
    pub default_quota: RawSize,
    #[serde(default = "default_upload_ttl")]
    pub upload_session_ttl: RawDuration,
    #[serde(default = "default_inflight")]
    pub max_inflight_uploads: u64,
    #[serde(default = "default_json_body")]
    pub max_json_body: RawSize,
    #[serde(default = "default_request_timeout")]
    pub idle_request_timeout: RawDuration,
    /// Upload slots (of `max_inflight_uploads`) one account may hold at
    /// once; default a quarter of them.
    pub max_uploads_per_user: Option<u64>,
    /// A request body must average at least this many bytes per second
    /// (measured after `upload_rate_grace`), or it is cut off.
    #[serde(default = "default_min_upload_rate")]
    pub min_upload_rate: RawSize,
    #[serde(default = "default_upload_rate_grace")]
    pub upload_rate_grace: RawDuration,
    /// Resumable upload sessions one account may have open.
    #[serde(default = "default_open_uploads")]
    pub max_open_uploads_per_user: u64,
    /// Longest `Upload-Metadata` header kept with an upload session.
    #[serde(default = "default_upload_metadata")]
    pub max_upload_metadata: RawSize,
    /// Accounts one client address may create per hour.
    #[serde(default = "default_signups_per_hour")]
    pub signups_per_address_per_hour: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_file_size: default_max_file(),
            default_quota: default_quota(),
            upload_session_ttl: default_upload_ttl(),
            max_inflight_uploads: default_inflight(),
            max_json_body: default_json_body(),
            idle_request_timeout: default_request_timeout(),
            max_uploads_per_user: None,
            min_upload_rate: default_min_upload_rate(),
            upload_rate_grace: default_upload_rate_grace(),
            max_open_uploads_per_user: default_open_uploads(),
            max_upload_metadata: default_upload_metadata(),
            signups_per_address_per_hour: default_signups_per_hour(),
        }
    }
}

fn default_min_upload_rate() -> RawSize {
    RawSize::Text("1KiB".into())
}

fn default_upload_rate_grace() -> RawDuration {
    "30s".into()
}

fn default_open_uploads() -> u64 {
    100
}

fn default_upload_metadata() -> RawSize {
    RawSize::Text("4KiB".into())
}

fn default_signups_per_hour() -> u64 {
    20
}

fn default_max_file() -> RawSize {
    RawSize::Text("10GiB".into())
}

fn default_quota() -> RawSize {
    RawSize::Text("10GiB".into())
}

fn default_upload_ttl() -> RawDuration {
    "7d".into()
}

fn default_inflight() -> u64 {
    64
}

fn default_json_body() -> RawSize {
    RawSize::Text("1MiB".into())
}

fn default_request_timeout() -> RawDuration {
    "120s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccounts {
    #[serde(default = "default_true")]
    pub open_signup: bool,
    #[serde(default = "default_token_ttl")]
    pub token_ttl: RawDuration,
    /// No longer used: admin rights never come from a user name. Accepted
    /// so that configs written by earlier versions still load; a node that
    /// finds it non-empty says it is ignored.
    #[serde(default)]
    pub admins: Vec<String>,
}

impl Default for RawAccounts {
    fn default() -> Self {
        Self {
            open_signup: true,
            token_ttl: default_token_ttl(),
            admins: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_token_ttl() -> RawDuration {
    "30d".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub cluster_secret_file: String,
    /// If set, the password of the `admin` account the cluster creates
    /// when it starts for the first time.
    pub admin_password_file: Option<String>,
    /// If set, a token that lets a metrics scraper read `/metrics` and the
    /// details of `/readyz` (`Authorization: Bearer <token>`).
    pub metrics_token_file: Option<String>,
}
