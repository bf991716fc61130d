//! Generation of what a deployment needs on disk: TLS material, the cluster
//! secret, and node configs for `strata dev`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::secrets::{write_private, ClusterSecret};
use crate::validated::{Config, ErasureProfile};

/// The TLS files of a node: what clients trust (`ca`), and the server's
/// certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A new CA: one that verifiers which check strictly accept (basic
/// constraints, key usages, subject and authority key identifiers).
fn new_ca(
    name: &str,
) -> Result<(rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>), ConfigError> {
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok((cert, rcgen::Issuer::new(params, key)))
}

/// A leaf for `names` signed by `issuer`: a server (and, for nodes that
/// also dial each other, a client) certificate with its key identifiers,
/// key usage and extended key usage, as strict verifiers require.
fn new_leaf(
    names: Vec<String>,
    common_name: &str,
    client_too: bool,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> Result<(rcgen::Certificate, rcgen::KeyPair), ConfigError> {
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let mut params = rcgen::CertificateParams::new(names).map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    if client_too {
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer).map_err(gen_err)?;
    Ok((cert, key))
}

/// The TLS files of `strata dev` under `dir`, made on first start: a CA of
/// its own (`cert.pem`, what clients trust; its key is not kept) and a
/// server certificate it signed for `names` (DNS names or IP literals).
/// A folder from an earlier version (one self-signed `cert.pem`) is used as
/// it is. Returns whether the files were created.
pub fn ensure_self_signed_tls(
    dir: &Path,
    names: &[String],
) -> Result<(TlsPaths, bool), ConfigError> {
    let ca = dir.join("cert.pem");
    let paths = TlsPaths {
        ca: ca.clone(),
        cert: dir.join("server-cert.pem"),
        key: dir.join("server-key.pem"),
    };
    if paths.cert.exists() && paths.key.exists() && ca.exists() {
        return Ok((paths, false));
    }
    if ca.exists() && dir.join("key.pem").exists() {
        return Ok((
            TlsPaths {
                ca: ca.clone(),
                cert: ca,
                key: dir.join("key.pem"),
            },
            false,
        ));
    }
    let (ca_cert, issuer) = new_ca("strata dev CA")?;
    let (leaf, leaf_key) = new_leaf(names.to_vec(), "strata dev", false, &issuer)?;
    write_private(&paths.key, leaf_key.serialize_pem().as_bytes())?;
    let chain = format!("{}{}", leaf.pem(), ca_cert.pem());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    fs::write(&paths.cert, chain).map_err(io(&paths.cert))?;
    fs::write(&ca, ca_cert.pem()).map_err(io(&ca))?;
    Ok((paths, true))
}

/// Loads the secret at `path`, creating it first if it does not exist.
pub fn ensure_secret(path: &Path) -> Result<ClusterSecret, ConfigError> {
    if !path.exists() {
        ClusterSecret::random().write_new(path)?;
    }
    ClusterSecret::load(path)
}

/// What `strata dev` needs to lay out a single-machine drive.
#[derive(Debug, Clone)]
pub struct DevSpec {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub node_id: u64,
    pub erasure: ErasureProfile,
    pub insecure_http: bool,
}

/// Writes `DATA/node-<id>/node.toml` for a dev node (rewritten on every start
/// so `--listen` takes effect) and returns it validated.
pub fn write_dev_node_config(
    spec: &DevSpec,
    tls: Option<&TlsPaths>,
) -> Result<(PathBuf, Config), ConfigError> {
    let node_dir = spec.data_dir.join(format!("node-{}", spec.node_id));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
    let disks: Vec<String> = (0..spec.erasure.total())
        .map(|i| format!("\"disk-{i}\""))
        .collect();
    let tls_lines = match (tls, spec.insecure_http) {
        (_, true) => "insecure_http = true\n".to_string(),
        (Some(t), false) => format!(
            "tls_cert = {}\ntls_key = {}\n",
            toml_str(&t.cert),
            toml_str(&t.key)
        ),
        (None, false) => {
            return Err(ConfigError::MissingTls {
                key: "api.tls_cert",
            })
        }
    };
    let text = format!(
        "# Generated by `strata dev`; rewritten on every start.\n\
         [node]\nid = {id}\n\n\
         [api]\nlisten = \"{listen}\"\n{tls_lines}\n\
         [storage]\nmeta_dir = \"meta\"\nshard_dirs = [{disks}]\n\n\
         [erasure]\ndata_shards = {k}\nparity_shards = {m}\n\n\
         [secrets]\ncluster_secret_file = {secret}\nadmin_password_file = {admin}\n",
        id = spec.node_id,
        listen = spec.listen,
        disks = disks.join(", "),
        k = spec.erasure.data,
        m = spec.erasure.parity,
        secret = toml_str(&spec.data_dir.join("secret.key")),
        admin = toml_str(&spec.data_dir.join("admin-password")),
    );
    let path = node_dir.join("node.toml");
    fs::write(&path, &text).map_err(io(&path))?;
    let cfg = Config::parse_and_validate(&text, &path, &node_dir)?;
    Ok((path, cfg))
}

/// A TOML basic string for a path.
fn toml_str(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_layout_validates_and_reuses_tls() {
        let dir = tempfile::tempdir().unwrap();
        let (tls, created) = ensure_self_signed_tls(
            &dir.path().join("tls"),
            &["localhost".into(), "127.0.0.1".into()],
        )
        .unwrap();
        assert!(created);
        let (_, again) = ensure_self_signed_tls(&dir.path().join("tls"), &[]).unwrap();
        assert!(!again);
        let spec = DevSpec {
            data_dir: dir.path().join("data \"q\""),
            listen: "127.0.0.1:0".parse().unwrap(),
            node_id: 1,
            erasure: ErasureProfile { data: 2, parity: 1 },
            insecure_http: false,
        };
        let (_, cfg) = write_dev_node_config(&spec, Some(&tls)).unwrap();
        assert_eq!(cfg.storage.shard_dirs.len(), 3);
        assert!(cfg.accounts.ignored_admins.is_empty());
        assert!(cfg.admin_password_file.unwrap().ends_with("admin-password"));
        assert!(cfg.cluster_secret_file.ends_with("secret.key"));
    }
}

/// What `strata init-cluster` writes.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Nodes in the first layout.
    pub nodes: usize,
    /// Extra nodes generated now (keys, certificates, configs) but joined
    /// later with `strata admin add-node`.
    pub spare: usize,
    pub out: PathBuf,
    pub erasure: Option<ErasureProfile>,
    /// Host of every node; a literal `x` is replaced by the node number, so
    /// `127.0.0.x` puts node i on 127.0.0.i.
    pub host: String,
    pub base_port: u16,
    /// Shard directories per node.
    pub disks_per_node: usize,
    /// Heartbeat silence after which a node's shards are rebuilt elsewhere.
    pub repair_grace: Option<String>,
    /// Failure zones (racks, rooms, sites), given to the nodes in turn:
    /// node i is in `zones[(i-1) % len]`. Empty: no zones.
    pub zones: Vec<String>,
    /// Extra TOML appended to every node config (tests, tuning).
    pub extra_toml: String,
}

