//! Passwords (argon2id), session tokens, and authenticating a request.
//!
//! A token is `st1_` + base64url(user id ‖ 32 random bytes). The store keeps
//! only BLAKE3 of the random part, keyed under the user id, so a stolen
//! metadata copy holds no usable token and the token itself says which
//! user's shard of metadata to look in.

use argon2::{Algorithm, Argon2, Params, Version};
use argon2::{PasswordHasher, PasswordVerifier};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cluster_config::{DeviceId, UserId};
use http::HeaderMap;

use crate::app::App;
use crate::error::{ApiError, ApiResult};

const TOKEN_PREFIX: &str = "st1_";

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub device: DeviceId,
    pub token_hash: [u8; 32],
}

fn argon() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt: [u8; 16] = rand::random();
    argon()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("password hashing: {e}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    argon().verify_password(password.as_bytes(), phc).is_ok()
}

pub fn random_token_secret_hex() -> String {
    cluster_config::ids::to_hex(&rand::random::<[u8; 32]>())
}

/// A new token for `user` and the hash the store keeps.
pub fn new_token(user: &UserId) -> (String, [u8; 32]) {
    let secret: [u8; 32] = rand::random();
    let mut raw = [0u8; 48];
    raw[..16].copy_from_slice(user.as_bytes());
    raw[16..].copy_from_slice(&secret);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    (token, token_hash(&secret))
}

fn token_hash(secret: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(blake3::hash(b"strata session token v1").as_bytes(), secret).as_bytes()
}

/// Splits a token into its user id and stored hash.
pub fn parse_token(token: &str) -> Option<(UserId, [u8; 32])> {
    let body = token.strip_prefix(TOKEN_PREFIX)?;
    if body.len() != 64 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
    if raw.len() != 48 {
        return None;
    }
    let user = UserId::from_slice(&raw[..16])?;
    Some((user, token_hash(&raw[16..])))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks the bearer token of a request against the session table.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> ApiResult<Caller> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let (user, hash) = parse_token(token).ok_or_else(ApiError::unauthorized)?;
    let mut session = app.meta.local().session(&user, &hash)?;
    if session.is_none() {
        // A login through another node may not have reached this one yet.
        session = app.meta.linearizable().await?.session(&user, &hash)?;
    }
    let session = session.ok_or_else(ApiError::unauthorized)?;
    if session.expires_ms <= app.clock.now_ms() {
        return Err(ApiError::unauthorized());
    }
    Ok(Caller {
        user,
        device: session.device_id,
        token_hash: hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let user = UserId([4; 16]);
        let (token, hash) = new_token(&user);
        assert_eq!(parse_token(&token), Some((user, hash)));
        assert!(parse_token("st1_short").is_none());
        assert!(parse_token(&token.replace("st1_", "st2_")).is_none());
        let mut bad = token.clone();
        bad.push('A');
        assert!(parse_token(&bad).is_none());
        // A different secret with the same user gives a different hash.
        let (other, other_hash) = new_token(&user);
        assert_ne!(token, other);
        assert_ne!(hash, other_hash);
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert!(bearer(&h).is_none());
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert!(bearer(&h).is_none());
    }
}
