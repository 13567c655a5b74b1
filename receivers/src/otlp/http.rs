//! OTLP/HTTP: `POST` of binary protobuf (`application/x-protobuf`) or
//! OTLP/JSON (`application/json`) to one path per signal, answered in the
//! content type received.
//!
//! The body is read as a stream and decompressed (`gzip`, `deflate`) while
//! it arrives, counting bytes against `max_request_body_size` both before and
//! after decompression, so an oversized or zip-bomb body is refused with 413
//! as soon as it crosses the limit. Every 4xx and 5xx carries a
//! `google.rpc.Status` body, as the specification requires. CORS preflights
//! are answered here for browser SDKs.
//!
//! Depends on [`super::ingest`] for what happens to a request; it must not
//! depend on the gRPC service.

use super::auth::BearerAuth;
use super::cors::Cors;
use super::ingest::{ExportRequest, Ingest, RETRY_DELAY, Refusal, response_json};
use super::status::{Detail, Failure};
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{
    ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use magpie_core::Signal;
use magpie_core::proto::collector::logs::v1::ExportLogsServiceRequest;
use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The two OTLP/HTTP encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// The encoding named by a `Content-Type` (parameters such as `charset`
    /// are ignored).
    fn of(headers: &HeaderMap) -> Option<Format> {
        let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(PROTOBUF) {
            Some(Format::Protobuf)
        } else if media.eq_ignore_ascii_case(JSON) {
            Some(Format::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        })
    }
}

/// What the handler needs; shared by every connection.
pub struct HttpState {
    pub ingest: Arc<Ingest>,
    pub auth: Option<BearerAuth>,
    pub cors: Option<Cors>,
    pub max_body: usize,
    pub traces_path: String,
    pub metrics_path: String,
    pub logs_path: String,
}

/// The OTLP/HTTP router.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let format = Format::of(&parts.headers);
    let reply = Reply(format.unwrap_or(Format::Protobuf));
    let path = parts.uri.path();
    let signal = if path == state.traces_path {
        Signal::Traces
    } else if path == state.metrics_path {
        Signal::Metrics
    } else if path == state.logs_path {
        Signal::Logs
    } else {
        return reply.fail(
            StatusCode::NOT_FOUND,
            tonic::Code::NotFound,
            format!("no OTLP endpoint at {path}"),
        );
    };
    if !state.ingest.wants(signal) {
        return reply.fail(
            StatusCode::NOT_FOUND,
            tonic::Code::NotFound,
            format!("this receiver has no {signal} pipeline"),
        );
    }
    if parts.method == Method::OPTIONS
        && let Some(cors) = &state.cors
        && Cors::is_preflight(&parts.headers)
    {
        return match cors.preflight(&parts.headers) {
            Ok(headers) => (StatusCode::NO_CONTENT, headers).into_response(),
            Err(denied) => {
                tracing::debug!(component = %state.ingest.id, reason = %denied.0, "cors preflight refused");
                reply.fail(StatusCode::FORBIDDEN, tonic::Code::PermissionDenied, denied.0)
            }
        };
    }
    let mut response = state.post(signal, parts.method == Method::POST, &parts, body, format, reply).await;
    if let Some(cors) = &state.cors {
        cors.decorate(&parts.headers, response.headers_mut());
    }
    response
}

/// How errors are encoded for this request.
#[derive(Clone, Copy)]
struct Reply(Format);

impl Reply {
    fn failure(self, status: StatusCode, failure: &Failure) -> Response {
        let body = match self.0 {
            Format::Protobuf => failure.encode_proto(),
            Format::Json => failure.encode_json(),
        };
        (status, [(CONTENT_TYPE, self.0.content_type())], body).into_response()
    }

    fn fail(self, status: StatusCode, code: tonic::Code, message: impl Into<String>) -> Response {
        self.failure(status, &Failure::new(code, message))
    }
}

