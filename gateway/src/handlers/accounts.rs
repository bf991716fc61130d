//! Signup, login, logout, the account, its sessions and its password.

use std::net::IpAddr;
use std::time::Duration;

use cluster_config::UserId;
use http::StatusCode;
use raft_meta::normalize_username;
use raft_meta::records::AcceptFrom;
use strata_api::{
    AcceptSharesFrom, Account, AccountPatch, LoginRequest, LoginResponse, PasswordChange,
    SessionInfo, SessionList, SignupRequest, SignupResponse,
};

use super::{empty, json, rfc3339, Response};
use crate::app::App;
use crate::auth::{self, Caller, MAX_PASSWORD_LEN};
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

/// Sessions one account keeps at most; a login past it ends the oldest.
pub const MAX_SESSIONS: usize = 100;

/// A password check or hash waits for one of the few argon2 slots; past
/// this many waiting, new ones are turned away at once instead of queueing
/// behind a flood of guesses.
const MAX_PASSWORD_QUEUE: usize = 32;

fn too_many(wait: Duration, what: &str) -> ApiError {
    let secs = wait.as_secs().max(1);
    ApiError::too_many_requests(format!("{what}; try again in {secs} s"), secs)
}

/// Password checks one client address may have waiting or running.
const MAX_PASSWORD_QUEUE_PER_ADDRESS: usize = 4;

async fn with_password_slot<T: Send + 'static>(
    app: &App,
    ip: IpAddr,
    work: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    let Some(_mine) = app
        .password_waiters
        .take(ip, MAX_PASSWORD_QUEUE_PER_ADDRESS)
    else {
        return Err(too_many(
            Duration::from_secs(1),
            "too many password checks from this address at once",
        ));
    };
    let queued = app
        .password_queue
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    struct Leave<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
    let _leave = Leave(&app.password_queue);
    if queued >= MAX_PASSWORD_QUEUE {
        return Err(too_many(
            Duration::from_secs(1),
            "the server is busy checking passwords",
        ));
    }
    let _slot = app
        .password_slots
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn hash_blocking(app: &App, ip: IpAddr, password: String) -> ApiResult<String> {
    with_password_slot(app, ip, move || auth::hash_password(&password)).await?
}

async fn verify_blocking(app: &App, ip: IpAddr, password: String, phc: String) -> ApiResult<bool> {
    with_password_slot(app, ip, move || auth::verify_password(&password, &phc)).await
}

fn client_ip(req: &Req) -> IpAddr {
    req.remote
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
}

pub async fn signup(app: &App, mut req: Req) -> ApiResult<Response> {
    if !app.config.accounts.open_signup {
        return Err(ApiError::forbidden("signup is closed on this drive"));
    }
    let body: SignupRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let name = normalize_username(&body.username)
        .ok_or_else(|| ApiError::bad_request("username must be 1-64 of A-Z a-z 0-9 . _ -"))?;
    auth::check_strength(&name, &body.password).map_err(ApiError::bad_request)?;
    // Nobody signs up before the drive is set up: the operator's admin
    // account comes first, and it never comes from choosing its name.
    let set_up = match app.meta.local().bootstrap()? {
        Some(b) => Some(b),
        None => app.read().await?.bootstrap()?,
    };
    if set_up.is_none() {
        return Err(ApiError::unavailable(
            "the drive is still being set up; try again in a moment",
        ));
    }
    if app.meta.local().user_by_name(&name)?.is_some() {
        return Err(ApiError::conflict("username is taken"));
    }
    app.signups
        .take(client_ip(&req))
        .map_err(|w| too_many(w, "too many accounts created from this address"))?;
    let password_hash = hash_blocking(app, client_ip(&req), body.password).await?;
    let user = app
        .accounts
        .sign_up(&name, password_hash, app.config.limits.default_quota_bytes)
        .await?;
    tracing::info!(user = %user, username = %name, "account created");
    Ok(json(
        StatusCode::CREATED,
        &SignupResponse {
            user_id: user.to_string(),
        },
    ))
}

