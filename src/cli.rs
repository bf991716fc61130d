//! The drive verbs: `strata login`, `ls`, `put`, `get`, `rm`, `mv`,
//! `history`, `restore`, `share`, `sync`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use futures::StreamExt;
use strata_client::profile::{default_dir, Profile};
use strata_client::Client;

#[derive(Args, Clone)]
pub struct Common {
    /// Where the login is saved (default $STRATA_PROFILE or ~/.config/strata).
    #[arg(long, global = true)]
    profile: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

impl Common {
    fn dir(&self) -> PathBuf {
        self.profile.clone().unwrap_or_else(default_dir)
    }

    fn load(&self) -> anyhow::Result<(Profile, Client)> {
        let p = Profile::load(&self.dir()).context("not logged in: run `strata login` first")?;
        let c = p.client(0)?;
        Ok((p, c))
    }
}

#[derive(Args)]
pub struct LoginArgs {
    #[arg(long)]
    server: String,
    #[arg(long)]
    username: String,
    /// Read the password from standard input (for scripts).
    #[arg(long)]
    password_stdin: bool,
    /// CA certificate to trust (the one `strata dev` or `init-cluster` wrote).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This device's name, shown in history and conflicted copies.
    #[arg(long)]
    device: Option<String>,
    #[command(flatten)]
    common: Common,
}

fn say_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    crate::say(&format!("{}\n", serde_json::to_string_pretty(v)?));
    Ok(())
}

pub async fn login(a: LoginArgs) -> anyhow::Result<()> {
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        bail!("give the password on standard input with --password-stdin");
    };
    let ca = a.ca.map(|p| p.canonicalize()).transpose()?;
    let mut c = match &ca {
        Some(ca) => Client::from_ca_file(&a.server, ca)?,
        None => Client::new(&a.server, None)?,
    };
    let device = a.device.unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "cli".into())
    });
    let r = c.login(&a.username, &password, Some(&device)).await?;
    let mut servers = vec![a.server.trim_end_matches('/').to_string()];
    if let Ok(nodes) = c.cluster_nodes().await {
        for n in nodes {
            if !servers.contains(&n) {
                servers.push(n);
            }
        }
    }
    let profile = Profile {
        servers,
        ca,
        username: a.username.clone(),
        device,
        token: r.token,
    };
    profile.save(&a.common.dir())?;
    if a.common.json {
        return say_json(
            &serde_json::json!({"username": a.username, "servers": profile.servers, "expires_at": r.expires_at}),
        );
    }
    crate::say(&format!(
        "logged in as {} ({} server(s))\n",
        a.username,
        profile.servers.len()
    ));
    Ok(())
}

#[derive(Args)]
pub struct PathArgs {
    path: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct LsArgs {
    #[arg(default_value = "/")]
    path: String,
    #[arg(long, short)]
    recursive: bool,
    #[command(flatten)]
    common: Common,
}

pub async fn ls(a: LsArgs) -> anyhow::Result<()> {
    let (_, c) = a.common.load()?;
    let r = c.list(&a.path, a.recursive).await?;
    if a.common.json {
        return say_json(&r);
    }
    for e in r.entries {
        let kind = if e.kind == strata_api::EntryKind::Folder {
            "d"
        } else {
            "-"
        };
        crate::say(&format!(
            "{kind} {:>12} v{:<4} {}  {}\n",
            e.size, e.version, e.modified_at, e.path
        ));
    }
    Ok(())
}

fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(what.to_string());
    b
}

#[derive(Args)]
pub struct PutArgs {
    local: PathBuf,
    remote: String,
    #[command(flatten)]
    common: Common,
}

