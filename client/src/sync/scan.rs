//! Looking at the local folder: what is there, what is ignored.

use std::path::{Path, PathBuf};

use super::state::{Kind, Synced};

/// Names never synced: this agent's own files, temporaries, editor swap
/// and lock files, OS litter.
pub fn ignored(name: &str) -> bool {
    name.starts_with(".strata-")
        || name.ends_with(".tmp")
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name.ends_with('~')
        || name.starts_with(".#")
        || name.starts_with("~$")
        || name.starts_with(".~lock.")
        || name == "4913"
        || name == ".DS_Store"
        || name == "Thumbs.db"
}

/// What a path is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalInfo {
    pub kind: Kind,
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
}

pub fn stat(path: &Path) -> Option<LocalInfo> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let kind = if m.is_dir() {
        Kind::Folder
    } else if m.is_file() {
        Kind::File
    } else {
        return None; // symlinks and devices are not synced
    };
    let mtime_ns = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some(LocalInfo {
        kind,
        size: if kind == Kind::File { m.len() } else { 0 },
        mtime_ns,
        ino,
    })
}

/// Whether the disk still shows what was synced (no content check).
pub fn unchanged(local: &LocalInfo, base: &Synced) -> bool {
    local.kind == base.kind
        && (local.kind == Kind::Folder
            || (local.size == base.size && local.mtime_ns == base.mtime_ns))
}

/// Relative path ('/'-separated) of `abs` under `root`.
pub fn relative(root: &Path, abs: &Path) -> Option<String> {
    let rel = abs.strip_prefix(root).ok()?;
    let mut out = String::new();
    for c in rel.components() {
        let s = c.as_os_str().to_str()?;
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(s);
    }
    (!out.is_empty()).then_some(out)
}

pub fn absolute(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    for seg in rel.split('/') {
        p.push(seg);
    }
    p
}

/// Every synced path under `root`, depth first, parents before children.
pub fn walk(root: &Path) -> Vec<(String, LocalInfo)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if ignored(name) {
                continue;
            }
            let path = e.path();
            let Some(info) = stat(&path) else { continue };
            let Some(rel) = relative(root, &path) else {
                continue;
            };
            if info.kind == Kind::Folder {
                stack.push(path);
            }
            out.push((rel, info));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules() {
        for n in [
            ".strata-sync",
            ".strata-tmp-1",
            "a.tmp",
            ".notes.txt.swp",
            "draft~",
            ".#lock",
            "~$report.docx",
            ".~lock.sheet.ods#",
            "4913",
        ] {
            assert!(ignored(n), "{n}");
        }
        for n in ["notes.txt", "tmp", "swp", "a.tmp.txt", "résumé.pdf"] {
            assert!(!ignored(n), "{n}");
        }
    }

    #[test]
    fn walk_skips_ignored_and_orders_parents_first() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/c.txt"), b"x").unwrap();
        std::fs::write(d.path().join("a/.x.swp"), b"x").unwrap();
        std::fs::create_dir_all(d.path().join(".strata-sync")).unwrap();
        let names: Vec<String> = walk(d.path()).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names, vec!["a", "a/b", "a/b/c.txt"]);
    }
}
