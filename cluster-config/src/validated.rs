//! Stage two: the typed, validated configuration every other crate reads.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;
use crate::ids::NodeId;
use crate::raw::{RawConfig, RawSize};

/// The hard ceiling on a file, from the product brief.
pub const MAX_FILE_SIZE_CEILING: u64 = 10 * 1024 * 1024 * 1024;
/// The largest erasure profile the shard format can describe.
pub const MAX_SHARDS: u64 = 32;

#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: NodeId,
    pub node_name: String,
    pub api: ApiConfig,
    pub storage: StorageConfig,
    pub erasure: ErasureProfile,
    pub limits: Limits,
    pub accounts: AccountsConfig,
    pub cluster_secret_file: PathBuf,
    pub admin_password_file: Option<PathBuf>,
    pub metrics_token_file: Option<PathBuf>,
    /// Shards on distinct disks a block needs before it is acknowledged
    /// (`None`: K+1 of the profile in force).
    pub min_write_shards: Option<u8>,
    pub zone: Option<String>,
    /// `None` on a single-node drive.
    pub cluster: Option<ClusterConfig>,
    pub repair: RepairConfig,
}

/// How this node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub p2p_listen: String,
    pub key_file: PathBuf,
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: NodeId,
    pub peer_id: libp2p_identity::PeerId,
    pub p2p_addr: String,
    pub api_url: String,
    pub zone: Option<String>,
    pub initial: bool,
}

impl ClusterConfig {
    pub fn peer(&self, id: NodeId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }
}

#[derive(Debug, Clone)]
pub struct RepairConfig {
    pub grace: Duration,
    pub health_timeout: Duration,
    pub scan_interval: Duration,
    pub scrub_bytes_per_s: u64,
    /// Between the starts of two full re-reads of the local shards.
    pub scrub_every: Duration,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// `None` only when `insecure_http` is set.
    pub tls: Option<TlsFiles>,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connection_age: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub meta_dir: PathBuf,
    pub shard_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureProfile {
    pub data: u8,
    pub parity: u8,
}

impl ErasureProfile {
    pub fn total(&self) -> usize {
        self.data as usize + self.parity as usize
    }

