//! Password hashes: argon2id with OWASP's baseline parameters.
//!
//! Used by the node (the operator's bootstrap account) and by every front
//! end (sign-up, login, password change).

use argon2::{Algorithm, Argon2, Params, Version};
use argon2::{PasswordHasher, PasswordVerifier};

/// A password could not be hashed (a parameter problem, not the input's).
#[derive(Debug, thiserror::Error)]
#[error("password hashing: {0}")]
pub struct HashError(String);

fn argon() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC string of `password` with a random salt. Costs ~20 MiB and tens
/// of milliseconds: call it off the async runtime's threads.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt: [u8; 16] = rand::random();
    argon()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string (false for a malformed one).
pub fn verify_password(password: &str, phc: &str) -> bool {
    argon().verify_password(password.as_bytes(), phc).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a phc string"));
    }
}
