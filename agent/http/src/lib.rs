//! The HTTP listener the components that serve HTTP share (the `otlp`
//! receiver's gRPC and HTTP ports, the `websocket` exporter's feed): plain
//! TCP or TLS (rustls with the ring provider), HTTP/1.1 and/or HTTP/2
//! through hyper, one task per connection, and a shutdown that stops
//! accepting, lets in-flight requests finish, and gives up on connections
//! that outlive a deadline.
//!
//! It serves any `axum::Router` and knows nothing about what the router
//! does. The listener is bound by the component in `start()`, so a taken
//! port fails start-up, and handed to [`Listener::run`].

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
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

/// Which HTTP versions a listener speaks (and offers over ALPN with TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versions {
    /// HTTP/1.1 only (WebSocket upgrades).
    Http1,
    /// HTTP/2 only (gRPC).
    Http2,
    /// HTTP/1.1 and HTTP/2 on the same port.
    Both,
}

impl Versions {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Versions::Http1 => vec![b"http/1.1".to_vec()],
            Versions::Http2 => vec![b"h2".to_vec()],
            Versions::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// Reads a PEM certificate chain and private key into a TLS acceptor that
/// offers the ALPN protocols of `versions`. Errors name the files, never
/// their contents.
pub fn tls_acceptor(cert_file: &Path, key_file: &Path, versions: Versions) -> Result<TlsAcceptor, String> {
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
    config.alpn_protocols = versions.alpn();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One bound listener and what it serves.
pub struct Listener {
    /// The component, for log lines.
    pub id: ComponentId,
    /// What the port is, for log lines (`grpc`, `http`, `websocket`).
    pub name: &'static str,
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub router: Router,
    pub versions: Versions,
    /// Whether handlers may take over the connection (WebSocket upgrades).
    pub upgrades: bool,
    /// How long open connections may take to finish after shutdown.
    pub drain_timeout: Duration,
}

impl Listener {
    /// Serves until `shutdown` is cancelled, then stops accepting, asks
    /// every connection to finish (HTTP/1.1 after its current request,
    /// HTTP/2 with GOAWAY) and waits up to `drain_timeout` before closing
    /// what is still open.
    pub async fn run(self, shutdown: CancellationToken) {
        let Listener { id, name, listener, tls, router, versions, upgrades, drain_timeout } = self;
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        let builder = match versions {
            Versions::Http1 => builder.http1_only(),
            Versions::Http2 => builder.http2_only(),
            Versions::Both => builder,
        };
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
                        // Small responses and live messages must not wait for Nagle.
                        let _ = tcp.set_nodelay(true);
                        let conn = Connection { builder: builder.clone(), router: router.clone(), upgrades, stop: stop.clone() };
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
                                        Ok(Err(e)) => tracing::debug!(component = %component, listener = name, error = %e, "tls handshake failed"),
                                        Err(_) => tracing::debug!(component = %component, listener = name, "tls handshake timed out"),
                                    }
                                });
                            }
                        }
                    }
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        tracing::warn!(component = %id, listener = name, error = %e, "accepting a connection failed, pausing");
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
                    tracing::warn!(component = %id, listener = name, open = connections.len(), "connections still open after the drain timeout, closing them");
                    connections.shutdown().await;
                    break;
                }
            }
        }
    }
}

/// Errors of one connection that was gone before it was accepted.
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
    upgrades: bool,
    stop: CancellationToken,
}

impl Connection {
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.router);
        if self.upgrades {
            drive(self.builder.serve_connection_with_upgrades(TokioIo::new(io), service), self.stop).await;
        } else {
            drive(self.builder.serve_connection(TokioIo::new(io), service), self.stop).await;
        }
    }
}

/// Runs a connection until it ends, or until `stop`, then lets it finish
/// what it has started.
async fn drive<C>(conn: C, stop: CancellationToken)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut conn = pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            return;
        }
        () = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::trace!(error = %e, "connection ended with an error while draining");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::mpsc;

    /// A listener on a free port whose `/slow` handler reports that it
    /// started, then answers after `hold` (or never, for `None`).
    async fn slow_listener(
        hold: Option<Duration>,
        drain_timeout: Duration,
    ) -> (std::net::SocketAddr, mpsc::Receiver<()>, CancellationToken, tokio::task::JoinHandle<()>) {
        let (started_tx, started) = mpsc::channel(4);
        let router = Router::new().route(
            "/slow",
            get(move || {
                let started_tx = started_tx.clone();
                async move {
                    let _ = started_tx.send(()).await;
                    match hold {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending::<()>().await,
                    }
                    "done"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let l = Listener {
            id: ComponentId::new("test", Some("listener".to_string())),
            name: "http",
            listener,
            tls: None,
            router,
            versions: Versions::Both,
            upgrades: false,
            drain_timeout,
        };
        let task = tokio::spawn(l.run(shutdown.clone()));
        (addr, started, shutdown, task)
    }

    /// Sends `GET /slow` over HTTP/1.1 on a new connection and returns what the server wrote.
    async fn get_slow(addr: std::net::SocketAddr) -> std::io::Result<String> {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n").await?;
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.ends_with(b"done") {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[tokio::test]
    async fn a_request_in_flight_at_shutdown_is_answered_and_new_connections_are_refused() {
        let (addr, mut started, shutdown, task) =
            slow_listener(Some(Duration::from_millis(300)), Duration::from_secs(10)).await;
        let request = tokio::spawn(get_slow(addr));
        started.recv().await.unwrap();
        shutdown.cancel();
        let response = request.await.unwrap().unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("run ends once drained").unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the port is closed after shutdown");
    }

    #[tokio::test]
    async fn connections_that_outlive_the_drain_timeout_are_closed() {
        let (addr, mut started, shutdown, task) = slow_listener(None, Duration::from_millis(200)).await;
        let request = tokio::spawn(get_slow(addr));
        started.recv().await.unwrap();
        let t0 = std::time::Instant::now();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run gives up at the deadline")
            .unwrap();
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(200), "waited {waited:?}, less than the drain timeout");
        let response = tokio::time::timeout(Duration::from_secs(5), request).await.unwrap().unwrap();
        assert!(!response.is_ok_and(|r| r.contains("200")), "the stuck request was cut off, not answered");
    }

    /// What a TLS client that offers h2 and http/1.1 ends up with.
    async fn negotiated(versions: Versions) -> Option<Vec<u8>> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let acceptor = tls_acceptor(&cert_file, &key_file, versions).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let client = connector.connect(name, tcp).await.unwrap();
        let client_view = client.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let server_view = server.await.unwrap();
        assert_eq!(client_view, server_view);
        client_view
    }

    #[tokio::test]
    async fn tls_offers_the_listeners_http_versions() {
        assert_eq!(negotiated(Versions::Both).await.as_deref(), Some(&b"h2"[..]));
        assert_eq!(negotiated(Versions::Http2).await.as_deref(), Some(&b"h2"[..]));
        assert_eq!(negotiated(Versions::Http1).await.as_deref(), Some(&b"http/1.1"[..]));
    }

    #[test]
    fn bad_certificate_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        let e = tls_acceptor(&missing, &missing, Versions::Both).err().unwrap();
        assert!(e.contains("cert_file") && e.contains("missing.pem"), "{e}");
        let e = tls_acceptor(&empty, &missing, Versions::Both).err().unwrap();
        assert!(e.contains("holds no certificate") && e.contains("empty.pem"), "{e}");
    }
}