    pub fn validate(data: u64, parity: u64) -> Result<Self, ConfigError> {
        let err = |reason| ConfigError::ErasureProfile {
            data,
            parity,
            reason,
        };
        if data == 0 {
            return Err(err("at least one data shard is needed"));
        }
        if parity == 0 {
            return Err(err(
                "at least one parity shard is needed, or a single lost shard loses data",
            ));
        }
        if data + parity > MAX_SHARDS {
            return Err(err("at most 32 shards in all"));
        }
        Ok(Self {
            data: data as u8,
            parity: parity as u8,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub default_quota_bytes: u64,
    pub upload_session_ttl: Duration,
    pub max_inflight_uploads: usize,
    pub max_json_body_bytes: u64,
    pub idle_request_timeout: Duration,
    pub max_uploads_per_user: usize,
    pub min_upload_bytes_per_s: u64,
    pub upload_rate_grace: Duration,
    pub max_open_uploads_per_user: usize,
    pub max_upload_metadata_bytes: usize,
    pub signups_per_address_per_hour: u32,
}

#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub open_signup: bool,
    pub token_ttl: Duration,
    /// Names found under the retired `accounts.admins` key (ignored; the
    /// node says so at start).
    pub ignored_admins: Vec<String>,
}

impl Config {
    /// Reads, parses and validates a config file. Relative paths in it are
    /// taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse_and_validate(&text, path, &base)
    }

    pub fn parse_and_validate(text: &str, origin: &Path, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::validate(raw, base)
    }

    pub fn validate(raw: RawConfig, base: &Path) -> Result<Self, ConfigError> {
        let node_id = NodeId::new(raw.node.id).ok_or(ConfigError::NodeIdZero)?;
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let listen: SocketAddr =
            raw.api
                .listen
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::InvalidValue {
                    key: "api.listen",
                    value: raw.api.listen.clone(),
                    reason: format!("not an IP address and port: {e}"),
                })?;
        let tls = if raw.api.insecure_http {
            None
        } else {
            let cert = raw.api.tls_cert.as_deref().ok_or(ConfigError::MissingTls {
                key: "api.tls_cert",
            })?;
            let key = raw
                .api
                .tls_key
                .as_deref()
                .ok_or(ConfigError::MissingTls { key: "api.tls_key" })?;
            Some(TlsFiles {
                cert: resolve(cert),
                key: resolve(key),
            })
        };
        if raw.api.max_connections == 0 || raw.api.max_connections > 1_000_000 {
            return Err(ConfigError::InvalidValue {
                key: "api.max_connections",
                value: raw.api.max_connections.to_string(),
                reason: "must be between 1 and 1000000".into(),
            });
        }

        if raw.storage.shard_dirs.is_empty() {
            return Err(ConfigError::NoShardDirs);
        }
        let meta_dir = resolve(&raw.storage.meta_dir);
        let mut seen = HashSet::new();
        let mut shard_dirs = Vec::new();
        for d in &raw.storage.shard_dirs {
            let p = resolve(d);
            if !seen.insert(p.clone()) {
                return Err(ConfigError::DuplicateShardDir { path: p });
            }
            if p == meta_dir {
                return Err(ConfigError::MetaDirIsShardDir { path: p });
            }
            shard_dirs.push(p);
        }

        let erasure = ErasureProfile::validate(raw.erasure.data_shards, raw.erasure.parity_shards)?;
        if raw.cluster.is_none() && raw.storage.shard_dirs.len() < erasure.total() {
            return Err(ConfigError::InvalidValue {
                key: "storage.shard_dirs",
                value: raw.storage.shard_dirs.len().to_string(),
                reason: format!(
                    "a single node keeps each of a block's {} shards on its own disk: list at \
                     least {} shard directories (one per disk)",
                    erasure.total(),
                    erasure.total()
                ),
            });
        }
        let min_write_shards = match raw.erasure.min_write_shards {
            None => None,
            Some(n) => {
                let (k, m) = (erasure.data as u64, erasure.parity as u64);
                if n < k + 1 || n > k + m {
                    return Err(ConfigError::InvalidValue {
                        key: "erasure.min_write_shards",
                        value: n.to_string(),
                        reason: format!(
                            "must be between K+1 = {} and K+M = {} (a block acknowledged with \
                             K shards has no spare)",
                            k + 1,
                            k + m
                        ),
                    });
                }
                Some(n as u8)
            }
        };

        let max_file_bytes = parse_size("limits.max_file_size", &raw.limits.max_file_size)?;
        if max_file_bytes == 0 || max_file_bytes > MAX_FILE_SIZE_CEILING {
            return Err(ConfigError::InvalidValue {
                key: "limits.max_file_size",
                value: max_file_bytes.to_string(),
                reason: "must be between 1 byte and 10 GiB".into(),
            });
        }
        let default_quota_bytes = parse_size("limits.default_quota", &raw.limits.default_quota)?;
        let upload_session_ttl =
            parse_duration("limits.upload_session_ttl", &raw.limits.upload_session_ttl)?;
        let idle_request_timeout = parse_duration(
            "limits.idle_request_timeout",
            &raw.limits.idle_request_timeout,
        )?;
        if raw.limits.max_inflight_uploads == 0 || raw.limits.max_inflight_uploads > 100_000 {
            return Err(ConfigError::InvalidValue {
                key: "limits.max_inflight_uploads",
                value: raw.limits.max_inflight_uploads.to_string(),
                reason: "must be between 1 and 100000".into(),
            });
        }
        let max_json_body_bytes = parse_size("limits.max_json_body", &raw.limits.max_json_body)?;
        if !(1024..=64 * 1024 * 1024).contains(&max_json_body_bytes) {
            return Err(ConfigError::InvalidValue {
                key: "limits.max_json_body",
                value: max_json_body_bytes.to_string(),
                reason: "must be between 1 KiB and 64 MiB".into(),
            });
        }

        let per_user = raw
            .limits
            .max_uploads_per_user
            .unwrap_or((raw.limits.max_inflight_uploads / 4).max(1));
        if per_user == 0 || per_user > raw.limits.max_inflight_uploads {
            return Err(ConfigError::InvalidValue {
                key: "limits.max_uploads_per_user",
                value: per_user.to_string(),
                reason: "must be between 1 and limits.max_inflight_uploads".into(),
            });
        }
        let min_upload_bytes_per_s =
            parse_size("limits.min_upload_rate", &raw.limits.min_upload_rate)?;
        let upload_rate_grace =
            parse_duration("limits.upload_rate_grace", &raw.limits.upload_rate_grace)?;
        let max_upload_metadata_bytes = parse_size(
            "limits.max_upload_metadata",
            &raw.limits.max_upload_metadata,
        )?;
        if !(64..=64 * 1024).contains(&max_upload_metadata_bytes) {
            return Err(ConfigError::InvalidValue {
                key: "limits.max_upload_metadata",
                value: max_upload_metadata_bytes.to_string(),
                reason: "must be between 64 bytes and 64 KiB".into(),
            });
        }
        if raw.limits.max_open_uploads_per_user == 0
            || raw.limits.max_open_uploads_per_user > 100_000
        {
            return Err(ConfigError::InvalidValue {
                key: "limits.max_open_uploads_per_user",
                value: raw.limits.max_open_uploads_per_user.to_string(),
                reason: "must be between 1 and 100000".into(),
            });
        }
        if raw.limits.signups_per_address_per_hour > 1_000_000 {
            return Err(ConfigError::InvalidValue {
                key: "limits.signups_per_address_per_hour",
                value: raw.limits.signups_per_address_per_hour.to_string(),
                reason: "must be at most 1000000".into(),
            });
        }
        if raw.api.max_connections_per_address == 0
            || raw.api.max_connections_per_address > raw.api.max_connections
        {
            return Err(ConfigError::InvalidValue {
                key: "api.max_connections_per_address",
                value: raw.api.max_connections_per_address.to_string(),
                reason: "must be between 1 and api.max_connections".into(),
            });
        }
        let first_byte_timeout =
            parse_duration("api.first_byte_timeout", &raw.api.first_byte_timeout)?;
        let idle_timeout = parse_duration("api.idle_timeout", &raw.api.idle_timeout)?;
        let max_connection_age =
            parse_duration("api.max_connection_age", &raw.api.max_connection_age)?;
        for (key, d) in [
            ("api.first_byte_timeout", first_byte_timeout),
            ("api.idle_timeout", idle_timeout),
            ("api.max_connection_age", max_connection_age),
        ] {
            if d.is_zero() {
                return Err(ConfigError::InvalidValue {
                    key,
                    value: "0".into(),
                    reason: "must be more than zero".into(),
                });
            }
        }

        let token_ttl = parse_duration("accounts.token_ttl", &raw.accounts.token_ttl)?;
        let repair = RepairConfig {
            grace: parse_duration("repair.grace", &raw.repair.grace)?,
            health_timeout: parse_duration("repair.health_timeout", &raw.repair.health_timeout)?,
            scan_interval: parse_duration("repair.scan_interval", &raw.repair.scan_interval)?,
            scrub_bytes_per_s: parse_size("repair.scrub_rate", &raw.repair.scrub_rate)?,
            scrub_every: parse_duration("repair.scrub_every", &raw.repair.scrub_every)?,
        };
        let cluster = match (raw.p2p, raw.cluster) {
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::ClusterIncomplete { missing: "cluster" }),
            (None, Some(_)) => return Err(ConfigError::ClusterIncomplete { missing: "p2p" }),
            (Some(p2p), Some(cluster)) => {
                Some(validate_cluster(node_id, p2p, cluster, erasure, &resolve)?)
            }
        };

