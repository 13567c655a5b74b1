//! The listener: `GET /` serves the built-in live page, `GET <path>`
//! upgrades to the feed after checking the token, the origin and the client
//! limit. Each client has a task that drains its queue into the socket
//! (many messages per flush), answers `subscribe` requests, pings, and
//! disconnects a client that stops answering or stops reading.
//!
//! The accept loop is `magpie-http`'s, with upgrades. This module knows
//! nothing about metrics or spans.

use super::hub::{Client, Hub};
use super::messages::{glob, parse_request};
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::SinkExt;
use magpie_core::ComponentId;
use magpie_core::config::Secret;
use magpie_core::otlp::now_unix_nanos;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The live page, embedded in the binary.
pub const PAGE: &str = include_str!("page.html");

/// Messages one flush takes from a client's queue.
const MAX_DRAIN: usize = 256;
/// Per-client read buffer: clients only send small requests (the default, 128 KiB,
/// would cost 128 MiB at 1,000 clients).
const READ_BUFFER: usize = 4 * 1024;
/// Bytes buffered before a write reaches the socket; every drain is flushed anyway.
const WRITE_BUFFER: usize = 16 * 1024;
/// The largest message a client may send (subscribe requests are small).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// How long the close frame may take on shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the handlers share.
pub struct App {
    pub id: ComponentId,
    pub hub: Arc<Hub>,
    pub token: Option<Secret<String>>,
    pub allowed_origins: Vec<String>,
    pub tls: bool,
    pub ping_interval: Duration,
    pub client_timeout: Duration,
    /// The live page with the feed's path filled in; `None` when the page is off.
    pub page: Option<String>,
}

/// The live page pointing at the feed on `path` (a path of safe characters only).
pub fn page_for(path: &str) -> String {
    PAGE.replacen("data-feed=\"/ws\"", &format!("data-feed=\"{path}\""), 1)
}

impl App {
    /// The token from `Authorization: Bearer …` or `?token=`, compared in constant time.
    fn authorized(&self, headers: &HeaderMap, query_token: Option<&str>) -> bool {
        let Some(want) = &self.token else { return true };
        let want = want.expose().as_bytes();
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().split_at_checked(7))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, t)| t.trim_ascii());
        let ok = |t: &[u8]| bool::from(t.ct_eq(want));
        from_header.is_some_and(ok) || query_token.is_some_and(|t| ok(t.as_bytes()))
    }

    /// Browsers send `Origin`; the page's own origin is always allowed, others
    /// only when listed. Clients that send none (not browsers) pass.
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        origin_allowed(headers, &self.allowed_origins, self.tls)
    }
}

/// See [`App::origin_allowed`].
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String], tls: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        let own = format!("{}://{host}", if tls { "https" } else { "http" });
        if origin.eq_ignore_ascii_case(&own) {
            return true;
        }
    }
    allowed.iter().any(|p| glob(p, origin))
}

/// The router: the page at `/` (when enabled) and the feed at `path`.
pub fn router(app: Arc<App>, path: &str) -> Router {
    let mut r = Router::new().route(path, get(feed));
    if app.page.is_some() {
        r = r.route("/", get(page));
    }
    r.with_state(app)
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn feed(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !app.authorized(&headers, query.token.as_deref()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong token\n",
        )
            .into_response();
    }
    if !app.origin_allowed(&headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let client = match app.hub.register() {
        Ok(c) => c,
        Err(_) => {
            return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], "too many clients\n")
                .into_response();
        }
    };
    let (hub, id) = (app.hub.clone(), client.id);
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_failed_upgrade(move |_| hub.unregister(id))
        .on_upgrade(move |socket| serve_client(app, client, socket))
}

/// The `Content-Security-Policy` of the page: only its own inline script
/// and style (by hash) and connections to its own origin.
fn page_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = |open: &str, close: &str| {
            let body = PAGE.split_once(open).and_then(|(_, rest)| rest.split_once(close)).map_or("", |(b, _)| b);
            format!("'sha256-{}'", base64(ring::digest::digest(&ring::digest::SHA256, body.as_bytes()).as_ref()))
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash("<script>", "</script>"),
            hash("<style>", "</style>")
        )
    })
}

