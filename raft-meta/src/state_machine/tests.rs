//! State machine commands, applied directly to a temporary table.

use cluster_config::{BlockId, DeviceId, NodeId, UploadId, UserId};

use super::tx::Tx;
use crate::hashing::TreeHasher;
use crate::kv::{self, Resolved};
use crate::reader::MetaReader;
use crate::records::{BlockRef, ChangeKind, EntryKind, StoredBlock};
use crate::types::*;

struct Fixture {
    _dir: tempfile::TempDir,
    tree: crate::table::Table,
    user: UserId,
    device: DeviceId,
    at: u64,
}

const GIB: u64 = 1 << 30;

fn stored() -> StoredBlock {
    StoredBlock {
        sealed_len: 100,
        data_shards: 2,
        parity_shards: 1,
        key_version: 1,
        layout: 1,
        nodes: [1, 2, 3].map(NodeId::new).to_vec(),
    }
}

fn block(n: u8, size: u32) -> (BlockRef, NewBlock) {
    let id = BlockId([n; 32]);
    (
        BlockRef { id, size },
        NewBlock {
            id,
            plain_len: size,
            stored: stored(),
        },
    )
}

fn segs(p: &str) -> Vec<String> {
    crate::DrivePath::parse(p).unwrap().segments().to_vec()
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::table::Db::open(dir.path(), 8 << 20).unwrap();
        let tree = db.table("sm").unwrap();
        let mut f = Self {
            _dir: dir,
            tree,
            user: UserId([7; 16]),
            device: DeviceId([9; 16]),
            at: 1_700_000_000_000,
        };
        f.ok(Command::CreateUser {
            user: f.user,
            username: "Alice".into(),
            password_hash: "$argon2id$x".into(),
            quota_bytes: 10 * GIB,
            admin: false,
        });
        f.ok(Command::Login {
            user: f.user,
            token_hash: [1; 32],
            device: f.device,
            device_name: "laptop".into(),
            expires_ms: f.at + 1000,
        });
        f
    }

    fn run(&mut self, cmd: Command) -> Response {
        self.at += 1000;
        let mut tx = Tx::new(&self.tree);
        let r = super::apply(
            &mut tx,
            &Request {
                at_ms: self.at,
                cmd,
            },
        )
        .unwrap();
        self.tree.apply_batch(tx.into_batch()).unwrap();
        r
    }

    fn ok(&mut self, cmd: Command) -> Output {
        self.run(cmd).unwrap()
    }

    fn reader(&self) -> MetaReader {
        MetaReader::new(self.tree.clone())
    }

    fn commit(
        &mut self,
        path: &str,
        blocks: &[(BlockRef, NewBlock)],
        hash: u8,
        base: Option<u64>,
        oc: OnConflict,
    ) -> Response {
        let size = blocks.iter().map(|b| b.0.size as u64).sum();
        self.run(Command::CommitFile(CommitFile {
            user: self.user,
            path: segs(path),
            device: self.device,
            content: FileContent {
                size,
                content_hash: [hash; 32],
                blocks: blocks.iter().map(|b| b.0).collect(),
            },
            new_blocks: blocks.iter().map(|b| b.1.clone()).collect(),
            base_version: base,
            on_conflict: oc,
            id_seed: [self.at as u8; 16],
        }))
    }

    fn refs(&self, n: u8) -> u64 {
        self.reader()
            .block(&self.user, &BlockId([n; 32]))
            .unwrap()
            .map(|b| b.refs)
            .unwrap_or(0)
    }

    /// Every block's count equals the references that exist.
    fn audit_clean(&self) {
        let audit = self.reader().reference_audit().unwrap();
        assert!(audit.wrong.is_empty(), "{:?}", audit.wrong);
    }

    fn used(&self) -> (u64, u64) {
        let u = self.reader().user(&self.user).unwrap().unwrap();
        (u.used_bytes, u.reserved_bytes)
    }

    fn live(&self, p: &str) -> Option<crate::records::EntryRecord> {
        self.reader()
            .live(&self.user, &crate::DrivePath::parse(p).unwrap())
            .unwrap()
            .map(|(_, r)| r)
    }
}

#[test]
fn users_are_unique_without_case_and_devices_keep_their_id() {
    let mut f = Fixture::new();
    let r = f.run(Command::CreateUser {
        user: UserId([8; 16]),
        username: "ALICE".into(),
        password_hash: "h".into(),
        quota_bytes: 1,
        admin: false,
    });
    assert_eq!(r, Err(CommandError::UsernameTaken));
    let r = f.run(Command::CreateUser {
        user: UserId([8; 16]),
        username: "bad name".into(),
        password_hash: "h".into(),
        quota_bytes: 1,
        admin: false,
    });
    assert!(matches!(r, Err(CommandError::BadRequest(_))));
    assert!(f.reader().user_by_name("alice").unwrap().is_some());
    // Same device name again: same device id even though a new one was proposed.
    let out = f.ok(Command::Login {
        user: f.user,
        token_hash: [2; 32],
        device: DeviceId([3; 16]),
        device_name: "laptop".into(),
        expires_ms: u64::MAX,
    });
    assert_eq!(out, Output::LoggedIn { device: f.device });
    f.ok(Command::Logout {
        user: f.user,
        token_hash: [2; 32],
    });
    assert!(f.reader().session(&f.user, &[2; 32]).unwrap().is_none());
    assert!(f.reader().session(&f.user, &[1; 32]).unwrap().is_some());
}

