//! The namespace commands, by concern: `journal` (the per-command context
//! and the change journal), `tree` (folders, delete, move), `versions`
//! (writing, committing and restoring versions) and `refs` (blocks and
//! their reference counts).

pub(super) use super::journal::*;
pub(super) use super::refs::*;
pub(super) use super::tree::*;
pub(super) use super::versions::*;
