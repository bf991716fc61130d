//! Shards on this node's disks: append-only pack files, one writer thread
//! per disk that makes every queued write durable with one `fdatasync`
//! (group commit), and an index in memory from (block, shard) to place.
//!
//! ```text
//! <disk>/strata-disk            marker: "strata shard directory, format 1"
//! <disk>/packs/<seq:08x>.pack   records, each starting on a 4 KiB boundary
//! <disk>/packs/<seq:08x>.idx    the record list of a full (sealed) pack
//! <disk>/shards/<xx>/<block>.<i> shards of earlier versions, one file each
//! ```
//!
//! A record is a shard file (`shard.rs`: header with checksum, payload) or
//! a tombstone (a shard removed: its block, index, pack and offset). A
//! write is acknowledged once its record and everything queued with it is
//! on disk; the index learns about it only then. A removal appends a
//! tombstone and punches a hole over the record, so space comes back
//! without copying; a sealed pack whose records are all gone is deleted.
//! At start the index is rebuilt from the sealed packs' `.idx` files and a
//! scan of the others (holes skipped, a torn tail ignored). Every read
//! re-verifies the shard's checksum and identity. See docs/durability.md.
//!
//! The writer copies a batch's records, each padded with zeros to the
//! boundary, into one aligned buffer and writes it with `O_DIRECT` where
//! the file system allows it: the bytes go from that buffer to the disk,
//! not through the page cache, whose copy (and, on a fresh virtual
//! machine, the first touch of every page-cache page) cost more than the
//! rest of the write. Reads go through the page cache as before; where
//! `O_DIRECT` is refused the same buffer is written the ordinary way.
//!
//! Memory: the index costs about 64 bytes per local shard; each disk's
//! writer keeps a staging buffer of `STAGE_BYTES`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use cluster_config::BlockId;
use tokio::sync::{mpsc, oneshot};

use super::shard::{self, ShardFormatError, ShardMeta, HEADER_LEN};

const DISK_MARKER: &str = "strata-disk";
const DISK_MARKER_TEXT: &str = "strata shard directory, format 1\n";
/// Records start on this boundary (the file system's block), so a removed
/// record's space can be handed back whole.
pub const ALIGN: u64 = 4096;
/// A pack is sealed and a new one begun past this size.
pub const PACK_BYTES: u64 = 1 << 30;
/// Writes gathered into one flush, at most.
const BATCH_OPS: usize = 512;
const BATCH_BYTES: usize = 64 << 20;
/// A batch is written in pieces of at most this many bytes (one record
/// larger than this is written alone).
const STAGE_BYTES: usize = 4 << 20;
const QUEUE: usize = 1024;

const TOMB_MAGIC: &[u8; 4] = b"STMB";
const TOMB_LEN: usize = 64;
const IDX_MAGIC: &[u8; 4] = b"SIDX";
const IDX_ENTRY: usize = 1 + 32 + 1 + 8 + 4 + 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shard refused: {0}")]
    Refused(#[from] ShardFormatError),
    #[error("disk {0} writer stopped")]
    Stopped(usize),
}

impl StoreError {
    /// The file system said it has no room (or the quota is spent).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            }
            _ => false,
        }
    }
}

