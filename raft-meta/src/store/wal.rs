//! The Raft log as a write-ahead log of segment files.
//!
//! ```text
//! raft-log/<seq:016x>.wal     segments, appended in order, about 64 MiB each
//!
//! segment = header record*
//! header  = "SRWL" version(1) reserved(3) seq(u64 LE)            16 bytes
//! record  = len(u32 LE) crc32(u32 LE, of kind and body) kind(u8) body(len-1)
//! ```
//!
//! Record kinds: an entry (the encoded openraft entry), a truncation (drop
//! entries from an index on), a purge (entries up to a log id are gone),
//! the vote, the committed log id, and a state record (vote, committed and
//! purge point) that opens every segment, so that older segments can be
//! deleted without losing any of them.
//!
//! A segment's space is allocated when it is created (`fallocate` of the
//! whole segment): an append then writes into blocks the file already has
//! and does not change its size, so its `fdatasync` has no block
//! allocation or size change to commit to the file system's journal. With
//! three members on one disk their journal commits queued behind each
//! other; 3 concurrent writers measured 309–323 µs per append+sync
//! appending and 228–243 µs into allocated space (BENCHMARKS.md). The
//! allocated, unwritten tail reads as zeros, which is where records end.
//!
//! An append is one `write` at the end of the active segment; it is durable
//! when the flusher thread's next `fdatasync` of that segment returns.
//! Appends that queue while a flush runs are completed by the next one
//! (group commit). Votes, truncations and purges wait for their own flush.
//! A caller that has nothing to do until its append is durable (a
//! follower answers the leader only then) may ask for the `fdatasync` on
//! its own thread when no flush is queued or running: that saves waking
//! the flusher and being woken by it, two thread switches of the commit's
//! critical path.
//!
//! How far the log is durable is published as a watermark (`Durability`):
//! every entry below it has been through an `fdatasync`. A truncation
//! lowers it at once and starts a new generation, so a flush that began
//! before the truncation cannot vouch for entries written after it. The
//! leader reports its own appends to openraft as soon as they are written
//! and waits on the watermark instead (see `log.rs`).
//!
//! Recovery reads the segments in order. A torn record at the end of the
//! last segment (a crash mid-write) is cut off; a bad record anywhere else
//! is corruption and stops the node rather than losing entries silently.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use openraft::Vote;
use serde::{Deserialize, Serialize};

use crate::records::{decode, encode};
use crate::types::{LogId, TypeConfig};

pub type Entry = openraft::Entry<TypeConfig>;

const MAGIC: &[u8; 4] = b"SRWL";
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 16;
const RECORD_PREFIX: usize = 8;
/// A new segment is started once the active one passes this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// No record is larger (a batch of commands with long block lists).
const MAX_RECORD_BYTES: usize = 1 << 30;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_VOTE: u8 = 4;
const KIND_COMMITTED: u8 = 5;
const KIND_STATE: u8 = 6;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("raft log segment {path} corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("raft log: {0}")]
    Invariant(String),
    #[error("raft log flusher stopped")]
    Stopped,
    #[error("raft log: an fdatasync failed; the log cannot be made durable")]
    FlushFailed,
}

impl From<WalError> for io::Error {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What opens every segment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    vote: Option<Vote<u64>>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

struct Segment {
    seq: u64,
    path: PathBuf,
    file: File,
}

/// Where an entry's record body is.
#[derive(Clone, Copy)]
struct Loc {
    seg: u64,
    offset: u64,
    len: u32,
    log_id: LogId,
}

struct Inner {
    dir: PathBuf,
    segment_bytes: u64,
    segments: VecDeque<Arc<Segment>>,
    active_len: u64,
    /// Index of `entries[0]` (meaningless while `entries` is empty).
    first_index: u64,
    entries: VecDeque<Loc>,
    state: State,
    /// A committed id not yet written (it rides along with the next write).
    committed_dirty: bool,
    durable: Durability,
}

type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// The durable watermark: entries below `next` are durable, as far as
/// generation `gen` goes (a truncation starts a new one).
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    next: u64,
    gen: u64,
    failed: bool,
}

/// Where the log stood when a write was made: once a flush that began
/// after it returns, entries below `next` are durable, unless a truncation
/// started a newer generation meanwhile.
#[derive(Clone, Copy, Debug)]
struct Stamp {
    next: u64,
    gen: u64,
}

/// How far the log is durable; cheap to clone, shared with every handle.
#[derive(Clone)]
pub struct Durability(Arc<tokio::sync::watch::Sender<Mark>>);