/// The machine-readable summary, `cluster.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClusterManifest {
    pub nodes: Vec<ManifestNode>,
    pub ca_cert: String,
    pub admin: ManifestAdmin,
    pub erasure: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ManifestNode {
    pub id: u64,
    pub config: String,
    pub api_url: String,
    pub p2p_addr: String,
    pub peer_id: String,
    pub initial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ManifestAdmin {
    pub username: String,
    pub password: String,
}

/// The default erasure profile for `n` nodes: 2+1 for 3, 4+2 for 6 or more,
/// otherwise the largest that gives every shard its own node.
pub fn default_profile(n: usize) -> Option<ErasureProfile> {
    let (data, parity) = match n {
        0 | 1 => return None,
        2 => (1, 1),
        3 => (2, 1),
        4 => (3, 1),
        5 => (3, 2),
        _ => (4, 2),
    };
    Some(ErasureProfile { data, parity })
}

/// How many Raft voters a cluster of `n` active nodes has: 3, or 5 from
/// five nodes up (the others are learners).
pub fn voter_target(n: usize) -> usize {
    match n {
        0..=2 => n,
        3 | 4 => 3,
        _ => 5,
    }
}

/// Nodes that may be down at once while writes go on, for `n` nodes of
/// `disks` disks each and a block needing `quorum` shards on distinct
/// disks: a majority of the Raft voters must be up, and the live nodes
/// must have `quorum` disks between them.
pub fn writable_with_down(n: usize, disks: usize, quorum: usize) -> usize {
    let voters = voter_target(n);
    let raft = voters.saturating_sub(voters / 2 + 1);
    let needed_nodes = quorum.div_ceil(disks.max(1));
    raft.min(n.saturating_sub(needed_nodes))
}

/// What a cluster of `n` nodes with `disks` disks each survives under
/// `profile`, in words (`init-cluster` prints it).
pub fn survival(n: usize, disks: usize, profile: ErasureProfile) -> String {
    let (k, m) = (profile.data as usize, profile.parity as usize);
    let quorum = k + 1;
    let down = writable_with_down(n, disks, quorum);
    let data = format!(
        "erasure {k}+{m} on {n} nodes: every block survives the loss of any {m} node{}",
        if m == 1 { "" } else { "s" }
    );
    let writes = if down == 0 {
        format!(
            "writes stop while any node is down (a block is acknowledged only with {quorum} shards \
             on distinct disks; with {} disks per node, {} nodes must be up)",
            disks,
            quorum.div_ceil(disks.max(1)).max(voter_target(n) / 2 + 1)
        )
    } else {
        format!(
            "writes go on with up to {down} node{} down, every block written meanwhile keeping \
             {quorum} shards on distinct disks (one more disk or node can fail)",
            if down == 1 { "" } else { "s" }
        )
    };
    format!("{data}; {writes}")
}

fn gen_err(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Generate(e.to_string())
}

/// A zone name: 1 to 64 letters, digits, `.`, `_` or `-`.
fn check_zone(z: &str) -> Result<(), ConfigError> {
    let ok = !z.is_empty()
        && z.len() <= 64
        && z.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(gen_err(format!(
            "zone {z:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// The most shards of one block that can land in a single zone, for
/// nodes in the given zones (`None`: a node without a zone, a zone of its
/// own) and blocks of `total` shards. Placement deals a block's shards to
/// the zones round by round; in the last, partial round any zone still
/// holding an unused node may get one more.
pub fn max_shards_in_one_zone(zones: &[Option<&str>], total: usize) -> usize {
    let mut zoned: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut sizes = Vec::new();
    for z in zones {
        match z {
            Some(z) => *zoned.entry(z).or_default() += 1,
            None => sizes.push(1),
        }
    }
    sizes.extend(zoned.into_values());
    let mut held = vec![0usize; sizes.len()];
    let mut left = total;
    for round in 0.. {
        let active: Vec<usize> = (0..sizes.len()).filter(|z| sizes[*z] > round).collect();
        if active.is_empty() || left == 0 {
            break;
        }
        for z in &active {
            held[*z] += 1;
        }
        left = left.saturating_sub(active.len());
    }
    held.into_iter().max().unwrap_or(0)
}

/// Writes configs, keys, an internal CA with one certificate per node, the
/// cluster secret and `cluster.json` under `spec.out`.
pub fn init_cluster(spec: &ClusterSpec) -> Result<ClusterManifest, ConfigError> {
    let n = spec.nodes;
    let erasure = match spec.erasure {
        Some(e) => e,
        None => default_profile(n).ok_or_else(|| gen_err("a cluster needs at least 2 nodes"))?,
    };
    if erasure.total() > n {
        return Err(ConfigError::ErasureProfile {
            data: erasure.data as u64,
            parity: erasure.parity as u64,
            reason: "more shards than nodes: every shard of a block needs its own node",
        });
    }
    for z in &spec.zones {
        check_zone(z)?;
    }
    let out = &spec.out;
    if out.join("cluster.json").exists() {
        return Err(gen_err(format!(
            "{} already holds a cluster",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| ConfigError::Io {
        path: out.clone(),
        source,
    })?;
    let out = out.canonicalize().map_err(|source| ConfigError::Io {
        path: out.clone(),
        source,
    })?;

    // The cluster's own CA: clients trust it, every node certificate is signed by it.
    let (ca_cert, issuer) = new_ca("strata cluster CA")?;
    let ca_path = out.join("ca.pem");
    write_file(&ca_path, ca_cert.pem().as_bytes())?;
    write_private(
        &out.join("ca-key.pem"),
        issuer.key().serialize_pem().as_bytes(),
    )?;

    ClusterSecret::random().write_new(&out.join("secret.key"))?;
    let admin_password = crate::ids::to_hex(&rand::random::<[u8; 16]>());
    write_private(
        &out.join("admin-password"),
        format!("{admin_password}\n").as_bytes(),
    )?;

    struct NodePlan {
        id: u64,
        host: String,
        api_url: String,
        api_listen: String,
        p2p_addr: String,
        peer_id: String,
        initial: bool,
        zone: Option<String>,
    }
    let total = n + spec.spare;
    let mut plans = Vec::new();
    for i in 1..=total {
        let host = spec.host.replace('x', &i.to_string());
        let api_port = spec.base_port as usize + 2 * (i - 1);
        let p2p_port = api_port + 1;
        if p2p_port > u16::MAX as usize {
            return Err(gen_err("ports run past 65535; pick a lower --base-port"));
        }
        let ip: std::net::IpAddr = host
            .parse()
            .map_err(|_| gen_err(format!("host {host:?} is not an IP address")))?;
        let api_listen = SocketAddr::new(ip, api_port as u16).to_string();
        let p2p_addr = match ip {
            std::net::IpAddr::V4(_) => format!("/ip4/{ip}/tcp/{p2p_port}"),
            std::net::IpAddr::V6(_) => format!("/ip6/{ip}/tcp/{p2p_port}"),
        };
        let key_path = out.join(format!("node-{i}.key"));
        let peer_id = crate::node_key::generate_node_key(&key_path)?.to_string();
        // Node certificate, signed by the CA, for its address and localhost.
        let mut names = vec![host.clone(), "localhost".to_string()];
        if host != "127.0.0.1" {
            names.push("127.0.0.1".into());
        }
        let (cert, node_key) = new_leaf(names, &format!("strata node {i}"), true, &issuer)?;
        write_file(
            &out.join(format!("node-{i}-cert.pem")),
            format!("{}{}", cert.pem(), ca_cert.pem()).as_bytes(),
        )?;
        write_private(
            &out.join(format!("node-{i}-key.pem")),
            node_key.serialize_pem().as_bytes(),
        )?;
        plans.push(NodePlan {
            id: i as u64,
            api_url: format!("https://{api_listen}"),
            host,
            api_listen,
            p2p_addr,
            peer_id,
            initial: i <= n,
            zone: (!spec.zones.is_empty()).then(|| spec.zones[(i - 1) % spec.zones.len()].clone()),
        });
    }

    let mut peers_toml = String::new();
    let zone_line = |z: &Option<String>| {
        z.as_ref()
            .map(|z| format!("zone = \"{z}\"\n"))
            .unwrap_or_default()
    };
    for p in &plans {
        peers_toml.push_str(&format!(
            "[[cluster.peers]]\nid = {}\npeer_id = \"{}\"\np2p_addr = \"{}\"\napi_url = \"{}\"\ninitial = {}\n{}\n",
            p.id,
            p.peer_id,
            p.p2p_addr,
            p.api_url,
            p.initial,
            zone_line(&p.zone)
        ));
    }
    let mut manifest_nodes = Vec::new();
    for p in &plans {
        let i = p.id;
        let disks: Vec<String> = (0..spec.disks_per_node.max(1))
            .map(|d| format!("\"node-{i}/disk-{d}\""))
            .collect();
        let grace = spec
            .repair_grace
            .as_ref()
            .map(|g| format!("[repair]\ngrace = \"{g}\"\n\n"))
            .unwrap_or_default();
        let text = format!(
            "# Node {i} of a strata cluster, written by `strata init-cluster`.\n\
             [node]\nid = {i}\n{zone}\n\
             [api]\nlisten = \"{listen}\"\ntls_cert = \"node-{i}-cert.pem\"\ntls_key = \"node-{i}-key.pem\"\n\n\
             [p2p]\nlisten = \"{p2p}\"\nkey_file = \"node-{i}.key\"\n\n\
             [storage]\nmeta_dir = \"node-{i}/meta\"\nshard_dirs = [{disks}]\n\n\
             [erasure]\ndata_shards = {k}\nparity_shards = {m}\n\n\
             [secrets]\ncluster_secret_file = \"secret.key\"\nadmin_password_file = \"admin-password\"\n\n\
             {grace}{peers}{extra}",
            zone = zone_line(&p.zone),
            listen = p.api_listen,
            p2p = p.p2p_addr,
            disks = disks.join(", "),
            k = erasure.data,
            m = erasure.parity,
            peers = peers_toml,
            extra = spec.extra_toml,
        );
        let path = out.join(format!("node-{i}.toml"));
        write_file(&path, text.as_bytes())?;
        // Refuse to hand out a config that does not validate.
        Config::parse_and_validate(&text, &path, &out)?;
        manifest_nodes.push(ManifestNode {
            id: i,
            config: path.display().to_string(),
            api_url: p.api_url.clone(),
            p2p_addr: p.p2p_addr.clone(),
            peer_id: p.peer_id.clone(),
            initial: p.initial,
            zone: p.zone.clone(),
        });
        let _ = &p.host;
    }
    let manifest = ClusterManifest {
        nodes: manifest_nodes,
        ca_cert: ca_path.display().to_string(),
        admin: ManifestAdmin {
            username: "admin".into(),
            password: admin_password,
        },
        erasure: format!("{}+{}", erasure.data, erasure.parity),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(gen_err)?;
    // It holds the admin password: owner-only.
    write_private(&out.join("cluster.json"), &json)?;
    Ok(manifest)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    std::fs::write(path, bytes).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod cluster_tests {
    use super::*;
    use crate::NodeId;

    fn spec(dir: &Path, nodes: usize, erasure: Option<ErasureProfile>) -> ClusterSpec {
        ClusterSpec {
            nodes,
            spare: 1,
            out: dir.to_path_buf(),
            erasure,
            host: "127.0.0.x".into(),
            base_port: 20000,
            disks_per_node: 2,
            repair_grace: Some("5s".into()),
            zones: Vec::new(),
            extra_toml: String::new(),
        }
    }

    #[test]
    fn init_cluster_writes_valid_configs() {
        let dir = tempfile::tempdir().unwrap();
        let m = init_cluster(&spec(dir.path(), 3, None)).unwrap();
        assert_eq!(m.erasure, "2+1");
        assert_eq!(m.nodes.len(), 4);
        assert!(!m.nodes[3].initial);
        assert_eq!(m.nodes[1].api_url, "https://127.0.0.2:20002");
        assert_eq!(m.nodes[1].p2p_addr, "/ip4/127.0.0.2/tcp/20003");
        for n in &m.nodes {
            let c = Config::load(Path::new(&n.config)).unwrap();
            let cl = c.cluster.unwrap();
            assert_eq!(cl.peers.len(), 4);
            assert_eq!(c.storage.shard_dirs.len(), 2);
            assert_eq!(c.repair.grace, std::time::Duration::from_secs(5));
            assert_eq!(
                cl.peer(NodeId::new(n.id).unwrap())
                    .unwrap()
                    .peer_id
                    .to_string(),
                n.peer_id
            );
            let key = crate::node_key::load_node_key(&cl.key_file).unwrap();
            assert_eq!(key.public().to_peer_id().to_string(), n.peer_id);
        }
        // The manifest holds a secret: owner-only.
        assert!(crate::secrets::check_private(&dir.path().join("cluster.json")).is_ok());
        // Not twice into the same folder.
        assert!(init_cluster(&spec(dir.path(), 3, None)).is_err());
    }

    #[test]
    fn zones_go_to_the_nodes_in_turn_and_into_every_peer_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), 4, Some(ErasureProfile { data: 2, parity: 1 }));
        s.zones = vec!["rack-a".into(), "rack-b".into(), "rack-c".into()];
        let m = init_cluster(&s).unwrap();
        let zones: Vec<_> = m.nodes.iter().map(|n| n.zone.clone().unwrap()).collect();
        // Four nodes and a spare, three zones: round robin.
        assert_eq!(zones, ["rack-a", "rack-b", "rack-c", "rack-a", "rack-b"]);
        for n in &m.nodes {
            let c = Config::load(Path::new(&n.config)).unwrap();
            assert_eq!(c.zone, n.zone);
            for p in &c.cluster.unwrap().peers {
                assert_eq!(
                    p.zone.as_deref(),
                    Some(zones[p.id.get() as usize - 1].as_str())
                );
            }
        }
        // A name that would break the config is refused before anything is written.
        let other = tempfile::tempdir().unwrap();
        let mut bad = spec(other.path(), 3, None);
        bad.zones = vec!["a\"b".into()];
        let e = init_cluster(&bad).unwrap_err();
        assert!(e.to_string().contains("zone"), "{e}");
        assert!(!other.path().join("cluster.json").exists());
    }

    #[test]
    fn shards_a_zone_can_hold() {
        let z = |v: &[&'static str]| v.iter().map(|s| Some(*s)).collect::<Vec<_>>();
        // Three zones of two, 4+2: two shards per zone.
        assert_eq!(
            max_shards_in_one_zone(&z(&["a", "b", "c", "a", "b", "c"]), 6),
            2
        );
        // Two zones for three shards: one zone holds two (more than M = 1).
        assert_eq!(max_shards_in_one_zone(&z(&["a", "b", "a", "b"]), 3), 2);
        // Zones a, a, b, c and 2+1: one shard per zone.
        assert_eq!(max_shards_in_one_zone(&z(&["a", "a", "b", "c"]), 3), 1);
        // One big zone takes what the small ones cannot.
        assert_eq!(
            max_shards_in_one_zone(&z(&["a", "a", "a", "a", "b", "c"]), 6),
            4
        );
        // No zones: every node is its own.
        assert_eq!(max_shards_in_one_zone(&[None, None, None], 3), 1);
    }

    #[test]
    fn what_a_cluster_survives() {
        // Five nodes, 3+2, two disks each: two may be down and writes go on.
        assert_eq!(writable_with_down(5, 2, 4), 2);
        // One disk each: four nodes must be up for four shards.
        assert_eq!(writable_with_down(5, 1, 4), 1);
        // Three nodes, 2+1: with two disks each one node may be down...
        assert_eq!(writable_with_down(3, 2, 3), 1);
        // ...with one, none.
        assert_eq!(writable_with_down(3, 1, 3), 0);
        // Six nodes, 4+2: five voters, two may be down.
        assert_eq!(writable_with_down(6, 2, 5), 2);
        let s = survival(5, 2, ErasureProfile { data: 3, parity: 2 });
        assert!(
            s.contains("loss of any 2 nodes") && s.contains("up to 2 nodes down"),
            "{s}"
        );
        let s = survival(3, 1, ErasureProfile { data: 2, parity: 1 });
        assert!(s.contains("writes stop while any node is down"), "{s}");
    }

    #[test]
    fn profiles() {
        let p = |n| default_profile(n).map(|e| (e.data, e.parity));
        assert_eq!(p(3), Some((2, 1)));
        assert_eq!(p(6), Some((4, 2)));
        assert_eq!(p(9), Some((4, 2)));
        assert_eq!(p(5), Some((3, 2)));
        assert_eq!(p(1), None);
        let dir = tempfile::tempdir().unwrap();
        let e = init_cluster(&spec(
            dir.path(),
            3,
            Some(ErasureProfile { data: 4, parity: 2 }),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("more shards than nodes"), "{e}");
    }
}
