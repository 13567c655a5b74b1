//! The accept loop both transports share: plain TCP or TLS (rustls with the
//! ring provider), HTTP/1.1 and HTTP/2 through hyper, one task per
//! connection, and a shutdown that stops accepting, lets in-flight requests
//! finish, and gives up on connections that outlive a deadline.
//!
//! It serves any `axum::Router` and knows nothing about OTLP; it must not
//! depend on the gRPC or HTTP handlers.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use magpie_core::ComponentId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait before accepting again after a resource error (EMFILE).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Which protocols a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: HTTP/2 only.
    Grpc,
    /// OTLP/HTTP: HTTP/1.1 and HTTP/2.
    Http,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// Reads a PEM certificate chain and private key into a TLS acceptor that
/// offers the ALPN protocols `protocol` speaks.
pub fn tls_acceptor(cert_file: &Path, key_file: &Path, protocol: Protocol) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("reading tls cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("tls cert_file {} holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("reading tls key_file {}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("configuring tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("tls cert_file {} and key_file {}: {e}", cert_file.display(), key_file.display())
        })?;
    config.alpn_protocols = match protocol {
        Protocol::Grpc => vec![b"h2".to_vec()],
        Protocol::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What one listener needs to serve.
pub struct Server {
    pub id: ComponentId,
    pub protocol: Protocol,
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub router: Router,
    /// How long in-flight connections may take to finish after shutdown.
    pub drain_timeout: Duration,
}

impl Server {
    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) {
        let Server { id, protocol, listener, tls, router, drain_timeout } = self;
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        if protocol == Protocol::Grpc {
            builder = builder.http2_only();
        }
        // Cancelled once accepting stops: every connection then shuts down gracefully.
        let stop = CancellationToken::new();
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        // Small unary responses must not wait for Nagle.
                        let _ = tcp.set_nodelay(true);
                        let conn = Connection { builder: builder.clone(), router: router.clone(), stop: stop.clone() };
                        match &tls {
                            None => {
                                connections.spawn(conn.serve(tcp));
                            }
                            Some(acceptor) => {
                                let acceptor = acceptor.clone();
                                let component = id.clone();
                                connections.spawn(async move {
                                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                                        Ok(Ok(stream)) => conn.serve(stream).await,
                                        Ok(Err(e)) => tracing::debug!(component = %component, error = %e, "tls handshake failed"),
                                        Err(_) => tracing::debug!(component = %component, "tls handshake timed out"),
                                    }
                                });
                            }
                        }
                    }
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        tracing::warn!(component = %id, protocol = protocol.as_str(), error = %e, "accepting a connection failed, pausing");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                        }
                    }
                },
            }
        }
        // Stop accepting: new clients are refused from here on.
        drop(listener);
        stop.cancel();
        let deadline = tokio::time::sleep(drain_timeout);
        let mut deadline = pin!(deadline);
        loop {
            tokio::select! {
                next = connections.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    tracing::warn!(component = %id, protocol = protocol.as_str(), open = connections.len(), "connections still open after the drain timeout, closing them");
                    connections.shutdown().await;
                    break;
                }
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection.
struct Connection {
    builder: Builder<TokioExecutor>,
    router: Router,
    stop: CancellationToken,
}

impl Connection {
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.router);
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        let mut conn = pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = self.stop.cancelled() => {}
        }
        conn.as_mut().graceful_shutdown();
        if let Err(e) = conn.await {
            tracing::trace!(error = %e, "connection ended with an error while draining");
        }
    }
}
