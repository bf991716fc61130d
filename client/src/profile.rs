//! A saved login: which servers, which CA, which session token. Written
//! only by its owner (mode 0600), since the token is a credential.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Client, ClientError, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Every node of the cluster (the first is tried first).
    pub servers: Vec<String>,
    pub ca: Option<PathBuf>,
    pub username: String,
    pub device: String,
    pub token: String,
}

/// `$STRATA_PROFILE`, else `$HOME/.config/strata`.
pub fn default_dir() -> PathBuf {
    if let Ok(p) = std::env::var("STRATA_PROFILE") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".config").join("strata")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Profile {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("profile.json");
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("{}: {e}", path.display())))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("profile.json");
        let tmp = dir.join("profile.json.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| ClientError::Protocol(e.to_string()))?;
        f.write_all(&json).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(())
    }

    /// A client for server `i` (wrapping around) with this session.
    pub fn client(&self, i: usize) -> Result<Client> {
        let server = self
            .servers
            .get(i % self.servers.len().max(1))
            .ok_or_else(|| ClientError::Protocol("the profile lists no server".into()))?;
        let c = match &self.ca {
            Some(ca) => Client::from_ca_file(server, ca)?,
            None => Client::new(server, None)?,
        };
        Ok(c.with_token(self.token.clone()))
    }
}
