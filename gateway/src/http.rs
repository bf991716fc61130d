//! The HTTPS listener: accept loop, TLS handshake, hyper connections serving
//! the warp filter, and the limits that keep one client from holding the
//! node: a cap on connections in all and per client address, a deadline
//! for a new connection's first byte and TLS handshake, an idle timeout
//! (no request in flight for a while, HTTP/1.1 keep-alive and HTTP/2
//! alike), and a maximum connection age; then a graceful drain on stop.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::app::App;
use crate::limits::PerAddress;
use crate::routes::{self, RemoteAddr};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection looks at its idle time and age.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// A connection asked to close (idle, or too old) is dropped once nothing
/// has been in flight on it this long.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A TLS acceptor for the certificate chain and key in two PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read_err = |p: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(cert, &e))?;
    if certs.is_empty() {
        return Err(read_err(cert, &"no certificate in file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The connection limits of `[api]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_total: usize,
    pub per_address: usize,
    pub first_byte: Duration,
    pub idle: Duration,
    pub max_age: Duration,
}

impl ConnLimits {
    pub fn from_config(api: &cluster_config::ApiConfig) -> Self {
        Self {
            max_total: api.max_connections,
            per_address: api.max_connections_per_address,
            first_byte: api.first_byte_timeout,
            idle: api.idle_timeout,
            max_age: api.max_connection_age,
        }
    }
}

/// What one connection is doing: requests whose answer is not yet fully
/// sent, and when the last one ended.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` that the connection last had work.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestGuard(self.clone())
    }

    /// How long the connection has had nothing in flight.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// Held from a request's arrival until its answer's body is sent or dropped.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves until `stop` is cancelled, then drains connections.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    let service = warp::service(routes::filter(app));
    let slots = Arc::new(Semaphore::new(limits.max_total));
    let per_address = Arc::new(PerAddress::default());
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep going.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(address) = per_address.take(peer.ip(), limits.per_address) else {
            tracing::debug!(peer = %peer, "connections per address reached; refusing");
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, "connection limit reached; refusing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let service = service.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _address = address;
            let Some(tcp) = first_byte(tcp, limits.first_byte).await else {
                tracing::debug!(peer = %peer, "no first byte in time; closed");
                return;
            };
            let activity = Activity::new();
            let handler = {
                let activity = activity.clone();
                hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                    req.extensions_mut().insert(RemoteAddr(peer));
                    let guard = activity.begin();
                    let mut svc = service.clone();
                    async move {
                        let resp = svc.call(req).await?;
                        // The guard lives as long as the answer's body.
                        Ok::<_, std::convert::Infallible>(resp.map(move |b| {
                            b.map_frame(move |f| {
                                let _ = &guard;
                                f
                            })
                        }))
                    }
                })
            };
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.first_byte, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            run_connection(stream, handler, activity, limits, stop).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => run_connection(tcp, handler, activity, limits, stop).await,
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    tokio::select! {
        _ = connections.wait() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT + Duration::from_secs(1)) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing")
        }
    }
}

/// Waits for the connection's first byte (before TLS or protocol sniffing
/// read anything): a client that connects and says nothing is let go.
async fn first_byte(tcp: TcpStream, limit: Duration) -> Option<TcpStream> {
    let mut one = [0u8; 1];
    match tokio::time::timeout(limit, tcp.peek(&mut one)).await {
        Ok(Ok(n)) if n > 0 => Some(tcp),
        _ => None,
    }
}

/// Serves one connection (HTTP/1.1 or HTTP/2): closes it gracefully when
/// it has had nothing in flight for the idle time, when it reaches the
/// maximum age, or when the node stops; drops it if it does not close
/// within the drain time after that.
async fn run_connection<I, S, B>(
    io: I,
    handler: S,
    activity: Arc<Activity>,
    limits: ConnLimits,
    stop: CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), handler);
    tokio::pin!(conn);
    // Set once the connection was asked to close: when, and whether the
    // node is stopping (then everything goes after the drain time; else
    // the connection goes once nothing is in flight for `CLOSE_GRACE`,
    // whether or not the client plays along with HTTP/2's goodbye).
    let mut closing: Option<(Instant, bool)> = None;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            _ = stop.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some((Instant::now(), true));
            }
            _ = tokio::time::sleep(WATCH_EVERY) => {
                match closing {
                    Some((since, true)) if since.elapsed() > DRAIN_TIMEOUT => return Ok(()),
                    Some((_, false)) if activity.idle_for() >= CLOSE_GRACE => return Ok(()),
                    Some(_) => {}
                    None => {
                        let idle = activity.idle_for() >= limits.idle;
                        let old = activity.started.elapsed() >= limits.max_age;
                        if idle || old {
                            tracing::debug!(idle, old, "closing a connection");
                            conn.as_mut().graceful_shutdown();
                            closing = Some((Instant::now(), false));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn addresses_hold_at_most_their_share() {
        let map = Arc::new(PerAddress::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = map.take(a, 2).unwrap();
        let _two = map.take(a, 2).unwrap();
        assert!(map.take(a, 2).is_none());
        assert!(map.take(b, 2).is_some());
        drop(one);
        assert!(map.take(a, 2).is_some());
    }

    #[test]
    fn a_connection_is_idle_only_with_nothing_in_flight() {
        let act = Activity::new();
        std::thread::sleep(Duration::from_millis(20));
        assert!(act.idle_for() >= Duration::from_millis(20));
        let g = act.begin();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(act.idle_for(), Duration::ZERO);
        drop(g);
        assert!(act.idle_for() < Duration::from_millis(20));
    }
}