#[test]
fn commit_creates_parents_versions_and_refs() {
    let mut f = Fixture::new();
    let b1 = block(1, 100);
    let b2 = block(2, 50);
    let out = f
        .commit(
            "/docs/a/file.txt",
            &[b1.clone(), b2.clone(), b1.clone()],
            1,
            None,
            OnConflict::Overwrite,
        )
        .unwrap();
    let Output::Entry(v) = out else { panic!() };
    assert_eq!(v.path, "/docs/a/file.txt");
    assert_eq!(v.record.head, 1);
    assert_eq!(v.record.size, 250);
    assert_eq!(f.refs(1), 2);
    assert_eq!(f.refs(2), 1);
    assert_eq!(f.used(), (250, 0));
    assert_eq!(f.live("/docs/a").unwrap().kind, EntryKind::Folder);

    // Same content again: no new version.
    let Output::Entry(v) = f
        .commit(
            "/docs/a/file.txt",
            &[b1.clone(), b2.clone(), b1.clone()],
            1,
            None,
            OnConflict::Overwrite,
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(v.record.head, 1);
    assert_eq!(f.refs(1), 2);

    // New content, known blocks only (no new_blocks needed for existing ones).
    let r = f.run(Command::CommitFile(CommitFile {
        user: f.user,
        path: segs("/docs/a/file.txt"),
        device: f.device,
        content: FileContent {
            size: 50,
            content_hash: [2; 32],
            blocks: vec![b2.0],
        },
        new_blocks: vec![],
        base_version: Some(1),
        on_conflict: OnConflict::Fail,
        id_seed: [5; 16],
    }));
    let Ok(Output::Entry(v)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(v.record.head, 2);
    assert_eq!(f.refs(2), 2);
    assert_eq!(f.used(), (50, 0));

    // A block nobody stored is refused, and nothing changes.
    let ghost = block(3, 10);
    let r = f.run(Command::CommitFile(CommitFile {
        user: f.user,
        path: segs("/other"),
        device: f.device,
        content: FileContent {
            size: 10,
            content_hash: [3; 32],
            blocks: vec![ghost.0],
        },
        new_blocks: vec![],
        base_version: None,
        on_conflict: OnConflict::Overwrite,
        id_seed: [6; 16],
    }));
    assert_eq!(r, Err(CommandError::MissingBlocks(vec![BlockId([3; 32])])));
    assert!(f.live("/other").is_none());

    // Sizes that do not add up are refused.
    let r = f.run(Command::CommitFile(CommitFile {
        user: f.user,
        path: segs("/x"),
        device: f.device,
        content: FileContent {
            size: 11,
            content_hash: [3; 32],
            blocks: vec![b2.0],
        },
        new_blocks: vec![],
        base_version: None,
        on_conflict: OnConflict::Overwrite,
        id_seed: [6; 16],
    }));
    assert!(matches!(r, Err(CommandError::BadRequest(_))));
    f.audit_clean();
}

#[test]
fn conflicts_fail_or_rename_and_never_lose_content() {
    let mut f = Fixture::new();
    f.commit("/notes.md", &[block(1, 10)], 1, None, OnConflict::Overwrite)
        .unwrap();
    f.commit("/notes.md", &[block(2, 10)], 2, Some(1), OnConflict::Fail)
        .unwrap();
    // A writer still on version 1.
    let r = f.commit("/notes.md", &[block(3, 10)], 3, Some(1), OnConflict::Fail);
    assert_eq!(
        r,
        Err(CommandError::Conflict {
            base: Some(1),
            current: 2
        })
    );
    let Output::Entry(v) = f
        .commit("/notes.md", &[block(3, 10)], 3, Some(1), OnConflict::Rename)
        .unwrap()
    else {
        panic!()
    };
    assert!(
        v.path.starts_with("/notes (conflicted copy laptop "),
        "{}",
        v.path
    );
    assert!(v.path.ends_with(").md"));
    assert_eq!(f.live("/notes.md").unwrap().content_hash, [2; 32]);
    // Same again: the first copy's name is taken, so it is numbered.
    let Output::Entry(v2) = f
        .commit("/notes.md", &[block(4, 10)], 4, Some(1), OnConflict::Rename)
        .unwrap()
    else {
        panic!()
    };
    assert!(v2.path.ends_with(" 2).md"), "{}", v2.path);
    // "add" semantics: fail without a base when something exists.
    let r = f.commit("/notes.md", &[block(5, 10)], 5, None, OnConflict::Fail);
    assert!(matches!(
        r,
        Err(CommandError::Conflict {
            base: None,
            current: 2
        })
    ));
    // A stale base with identical content is no conflict.
    let r = f.commit("/notes.md", &[block(2, 10)], 2, Some(1), OnConflict::Fail);
    assert!(r.is_ok());
}

#[test]
fn conflicted_names_fit_in_a_segment() {
    let long = format!("{}.txt", "é".repeat(120));
    let n = super::namespace::conflicted_name(&long, "dev", "2026-01-02", 3);
    assert!(n.len() <= 255);
    assert!(n.ends_with(" (conflicted copy dev 2026-01-02 3).txt"));
    assert_eq!(
        super::namespace::conflicted_name(".bashrc", "d", "x", 1),
        ".bashrc (conflicted copy d x)"
    );
    assert_eq!(super::civil_date(0), "1970-01-01");
    assert_eq!(super::civil_date(1_772_323_200_000), "2026-03-01");
}

#[test]
fn delete_keeps_history_and_restore_revives() {
    let mut f = Fixture::new();
    f.commit("/a/b/one", &[block(1, 10)], 1, None, OnConflict::Overwrite)
        .unwrap();
    f.commit("/a/b/one", &[block(2, 20)], 2, None, OnConflict::Overwrite)
        .unwrap();
    f.commit("/a/two", &[block(3, 30)], 3, None, OnConflict::Overwrite)
        .unwrap();
    assert_eq!(f.used(), (50, 0));
    f.ok(Command::Delete {
        user: f.user,
        path: segs("/a"),
        device: f.device,
    });
    assert!(f.live("/a").is_none());
    assert!(f.live("/a/b/one").is_none());
    assert_eq!(f.used(), (0, 0));
    assert_eq!(
        f.run(Command::Delete {
            user: f.user,
            path: segs("/a"),
            device: f.device
        }),
        Err(CommandError::NotFound)
    );
    // History: deletion, v2, v1.
    let r = f.reader();
    let Resolved::Found(id, _) = r
        .resolve(&f.user, &crate::DrivePath::parse("/a/b/one").unwrap())
        .unwrap()
    else {
        panic!()
    };
    let hist = r.versions(&f.user, &id, 100).unwrap();
    assert_eq!(
        hist.iter()
            .map(|(n, v)| (*n, v.deleted))
            .collect::<Vec<_>>(),
        vec![(3, true), (2, false), (1, false)]
    );
    // Restoring a deletion marker is refused; restoring v1 revives the parents.
    assert!(matches!(
        f.run(Command::Restore {
            user: f.user,
            path: segs("/a/b/one"),
            version: 3,
            device: f.device,
            id_seed: [1; 16]
        }),
        Err(CommandError::BadRequest(_))
    ));
    let Output::Entry(v) = f.ok(Command::Restore {
        user: f.user,
        path: segs("/a/b/one"),
        version: 1,
        device: f.device,
        id_seed: [1; 16],
    }) else {
        panic!()
    };
    assert_eq!(v.record.head, 4);
    assert_eq!(v.record.content_hash, [1; 32]);
    assert!(f.live("/a/b").is_some());
    assert!(f.live("/a/two").is_none());
    assert_eq!(f.refs(1), 2);
    assert_eq!(f.used(), (10, 0));
    // Writing again at a deleted path continues its history.
    let Output::Entry(v) = f
        .commit("/a/two", &[block(4, 5)], 4, None, OnConflict::Overwrite)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(v.record.head, 3);
    f.audit_clean();
}

#[test]
fn move_is_one_write_and_refuses_bad_targets() {
    let mut f = Fixture::new();
    f.commit(
        "/src/x/file",
        &[block(1, 10)],
        1,
        None,
        OnConflict::Overwrite,
    )
    .unwrap();
    f.commit("/other", &[block(2, 10)], 2, None, OnConflict::Overwrite)
        .unwrap();
    let mv = |f: &mut Fixture, a: &str, b: &str| {
        f.run(Command::Move {
            user: f.user,
            from: segs(a),
            to: segs(b),
            device: f.device,
            id_seed: [4; 16],
        })
    };
    assert_eq!(
        mv(&mut f, "/src", "/other"),
        Err(CommandError::AlreadyExists)
    );
    assert!(matches!(
        mv(&mut f, "/src", "/src/x/inside"),
        Err(CommandError::BadRequest(_))
    ));
    assert_eq!(mv(&mut f, "/nope", "/y"), Err(CommandError::NotFound));
    assert_eq!(
        mv(&mut f, "/src", "/other/deeper"),
        Err(CommandError::ParentNotFolder)
    );
    let before = f.live("/src/x/file").unwrap();
    let Ok(Output::Entry(v)) = mv(&mut f, "/src", "/dst/moved") else {
        panic!()
    };
    assert_eq!(v.path, "/dst/moved");
    assert!(f.live("/src").is_none());
    let after = f.live("/dst/moved/x/file").unwrap();
    assert_eq!(after.head, before.head);
    assert_eq!(after.content_hash, before.content_hash);
    let j = f.reader().journal(&f.user, 0, 100).unwrap();
    let last = &j.last().unwrap().1;
    assert_eq!(last.kind, ChangeKind::Moved);
    assert_eq!(last.from.as_deref(), Some("/src"));
    assert_eq!(last.path, "/dst/moved");
    // Journal sequence numbers are dense and increasing.
    let seqs: Vec<u64> = j.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    f.audit_clean();
}

#[test]
fn quota_is_enforced_on_commit_and_upload() {
    let mut f = Fixture::new();
    let user2 = UserId([2; 16]);
    f.ok(Command::CreateUser {
        user: user2,
        username: "bob".into(),
        password_hash: "h".into(),
        quota_bytes: 100,
        admin: false,
    });
    f.user = user2;
    f.commit("/a", &[block(1, 60)], 1, None, OnConflict::Overwrite)
        .unwrap();
    let r = f.commit("/b", &[block(2, 50)], 2, None, OnConflict::Overwrite);
    assert_eq!(
        r,
        Err(CommandError::QuotaExceeded {
            needed: 50,
            available: 40
        })
    );
    // Overwriting a file only needs the difference.
    f.commit("/a", &[block(3, 90)], 3, None, OnConflict::Overwrite)
        .unwrap();
    let r = f.run(Command::CreateUpload(CreateUpload {
        user: user2,
        upload: UploadId([1; 16]),
        path: segs("/c"),
        length: 11,
        device: f.device,
        expires_ms: u64::MAX,
        metadata: None,
        base_version: None,
        on_conflict: OnConflict::Overwrite,
    }));
    assert!(matches!(r, Err(CommandError::QuotaExceeded { .. })));
}

fn upload_cmd(f: &Fixture, id: UploadId, path: &str, length: u64) -> Command {
    Command::CreateUpload(CreateUpload {
        user: f.user,
        upload: id,
        path: segs(path),
        length,
        device: f.device,
        expires_ms: f.at + 100_000,
        metadata: Some("filename ZmlsZQ==".into()),
        base_version: None,
        on_conflict: OnConflict::Overwrite,
    })
}

#[test]
fn uploads_advance_finish_and_hand_over_references() {
    let mut f = Fixture::new();
    let content: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let id = UploadId([1; 16]);
    f.ok(upload_cmd(&f, id, "/up/file.bin", 3000));
    assert_eq!(f.used(), (0, 3000));
    let mut h = TreeHasher::new(3000);
    h.update(&content[..1000]).unwrap();
    // First request: 1000 bytes, all of it still tail.
    let tail1 = block(10, 1000);
    f.ok(Command::AdvanceUpload(AdvanceUpload {
        user: f.user,
        upload: id,
        expected_offset: 0,
        new_offset: 1000,
        chunks: vec![],
        tail: vec![tail1.0],
        new_blocks: vec![tail1.1],
        hash_state: h.state().clone(),
        finish: None,
    }));
    assert_eq!(f.refs(10), 1);
    // A replayed request at a stale offset is refused.
    let r = f.run(Command::AdvanceUpload(AdvanceUpload {
        user: f.user,
        upload: id,
        expected_offset: 0,
        new_offset: 1000,
        chunks: vec![],
        tail: vec![tail1.0],
        new_blocks: vec![],
        hash_state: h.state().clone(),
        finish: None,
    }));
    assert_eq!(
        r,
        Err(CommandError::OffsetMismatch {
            expected: 0,
            actual: 1000
        })
    );
    // Last request: re-chunked into two chunks, the old tail is released.
    h.update(&content[1000..]).unwrap();
    let c1 = block(11, 1800);
    let c2 = block(12, 1200);
    let Output::Advanced {
        offset,
        committed: Some(v),
    } = f.ok(Command::AdvanceUpload(AdvanceUpload {
        user: f.user,
        upload: id,
        expected_offset: 1000,
        new_offset: 3000,
        chunks: vec![c1.0, c2.0],
        tail: vec![],
        new_blocks: vec![c1.1, c2.1],
        hash_state: h.state().clone(),
        finish: Some(FinishUpload { id_seed: [3; 16] }),
    }))
    else {
        panic!()
    };
    assert_eq!(offset, 3000);
    assert_eq!(v.record.content_hash, *blake3::hash(&content).as_bytes());
    assert_eq!(f.refs(10), 0);
    assert_eq!((f.refs(11), f.refs(12)), (1, 1));
    assert_eq!(f.used(), (3000, 0));
    // The finished session stays, small, so a client that lost the answer can ask.
    let done = f.reader().upload(&f.user, &id).unwrap().unwrap();
    assert_eq!(done.finished.as_ref().unwrap().version, 1);
    assert_eq!(done.finished.as_ref().unwrap().path, "/up/file.bin");
    assert_eq!((done.chunk_count, done.reserved), (0, 0));
    assert!(matches!(
        f.run(Command::AdvanceUpload(AdvanceUpload {
            user: f.user,
            upload: id,
            expected_offset: 3000,
            new_offset: 3000,
            chunks: vec![],
            tail: vec![],
            new_blocks: vec![],
            hash_state: h.state().clone(),
            finish: None,
        })),
        Err(CommandError::OffsetMismatch { .. })
    ));
    // Cancelling a finished session only removes the record.
    f.ok(Command::CancelUpload {
        user: f.user,
        upload: id,
    });
    assert!(f.reader().upload(&f.user, &id).unwrap().is_none());
    assert_eq!((f.refs(11), f.refs(12)), (1, 1));
    assert_eq!(f.used(), (3000, 0));
    let r = f.reader();
    let (eid, _) = r
        .live(&f.user, &crate::DrivePath::parse("/up/file.bin").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        r.version(&f.user, &eid, 1).unwrap().unwrap().blocks,
        vec![c1.0, c2.0]
    );
    f.audit_clean();
}

#[test]
fn uploads_cancel_and_expire_release_everything() {
    let mut f = Fixture::new();
    let a = UploadId([1; 16]);
    let b = UploadId([2; 16]);
    f.ok(upload_cmd(&f, a, "/a", 500));
    f.ok(upload_cmd(&f, b, "/b", 700));
    assert_eq!(f.used(), (0, 1200));
    let mut h = TreeHasher::new(500);
    h.update(&[0; 100]).unwrap();
    let t = block(20, 100);
    f.ok(Command::AdvanceUpload(AdvanceUpload {
        user: f.user,
        upload: a,
        expected_offset: 0,
        new_offset: 100,
        chunks: vec![t.0],
        tail: vec![],
        new_blocks: vec![t.1],
        hash_state: h.state().clone(),
        finish: None,
    }));
    assert_eq!(f.refs(20), 1);
    f.ok(Command::CancelUpload {
        user: f.user,
        upload: a,
    });
    assert_eq!(f.refs(20), 0);
    assert_eq!(f.used(), (0, 700));
    assert_eq!(
        f.run(Command::CancelUpload {
            user: f.user,
            upload: a
        }),
        Err(CommandError::UploadGone)
    );
    // Nothing expires early; everything expires late.
    assert_eq!(
        f.ok(Command::ExpireUploads { limit: 10 }),
        Output::Expired(0)
    );
    f.at += 200_000;
    assert_eq!(
        f.ok(Command::ExpireUploads { limit: 10 }),
        Output::Expired(1)
    );
    assert_eq!(f.used(), (0, 0));
    assert!(f.reader().upload(&f.user, &b).unwrap().is_none());
    f.audit_clean();
}

#[test]
fn refused_commands_leave_no_trace_and_apply_is_deterministic() {
    let run = || {
        let mut f = Fixture::new();
        f.commit("/a/b", &[block(1, 10)], 1, None, OnConflict::Overwrite)
            .unwrap();
        // Refused after creating folders in its write set: must vanish whole.
        let _ = f.commit("/a/b/c/d", &[block(2, 10)], 2, None, OnConflict::Overwrite);
        let _ = f.commit("/q/r", &[block(3, 10)], 3, None, OnConflict::Overwrite);
        f.ok(Command::Move {
            user: f.user,
            from: segs("/q"),
            to: segs("/z"),
            device: f.device,
            id_seed: [9; 16],
        });
        f.tree
            .iter()
            .map(|kv| kv.unwrap())
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect::<Vec<_>>()
    };
    let one = run();
    assert_eq!(one, run());
    // Entries: /a, /a/b, /z (was /q), /z/r. The refused write to /a/b/c/d
    // created no folder.
    let entries = one
        .iter()
        .filter(|(k, _)| k[0] == crate::keys::ENTRY)
        .count();
    assert_eq!(entries, 4);
}

#[test]
fn entry_ids_sort_by_creation_time_and_one_command_makes_distinct_ones() {
    let mut f = Fixture::new();
    let folder = |f: &mut Fixture, p: &str, seed: u8| {
        let Output::Entry(v) = f.ok(Command::CreateFolder {
            user: f.user,
            path: segs(p),
            device: f.device,
            id_seed: [seed; 16],
        }) else {
            panic!("not an entry")
        };
        v.id
    };
    // A later command sorts later even when its seed is smaller.
    let first = folder(&mut f, "/one", 0xff);
    let second = folder(&mut f, "/two", 0x00);
    assert!(first.as_bytes() < second.as_bytes());
    // The id starts with the command's time in milliseconds.
    assert_eq!(&second.as_bytes()[..6], &f.at.to_be_bytes()[2..]);
    // Parents created by one command share its time and still differ.
    let deep = folder(&mut f, "/a/b/c", 7);
    let reader = f.reader();
    let id_of = |p: &str| {
        reader
            .live(&f.user, &crate::DrivePath::parse(p).unwrap())
            .unwrap()
            .map(|(id, _)| id)
            .unwrap()
    };
    let (a, b) = (id_of("/a"), id_of("/a/b"));
    assert_eq!(id_of("/a/b/c"), deep);
    assert!(a != b && b != deep && a != deep);
    assert_eq!(a.as_bytes()[..6], deep.as_bytes()[..6]);
}

#[test]
fn path_resolution_sees_files_in_the_way() {
    let mut f = Fixture::new();
    f.commit("/file", &[block(1, 10)], 1, None, OnConflict::Overwrite)
        .unwrap();
    let r = f.commit(
        "/file/inner",
        &[block(2, 10)],
        2,
        None,
        OnConflict::Overwrite,
    );
    assert_eq!(r, Err(CommandError::ParentNotFolder));
    let r = f.run(Command::CreateFolder {
        user: f.user,
        path: segs("/file"),
        device: f.device,
        id_seed: [1; 16],
    });
    assert_eq!(r, Err(CommandError::AlreadyExists));
    assert!(matches!(
        kv::resolve(&f.tree, &f.user, &segs("/file/x")).unwrap(),
        Resolved::ThroughFile
    ));
    // A bad path inside a command is refused by the state machine too.
    let r = f.run(Command::Delete {
        user: f.user,
        path: vec!["..".into()],
        device: f.device,
    });
    assert!(matches!(r, Err(CommandError::BadPath(_))));
}

#[test]
fn a_batch_applies_each_command_with_its_own_result() {
    let mut f = Fixture::new();
    let folder = |p: &str, seed: u8| Request {
        at_ms: 1,
        cmd: Command::CreateFolder {
            user: UserId([7; 16]),
            path: segs(p),
            device: DeviceId([9; 16]),
            id_seed: [seed; 16],
        },
    };
    let out = f.ok(Command::Batch(vec![
        folder("/a", 1),
        folder("/a", 2),
        folder("/b", 3),
    ]));
    let Output::Batch(results) = out else {
        panic!("{out:?}")
    };
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok());
    assert_eq!(results[1], Err(CommandError::AlreadyExists));
    assert!(results[2].is_ok());
    assert!(f.live("/a").is_some() && f.live("/b").is_some());
    let nested = f.ok(Command::Batch(vec![Request {
        at_ms: 1,
        cmd: Command::Batch(vec![]),
    }]));
    assert!(
        matches!(nested, Output::Batch(ref r) if matches!(r[0], Err(CommandError::BadRequest(_))))
    );
}

#[test]
fn the_journal_keeps_its_newest_lines() {
    let mut f = Fixture::new();
    for i in 0..30 {
        f.ok(Command::CreateFolder {
            user: f.user,
            path: segs(&format!("/f{i}")),
            device: f.device,
            id_seed: [i as u8; 16],
        });
    }
    let u = f.reader().user(&f.user).unwrap().unwrap();
    assert_eq!(u.next_seq, 31);
    assert_eq!(u.journal_floor, 31 - super::JOURNAL_KEEP);
    let lines = f.reader().journal(&f.user, 0, 100).unwrap();
    assert_eq!(lines.len() as u64, super::JOURNAL_KEEP);
    assert_eq!(lines[0].0, u.journal_floor);
    assert_eq!(lines.last().unwrap().1.path, "/f29");
}

#[test]
fn shares_carry_the_owners_changes_to_the_sharee() {
    use crate::records::ShareRole;
    use cluster_config::ShareId;
    let mut f = Fixture::new();
    let bob = UserId([8; 16]);
    f.ok(Command::CreateUser {
        user: bob,
        username: "bob".into(),
        password_hash: "h".into(),
        quota_bytes: GIB,
        admin: false,
    });
    f.commit(
        "/team/plan.txt",
        &[block(1, 10)],
        1,
        None,
        OnConflict::Overwrite,
    )
    .unwrap();
    f.commit(
        "/private.txt",
        &[block(2, 10)],
        2,
        None,
        OnConflict::Overwrite,
    )
    .unwrap();
    let share = ShareId([5; 16]);
    let cmd = |path: &str, who: UserId| Command::CreateShare {
        owner: f.user,
        path: segs(path),
        sharee: who,
        role: ShareRole::Viewer,
        share,
        device: f.device,
    };
    let (to_self, to_bob, missing) = (cmd("/team", f.user), cmd("/team", bob), cmd("/nope", bob));
    assert!(matches!(f.run(to_self), Err(CommandError::BadRequest(_))));
    assert_eq!(f.run(missing), Err(CommandError::NotFound));
    assert_eq!(f.ok(to_bob), Output::Share(share));
    let shared = f.reader().shares_in(&bob).unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].1.name, "team");
    assert_eq!(f.reader().shares_out(&f.user).unwrap().len(), 1);

    let bob_lines = |f: &Fixture| -> Vec<(ChangeKind, String, Option<String>)> {
        f.reader()
            .journal(&bob, 0, 100)
            .unwrap()
            .into_iter()
            .map(|(_, c)| (c.kind, c.path, c.from))
            .collect()
    };
    assert_eq!(
        bob_lines(&f),
        vec![(ChangeKind::Created, "/Shared/alice/team".into(), None)]
    );
    // Changes inside the share reach bob; changes outside do not.
    f.commit(
        "/team/plan.txt",
        &[block(3, 10)],
        3,
        None,
        OnConflict::Overwrite,
    )
    .unwrap();
    f.commit(
        "/private.txt",
        &[block(4, 10)],
        4,
        None,
        OnConflict::Overwrite,
    )
    .unwrap();
    f.ok(Command::Move {
        user: f.user,
        from: segs("/team/plan.txt"),
        to: segs("/team/sub/plan2.txt"),
        device: f.device,
        id_seed: [3; 16],
    });
    f.ok(Command::Move {
        user: f.user,
        from: segs("/private.txt"),
        to: segs("/team/now-shared.txt"),
        device: f.device,
        id_seed: [4; 16],
    });
    // The shared folder itself moves: bob's view does not change.
    f.ok(Command::Move {
        user: f.user,
        from: segs("/team"),
        to: segs("/projects/team"),
        device: f.device,
        id_seed: [6; 16],
    });
    f.ok(Command::Delete {
        user: f.user,
        path: segs("/projects/team/sub/plan2.txt"),
        device: f.device,
    });
    let lines = bob_lines(&f);
    assert_eq!(
        lines[1..],
        vec![
            (
                ChangeKind::Modified,
                "/Shared/alice/team/plan.txt".into(),
                None
            ),
            (ChangeKind::Created, "/Shared/alice/team/sub".into(), None),
            (
                ChangeKind::Moved,
                "/Shared/alice/team/sub/plan2.txt".into(),
                Some("/Shared/alice/team/plan.txt".into())
            ),
            (
                ChangeKind::Created,
                "/Shared/alice/team/now-shared.txt".into(),
                None
            ),
            (
                ChangeKind::Deleted,
                "/Shared/alice/team/sub/plan2.txt".into(),
                None
            ),
        ]
    );
    // Only the owner or the sharee can end it; bob's journal says so.
    assert_eq!(
        f.run(Command::DeleteShare {
            by: UserId([42; 16]),
            share,
            device: f.device,
        }),
        Err(CommandError::NotFound)
    );
    f.ok(Command::DeleteShare {
        by: bob,
        share,
        device: f.device,
    });
    assert!(f.reader().shares_in(&bob).unwrap().is_empty());
    assert!(f.reader().shares_out(&f.user).unwrap().is_empty());
    let last = bob_lines(&f).pop().unwrap();
    assert_eq!(
        last,
        (ChangeKind::Deleted, "/Shared/alice/team".into(), None)
    );
}

