//! `strata dev`: the embedded default. Lays out a data folder (secret, TLS
//! certificate, node config, admin password) on first start, reuses it
//! after, and runs the drive until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use cluster_config::generate::{
    ensure_secret, ensure_self_signed_tls, write_dev_node_config, DevSpec,
};
use cluster_config::secrets::write_private;
use cluster_config::ErasureProfile;

#[derive(Args)]
pub struct DevArgs {
    /// Where the drive keeps its data.
    #[arg(long, default_value = "./strata-data")]
    data: PathBuf,
    /// Address of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Storage nodes to run in this process (a real cluster: Raft over
    /// libp2p, erasure-coded shards across the nodes).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Serve plain HTTP (only behind a TLS-terminating proxy).
    #[arg(long)]
    insecure_http: bool,
}

const ADMIN: &str = "admin";

fn admin_password(data: &Path) -> anyhow::Result<String> {
    let path = data.join("admin-password");
    if !path.exists() {
        let pw = cluster_config::ids::to_hex(&rand_bytes());
        write_private(&path, format!("{pw}\n").as_bytes())?;
    }
    cluster_config::secrets::check_private(&path)?;
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

fn rand_bytes() -> [u8; 12] {
    let mut b = [0u8; 12];
    for (i, x) in cluster_config::UserId::random()
        .0
        .iter()
        .take(12)
        .enumerate()
    {
        b[i] = *x;
    }
    b
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    // Handlers first: a Ctrl-C or SIGTERM during start-up stops cleanly
    // once the drive is up, instead of killing it half-started.
    let stop = crate::shutdown_signal();
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    if args.nodes > 1 {
        return run_cluster(args, stop).await;
    }
    if args.data.join("cluster.json").exists() {
        bail!(
            "{} holds a multi-node drive; start it with the same --nodes",
            args.data.display()
        );
    }
    let data = args
        .data
        .canonicalize()
        .with_context(|| format!("resolving {}", args.data.display()))?;
    ensure_secret(&data.join("secret.key"))?;
    let tls = if args.insecure_http {
        None
    } else {
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        if !args.listen.ip().is_unspecified() && !names.contains(&args.listen.ip().to_string()) {
            names.push(args.listen.ip().to_string());
        }
        let (paths, created) = ensure_self_signed_tls(&data.join("tls"), &names)?;
        if created {
            eprintln!(
                "generated a self-signed TLS certificate for {}",
                names.join(", ")
            );
        }
        Some(paths)
    };
    let spec = DevSpec {
        data_dir: data.clone(),
        listen: args.listen,
        node_id: 1,
        erasure: ErasureProfile { data: 2, parity: 1 },
        insecure_http: args.insecure_http,
    };
    let (config_path, config) = write_dev_node_config(&spec, tls.as_ref())?;
    // The node creates the admin account from this file before it serves
    // a request, so nobody can sign up under the admin's name first.
    admin_password(&data)?;
    let server = crate::Running::start(config)
        .await
        .with_context(|| format!("starting the node of {}", config_path.display()))?;
    println!("strata dev: serving {}", server.url());
    if let Some(t) = &tls {
        println!("  TLS certificate to trust: {}", t.ca.display());
    }
    println!("{}", login_line(&server, &data));
    println!("  data: {}", data.display());
    println!("  press Ctrl-C to stop");
    stop.await;
    eprintln!("stopping…");
    server.shutdown().await;
    Ok(())
}

/// The admin login the banner prints: the bootstrap file's password, or a
/// note that it was changed since (so the banner never prints a password
/// that does not work).
fn login_line(server: &crate::Running, data: &Path) -> String {
    let file = data.join("admin-password");
    if server.node.admin_password_works() {
        format!("  login: {ADMIN} (password in {})", file.display())
    } else {
        format!(
            "  login: {ADMIN} (its password was changed since it was written to {})",
            file.display()
        )
    }
}

/// Ports `base..base + 2n` free on `ip`, near `base` (or anywhere for 0).
fn free_ports(ip: std::net::IpAddr, base: u16, n: usize) -> anyhow::Result<u16> {
    let fits = |b: u16| {
        (0..2 * n).all(|i| {
            b.checked_add(i as u16)
                .is_some_and(|p| std::net::TcpListener::bind(SocketAddr::new(ip, p)).is_ok())
        })
    };
    if base != 0 {
        return if fits(base) {
            Ok(base)
        } else {
            bail!(
                "ports {base}..{} on {ip} are not all free",
                base as usize + 2 * n
            )
        };
    }
    for _ in 0..100 {
        let b = 20_000 + (rand_bytes()[0] as u16 as u32 * 157 % 20_000) as u16 * 2;
        if fits(b) {
            return Ok(b);
        }
    }
    bail!("no free port range on {ip}")
}

/// `strata dev --nodes N` (N > 1): a whole cluster in this process.
async fn run_cluster(
    args: DevArgs,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> anyhow::Result<()> {
    if args.insecure_http {
        bail!("--insecure-http is for a single node behind a TLS proxy; use --nodes 1");
    }
    let data = args
        .data
        .canonicalize()
        .with_context(|| format!("resolving {}", args.data.display()))?;
    let manifest_path = data.join("cluster.json");
    if data.join("node-1").join("node.toml").exists() && !manifest_path.exists() {
        bail!(
            "{} holds a single-node drive; start it with --nodes 1",
            data.display()
        );
    }
    if !manifest_path.exists() {
        let base = free_ports(args.listen.ip(), args.listen.port(), args.nodes)?;
        cluster_config::generate::init_cluster(&cluster_config::generate::ClusterSpec {
            nodes: args.nodes,
            spare: 0,
            out: data.clone(),
            erasure: None,
            host: args.listen.ip().to_string(),
            base_port: base,
            // Two disks per node: with a node down, a block still lands
            // K+1 shards on distinct disks, so writes go on.
            disks_per_node: 2,
            repair_grace: None,
            zones: Vec::new(),
            extra_toml: String::new(),
        })?;
        std::fs::create_dir_all(data.join("tls"))?;
        std::fs::copy(data.join("ca.pem"), data.join("tls").join("cert.pem"))?;
        eprintln!(
            "generated a {}-node cluster in {}",
            args.nodes,
            data.display()
        );
    }
    let manifest: cluster_config::generate::ClusterManifest =
        serde_json::from_slice(&std::fs::read(&manifest_path)?)?;
    if manifest.nodes.len() != args.nodes {
        bail!(
            "{} holds a {}-node drive; start it with --nodes {}",
            data.display(),
            manifest.nodes.len(),
            manifest.nodes.len()
        );
    }
    let starts = manifest.nodes.iter().map(|n| {
        let path = PathBuf::from(&n.config);
        async move {
            let config = cluster_config::Config::load(&path)?;
            crate::Running::start(config)
                .await
                .with_context(|| format!("starting node {}", path.display()))
        }
    });
    let servers: Vec<crate::Running> = futures::future::join_all(starts)
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    // The leader creates the admin account; wait for it before saying "ready".
    for _ in 0..300 {
        if matches!(
            servers[0].node.meta().local().user_by_name(ADMIN),
            Ok(Some(_))
        ) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut banner = format!("strata dev: serving {}\n", servers[0].url());
    for s in &servers[1..] {
        banner.push_str(&format!("  also serving {}\n", s.url()));
    }
    banner.push_str(&format!(
        "  TLS certificate (the cluster's CA): {}\n{}\n  data: {} ({} nodes, erasure {})\n  press Ctrl-C to stop\n",
        data.join("tls").join("cert.pem").display(),
        login_line(&servers[0], &data),
        data.display(),
        args.nodes,
        manifest.erasure,
    ));
    crate::say(&banner);
    stop.await;
    eprintln!("stopping…");
    for s in servers {
        s.shutdown().await;
    }
    Ok(())
}
