//! The drive as every front end sees it: paths resolved through shares,
//! and the operations on them (folders, delete, move, restore, committing
//! a file's content). The HTTP gateway calls these; a WebDAV or S3 front
//! end calls the same ones, so none of them assembles Raft commands.
//!
//! Every path goes through [`resolve`]: a path of the actor's own tree
//! maps to itself; a path under `/Shared/<owner>/<name>` maps to the
//! owner's tree, with the share's role deciding whether writes are
//! allowed. Nothing about an owner's tree outside what was shared is ever
//! revealed (an unknown or revoked share is a plain "not found"). A write
//! through a share is proposed as `ViaShare`, which the state machine
//! checks again when it applies it.

use std::sync::Arc;

use bytes::Bytes;
use cluster_config::{BlockId, DeviceId, EntryId, ShareId, UploadId, UserId};
use raft_meta::hashing::{TreeHashState, TreeHasher};
use raft_meta::records::{BlockRef, EntryKind, EntryRecord, ShareRecord, ShareRole};
use raft_meta::types::{
    AdvanceUpload, CommitFile, CreateUpload, FileContent, FinishUpload, NewBlock,
};
use raft_meta::{Command, DrivePath, MetaClient, MetaError, MetaReader, OnConflict, Output};
use raft_meta::{CommandError, Resolved, SHARED_ROOT};

use crate::blocks::{BlockError, BlockStore};

/// Who acts: an account, from one of its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user: UserId,
    pub device: DeviceId,
}

/// Why a drive operation did not happen, in terms a front end answers.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// No such path, or one the actor may not know about.
    #[error("no such file or folder")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// Stored content could not be read now (its nodes are down or
    /// silent): retryable.
    #[error("stored content cannot be read right now")]
    Unavailable,
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Block(#[from] BlockError),
}

impl From<CommandError> for DriveError {
    fn from(e: CommandError) -> Self {
        DriveError::Meta(MetaError::Command(e))
    }
}

pub type DriveResult<T> = Result<T, DriveError>;

/// What the actor may do at a resolved path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Own,
    Viewer,
    Editor,
}

/// A path of some user's tree, reached by the actor.
#[derive(Debug, Clone)]
pub struct Target {
    /// Whose tree (the actor's, or a share's owner).
    pub user: UserId,
    /// The path in that tree.
    pub path: DrivePath,
    pub access: Access,
    /// For a shared path: the shared entry's path in the owner's tree and
    /// where the actor sees it.
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

    /// A path of the owner's tree as the actor sees it.
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

    /// The command as `actor` may propose it: a write in someone else's
    /// tree goes through the share, which the state machine checks again
    /// when it applies it (a share ended meanwhile stops it).
    pub fn command(&self, actor: &UserId, cmd: Command) -> Command {
        match self.share {
            Some(share) => Command::ViaShare {
                share,
                sharee: *actor,
                cmd: Box::new(cmd),
            },
            None => cmd,
        }
    }

    /// Refuses a write through a viewer share.
    pub fn writable(&self) -> DriveResult<()> {
        match self.access {
            Access::Own | Access::Editor => Ok(()),
            Access::Viewer => Err(DriveError::Forbidden(
                "this is shared with you as a viewer: it cannot be changed".into(),
            )),
        }
    }
}

/// Where a path leads.
pub enum Place {
    Tree(Target),
    /// `/Shared`: one folder per user who shares something with the actor.
    SharedRoot,
    /// `/Shared/<owner>`: what that user shares with the actor.
    SharedOwner(UserId, String),
}

/// The shares given to `user` and accepted, with their owners' names.
pub fn incoming(
    reader: &MetaReader,
    user: &UserId,
) -> DriveResult<Vec<(ShareId, ShareRecord, String)>> {
    let mut out = Vec::new();
    for (id, s) in reader.shares_in(user)? {
        if reader.share_pending(&id)? {
            continue;
        }
        if let Some(owner) = reader.user(&s.owner)? {
            out.push((id, s, owner.username));
        }
    }
    Ok(out)
}

fn parse(path: &str) -> DriveResult<DrivePath> {
    DrivePath::parse(path).map_err(|e| DriveError::BadRequest(format!("invalid path: {e}")))
}