        Ok(Config {
            node_id,
            node_name: raw
                .node
                .name
                .unwrap_or_else(|| format!("node-{}", raw.node.id)),
            api: ApiConfig {
                listen,
                tls,
                max_connections: raw.api.max_connections as usize,
                max_connections_per_address: raw.api.max_connections_per_address as usize,
                first_byte_timeout,
                idle_timeout,
                max_connection_age,
            },
            storage: StorageConfig {
                meta_dir,
                shard_dirs,
            },
            erasure,
            limits: Limits {
                max_file_bytes,
                default_quota_bytes,
                upload_session_ttl,
                max_inflight_uploads: raw.limits.max_inflight_uploads as usize,
                max_json_body_bytes,
                idle_request_timeout,
                max_uploads_per_user: per_user as usize,
                min_upload_bytes_per_s,
                upload_rate_grace,
                max_open_uploads_per_user: raw.limits.max_open_uploads_per_user as usize,
                max_upload_metadata_bytes: max_upload_metadata_bytes as usize,
                signups_per_address_per_hour: raw.limits.signups_per_address_per_hour as u32,
            },
            accounts: crate::validated::AccountsConfig {
                open_signup: raw.accounts.open_signup,
                token_ttl,
                ignored_admins: raw.accounts.admins,
            },
            cluster_secret_file: resolve(&raw.secrets.cluster_secret_file),
            admin_password_file: raw.secrets.admin_password_file.as_deref().map(resolve),
            metrics_token_file: raw.secrets.metrics_token_file.as_deref().map(resolve),
            min_write_shards,
            zone: raw.node.zone,
            cluster,
            repair,
        })
    }
}

