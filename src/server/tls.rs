//! The HTTPS accept loop: rustls (ring, TLS 1.2+) in front of hyper's HTTP/1.1 server.
//!
//! HTTP/1.1 only, on purpose: the API server speaks HTTP/1.1 to webhooks just as well, and
//! HTTP/2 brought the rapid-reset and stream-flood denial-of-service bugs (CVE-2023-44487,
//! CVE-2023-39325) that made kubebuilder and knative turn it off for webhooks. ALPN offers only
//! `http/1.1`.
//!
//! The certificate comes from a `ResolvesServerCert` asked on every handshake, so a rotated
//! certificate is served to the next connection without a restart. Each connection gets a
//! handshake timeout, a header-read timeout (which is also hyper's keep-alive idle timeout) and
//! a tracing span; on shutdown, idle connections close and busy ones finish their request.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info_span, warn};

use super::signal::Watch;

/// Per-connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers, counted from when the connection is
    /// ready for a request (so it also closes idle keep-alive connections).
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { handshake_timeout: Duration::from_secs(10), header_timeout: Duration::from_secs(10) }
    }
}

/// The rustls configuration: ring provider, TLS 1.3 and 1.2, no client authentication, the
/// certificate from `resolver` on every handshake, ALPN `http/1.1`.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over TLS on `listener` until `stop` fires, then stops accepting, lets every
/// open connection finish its current request, and returns once all have closed. (The caller
/// bounds the wait.)
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    limits: ConnectionLimits,
    mut stop: Watch,
) {
    let acceptor = TlsAcceptor::from(tls);
    // Every connection task holds a sender; `recv` returns `None` once all have ended.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.fired() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = Connection { acceptor: acceptor.clone(), app: app.clone(), limits, stop: stop.clone() };
        let open = open_tx.clone();
        tokio::spawn(
            async move {
                conn.run(stream).await;
                drop(open);
            }
            .instrument(info_span!("connection", %peer)),
        );
    }
    drop(listener);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// One accepted TCP connection.
struct Connection {
    acceptor: TlsAcceptor,
    app: Router,
    limits: ConnectionLimits,
    stop: Watch,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let tls = match tokio::time::timeout(self.limits.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(timeout = ?self.limits.handshake_timeout, "TLS handshake timed out");
                return;
            }
        };
        let service = TowerToHyperService::new(self.app);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(self.limits.header_timeout).keep_alive(true);
        let conn = http.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = self.stop.fired() => {
                // Finish the request in progress (if any), then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "connection ended with an error");
        }
    }
}
