//! Drive paths: validated once at the edge, carried as segments everywhere.
//!
//! A path is absolute, `/`-separated UTF-8 in NFC; no empty, `.` or `..`
//! segment; no NUL or control character; a segment at most 255 bytes and the
//! whole path at most 4096 bytes. The state machine re-checks every path it
//! is given, so a malformed command can never reach the tree.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::{is_nfc, UnicodeNormalization};

pub const MAX_SEGMENT_BYTES: usize = 255;
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path is longer than 4096 bytes")]
    TooLong,
    #[error("path has an empty segment")]
    EmptySegment,
    #[error("path has a '.' or '..' segment")]
    DotSegment,
    #[error("path has a NUL or control character")]
    ControlCharacter,
    #[error("a path segment is longer than 255 bytes")]
    SegmentTooLong,
    #[error("this operation needs a path below the root")]
    IsRoot,
    #[error("path has an invisible or direction-changing character (U+200B-U+200F, U+202A-U+202E, U+2066-U+2069, U+FEFF)")]
    InvisibleCharacter,
}

/// Characters that make a name look like another: zero-width ones and
/// bidirectional overrides (`Invoice\u{202E}lmth.exe` shows as
/// `Invoiceexe.html`).
pub fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A validated, NFC-normalised absolute path. The root has no segments.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct DrivePath {
    segments: Vec<String>,
}

impl DrivePath {
    pub fn root() -> Self {
        Self::default()
    }

    /// Validates and normalises a path from a client. Input that is not NFC
    /// is normalised (so a name typed on macOS and on Linux is the same file).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let owned;
        let text = if is_nfc(raw) {
            raw
        } else {
            owned = raw.nfc().collect::<String>();
            &owned
        };
        if !text.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        if text.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        if text == "/" {
            return Ok(Self::root());
        }
        let mut segments = Vec::new();
        for seg in text[1..].split('/') {
            check_segment(seg)?;
            // Only paths from clients: names stored before this rule stay
            // reachable through the tree, and the state machine replays
            // old commands as they were.
            if seg.chars().any(is_deceptive) {
                return Err(PathError::InvisibleCharacter);
            }
            segments.push(seg.to_string());
        }
        Ok(Self { segments })
    }

    /// Re-validates segments that arrived inside a command.
    pub fn from_segments(segments: Vec<String>) -> Result<Self, PathError> {
        let mut len = 0;
        for s in &segments {
            check_segment(s)?;
            if !is_nfc(s) {
                return Err(PathError::ControlCharacter);
            }
            len += 1 + s.len();
        }
        if len > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(Self { segments })
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The last segment, or `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    pub fn parent(&self) -> Option<DrivePath> {
        if self.segments.is_empty() {
            return None;
        }
        Some(Self {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
        })
    }

    /// This path with `name` appended; the name is validated.
    pub fn join(&self, name: &str) -> Result<DrivePath, PathError> {
        let mut segments = self.segments.clone();
        segments.push(name.to_string());
        Self::from_segments(segments)
    }

    /// Whether `self` is `other` or below it.
    pub fn starts_with(&self, other: &DrivePath) -> bool {
        self.segments.len() >= other.segments.len()
            && self.segments[..other.segments.len()] == other.segments[..]
    }

    /// The path with its last segment replaced.
    pub fn with_name(&self, name: &str) -> Result<DrivePath, PathError> {
        match self.parent() {
            Some(p) => p.join(name),
            None => Err(PathError::IsRoot),
        }
    }
}

fn check_segment(seg: &str) -> Result<(), PathError> {
    if seg.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(PathError::DotSegment);
    }
    if seg.len() > MAX_SEGMENT_BYTES {
        return Err(PathError::SegmentTooLong);
    }
    if seg.chars().any(|c| c.is_control() || c == '/') {
        return Err(PathError::ControlCharacter);
    }
    Ok(())
}

impl fmt::Display for DrivePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            f.write_str("/")?;
            f.write_str(s)?;
        }
        Ok(())
    }
}

impl fmt::Debug for DrivePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_paths() {
        assert!(DrivePath::parse("/").unwrap().is_root());
        let p = DrivePath::parse("/a/b c/ünï.txt").unwrap();
        assert_eq!(p.segments(), ["a", "b c", "ünï.txt"]);
        assert_eq!(p.to_string(), "/a/b c/ünï.txt");
        assert_eq!(p.name(), Some("ünï.txt"));
        assert_eq!(p.parent().unwrap().to_string(), "/a/b c");
        assert!(p.starts_with(&DrivePath::parse("/a").unwrap()));
        assert!(!DrivePath::parse("/ab")
            .unwrap()
            .starts_with(&DrivePath::parse("/a").unwrap()));
        assert!(DrivePath::parse(&format!("/{}", "x".repeat(255))).is_ok());
        assert!(DrivePath::parse("/.hidden/..dots/...").is_ok());
    }

    #[test]
    fn normalises_to_nfc() {
        // "e" + combining acute accent becomes the single code point "é".
        let decomposed = "/caf\u{0065}\u{0301}";
        let p = DrivePath::parse(decomposed).unwrap();
        assert_eq!(p.to_string(), "/caf\u{00e9}");
        assert_eq!(p, DrivePath::parse("/caf\u{00e9}").unwrap());
    }

    #[test]
    fn rejects_bad_paths() {
        use PathError::*;
        let cases = [
            ("", NotAbsolute),
            ("a/b", NotAbsolute),
            ("//a", EmptySegment),
            ("/a/", EmptySegment),
            ("/a//b", EmptySegment),
            ("/a/./b", DotSegment),
            ("/a/..", DotSegment),
            ("/a\0b", ControlCharacter),
            ("/a\nb", ControlCharacter),
            ("/a\u{7f}", ControlCharacter),
            ("/Invoice\u{202e}lmth.exe", InvisibleCharacter),
            ("/a\u{200b}b", InvisibleCharacter),
            ("/\u{feff}x", InvisibleCharacter),
            ("/x/\u{2067}y", InvisibleCharacter),
            ("/\u{200f}", InvisibleCharacter),
        ];
        for (raw, want) in cases {
            assert_eq!(DrivePath::parse(raw), Err(want), "{raw:?}");
        }
        assert_eq!(
            DrivePath::parse(&format!("/{}", "x".repeat(256))),
            Err(SegmentTooLong)
        );
        let long = "/abcdefgh".repeat(600);
        assert_eq!(DrivePath::parse(&long), Err(TooLong));
        assert_eq!(DrivePath::from_segments(vec!["..".into()]), Err(DotSegment));
        assert_eq!(
            DrivePath::from_segments(vec!["a/b".into()]),
            Err(ControlCharacter)
        );
    }
}
