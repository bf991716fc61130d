//! Per-user keys derived from the cluster secret with BLAKE3 `derive_key`.
//!
//! Two keys per user: the dedup key (block ids are BLAKE3 keyed by it, so
//! identical chunks dedup within one user's drive and nobody can probe
//! another user's content by hash) and the encryption key. The key version
//! is stored with every block so keys can be rotated later.

use cluster_config::{BlockId, ClusterSecret, UserId};

pub const KEY_VERSION: u8 = 1;

const DEDUP_CONTEXT: &str = "strata 2026-11 block dedup key v1";
const ENCRYPTION_CONTEXT: &str = "strata 2026-11 block encryption key v1";

#[derive(Clone)]
pub struct KeyRing {
    secret: ClusterSecret,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing(<redacted>)")
    }
}

impl KeyRing {
    pub fn new(secret: ClusterSecret) -> Self {
        Self { secret }
    }

    /// A key for one purpose of the whole cluster (session tokens, the
    /// node channel), derived from the secret under `context`.
    pub fn purpose_key(&self, context: &'static str) -> [u8; 32] {
        blake3::derive_key(context, self.secret.expose())
    }

    pub fn user(&self, user: &UserId) -> UserKeys {
        let mut material = [0u8; 48];
        material[..32].copy_from_slice(self.secret.expose());
        material[32..].copy_from_slice(user.as_bytes());
        UserKeys {
            dedup: blake3::derive_key(DEDUP_CONTEXT, &material),
            encryption: blake3::derive_key(ENCRYPTION_CONTEXT, &material),
        }
    }
}

/// One user's keys. Never logged.
#[derive(Clone)]
pub struct UserKeys {
    dedup: [u8; 32],
    encryption: [u8; 32],
}

impl std::fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKeys(<redacted>)")
    }
}

impl UserKeys {
    /// The id of a chunk of this user's content.
    pub fn block_id(&self, chunk: &[u8]) -> BlockId {
        BlockId(*blake3::keyed_hash(&self.dedup, chunk).as_bytes())
    }

    /// The key block ids are hashed with (handed to the account's own
    /// clients so they can name their chunks).
    pub fn dedup_key(&self) -> &[u8; 32] {
        &self.dedup
    }

    pub fn encryption_key(&self) -> &[u8; 32] {
        &self.encryption
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_user_and_per_purpose() {
        let ring = KeyRing::new(ClusterSecret::from_bytes([3; 32]));
        let a = ring.user(&UserId([1; 16]));
        let b = ring.user(&UserId([2; 16]));
        assert_ne!(a.block_id(b"x"), b.block_id(b"x"));
        assert_eq!(a.block_id(b"x"), ring.user(&UserId([1; 16])).block_id(b"x"));
        assert_ne!(a.dedup, a.encryption);
        let other = KeyRing::new(ClusterSecret::from_bytes([4; 32])).user(&UserId([1; 16]));
        assert_ne!(a.block_id(b"x"), other.block_id(b"x"));
        assert!(
            !format!("{a:?}").contains(&format!("{}", a.dedup[0]))
                || format!("{a:?}") == "UserKeys(<redacted>)"
        );
    }
}