impl HttpState {
    async fn post(
        &self,
        signal: Signal,
        is_post: bool,
        parts: &Parts,
        body: Body,
        format: Option<Format>,
        reply: Reply,
    ) -> Response {
        if !is_post {
            let allow = if self.cors.is_some() { "POST, OPTIONS" } else { "POST" };
            let mut response = reply.fail(
                StatusCode::METHOD_NOT_ALLOWED,
                tonic::Code::Unimplemented,
                format!("method {} is not allowed: OTLP/HTTP uses POST", parts.method),
            );
            response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
            return response;
        }
        if let Some(auth) = &self.auth
            && !auth.check(&parts.headers)
        {
            tracing::debug!(component = %self.ingest.id, "http request without a valid bearer token");
            let mut response = reply.fail(
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
                "missing or invalid bearer token",
            );
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let Some(format) = format else {
            let got = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
            return reply.fail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                format!("unsupported Content-Type `{got}`: use {PROTOBUF} or {JSON}"),
            );
        };
        let encoding = match Encoding::of(&parts.headers) {
            Ok(e) => e,
            Err(got) => {
                return reply.fail(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    tonic::Code::InvalidArgument,
                    format!("unsupported Content-Encoding `{got}`: use gzip, deflate or none"),
                );
            }
        };
        let content_length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bytes = match read_body(body, encoding, self.max_body, content_length).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return reply.fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    tonic::Code::ResourceExhausted,
                    format!(
                        "the request body is larger than max_request_body_size ({} bytes)",
                        self.max_body
                    ),
                );
            }
            Err(BodyError::Corrupt(e)) => {
                let f = Failure::new(
                    tonic::Code::InvalidArgument,
                    format!("the body is not valid {encoding:?} data: {e}"),
                )
                .with_detail(Detail::BadRequest(e));
                return reply.failure(StatusCode::BAD_REQUEST, &f);
            }
            Err(BodyError::Read(e)) => {
                return reply.fail(
                    StatusCode::BAD_REQUEST,
                    tonic::Code::InvalidArgument,
                    format!("reading the body: {e}"),
                );
            }
        };
        match signal {
            Signal::Traces => self.export::<ExportTraceServiceRequest>(format, bytes).await,
            Signal::Metrics => self.export::<ExportMetricsServiceRequest>(format, bytes).await,
            Signal::Logs => self.export::<ExportLogsServiceRequest>(format, bytes).await,
            // No OTLP path maps to alerts.
            Signal::Alerts => Reply(format).fail(
                StatusCode::NOT_FOUND,
                tonic::Code::Unimplemented,
                "alerts are not an OTLP signal".to_string(),
            ),
        }
    }

    async fn export<R: ExportRequest>(&self, format: Format, bytes: Bytes) -> Response {
        let reply = Reply(format);
        let decoded = match format {
            Format::Protobuf => R::decode_proto(&bytes).map_err(|e| e.to_string()),
            Format::Json => serde_json::from_slice::<R>(&bytes).map_err(|e| e.to_string()),
        };
        let request = match decoded {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(component = %self.ingest.id, error = %e, "undecodable OTLP/HTTP request");
                let f = Failure::new(
                    tonic::Code::InvalidArgument,
                    format!("the body is not a valid {}: {e}", R::MESSAGE),
                )
                .with_detail(Detail::BadRequest(e));
                return reply.failure(StatusCode::BAD_REQUEST, &f);
            }
        };
        match self.ingest.export(request).await {
            Ok(rejection) => {
                let body = match format {
                    Format::Protobuf => prost::Message::encode_to_vec(&R::response(rejection.as_ref())),
                    Format::Json => response_json::<R>(rejection.as_ref()),
                };
                (StatusCode::OK, [(CONTENT_TYPE, format.content_type())], body).into_response()
            }
            Err(refusal @ Refusal::Unavailable) => {
                let mut response = reply.failure(StatusCode::SERVICE_UNAVAILABLE, &refusal.failure());
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_DELAY.as_secs().max(1)));
                response
            }
            Err(refusal @ Refusal::NoPipeline(_)) => reply.failure(StatusCode::NOT_FOUND, &refusal.failure()),
        }
    }
}

/// A request's `Content-Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

