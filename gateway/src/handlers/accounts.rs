//! Signup, login, logout, account.

use cluster_config::{DeviceId, UserId};
use http::StatusCode;
use raft_meta::{normalize_username, Command, Output};
use strata_api::{Account, LoginRequest, LoginResponse, SignupRequest, SignupResponse};

use super::{empty, json, rfc3339, Response};
use crate::app::App;
use crate::auth::{self, Caller, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

async fn hash_blocking(app: &App, password: String) -> ApiResult<String> {
    let _slot = app
        .password_slots
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

async fn verify_blocking(app: &App, password: String, phc: String) -> ApiResult<bool> {
    let _slot = app
        .password_slots
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    tokio::task::spawn_blocking(move || auth::verify_password(&password, &phc))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

pub async fn signup(app: &App, mut req: Req) -> ApiResult<Response> {
    if !app.config.accounts.open_signup {
        return Err(ApiError::forbidden("signup is closed on this drive"));
    }
    let body: SignupRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let name = normalize_username(&body.username)
        .ok_or_else(|| ApiError::bad_request("username must be 1-64 of A-Z a-z 0-9 . _ -"))?;
    let n = body.password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        return Err(ApiError::bad_request(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    if app.meta.local().user_by_name(&name)?.is_some() {
        return Err(ApiError::conflict("username is taken"));
    }
    let password_hash = hash_blocking(app, body.password).await?;
    let user = UserId::random();
    let admin = app
        .config
        .accounts
        .admins
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&name));
    app.meta
        .write(Command::CreateUser {
            user,
            username: name.clone(),
            password_hash,
            quota_bytes: app.config.limits.default_quota_bytes,
            admin,
        })
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
    if body.password.len() > MAX_PASSWORD_LEN * 4 {
        return Err(ApiError::unauthorized());
    }
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
    let ok = verify_blocking(app, body.password, phc).await?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            tracing::info!("login refused");
            return Err(ApiError::unauthorized());
        }
    };
    let device_name = body.device_name.unwrap_or_else(|| "unnamed device".into());
    let (token, token_hash) = auth::new_token(&user);
    let expires_ms = app.clock.now_ms() + app.config.accounts.token_ttl.as_millis() as u64;
    let out = app
        .meta
        .write(Command::Login {
            user,
            token_hash,
            device: DeviceId::random(),
            device_name,
            expires_ms,
        })
        .await?;
    let Output::LoggedIn { device } = out else {
        return Err(ApiError::internal("unexpected login result"));
    };
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

pub async fn logout(app: &App, caller: &Caller) -> ApiResult<Response> {
    app.meta
        .write(Command::Logout {
            user: caller.user,
            token_hash: caller.token_hash,
        })
        .await?;
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
