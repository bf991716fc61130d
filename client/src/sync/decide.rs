//! What the sync agent does with one remote change, decided from facts
//! alone: the change, the merge base and what the disk shows. No I/O here;
//! `Agent::apply_change` gathers the facts and carries the action out.
//!
//! The rule every row keeps: content that exists only here (a file edited
//! or created since the last sync) is never removed, overwritten or moved
//! away by a remote change. At worst both versions are kept.

use strata_api::{ChangeKind, EntryKind};

use super::state::Kind;

/// A path on disk, measured against the merge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// Nothing at the path.
    Absent,
    /// What was last synced, untouched since (same kind, size and time).
    AsSynced(Kind),
    /// Something not synced as it is: edited since, or new here.
    Differs(Kind),
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub change: ChangeKind,
    pub entry: EntryKind,
    /// The path is a share's mount point (`Shared/<owner>/<name>`).
    pub mount: bool,
    /// The merge base knows the path.
    pub has_base: bool,
    /// The merge base already holds this version's content (a newer
    /// version, or the same hash: often our own write coming back).
    pub base_current: bool,
    pub local: Local,
    /// For a move: the source path on disk, against its own base (`None`
    /// when the source is outside the synced tree).
    pub source: Option<Local>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Skip,
    /// A share ended: its tree goes, except files edited here.
    DropTree,
    /// Fetch the folder and what is in it.
    PullTree,
    /// Remove the synced, untouched file.
    RemoveFile,
    /// Remove the synced folder if it is empty (its children come as
    /// their own changes).
    RemoveEmptyFolder,
    /// Forget the path's base and leave the disk as it is (what is there
    /// uploads as new).
    Forget,
    /// Replay the move on disk.
    MoveLocal,
    /// Make the folder; record it in the base when it was not there.
    MakeFolder {
        record: bool,
    },
    /// Download the remote version over an absent or untouched file.
    PullFile,
    /// Both sides changed: the same content is recorded as synced,
    /// different content is kept and uploaded as a conflicting version.
    Reconcile,
}

