//! strata HTTPS gateway: the front end only — the drive API of `API.md`
//! over warp, tus resumable uploads, authentication, the connection and
//! per-party limits. It is given a running `strata_node::Node` and serves
//! from it (`server`); the node runs without it.
//!
//! Depends on `raft-meta` (through `MetaClient` only) and `strata-node`.
//! Invariants: every route under `/api/v1` except signup, login and tus
//! discovery is authenticated, and every lookup is scoped to the caller's
//! user id; errors become HTTP in `error.rs` only; request bodies are
//! streamed with limits, never buffered whole.

pub mod app;
pub mod auth;
pub mod error;
pub mod handlers;
pub mod http;
pub mod limits;
pub mod request;
pub mod routes;
pub mod server;
pub mod upload;

pub use server::{HttpServer, Listener, ServerError};