impl Durability {
    fn new(next: u64) -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(Mark {
            next,
            gen: 0,
            failed: false,
        })))
    }

    /// Waits until the entry at `index` is durable (or, when the log holds
    /// no such entry yet, until one written there later is).
    pub async fn wait(&self, index: u64) -> Result<(), WalError> {
        let reached = |m: &Mark| m.failed || m.next > index;
        if !reached(&self.0.borrow()) {
            let mut rx = self.0.subscribe();
            rx.wait_for(reached).await.map_err(|_| WalError::Stopped)?;
        }
        if self.0.borrow().failed {
            return Err(WalError::FlushFailed);
        }
        Ok(())
    }

    /// Whether the entry at `index` is durable now.
    pub fn covers(&self, index: u64) -> bool {
        let m = *self.0.borrow();
        !m.failed && m.next > index
    }

    fn stamp(&self, next: u64) -> Stamp {
        Stamp {
            next,
            gen: self.0.borrow().gen,
        }
    }

    /// A flush that began after the write stamped `at` has returned.
    fn reached(&self, at: Stamp) {
        self.0.send_if_modified(|m| {
            let raise = m.gen == at.gen && at.next > m.next;
            if raise {
                m.next = at.next;
            }
            raise
        });
    }

    /// Entries from `index` on are gone (or are about to be replaced).
    fn truncated(&self, index: u64) {
        self.0.send_modify(|m| {
            m.gen += 1;
            m.next = m.next.min(index);
        });
    }

    fn failed(&self) {
        self.0.send_modify(|m| m.failed = true);
    }
}

struct FlushQueue {
    waiting: Vec<(Arc<Segment>, Done, Stamp)>,
    /// A flush runs (on the flusher or on a caller's thread): completions
    /// are reported in the order of the writes, so no second one starts.
    busy: bool,
    stop: bool,
}

struct Flusher {
    queue: Mutex<FlushQueue>,
    wake: Condvar,
    durable: Durability,
}

/// Who runs the `fdatasync` that makes an append durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushBy {
    /// The flusher thread, together with whatever else is queued.
    Flusher,
    /// The caller's thread when nothing else is being flushed (a caller
    /// that waits for the flush anyway), else the flusher.
    ThisThreadIfIdle,
}

/// The write-ahead log. Cheap to clone; all clones share one log.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Mutex<Inner>>,
    flusher: Arc<Flusher>,
    _thread: Arc<FlusherThread>,
    /// Every flush on the appending thread, none on the flusher (the
    /// simulation: no thread outside its runtime decides when an append
    /// is durable).
    inline: bool,
}

