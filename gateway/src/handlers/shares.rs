//! Sharing: `/api/v1/shares`, and the `/Shared/<owner>/<name>` view through
//! which every file endpoint reaches what others share with the caller.
//!
//! Every path a file endpoint receives goes through [`resolve`]: a path of
//! the caller's own tree maps to itself; a path under `/Shared` maps to the
//! owner's tree, with the share's role deciding whether writes are allowed.
//! The caller never learns anything about an owner's tree outside what was
//! shared (an unknown or revoked share is a plain `404`).

use cluster_config::{ShareId, UserId};
use http::StatusCode;
use raft_meta::records::{EntryKind, EntryRecord, ShareRecord, ShareRole};
use raft_meta::SHARED_ROOT;
use raft_meta::{Command, DrivePath, MetaReader, Output};
use strata_api::{ShareCreated, ShareInfo, ShareList, ShareRequest};

use super::{empty, json, rfc3339, Response};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;

/// What a caller may do at a resolved path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Own,
    Viewer,
    Editor,
}

/// A path of some user's tree, reached by the caller.
#[derive(Debug, Clone)]
pub struct Target {
    /// Whose tree (the caller's, or a share's owner).
    pub user: UserId,
    /// The path in that tree.
    pub path: DrivePath,
    pub access: Access,
    /// For a shared path: the shared entry's path in the owner's tree and
    /// where the caller sees it.
    mount: Option<(String, String)>,
    /// The share the path is reached through.
    share: Option<ShareId>,
}

impl Target {
    pub fn is_shared(&self) -> bool {
        self.mount.is_some()
    }

    /// The path is the shared entry itself (its mount point).
    pub fn is_mount(&self) -> bool {
        self.mount
            .as_ref()
            .is_some_and(|(root, _)| *root == self.path.to_string())
    }

    /// A path of the owner's tree as the caller sees it.
    pub fn show(&self, owner_path: &str) -> String {
        match &self.mount {
            None => owner_path.to_string(),
            Some((root, shown)) => match owner_path.strip_prefix(root.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{shown}{rest}"),
                // Outside the share (cannot happen for paths below it).
                _ => shown.clone(),
            },
        }
    }

    /// The command as this caller may propose it: a write in someone
    /// else's tree goes through the share, which the state machine checks
    /// again when it applies it (a share ended meanwhile stops it).
    pub fn command(&self, caller: &Caller, cmd: Command) -> Command {
        match self.share {
            Some(share) => Command::ViaShare {
                share,
                sharee: caller.user,
                cmd: Box::new(cmd),
            },
            None => cmd,
        }
    }

    /// Refuses a write through a viewer share.
    pub fn writable(&self) -> ApiResult<()> {
        match self.access {
            Access::Own | Access::Editor => Ok(()),
            Access::Viewer => Err(ApiError::forbidden(
                "this is shared with you as a viewer: it cannot be changed",
            )),
        }
    }
}

/// Where a path leads.
pub enum Place {
    Tree(Target),
    /// `/Shared`: one folder per user who shares something with the caller.
    SharedRoot,
    /// `/Shared/<owner>`: what that user shares with the caller.
    SharedOwner(UserId, String),
}

/// The shares given to `caller` and accepted, with their owners' names.
fn incoming(
    reader: &MetaReader,
    caller: &UserId,
) -> ApiResult<Vec<(ShareId, ShareRecord, String)>> {
    let mut out = Vec::new();
    for (id, s) in reader.shares_in(caller)? {
        if reader.share_pending(&id)? {
            continue;
        }
        if let Some(owner) = reader.user(&s.owner)? {
            out.push((id, s, owner.username));
        }
    }
    Ok(out)
}

pub fn resolve(reader: &MetaReader, caller: &Caller, path: &DrivePath) -> ApiResult<Place> {
    let segs = path.segments();
    if segs.first().map(String::as_str) != Some(SHARED_ROOT) {
        return Ok(Place::Tree(Target {
            user: caller.user,
            path: path.clone(),
            access: Access::Own,
            mount: None,
            share: None,
        }));
    }
    if segs.len() == 1 {
        return Ok(Place::SharedRoot);
    }
    let shares = incoming(reader, &caller.user)?;
    let owner_name = &segs[1];
    if segs.len() == 2 {
        return match shares.iter().find(|(_, _, o)| o == owner_name) {
            Some((_, s, o)) => Ok(Place::SharedOwner(s.owner, o.clone())),
            None => Err(ApiError::not_found()),
        };
    }
    let Some((share_id, share, _)) = shares
        .iter()
        .find(|(_, s, o)| o == owner_name && s.name == segs[2])
    else {
        return Err(ApiError::not_found());
    };
    match reader.entry(&share.owner, &share.entry)? {
        Some(r) if r.live => {}
        _ => return Err(ApiError::not_found()),
    }
    let root = reader.entry_path(&share.owner, &share.entry)?;
    let mut target = super::parse_path(&root)?;
    for seg in &segs[3..] {
        target = target
            .join(seg)
            .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))?;
    }
    let shown = format!("/{SHARED_ROOT}/{owner_name}/{}", share.name);
    Ok(Place::Tree(Target {
        user: share.owner,
        path: target,
        access: match share.role {
            ShareRole::Viewer => Access::Viewer,
            ShareRole::Editor => Access::Editor,
        },
        mount: Some((root, shown)),
        share: Some(*share_id),
    }))
}