fn validate_cluster(
    me: NodeId,
    p2p: crate::raw::RawP2p,
    cluster: crate::raw::RawCluster,
    erasure: ErasureProfile,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<ClusterConfig, ConfigError> {
    let check_addr = |key: &'static str, a: &str| {
        let ok = (a.starts_with("/ip4/") || a.starts_with("/ip6/") || a.starts_with("/dns"))
            && a.contains("/tcp/");
        if ok {
            Ok(())
        } else {
            Err(ConfigError::InvalidValue {
                key,
                value: a.to_string(),
                reason: "expected a TCP multiaddr such as /ip4/10.0.0.5/tcp/7001".into(),
            })
        }
    };
    check_addr("p2p.listen", &p2p.listen)?;
    let mut peers = Vec::new();
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    for raw in cluster.peers {
        let id = NodeId::new(raw.id).ok_or(ConfigError::NodeIdZero)?;
        let peer_id: libp2p_identity::PeerId =
            raw.peer_id.parse().map_err(|e| ConfigError::InvalidValue {
                key: "cluster.peers.peer_id",
                value: raw.peer_id.clone(),
                reason: format!("not a libp2p peer id: {e}"),
            })?;
        check_addr("cluster.peers.p2p_addr", &raw.p2p_addr)?;
        if !raw.api_url.starts_with("https://") && !raw.api_url.starts_with("http://") {
            return Err(ConfigError::InvalidValue {
                key: "cluster.peers.api_url",
                value: raw.api_url,
                reason: "expected an https:// URL".into(),
            });
        }
        if !ids.insert(id) {
            return Err(ConfigError::DuplicatePeer {
                what: "id",
                value: id.to_string(),
            });
        }
        if !keys.insert(peer_id) {
            return Err(ConfigError::DuplicatePeer {
                what: "peer_id",
                value: raw.peer_id,
            });
        }
        peers.push(Peer {
            id,
            peer_id,
            p2p_addr: raw.p2p_addr,
            api_url: raw.api_url,
            zone: raw.zone,
            initial: raw.initial,
        });
    }
    if !ids.contains(&me) {
        return Err(ConfigError::NotAPeer { id: me.get() });
    }
    let initial = peers.iter().filter(|p| p.initial).count();
    if initial == 0 {
        return Err(ConfigError::InvalidValue {
            key: "cluster.peers.initial",
            value: "none".into(),
            reason: "at least one peer must be in the first layout".into(),
        });
    }
    if erasure.total() > initial {
        return Err(ConfigError::ErasureProfile {
            data: erasure.data as u64,
            parity: erasure.parity as u64,
            reason: "more shards than nodes: every shard of a block needs its own node",
        });
    }
    Ok(ClusterConfig {
        p2p_listen: p2p.listen,
        key_file: resolve(&p2p.key_file),
        peers,
    })
}

/// Parses "10GiB", "512 KiB", "1.5GB" or a plain number of bytes.
pub fn parse_size(key: &'static str, raw: &RawSize) -> Result<u64, ConfigError> {
    let text = match raw {
        RawSize::Bytes(n) => return Ok(*n),
        RawSize::Text(t) => t.trim(),
    };
    let err = |reason: &str| ConfigError::InvalidValue {
        key,
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| err("expected a number followed by a unit such as GiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        _ => {
            return Err(err(
                "unknown unit (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)",
            ))
        }
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(err("out of range"));
    }
    Ok(bytes as u64)
}

