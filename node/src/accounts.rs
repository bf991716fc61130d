//! Accounts, sessions and the cluster layout as front ends change them:
//! the commands behind sign-up, login, logout, password changes, share
//! acceptance settings and the admin's account and layout changes. The
//! front end checks who may do what (and hashes passwords on its bounded
//! queue); this turns the decision into the one Raft command that carries
//! it.

use cluster_config::{DeviceId, UserId};
use raft_meta::records::{AcceptFrom, LayoutRecord};
use raft_meta::{Command, MetaClient, MetaError, Output};

/// A change to an account by an admin; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountChange {
    pub quota_bytes: Option<u64>,
    pub disabled: Option<bool>,
    pub admin: Option<bool>,
}

#[derive(Clone)]
pub struct Accounts {
    meta: MetaClient,
}

fn unexpected(what: &str, out: Output) -> MetaError {
    MetaError::Corrupt(format!("unexpected {what} result {out:?}"))
}

impl Accounts {
    pub fn new(meta: MetaClient) -> Self {
        Self { meta }
    }

    /// A new account (never an admin: admin rights come only from an
    /// admin, or from the operator at bootstrap).
    pub async fn sign_up(
        &self,
        username: &str,
        password_hash: String,
        quota_bytes: u64,
    ) -> Result<UserId, MetaError> {
        let user = UserId::random();
        self.meta
            .write(Command::CreateUser {
                user,
                username: username.to_string(),
                password_hash,
                quota_bytes,
                admin: false,
            })
            .await?;
        Ok(user)
    }

    /// A session for `user` on a new device, valid until `expires_ms`.
    pub async fn log_in(
        &self,
        user: UserId,
        token_hash: [u8; 32],
        device_name: String,
        expires_ms: u64,
    ) -> Result<DeviceId, MetaError> {
        match self
            .meta
            .write(Command::Login {
                user,
                token_hash,
                device: DeviceId::random(),
                device_name,
                expires_ms,
            })
            .await?
        {
            Output::LoggedIn { device } => Ok(device),
            other => Err(unexpected("login", other)),
        }
    }

    /// Ends one session (on every node once applied).
    pub async fn log_out(&self, user: UserId, token_hash: [u8; 32]) -> Result<(), MetaError> {
        self.meta
            .write(Command::Logout { user, token_hash })
            .await?;
        Ok(())
    }

    /// A new password; every session but `keep` ends.
    pub async fn change_password(
        &self,
        user: UserId,
        password_hash: String,
        keep: Option<[u8; 32]>,
    ) -> Result<(), MetaError> {
        self.meta
            .write(Command::ChangePassword {
                user,
                password_hash,
                keep,
            })
            .await?;
        Ok(())
    }

    /// Whose shares `user` takes without asking.
    pub async fn accept_shares_from(
        &self,
        user: UserId,
        from: AcceptFrom,
    ) -> Result<(), MetaError> {
        self.meta
            .write(Command::SetShareAcceptance { user, from })
            .await?;
        Ok(())
    }

    /// An admin changes an account.
    pub async fn change_account(
        &self,
        user: UserId,
        change: AccountChange,
    ) -> Result<(), MetaError> {
        self.meta
            .write(Command::UpdateUser {
                user,
                quota_bytes: change.quota_bytes,
                disabled: change.disabled,
                admin: change.admin,
            })
            .await?;
        Ok(())
    }

    /// An admin replaces the layout `expected_version` with `next`
    /// (compare-and-set: a concurrent change is never overwritten).
    pub async fn set_layout(
        &self,
        expected_version: u64,
        next: LayoutRecord,
    ) -> Result<(), MetaError> {
        self.meta
            .write(Command::SetLayout {
                expected_version,
                layout: next,
            })
            .await?;
        Ok(())
    }
}