pub fn decide(f: Facts) -> Action {
    use Action::*;
    use Local::*;
    match f.change {
        ChangeKind::Deleted if f.mount => DropTree,
        ChangeKind::Deleted => match (f.has_base, f.local) {
            (true, AsSynced(Kind::File)) => RemoveFile,
            (true, AsSynced(Kind::Folder)) => RemoveEmptyFolder,
            // Edited here since: kept, and it uploads as new.
            (true, Differs(_)) => Forget,
            (true, Absent) => Forget,
            (false, _) => Skip,
        },
        ChangeKind::Created if f.mount && f.entry == EntryKind::Folder && !f.has_base => PullTree,
        ChangeKind::Moved => {
            if f.source.is_some_and(|s| matches!(s, AsSynced(_))) && f.local == Absent {
                return MoveLocal;
            }
            if f.has_base {
                // Our own move, already on disk.
                return Skip;
            }
            match (f.entry, f.local) {
                (EntryKind::Folder, Absent) => PullTree,
                (EntryKind::Folder, Differs(Kind::Folder) | AsSynced(Kind::Folder)) => PullTree,
                (EntryKind::Folder, _) => Skip,
                (EntryKind::File, Absent) => PullFile,
                (EntryKind::File, Differs(Kind::File)) => Reconcile,
                (EntryKind::File, _) => Skip,
            }
        }
        // Created, modified, restored, or a kind this agent does not know:
        // make the disk show the current remote state, keeping local edits.
        _ => match f.entry {
            EntryKind::Folder => match f.local {
                Absent | AsSynced(Kind::Folder) | Differs(Kind::Folder) => MakeFolder {
                    record: !f.has_base,
                },
                // A file here: kept; the folder cannot be made over it.
                AsSynced(Kind::File) | Differs(Kind::File) => Skip,
            },
            EntryKind::File if f.base_current => Skip,
            EntryKind::File => match f.local {
                Absent => PullFile,
                AsSynced(Kind::File) if f.has_base => PullFile,
                Differs(Kind::File) | AsSynced(Kind::File) => Reconcile,
                // A folder here: kept.
                AsSynced(Kind::Folder) | Differs(Kind::Folder) => Skip,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGES: [ChangeKind; 6] = [
        ChangeKind::Created,
        ChangeKind::Modified,
        ChangeKind::Deleted,
        ChangeKind::Moved,
        ChangeKind::Restored,
        ChangeKind::Unknown,
    ];
    const LOCALS: [Local; 5] = [
        Local::Absent,
        Local::AsSynced(Kind::File),
        Local::AsSynced(Kind::Folder),
        Local::Differs(Kind::File),
        Local::Differs(Kind::Folder),
    ];

    fn every() -> Vec<Facts> {
        let mut out = Vec::new();
        let sources = [
            None,
            Some(Local::Absent),
            Some(Local::AsSynced(Kind::File)),
            Some(Local::AsSynced(Kind::Folder)),
            Some(Local::Differs(Kind::File)),
        ];
        for change in CHANGES {
            for entry in [EntryKind::File, EntryKind::Folder] {
                for mount in [false, true] {
                    for has_base in [false, true] {
                        for base_current in [false, true] {
                            for local in LOCALS {
                                // Untouched means there is a base.
                                if matches!(local, Local::AsSynced(_)) && !has_base {
                                    continue;
                                }
                                for source in sources {
                                    out.push(Facts {
                                        change,
                                        entry,
                                        mount,
                                        has_base,
                                        base_current: base_current && has_base,
                                        local,
                                        source,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// The rule of the module, over every combination: a file that exists
    /// only here is never removed, downloaded over, or moved onto.
    #[test]
    fn no_combination_loses_an_edit() {
        let all = every();
        assert!(all.len() > 1000, "{}", all.len());
        for f in all {
            let a = decide(f);
            if f.local == Local::Differs(Kind::File) {
                assert!(
                    !matches!(a, Action::RemoveFile | Action::PullFile | Action::MoveLocal),
                    "{f:?} -> {a:?}"
                );
            }
            // Only what is untouched is removed.
            if a == Action::RemoveFile {
                assert_eq!(f.local, Local::AsSynced(Kind::File), "{f:?}");
            }
            if a == Action::RemoveEmptyFolder {
                assert_eq!(f.local, Local::AsSynced(Kind::Folder), "{f:?}");
            }
            // A download lands only on nothing or on what was synced.
            if a == Action::PullFile {
                assert!(
                    f.local == Local::Absent || f.local == Local::AsSynced(Kind::File),
                    "{f:?}"
                );
            }
            // A move is replayed only from an untouched source to a free
            // destination.
            if a == Action::MoveLocal {
                assert_eq!(f.local, Local::Absent, "{f:?}");
                assert!(matches!(f.source, Some(Local::AsSynced(_))), "{f:?}");
            }
        }
    }

    fn facts(change: ChangeKind, entry: EntryKind, has_base: bool, local: Local) -> Facts {
        Facts {
            change,
            entry,
            mount: false,
            has_base,
            base_current: false,
            local,
            source: None,
        }
    }

    #[test]
    fn the_table() {
        use Action::*;
        use ChangeKind as C;
        use EntryKind::{File, Folder};
        use Local::*;
        let rows: &[(Facts, Action)] = &[
            // Deletions.
            (
                facts(C::Deleted, File, true, AsSynced(Kind::File)),
                RemoveFile,
            ),
            (facts(C::Deleted, File, true, Differs(Kind::File)), Forget),
            (facts(C::Deleted, File, true, Absent), Forget),
            (facts(C::Deleted, File, false, Differs(Kind::File)), Skip),
            (
                facts(C::Deleted, Folder, true, AsSynced(Kind::Folder)),
                RemoveEmptyFolder,
            ),
            (
                facts(C::Deleted, Folder, true, Differs(Kind::Folder)),
                Forget,
            ),
            (
                Facts {
                    mount: true,
                    ..facts(C::Deleted, Folder, true, AsSynced(Kind::Folder))
                },
                DropTree,
            ),
            // New and changed files.
            (facts(C::Created, File, false, Absent), PullFile),
            (
                facts(C::Created, File, false, Differs(Kind::File)),
                Reconcile,
            ),
            (
                facts(C::Modified, File, true, AsSynced(Kind::File)),
                PullFile,
            ),
            (
                facts(C::Modified, File, true, Differs(Kind::File)),
                Reconcile,
            ),
            (facts(C::Modified, File, true, Absent), PullFile),
            (facts(C::Modified, File, true, Differs(Kind::Folder)), Skip),
            (
                Facts {
                    base_current: true,
                    ..facts(C::Modified, File, true, AsSynced(Kind::File))
                },
                Skip,
            ),
            (
                facts(C::Restored, File, true, AsSynced(Kind::File)),
                PullFile,
            ),
            (
                facts(C::Unknown, File, true, Differs(Kind::File)),
                Reconcile,
            ),
            // Folders.
            (
                facts(C::Created, Folder, false, Absent),
                MakeFolder { record: true },
            ),
            (
                facts(C::Created, Folder, true, AsSynced(Kind::Folder)),
                MakeFolder { record: false },
            ),
            (facts(C::Created, Folder, false, Differs(Kind::File)), Skip),
            (
                Facts {
                    mount: true,
                    ..facts(C::Created, Folder, false, Absent)
                },
                PullTree,
            ),
            // Moves.
            (
                Facts {
                    source: Some(AsSynced(Kind::File)),
                    ..facts(C::Moved, File, false, Absent)
                },
                MoveLocal,
            ),
            (
                Facts {
                    source: Some(Differs(Kind::File)),
                    ..facts(C::Moved, File, false, Absent)
                },
                PullFile,
            ),
            (
                Facts {
                    source: Some(AsSynced(Kind::File)),
                    ..facts(C::Moved, File, false, Differs(Kind::File))
                },
                Reconcile,
            ),
            (facts(C::Moved, File, true, AsSynced(Kind::File)), Skip),
            (facts(C::Moved, Folder, false, Absent), PullTree),
        ];
        for (f, want) in rows {
            assert_eq!(decide(*f), *want, "{f:?}");
        }
    }
}