impl Encoding {
    /// The encoding, or the unsupported value.
    fn of(headers: &HeaderMap) -> Result<Encoding, String> {
        let Some(value) = headers.get(CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let text = value.to_str().map_err(|_| "<not text>".to_string())?.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("identity") {
            Ok(Encoding::Identity)
        } else if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
            Ok(Encoding::Gzip)
        } else if text.eq_ignore_ascii_case("deflate") {
            Ok(Encoding::Deflate)
        } else {
            Err(text.to_string())
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum BodyError {
    /// Over the limit, before or after decompression.
    TooLarge,
    /// The compressed stream is invalid.
    Corrupt(String),
    /// The client's body stream failed (disconnect, bad chunking).
    Read(String),
}

/// The next data chunk of `body` (trailers are skipped).
async fn next_chunk(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Err(e) => return Some(Err(e)),
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
        }
    }
}

/// Reads the whole body, decompressing on the way, never holding more than
/// `limit` bytes of either form.
async fn read_body(
    mut body: Body,
    encoding: Encoding,
    limit: usize,
    content_length: Option<u64>,
) -> Result<Bytes, BodyError> {
    if content_length.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let hint = content_length.map_or(0, |n| usize::try_from(n).unwrap_or(limit).min(limit));
    match encoding {
        Encoding::Identity => {
            let mut collected = Collected::default();
            while let Some(chunk) = next_chunk(&mut body).await {
                let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
                if collected.len + chunk.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                collected.push(chunk, hint);
            }
            Ok(collected.into_bytes())
        }
        Encoding::Gzip | Encoding::Deflate => {
            // Compressed sizes are usually a fraction of the inflated size.
            let out = LimitedVec {
                buf: Vec::with_capacity(hint.saturating_mul(4).min(limit)),
                limit,
                exceeded: false,
            };
            let mut decoder = Inflate::new(encoding, out);
            let mut compressed = 0usize;
            while let Some(chunk) = next_chunk(&mut body).await {
                let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
                compressed += chunk.len();
                if compressed > limit {
                    return Err(BodyError::TooLarge);
                }
                if let Err(e) = decoder.write_all(&chunk) {
                    return Err(decoder.error(e));
                }
            }
            decoder.finish().map(Bytes::from)
        }
    }
}

/// Body chunks, kept as the one `Bytes` they came in when there is only one.
#[derive(Default)]
struct Collected {
    single: Option<Bytes>,
    joined: Option<BytesMut>,
    len: usize,
}

impl Collected {
    fn push(&mut self, chunk: Bytes, hint: usize) {
        if chunk.is_empty() {
            return;
        }
        self.len += chunk.len();
        if let Some(joined) = &mut self.joined {
            joined.extend_from_slice(&chunk);
        } else if let Some(first) = self.single.take() {
            let mut joined = BytesMut::with_capacity(hint.max(self.len));
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&chunk);
            self.joined = Some(joined);
        } else {
            self.single = Some(chunk);
        }
    }

    fn into_bytes(self) -> Bytes {
        match (self.joined, self.single) {
            (Some(j), _) => j.freeze(),
            (None, Some(s)) => s,
            (None, None) => Bytes::new(),
        }
    }
}