/// Parses "250ms", "30s", "5m", "12h", "7d".
pub fn parse_duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let err = |reason: &str| ConfigError::InvalidValue {
        key,
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| err("a duration needs a unit: ms, s, m, h or d"))?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| err("expected a whole number"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(err("unknown unit (use ms, s, m, h or d)")),
    }
    .ok_or_else(|| err("out of range"))?;
    if ms == 0 {
        return Err(err("must be greater than zero"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
id = 1
[api]
listen = "127.0.0.1:9000"
tls_cert = "tls/cert.pem"
tls_key = "tls/key.pem"
[storage]
meta_dir = "meta"
shard_dirs = ["d0", "d1", "d2"]
[secrets]
cluster_secret_file = "secret"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_and_validate(text, Path::new("test.toml"), Path::new("/base"))
    }

    #[test]
    fn good_config_has_defaults_and_resolved_paths() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.node_id.get(), 1);
        assert_eq!(c.node_name, "node-1");
        assert_eq!(c.erasure, ErasureProfile { data: 2, parity: 1 });
        assert_eq!(c.limits.max_file_bytes, 10 << 30);
        assert_eq!(c.limits.default_quota_bytes, 10 << 30);
        assert_eq!(c.limits.upload_session_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(c.storage.shard_dirs[1], PathBuf::from("/base/d1"));
        assert_eq!(c.api.tls.unwrap().cert, PathBuf::from("/base/tls/cert.pem"));
        assert_eq!(c.cluster_secret_file, PathBuf::from("/base/secret"));
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("[node]\nid = 1", "[node]\nid = 1\nflavour = \"x\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("flavour"), "{e}");
        let text = format!("{GOOD}\n[bogus]\nx = 1\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_reason() {
        let e = parse(&GOOD.replace("127.0.0.1:9000", "localhost"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.listen") && e.contains("localhost"), "{e}");

        let e = parse(&format!("{GOOD}\n[limits]\nmax_file_size = \"11GiB\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_file_size"), "{e}");

        let e = parse(&format!(
            "{GOOD}\n[limits]\ndefault_quota = \"10 parsecs\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("limits.default_quota") && e.contains("unknown unit"),
            "{e}"
        );

        let e = parse(&format!("{GOOD}\n[limits]\nupload_session_ttl = \"7\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.upload_session_ttl"), "{e}");

        let e = parse(&GOOD.replace("id = 1", "id = 0")).unwrap_err();
        assert!(matches!(e, ConfigError::NodeIdZero));

        let e = parse(&format!(
            "{GOOD}\n[erasure]\ndata_shards = 2\nparity_shards = 0\n"
        ))
        .unwrap_err();
        assert!(matches!(
            e,
            ConfigError::ErasureProfile {
                data: 2,
                parity: 0,
                ..
            }
        ));

        let e = parse(&GOOD.replace("[\"d0\", \"d1\", \"d2\"]", "[\"d0\", \"d0\"]")).unwrap_err();
        assert!(matches!(e, ConfigError::DuplicateShardDir { .. }));

        let e = parse(&GOOD.replace("[\"d0\", \"d1\", \"d2\"]", "[]")).unwrap_err();
        assert!(matches!(e, ConfigError::NoShardDirs));

        let e = parse(&GOOD.replace("tls_key = \"tls/key.pem\"\n", "")).unwrap_err();
        assert!(matches!(e, ConfigError::MissingTls { key: "api.tls_key" }));

        let e = parse(&GOOD.replace("id = 1", "id = -1")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
    }

    #[test]
    fn insecure_http_needs_no_tls() {
        let text = GOOD
            .replace("tls_cert = \"tls/cert.pem\"\n", "")
            .replace("tls_key = \"tls/key.pem\"\n", "insecure_http = true\n");
        assert!(parse(&text).unwrap().api.tls.is_none());
    }

    #[test]
    fn sizes_and_durations() {
        let s = |t: &str| parse_size("k", &RawSize::Text(t.into()));
        assert_eq!(s("10GiB").unwrap(), 10 << 30);
        assert_eq!(s("512 KiB").unwrap(), 512 << 10);
        assert_eq!(s("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(s("42").unwrap(), 42);
        assert!(s("GiB").is_err());
        assert!(s("1 XB").is_err());
        assert_eq!(
            parse_duration("k", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("k", "7d").unwrap(),
            Duration::from_secs(604_800)
        );
        assert!(parse_duration("k", "0s").is_err());
        assert!(parse_duration("k", "s").is_err());
        assert!(parse_duration("k", "99999999999999999999d").is_err());
    }
}
