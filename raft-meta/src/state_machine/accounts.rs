//! Users, devices and sessions.

use cluster_config::{DeviceId, UserId};

use super::tx::Tx;
use super::Step;
use crate::keys;
use crate::records::{DeviceRecord, SessionRecord, UserRecord};
use crate::types::{CommandError, Output};

pub const MAX_USERNAME_LEN: usize = 64;
pub const MAX_DEVICE_NAME_LEN: usize = 64;

/// Usernames are ASCII letters, digits, `.`, `_` and `-`, compared without case.
pub fn normalize_username(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USERNAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    ok.then(|| name.to_ascii_lowercase())
}

pub(super) fn create_user(
    tx: &mut Tx<'_>,
    at: u64,
    user: &UserId,
    username: &str,
    password_hash: &str,
    quota_bytes: u64,
    admin: bool,
) -> Step<Output> {
    let name = normalize_username(username)
        .ok_or_else(|| CommandError::BadRequest("invalid username".into()))?;
    if tx.get_raw(&keys::username(&name))?.is_some() {
        return Err(CommandError::UsernameTaken.into());
    }
    if tx.get_raw(&keys::user(user))?.is_some() {
        return Err(CommandError::BadRequest("user id already in use".into()).into());
    }
    tx.put_raw(keys::username(&name), user.as_bytes().to_vec());
    tx.put(
        keys::user(user),
        &UserRecord {
            username: name,
            password_hash: password_hash.to_string(),
            quota_bytes,
            used_bytes: 0,
            reserved_bytes: 0,
            next_seq: 1,
            journal_floor: 1,
            created_ms: at,
            admin,
        },
    );
    Ok(Output::Done)
}

pub(super) fn login(
    tx: &mut Tx<'_>,
    at: u64,
    user: &UserId,
    token_hash: &[u8; 32],
    device: &DeviceId,
    device_name: &str,
    expires_ms: u64,
) -> Step<Output> {
    if tx.get_raw(&keys::user(user))?.is_none() {
        return Err(CommandError::NoSuchUser.into());
    }
    if device_name.is_empty()
        || device_name.len() > MAX_DEVICE_NAME_LEN
        || device_name.chars().any(char::is_control)
    {
        return Err(CommandError::BadRequest("invalid device name".into()).into());
    }
    // A device that logs in again under its name keeps its id.
    let mut device_id = *device;
    let mut known = false;
    for (k, v) in tx.scan(&keys::devices_of(user))? {
        let rec: DeviceRecord = crate::records::decode("device", &v)?;
        if rec.name == device_name {
            if let Some(id) = DeviceId::from_slice(&k[1 + 16..]) {
                device_id = id;
                known = true;
                break;
            }
        }
    }
    if !known {
        tx.put(
            keys::device(user, &device_id),
            &DeviceRecord {
                name: device_name.to_string(),
                created_ms: at,
            },
        );
    }
    tx.put(
        keys::session(user, token_hash),
        &SessionRecord {
            device_id,
            created_ms: at,
            expires_ms,
        },
    );
    Ok(Output::LoggedIn { device: device_id })
}

pub(super) fn logout(tx: &mut Tx<'_>, user: &UserId, token_hash: &[u8; 32]) -> Step<Output> {
    tx.del(keys::session(user, token_hash));
    Ok(Output::Done)
}