fn bootstrap_admin(user: UserId, name: &str) -> BootstrapAdmin {
    BootstrapAdmin {
        user,
        username: name.into(),
        password_hash: "$argon2id$operator".into(),
        quota_bytes: GIB,
    }
}

#[test]
fn bootstrap_creates_the_admin_once_and_never_adopts_a_plain_account() {
    let mut f = Fixture::new();
    assert!(f.reader().bootstrap().unwrap().is_none());
    let op = UserId([50; 16]);
    f.ok(Command::Bootstrap {
        layout: None,
        admin: Some(bootstrap_admin(op, "admin")),
    });
    let boot = f.reader().bootstrap().unwrap().unwrap();
    assert_eq!(boot.admin, Some(op));
    let (id, rec) = f.reader().user_by_name("admin").unwrap().unwrap();
    assert_eq!(id, op);
    assert!(rec.admin);
    // A second bootstrap (another node's, a restart's) changes nothing.
    f.ok(Command::Bootstrap {
        layout: None,
        admin: Some(bootstrap_admin(UserId([51; 16]), "root")),
    });
    assert!(f.reader().user_by_name("root").unwrap().is_none());
    assert_eq!(f.reader().bootstrap().unwrap().unwrap().admin, Some(op));

    // A drive where someone took the name before any bootstrap: refused,
    // and nothing of the command stays.
    let mut g = Fixture::new();
    g.ok(Command::CreateUser {
        user: UserId([60; 16]),
        username: "admin".into(),
        password_hash: "squatter".into(),
        quota_bytes: GIB,
        admin: false,
    });
    assert_eq!(
        g.run(Command::Bootstrap {
            layout: None,
            admin: Some(bootstrap_admin(op, "admin")),
        }),
        Err(CommandError::AdminNameTaken("admin".into()))
    );
    assert!(g.reader().bootstrap().unwrap().is_none());
    assert!(!g.reader().user_by_name("admin").unwrap().unwrap().1.admin);

    // Set up without an admin account: the first bootstrap that brings one
    // creates it; later ones change nothing.
    let mut h = Fixture::new();
    h.ok(Command::Bootstrap {
        layout: None,
        admin: None,
    });
    assert_eq!(h.reader().bootstrap().unwrap().unwrap().admin, None);
    h.ok(Command::Bootstrap {
        layout: None,
        admin: Some(bootstrap_admin(op, "admin")),
    });
    assert_eq!(h.reader().bootstrap().unwrap().unwrap().admin, Some(op));
    h.ok(Command::Bootstrap {
        layout: None,
        admin: Some(bootstrap_admin(UserId([52; 16]), "root")),
    });
    assert!(h.reader().user_by_name("root").unwrap().is_none());
}