/// Why a shard could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShardReadError {
    #[error("shard missing")]
    Missing,
    #[error("shard corrupt: {0}")]
    Corrupt(#[from] ShardFormatError),
    #[error(transparent)]
    Io(StoreError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

type Key = (BlockId, u8);

/// Where a shard's record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    disk: u16,
    pack: u32,
    offset: u64,
    len: u32,
}

struct Pack {
    path: PathBuf,
    file: File,
}

#[derive(Default)]
struct PackStats {
    live: u64,
    tombstones: bool,
    sealed: bool,
}

/// One disk: its packs and their bookkeeping (the index lives in
/// `LocalShards`, shared by all disks).
struct Disk {
    number: u16,
    root: PathBuf,
    packs_dir: PathBuf,
    packs: RwLock<BTreeMap<u32, Arc<Pack>>>,
    stats: Mutex<BTreeMap<u32, PackStats>>,
    /// Whether the disk has shard files of earlier versions at all.
    has_legacy: bool,
}

type Done = oneshot::Sender<Result<(), StoreError>>;

enum Op {
    Put { key: Key, record: Bytes, done: Done },
    Remove { key: Key, loc: Loc, done: Done },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

type Index = RwLock<HashMap<Key, Loc>>;

/// A disk's writer and its queue, run in place (the simulation).
type InlineWriter = Mutex<(Writer, mpsc::Receiver<Op>)>;

pub struct LocalShards {
    disks: Vec<Arc<Disk>>,
    queues: Vec<mpsc::Sender<Op>>,
    index: Arc<Index>,
    /// Disks found without their marker at open: new or wiped.
    replaced: Vec<usize>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The simulation's writers: run by the task that writes, one per
    /// disk, instead of on threads of their own.
    inline: Option<Vec<InlineWriter>>,
    /// The simulation's slow disk: milliseconds each inline write waits.
    delay_ms: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl std::fmt::Debug for LocalShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalShards")
            .field(
                "disks",
                &self.disks.iter().map(|d| &d.root).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn tombstone(key: &Key, loc: &Loc) -> [u8; TOMB_LEN] {
    let mut t = [0u8; TOMB_LEN];
    t[..4].copy_from_slice(TOMB_MAGIC);
    t[4] = 1;
    t[5] = key.1;
    t[8..40].copy_from_slice(key.0.as_bytes());
    t[40..44].copy_from_slice(&loc.pack.to_le_bytes());
    t[44..52].copy_from_slice(&loc.offset.to_le_bytes());
    t[52..56].copy_from_slice(&loc.len.to_le_bytes());
    let crc = crc32fast::hash(&t[..56]);
    t[56..60].copy_from_slice(&crc.to_le_bytes());
    t
}

/// What the start of a record says it is.
enum Found {
    Shard { key: Key, len: u32 },
    Tomb { key: Key, pack: u32, offset: u64 },
    Nothing,
}

fn classify(head: &[u8]) -> Found {
    if head.len() >= HEADER_LEN {
        if let Some((meta, payload_len)) = shard::peek_header(head) {
            return Found::Shard {
                key: (meta.block, meta.index),
                len: (HEADER_LEN + payload_len) as u32,
            };
        }
    }
    if head.len() >= TOMB_LEN && &head[..4] == TOMB_MAGIC && head[4] == 1 {
        let crc = u32::from_le_bytes([head[56], head[57], head[58], head[59]]);
        if crc32fast::hash(&head[..56]) == crc {
            if let Some(block) = BlockId::from_slice(&head[8..40]) {
                return Found::Tomb {
                    key: (block, head[5]),
                    pack: u32::from_le_bytes([head[40], head[41], head[42], head[43]]),
                    offset: u64::from_le_bytes([
                        head[44], head[45], head[46], head[47], head[48], head[49], head[50],
                        head[51],
                    ]),
                };
            }
        }
    }
    Found::Nothing
}

/// The next offset at or after `at` that holds data (holes are skipped).
fn next_data(file: &File, at: u64) -> Option<u64> {
    // SAFETY: lseek on a file descriptor we own; SEEK_DATA does not touch
    // memory. A file system without SEEK_DATA answers EINVAL and we step.
    let r = unsafe { libc::lseek(file.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return None;
        }
        return Some(at);
    }
    Some(r as u64)
}

/// Hands a removed record's blocks back to the file system.
fn punch(file: &File, offset: u64, len: u64) {
    // SAFETY: fallocate on a file descriptor we own; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if r != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "punching a hole failed; space stays in use");
    }
}

/// What one pack contributes to the index, in order.
enum Entry {
    Shard { key: Key, offset: u64, len: u32 },
    Tomb { key: Key, pack: u32, offset: u64 },
}

fn scan_pack(file: &File, path: &Path) -> Result<(Vec<Entry>, u64), StoreError> {
    let size = file.metadata().map_err(io_at(path))?.len();
    let mut out = Vec::new();
    let mut at = 0u64;
    let mut head = vec![0u8; HEADER_LEN.max(TOMB_LEN)];
    while at < size {
        let Some(data) = next_data(file, at) else {
            break;
        };
        at = data - data % ALIGN;
        if at >= size {
            break;
        }
        let n = head.len().min((size - at) as usize);
        file.read_exact_at(&mut head[..n], at)
            .map_err(io_at(path))?;
        match classify(&head[..n]) {
            Found::Shard { key, len } if at + len as u64 <= size => {
                out.push(Entry::Shard {
                    key,
                    offset: at,
                    len,
                });
                at = align_up(at + len as u64);
            }
            Found::Tomb { key, pack, offset } => {
                out.push(Entry::Tomb { key, pack, offset });
                at += ALIGN;
            }
            // A torn record or garbage: nothing acknowledged lives here.
            _ => at += ALIGN,
        }
    }
    Ok((out, align_up(size)))
}

fn write_idx(path: &Path, entries: &[Entry]) -> Result<(), StoreError> {
    let mut buf = Vec::with_capacity(16 + entries.len() * IDX_ENTRY);
    buf.extend_from_slice(IDX_MAGIC);
    buf.extend_from_slice(&[1, 0, 0, 0]);
    buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        match e {
            Entry::Shard { key, offset, len } => {
                buf.push(1);
                buf.extend_from_slice(key.0.as_bytes());
                buf.push(key.1);
                buf.extend_from_slice(&offset.to_le_bytes());
                buf.extend_from_slice(&len.to_le_bytes());
                buf.extend_from_slice(&0u32.to_le_bytes());
            }
            Entry::Tomb { key, pack, offset } => {
                buf.push(2);
                buf.extend_from_slice(key.0.as_bytes());
                buf.push(key.1);
                buf.extend_from_slice(&offset.to_le_bytes());
                buf.extend_from_slice(&0u32.to_le_bytes());
                buf.extend_from_slice(&pack.to_le_bytes());
            }
        }
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let tmp = path.with_extension("idx.tmp");
    let f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all_at(&buf, 0).map_err(io_at(&tmp))?;
    f.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, path).map_err(io_at(path))?;
    Ok(())
}

/// A sealed pack's record list, or `None` if the file is not a whole one.
fn read_idx(path: &Path) -> Option<Vec<Entry>> {
    let buf = fs::read(path).ok()?;
    if buf.len() < 20 || &buf[..4] != IDX_MAGIC || buf[4] != 1 {
        return None;
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return None;
    }
    let count = u64::from_le_bytes(body[8..16].try_into().ok()?) as usize;
    if body.len() != 16 + count.checked_mul(IDX_ENTRY)? {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for e in body[16..].chunks_exact(IDX_ENTRY) {
        let block = BlockId::from_slice(&e[1..33])?;
        let key = (block, e[33]);
        let offset = u64::from_le_bytes(e[34..42].try_into().ok()?);
        let a = u32::from_le_bytes(e[42..46].try_into().ok()?);
        let b = u32::from_le_bytes(e[46..50].try_into().ok()?);
        out.push(match e[0] {
            1 => Entry::Shard {
                key,
                offset,
                len: a,
            },
            2 => Entry::Tomb {
                key,
                pack: b,
                offset,
            },
            _ => return None,
        });
    }
    Some(out)
}

fn pack_name(seq: u32, ext: &str) -> String {
    format!("{seq:08x}.{ext}")
}

fn open_pack(path: &Path, create: bool) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(io_at(path))
}

/// A second handle on a pack for writes that bypass the page cache; `None`
/// where the file system does not support `O_DIRECT`.
fn open_direct(path: &Path) -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

/// A reusable buffer whose usable part starts on an `ALIGN` boundary, as
/// `O_DIRECT` requires of the memory it writes from.
struct Stage {
    buf: Vec<u8>,
    /// Bytes staged, from the aligned start.
    len: usize,
}

impl Stage {
    /// A stage that holds `bytes` before it has to grow.
    fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: vec![0u8; bytes + ALIGN as usize],
            len: 0,
        }
    }

    fn start(&self) -> usize {
        (ALIGN as usize - (self.buf.as_ptr() as usize) % ALIGN as usize) % ALIGN as usize
    }

    /// Bytes that fit after those staged without growing.
    fn room(&self) -> usize {
        self.buf.len().saturating_sub(self.start() + self.len)
    }

    /// Appends `bytes` and zeros up to the next boundary.
    fn push(&mut self, bytes: &[u8]) {
        let padded = align_up(bytes.len() as u64) as usize;
        if self.room() < padded {
            // Grows only for a record larger than `STAGE_BYTES`; the
            // staged bytes move with the buffer's new start.
            let staged = self.staged().to_vec();
            self.buf = vec![0u8; staged.len() + padded + ALIGN as usize];
            let at = self.start();
            self.buf[at..at + staged.len()].copy_from_slice(&staged);
        }
        let at = self.start() + self.len;
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.buf[at + bytes.len()..at + padded].fill(0);
        self.len += padded;
    }

    fn staged(&self) -> &[u8] {
        let at = self.start();
        &self.buf[at..at + self.len]
    }

    /// Empties the stage, giving back a buffer grown past the usual size.
    fn clear(&mut self) {
        self.len = 0;
        if self.buf.len() > STAGE_BYTES + ALIGN as usize {
            *self = Self::with_capacity(STAGE_BYTES);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}

/// The writer's view of its active pack.
struct Active {
    seq: u32,
    pack: Arc<Pack>,
    end: u64,
    /// Records of this pack so far, for its `.idx` when it is sealed.
    entries: Vec<Entry>,
}

struct Writer {
    disk: Arc<Disk>,
    index: Arc<Index>,
    active: Active,
    /// The active pack opened with `O_DIRECT`, where supported.
    direct: Option<File>,
    stage: Stage,
    pack_bytes: u64,
    /// Every disk's queue (weak: the writers end when `LocalShards` goes).
    others: Vec<mpsc::WeakSender<Op>>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            let mut bytes = 0usize;
            while batch.len() < BATCH_OPS && bytes < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(op) => {
                        if let Op::Put { record, .. } = &op {
                            bytes += record.len();
                        }
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.apply(batch);
        }
    }

    fn apply(&mut self, batch: Vec<Op>) {
        let (end_before, entries_before) = (self.active.end, self.active.entries.len());
        let mut written: Vec<(Key, Loc, Option<Done>)> = Vec::new();
        let mut removed: Vec<(Loc, Done)> = Vec::new();
        let mut failed: Option<String> = None;
        let mut waiting = Vec::new();
        // Staged bytes start here; they are written whenever the stage
        // is full and once after the last op.
        let mut staged_at = self.active.end;
        self.stage.clear();
        for op in batch {
            if failed.is_some() {
                waiting.push(op);
                continue;
            }
            let at = self.active.end;
            let len = match &op {
                Op::Put { record, .. } => align_up(record.len() as u64) as usize,
                Op::Remove { .. } => ALIGN as usize,
            };
            if self.stage.len > 0 && self.stage.room() < len {
                if let Err(e) = self.write_stage(staged_at) {
                    failed = Some(e);
                    waiting.push(op);
                    continue;
                }
                staged_at = at;
            }
            match &op {
                Op::Put { record, .. } => self.stage.push(record),
                Op::Remove { key, loc, .. } => self.stage.push(&tombstone(key, loc)),
            }
            match op {
                Op::Put { key, record, done } => {
                    let len = record.len() as u32;
                    self.active.end = align_up(at + len as u64);
                    self.active.entries.push(Entry::Shard {
                        key,
                        offset: at,
                        len,
                    });
                    let loc = Loc {
                        disk: self.disk.number,
                        pack: self.active.seq,
                        offset: at,
                        len,
                    };
                    written.push((key, loc, Some(done)));
                }
                Op::Remove { key, loc, done } => {
                    self.active.end = at + ALIGN;
                    self.active.entries.push(Entry::Tomb {
                        key,
                        pack: loc.pack,
                        offset: loc.offset,
                    });
                    removed.push((loc, done));
                }
            }
        }
        if failed.is_none() && self.stage.len > 0 {
            failed = self.write_stage(staged_at).err();
        }
        let synced = match failed {
            Some(e) => Err(e),
            None => self
                .active
                .pack
                .file
                .sync_data()
                .map_err(|e| format!("{}: {e}", self.active.pack.path.display())),
        };
        if let Err(reason) = synced {
            tracing::error!(disk = %self.disk.root.display(), error = %reason, "shard write failed");
            let err = || StoreError::Io {
                path: self.disk.packs_dir.clone(),
                source: io::Error::other(reason.clone()),
            };
            for (_, _, done) in written {
                if let Some(d) = done {
                    let _ = d.send(Err(err()));
                }
            }
            for (_, done) in removed {
                let _ = done.send(Err(err()));
            }
            for op in waiting {
                let done = match op {
                    Op::Put { done, .. } | Op::Remove { done, .. } => done,
                };
                let _ = done.send(Err(err()));
            }
            // Nothing of this batch was acknowledged: the next one writes
            // over it.
            self.active.end = end_before;
            self.active.entries.truncate(entries_before);
            return;
        }
        // Durable: now the index may point at the new records.
        let mut superseded = Vec::new();
        {
            let mut index = write_lock(&self.index);
            let mut stats = lock(&self.disk.stats);
            for (key, loc, _) in &written {
                if let Some(old) = index.insert(*key, *loc) {
                    superseded.push((*key, old));
                }
                stats.entry(loc.pack).or_default().live += 1;
            }
            for (loc, _) in &removed {
                if let Some(s) = stats.get_mut(&loc.pack) {
                    s.live = s.live.saturating_sub(1);
                }
            }
            stats.entry(self.active.seq).or_default().tombstones |= !removed.is_empty();
        }
        for (_, _, done) in written {
            if let Some(d) = done {
                let _ = d.send(Ok(()));
            }
        }
        for (loc, done) in removed {
            self.punch(&loc);
            let _ = done.send(Ok(()));
        }
        // A rewrite of a shard replaces its old record: remove that one.
        for (key, old) in superseded {
            if old.disk == self.disk.number {
                self.remove_now(key, old);
            } else if let Some(other) = self
                .others
                .get(old.disk as usize)
                .and_then(mpsc::WeakSender::upgrade)
            {
                let (done, _) = oneshot::channel();
                let _ = other.try_send(Op::Remove {
                    key,
                    loc: old,
                    done,
                });
            }
        }
        if self.active.end >= self.pack_bytes {
            if let Err(e) = self.rotate() {
                tracing::error!(disk = %self.disk.root.display(), error = %e, "starting a new pack failed");
            }
        }
        self.reclaim();
    }

    /// Writes the staged bytes at `at` of the active pack, bypassing the
    /// page cache where the file system allows it.
    fn write_stage(&mut self, at: u64) -> Result<(), String> {
        let path = &self.active.pack.path;
        if let Some(direct) = &self.direct {
            match direct.write_all_at(self.stage.staged(), at) {
                Ok(()) => {
                    self.stage.clear();
                    return Ok(());
                }
                // Refused for this file (alignment the file system wants
                // and we cannot give): ordinary writes from now on.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    tracing::info!(pack = %path.display(), error = %e, "O_DIRECT refused; writing through the page cache");
                    self.direct = None;
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        let written = self
            .active
            .pack
            .file
            .write_all_at(self.stage.staged(), at)
            .map_err(|e| format!("{}: {e}", path.display()));
        self.stage.clear();
        written
    }

    /// Appends a tombstone for `old` at once (it rides the next flush).
    fn remove_now(&mut self, key: Key, old: Loc) {
        let at = self.active.end;
        if self
            .active
            .pack
            .file
            .write_all_at(&tombstone(&key, &old), at)
            .is_ok()
        {
            self.active.end = at + ALIGN;
            self.active.entries.push(Entry::Tomb {
                key,
                pack: old.pack,
                offset: old.offset,
            });
            let mut stats = lock(&self.disk.stats);
            if let Some(s) = stats.get_mut(&old.pack) {
                s.live = s.live.saturating_sub(1);
            }
            stats.entry(self.active.seq).or_default().tombstones = true;
            drop(stats);
            self.punch(&old);
        }
    }

    fn punch(&self, loc: &Loc) {
        if let Some(p) = read_lock(&self.disk.packs).get(&loc.pack) {
            punch(&p.file, loc.offset, align_up(loc.len as u64));
        }
    }

    /// Seals the active pack (its `.idx` written) and begins the next.
    fn rotate(&mut self) -> Result<(), StoreError> {
        let old = &self.active;
        let _ = old.pack.file.sync_data();
        write_idx(
            &self.disk.packs_dir.join(pack_name(old.seq, "idx")),
            &old.entries,
        )?;
        lock(&self.disk.stats).entry(old.seq).or_default().sealed = true;
        let seq = old.seq + 1;
        let path = self.disk.packs_dir.join(pack_name(seq, "pack"));
        let file = open_pack(&path, true)?;
        sync_dir(&self.disk.packs_dir)?;
        self.direct = open_direct(&path);
        let pack = Arc::new(Pack { path, file });
        write_lock(&self.disk.packs).insert(seq, pack.clone());
        lock(&self.disk.stats).entry(seq).or_default();
        self.active = Active {
            seq,
            pack,
            end: 0,
            entries: Vec::new(),
        };
        Ok(())
    }

    /// Deletes sealed packs with nothing live left. A pack holding
    /// tombstones goes only when it is the oldest: its tombstones must
    /// outlive the records they remove.
    fn reclaim(&mut self) {
        let doomed: Vec<u32> = {
            let stats = lock(&self.disk.stats);
            let oldest = stats.keys().next().copied();
            stats
                .iter()
                .filter(|(seq, s)| {
                    s.sealed
                        && s.live == 0
                        && **seq != self.active.seq
                        && (!s.tombstones || Some(**seq) == oldest)
                })
                .map(|(seq, _)| *seq)
                .collect()
        };
        for seq in doomed {
            for ext in ["idx", "pack"] {
                let _ = fs::remove_file(self.disk.packs_dir.join(pack_name(seq, ext)));
            }
            write_lock(&self.disk.packs).remove(&seq);
            lock(&self.disk.stats).remove(&seq);
            tracing::debug!(disk = %self.disk.root.display(), pack = seq, "empty pack deleted");
        }
    }
}

impl LocalShards {
    /// Opens every shard directory and rebuilds the index.
    pub fn open(dirs: &[PathBuf]) -> Result<Self, StoreError> {
        Self::open_with(dirs, PACK_BYTES)
    }

    /// `open` for the simulation: every write and every blocking step runs
    /// on the task that asks for it (see `Offload`), so no thread outside
    /// the runtime decides when it completes.
    pub fn open_inline(dirs: &[PathBuf]) -> Result<Self, StoreError> {
        Self::open_opts(dirs, PACK_BYTES, true)
    }

    /// Inline writes wait as many milliseconds as `delay` says first (the
    /// simulation's slow disk). No effect on a store with writer threads.
    pub fn with_delay(mut self, delay: Option<Arc<std::sync::atomic::AtomicU64>>) -> Self {
        if self.inline.is_some() {
            self.delay_ms = delay;
        }
        self
    }

    /// `open` with packs sealed past `pack_bytes`.
    pub fn open_with(dirs: &[PathBuf], pack_bytes: u64) -> Result<Self, StoreError> {
        Self::open_opts(dirs, pack_bytes, false)
    }

    fn open_opts(dirs: &[PathBuf], pack_bytes: u64, inline: bool) -> Result<Self, StoreError> {
        let index: Arc<Index> = Arc::new(RwLock::new(HashMap::new()));
        let mut replaced = Vec::new();
        let mut disks = Vec::new();
        let mut writers = Vec::new();
        let (queues, mut receivers): (Vec<mpsc::Sender<Op>>, Vec<mpsc::Receiver<Op>>) =
            dirs.iter().map(|_| mpsc::channel(QUEUE)).unzip();
        let weak: Vec<mpsc::WeakSender<Op>> = queues.iter().map(|q| q.downgrade()).collect();
        for (number, root) in dirs.iter().enumerate() {
            fs::create_dir_all(root).map_err(io_at(root))?;
            // Left by versions that wrote one file per shard.
            let tmp = root.join("tmp");
            if tmp.exists() {
                fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
            }
            let packs_dir = root.join("packs");
            fs::create_dir_all(&packs_dir).map_err(io_at(&packs_dir))?;
            let marker = root.join(DISK_MARKER);
            if !marker.exists() {
                replaced.push(number);
                fs::write(&marker, DISK_MARKER_TEXT).map_err(io_at(&marker))?;
                let f = File::open(&marker).map_err(io_at(&marker))?;
                f.sync_all().map_err(io_at(&marker))?;
                sync_dir(&packs_dir)?;
                sync_dir(root)?;
            }
            let (disk, mut writer) =
                Self::load_disk(number as u16, root, &packs_dir, &index, pack_bytes)?;
            writer.others = weak.clone();
            disks.push(disk);
            writers.push((writer, receivers.remove(0)));
        }
        if inline {
            return Ok(Self {
                disks,
                queues,
                index,
                replaced,
                threads: Mutex::new(Vec::new()),
                inline: Some(writers.into_iter().map(Mutex::new).collect()),
                delay_ms: None,
            });
        }
        let mut threads = Vec::new();
        for (w, rx) in writers {
            let name = format!("shard-writer-{}", w.disk.number);
            let t = std::thread::Builder::new()
                .name(name)
                .spawn(move || w.run(rx))
                .map_err(|e| StoreError::Io {
                    path: PathBuf::from("shard writer thread"),
                    source: e,
                })?;
            threads.push(t);
        }
        Ok(Self {
            disks,
            queues,
            index,
            replaced,
            threads: Mutex::new(threads),
            inline: None,
            delay_ms: None,
        })
    }

    /// How this store's blocking work runs (in place in the simulation).
    pub fn offload(&self) -> crate::Offload {
        crate::Offload::new(self.inline.is_some())
    }

    /// Hands `op` to disk `disk`'s writer: its thread's queue, or, in the
    /// simulation, the writer itself on this task.
    async fn submit(&self, disk: usize, op: Op) -> Result<(), StoreError> {
        match &self.inline {
            Some(writers) => {
                let ms = self
                    .delay_ms
                    .as_ref()
                    .map_or(0, |d| d.load(std::sync::atomic::Ordering::Relaxed));
                if ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                Self::apply_inline(writers, disk, op)
            }
            None => self.queues[disk]
                .send(op)
                .await
                .map_err(|_| StoreError::Stopped(disk))?,
        }
        Ok(())
    }

    /// Runs `op` on disk `disk`'s writer now, then whatever the writers
    /// queued for each other (a superseded record on another disk).
    fn apply_inline(writers: &[InlineWriter], disk: usize, op: Op) {
        lock(&writers[disk]).0.apply(vec![op]);
        for w in writers {
            let mut w = lock(w);
            while let Ok(op) = w.1.try_recv() {
                w.0.apply(vec![op]);
            }
        }
    }

    fn load_disk(
        number: u16,
        root: &Path,
        packs_dir: &Path,
        index: &Arc<Index>,
        pack_bytes: u64,
    ) -> Result<(Arc<Disk>, Writer), StoreError> {
        let mut seqs: Vec<u32> = Vec::new();
        for e in fs::read_dir(packs_dir).map_err(io_at(packs_dir))? {
            let e = e.map_err(io_at(packs_dir))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(hex) = name.strip_suffix(".pack") {
                if let Ok(seq) = u32::from_str_radix(hex, 16) {
                    seqs.push(seq);
                }
            }
            if name.ends_with(".idx.tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        seqs.sort_unstable();
        let mut packs = BTreeMap::new();
        let mut stats: BTreeMap<u32, PackStats> = BTreeMap::new();
        let mut active: Option<Active> = None;
        {
            let mut idx = write_lock(index);
            for (n, &seq) in seqs.iter().enumerate() {
                let path = packs_dir.join(pack_name(seq, "pack"));
                let file = open_pack(&path, false)?;
                let sealed_list = read_idx(&packs_dir.join(pack_name(seq, "idx")));
                let sealed = sealed_list.is_some();
                let (entries, end) = match sealed_list {
                    Some(list) => (list, 0),
                    None => scan_pack(&file, &path)?,
                };
                let st = stats.entry(seq).or_default();
                st.sealed = sealed;
                for e in &entries {
                    match e {
                        Entry::Shard { key, offset, len } => {
                            let loc = Loc {
                                disk: number,
                                pack: seq,
                                offset: *offset,
                                len: *len,
                            };
                            if let Some(old) = idx.insert(*key, loc) {
                                if let Some(s) = stats.get_mut(&old.pack) {
                                    s.live = s.live.saturating_sub(1);
                                }
                            }
                            stats.entry(seq).or_default().live += 1;
                        }
                        Entry::Tomb { key, pack, offset } => {
                            stats.entry(seq).or_default().tombstones = true;
                            let hit = idx.get(key).is_some_and(|l| {
                                l.disk == number && l.pack == *pack && l.offset == *offset
                            });
                            if hit {
                                idx.remove(key);
                                if let Some(s) = stats.get_mut(pack) {
                                    s.live = s.live.saturating_sub(1);
                                }
                            }
                        }
                    }
                }
                let pack = Arc::new(Pack { path, file });
                packs.insert(seq, pack.clone());
                if !sealed && n + 1 == seqs.len() {
                    active = Some(Active {
                        seq,
                        pack,
                        end,
                        entries,
                    });
                } else if !sealed {
                    // An older pack without its list (a crash while sealing).
                    let _ = write_idx(&packs_dir.join(pack_name(seq, "idx")), &entries);
                    if let Some(s) = stats.get_mut(&seq) {
                        s.sealed = true;
                    }
                }
            }
        }
        let active = match active {
            Some(a) => a,
            None => {
                let seq = seqs.last().map(|s| s + 1).unwrap_or(1);
                let path = packs_dir.join(pack_name(seq, "pack"));
                let file = open_pack(&path, true)?;
                sync_dir(packs_dir)?;
                let pack = Arc::new(Pack { path, file });
                packs.insert(seq, pack.clone());
                stats.entry(seq).or_default();
                Active {
                    seq,
                    pack,
                    end: 0,
                    entries: Vec::new(),
                }
            }
        };
        let disk = Arc::new(Disk {
            number,
            root: root.to_path_buf(),
            packs_dir: packs_dir.to_path_buf(),
            packs: RwLock::new(packs),
            stats: Mutex::new(stats),
            has_legacy: root.join("shards").exists(),
        });
        let direct = open_direct(&active.pack.path);
        let writer = Writer {
            disk: disk.clone(),
            index: index.clone(),
            active,
            direct,
            stage: Stage::with_capacity(STAGE_BYTES),
            pack_bytes,
            others: Vec::new(),
        };
        Ok((disk, writer))
    }

    pub fn disk_count(&self) -> usize {
        self.disks.len()
    }

    /// The disks in the order `block` prefers them (a rendezvous hash).
    fn ranked_disks(&self, block: &BlockId) -> Vec<usize> {
        let mut ranked: Vec<(u64, usize)> = (0..self.disks.len())
            .map(|d| {
                let mut h = blake3::Hasher::new();
                h.update(block.as_bytes());
                h.update(&(d as u64).to_le_bytes());
                let b = h.finalize();
                let mut w = [0u8; 8];
                w.copy_from_slice(&b.as_bytes()[..8]);
                (u64::from_le_bytes(w), d)
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        ranked.into_iter().map(|(_, d)| d).collect()
    }

    /// The disk of shard `index` of `block`: disks are ranked by a
    /// rendezvous hash of the block, shard i goes to the i-th (wrapping when
    /// there are fewer disks than shards). Writers give a node two shards
    /// of one block only when their indices land on different disks
    /// (`placement::View::write_plan`); a shard written again lands where
    /// it was.
    pub fn disk_for(&self, block: &BlockId, index: usize) -> usize {
        let ranked = self.ranked_disks(block);
        ranked[index % ranked.len()]
    }

    fn legacy_path(&self, disk: usize, block: &BlockId, index: u8) -> PathBuf {
        let hex = block.to_string();
        self.disks[disk]
            .root
            .join("shards")
            .join(&hex[..2])
            .join(format!("{hex}.{index}"))
    }

    /// Writes a whole shard file (`shard::file` layout) durably to the
    /// disk placement gives it; returns once it is on disk. The record is
    /// checked first, so nothing malformed is ever stored.
    pub async fn put(&self, meta: &ShardMeta, record: Bytes) -> Result<(), StoreError> {
        shard::verify(&record, meta)?;
        self.put_built(meta, record).await
    }

    /// `put` for a record this node has just built from the payload
    /// (`shard::fill_header`), so hashing it again would prove nothing.
    pub async fn put_built(&self, meta: &ShardMeta, record: Bytes) -> Result<(), StoreError> {
        if record.len() < HEADER_LEN {
            return Err(StoreError::Refused(ShardFormatError::Truncated));
        }
        let disk = self.disk_for(&meta.block, meta.index as usize);
        let (done, rx) = oneshot::channel();
        let op = Op::Put {
            key: (meta.block, meta.index),
            record,
            done,
        };
        self.submit(disk, op).await?;
        rx.await.map_err(|_| StoreError::Stopped(disk))?
    }

    /// Reads and verifies one shard; returns the whole shard file.
    pub fn read_record(&self, meta: &ShardMeta) -> Result<Bytes, ShardReadError> {
        let loc = read_lock(&self.index)
            .get(&(meta.block, meta.index))
            .copied();
        if let Some(loc) = loc {
            let disk = &self.disks[loc.disk as usize];
            let pack = read_lock(&disk.packs).get(&loc.pack).cloned();
            if let Some(pack) = pack {
                let mut buf = vec![0u8; loc.len as usize];
                pack.file
                    .read_exact_at(&mut buf, loc.offset)
                    .map_err(|e| ShardReadError::Io(io_at(&pack.path)(e)))?;
                shard::verify(&buf, meta)?;
                return Ok(Bytes::from(buf));
            }
        }
        // Shards written by earlier versions, one file each.
        for d in (0..self.disks.len()).filter(|d| self.disks[*d].has_legacy) {
            let path = self.legacy_path(d, &meta.block, meta.index);
            match fs::read(&path) {
                Ok(bytes) => {
                    shard::verify(&bytes, meta)?;
                    return Ok(Bytes::from(bytes));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ShardReadError::Io(io_at(&path)(e))),
            }
        }
        Err(ShardReadError::Missing)
    }

    /// Reads and verifies one shard; returns its payload.
    pub fn read_any_disk(&self, meta: &ShardMeta) -> Result<Bytes, ShardReadError> {
        Ok(self.read_record(meta)?.slice(HEADER_LEN..))
    }

    /// Whether the node holds a record of the shard (no checksum: a fast
    /// census; reads verify).
    pub fn exists(&self, block: &BlockId, index: u8) -> bool {
        read_lock(&self.index).contains_key(&(*block, index))
            || (0..self.disks.len())
                .any(|d| self.disks[d].has_legacy && self.legacy_path(d, block, index).exists())
    }

    /// Removes a shard (missing is fine).
    pub async fn remove(&self, block: &BlockId, index: u8) -> Result<(), StoreError> {
        let key = (*block, index);
        let loc = write_lock(&self.index).remove(&key);
        if let Some(loc) = loc {
            let disk = loc.disk as usize;
            let (done, rx) = oneshot::channel();
            let op = Op::Remove { key, loc, done };
            self.submit(disk, op).await?;
            rx.await.map_err(|_| StoreError::Stopped(disk))??;
        }
        for d in (0..self.disks.len()).filter(|d| self.disks[*d].has_legacy) {
            let path = self.legacy_path(d, block, index);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        Ok(())
    }

    /// Whether a disk lost its marker (replaced or wiped) when opened.
    pub fn replaced_disks(&self) -> &[usize] {
        &self.replaced
    }

    pub fn disk_root(&self, disk: usize) -> &Path {
        &self.disks[disk].root
    }

    /// Shards in the index (the legacy files are not counted).
    pub fn len(&self) -> usize {
        read_lock(&self.index).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where a shard's record lies: pack file, offset, length (for tests
    /// that damage it on purpose).
    #[doc(hidden)]
    pub fn record_place(&self, block: &BlockId, index: u8) -> Option<(PathBuf, u64, u32)> {
        let loc = read_lock(&self.index).get(&(*block, index)).copied()?;
        let disk = &self.disks[loc.disk as usize];
        let path = read_lock(&disk.packs).get(&loc.pack)?.path.clone();
        Some((path, loc.offset, loc.len))
    }
}

impl Drop for LocalShards {
    fn drop(&mut self) {
        // The writers finish what is queued and end when their queues close.
        self.queues.clear();
        for t in std::mem::take(&mut *lock(&self.threads)) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(block: u8, i: u8) -> ShardMeta {
        ShardMeta {
            block: BlockId([block; 32]),
            codec: 1,
            data: 2,
            parity: 1,
            index: i,
            sealed_len: 10,
        }
    }

    fn record(m: &ShardMeta, len: usize, fill: u8) -> Bytes {
        Bytes::from(shard::file(m, &vec![fill; len]))
    }

    fn pack_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir.join("packs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "pack"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_stage_is_aligned_zero_padded_and_grows_for_one_large_record() {
        let mut st = Stage::with_capacity(2 * ALIGN as usize);
        // Dirty the buffer: padding must still come out as zeros.
        st.buf.fill(0xee);
        st.push(&[1u8; 100]);
        st.push(&[2u8; ALIGN as usize]);
        assert_eq!(st.staged().as_ptr() as usize % ALIGN as usize, 0);
        assert_eq!(st.len, 2 * ALIGN as usize);
        assert!(st.staged()[..100].iter().all(|&b| b == 1));
        assert!(st.staged()[100..ALIGN as usize].iter().all(|&b| b == 0));
        assert!(st.staged()[ALIGN as usize..].iter().all(|&b| b == 2));
        // Larger than the room left: the buffer grows, keeping what was
        // staged, and stays aligned.
        assert!(st.room() < 3 * ALIGN as usize);
        st.push(&[3u8; 3 * ALIGN as usize - 7]);
        assert_eq!(st.staged().as_ptr() as usize % ALIGN as usize, 0);
        assert_eq!(st.len, 5 * ALIGN as usize);
        assert!(st.staged()[..100].iter().all(|&b| b == 1));
        assert!(st.staged()[ALIGN as usize..2 * ALIGN as usize]
            .iter()
            .all(|&b| b == 2));
        assert!(st.staged()[5 * ALIGN as usize - 7..]
            .iter()
            .all(|&b| b == 0));
        st.clear();
        assert_eq!(st.len, 0);
    }

    /// The simulation's store writes on the caller's task: no writer
    /// threads, the same records, found again by a threaded open.
    #[tokio::test(flavor = "current_thread")]
    async fn an_inline_store_writes_in_place_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("d{i}"))).collect();
        {
            let store = LocalShards::open_inline(&dirs).unwrap();
            assert!(lock(&store.threads).is_empty());
            for blk in 0..10u8 {
                let m = meta(blk, blk % 3);
                store
                    .put(&m, record(&m, 300 + blk as usize, blk))
                    .await
                    .unwrap();
            }
            // A rewrite supersedes the old record (on whichever disk).
            let m = meta(4, 1);
            store.put(&m, record(&m, 64, 0xee)).await.unwrap();
            store.remove(&BlockId([2; 32]), 2).await.unwrap();
            assert_eq!(store.len(), 9);
            assert_eq!(&store.read_any_disk(&m).unwrap()[..], &[0xee; 64][..]);
        }
        let store = LocalShards::open(&dirs).unwrap();
        assert_eq!(store.len(), 9);
        assert_eq!(
            &store.read_any_disk(&meta(4, 1)).unwrap()[..],
            &[0xee; 64][..]
        );
        assert_eq!(
            &store.read_any_disk(&meta(9, 0)).unwrap()[..],
            &vec![9u8; 309][..]
        );
        assert!(!store.exists(&BlockId([2; 32]), 2));
    }

    #[tokio::test]
    async fn write_read_reopen_remove_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("d{i}"))).collect();
        {
            let store = LocalShards::open(&dirs).unwrap();
            assert_eq!(store.replaced_disks(), &[0, 1, 2]);
            let b = BlockId([0xab; 32]);
            let disks: std::collections::BTreeSet<usize> =
                (0..3).map(|i| store.disk_for(&b, i)).collect();
            assert_eq!(disks.len(), 3, "three shards on three disks");
            // Many writes at once share flushes; each lands whole.
            let mut jobs = Vec::new();
            let store = Arc::new(store);
            for blk in 0..40u8 {
                for i in 0..3u8 {
                    let s = store.clone();
                    jobs.push(tokio::spawn(async move {
                        let m = meta(blk, i);
                        s.put(&m, record(&m, 1000 + blk as usize * 97, blk)).await
                    }));
                }
            }
            for j in jobs {
                j.await.unwrap().unwrap();
            }
            assert_eq!(store.len(), 120);
            let got = store.read_any_disk(&meta(7, 2)).unwrap();
            assert_eq!(&got[..], &vec![7u8; 1000 + 7 * 97][..]);
            assert!(matches!(
                store.read_any_disk(&meta(200, 0)),
                Err(ShardReadError::Missing)
            ));
            // A record that does not match what it claims is refused.
            let m = meta(1, 1);
            let mut bad = shard::file(&m, b"payload").to_vec();
            let n = bad.len();
            bad[n - 1] ^= 1;
            assert!(store.put(&m, Bytes::from(bad)).await.is_err());
            store.remove(&BlockId([3; 32]), 1).await.unwrap();
            store.remove(&BlockId([3; 32]), 1).await.unwrap();
            assert!(!store.exists(&BlockId([3; 32]), 1));
            // A rewrite replaces the old record.
            let m = meta(5, 0);
            store.put(&m, record(&m, 500, 0xee)).await.unwrap();
            assert_eq!(&store.read_any_disk(&m).unwrap()[..], &[0xee; 500][..]);
        }
        // Everything is found again after a restart, removals included.
        let store = LocalShards::open(&dirs).unwrap();
        assert!(store.replaced_disks().is_empty());
        assert_eq!(store.len(), 119);
        assert!(!store.exists(&BlockId([3; 32]), 1));
        assert_eq!(
            &store.read_any_disk(&meta(5, 0)).unwrap()[..],
            &[0xee; 500][..]
        );
        assert_eq!(
            &store.read_any_disk(&meta(39, 1)).unwrap()[..],
            &vec![39u8; 1000 + 39 * 97][..]
        );
        // A flipped byte on disk is caught by the checksum.
        let m = meta(9, 0);
        let disk = store.disk_for(&m.block, 0);
        let loc = read_lock(&store.index).get(&(m.block, 0)).copied().unwrap();
        let pack = dirs[disk].join("packs").join(pack_name(loc.pack, "pack"));
        let f = OpenOptions::new().write(true).open(&pack).unwrap();
        f.write_all_at(&[0x55], loc.offset + HEADER_LEN as u64 + 10)
            .unwrap();
        assert!(matches!(
            store.read_any_disk(&m),
            Err(ShardReadError::Corrupt(ShardFormatError::Checksum))
        ));
    }

    #[tokio::test]
    async fn a_torn_tail_is_ignored_and_full_packs_are_sealed_and_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().join("d0")];
        {
            let store = LocalShards::open_with(&dirs, 64 * 1024).unwrap();
            for blk in 0..30u8 {
                let m = meta(blk, 0);
                store.put(&m, record(&m, 10_000, blk)).await.unwrap();
            }
            assert!(pack_files(&dirs[0]).len() >= 4, "packs rotate");
            // Removing every shard of the older packs deletes them.
            for blk in 0..20u8 {
                store.remove(&BlockId([blk; 32]), 0).await.unwrap();
            }
            let m = meta(100, 0);
            store.put(&m, record(&m, 10, 1)).await.unwrap();
        }
        let before = pack_files(&dirs[0]);
        assert!(
            !before[0].ends_with(pack_name(1, "pack")),
            "the emptied first pack was deleted: {before:?}"
        );
        // Half a record at the end of the active pack (a crash mid-write).
        let last = before.last().unwrap();
        let len = fs::metadata(last).unwrap().len();
        let f = OpenOptions::new().write(true).open(last).unwrap();
        let m = meta(200, 0);
        let rec = shard::file(&m, &[9u8; 5000]);
        f.write_all_at(&rec[..3000], align_up(len)).unwrap();
        drop(f);
        let store = LocalShards::open_with(&dirs, 64 * 1024).unwrap();
        assert!(!store.exists(&m.block, 0), "a torn record is not a shard");
        assert_eq!(store.len(), 11);
        for blk in 20..30u8 {
            assert_eq!(
                &store.read_any_disk(&meta(blk, 0)).unwrap()[..],
                &[blk; 10_000][..]
            );
        }
        // Writing goes on after the torn bytes.
        let m = meta(201, 0);
        store.put(&m, record(&m, 100, 2)).await.unwrap();
        assert_eq!(&store.read_any_disk(&m).unwrap()[..], &[2u8; 100][..]);
    }

    #[tokio::test]
    async fn shards_of_earlier_versions_are_still_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().join("d0")];
        let m = meta(4, 1);
        let old = dirs[0].join("shards").join(&m.block.to_string()[..2]);
        fs::create_dir_all(&old).unwrap();
        fs::write(dirs[0].join(DISK_MARKER), DISK_MARKER_TEXT).unwrap();
        let path = old.join(format!("{}.1", m.block));
        fs::write(&path, shard::file(&m, b"from before")).unwrap();
        let store = LocalShards::open(&dirs).unwrap();
        assert!(store.replaced_disks().is_empty());
        assert!(store.exists(&m.block, 1));
        assert_eq!(&store.read_any_disk(&m).unwrap()[..], b"from before");
        store.remove(&m.block, 1).await.unwrap();
        assert!(!path.exists());
        assert!(matches!(
            store.read_any_disk(&m),
            Err(ShardReadError::Missing)
        ));
    }
}
