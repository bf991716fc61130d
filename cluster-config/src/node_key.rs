//! A node's libp2p identity: an ed25519 key in a file only its owner reads.

use std::path::Path;

use libp2p_identity::{Keypair, PeerId};

use crate::error::ConfigError;
use crate::secrets::{check_private, write_private};

/// Loads a node key written by `generate_node_key`.
pub fn load_node_key(path: &Path) -> Result<Keypair, ConfigError> {
    check_private(path)?;
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Keypair::from_protobuf_encoding(&bytes).map_err(|e| ConfigError::BadNodeKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a fresh ed25519 key (mode 0600) and returns its peer id.
pub fn generate_node_key(path: &Path) -> Result<PeerId, ConfigError> {
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .map_err(|e| ConfigError::BadNodeKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    write_private(path, &bytes)?;
    Ok(key.public().to_peer_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.key");
        let id = generate_node_key(&p).unwrap();
        assert_eq!(load_node_key(&p).unwrap().public().to_peer_id(), id);
        std::fs::write(dir.path().join("bad.key"), b"nonsense").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("bad.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        assert!(matches!(
            load_node_key(&dir.path().join("bad.key")),
            Err(ConfigError::BadNodeKey { .. })
        ));
    }
}
