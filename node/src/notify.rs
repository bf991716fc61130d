//! Waking long polls: journal heads from the local state machine (every
//! node applies every change, so a write through any node wakes polls on
//! all of them) and presence from gossip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_config::{DeviceId, UserId};
use raft_meta::MetaClient;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long a presence report stays without being refreshed.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);
/// Presence reports kept per user (devices × paths); past it the oldest
/// go, so one account's posts cannot grow memory or answers without end.
pub const MAX_PRESENCE_PER_USER: usize = 64;
pub const PRESENCE_TOPIC: &str = "presence";

/// One device's presence on one path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Presence {
    pub user: UserId,
    pub device: DeviceId,
    pub device_name: String,
    pub path: String,
    pub editing: bool,
    pub at_ms: u64,
}

struct Watch {
    /// Newest journal sequence seen for the user.
    seq: watch::Sender<u64>,
    /// Bumped on every presence change of the user.
    presence: watch::Sender<u64>,
}

#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<UserId, Arc<Watch>>>,
    presence: Mutex<HashMap<UserId, Vec<(Presence, Instant)>>>,
    polls: AtomicUsize,
}

/// A poll's subscription; counts as active while alive.
pub struct Subscription<'a> {
    pub seq: watch::Receiver<u64>,
    pub presence: watch::Receiver<u64>,
    hub: &'a Hub,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.hub.polls.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    fn watch(&self, user: &UserId) -> Arc<Watch> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .entry(*user)
            .or_insert_with(|| {
                Arc::new(Watch {
                    seq: watch::channel(0).0,
                    presence: watch::channel(0).0,
                })
            })
            .clone()
    }

    pub fn subscribe(&self, user: &UserId) -> Subscription<'_> {
        let w = self.watch(user);
        self.polls.fetch_add(1, Ordering::Relaxed);
        Subscription {
            seq: w.seq.subscribe(),
            presence: w.presence.subscribe(),
            hub: self,
        }
    }

    /// Long polls held on this node right now.
    pub fn active_polls(&self) -> usize {
        self.polls.load(Ordering::Relaxed)
    }

    fn journal_advanced(&self, heads: &[(UserId, u64)]) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        for (user, seq) in heads {
            if let Some(w) = users.get(user) {
                w.seq.send_if_modified(|v| {
                    let newer = *seq > *v;
                    if newer {
                        *v = *seq;
                    }
                    newer
                });
            }
        }
    }

    pub fn record_presence(&self, p: Presence) {
        let user = p.user;
        {
            let mut all = self.presence.lock().unwrap_or_else(|e| e.into_inner());
            let list = all.entry(user).or_default();
            list.retain(|(q, t)| {
                t.elapsed() < PRESENCE_TTL && !(q.device == p.device && q.path == p.path)
            });
            if p.editing {
                list.push((p, Instant::now()));
                if list.len() > MAX_PRESENCE_PER_USER {
                    let excess = list.len() - MAX_PRESENCE_PER_USER;
                    list.drain(..excess);
                }
            }
        }
        let w = self.watch(&user);
        w.presence.send_modify(|v| *v += 1);
    }

    pub fn presence_of(&self, user: &UserId, path: Option<&str>) -> Vec<Presence> {
        let all = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        all.get(user)
            .map(|l| {
                l.iter()
                    .filter(|(p, t)| t.elapsed() < PRESENCE_TTL && path.is_none_or(|x| x == p.path))
                    .map(|(p, _)| p.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Feeds journal heads from the state machine into the watches.
    pub async fn run(self: Arc<Self>, meta: MetaClient, stop: CancellationToken) {
        let mut rx = meta.subscribe_journal();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                msg = rx.recv() => match msg {
                    Ok(heads) => self.journal_advanced(&heads),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: wake every poll, each re-reads its user.
                        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
                        for w in users.values() {
                            w.seq.send_modify(|_| {});
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// Records presence gossiped by other nodes.
    pub async fn run_gossip(self: Arc<Self>, net: crate::net::SharedNet, stop: CancellationToken) {
        let mut rx = net.subscribe();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                msg = rx.recv() => match msg {
                    Ok(g) if g.topic == PRESENCE_TOPIC => {
                        if let Ok(p) = decode_presence(&g.data) {
                            self.record_presence(p);
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
            }
        }
    }
}

pub fn encode_presence(p: &Presence) -> Vec<u8> {
    serde_json::to_vec(p).unwrap_or_default()
}

fn decode_presence(b: &[u8]) -> Result<Presence, serde_json::Error> {
    let p: Presence = serde_json::from_slice(b)?;
    // A peer's report is bounded like a local one.
    if p.path.len() > raft_meta::path::MAX_PATH_BYTES || p.device_name.len() > 256 {
        return Err(serde::de::Error::custom("presence report too long"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_per_user_is_bounded() {
        let hub = Hub::default();
        let user = UserId([1; 16]);
        for i in 0..4000 {
            hub.record_presence(Presence {
                user,
                device: DeviceId([2; 16]),
                device_name: "d".into(),
                path: format!("/file-{i}"),
                editing: true,
                at_ms: i,
            });
        }
        let kept = hub.presence_of(&user, None);
        assert_eq!(kept.len(), MAX_PRESENCE_PER_USER);
        // The newest are kept.
        assert!(kept.iter().any(|p| p.path == "/file-3999"));
        assert!(!kept.iter().any(|p| p.path == "/file-0"));
    }
}