async fn page(State(app): State<Arc<App>>) -> Response {
    let mut r = app.page.clone().unwrap_or_default().into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(page_csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn serve_client(app: Arc<App>, client: Arc<Client>, mut socket: WebSocket) {
    let reason = client_loop(&app, &client, &mut socket).await;
    app.hub.unregister(client.id);
    tracing::debug!(
        component = %app.id, client = client.id, reason, delivered = client.delivered_total(),
        dropped = client.dropped_total(), "websocket client left"
    );
    if client.dropped_total() > 0 {
        tracing::info!(component = %app.id, client = client.id, dropped = client.dropped_total(), reason, "a slow websocket client lost messages");
    }
}

/// Runs one client until it leaves, stalls or the feed closes; returns why it ended.
async fn client_loop(app: &App, client: &Client, socket: &mut WebSocket) -> &'static str {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + app.ping_interval, app.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = app.hub.closing.cancelled() => {
                let close = Message::Close(Some(CloseFrame { code: 1001, reason: "magpie is shutting down".into() }));
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(close)).await;
                return "shutdown";
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) => return "disconnected",
                Some(Ok(m)) => {
                    last_heard = Instant::now();
                    match m {
                        Message::Text(t) => match parse_request(t.as_str()) {
                            Ok(sub) => app.hub.subscribe(client.id, sub, now_unix_nanos()),
                            Err(e) => app.hub.reject(client.id, &e, now_unix_nanos()),
                        },
                        Message::Binary(_) => app.hub.reject(client.id, "binary messages are not understood: send JSON text", now_unix_nanos()),
                        Message::Close(_) => return "closed by the client",
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
            },
            () = client.ready.notified() => {
                let drained = client.drain(MAX_DRAIN);
                let write = async {
                    if let Some((dropped, seq)) = drained.lagged {
                        socket.feed(Message::Text(Hub::lagged_notice(dropped, seq, now_unix_nanos()))).await?;
                    }
                    for m in drained.messages {
                        socket.feed(Message::Text(m)).await?;
                    }
                    socket.flush().await
                };
                match tokio::time::timeout(app.client_timeout, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return "write failed",
                    Err(_) => return "stalled: writes did not complete within client_timeout",
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > app.client_timeout {
                    return "stalled: no answer within client_timeout";
                }
                match tokio::time::timeout(app.client_timeout, socket.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return "write failed",
                    Err(_) => return "stalled: writes did not complete within client_timeout",
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn origins() {
        let h = |origin: Option<&str>, host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            m
        };
        let allowed = vec!["https://admin.example.com".to_string(), "http://localhost:*".to_string()];
        assert!(origin_allowed(&h(None, "a:1"), &[], false), "no Origin: not a browser");
        assert!(
            origin_allowed(&h(Some("http://127.0.0.1:8765"), "127.0.0.1:8765"), &[], false),
            "the page's own origin"
        );
        assert!(!origin_allowed(&h(Some("https://127.0.0.1:8765"), "127.0.0.1:8765"), &[], false));
        assert!(origin_allowed(&h(Some("https://127.0.0.1:8765"), "127.0.0.1:8765"), &[], true));
        assert!(!origin_allowed(&h(Some("https://evil.example"), "127.0.0.1:8765"), &allowed, false));
        assert!(origin_allowed(&h(Some("https://admin.example.com"), "127.0.0.1:8765"), &allowed, false));
        assert!(origin_allowed(&h(Some("http://localhost:5173"), "127.0.0.1:8765"), &allowed, false));
    }

    #[test]
    fn the_page_csp_pins_its_inline_script_and_style() {
        let csp = page_csp();
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"));
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "the page loads nothing from elsewhere"
        );
        assert_eq!(PAGE.matches("<script>").count(), 1);
        assert_eq!(PAGE.matches("<style>").count(), 1);
    }
}
