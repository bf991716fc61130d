//! `strata dev`: the embedded default. Lays out a data folder (secret, TLS
//! certificate, node config, admin password) on first start, reuses it
//! after, and runs the drive until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Storage nodes to run in this process.
    #[arg(long, default_value_t = 1)]
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
    if args.nodes != 1 {
        bail!("this version runs a single node: use --nodes 1");
    }
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
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
    let password = admin_password(&data)?;
    let server = strata_gateway::NodeServer::start(config, Arc::new(cluster_config::SystemClock))
        .await
        .with_context(|| format!("starting the node of {}", config_path.display()))?;
    server.ensure_user(ADMIN, &password, true).await?;
    println!("strata dev: serving {}", server.url());
    if let Some(t) = &tls {
        println!("  TLS certificate: {}", t.cert.display());
    }
    println!(
        "  login: {ADMIN} (password in {})",
        data.join("admin-password").display()
    );
    println!("  data: {}", data.display());
    println!("  press Ctrl-C to stop");
    crate::shutdown_signal().await;
    eprintln!("stopping…");
    server.shutdown().await;
    Ok(())
}
