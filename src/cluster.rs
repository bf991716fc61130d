//! `strata init-cluster` and `strata admin`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use cluster_config::generate::{init_cluster, ClusterManifest, ClusterSpec};
use cluster_config::ErasureProfile;
use reqwest::Method;
use serde_json::Value;

#[derive(Args)]
pub struct InitArgs {
    /// Nodes in the first layout.
    #[arg(long)]
    nodes: usize,
    /// Where to write configs, keys, certificates and cluster.json.
    #[arg(long)]
    out: PathBuf,
    /// Erasure profile, e.g. 4+2 (default: 2+1 for 3 nodes, 4+2 for 6 or more).
    #[arg(long)]
    ec: Option<String>,
    /// Host of every node; an `x` becomes the node number (127.0.0.x).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// First port; node i uses base+2(i-1) for HTTPS and the next for p2p.
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
    /// Extra nodes to generate now and add later with `strata admin add-node`.
    #[arg(long, default_value_t = 0)]
    spare: usize,
    /// Shard directories per node.
    #[arg(long, default_value_t = 2)]
    disks_per_node: usize,
    /// Silence after which a node's shards are rebuilt elsewhere (e.g. 10m).
    #[arg(long)]
    repair_grace: Option<String>,
    /// Failure zones (racks, rooms, sites), comma-separated, given to the
    /// nodes in turn: `--zones a,b,c` puts node 1 in a, 2 in b, 3 in c, 4 in
    /// a... A block's shards are spread over the zones.
    #[arg(long, value_delimiter = ',')]
    zones: Vec<String>,
}

pub fn parse_ec(s: &str) -> anyhow::Result<ErasureProfile> {
    let (k, m) = s.split_once('+').context("--ec is K+M, e.g. 4+2")?;
    Ok(ErasureProfile::validate(
        k.trim().parse()?,
        m.trim().parse()?,
    )?)
}

pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let erasure = args.ec.as_deref().map(parse_ec).transpose()?;
    let manifest = init_cluster(&ClusterSpec {
        nodes: args.nodes,
        spare: args.spare,
        out: args.out.clone(),
        erasure,
        host: args.host,
        base_port: args.base_port,
        disks_per_node: args.disks_per_node,
        repair_grace: args.repair_grace,
        zones: args.zones.clone(),
        extra_toml: String::new(),
    })?;
    crate::say(&format!(
        "wrote a {}-node cluster ({} erasure) to {}\n",
        args.nodes,
        manifest.erasure,
        args.out.display()
    ));
    for n in &manifest.nodes {
        crate::say(&format!(
            "  node {}: strata serve --config {}   ({}{})\n",
            n.id,
            n.config,
            n.api_url,
            if n.initial {
                ""
            } else {
                ", spare: add it with `strata admin add-node`"
            }
        ));
    }
    let profile = parse_ec(&manifest.erasure)?;
    crate::say(&format!(
        "  {}\n",
        cluster_config::generate::survival(args.nodes, args.disks_per_node.max(1), profile)
    ));
    if !args.zones.is_empty() {
        let zones: Vec<Option<&str>> = manifest
            .nodes
            .iter()
            .filter(|n| n.initial)
            .map(|n| n.zone.as_deref())
            .collect();
        let profile = parse_ec(&manifest.erasure)?;
        let parity = profile.parity as usize;
        let held = cluster_config::generate::max_shards_in_one_zone(&zones, profile.total());
        if held <= parity {
            crate::say(&format!(
                "  zones: at most {held} shard(s) of a block in one zone; a whole zone can be lost (parity {parity})\n"
            ));
        } else {
            crate::say(&format!(
                "  warning: one zone can hold {held} shards of a block, more than the parity ({parity}): losing that whole zone can make files unreadable; add zones or parity\n"
            ));
        }
    }
    crate::say(&format!(
        "  CA certificate: {}\n  admin login and password: {}/cluster.json\n",
        manifest.ca_cert,
        args.out.display()
    ));
    Ok(())
}

#[derive(Args)]
pub struct AdminArgs {
    /// A folder written by `strata init-cluster` (its cluster.json gives
    /// the server, CA and admin login).
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// The server, if not from --cluster.
    #[arg(long)]
    server: Option<String>,
    /// CA certificate to trust, if not from --cluster.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long, default_value = "admin")]
    username: String,
    /// File holding the admin password, if not from --cluster.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: AdminCmd,
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Members, Raft roles and term, health, repair backlog.
    Status,
    /// Adds a node (from --cluster's cluster.json) to the layout.
    AddNode { id: u64 },
    /// Moves a node's shards away and takes it out of the layout.
    RemoveNode { id: u64 },
    /// Asks every node whether it holds each of its shards, intact.
    Verify,
}