pub async fn put(a: PutArgs) -> anyhow::Result<()> {
    let (_, c) = a.common.load()?;
    let len = std::fs::metadata(&a.local)
        .with_context(|| format!("{}", a.local.display()))?
        .len();
    let progress = (!a.common.json).then(|| bar(len, "put"));
    let file = tokio::fs::File::open(&a.local).await?;
    let pb = progress.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map(move |r| {
        if let (Ok(b), Some(pb)) = (&r, &pb) {
            pb.inc(b.len() as u64);
        }
        r
    });
    let meta = c.upload_stream(&a.remote, len, stream).await?;
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if a.common.json {
        return say_json(&meta);
    }
    crate::say(&format!(
        "{} ({} bytes, version {})\n",
        meta.path, meta.size, meta.version
    ));
    Ok(())
}

#[derive(Args)]
pub struct GetArgs {
    remote: String,
    local: PathBuf,
    #[command(flatten)]
    common: Common,
}

pub async fn get(a: GetArgs) -> anyhow::Result<()> {
    let (_, c) = a.common.load()?;
    let meta = c.metadata(&a.remote).await?;
    let progress = (!a.common.json).then(|| bar(meta.size, "get"));
    let tmp = strata_client::transfer::temp_beside(&a.local);
    let mut f = tokio::fs::File::create(&tmp).await?;
    let mut s = c.download_stream(&a.remote).await?;
    let mut hasher = blake3::Hasher::new();
    while let Some(piece) = s.next().await {
        let piece = piece?;
        hasher.update(&piece);
        tokio::io::AsyncWriteExt::write_all(&mut f, &piece).await?;
        if let Some(pb) = &progress {
            pb.inc(piece.len() as u64);
        }
    }
    f.sync_all().await?;
    if hasher.finalize().to_hex().as_str() != meta.content_hash {
        let _ = std::fs::remove_file(&tmp);
        bail!("the download does not match the file's content hash");
    }
    std::fs::rename(&tmp, &a.local)?;
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if a.common.json {
        return say_json(&meta);
    }
    crate::say(&format!(
        "{} -> {} ({} bytes)\n",
        meta.path,
        a.local.display(),
        meta.size
    ));
    Ok(())
}

pub async fn rm(a: PathArgs) -> anyhow::Result<()> {
    let (_, c) = a.common.load()?;
    c.delete(&a.path).await?;
    if a.common.json {
        return say_json(&serde_json::json!({"deleted": a.path}));
    }
    crate::say(&format!("deleted {}\n", a.path));
    Ok(())
}

#[derive(Args)]
pub struct MvArgs {
    from: String,
    to: String,
    #[command(flatten)]
    common: Common,
}

pub async fn mv(a: MvArgs) -> anyhow::Result<()> {
    let (_, c) = a.common.load()?;
    let m = c.move_entry(&a.from, &a.to).await?;
    if a.common.json {
        return say_json(&m);
    }
    crate::say(&format!("{} -> {}\n", a.from, m.path));
    Ok(())
}

pub async fn history(a: PathArgs) -> anyhow::Result<()> {
    let (_, c) = a.common.load()?;
    let h = c.history(&a.path).await?;
    if a.common.json {
        return say_json(&h);
    }
    for v in h.versions {
        let what = if v.deleted {
            "deleted".to_string()
        } else {
            format!("{} bytes", v.size)
        };
        crate::say(&format!(
            "v{:<4} {}  {:<14} {}\n",
            v.version, v.modified_at, what, v.modified_by_device
        ));
    }
    Ok(())
}

#[derive(Args)]
pub struct RestoreArgs {
    path: String,
    version: u64,
    #[command(flatten)]
    common: Common,
}

pub async fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let (_, c) = a.common.load()?;
    let m = c.restore(&a.path, a.version).await?;
    if a.common.json {
        return say_json(&m);
    }
    crate::say(&format!(
        "{} restored from version {} as version {}\n",
        m.path, a.version, m.version
    ));
    Ok(())
}

#[derive(Args)]
pub struct SyncArgs {
    /// The folder to keep in sync with the drive.
    dir: PathBuf,
    /// Full rescan period in seconds (file-system events cover the rest).
    #[arg(long, default_value_t = 60)]
    rescan_s: u64,
    /// Deletions held (not propagated) when more than half of at least this many.
    #[arg(long, default_value_t = 100)]
    mass_delete_min: usize,
    /// Apply a held mass deletion.
    #[arg(long)]
    allow_mass_delete: bool,
    /// Sync once and exit.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    common: Common,
}

