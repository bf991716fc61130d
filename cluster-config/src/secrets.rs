//! The cluster master secret: read from a file that only its owner may read,
//! never from a command line, never printed.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::ids::to_hex;

/// 32 bytes from which every per-user key is derived.
#[derive(Clone)]
pub struct ClusterSecret([u8; 32]);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Loads the secret: 64 hex characters, optionally followed by a newline.
    /// Refuses a file that its group or others can read.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        check_private(path)?;
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = text.trim();
        let bad = |reason: &str| ConfigError::BadSecretFile {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if text.len() != 64 {
            return Err(bad("expected 64 hex characters (32 bytes)"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            let hi = (pair[0] as char)
                .to_digit(16)
                .ok_or_else(|| bad("not hex"))?;
            let lo = (pair[1] as char)
                .to_digit(16)
                .ok_or_else(|| bad("not hex"))?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Self(out))
    }

    /// Writes the secret to a new file with mode 0600.
    pub fn write_new(&self, path: &Path) -> Result<(), ConfigError> {
        write_private(path, format!("{}\n", to_hex(&self.0)).as_bytes())
    }
}

/// Creates (or replaces) a file readable only by its owner, fsynced.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = tmp_path(path);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Refuses files that the group or others may read or write.
pub fn check_private(path: &Path) -> Result<(), ConfigError> {
    let meta = fs::metadata(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::SecretFileTooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// Makes a data directory (metadata, shards) private to the service user:
/// created 0700 if missing; if the group or others may enter it, it and
/// everything under it are set to 0700 (directories) and 0600 (files).
/// The Raft log holds every user's password hash and the shard packs every
/// block: nobody else on the host reads them. Returns how many entries
/// were tightened.
pub fn secure_data_dir(path: &Path) -> Result<usize, ConfigError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ConfigError::Io { path: p, source }
    };
    if !path.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io(path))?;
        return Ok(0);
    }
    let mut tightened = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir).map_err(io(&dir))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
            tightened += 1;
        }
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let p = e.path();
            let ft = e.file_type().map_err(io(&p))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let m = e.metadata().map_err(io(&p))?;
                if m.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).map_err(io(&p))?;
                    tightened += 1;
                }
            }
        }
    }
    Ok(tightened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dirs_are_made_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh/meta");
        assert_eq!(secure_data_dir(&fresh).unwrap(), 0);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        // A directory an earlier version left open.
        let old = dir.path().join("old");
        fs::create_dir_all(old.join("packs")).unwrap();
        fs::write(old.join("packs/1.pack"), b"x").unwrap();
        for (p, m) in [
            (old.clone(), 0o755),
            (old.join("packs"), 0o755),
            (old.join("packs/1.pack"), 0o644),
        ] {
            fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
        }
        assert_eq!(secure_data_dir(&old).unwrap(), 3);
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join("packs")), 0o700);
        assert_eq!(mode(&old.join("packs/1.pack")), 0o600);
        assert_eq!(secure_data_dir(&old).unwrap(), 0);
    }

    #[test]
    fn round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        let s = ClusterSecret::random();
        s.write_new(&p).unwrap();
        assert_eq!(ClusterSecret::load(&p).unwrap().expose(), s.expose());
        assert!(!format!("{s:?}").contains(&to_hex(s.expose())[..8]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                ClusterSecret::load(&p),
                Err(ConfigError::SecretFileTooOpen { mode: 0o644, .. })
            ));
        }
    }

    #[test]
    fn malformed_secret_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_private(&p, b"abc\n").unwrap();
        assert!(matches!(
            ClusterSecret::load(&p),
            Err(ConfigError::BadSecretFile { .. })
        ));
    }
}