fn manifest(dir: &Path) -> anyhow::Result<ClusterManifest> {
    let path = dir.join("cluster.json");
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let m = args.cluster.as_deref().map(manifest).transpose()?;
    let (server, ca, password) = match &m {
        Some(m) => {
            let first = m
                .nodes
                .iter()
                .find(|n| n.initial)
                .context("cluster.json lists no node")?;
            (
                args.server.clone().unwrap_or_else(|| first.api_url.clone()),
                args.ca.clone().unwrap_or_else(|| PathBuf::from(&m.ca_cert)),
                m.admin.password.clone(),
            )
        }
        None => {
            let pw = args
                .password_file
                .as_ref()
                .context("--password-file (or --cluster) is needed")?;
            (
                args.server
                    .clone()
                    .context("--server (or --cluster) is needed")?,
                args.ca.clone().context("--ca (or --cluster) is needed")?,
                std::fs::read_to_string(pw)?.trim().to_string(),
            )
        }
    };
    let mut client = strata_client::Client::from_ca_file(&server, &ca)?;
    client
        .login(&args.username, &password, Some("strata admin"))
        .await?;
    let call = |method: Method, path: &str, body: Option<Value>| {
        let client = client.clone();
        let path = path.to_string();
        async move {
            let mut rb = client.request(method, &path);
            if let Some(b) = body {
                rb = rb.json(&b);
            }
            let resp = rb.send().await?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!(
                    "{status}: {}",
                    v["error"]["message"].as_str().unwrap_or("request failed")
                );
            }
            Ok::<Value, anyhow::Error>(v)
        }
    };
    let v = match args.cmd {
        AdminCmd::Status => call(Method::GET, "/api/v1/admin/cluster", None).await?,
        AdminCmd::Verify => call(Method::GET, "/api/v1/admin/verify", None).await?,
        AdminCmd::RemoveNode { id } => {
            call(Method::DELETE, &format!("/api/v1/admin/nodes/{id}"), None).await?
        }
        AdminCmd::AddNode { id } => {
            let m = m
                .as_ref()
                .context("add-node reads the node from --cluster's cluster.json")?;
            let n = m
                .nodes
                .iter()
                .find(|n| n.id == id)
                .with_context(|| format!("cluster.json has no node {id}"))?;
            let body = serde_json::json!({
                "id": n.id, "peer_id": n.peer_id, "p2p_addr": n.p2p_addr, "api_url": n.api_url,
                "zone": n.zone,
            });
            call(Method::POST, "/api/v1/admin/nodes", Some(body)).await?
        }
    };
    if args.json {
        crate::say(&format!("{}\n", serde_json::to_string_pretty(&v)?));
        if v.get("shards_expected").is_some() && v["blocks_short"].as_u64().unwrap_or(0) > 0 {
            bail!("blocks are missing shards");
        }
        return Ok(());
    }
    if v.get("members").is_some() {
        crate::say(&format!(
            "leader {}, term {}, layout v{}, erasure {}\n",
            v["leader"],
            v["term"],
            v["layout_version"],
            v["erasure"].as_str().unwrap_or("")
        ));
        crate::say("  id  role      healthy  state    zone      api\n");
        for m in v["members"].as_array().into_iter().flatten() {
            crate::say(&format!(
                "  {:<3} {:<9} {:<8} {:<8} {:<9} {}\n",
                m["id"],
                m["role"].as_str().unwrap_or(""),
                m["healthy"],
                m["state"].as_str().unwrap_or(""),
                m["zone"].as_str().unwrap_or("-"),
                m["api_url"].as_str().unwrap_or("")
            ));
        }
        match v["repair_backlog"].as_u64() {
            Some(backlog) => crate::say(&format!(
                "repair backlog: {backlog} shards (progress {:.0}%, {} rebuilt, {} moved)\n",
                v["repair"]["progress"].as_f64().unwrap_or(1.0) * 100.0,
                v["repair"]["repaired_total"],
                v["repair"]["moved_total"]
            )),
            None => crate::say(
                "repair backlog: not known yet (scanning: the leader just took over, or its repair scan is still running)\n",
            ),
        }
        let short = v["repair"]["blocks_short"].as_u64().unwrap_or(0);
        let unreadable = v["repair"]["blocks_unreadable"].as_u64().unwrap_or(0);
        if short > 0 {
            crate::say(&format!(
                "blocks below full redundancy (fewer than K+M shards on live nodes): {short}\n"
            ));
        }
        if unreadable > 0 {
            crate::say(&format!(
                "blocks UNREADABLE (fewer than K shards on live nodes; lost unless their nodes return): {unreadable}\n"
            ));
            for f in v["repair"]["unreadable_files"]
                .as_array()
                .into_iter()
                .flatten()
            {
                crate::say(&format!("  {}\n", f.as_str().unwrap_or("")));
            }
        }
    } else if v.get("shards_expected").is_some() {
        // `verify`: a summary, and a failure exit when anything is short.
        let (expected, present) = (
            v["shards_expected"].as_u64().unwrap_or(0),
            v["shards_present"].as_u64().unwrap_or(0),
        );
        let short = v["blocks_short"].as_u64().unwrap_or(0);
        let lost = v["blocks_lost"].as_u64().unwrap_or(0);
        crate::say(&format!(
            "{} blocks, {present} of {expected} shards present and intact; {} blocks complete\n",
            v["blocks"], v["blocks_complete"]
        ));
        if lost > 0 {
            crate::say(&format!(
                "{lost} blocks have fewer than K shards: these files cannot be read:\n"
            ));
            for f in v["lost_files"].as_array().into_iter().flatten() {
                crate::say(&format!("  {}\n", f.as_str().unwrap_or("")));
            }
        }
        if short > 0 || present < expected {
            bail!(
                "{short} blocks are missing shards ({} shards missing); repair rebuilds them while K remain",
                expected - present
            );
        }
    } else {
        crate::say(&format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    Ok(())
}