pub async fn login(app: &App, mut req: Req) -> ApiResult<Response> {
    let body: LoginRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    if body.password.len() > MAX_PASSWORD_LEN * 4 || body.username.len() > 256 {
        return Err(ApiError::unauthorized());
    }
    let account = body.username.to_ascii_lowercase();
    let ip = client_ip(&req);
    app.logins
        .check(&account, ip)
        .map_err(|w| too_many(w, "too many failed logins"))?;
    let found = match app.meta.local().user_by_name(&body.username)? {
        Some(u) => Some(u),
        None => app
            .meta
            .linearizable()
            .await?
            .user_by_name(&body.username)?,
    };
    // Unknown user or wrong password: the same answer, after the same work.
    let (user, phc) = match &found {
        Some((id, rec)) => (Some(*id), rec.password_hash.clone()),
        None => (None, app.dummy_password_hash.clone()),
    };
    let ok = verify_blocking(app, ip, body.password, phc).await?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            app.logins.failed(&account, ip);
            tracing::info!("login refused");
            return Err(ApiError::unauthorized());
        }
    };
    app.logins.succeeded(&account, ip);
    if app.meta.local().user_settings(&user)?.disabled {
        return Err(ApiError::forbidden(
            "this account is disabled; ask the drive's administrator",
        ));
    }
    let device_name = body.device_name.unwrap_or_else(|| "unnamed device".into());
    if device_name.is_empty()
        || device_name.len() > raft_meta::MAX_DEVICE_NAME_LEN
        || device_name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "device_name must be 1 to {} bytes without control characters",
            raft_meta::MAX_DEVICE_NAME_LEN
        )));
    }
    prune_sessions(app, &user).await?;
    let (token, token_hash) = app.tokens.new_token(&user);
    let expires_ms = app.clock.now_ms() + app.config.accounts.token_ttl.as_millis() as u64;
    let device = app
        .accounts
        .log_in(user, token_hash, device_name, expires_ms)
        .await?;
    tracing::info!(user = %user, device = %device, "login");
    Ok(json(
        StatusCode::OK,
        &LoginResponse {
            token,
            device_id: device.to_string(),
            expires_at: rfc3339(expires_ms),
        },
    ))
}

/// Ends expired sessions, and the oldest ones past `MAX_SESSIONS - 1`, so
/// that logging in again and again never grows the metadata.
async fn prune_sessions(app: &App, user: &UserId) -> ApiResult<()> {
    let now = app.clock.now_ms();
    let mut sessions = app.meta.local().sessions(user)?;
    sessions.sort_by_key(|(_, s)| s.created_ms);
    let excess = sessions.len().saturating_sub(MAX_SESSIONS - 1);
    let ends: Vec<[u8; 32]> = sessions
        .iter()
        .enumerate()
        .filter(|(i, (_, s))| *i < excess || s.expires_ms <= now)
        .map(|(_, (h, _))| *h)
        .collect();
    for token_hash in ends {
        app.accounts.log_out(*user, token_hash).await?;
    }
    Ok(())
}

