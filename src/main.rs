//! The `strata` command line. Argument parsing and wiring only: every verb
//! calls into the library crates.

mod bench;
mod bench_cluster;
mod bench_node;
mod bench_sync;
mod chaos;
mod cli;
mod cluster;
mod dev;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

/// Request handling allocates and frees many small buffers on every core,
/// often freeing on another thread than the one that allocated; jemalloc's
/// thread caches and arenas cost a fraction of the system allocator's here
/// (see BENCHMARKS.md) and keep resident memory bounded.
#[global_allocator]
static ALLOC: Allocator = Allocator(tikv_jemallocator::Jemalloc);

/// jemalloc with zeroed allocations of up to [`MEMSET_ZEROED_UP_TO`]
/// bytes cleared by `memset` instead of by jemalloc.
///
/// For a large zeroed allocation served from a freed extent, jemalloc
/// hands the pages back to the kernel (`madvise`) to get zeroed ones, and
/// every page then faults on first touch. The network read path allocates
/// a zeroed buffer per frame (the yamux frame body, the shard payload), so
/// under 16 concurrent uploads this was 8 % of all node CPU; clearing the
/// still-resident pages costs a fraction of that. Bigger zeroed
/// allocations keep jemalloc's path, where untouched pages cost nothing.
struct Allocator(tikv_jemallocator::Jemalloc);

const MEMSET_ZEROED_UP_TO: usize = 16 << 20;

// SAFETY: every method forwards to jemalloc with the caller's layout;
// `alloc_zeroed` returns jemalloc's allocation after writing zeros over
// exactly `layout.size()` bytes of it, which is what the contract asks.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > MEMSET_ZEROED_UP_TO {
            return unsafe { self.0.alloc_zeroed(layout) };
        }
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "strata: a self-hosted distributed drive"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the drive on this machine with everything embedded (no other service needed).
    Dev(dev::DevArgs),
    /// Run one storage node from a configuration file.
    Serve {
        /// The node's TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Write the configs, keys and certificates of a new cluster.
    InitCluster(cluster::InitArgs),
    /// Administer a running cluster over its HTTPS admin API.
    Admin(cluster::AdminArgs),
    /// Log in to a drive and save the session for the other verbs.
    Login(cli::LoginArgs),
    /// List a folder of the drive.
    Ls(cli::LsArgs),
    /// Upload a local file.
    Put(cli::PutArgs),
    /// Download a file.
    Get(cli::GetArgs),
    /// Delete a file or folder (history is kept).
    Rm(cli::PathArgs),
    /// Move or rename.
    Mv(cli::MvArgs),
    /// Versions of a file.
    History(cli::PathArgs),
    /// Restore an old version as the newest.
    Restore(cli::RestoreArgs),
    /// Share a file or folder with another user; list or end shares.
    Share(cli::ShareArgs),
    /// Keep a local folder and the drive identical.
    Sync(cli::SyncArgs),
    /// Fault injection against a cluster of real nodes, with an oracle.
    Chaos {
        #[command(subcommand)]
        which: chaos::ChaosCmd,
    },
    /// Measure the block pipeline and the whole drive.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCmd,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Resolves on Ctrl-C or SIGTERM.
/// Installs the SIGINT and SIGTERM handlers now (a signal that arrives
/// before the returned future is awaited is not lost, and never kills the
/// process the default way); the future completes on either.
pub fn shutdown_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }),
            _ => Box::pin(async {
                let _ = tokio::signal::ctrl_c().await;
            }),
        }
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Writes to stdout; a closed stdout (the reader went away) must not stop a server.
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// A node and the HTTPS front end serving it.
pub struct Running {
    pub node: strata_node::Node,
    pub http: strata_gateway::HttpServer,
}

impl Running {
    /// Binds the API's port (so the node knows its URL), starts the node,
    /// then serves HTTPS from it.
    pub async fn start(cfg: cluster_config::Config) -> anyhow::Result<Self> {
        let listener = strata_gateway::Listener::bind(&cfg).await?;
        let node =
            strata_node::Node::start(cfg, Arc::new(cluster_config::SystemClock), listener.url())
                .await?;
        let http = match strata_gateway::HttpServer::start(&node, listener) {
            Ok(h) => h,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };
        Ok(Self { node, http })
    }

    pub fn url(&self) -> String {
        self.http.url()
    }

    /// Stops accepting and drains requests, then stops the node (background
    /// work, request work, Raft, disks): each stage awaited.
    pub async fn shutdown(self) {
        self.http.shutdown().await;
        self.node.shutdown().await;
    }
}

async fn serve(config: PathBuf) -> anyhow::Result<()> {
    let stop = shutdown_signal();
    let cfg = cluster_config::Config::load(&config)?;
    let running = Running::start(cfg).await?;
    say(&format!("strata node serving {}\n", running.url()));
    stop.await;
    eprintln!("stopping…");
    running.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    // Everything strata creates (metadata, shard packs, keys, profiles) is
    // private to the user it runs as.
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    // The chaos harness injects network faults in a network namespace of
    // its own: entered here, before any thread exists, so every thread
    // and every node it starts is inside.
    let network = match &cli.cmd {
        Cmd::Chaos {
            which: chaos::ChaosCmd::Run(args),
        } if args.wants_network() => strata_chaos::enter_private_network(),
        _ => Err("not asked for".into()),
    };
    // The simulation's nodes say what every fault does to them: thousands
    // of seeds would drown the report, so only the report shows unless
    // RUST_LOG asks for more.
    let quiet = matches!(
        &cli.cmd,
        Cmd::Chaos {
            which: chaos::ChaosCmd::Sim(_)
        }
    );
    init_logging(if quiet {
        "off"
    } else {
        "info,openraft=warn,fjall=warn"
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Dev(args) => dev::run(args).await,
            Cmd::Serve { config } => serve(config).await,
            Cmd::Bench { which } => bench::run(which).await,
            Cmd::Chaos { which } => chaos::run(which, network).await,
            Cmd::InitCluster(args) => cluster::init(args),
            Cmd::Login(a) => cli::login(a).await,
            Cmd::Ls(a) => cli::ls(a).await,
            Cmd::Put(a) => cli::put(a).await,
            Cmd::Get(a) => cli::get(a).await,
            Cmd::Rm(a) => cli::rm(a).await,
            Cmd::Mv(a) => cli::mv(a).await,
            Cmd::History(a) => cli::history(a).await,
            Cmd::Restore(a) => cli::restore(a).await,
            Cmd::Share(a) => cli::share(a).await,
            Cmd::Sync(a) => cli::sync(a).await,
            Cmd::Admin(args) => cluster::admin(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}