#[test]
fn admins_change_accounts_and_a_new_password_ends_other_sessions() {
    let mut f = Fixture::new();
    let op = UserId([50; 16]);
    f.ok(Command::Bootstrap {
        layout: None,
        admin: Some(bootstrap_admin(op, "admin")),
    });
    // A second session for alice.
    f.ok(Command::Login {
        user: f.user,
        token_hash: [2; 32],
        device: DeviceId([3; 16]),
        device_name: "phone".into(),
        expires_ms: f.at + 100_000,
    });
    assert_eq!(f.reader().sessions(&f.user).unwrap().len(), 2);
    f.ok(Command::ChangePassword {
        user: f.user,
        password_hash: "$argon2id$new".into(),
        keep: Some([2; 32]),
    });
    let left: Vec<[u8; 32]> = f
        .reader()
        .sessions(&f.user)
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    assert_eq!(left, vec![[2; 32]]);
    assert_eq!(
        f.reader().user(&f.user).unwrap().unwrap().password_hash,
        "$argon2id$new"
    );

    f.ok(Command::UpdateUser {
        user: f.user,
        quota_bytes: Some(5),
        disabled: Some(true),
        admin: Some(true),
    });
    let u = f.reader().user(&f.user).unwrap().unwrap();
    assert_eq!((u.quota_bytes, u.admin), (5, true));
    assert!(f.reader().user_settings(&f.user).unwrap().disabled);
    assert!(f.reader().sessions(&f.user).unwrap().is_empty());
    // The operator's account cannot be demoted or disabled through the API.
    for (disabled, admin) in [(Some(true), None), (None, Some(false))] {
        assert!(matches!(
            f.run(Command::UpdateUser {
                user: op,
                quota_bytes: None,
                disabled,
                admin,
            }),
            Err(CommandError::Forbidden(_))
        ));
    }
    assert!(f.reader().user(&op).unwrap().unwrap().admin);
}

