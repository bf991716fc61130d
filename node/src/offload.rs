//! Work too heavy for a runtime thread (erasure coding, hashing, disk
//! reads) goes to tokio's blocking pool; in the simulation it runs in
//! place, so that no thread outside the one-thread runtime decides when
//! it completes and a seed's run is the same each time.

/// How blocking work runs. `Copy`: every part of a node that offloads
/// holds one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offload {
    inline: bool,
}

/// The blocking task panicked or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("background task: {0}")]
pub struct OffloadError(String);

impl Offload {
    pub fn new(inline: bool) -> Self {
        Self { inline }
    }

    pub async fn run<R, F>(self, f: F) -> Result<R, OffloadError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        if self.inline {
            return Ok(f());
        }
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| OffloadError(e.to_string()))
    }
}