pub fn resolve(reader: &MetaReader, user: &UserId, path: &DrivePath) -> DriveResult<Place> {
    let segs = path.segments();
    if segs.first().map(String::as_str) != Some(SHARED_ROOT) {
        return Ok(Place::Tree(Target {
            user: *user,
            path: path.clone(),
            access: Access::Own,
            mount: None,
            share: None,
        }));
    }
    if segs.len() == 1 {
        return Ok(Place::SharedRoot);
    }
    let shares = incoming(reader, user)?;
    let owner_name = &segs[1];
    if segs.len() == 2 {
        return match shares.iter().find(|(_, _, o)| o == owner_name) {
            Some((_, s, o)) => Ok(Place::SharedOwner(s.owner, o.clone())),
            None => Err(DriveError::NotFound),
        };
    }
    let Some((share_id, share, _)) = shares
        .iter()
        .find(|(_, s, o)| o == owner_name && s.name == segs[2])
    else {
        return Err(DriveError::NotFound);
    };
    match reader.entry(&share.owner, &share.entry)? {
        Some(r) if r.live => {}
        _ => return Err(DriveError::NotFound),
    }
    let root = reader.entry_path(&share.owner, &share.entry)?;
    let mut target = parse(&root)?;
    for seg in &segs[3..] {
        target = target
            .join(seg)
            .map_err(|e| DriveError::BadRequest(format!("invalid path: {e}")))?;
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

/// A path that must lead into a tree (the virtual `/Shared` folders hold
/// no files).
pub fn target(reader: &MetaReader, user: &UserId, path: &DrivePath) -> DriveResult<Target> {
    match resolve(reader, user, path)? {
        Place::Tree(t) => Ok(t),
        _ => Err(DriveError::BadRequest("the path is a folder".into())),
    }
}

/// A path the actor wants to change: its own, or inside an editor share.
/// The mount point itself and the `/Shared` folders cannot be changed (a
/// share is ended by removing it).
pub fn write_target(reader: &MetaReader, user: &UserId, path: &DrivePath) -> DriveResult<Target> {
    let segs = path.segments();
    let virtual_dir = segs.first().map(String::as_str) == Some(SHARED_ROOT) && segs.len() <= 2;
    let t = match resolve(reader, user, path) {
        Ok(Place::Tree(t)) => t,
        Err(e) if !virtual_dir => return Err(e),
        _ => {
            return Err(DriveError::Forbidden(format!(
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
    user: &UserId,
    path: &DrivePath,
) -> DriveResult<Target> {
    let t = write_target(reader, user, path)?;
    if t.is_mount() {
        return Err(DriveError::Forbidden(
            "a shared item itself cannot be moved or deleted by the person it is shared with; \
             remove the share instead"
                .into(),
        ));
    }
    Ok(t)
}

/// The mount points under `/Shared` (with their records), for listings:
/// everything shared with `user`, or only what `owner` shares.
pub fn mounts(
    reader: &MetaReader,
    user: &UserId,
    owner: Option<&UserId>,
) -> DriveResult<Vec<(String, UserId, String, EntryRecord)>> {
    let mut out = Vec::new();
    for (_, s, owner_name) in incoming(reader, user)? {
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
    Ok(out)
}

/// One entry as the actor sees it: a file or folder of some tree, or one
/// of the virtual folders of `/Shared`.
#[derive(Debug, Clone)]
pub enum Seen {
    Entry {
        /// The path as the actor sees it.
        path: String,
        /// Whose tree it is in (device names are that user's).
        owner: UserId,
        record: EntryRecord,
        /// The actor's own item, shared with others.
        shared: bool,
    },
    /// `/Shared` or `/Shared/<owner>`.
    Virtual(String),
}

/// A folder's listing, at most the asked number of entries.
#[derive(Debug, Clone)]
pub struct Listing {
    pub entries: Vec<Seen>,
    pub has_more: bool,
}

/// A file's versions, newest first, and whose tree it is in.
#[derive(Debug, Clone)]
pub struct History {
    pub owner: UserId,
    pub versions: Vec<(u64, raft_meta::records::VersionRecord)>,
}

/// Ids of the entries `user` shares with others.
pub fn shared_ids(reader: &MetaReader, user: &UserId) -> DriveResult<Vec<EntryId>> {
    Ok(reader
        .shares_out(user)?
        .into_iter()
        .map(|(_, s)| s.entry)
        .collect())
}

/// The content of a new version: what ingest produced.
pub struct NewContent {
    pub size: u64,
    pub content_hash: [u8; 32],
    pub blocks: Vec<raft_meta::records::BlockRef>,
    pub new_blocks: Vec<NewBlock>,
}

/// A resumable upload to open.
pub struct UploadSpec {
    pub path: DrivePath,
    pub length: u64,
    pub expires_ms: u64,
    pub metadata: Option<String>,
    pub base_version: Option<u64>,
    pub on_conflict: OnConflict,
}

/// What one request added to a resumable upload.
pub struct UploadProgress {
    pub expected_offset: u64,
    pub new_offset: u64,
    /// Chunks finished by this request.
    pub chunks: Vec<BlockRef>,
    /// The new tail (bytes after the last chunk boundary, stored).
    pub tail: Vec<BlockRef>,
    pub new_blocks: Vec<NewBlock>,
    pub hash_state: TreeHashState,
    /// The last byte arrived: commit the file.
    pub finish: bool,
}

/// The drive's operations, for every front end.
#[derive(Clone)]
pub struct Drive {
    meta: MetaClient,
    blocks: Arc<BlockStore>,
    /// A cluster answers with what the leader committed; a single node
    /// reads what it applied.
    cluster: bool,
}

fn seed() -> [u8; 16] {
    rand::random()
}

fn root_refused(path: &DrivePath, what: &str) -> DriveResult<()> {
    if path.is_root() {
        return Err(DriveError::BadRequest(format!("the root folder {what}")));
    }
    Ok(())
}

impl Drive {
    pub fn new(meta: MetaClient, blocks: Arc<BlockStore>, cluster: bool) -> Self {
        Self {
            meta,
            blocks,
            cluster,
        }
    }

    pub fn meta(&self) -> &MetaClient {
        &self.meta
    }

    pub fn blocks(&self) -> &Arc<BlockStore> {
        &self.blocks
    }

    /// Metadata as of now: in a cluster, everything committed before this
    /// call (a linearizable read); on a single node, what it applied.
    pub async fn read(&self) -> Result<&MetaReader, MetaError> {
        if self.cluster {
            self.meta.linearizable().await
        } else {
            Ok(self.meta.local())
        }
    }

    /// The reader to resolve `path` with: the actor's own paths resolve
    /// without reading anything, so only paths under `/Shared` pay for a
    /// current read.
    pub async fn reader_for(&self, path: &DrivePath) -> Result<&MetaReader, MetaError> {
        if path.segments().first().map(String::as_str) == Some(SHARED_ROOT) {
            self.read().await
        } else {
            Ok(self.meta.local())
        }
    }

    /// Where `path` may be written by `actor`.
    pub async fn write_target(&self, actor: &Actor, path: &DrivePath) -> DriveResult<Target> {
        write_target(self.reader_for(path).await?, &actor.user, path)
    }

    /// Creates a folder (and its parents). Returns where it was made and
    /// the command's answer.
    pub async fn create_folder(
        &self,
        actor: &Actor,
        path: &DrivePath,
    ) -> DriveResult<(Target, Output)> {
        if path.is_root() {
            return Err(CommandError::AlreadyExists.into());
        }
        let t = self.write_target(actor, path).await?;
        let cmd = Command::CreateFolder {
            user: t.user,
            path: t.path.segments().to_vec(),
            device: actor.device,
            id_seed: seed(),
        };
        let out = self.meta.write(t.command(&actor.user, cmd)).await?;
        Ok((t, out))
    }

    /// Deletes a file or folder; its history stays, and it can be restored.
    pub async fn delete(&self, actor: &Actor, path: &DrivePath) -> DriveResult<()> {
        root_refused(path, "cannot be deleted")?;
        let t = inner_write_target(self.reader_for(path).await?, &actor.user, path)?;
        let cmd = Command::Delete {
            user: t.user,
            path: t.path.segments().to_vec(),
            device: actor.device,
        };
        self.meta.write(t.command(&actor.user, cmd)).await?;
        Ok(())
    }

    /// Moves or renames within one person's files.
    pub async fn move_entry(
        &self,
        actor: &Actor,
        from: &DrivePath,
        to: &DrivePath,
    ) -> DriveResult<(Target, Output)> {
        if from.is_root() || to.is_root() {
            return Err(DriveError::BadRequest(
                "the root folder cannot be moved or replaced".into(),
            ));
        }
        let reader = match self.reader_for(from).await? {
            local if std::ptr::eq(local, self.meta.local()) => self.reader_for(to).await?,
            current => current,
        };
        let src = inner_write_target(reader, &actor.user, from)?;
        let dst = inner_write_target(reader, &actor.user, to)?;
        if src.user != dst.user || src.is_shared() != dst.is_shared() {
            return Err(DriveError::BadRequest(
                "a move stays within one person's files; copy instead".into(),
            ));
        }
        let cmd = Command::Move {
            user: src.user,
            from: src.path.segments().to_vec(),
            to: dst.path.segments().to_vec(),
            device: actor.device,
            id_seed: seed(),
        };
        let out = self.meta.write(src.command(&actor.user, cmd)).await?;
        Ok((dst, out))
    }

    /// Makes an earlier version (of a live or deleted file) current again.
    pub async fn restore(
        &self,
        actor: &Actor,
        path: &DrivePath,
        version: u64,
    ) -> DriveResult<(Target, Output)> {
        let t = self.write_target(actor, path).await?;
        let cmd = Command::Restore {
            user: t.user,
            path: t.path.segments().to_vec(),
            version,
            device: actor.device,
            id_seed: seed(),
        };
        let out = self.meta.write(t.command(&actor.user, cmd)).await?;
        Ok((t, out))
    }

    /// Commits stored content as the next version of `t`'s file.
    pub async fn commit(
        &self,
        actor: &Actor,
        t: &Target,
        content: NewContent,
        base_version: Option<u64>,
        on_conflict: OnConflict,
    ) -> DriveResult<Output> {
        let cmd = Command::CommitFile(CommitFile {
            user: t.user,
            path: t.path.segments().to_vec(),
            device: actor.device,
            content: FileContent {
                size: content.size,
                content_hash: content.content_hash,
                blocks: content.blocks,
            },
            new_blocks: content.new_blocks,
            base_version,
            on_conflict,
            id_seed: seed(),
        });
        Ok(self.meta.write(t.command(&actor.user, cmd)).await?)
    }

    /// Stores one block the actor sends by id (the block API): the bytes
    /// must hash to the id under the actor's key; a block the actor has
    /// already is not stored again.
    pub async fn put_block(&self, actor: &Actor, id: BlockId, data: Bytes) -> DriveResult<()> {
        let keys = self.blocks.user_keys(&actor.user);
        if keys.block_id(&data) != id {
            return Err(DriveError::BadRequest(
                "the bytes do not hash to the block id".into(),
            ));
        }
        let reader = self.read().await?.clone();
        if reader.block(&actor.user, &id)?.is_some() {
            return Ok(());
        }
        let user = actor.user;
        let exists: Arc<dyn Fn(&BlockId) -> bool + Send + Sync> =
            Arc::new(move |b| matches!(reader.block(&user, b), Ok(Some(_))));
        let stored = self.blocks.store_chunk(keys, data, exists).await?;
        if let Some(n) = stored.new {
            self.meta
                .write(Command::RegisterBlocks {
                    user: actor.user,
                    blocks: vec![n],
                })
                .await?;
        }
        Ok(())
    }

    /// Commits a version of the actor's own file made of blocks it stored
    /// before (the block API). Every block must exist with its size; the
    /// whole-content hash is computed here from the stored blocks, never
    /// taken on trust.
    pub async fn commit_blocks(
        &self,
        actor: &Actor,
        path: &DrivePath,
        blocks: Vec<BlockRef>,
        base_version: Option<u64>,
        on_conflict: OnConflict,
    ) -> DriveResult<Output> {
        let reader = self.read().await?.clone();
        let mut size = 0u64;
        for b in &blocks {
            match reader.block(&actor.user, &b.id)? {
                Some(r) if r.plain_len == b.size => size += b.size as u64,
                Some(_) => {
                    return Err(DriveError::BadRequest(format!(
                        "block {} has another size",
                        b.id
                    )))
                }
                None => {
                    return Err(DriveError::BadRequest(format!(
                        "block {} was never uploaded",
                        b.id
                    )))
                }
            }
        }
        let mut hasher = blake3::Hasher::new();
        let mut stream = crate::read::open_range(
            self.blocks.clone(),
            reader,
            actor.user,
            blocks.clone(),
            0,
            size,
        )
        .await?;
        while let Some(piece) = futures::StreamExt::next(&mut stream).await {
            let piece = piece.map_err(|e| {
                tracing::warn!(error = %e, "commit: a block could not be read");
                DriveError::Unavailable
            })?;
            hasher.update(&piece);
        }
        let cmd = Command::CommitFile(CommitFile {
            user: actor.user,
            path: path.segments().to_vec(),
            device: actor.device,
            content: FileContent {
                size,
                content_hash: *hasher.finalize().as_bytes(),
                blocks,
            },
            new_blocks: Vec::new(),
            base_version,
            on_conflict,
            id_seed: seed(),
        });
        Ok(self.meta.write(cmd).await?)
    }

    /// Opens a resumable upload of `length` bytes to the actor's own
    /// `path`, open until `expires_ms`. A zero-length upload is complete
    /// (committed) at once.
    pub async fn open_upload(&self, actor: &Actor, spec: UploadSpec) -> DriveResult<UploadId> {
        let id = UploadId::random();
        self.meta
            .write(Command::CreateUpload(CreateUpload {
                user: actor.user,
                upload: id,
                path: spec.path.segments().to_vec(),
                length: spec.length,
                device: actor.device,
                expires_ms: spec.expires_ms,
                metadata: spec.metadata,
                base_version: spec.base_version,
                on_conflict: spec.on_conflict,
            }))
            .await?;
        if spec.length == 0 {
            let progress = UploadProgress {
                expected_offset: 0,
                new_offset: 0,
                chunks: Vec::new(),
                tail: Vec::new(),
                new_blocks: Vec::new(),
                hash_state: TreeHasher::new(0).state().clone(),
                finish: true,
            };
            self.advance_upload(actor, id, progress).await?;
        }
        Ok(id)
    }

    /// Records that bytes `[expected_offset, new_offset)` of an upload are
    /// stored (and, with `finish`, commits the file). Returns the upload's
    /// offset and the committed version's entry, if any.
    pub async fn advance_upload(
        &self,
        actor: &Actor,
        upload: UploadId,
        p: UploadProgress,
    ) -> DriveResult<Output> {
        Ok(self
            .meta
            .write(Command::AdvanceUpload(AdvanceUpload {
                user: actor.user,
                upload,
                expected_offset: p.expected_offset,
                new_offset: p.new_offset,
                chunks: p.chunks,
                tail: p.tail,
                new_blocks: p.new_blocks,
                hash_state: p.hash_state,
                finish: p.finish.then(|| FinishUpload { id_seed: seed() }),
            }))
            .await?)
    }

    /// Ends an upload without a file; what it stored is released.
    pub async fn cancel_upload(&self, actor: &Actor, upload: UploadId) -> DriveResult<()> {
        self.meta
            .write(Command::CancelUpload {
                user: actor.user,
                upload,
            })
            .await?;
        Ok(())
    }

    /// Offers the actor's item at `path` to the account `sharee_name` with
    /// `role`. Returns the share and whether it waits for acceptance.
    pub async fn offer_share(
        &self,
        actor: &Actor,
        path: &DrivePath,
        sharee_name: &str,
        role: ShareRole,
    ) -> DriveResult<(ShareId, bool)> {
        if path.segments().first().map(String::as_str) == Some(SHARED_ROOT) {
            return Err(DriveError::Forbidden(
                "only the owner can share an item further".into(),
            ));
        }
        let Some((sharee, _)) = self.read().await?.user_by_name(sharee_name)? else {
            return Err(DriveError::NotFound);
        };
        let out = self
            .meta
            .write(Command::OfferShare {
                owner: actor.user,
                path: path.segments().to_vec(),
                sharee,
                role,
                share: ShareId::random(),
                device: actor.device,
            })
            .await?;
        match out {
            Output::Offered { share, pending } => Ok((share, pending)),
            other => Err(DriveError::Meta(MetaError::Corrupt(format!(
                "unexpected share result {other:?}"
            )))),
        }
    }

    /// The sharee takes up a pending share (it appears under `/Shared`).
    pub async fn accept_share(&self, actor: &Actor, share: ShareId) -> DriveResult<()> {
        self.meta
            .write(Command::AcceptShare {
                sharee: actor.user,
                share,
                device: actor.device,
            })
            .await?;
        Ok(())
    }

    /// Ends a share: its owner revokes it, or its sharee leaves or
    /// declines it.
    pub async fn remove_share(&self, actor: &Actor, share: ShareId) -> DriveResult<()> {
        self.meta
            .write(Command::DeleteShare {
                by: actor.user,
                share,
                device: actor.device,
            })
            .await?;
        Ok(())
    }

    /// What `path` is, as the actor sees it.
    pub async fn stat(&self, actor: &Actor, path: &DrivePath) -> DriveResult<Seen> {
        let reader = self.read().await?;
        let t = match resolve(reader, &actor.user, path)? {
            Place::Tree(t) => t,
            _ => return Ok(Seen::Virtual(path.to_string())),
        };
        let (id, record) = reader.live(&t.user, &t.path)?.ok_or(DriveError::NotFound)?;
        let shared = !t.is_shared() && shared_ids(reader, &t.user)?.contains(&id);
        Ok(Seen::Entry {
            path: path.to_string(),
            owner: t.user,
            record,
            shared,
        })
    }

    /// The entries of the folder at `path` (everything below it with
    /// `recursive`), at most `limit`. The actor's root shows `/Shared`
    /// when something is shared with them.
    pub async fn list(
        &self,
        actor: &Actor,
        path: &DrivePath,
        recursive: bool,
        limit: usize,
    ) -> DriveResult<Listing> {
        let reader = self.read().await?;
        let mut entries = Vec::new();
        let mut has_more;
        // Everything under `/Shared` (or one owner's part of it): the mount
        // points, and below them with `recursive`.
        let list_mounts = |entries: &mut Vec<Seen>,
                           owner: Option<&UserId>,
                           with_root: bool|
         -> DriveResult<bool> {
            let mut owners: Vec<String> = Vec::new();
            for (shown, owner_id, root, rec) in mounts(reader, &actor.user, owner)? {
                if with_root {
                    let owner_dir = shown
                        .rsplit_once('/')
                        .map(|x| x.0)
                        .unwrap_or_default()
                        .to_string();
                    if !owners.contains(&owner_dir) {
                        owners.push(owner_dir.clone());
                        entries.push(Seen::Virtual(owner_dir));
                    }
                }
                let folder = rec.kind == EntryKind::Folder;
                entries.push(Seen::Entry {
                    path: shown.clone(),
                    owner: owner_id,
                    record: rec,
                    shared: false,
                });
                if recursive && folder {
                    let Some((id, _)) = reader.live(&owner_id, &parse(&root)?)? else {
                        continue;
                    };
                    let room = (limit + 1).saturating_sub(entries.len());
                    for l in reader.list(&owner_id, &id, &shown, true, room)? {
                        entries.push(Seen::Entry {
                            path: l.path,
                            owner: owner_id,
                            record: l.record,
                            shared: false,
                        });
                    }
                }
                if entries.len() > limit {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        match resolve(reader, &actor.user, path)? {
            Place::SharedRoot => {
                has_more = list_mounts(&mut entries, None, true)?;
                if !recursive {
                    entries.retain(|e| match e {
                        Seen::Entry { path, .. } | Seen::Virtual(path) => {
                            path.matches('/').count() == 2
                        }
                    });
                }
            }
            Place::SharedOwner(owner, _) => {
                has_more = list_mounts(&mut entries, Some(&owner), false)?;
            }
            Place::Tree(t) => {
                let (id, rec) = reader.live(&t.user, &t.path)?.ok_or(DriveError::NotFound)?;
                if rec.kind != EntryKind::Folder {
                    return Err(DriveError::BadRequest("not a folder".into()));
                }
                let listed = reader.list(&t.user, &id, &path.to_string(), recursive, limit + 1)?;
                has_more = listed.len() > limit;
                let mine = if t.is_shared() {
                    Vec::new()
                } else {
                    shared_ids(reader, &t.user)?
                };
                for l in listed.into_iter().take(limit) {
                    entries.push(Seen::Entry {
                        path: l.path,
                        owner: t.user,
                        shared: mine.contains(&l.id),
                        record: l.record,
                    });
                }
                if path.is_root() && !t.is_shared() && !has_more {
                    let before = entries.len();
                    has_more = list_mounts(&mut entries, None, true)?;
                    if before < entries.len() {
                        entries.insert(before, Seen::Virtual(format!("/{SHARED_ROOT}")));
                        if !recursive {
                            entries.truncate(before + 1);
                        }
                    }
                }
            }
        }
        if entries.len() > limit {
            entries.truncate(limit);
            has_more = true;
        }
        Ok(Listing { entries, has_more })
    }

    /// A file's versions, newest first, at most `limit`.
    pub async fn history(
        &self,
        actor: &Actor,
        path: &DrivePath,
        limit: usize,
    ) -> DriveResult<History> {
        let reader = self.read().await?;
        let t = target(reader, &actor.user, path)?;
        let id = match reader.resolve(&t.user, &t.path)? {
            Resolved::Found(id, rec) if rec.kind == EntryKind::File => id,
            Resolved::Found(..) => {
                return Err(DriveError::BadRequest("folders have no history".into()))
            }
            _ => return Err(DriveError::NotFound),
        };
        Ok(History {
            owner: t.user,
            versions: reader.versions(&t.user, &id, limit)?,
        })
    }
}
