//! Users, devices and sessions.

use cluster_config::{DeviceId, UserId};

use super::tx::Tx;
use super::Step;
use crate::keys;
use crate::records::{
    AcceptFrom, BootstrapRecord, DeviceRecord, LayoutRecord, SessionRecord, UserRecord,
    UserSettings,
};
use crate::types::{BootstrapAdmin, CommandError, Output};

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

/// Sets the drive up once: the first layout and the operator's admin.
pub(super) fn bootstrap(
    tx: &mut Tx<'_>,
    at: u64,
    layout: &Option<LayoutRecord>,
    admin: &Option<BootstrapAdmin>,
) -> Step<Output> {
    match tx.get::<BootstrapRecord>("bootstrap", &keys::bootstrap())? {
        // Set up already. A drive set up without an admin account (its
        // config named no password file) gets one the first time a
        // bootstrap brings one; nothing else ever changes.
        Some(b) if b.admin.is_some() || admin.is_none() => return Ok(Output::Done),
        Some(_) => {}
        None => {
            if let Some(first) = layout {
                if tx.get_raw(&keys::layout())?.is_none() {
                    super::cluster::set_layout(tx, 0, first)?;
                }
            }
        }
    }
    let admin_id = match admin {
        None => None,
        Some(a) => {
            let name = normalize_username(&a.username)
                .ok_or_else(|| CommandError::BadRequest("invalid admin username".into()))?;
            match tx.get_raw(&keys::username(&name))? {
                // A drive set up before bootstrap records existed: its
                // admin account is adopted, a plain account is not.
                Some(raw) => {
                    let id = UserId::from_slice(&raw)
                        .ok_or_else(|| CommandError::BadRequest("username index".into()))?;
                    let rec: UserRecord = tx
                        .get("user", &keys::user(&id))?
                        .ok_or(CommandError::NoSuchUser)?;
                    if !rec.admin {
                        return Err(CommandError::AdminNameTaken(name).into());
                    }
                    Some(id)
                }
                None => {
                    create_user(
                        tx,
                        at,
                        &a.user,
                        &name,
                        &a.password_hash,
                        a.quota_bytes,
                        true,
                    )?;
                    Some(a.user)
                }
            }
        }
    };
    tx.put(
        keys::bootstrap(),
        &BootstrapRecord {
            admin: admin_id,
            at_ms: at,
        },
    );
    Ok(Output::Done)
}

fn settings(tx: &Tx<'_>, user: &UserId) -> Step<UserSettings> {
    Ok(tx
        .get::<UserSettings>("user settings", &keys::user_settings(user))?
        .unwrap_or_default())
}

fn put_settings(tx: &mut Tx<'_>, user: &UserId, s: &UserSettings) {
    if *s == UserSettings::default() {
        tx.del(keys::user_settings(user));
    } else {
        tx.put(keys::user_settings(user), s);
    }
}

/// Ends every session of `user` except `keep`.
fn end_sessions(tx: &mut Tx<'_>, user: &UserId, keep: Option<&[u8; 32]>) -> Step<()> {
    let prefix = keys::sessions_of(user);
    for (k, _) in tx.scan(&prefix)? {
        if keep.is_some_and(|h| k[prefix.len()..] == h[..]) {
            continue;
        }
        tx.del(k);
    }
    Ok(())
}

/// An administrator's change to an account.
pub(super) fn update_user(
    tx: &mut Tx<'_>,
    user: &UserId,
    quota_bytes: Option<u64>,
    disabled: Option<bool>,
    admin: Option<bool>,
) -> Step<Output> {
    let key = keys::user(user);
    let mut rec: UserRecord = tx.get("user", &key)?.ok_or(CommandError::NoSuchUser)?;
    let boot: Option<BootstrapRecord> = tx.get("bootstrap", &keys::bootstrap())?;
    let is_operator = boot.and_then(|b| b.admin).as_ref() == Some(user);
    if is_operator && (admin == Some(false) || disabled == Some(true)) {
        return Err(CommandError::Forbidden(
            "the operator's admin account keeps its rights; change the bootstrap file instead"
                .into(),
        )
        .into());
    }
    if let Some(q) = quota_bytes {
        rec.quota_bytes = q;
    }
    if let Some(a) = admin {
        rec.admin = a;
    }
    tx.put(key, &rec);
    if let Some(d) = disabled {
        let mut s = settings(tx, user)?;
        s.disabled = d;
        put_settings(tx, user, &s);
        if d {
            end_sessions(tx, user, None)?;
        }
    }
    Ok(Output::Done)
}

pub(super) fn change_password(
    tx: &mut Tx<'_>,
    user: &UserId,
    password_hash: &str,
    keep: Option<&[u8; 32]>,
) -> Step<Output> {
    let key = keys::user(user);
    let mut rec: UserRecord = tx.get("user", &key)?.ok_or(CommandError::NoSuchUser)?;
    if password_hash.is_empty() || password_hash.len() > 512 {
        return Err(CommandError::BadRequest("invalid password hash".into()).into());
    }
    rec.password_hash = password_hash.to_string();
    tx.put(key, &rec);
    end_sessions(tx, user, keep)?;
    Ok(Output::Done)
}

/// People a user may name as trusted senders of shares, at most.
pub const MAX_ACCEPT_FROM: usize = 100;

pub(super) fn set_share_acceptance(
    tx: &mut Tx<'_>,
    user: &UserId,
    from: &AcceptFrom,
) -> Step<Output> {
    if tx.get_raw(&keys::user(user))?.is_none() {
        return Err(CommandError::NoSuchUser.into());
    }
    if let AcceptFrom::Users(list) = from {
        if list.len() > MAX_ACCEPT_FROM {
            return Err(CommandError::Limit(format!(
                "at most {MAX_ACCEPT_FROM} people can be trusted to share without asking"
            ))
            .into());
        }
    }
    let mut s = settings(tx, user)?;
    s.accept_shares_from = from.clone();
    put_settings(tx, user, &s);
    Ok(Output::Done)
}

/// Whether `user` takes shares from `owner` without accepting them.
pub(super) fn accepts_from(tx: &Tx<'_>, user: &UserId, owner: &UserId) -> Step<bool> {
    Ok(match settings(tx, user)?.accept_shares_from {
        AcceptFrom::Nobody => false,
        AcceptFrom::Anyone => true,
        AcceptFrom::Users(list) => list.contains(owner),
    })
}