pub async fn logout(app: &App, caller: &Caller) -> ApiResult<Response> {
    app.accounts.log_out(caller.user, caller.token_hash).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn account(app: &App, caller: &Caller) -> ApiResult<Response> {
    let u = app
        .meta
        .local()
        .user(&caller.user)?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(json(
        StatusCode::OK,
        &Account {
            user_id: caller.user.to_string(),
            username: u.username,
            quota_bytes: u.quota_bytes,
            used_bytes: u.used_bytes,
            reserved_bytes: u.reserved_bytes,
            chunk_key: cluster_config::ids::to_hex(app.blocks.user_keys(&caller.user).dedup_key()),
        },
    ))
}

/// `PATCH /api/v1/account`: whose shares to take without asking.
pub async fn patch_account(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: AccountPatch = req.json(app.config.limits.max_json_body_bytes).await?;
    if let Some(from) = body.accept_shares_from {
        let from = match from {
            AcceptSharesFrom::Anyone(s) if s == "anyone" => AcceptFrom::Anyone,
            AcceptSharesFrom::Anyone(_) => {
                return Err(ApiError::bad_request(
                    "accept_shares_from is \"anyone\" or a list of usernames",
                ))
            }
            AcceptSharesFrom::Users(names) if names.is_empty() => AcceptFrom::Nobody,
            AcceptSharesFrom::Users(names) => {
                if names.len() > raft_meta::MAX_ACCEPT_FROM {
                    return Err(ApiError::bad_request(format!(
                        "at most {} people",
                        raft_meta::MAX_ACCEPT_FROM
                    )));
                }
                let reader = app.read().await?;
                let mut ids = Vec::new();
                for n in &names {
                    let (id, _) = reader
                        .user_by_name(n)?
                        .ok_or_else(|| ApiError::not_found_msg(format!("no such user: {n}")))?;
                    ids.push(id);
                }
                AcceptFrom::Users(ids)
            }
        };
        app.accounts.accept_shares_from(caller.user, from).await?;
    }
    account(app, caller).await
}

/// A session's public id: derived from its stored hash, so it names the
/// session without being usable as one.
fn session_id(token_hash: &[u8; 32]) -> String {
    let h = blake3::derive_key("strata session id v1", token_hash);
    cluster_config::ids::to_hex(&h[..12])
}

/// `GET /api/v1/account/sessions`.
pub async fn sessions(app: &App, caller: &Caller) -> ApiResult<Response> {
    let reader = app.read().await?;
    let now = app.clock.now_ms();
    let mut names = super::DeviceNames::new(reader, caller.user);
    let mut list: Vec<(u64, SessionInfo)> = reader
        .sessions(&caller.user)?
        .into_iter()
        .filter(|(_, s)| s.expires_ms > now)
        .map(|(h, s)| {
            (
                s.created_ms,
                SessionInfo {
                    id: session_id(&h),
                    device: names.name(&s.device_id),
                    created_at: rfc3339(s.created_ms),
                    expires_at: rfc3339(s.expires_ms),
                    current: h == caller.token_hash,
                },
            )
        })
        .collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.0));
    Ok(json(
        StatusCode::OK,
        &SessionList {
            sessions: list.into_iter().map(|(_, s)| s).collect(),
        },
    ))
}

/// `DELETE /api/v1/account/sessions/{id}`: signs that session out everywhere.
pub async fn end_session(app: &App, caller: &Caller, id: &str) -> ApiResult<Response> {
    let reader = app.read().await?;
    let (token_hash, _) = reader
        .sessions(&caller.user)?
        .into_iter()
        .find(|(h, _)| session_id(h) == id)
        .ok_or_else(|| ApiError::not_found_msg("no such session"))?;
    app.accounts.log_out(caller.user, token_hash).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /api/v1/account/password`: a new password; every other session ends.
pub async fn change_password(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: PasswordChange = req.json(app.config.limits.max_json_body_bytes).await?;
    let rec = app
        .meta
        .local()
        .user(&caller.user)?
        .ok_or_else(ApiError::unauthorized)?;
    let ip = client_ip(&req);
    app.logins
        .check(&rec.username, ip)
        .map_err(|w| too_many(w, "too many failed password checks"))?;
    if body.old.len() > MAX_PASSWORD_LEN * 4
        || !verify_blocking(app, ip, body.old, rec.password_hash.clone()).await?
    {
        app.logins.failed(&rec.username, ip);
        return Err(ApiError::forbidden("the current password is wrong"));
    }
    auth::check_strength(&rec.username, &body.new).map_err(ApiError::bad_request)?;
    let password_hash = hash_blocking(app, ip, body.new).await?;
    app.accounts
        .change_password(caller.user, password_hash, Some(caller.token_hash))
        .await?;
    tracing::info!(user = %caller.user, "password changed; other sessions ended");
    Ok(empty(StatusCode::NO_CONTENT))
}
