//! Identifier newtypes shared by every crate.
//!
//! Ids are fixed-width byte strings so they encode into the metadata
//! store's ordered keys without a separator, and print as lowercase hex on
//! the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a hex id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected_len} hex characters, got {got:?}")]
pub struct IdParseError {
    pub expected_len: usize,
    pub got: String,
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], IdParseError> {
    let err = || IdParseError {
        expected_len: N * 2,
        got: s.chars().take(80).collect(),
    };
    let bytes = s.as_bytes();
    if bytes.len() != N * 2 {
        return Err(err());
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(err)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(err)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

/// The `N` bytes that `s`, hex of exactly `2 * N` digits, spells.
pub fn from_hex<const N: usize>(s: &str) -> Result<[u8; N], IdParseError> {
    parse_hex(s)
}

/// Lowercase hex of a byte slice.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

macro_rules! id128 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            pub const LEN: usize = 16;

            /// A fresh random id (the proposer draws it; the state machine never does).
            pub fn random() -> Self {
                Self(rand::random())
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            pub fn from_slice(b: &[u8]) -> Option<Self> {
                Some(Self(b.try_into().ok()?))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&to_hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), to_hex(&self.0))
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex::<16>(s).map(Self)
            }
        }
    };
}

id128!(
    /// A user account.
    UserId
);
id128!(
    /// A file or folder in a user's tree; stable across moves and renames.
    EntryId
);
id128!(
    /// A device (one login of a client).
    DeviceId
);
id128!(
    /// A resumable upload session.
    UploadId
);
id128!(
    /// A share: one entry of one user's tree given to another user.
    ShareId
);

impl EntryId {
    /// Every user's root folder has this id; it needs no record.
    pub const ROOT: EntryId = EntryId([0u8; 16]);
}

/// A content block: BLAKE3 of the chunk, keyed by the owner's dedup key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockId(pub [u8; 32]);

impl BlockId {
    pub const LEN: usize = 32;

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Self(b.try_into().ok()?))
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({})", &to_hex(&self.0)[..16])
    }
}

impl FromStr for BlockId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex::<32>(s).map(Self)
    }
}

/// A storage node of the cluster. Never 0: there is no "no node" value, so
/// "not on any node" is spelled `Option<NodeId>` wherever it can happen.
///
/// Encodes as its number (serde, postcard, JSON), and decoding a 0 fails.
/// openraft's own node id type must have a `Default`, so the Raft layer
/// keeps plain `u64` ids and converts at that boundary (`get`, `new`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(std::num::NonZeroU64);

impl NodeId {
    /// Node 1: a single-node drive's id, and a cluster's first node.
    pub const FIRST: NodeId = NodeId(std::num::NonZeroU64::MIN);

    /// `None` for 0, which is not a node.
    pub const fn new(id: u64) -> Option<Self> {
        match std::num::NonZeroU64::new(id) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The number, as the Raft layer and the wire know it.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a node id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a node id is a whole number from 1, not {0:?}")]
pub struct NodeIdParseError(pub String);

impl FromStr for NodeId {
    type Err = NodeIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u64>()
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| NodeIdParseError(s.chars().take(40).collect()))
    }
}

impl From<NodeId> for u64 {
    fn from(id: NodeId) -> u64 {
        id.get()
    }
}

impl TryFrom<u64> for NodeId {
    type Error = NodeIdParseError;
    fn try_from(id: u64) -> Result<Self, Self::Error> {
        Self::new(id).ok_or_else(|| NodeIdParseError(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = UserId::random();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<UserId>().unwrap(), id);
    }

    #[test]
    fn node_ids_have_no_zero() {
        assert_eq!(NodeId::new(0), None);
        assert_eq!(NodeId::new(7).map(NodeId::get), Some(7));
        assert!("0".parse::<NodeId>().is_err());
        assert!("-1".parse::<NodeId>().is_err());
        assert_eq!("12".parse::<NodeId>().unwrap().get(), 12);
        // Encodes as its number; a 0 on the wire is refused.
        assert_eq!(
            serde_json::to_string(&NodeId::new(3).unwrap()).unwrap(),
            "3"
        );
        assert!(serde_json::from_str::<NodeId>("0").is_err());
        assert_eq!(serde_json::from_str::<NodeId>("5").unwrap().get(), 5);
    }

    #[test]
    fn bad_hex_is_an_error() {
        assert!("zz".parse::<UserId>().is_err());
        assert!("00".repeat(15).parse::<UserId>().is_err());
        assert!("g".repeat(32).parse::<UserId>().is_err());
        assert!("é".repeat(16).parse::<UserId>().is_err());
        assert!("ab".repeat(32).parse::<BlockId>().is_ok());
    }
}