/// A `Vec` that refuses to grow past `limit`.
struct LimitedVec {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl Write for LimitedVec {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("decompressed body exceeds the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A streaming decompressor writing into a [`LimitedVec`].
enum Inflate {
    Gzip(flate2::write::MultiGzDecoder<LimitedVec>),
    Deflate(flate2::write::ZlibDecoder<LimitedVec>),
}

impl Inflate {
    fn new(encoding: Encoding, out: LimitedVec) -> Inflate {
        match encoding {
            Encoding::Deflate => Inflate::Deflate(flate2::write::ZlibDecoder::new(out)),
            _ => Inflate::Gzip(flate2::write::MultiGzDecoder::new(out)),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Inflate::Gzip(d) => d.write_all(data),
            Inflate::Deflate(d) => d.write_all(data),
        }
    }

    fn exceeded(&self) -> bool {
        match self {
            Inflate::Gzip(d) => d.get_ref().exceeded,
            Inflate::Deflate(d) => d.get_ref().exceeded,
        }
    }

    fn error(&self, e: io::Error) -> BodyError {
        if self.exceeded() { BodyError::TooLarge } else { BodyError::Corrupt(e.to_string()) }
    }

    fn finish(self) -> Result<Vec<u8>, BodyError> {
        let exceeded = self.exceeded();
        let result = match self {
            Inflate::Gzip(d) => d.finish(),
            Inflate::Deflate(d) => d.finish(),
        };
        match result {
            Ok(out) if out.exceeded => Err(BodyError::TooLarge),
            Ok(out) => Ok(out.buf),
            Err(_) if exceeded => Err(BodyError::TooLarge),
            Err(e) => Err(BodyError::Corrupt(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    async fn read(chunks: Vec<Vec<u8>>, encoding: Encoding, limit: usize) -> Result<Bytes, BodyError> {
        let stream = chunks.into_iter().map(|c| Ok::<_, io::Error>(Bytes::from(c)));
        let body = Body::from_stream(tokio_stream_iter(stream));
        read_body(body, encoding, limit, None).await
    }

    /// A stream over an iterator, without pulling in a stream crate.
    fn tokio_stream_iter<I: Iterator + Unpin>(it: I) -> IterStream<I> {
        IterStream(it)
    }

    struct IterStream<I>(I);

    impl<I: Iterator + Unpin> tonic::codegen::tokio_stream::Stream for IterStream<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }

    #[tokio::test]
    async fn chunks_are_joined_and_a_single_chunk_is_not_copied() {
        assert_eq!(
            read(vec![b"ab".to_vec(), vec![], b"cd".to_vec()], Encoding::Identity, 10).await.unwrap(),
            "abcd"
        );
        let one = Bytes::from_static(b"hello");
        let body = Body::from(one.clone());
        let got = read_body(body, Encoding::Identity, 10, Some(5)).await.unwrap();
        assert_eq!(got.as_ptr(), one.as_ptr());
    }

    #[tokio::test]
    async fn limits_apply_before_and_after_decompression() {
        assert_eq!(
            read(vec![vec![0; 6], vec![0; 5]], Encoding::Identity, 10).await,
            Err(BodyError::TooLarge)
        );
        let body = Body::from(vec![0u8; 4]);
        assert_eq!(read_body(body, Encoding::Identity, 10, Some(11)).await, Err(BodyError::TooLarge));
        let bomb = gzip(&vec![0; 1 << 20]);
        assert!(bomb.len() < 2048);
        assert_eq!(read(vec![bomb.clone()], Encoding::Gzip, 4096).await, Err(BodyError::TooLarge));
        assert_eq!(read(vec![bomb], Encoding::Gzip, 1 << 20).await.map(|b| b.len()), Ok(1 << 20));
    }

    #[tokio::test]
    async fn corrupt_and_truncated_gzip_are_bad_requests() {
        assert!(matches!(
            read(vec![b"not gzip".to_vec()], Encoding::Gzip, 100).await,
            Err(BodyError::Corrupt(_))
        ));
        let mut z = gzip(b"hello world");
        z.truncate(z.len() - 3);
        assert!(matches!(read(vec![z], Encoding::Gzip, 100).await, Err(BodyError::Corrupt(_))));
        let two = [gzip(b"ab"), gzip(b"cd")].concat();
        assert_eq!(read(vec![two], Encoding::Gzip, 100).await.unwrap(), "abcd");
    }

    #[test]
    fn content_types_and_encodings_are_recognized() {
        let mut h = HeaderMap::new();
        assert_eq!(Format::of(&h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("Application/JSON; charset=utf-8"));
        assert_eq!(Format::of(&h), Some(Format::Json));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        assert_eq!(Format::of(&h), Some(Format::Protobuf));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(Format::of(&h), None);
        assert_eq!(Encoding::of(&h), Ok(Encoding::Identity));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert_eq!(Encoding::of(&h), Ok(Encoding::Gzip));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(Encoding::of(&h), Err("br".to_string()));
    }
}