pub async fn sync(a: SyncArgs) -> anyhow::Result<()> {
    let profile =
        Profile::load(&a.common.dir()).context("not logged in: run `strata login` first")?;
    std::fs::create_dir_all(&a.dir)?;
    let root = a.dir.canonicalize()?;
    let mut opts = strata_client::sync::Options::new(root.clone());
    opts.rescan = std::time::Duration::from_secs(a.rescan_s.max(1));
    opts.mass_delete_min = a.mass_delete_min;
    opts.allow_mass_delete = a.allow_mass_delete;
    opts.once = a.once;
    let signalled = crate::shutdown_signal();
    let agent = strata_client::sync::Agent::open(profile, opts).await?;
    let stop = strata_client::sync::tokio_util_stop::Stop::default();
    let s2 = stop.clone();
    tokio::spawn(async move {
        signalled.await;
        s2.trigger();
    });
    crate::say(&format!("syncing {}\n", root.display()));
    agent.run(stop).await?;
    Ok(())
}

#[derive(Args)]
pub struct ShareArgs {
    /// What to share (a file or folder of your drive).
    path: Option<String>,
    /// The username to share with.
    #[arg(long = "with", requires = "path")]
    with: Option<String>,
    /// `viewer` (read only) or `editor` (may change it).
    #[arg(long, default_value = "viewer")]
    role: String,
    /// List what you share and what is shared with you.
    #[arg(long, conflicts_with_all = ["path", "remove"])]
    list: bool,
    /// End a share (by its id, as `--list` shows it), or decline one
    /// offered to you.
    #[arg(long, conflicts_with = "path")]
    remove: Option<String>,
    /// Accept a share offered to you (by its id, as `--list` shows it).
    #[arg(long, conflicts_with_all = ["path", "remove"])]
    accept: Option<String>,
    #[command(flatten)]
    common: Common,
}

pub async fn share(a: ShareArgs) -> anyhow::Result<()> {
    let (_, c) = a.common.load()?;
    if let Some(id) = &a.accept {
        c.accept_share(id).await?;
        if a.common.json {
            return say_json(&serde_json::json!({ "accepted": id }));
        }
        crate::say(&format!("share {id} accepted\n"));
        return Ok(());
    }
    if let Some(id) = &a.remove {
        c.unshare(id).await?;
        if a.common.json {
            return say_json(&serde_json::json!({ "removed": id }));
        }
        crate::say(&format!("share {id} removed\n"));
        return Ok(());
    }
    if a.list || a.path.is_none() {
        let l = c.shares().await?;
        if a.common.json {
            return say_json(&l);
        }
        let mut out = String::new();
        let waiting = |s: &strata_api::ShareInfo| {
            if s.state == "pending" {
                " (waiting to be accepted)"
            } else {
                ""
            }
        };
        for s in &l.shared_by_me {
            out.push_str(&format!(
                "{}  {:<7} {} → {}{}\n",
                s.share_id,
                s.role,
                s.path,
                s.user,
                waiting(s)
            ));
        }
        for s in &l.shared_with_me {
            let hint = if s.state == "pending" {
                format!(" — offered to you: strata share --accept {}", s.share_id)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{}  {:<7} {} (from {}){hint}\n",
                s.share_id, s.role, s.path, s.owner
            ));
        }
        if out.is_empty() {
            out.push_str("nothing shared\n");
        }
        crate::say(&out);
        return Ok(());
    }
    let (Some(path), Some(user)) = (&a.path, &a.with) else {
        bail!("say who to share with: strata share PATH --with USER");
    };
    let id = c.share(path, user, &a.role).await?;
    if a.common.json {
        return say_json(&serde_json::json!({ "share_id": id }));
    }
    crate::say(&format!(
        "{path} offered to {user} as {} (share {id}); it appears in their /Shared once they accept it\n",
        a.role
    ));
    Ok(())
}
