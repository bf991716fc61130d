//! Passwords (argon2id), session tokens, and authenticating a request.
//!
//! A token is `st1_` + base64url(user id ‖ 32 random bytes). The store keeps
//! only BLAKE3 of the random part, keyed with a key derived from the
//! cluster secret, so a stolen metadata copy holds no usable token (nor a
//! way to test guesses without the secret), and the token itself says
//! which user's shard of metadata to look in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cluster_config::{DeviceId, UserId};
use http::HeaderMap;

use crate::app::App;
use crate::error::{ApiError, ApiResult};

const TOKEN_PREFIX: &str = "st1_";

pub const MIN_PASSWORD_LEN: usize = 10;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Passwords so common that guessing tries them first.
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "0123456789",
    "1111111111",
    "0000000000",
    "1q2w3e4r5t",
    "qwertyuiop",
    "1qaz2wsx3edc",
    "qwerty1234",
    "qwerty123456",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "iloveyou12",
    "abcdefghij",
    "abc1234567",
    "letmein123",
    "welcome123",
    "admin12345",
    "administrator",
    "changeme123",
    "sunshine12",
    "football12",
    "baseball12",
    "princess12",
    "monkey1234",
    "dragon1234",
    "superman12",
    "trustno1234",
    "starwars12",
    "whatever12",
    "michael123",
    "asdfghjkl1",
    "zxcvbnm123",
    "q1w2e3r4t5",
    "987654321a",
    "a123456789",
    "1234qwer!@",
    "strata1234",
    "strata-drive",
];

/// Refuses a password that is too short, too long, made of one repeated
/// character, a well-known one, or one containing the username.
pub fn check_strength(username: &str, password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        return Err(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        ));
    }
    let lower = password.to_lowercase();
    let mut chars = lower.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err("password must not be one character repeated".into());
    }
    if COMMON.contains(&lower.as_str()) {
        return Err("this password is one of the most common ones; choose another".into());
    }
    if username.len() >= 3 && lower.contains(&username.to_lowercase()) {
        return Err("password must not contain the username".into());
    }
    Ok(())
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub device: DeviceId,
    pub token_hash: [u8; 32],
}

impl Caller {
    /// Who acts, as the drive's operations take it.
    pub fn actor(&self) -> strata_node::drive::Actor {
        strata_node::drive::Actor {
            user: self.user,
            device: self.device,
        }
    }
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    strata_node::passwords::hash_password(password).map_err(|e| ApiError::internal(e.to_string()))
}

pub use strata_node::passwords::verify_password;

pub fn random_token_secret_hex() -> String {
    cluster_config::ids::to_hex(&rand::random::<[u8; 32]>())
}

/// Makes and reads session tokens; holds the key their stored hash is
/// keyed with.
pub struct Tokens {
    key: [u8; 32],
}

impl Tokens {
    /// The hash key comes from the cluster secret, so every node computes
    /// the same hash for a token.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A new token for `user` and the hash the store keeps.
    pub fn new_token(&self, user: &UserId) -> (String, [u8; 32]) {
        let secret: [u8; 32] = rand::random();
        let mut raw = [0u8; 48];
        raw[..16].copy_from_slice(user.as_bytes());
        raw[16..].copy_from_slice(&secret);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        (token, self.hash(&secret))
    }

    fn hash(&self, secret: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, secret).as_bytes()
    }

    /// Splits a token into its user id and stored hash.
    pub fn parse(&self, token: &str) -> Option<(UserId, [u8; 32])> {
        let body = token.strip_prefix(TOKEN_PREFIX)?;
        if body.len() != 64 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
        if raw.len() != 48 {
            return None;
        }
        let user = UserId::from_slice(&raw[..16])?;
        Some((user, self.hash(&raw[16..])))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks the bearer token of a request against the session table.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> ApiResult<Caller> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let (user, hash) = app.tokens.parse(token).ok_or_else(ApiError::unauthorized)?;
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
        let tokens = Tokens::new([9; 32]);
        let user = UserId([4; 16]);
        let (token, hash) = tokens.new_token(&user);
        assert_eq!(tokens.parse(&token), Some((user, hash)));
        assert!(tokens.parse("st1_short").is_none());
        assert!(tokens.parse(&token.replace("st1_", "st2_")).is_none());
        let mut bad = token.clone();
        bad.push('A');
        assert!(tokens.parse(&bad).is_none());
        // A different secret with the same user gives a different hash.
        let (other, other_hash) = tokens.new_token(&user);
        assert_ne!(token, other);
        assert_ne!(hash, other_hash);
        // Another cluster's key stores another hash for the same token.
        let (_, elsewhere) = Tokens::new([8; 32]).parse(&token).unwrap();
        assert_ne!(elsewhere, hash);
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check_strength("ann", "correct horse battery").is_ok());
        for bad in [
            "short",
            "aaaaaaaaaaaa",
            "password123",
            "ann-is-great-2026",
            &"x".repeat(1025),
        ] {
            assert!(check_strength("ann", bad).is_err(), "{bad}");
        }
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
