//! OTLP/gRPC: the `TraceService`, `MetricsService` and `LogsService`
//! `Export` methods, decoded with prost through tonic's unary machinery
//! (gzip requests, message-size limit).
//!
//! The dispatch is written out here rather than taken from the generated
//! `*_service_server` modules, because those fix tonic's prost codec, which
//! reports undecodable messages as `INTERNAL`; OTLP asks for
//! `INVALID_ARGUMENT` (not retryable) for bad data, so this module has its
//! own codec. It also reports an oversized message as `RESOURCE_EXHAUSTED`
//! (tonic says `OUT_OF_RANGE`, which OTLP clients would retry). Methods of
//! signals no pipeline reads answer `UNIMPLEMENTED`.
//!
//! Depends on [`super::ingest`] for what happens to a request; it must not
//! depend on the OTLP/HTTP handler.

use super::auth::BearerAuth;
use super::ingest::{ExportRequest, Ingest};
use super::status::{Detail, Failure};
use axum::body::HttpBody;
use axum::http;
use bytes::Bytes;
use magpie_core::Signal;
use magpie_core::proto::collector::logs::v1::ExportLogsServiceRequest;
use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The gRPC side of the receiver.
#[derive(Clone)]
pub struct GrpcService {
    inner: Arc<Inner>,
}

struct Inner {
    ingest: Arc<Ingest>,
    auth: Option<BearerAuth>,
    max_message_bytes: usize,
    max_message_mib: u32,
}

impl GrpcService {
    pub fn new(ingest: Arc<Ingest>, auth: Option<BearerAuth>, max_recv_msg_size_mib: u32) -> Self {
        let max_message_bytes =
            usize::try_from(max_recv_msg_size_mib).unwrap_or(usize::MAX).saturating_mul(1024 * 1024);
        GrpcService {
            inner: Arc::new(Inner {
                ingest,
                auth,
                max_message_bytes,
                max_message_mib: max_recv_msg_size_mib,
            }),
        }
    }

    /// The service as a router the shared server can run.
    pub fn into_router(self) -> axum::Router {
        axum::Router::new().fallback_service(self)
    }
}

impl<B> Service<http::Request<B>> for GrpcService
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.handle(req).await) })
    }
}

impl Inner {
    async fn handle<B>(self: Arc<Self>, req: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        let signal = match req.uri().path() {
            ExportTraceServiceRequest::GRPC_PATH => Signal::Traces,
            ExportMetricsServiceRequest::GRPC_PATH => Signal::Metrics,
            ExportLogsServiceRequest::GRPC_PATH => Signal::Logs,
            other => {
                return tonic::Status::unimplemented(format!("unknown method {other}")).into_http();
            }
        };
        if !self.ingest.wants(signal) {
            return tonic::Status::unimplemented(format!("this receiver has no {signal} pipeline"))
                .into_http();
        }
        if let Some(auth) = &self.auth
            && !auth.check(req.headers())
        {
            tracing::debug!(component = %self.ingest.id, "grpc request without a valid bearer token");
            return tonic::Status::unauthenticated("missing or invalid bearer token").into_http();
        }
        let response = match signal {
            Signal::Traces => self.clone().unary::<ExportTraceServiceRequest, B>(req).await,
            Signal::Metrics => self.clone().unary::<ExportMetricsServiceRequest, B>(req).await,
            Signal::Logs => self.clone().unary::<ExportLogsServiceRequest, B>(req).await,
            // No OTLP path maps to alerts.
            Signal::Alerts => {
                return tonic::Status::unimplemented("alerts are not an OTLP signal").into_http();
            }
        };
        self.fix_size_status(response)
    }

    async fn unary<R, B>(self: Arc<Self>, req: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        R: ExportRequest,
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        let max = self.max_message_bytes;
        let mut grpc = tonic::server::Grpc::new(OtlpCodec::<R>(PhantomData))
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max);
        grpc.unary(Export::<R>(self, PhantomData), req).await
    }

    /// tonic refuses a message whose length prefix exceeds the limit with
    /// `OUT_OF_RANGE`, which the OTLP retry table marks retryable; an
    /// oversized message is permanent, so say `RESOURCE_EXHAUSTED` as gRPC
    /// servers usually do (and as tonic itself does for compressed ones).
    fn fix_size_status(
        &self,
        response: http::Response<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
        match response.headers().get(tonic::Status::GRPC_STATUS) {
            Some(v) if v.as_bytes() == out_of_range.as_bytes() => tonic::Status::resource_exhausted(format!(
                "the request message is larger than max_recv_msg_size_mib ({} MiB)",
                self.max_message_mib
            ))
            .into_http(),
            _ => response,
        }
    }
}

/// The unary `Export` method of one signal.
struct Export<R>(Arc<Inner>, PhantomData<fn() -> R>);

impl<R: ExportRequest> tonic::server::UnaryService<R> for Export<R> {
    type Response = R::Response;
    type Future = BoxFuture<Result<tonic::Response<R::Response>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<R>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            match inner.ingest.export(request.into_inner()).await {
                Ok(rejection) => Ok(tonic::Response::new(R::response(rejection.as_ref()))),
                Err(refusal) => Err(refusal.failure().to_tonic()),
            }
        })
    }
}

/// A prost codec that reports undecodable requests as `INVALID_ARGUMENT`.
struct OtlpCodec<R>(PhantomData<fn() -> R>);

impl<R: ExportRequest> Codec for OtlpCodec<R> {
    type Encode = R::Response;
    type Decode = R;
    type Encoder = ResponseEncoder<R::Response>;
    type Decoder = RequestDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(PhantomData)
    }
}

struct ResponseEncoder<T>(PhantomData<fn(T)>);

impl<T: prost::Message> Encoder for ResponseEncoder<T> {
    type Item = T;
    type Error = tonic::Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(buf).map_err(|e| tonic::Status::internal(format!("encoding the response: {e}")))
    }
}

struct RequestDecoder<R>(PhantomData<fn() -> R>);

impl<R: ExportRequest> Decoder for RequestDecoder<R> {
    type Item = R;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<R>, tonic::Status> {
        // The message is contiguous in tonic's buffer: take it as `Bytes`
        // (no copy) and decode from the slice, which is cheaper for prost
        // than advancing tonic's buffer field by field.
        let message = bytes::Buf::copy_to_bytes(buf, bytes::Buf::remaining(buf));
        match R::decode_proto(&message) {
            Ok(request) => Ok(Some(request)),
            Err(e) => {
                let description = e.to_string();
                Err(Failure::new(
                    tonic::Code::InvalidArgument,
                    format!("the request is not a valid {}: {description}", R::MESSAGE),
                )
                .with_detail(Detail::BadRequest(description))
                .to_tonic())
            }
        }
    }
}
