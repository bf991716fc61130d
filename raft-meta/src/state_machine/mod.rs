//! The metadata state machine: deterministic application of commands to the
//! tables in `keys`. Pure logic over a `Tx`; the openraft glue lives in
//! `store`.

mod accounts;
mod cluster;
pub use accounts::{normalize_username, MAX_ACCEPT_FROM, MAX_DEVICE_NAME_LEN};
#[cfg(test)]
use namespace::JOURNAL_KEEP;
mod journal;
mod namespace;
mod refs;
pub mod shares;
mod tree;
pub mod tx;
mod uploads;
mod versions;

use crate::types::{Command, CommandError, Output, Request, Response};
use tx::{Fatal, Tx};

/// Either the command was refused (deterministically) or storage failed.
pub(crate) enum Fail {
    Cmd(CommandError),
    Fatal(Fatal),
}

impl From<CommandError> for Fail {
    fn from(e: CommandError) -> Self {
        Fail::Cmd(e)
    }
}

impl From<Fatal> for Fail {
    fn from(e: Fatal) -> Self {
        Fail::Fatal(e)
    }
}

impl From<crate::table::DbError> for Fail {
    fn from(e: crate::table::DbError) -> Self {
        Fail::Fatal(Fatal::Storage(e))
    }
}

impl From<crate::records::DecodeError> for Fail {
    fn from(e: crate::records::DecodeError) -> Self {
        Fail::Fatal(Fatal::Corrupt(e))
    }
}

pub(crate) type Step<T> = Result<T, Fail>;

/// Applies one command. A refused command leaves no writes in `tx`.
pub fn apply(tx: &mut Tx<'_>, req: &Request) -> Result<Response, Fatal> {
    if let Command::Batch(reqs) = &req.cmd {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            if matches!(r.cmd, Command::Batch(_)) {
                out.push(Err(CommandError::BadRequest("nested batch".into())));
                continue;
            }
            out.push(apply(tx, r)?);
        }
        return Ok(Ok(Output::Batch(out)));
    }
    let result = dispatch(tx, req.at_ms, &req.cmd);
    match result {
        Ok(out) => {
            tx.keep();
            Ok(Ok(out))
        }
        Err(Fail::Cmd(e)) => {
            tx.discard();
            Ok(Err(e))
        }
        Err(Fail::Fatal(f)) => {
            tx.discard();
            Err(f)
        }
    }
}

fn dispatch(tx: &mut Tx<'_>, at: u64, cmd: &Command) -> Step<Output> {
    match cmd {
        Command::CreateUser {
            user,
            username,
            password_hash,
            quota_bytes,
            admin,
        } => accounts::create_user(tx, at, user, username, password_hash, *quota_bytes, *admin),
        Command::Login {
            user,
            token_hash,
            device,
            device_name,
            expires_ms,
        } => accounts::login(tx, at, user, token_hash, device, device_name, *expires_ms),
        Command::Logout { user, token_hash } => accounts::logout(tx, user, token_hash),
        Command::CommitFile(c) => namespace::commit_file(tx, at, c),
        Command::CreateFolder {
            user,
            path,
            device,
            id_seed,
        } => namespace::create_folder(tx, at, user, path, device, id_seed),
        Command::Delete { user, path, device } => namespace::delete(tx, at, user, path, device),
        Command::Move {
            user,
            from,
            to,
            device,
            id_seed,
        } => namespace::move_entry(tx, at, user, from, to, device, id_seed),
        Command::Restore {
            user,
            path,
            version,
            device,
            id_seed,
        } => namespace::restore(tx, at, user, path, *version, device, id_seed),
        Command::CreateUpload(c) => uploads::create(tx, at, c),
        Command::AdvanceUpload(c) => uploads::advance(tx, at, c),
        Command::CancelUpload { user, upload } => {
            uploads::cancel(tx, user, upload).map(|_| Output::Done)
        }
        Command::ExpireUploads { limit } => uploads::expire(tx, at, *limit),
        Command::SetLayout {
            expected_version,
            layout,
        } => cluster::set_layout(tx, *expected_version, layout),
        Command::UpdatePlacement { changes } => cluster::update_placement(tx, changes),
        Command::Batch(_) => Err(Fail::Cmd(CommandError::BadRequest("nested batch".into()))),
        Command::RegisterBlocks { user, blocks } => {
            namespace::register_blocks(tx, at, user, blocks)
        }
        Command::CreateShare {
            owner,
            path,
            sharee,
            role,
            share,
            device,
        } => shares::create(tx, at, owner, path, sharee, *role, share, device),
        Command::DeleteShare { by, share, device } => shares::delete(tx, at, by, share, device),
        Command::Bootstrap { layout, admin } => accounts::bootstrap(tx, at, layout, admin),
        Command::UpdateUser {
            user,
            quota_bytes,
            disabled,
            admin,
        } => accounts::update_user(tx, user, *quota_bytes, *disabled, *admin),
        Command::ChangePassword {
            user,
            password_hash,
            keep,
        } => accounts::change_password(tx, user, password_hash, keep.as_ref()),
        Command::OfferShare {
            owner,
            path,
            sharee,
            role,
            share,
            device,
        } => shares::offer(tx, at, owner, path, sharee, *role, share, device),
        Command::AcceptShare {
            sharee,
            share,
            device,
        } => shares::accept(tx, at, sharee, share, device),
        Command::SetShareAcceptance { user, from } => {
            accounts::set_share_acceptance(tx, user, from)
        }
        Command::ViaShare { share, sharee, cmd } => {
            shares::check_grant(tx, share, sharee, cmd)?;
            dispatch(tx, at, cmd)
        }
    }
}

/// Civil date (UTC) of a Unix time in milliseconds, as `YYYY-MM-DD`.
pub(crate) fn civil_date(at_ms: u64) -> String {
    let days = (at_ms / 86_400_000) as i64;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests;