/// The reader to resolve `path` with: resolving the caller's own paths
/// reads nothing, so only paths under `/Shared` pay for a current read.
pub async fn reader_for<'a>(app: &'a App, path: &DrivePath) -> ApiResult<&'a MetaReader> {
    if path.segments().first().map(String::as_str) == Some(SHARED_ROOT) {
        Ok(app.read().await?)
    } else {
        Ok(app.meta.local())
    }
}

/// A path that must lead into a tree (the virtual `/Shared` folders hold
/// no files).
pub fn target(reader: &MetaReader, caller: &Caller, path: &DrivePath) -> ApiResult<Target> {
    match resolve(reader, caller, path)? {
        Place::Tree(t) => Ok(t),
        _ => Err(ApiError::bad_request("the path is a folder")),
    }
}

/// A path the caller wants to change: its own, or inside an editor share.
/// The mount point itself and the `/Shared` folders cannot be changed (the
/// share is removed through `/api/v1/shares`).
pub fn write_target(reader: &MetaReader, caller: &Caller, path: &DrivePath) -> ApiResult<Target> {
    let segs = path.segments();
    let virtual_dir = segs.first().map(String::as_str) == Some(SHARED_ROOT) && segs.len() <= 2;
    let t = match resolve(reader, caller, path) {
        Ok(Place::Tree(t)) => t,
        Err(e) if !virtual_dir => return Err(e),
        _ => {
            return Err(ApiError::forbidden(format!(
                "/{SHARED_ROOT} holds what others share with you; it cannot be changed"
            )))
        }
    };
    t.writable()?;
    Ok(t)
}

/// Like [`write_target`], and not the mount point itself (delete, move).
pub fn inner_write_target(
    reader: &MetaReader,
    caller: &Caller,
    path: &DrivePath,
) -> ApiResult<Target> {
    let t = write_target(reader, caller, path)?;
    if t.is_mount() {
        return Err(ApiError::forbidden(
            "a shared item itself cannot be moved or deleted by the person it is shared with; \
             remove the share instead",
        ));
    }
    Ok(t)
}

/// A virtual folder's metadata.
pub fn virtual_folder(path: &str) -> strata_api::FileMetadata {
    strata_api::FileMetadata {
        path: path.to_string(),
        name: path.rsplit('/').next().unwrap_or_default().to_string(),
        kind: strata_api::EntryKind::Folder,
        size: 0,
        version: 0,
        content_hash: String::new(),
        modified_at: rfc3339(0),
        modified_by_device: String::new(),
        shared: true,
    }
}