#[test]
fn shares_wait_for_acceptance_and_writes_through_them_are_checked_when_applied() {
    use crate::records::{AcceptFrom, ShareRole};
    use cluster_config::ShareId;
    let mut f = Fixture::new();
    let bob = UserId([8; 16]);
    f.ok(Command::CreateUser {
        user: bob,
        username: "bob".into(),
        password_hash: "h".into(),
        quota_bytes: GIB,
        admin: false,
    });
    f.commit(
        "/team/a.txt",
        &[block(1, 10)],
        1,
        None,
        OnConflict::Overwrite,
    )
    .unwrap();
    f.commit(
        "/secret.txt",
        &[block(2, 10)],
        2,
        None,
        OnConflict::Overwrite,
    )
    .unwrap();
    let share = ShareId([5; 16]);
    let offer = |f: &Fixture, path: &str, share: ShareId| Command::OfferShare {
        owner: f.user,
        path: segs(path),
        sharee: bob,
        role: ShareRole::Editor,
        share,
        device: f.device,
    };
    assert_eq!(
        f.ok(offer(&f, "/team", share)),
        Output::Offered {
            share,
            pending: true
        }
    );
    assert!(f.reader().share_pending(&share).unwrap());
    // Nothing is mounted and bob hears nothing until he accepts.
    assert!(f.reader().journal(&bob, 0, 10).unwrap().is_empty());
    let commit_via = |f: &Fixture, path: &str, hash: u8| Command::ViaShare {
        share,
        sharee: bob,
        cmd: Box::new(Command::CommitFile(CommitFile {
            user: f.user,
            path: segs(path),
            device: DeviceId([4; 16]),
            content: FileContent {
                size: 10,
                content_hash: [hash; 32],
                blocks: vec![block(9, 10).0],
            },
            new_blocks: vec![block(9, 10).1],
            base_version: None,
            on_conflict: OnConflict::Overwrite,
            id_seed: [hash; 16],
        })),
    };
    assert!(matches!(
        f.run(commit_via(&f, "/team/b.txt", 3)),
        Err(CommandError::Forbidden(_))
    ));
    // Only bob may accept.
    assert_eq!(
        f.run(Command::AcceptShare {
            sharee: UserId([42; 16]),
            share,
            device: f.device,
        }),
        Err(CommandError::NotFound)
    );
    f.ok(Command::AcceptShare {
        sharee: bob,
        share,
        device: f.device,
    });
    assert!(!f.reader().share_pending(&share).unwrap());
    let lines = f.reader().journal(&bob, 0, 10).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].1.path, "/Shared/alice/team");
    // Inside the share: applied. Outside, or the shared folder itself: refused.
    f.ok(commit_via(&f, "/team/b.txt", 3));
    assert!(f.live("/team/b.txt").is_some());
    assert!(matches!(
        f.run(commit_via(&f, "/secret.txt", 4)),
        Err(CommandError::Forbidden(_))
    ));
    assert!(matches!(
        f.run(commit_via(&f, "/teams/x.txt", 4)),
        Err(CommandError::Forbidden(_))
    ));
    assert!(matches!(
        f.run(Command::ViaShare {
            share,
            sharee: bob,
            cmd: Box::new(Command::Delete {
                user: f.user,
                path: segs("/team"),
                device: f.device,
            }),
        }),
        Err(CommandError::Forbidden(_))
    ));
    // The share ends while an upload is in flight: its commit is refused.
    f.ok(Command::DeleteShare {
        by: f.user,
        share,
        device: f.device,
    });
    assert!(matches!(
        f.run(commit_via(&f, "/team/late.txt", 5)),
        Err(CommandError::Forbidden(_))
    ));
    assert!(f.live("/team/late.txt").is_none());

    // Trusted senders skip the step; a declined share leaves no trace.
    f.ok(Command::SetShareAcceptance {
        user: bob,
        from: AcceptFrom::Users(vec![f.user]),
    });
    let again = ShareId([6; 16]);
    assert_eq!(
        f.ok(offer(&f, "/team", again)),
        Output::Offered {
            share: again,
            pending: false
        }
    );
    f.ok(Command::SetShareAcceptance {
        user: bob,
        from: AcceptFrom::Nobody,
    });
    let third = ShareId([7; 16]);
    f.ok(offer(&f, "/secret.txt", third));
    let before = f.reader().journal(&bob, 0, 100).unwrap().len();
    f.ok(Command::DeleteShare {
        by: bob,
        share: third,
        device: f.device,
    });
    assert_eq!(f.reader().journal(&bob, 0, 100).unwrap().len(), before);
    assert!(f.reader().share(&third).unwrap().is_none());
}

