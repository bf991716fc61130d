//! The HTTPS front end of a running node: binds the listener, serves the
//! API until told to stop, then drains. The node itself (disks, Raft,
//! background work) is `strata_node::Node`; the binary starts the node,
//! then this, and stops them in the other order.

use std::net::SocketAddr;
use std::sync::Arc;

use cluster_config::{Config, ConfigError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::http::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The API's listening socket, bound before the node starts so that its
/// address (and so the node's URL) is known.
pub struct Listener {
    listener: TcpListener,
    local_addr: SocketAddr,
    scheme: &'static str,
}

impl Listener {
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        let listen = config.api.listen;
        let err = |source| ServerError::Listen {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(err)?;
        let local_addr = listener.local_addr().map_err(err)?;
        Ok(Self {
            listener,
            local_addr,
            scheme: if config.api.tls.is_some() {
                "https"
            } else {
                "http"
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients reach this listener at.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }
}

/// The API being served.
pub struct HttpServer {
    app: Arc<App>,
    url: String,
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Serves the API of `node` on `listener`.
    pub fn start(node: &strata_node::Node, listener: Listener) -> Result<Self, ServerError> {
        let config = node.config().clone();
        let mut app = App::new(node);
        app.metrics_token = load_metrics_token(&config)?;
        let app = Arc::new(app);
        let tls = match &config.api.tls {
            Some(t) => Some(http::tls_acceptor(&t.cert, &t.key)?),
            None => None,
        };
        let stop = CancellationToken::new();
        let url = listener.url();
        let local_addr = listener.local_addr;
        let task = tokio::spawn(http::serve(
            listener.listener,
            tls,
            app.clone(),
            http::ConnLimits::from_config(&config.api),
            stop.clone(),
        ));
        tracing::info!(node = %config.node_id, addr = %local_addr, "serving");
        Ok(Self {
            app,
            url,
            local_addr,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops accepting and drains the requests in flight.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the listener ended abnormally");
        }
    }
}

/// The scrape credential, from a file only the service user may read.
fn load_metrics_token(config: &Config) -> Result<Option<String>, ServerError> {
    let Some(path) = &config.metrics_token_file else {
        return Ok(None);
    };
    cluster_config::secrets::check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    let token = text.trim().to_string();
    if token.len() < 16 {
        return Err(ConfigError::BadSecretFile {
            path: path.clone(),
            reason: "a metrics token needs at least 16 characters".into(),
        }
        .into());
    }
    Ok(Some(token))
}