/// Stops the flusher thread when the last handle goes.
struct FlusherThread {
    flusher: Arc<Flusher>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for FlusherThread {
    fn drop(&mut self) {
        lock(&self.flusher.queue).stop = true;
        self.flusher.wake.notify_all();
        if let Some(h) = lock(&self.handle).take() {
            let _ = h.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn run_flusher(flusher: Arc<Flusher>) {
    loop {
        let batch = {
            let mut q = lock(&flusher.queue);
            while (q.waiting.is_empty() || q.busy) && !q.stop {
                q = flusher.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.waiting.is_empty() {
                return;
            }
            q.busy = true;
            std::mem::take(&mut q.waiting)
        };
        // Older segments first: an entry is durable only with all before it.
        let mut segs: Vec<Arc<Segment>> = Vec::new();
        for (s, _, _) in &batch {
            if !segs.iter().any(|x| x.seq == s.seq) {
                segs.push(s.clone());
            }
        }
        segs.sort_by_key(|s| s.seq);
        let mut result: io::Result<()> = Ok(());
        for s in &segs {
            if let Err(e) = s.file.sync_data() {
                tracing::error!(path = %s.path.display(), error = %e, "raft log fdatasync failed");
                result = Err(e);
                break;
            }
        }
        for (_, done, stamp) in batch {
            match &result {
                Ok(()) => flusher.durable.reached(stamp),
                Err(_) => flusher.durable.failed(),
            }
            done(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
        lock(&flusher.queue).busy = false;
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

fn record(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    let len = (body.len() + 1) as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(body);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

/// Allocates `len` bytes for `file` (its size becomes `len`, the new part
/// reads as zeros). Where the file system cannot, appends grow the file
/// as they go, which is correct, only slower.
fn preallocate(file: &File, path: &Path, len: u64) {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(len) else {
        return;
    };
    // SAFETY: `file` is an open descriptor for the whole call; fallocate
    // reads no memory of ours.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if r != 0 {
        let e = io::Error::last_os_error();
        tracing::debug!(path = %path.display(), error = %e, "raft log: no preallocation");
    }
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}

/// Whether the record at `at` is a torn write at the very end: it runs
/// past the end of the file, or nothing but zeros (pages never written)
/// follows its start. Anything else is damage to acknowledged records.
fn only_zeros_after(bytes: &[u8], at: usize) -> bool {
    let Some(prefix) = bytes.get(at..at + RECORD_PREFIX) else {
        return true;
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let end = at + RECORD_PREFIX + len;
    if len > 0 && end >= bytes.len() {
        return true;
    }
    let tail_from = if len == 0 || len > MAX_RECORD_BYTES {
        at
    } else {
        end
    };
    bytes[tail_from..].iter().all(|b| *b == 0)
}

/// One record as read back.
struct Parsed<'a> {
    kind: u8,
    body: &'a [u8],
    /// Offset of the body in the segment.
    body_at: u64,
    /// Offset just past the record.
    end: u64,
}

/// The record at `at`, `Ok(None)` at a clean end, `Err` with a reason when
/// the bytes there are not a whole valid record.
fn parse_at(bytes: &[u8], at: usize) -> Result<Option<Parsed<'_>>, String> {
    if at == bytes.len() {
        return Ok(None);
    }
    let Some(prefix) = bytes.get(at..at + RECORD_PREFIX) else {
        return Err("short record prefix".into());
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let crc = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(format!("bad record length {len}"));
    }
    let start = at + RECORD_PREFIX;
    let Some(payload) = bytes.get(start..start + len) else {
        return Err("short record".into());
    };
    if crc32fast::hash(payload) != crc {
        return Err("record checksum mismatch".into());
    }
    Ok(Some(Parsed {
        kind: payload[0],
        body: &payload[1..],
        body_at: (start + 1) as u64,
        end: (start + len) as u64,
    }))
}

impl Inner {
    fn next_index(&self) -> Option<u64> {
        if self.entries.is_empty() {
            self.state.purged.map(|p| p.index + 1)
        } else {
            Some(self.first_index + self.entries.len() as u64)
        }
    }

    fn active(&self) -> &Arc<Segment> {
        // Invariant: a Wal always has an active segment (created at open).
        self.segments
            .back()
            .expect("the raft log always has an active segment")
    }

    fn push_entry(&mut self, loc: Loc) -> Result<(), String> {
        let index = loc.log_id.index;
        match self.next_index() {
            Some(next) if next != index => {
                return Err(format!("entry {index} does not follow {}", next - 1))
            }
            None => self.first_index = index,
            Some(_) => {}
        }
        if self.entries.is_empty() {
            self.first_index = index;
        }
        self.entries.push_back(loc);
        Ok(())
    }

    fn truncate_from(&mut self, index: u64) {
        self.durable.truncated(index);
        if self.entries.is_empty() || index < self.first_index {
            self.entries.clear();
            return;
        }
        let keep = (index - self.first_index) as usize;
        self.entries.truncate(keep);
    }

    fn purge_upto(&mut self, log_id: LogId) {
        while let Some(first) = self.entries.front() {
            if first.log_id.index > log_id.index {
                break;
            }
            self.entries.pop_front();
            self.first_index += 1;
        }
        if self.state.purged.is_none_or(|p| p.index < log_id.index) {
            self.state.purged = Some(log_id);
        }
    }

    /// Applies one record read back from segment `seg`.
    fn replay(&mut self, seg: u64, r: &Parsed<'_>) -> Result<(), String> {
        match r.kind {
            KIND_ENTRY => {
                let e: Entry = decode("raft log entry", r.body).map_err(|e| e.to_string())?;
                self.push_entry(Loc {
                    seg,
                    offset: r.body_at,
                    len: r.body.len() as u32,
                    log_id: e.log_id,
                })
            }
            KIND_TRUNCATE => {
                let index: u64 =
                    decode("raft log truncation", r.body).map_err(|e| e.to_string())?;
                self.truncate_from(index);
                Ok(())
            }
            KIND_PURGE => {
                let id: LogId = decode("raft log purge", r.body).map_err(|e| e.to_string())?;
                self.purge_upto(id);
                Ok(())
            }
            KIND_VOTE => {
                self.state.vote = Some(decode("raft vote", r.body).map_err(|e| e.to_string())?);
                Ok(())
            }
            KIND_COMMITTED => {
                self.state.committed =
                    decode("raft committed", r.body).map_err(|e| e.to_string())?;
                Ok(())
            }
            KIND_STATE => {
                let s: State = decode("raft log state", r.body).map_err(|e| e.to_string())?;
                if s.vote.is_some() {
                    self.state.vote = s.vote;
                }
                if s.committed.is_some() {
                    self.state.committed = s.committed;
                }
                if let Some(p) = s.purged {
                    self.purge_upto(p);
                }
                Ok(())
            }
            k => Err(format!("unknown record kind {k}")),
        }
    }

    /// Stamps a write made just now (see `Stamp`).
    fn stamp(&self) -> Stamp {
        self.durable.stamp(self.next_index().unwrap_or(0))
    }

    /// Writes `buf` at the end of the active segment.
    fn write(&mut self, buf: &[u8]) -> Result<Arc<Segment>, WalError> {
        let seg = self.active().clone();
        seg.file
            .write_all_at(buf, self.active_len)
            .map_err(io_at(&seg.path))?;
        self.active_len += buf.len() as u64;
        Ok(seg)
    }

    /// Starts a new segment once the active one is full. The old one is
    /// made durable first, and the new one opens with the whole state.
    fn maybe_rotate(&mut self) -> Result<(), WalError> {
        if self.active_len < self.segment_bytes {
            return Ok(());
        }
        let old = self.active().clone();
        old.file.sync_data().map_err(io_at(&old.path))?;
        let seq = old.seq + 1;
        let seg = create_segment(&self.dir, seq, &self.state, self.segment_bytes)?;
        self.active_len = seg.1;
        self.segments.push_back(Arc::new(seg.0));
        self.committed_dirty = false;
        Ok(())
    }
}

/// Creates segment `seq` with its header and a state record, durably, and
/// allocates `segment_bytes` for it.
fn create_segment(
    dir: &Path,
    seq: u64,
    state: &State,
    segment_bytes: u64,
) -> Result<(Segment, u64), WalError> {
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_at(&path))?;
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(MAGIC);
    buf.push(FORMAT_V1);
    buf.extend_from_slice(&[0, 0, 0]);
    buf.extend_from_slice(&seq.to_le_bytes());
    record(KIND_STATE, &encode(state), &mut buf);
    file.write_all_at(&buf, 0).map_err(io_at(&path))?;
    file.sync_all().map_err(io_at(&path))?;
    sync_dir(dir)?;
    // Only once the header is durable: a crash in between leaves a
    // segment that opens with a valid header and zeros after it.
    if segment_bytes > buf.len() as u64 {
        preallocate(&file, &path, segment_bytes);
        file.sync_all().map_err(io_at(&path))?;
    }
    Ok((Segment { seq, path, file }, buf.len() as u64))
}

/// What `open` found: the log and whether it was created empty.
pub struct Opened {
    pub wal: Wal,
    #[cfg(test)]
    pub fresh: bool,
}

impl Wal {
    /// Opens the log in `dir`, creating it if missing, and recovers it.
    pub fn open(dir: &Path) -> Result<Opened, WalError> {
        Self::open_with(dir, SEGMENT_BYTES)
    }

    /// `open` with segments of about `segment_bytes`.
    pub fn open_with(dir: &Path, segment_bytes: u64) -> Result<Opened, WalError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let mut seqs: Vec<u64> = Vec::new();
        for e in fs::read_dir(dir).map_err(io_at(dir))? {
            let e = e.map_err(io_at(dir))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(hex) = name.strip_suffix(".wal") {
                if let Ok(seq) = u64::from_str_radix(hex, 16) {
                    seqs.push(seq);
                }
            }
        }
        seqs.sort_unstable();
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments: VecDeque::new(),
            active_len: 0,
            first_index: 0,
            entries: VecDeque::new(),
            state: State::default(),
            committed_dirty: false,
            durable: Durability::new(0),
        };
        #[cfg(test)]
        let fresh = seqs.is_empty();
        for (n, &seq) in seqs.iter().enumerate() {
            let last = n + 1 == seqs.len();
            let path = dir.join(segment_name(seq));
            let bytes = fs::read(&path).map_err(io_at(&path))?;
            let corrupt = |offset: u64, reason: String| WalError::Corrupt {
                path: path.clone(),
                offset,
                reason,
            };
            let header_ok = bytes.len() >= HEADER_LEN
                && &bytes[..4] == MAGIC
                && bytes[4] == FORMAT_V1
                && bytes[8..16] == seq.to_le_bytes();
            if !header_ok {
                if last && bytes.len() < HEADER_LEN + RECORD_PREFIX {
                    // Created but never completed: the crash came first.
                    fs::remove_file(&path).map_err(io_at(&path))?;
                    continue;
                }
                return Err(corrupt(0, "bad segment header".into()));
            }
            let mut at = HEADER_LEN;
            // Where the records end, and whether a torn one follows.
            let (end, torn) = loop {
                match parse_at(&bytes, at) {
                    Ok(None) => break (at, false),
                    Ok(Some(r)) => {
                        inner
                            .replay(seq, &r)
                            .map_err(|reason| corrupt(at as u64, reason))?;
                        at = r.end as usize;
                    }
                    // The allocated space no record reached yet.
                    Err(_) if bytes[at..].iter().all(|b| *b == 0) => break (at, false),
                    Err(reason) if last && only_zeros_after(&bytes, at) => {
                        tracing::warn!(
                            path = %path.display(),
                            offset = at,
                            reason,
                            "raft log: dropping a torn record at the end"
                        );
                        break (at, true);
                    }
                    Err(reason) => return Err(corrupt(at as u64, reason)),
                }
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_at(&path))?;
            if torn {
                // A torn record: cut it off so that no later append can
                // leave pieces of it behind, and allocate the space again.
                file.set_len(end as u64).map_err(io_at(&path))?;
                file.sync_all().map_err(io_at(&path))?;
                preallocate(&file, &path, segment_bytes);
                file.sync_all().map_err(io_at(&path))?;
            }
            inner.active_len = end as u64;
            inner
                .segments
                .push_back(Arc::new(Segment { seq, path, file }));
        }
        if inner.segments.is_empty() {
            let seq = seqs.last().map(|s| s + 1).unwrap_or(1);
            let (seg, len) = create_segment(dir, seq, &inner.state, segment_bytes)?;
            inner.active_len = len;
            inner.segments.push_back(Arc::new(seg));
        }
        // What was read back may still sit only in the page cache (the
        // process was killed before its flush): make it durable before
        // the watermark says so.
        for s in &inner.segments {
            s.file.sync_data().map_err(io_at(&s.path))?;
        }
        let durable = Durability::new(inner.next_index().unwrap_or(0));
        inner.durable = durable.clone();
        let flusher = Arc::new(Flusher {
            queue: Mutex::new(FlushQueue {
                waiting: Vec::new(),
                busy: false,
                stop: false,
            }),
            wake: Condvar::new(),
            durable,
        });
        let thread = {
            let f = flusher.clone();
            std::thread::Builder::new()
                .name("raft-log-flush".into())
                .spawn(move || run_flusher(f))
                .map_err(io_at(dir))?
        };
        Ok(Opened {
            wal: Wal {
                inner: Arc::new(Mutex::new(inner)),
                flusher: flusher.clone(),
                _thread: Arc::new(FlusherThread {
                    flusher,
                    handle: Mutex::new(Some(thread)),
                }),
                inline: false,
            },
            #[cfg(test)]
            fresh,
        })
    }

    /// Flushes on the appending thread from now on (see `inline`).
    pub fn flush_inline(mut self) -> Self {
        self.inline = true;
        self
    }

    /// `fdatasync` of `seg` on this thread; the watermark moves (or the
    /// log is marked failed) before `done` hears of it.
    fn sync_now(&self, seg: &Segment, done: Done, stamp: Stamp) {
        let result = seg.file.sync_data();
        match &result {
            Ok(()) => self.flusher.durable.reached(stamp),
            Err(e) => {
                tracing::error!(path = %seg.path.display(), error = %e, "raft log fdatasync failed");
                self.flusher.durable.failed();
            }
        }
        done(result);
    }

    fn enqueue(&self, seg: Arc<Segment>, done: Done, stamp: Stamp) {
        if self.inline {
            return self.sync_now(&seg, done, stamp);
        }
        let mut q = lock(&self.flusher.queue);
        if q.stop {
            drop(q);
            done(Err(io::Error::other("raft log flusher stopped")));
            return;
        }
        q.waiting.push((seg, done, stamp));
        drop(q);
        self.flusher.wake.notify_one();
    }

    /// Flushes `seg` on this thread and reports `done`, unless a flush is
    /// queued or running: then the flusher completes it in turn.
    fn flush_here(&self, seg: Arc<Segment>, done: Done, stamp: Stamp) {
        if self.inline {
            return self.enqueue(seg, done, stamp);
        }
        {
            let mut q = lock(&self.flusher.queue);
            if q.stop || q.busy || !q.waiting.is_empty() {
                drop(q);
                self.enqueue(seg, done, stamp);
                return;
            }
            q.busy = true;
        }
        self.sync_now(&seg, done, stamp);
        let mut q = lock(&self.flusher.queue);
        q.busy = false;
        let queued = !q.waiting.is_empty();
        drop(q);
        if queued {
            self.flusher.wake.notify_one();
        }
    }

    /// Writes `buf` (records) and waits until it is durable.
    async fn write_durably(&self, buf: Vec<u8>) -> Result<(), WalError> {
        let (seg, stamp) = {
            let mut inner = lock(&self.inner);
            let seg = inner.write(&buf)?;
            inner.maybe_rotate()?;
            (seg, inner.stamp())
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue(
            seg,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
            stamp,
        );
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WalError::Io {
                path: PathBuf::from("raft log"),
                source: e,
            }),
            Err(_) => Err(WalError::Stopped),
        }
    }

    /// Appends entries; `done` runs once they are durable. An entry at an
    /// index the log already holds replaces it and everything after it;
    /// one at or below the purge point is dropped. With
    /// `FlushBy::ThisThreadIfIdle` and no flush queued or running, the
    /// `fdatasync` runs on this thread and `done` has run on return.
    pub fn append(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        by: FlushBy,
        done: impl FnOnce(io::Result<()>) + Send + 'static,
    ) -> Result<(), WalError> {
        match (self.write_entries(entries)?, by) {
            (Some((seg, stamp)), FlushBy::Flusher) => self.enqueue(seg, Box::new(done), stamp),
            (Some((seg, stamp)), FlushBy::ThisThreadIfIdle) => {
                self.flush_here(seg, Box::new(done), stamp)
            }
            (None, _) => done(Ok(())),
        }
        Ok(())
    }

    /// Writes the records of `entries`; the segment to flush and the
    /// write's stamp, or `None` when nothing was written.
    fn write_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Option<(Arc<Segment>, Stamp)>, WalError> {
        let mut buf = Vec::new();
        let mut inner = lock(&self.inner);
        if inner.committed_dirty {
            record(KIND_COMMITTED, &encode(&inner.state.committed), &mut buf);
            inner.committed_dirty = false;
        }
        enum Op {
            Truncate(u64),
            Push(u64, u32, LogId),
        }
        let mut ops = Vec::new();
        let mut next = inner.next_index();
        let purged = inner.state.purged.map(|p| p.index);
        for e in entries {
            let index = e.log_id.index;
            if purged.is_some_and(|p| index <= p) {
                // Already covered by the applied state the purge kept.
                continue;
            }
            if next.is_some_and(|n| index < n) {
                record(KIND_TRUNCATE, &encode(&index), &mut buf);
                ops.push(Op::Truncate(index));
            }
            let body = encode(&e);
            let at = inner.active_len + buf.len() as u64 + RECORD_PREFIX as u64 + 1;
            ops.push(Op::Push(at, body.len() as u32, e.log_id));
            record(KIND_ENTRY, &body, &mut buf);
            next = Some(index + 1);
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let seg = inner.write(&buf)?;
        for op in ops {
            match op {
                Op::Truncate(index) => inner.truncate_from(index),
                Op::Push(offset, len, log_id) => inner
                    .push_entry(Loc {
                        seg: seg.seq,
                        offset,
                        len,
                        log_id,
                    })
                    .map_err(WalError::Invariant)?,
            }
        }
        inner.maybe_rotate()?;
        Ok(Some((seg, inner.stamp())))
    }

    pub async fn save_vote(&self, vote: &Vote<u64>) -> Result<(), WalError> {
        let mut buf = Vec::new();
        record(KIND_VOTE, &encode(vote), &mut buf);
        lock(&self.inner).state.vote = Some(*vote);
        self.write_durably(buf).await
    }

    /// How far the log is durable.
    pub fn durability(&self) -> Durability {
        self.flusher.durable.clone()
    }

    pub fn vote(&self) -> Option<Vote<u64>> {
        lock(&self.inner).state.vote
    }

    /// Remembers the committed id; written with the next append.
    pub fn set_committed(&self, committed: Option<LogId>) {
        let mut inner = lock(&self.inner);
        inner.state.committed = committed;
        inner.committed_dirty = true;
    }

    pub fn committed(&self) -> Option<LogId> {
        lock(&self.inner).state.committed
    }

    /// Drops the entries from `index` on, durably.
    pub async fn truncate(&self, index: u64) -> Result<(), WalError> {
        let mut buf = Vec::new();
        record(KIND_TRUNCATE, &encode(&index), &mut buf);
        lock(&self.inner).truncate_from(index);
        self.write_durably(buf).await
    }

    /// Drops the entries up to `log_id`, durably, and then the segments
    /// that hold nothing else.
    pub async fn purge(&self, log_id: LogId) -> Result<(), WalError> {
        let mut buf = Vec::new();
        record(KIND_PURGE, &encode(&log_id), &mut buf);
        lock(&self.inner).purge_upto(log_id);
        self.write_durably(buf).await?;
        let doomed: Vec<Arc<Segment>> = {
            let mut inner = lock(&self.inner);
            let first_live = inner.entries.front().map(|l| l.seg);
            let active = inner.active().seq;
            let mut out = Vec::new();
            while let Some(s) = inner.segments.front() {
                let keep = s.seq == active || first_live.is_some_and(|f| s.seq >= f);
                if keep {
                    break;
                }
                if let Some(s) = inner.segments.pop_front() {
                    out.push(s);
                }
            }
            out
        };
        for s in doomed {
            fs::remove_file(&s.path).map_err(io_at(&s.path))?;
        }
        Ok(())
    }

    /// The purge point and the last entry's id (or the purge point).
    pub fn log_state(&self) -> (Option<LogId>, Option<LogId>) {
        let inner = lock(&self.inner);
        let last = inner
            .entries
            .back()
            .map(|l| l.log_id)
            .or(inner.state.purged);
        (inner.state.purged, last)
    }

    /// Entries with indices in `[start, end)` that the log holds.
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, WalError> {
        let (locs, segs) = {
            let inner = lock(&self.inner);
            if inner.entries.is_empty() {
                return Ok(Vec::new());
            }
            let first = inner.first_index;
            let last_excl = first + inner.entries.len() as u64;
            let from = start.max(first);
            let to = end.min(last_excl);
            if from >= to {
                return Ok(Vec::new());
            }
            let locs: Vec<Loc> = inner
                .entries
                .range((from - first) as usize..(to - first) as usize)
                .copied()
                .collect();
            let segs: Vec<Arc<Segment>> = inner.segments.iter().cloned().collect();
            (locs, segs)
        };
        let mut out = Vec::with_capacity(locs.len());
        let mut i = 0;
        while i < locs.len() {
            // One read for a run of entries that sit next to each other.
            let seg_no = locs[i].seg;
            let Some(seg) = segs.iter().find(|s| s.seq == seg_no) else {
                return Err(WalError::Invariant(format!(
                    "segment {seg_no} of entry {} is gone",
                    locs[i].log_id.index
                )));
            };
            let mut j = i + 1;
            while j < locs.len()
                && locs[j].seg == seg_no
                && locs[j].offset
                    == locs[j - 1].offset + locs[j - 1].len as u64 + RECORD_PREFIX as u64 + 1
                && locs[j].offset - locs[i].offset < (8 << 20)
            {
                j += 1;
            }
            let from = locs[i].offset;
            let to = locs[j - 1].offset + locs[j - 1].len as u64;
            let mut buf = vec![0u8; (to - from) as usize];
            seg.file
                .read_exact_at(&mut buf, from)
                .map_err(io_at(&seg.path))?;
            for loc in &locs[i..j] {
                let at = (loc.offset - from) as usize;
                let body = &buf[at..at + loc.len as usize];
                let e: Entry = decode("raft log entry", body).map_err(|e| WalError::Corrupt {
                    path: seg.path.clone(),
                    offset: loc.offset,
                    reason: e.to_string(),
                })?;
                if e.log_id != loc.log_id {
                    return Err(WalError::Corrupt {
                        path: seg.path.clone(),
                        offset: loc.offset,
                        reason: format!("entry {} where {} was expected", e.log_id, loc.log_id),
                    });
                }
                out.push(e);
            }
            i = j;
        }
        Ok(out)
    }

    /// Writes a complete log at once (importing one from elsewhere).
    pub async fn import(
        &self,
        vote: Option<Vote<u64>>,
        committed: Option<LogId>,
        purged: Option<LogId>,
        entries: Vec<Entry>,
    ) -> Result<(), WalError> {
        let mut buf = Vec::new();
        {
            let mut inner = lock(&self.inner);
            if !inner.entries.is_empty() || inner.state.vote.is_some() {
                return Err(WalError::Invariant(
                    "import into a log that is not empty".into(),
                ));
            }
            inner.state = State {
                vote,
                committed,
                purged: None,
            };
            record(
                KIND_STATE,
                &encode(&State {
                    vote,
                    committed,
                    purged,
                }),
                &mut buf,
            );
            if let Some(p) = purged {
                inner.purge_upto(p);
            }
        }
        // Entry locations are recorded as they are written.
        let mut inner = lock(&self.inner);
        let mut locs = Vec::new();
        for e in entries {
            let body = encode(&e);
            let at = inner.active_len + buf.len() as u64 + RECORD_PREFIX as u64 + 1;
            locs.push((at, body.len() as u32, e.log_id));
            record(KIND_ENTRY, &body, &mut buf);
        }
        let seg = inner.write(&buf)?;
        for (offset, len, log_id) in locs {
            inner
                .push_entry(Loc {
                    seg: seg.seq,
                    offset,
                    len,
                    log_id,
                })
                .map_err(WalError::Invariant)?;
        }
        let stamp = inner.stamp();
        drop(inner);
        seg.file.sync_data().map_err(io_at(&seg.path))?;
        self.flusher.durable.reached(stamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn append_sync(wal: &Wal, entries: Vec<Entry>) {
        let (tx, rx) = std::sync::mpsc::channel();
        wal.append(entries, FlushBy::Flusher, move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        rx.recv().unwrap().unwrap();
    }

    fn indices(wal: &Wal) -> Vec<u64> {
        wal.read(0, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[test]
    fn a_flush_on_the_callers_thread_is_done_on_return_and_keeps_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log");
        let order = Arc::new(Mutex::new(Vec::new()));
        {
            let wal = Wal::open(&path).unwrap().wal;
            let o = order.clone();
            wal.append(
                (0..5).map(|i| entry(i, 1)),
                FlushBy::ThisThreadIfIdle,
                move |r| {
                    r.unwrap();
                    lock(&o).push(4);
                },
            )
            .unwrap();
            // Nothing was pending: the flush ran here.
            assert_eq!(*lock(&order), vec![4]);
            // Appends through the flusher and on this thread, mixed: each
            // completes, in the order of its writes.
            let (tx, rx) = std::sync::mpsc::channel();
            for last in [9u64, 14, 19, 24] {
                let (o, tx) = (order.clone(), tx.clone());
                let entries = (last - 4..=last).map(|i| entry(i, 1));
                let done = move |r: io::Result<()>| {
                    r.unwrap();
                    lock(&o).push(last);
                    let _ = tx.send(());
                };
                let by = if last % 10 == 4 {
                    FlushBy::ThisThreadIfIdle
                } else {
                    FlushBy::Flusher
                };
                wal.append(entries, by, done).unwrap();
            }
            for _ in 0..4 {
                rx.recv().unwrap();
            }
            assert_eq!(*lock(&order), vec![4, 9, 14, 19, 24]);
        }
        let wal = Wal::open(&path).unwrap().wal;
        assert_eq!(indices(&wal), (0..25).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn survives_reopen_truncate_purge_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log");
        {
            let o = Wal::open(&path).unwrap();
            assert!(o.fresh);
            let wal = o.wal;
            wal.save_vote(&Vote::new(3, 1)).await.unwrap();
            append_sync(&wal, (0..10).map(|i| entry(i, 1)).collect());
            wal.truncate(7).await.unwrap();
            append_sync(&wal, (7..12).map(|i| entry(i, 2)).collect());
            wal.purge(entry(3, 1).log_id).await.unwrap();
            wal.set_committed(Some(entry(9, 2).log_id));
            append_sync(&wal, vec![entry(12, 2)]);
            assert_eq!(indices(&wal), (4..13).collect::<Vec<_>>());
        }
        let wal = Wal::open(&path).unwrap().wal;
        assert!(!Wal::open(&path).is_ok_and(|o| o.fresh));
        assert_eq!(wal.vote(), Some(Vote::new(3, 1)));
        assert_eq!(wal.committed(), Some(entry(9, 2).log_id));
        assert_eq!(indices(&wal), (4..13).collect::<Vec<_>>());
        let got = wal.read(6, 9).unwrap();
        assert_eq!(got[0].log_id, entry(6, 1).log_id);
        assert_eq!(
            got[1].log_id,
            entry(7, 2).log_id,
            "truncated entries replaced"
        );
        let (purged, last) = wal.log_state();
        assert_eq!(purged, Some(entry(3, 1).log_id));
        assert_eq!(last, Some(entry(12, 2).log_id));
        let end = data_end(&wal);
        drop(wal);

        // A crash mid-append: the last record's final bytes never reached
        // the disk (they read as the allocated space's zeros). It is dropped.
        let seg = path.join(segment_name(1));
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0; 3], end - 3).unwrap();
        drop(f);
        let wal = Wal::open(&path).unwrap().wal;
        assert_eq!(indices(&wal), (4..12).collect::<Vec<_>>());
        let cut = data_end(&wal);
        assert!(cut < end - 3);
        append_sync(&wal, vec![entry(12, 3)]);
        drop(wal);
        let wal = Wal::open(&path).unwrap().wal;
        assert_eq!(wal.read(12, 13).unwrap()[0].log_id, entry(12, 3).log_id);
        drop(wal);

        // The same crash where the file system could not allocate ahead:
        // the file simply ends inside the last record.
        let wal = Wal::open(&path).unwrap().wal;
        append_sync(&wal, vec![entry(13, 3)]);
        let end = data_end(&wal);
        drop(wal);
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(end - 3).unwrap();
        drop(f);
        let wal = Wal::open(&path).unwrap().wal;
        assert_eq!(indices(&wal), (4..13).collect::<Vec<_>>());
    }

    /// Where the next record goes in the active segment.
    fn data_end(wal: &Wal) -> u64 {
        lock(&wal.inner).active_len
    }

    #[tokio::test]
    async fn the_durable_watermark_follows_flushes_and_drops_with_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log");
        let wal = Wal::open(&path).unwrap().wal;
        let durable = wal.durability();
        assert!(!durable.covers(0));
        // Written, not yet flushed: not covered until the flusher returns.
        let (tx, rx) = tokio::sync::oneshot::channel();
        wal.append(
            (0..3).map(|i| entry(i, 1)).collect::<Vec<_>>(),
            FlushBy::Flusher,
            move |r| {
                let _ = tx.send(r);
            },
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), durable.wait(2))
            .await
            .expect("the flush reaches index 2")
            .unwrap();
        rx.await.unwrap().unwrap();
        assert!(durable.covers(2) && !durable.covers(3));
        // A truncation lowers it at once; entries written in its place are
        // covered only by a flush after them.
        wal.truncate(1).await.unwrap();
        assert!(durable.covers(0) && !durable.covers(1));
        append_sync(&wal, vec![entry(1, 2), entry(2, 2)]);
        assert!(durable.covers(2));
        // A replacement inside an append lowers it too.
        let stamp_before = wal.durability().stamp(3);
        append_sync(&wal, vec![entry(2, 3)]);
        assert!(durable.covers(2));
        // A flush stamped before that truncation cannot raise it.
        durable.truncated(2);
        durable.reached(stamp_before);
        assert!(!durable.covers(2));
        drop(wal);
        // Reopened: everything recovered is durable.
        let wal = Wal::open(&path).unwrap().wal;
        assert!(wal.durability().covers(2) && !wal.durability().covers(3));
    }

    #[tokio::test]
    async fn segments_are_allocated_ahead_and_their_zeros_are_where_records_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log");
        let seg = path.join(segment_name(1));
        let wal = Wal::open(&path).unwrap().wal;
        append_sync(&wal, (0..3).map(|i| entry(i, 1)).collect());
        let end = data_end(&wal);
        drop(wal);
        let size = fs::metadata(&seg).unwrap().len();
        // tmpfs and ext4 both allocate; a file system that cannot would
        // leave the file at the data's length, which opens the same way.
        assert!(size == SEGMENT_BYTES || size == end, "{size}");
        for _ in 0..2 {
            // Reopening keeps the allocation and appends after the data.
            let wal = Wal::open(&path).unwrap().wal;
            assert_eq!(data_end(&wal), end);
            assert_eq!(indices(&wal), vec![0, 1, 2]);
            drop(wal);
            assert_eq!(fs::metadata(&seg).unwrap().len(), size);
        }
        let wal = Wal::open(&path).unwrap().wal;
        append_sync(&wal, vec![entry(3, 1)]);
        assert!(data_end(&wal) > end);
        drop(wal);
        let wal = Wal::open(&path).unwrap().wal;
        assert_eq!(indices(&wal), vec![0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_flipped_byte_before_the_tail_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log");
        let end = {
            let wal = Wal::open(&path).unwrap().wal;
            append_sync(&wal, (0..5).map(|i| entry(i, 1)).collect());
            data_end(&wal)
        };
        let seg = path.join(segment_name(1));
        let mut bytes = fs::read(&seg).unwrap();
        // The first entry record's body (after the header and state record).
        let at = HEADER_LEN + 40;
        bytes[at] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        // Records follow the damaged one: not a torn tail, so the node
        // refuses to start rather than forget entries it acknowledged.
        match Wal::open(&path) {
            Ok(_) => panic!("a damaged log opened"),
            Err(e) => assert!(matches!(e, WalError::Corrupt { .. }), "{e}"),
        }
        // Zeros where the last record should be (pages never written): torn.
        let wal = {
            bytes[at] ^= 0x40;
            let n = end as usize;
            for b in &mut bytes[n - 10..n] {
                *b = 0;
            }
            fs::write(&seg, &bytes).unwrap();
            Wal::open(&path).unwrap().wal
        };
        assert_eq!(indices(&wal), vec![0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn segments_rotate_and_old_ones_are_deleted_after_a_purge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log");
        let open = || Wal::open_with(&path, 4096).unwrap().wal;
        let wal = open();
        wal.save_vote(&Vote::new(1, 1)).await.unwrap();
        for i in 0..2000 {
            append_sync(&wal, vec![entry(i, 1)]);
        }
        wal.set_committed(Some(entry(1990, 1).log_id));
        let segments = fs::read_dir(&path).unwrap().count();
        assert!(segments > 5, "{segments} segments");
        wal.purge(entry(1990, 1).log_id).await.unwrap();
        assert!(fs::read_dir(&path).unwrap().count() <= 2);
        append_sync(&wal, vec![entry(2000, 1)]);
        drop(wal);
        let wal = open();
        assert_eq!(
            wal.vote(),
            Some(Vote::new(1, 1)),
            "vote kept across deleted segments"
        );
        assert_eq!(wal.committed(), Some(entry(1990, 1).log_id));
        assert_eq!(indices(&wal), (1991..2001).collect::<Vec<_>>());
        assert_eq!(wal.log_state().0, Some(entry(1990, 1).log_id));
    }
}