#[test]
fn one_owner_cannot_fill_anyones_pending_shares() {
    use crate::records::ShareRole;
    use cluster_config::ShareId;
    let mut f = Fixture::new();
    let bob = UserId([8; 16]);
    f.ok(Command::CreateUser {
        user: bob,
        username: "bob".into(),
        password_hash: "h".into(),
        quota_bytes: GIB,
        admin: false,
    });
    for i in 0..=super::shares::MAX_PENDING_FROM_ONE {
        let path = format!("/spam/Invoice {i} - click me.html");
        f.commit(&path, &[block(1, 10)], 1, None, OnConflict::Overwrite)
            .unwrap();
        let r = f.run(Command::OfferShare {
            owner: f.user,
            path: segs(&path),
            sharee: bob,
            role: ShareRole::Viewer,
            share: ShareId([i as u8 + 1; 16]),
            device: f.device,
        });
        if i < super::shares::MAX_PENDING_FROM_ONE {
            assert!(r.is_ok(), "{i}: {r:?}");
        } else {
            assert!(matches!(r, Err(CommandError::Limit(_))), "{r:?}");
        }
    }
}

#[test]
fn share_mount_names_fit_in_a_segment() {
    use crate::records::ShareRole;
    use cluster_config::ShareId;
    let mut f = Fixture::new();
    let bob = UserId([8; 16]);
    f.ok(Command::CreateUser {
        user: bob,
        username: "bob".into(),
        password_hash: "h".into(),
        quota_bytes: GIB,
        admin: false,
    });
    // Two folders with the same 255-byte name (of 3-byte characters and
    // one ASCII byte) in different places.
    let long: String = "€".repeat(84) + "x";
    assert_eq!(long.len(), 253);
    let name = format!("{long}yz");
    for (i, dir) in ["/a", "/b"].iter().enumerate() {
        let path = format!("{dir}/{name}");
        f.ok(Command::CreateFolder {
            user: f.user,
            path: segs(&path),
            device: f.device,
            id_seed: [i as u8 + 1; 16],
        });
        f.ok(Command::OfferShare {
            owner: f.user,
            path: segs(&path),
            sharee: bob,
            role: ShareRole::Viewer,
            share: ShareId([i as u8 + 1; 16]),
            device: f.device,
        });
    }
    let names: Vec<String> = f
        .reader()
        .shares_in(&bob)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s.name)
        .collect();
    assert!(names.contains(&name));
    let second = names.iter().find(|n| **n != name).unwrap();
    assert!(second.len() <= 255 && second.ends_with(" (2)"), "{second}");
    assert!(crate::DrivePath::parse(&format!("/Shared/alice/{second}")).is_ok());
}