/// The mount points under `/Shared` (with their records), for listings:
/// everything shared with the caller, or only what `owner` shares.
pub fn mounts(
    reader: &MetaReader,
    caller: &Caller,
    owner: Option<&UserId>,
) -> ApiResult<Vec<(String, UserId, String, EntryRecord)>> {
    let mut out = Vec::new();
    for (_, s, owner_name) in incoming(reader, &caller.user)? {
        if owner.is_some_and(|o| *o != s.owner) {
            continue;
        }
        let Some(rec) = reader.entry(&s.owner, &s.entry)?.filter(|r| r.live) else {
            continue;
        };
        let root = reader.entry_path(&s.owner, &s.entry)?;
        let shown = format!("/{SHARED_ROOT}/{owner_name}/{}", s.name);
        out.push((shown, s.owner, root, rec));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Does the entry at `path` of `user`'s tree have shares out (for the
/// `shared` flag of the owner's own metadata)?
pub fn shared_ids(reader: &MetaReader, user: &UserId) -> ApiResult<Vec<cluster_config::EntryId>> {
    Ok(reader
        .shares_out(user)?
        .into_iter()
        .map(|(_, s)| s.entry)
        .collect())
}

fn state_name(pending: bool) -> String {
    if pending { "pending" } else { "active" }.to_string()
}

fn role_name(r: ShareRole) -> String {
    match r {
        ShareRole::Viewer => "viewer",
        ShareRole::Editor => "editor",
    }
    .to_string()
}

/// `POST /api/v1/shares`.
pub async fn create(app: &App, caller: &Caller, mut req: Req) -> ApiResult<Response> {
    let body: ShareRequest = req.json(app.config.limits.max_json_body_bytes).await?;
    let role = match body.role.as_str() {
        "viewer" => ShareRole::Viewer,
        "editor" => ShareRole::Editor,
        _ => return Err(ApiError::bad_request("role must be viewer or editor")),
    };
    let path = super::parse_path(&body.path)?;
    if path.segments().first().map(String::as_str) == Some(SHARED_ROOT) {
        return Err(ApiError::forbidden(
            "only the owner can share an item further",
        ));
    }
    let reader = app.read().await?;
    let Some((sharee, _)) = reader.user_by_name(&body.user)? else {
        return Err(ApiError::not_found_msg("no such user"));
    };
    let out = app
        .meta
        .write(Command::OfferShare {
            owner: caller.user,
            path: path.segments().to_vec(),
            sharee,
            role,
            share: ShareId::random(),
            device: caller.device,
        })
        .await?;
    let Output::Offered { share: id, pending } = out else {
        return Err(ApiError::internal("unexpected share result"));
    };
    tracing::info!(user = %caller.user, share = %id, pending, "share offered");
    Ok(json(
        StatusCode::CREATED,
        &ShareCreated {
            share_id: id.to_string(),
            state: state_name(pending),
        },
    ))
}

/// `GET /api/v1/shares`.
pub async fn list(app: &App, caller: &Caller) -> ApiResult<Response> {
    let reader = app.read().await?;
    let name_of = |u: &UserId| -> ApiResult<String> {
        Ok(reader.user(u)?.map(|r| r.username).unwrap_or_default())
    };
    let me = name_of(&caller.user)?;
    let kind_of = |owner: &UserId, s: &ShareRecord| -> ApiResult<Option<String>> {
        Ok(reader
            .entry(owner, &s.entry)?
            .filter(|r| r.live)
            .map(|r| match r.kind {
                EntryKind::File => "file".to_string(),
                EntryKind::Folder => "folder".to_string(),
            }))
    };
    let mut by_me = Vec::new();
    for (id, s) in reader.shares_out(&caller.user)? {
        let Some(kind) = kind_of(&caller.user, &s)? else {
            continue;
        };
        by_me.push(ShareInfo {
            share_id: id.to_string(),
            path: reader.entry_path(&caller.user, &s.entry)?,
            owner: me.clone(),
            user: name_of(&s.sharee)?,
            role: role_name(s.role),
            kind,
            created_at: rfc3339(s.created_ms),
            state: state_name(reader.share_pending(&id)?),
        });
    }
    let mut with_me = Vec::new();
    for (id, s) in reader.shares_in(&caller.user)? {
        let Some(kind) = kind_of(&s.owner, &s)? else {
            continue;
        };
        let owner = name_of(&s.owner)?;
        with_me.push(ShareInfo {
            share_id: id.to_string(),
            path: format!("/{SHARED_ROOT}/{owner}/{}", s.name),
            owner,
            user: me.clone(),
            role: role_name(s.role),
            kind,
            created_at: rfc3339(s.created_ms),
            state: state_name(reader.share_pending(&id)?),
        });
    }
    Ok(json(
        StatusCode::OK,
        &ShareList {
            shared_by_me: by_me,
            shared_with_me: with_me,
        },
    ))
}

/// `POST /api/v1/shares/{id}/accept`: the sharee mounts a pending share.
pub async fn accept(app: &App, caller: &Caller, id: &str) -> ApiResult<Response> {
    let id: ShareId = id.parse().map_err(|_| ApiError::not_found())?;
    app.meta
        .write(Command::AcceptShare {
            sharee: caller.user,
            share: id,
            device: caller.device,
        })
        .await?;
    tracing::info!(user = %caller.user, share = %id, "share accepted");
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `DELETE /api/v1/shares/{id}`: by the owner (revoke) or the sharee
/// (leave, or decline a pending one).
pub async fn delete(app: &App, caller: &Caller, id: &str) -> ApiResult<Response> {
    let id: ShareId = id.parse().map_err(|_| ApiError::not_found())?;
    app.meta
        .write(Command::DeleteShare {
            by: caller.user,
            share: id,
            device: caller.device,
        })
        .await?;
    tracing::info!(user = %caller.user, share = %id, "share removed");
    Ok(empty(StatusCode::NO_CONTENT))
}