/// A reference count that would go below zero stops the state machine as
/// corruption; it is never clamped to zero (a collector could then reap a
/// block that is still used).
#[test]
fn a_reference_count_below_zero_is_corruption_not_clamped() {
    let mut f = Fixture::new();
    let id = UploadId([4; 16]);
    f.ok(upload_cmd(&f, id, "/up/a.bin", 2000));
    let tail = block(20, 1000);
    f.ok(Command::AdvanceUpload(AdvanceUpload {
        user: f.user,
        upload: id,
        expected_offset: 0,
        new_offset: 1000,
        chunks: vec![],
        tail: vec![tail.0],
        new_blocks: vec![tail.1],
        hash_state: {
            let mut h = TreeHasher::new(2000);
            h.update(&[5u8; 1000]).unwrap();
            h.state().clone()
        },
        finish: None,
    }));
    assert_eq!(f.refs(20), 1);
    // The count is damaged behind the state machine's back.
    let key = crate::keys::block(&f.user, &BlockId([20; 32]));
    let mut rec = f
        .reader()
        .block(&f.user, &BlockId([20; 32]))
        .unwrap()
        .unwrap();
    rec.refs = 0;
    let mut tx = Tx::new(&f.tree);
    tx.put(key, &rec);
    f.tree.apply_batch(tx.into_batch()).unwrap();
    // The audit sees it.
    let audit = f.reader().reference_audit().unwrap();
    assert_eq!(audit.references, 1);
    assert_eq!(
        audit.wrong,
        vec![crate::reader::RefMismatch {
            user: f.user,
            block: BlockId([20; 32]),
            recorded: Some(0),
            counted: 1,
        }]
    );
    // Cancelling the upload drops the tail's reference: refused as
    // corruption, nothing written, the count left as found.
    f.at += 1000;
    let mut tx = Tx::new(&f.tree);
    let r = super::apply(
        &mut tx,
        &Request {
            at_ms: f.at,
            cmd: Command::CancelUpload {
                user: f.user,
                upload: id,
            },
        },
    );
    match r {
        Err(super::tx::Fatal::Corrupt(e)) => {
            assert_eq!(e.what, "block reference count");
            assert!(
                e.reason.contains("1 reference(s) to drop, 0 held"),
                "{}",
                e.reason
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(f.refs(20), 0);
}
