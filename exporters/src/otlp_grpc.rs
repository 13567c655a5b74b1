//! `otlp_grpc`: sends batches to any OTLP/gRPC endpoint — another Magpie, an
//! OpenTelemetry Collector, Jaeger, Tempo. Retries exactly as the OTLP
//! specification says: the codes CANCELLED, DEADLINE_EXCEEDED, ABORTED,
//! OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable, RESOURCE_EXHAUSTED
//! only when the server sent a `RetryInfo` (whose delay is honoured); every
//! other code is permanent. A partial success is never retried.

use crate::otlp_common::{
    ClientTls, Compression, Headers, PartialSuccess, default_timeout, partial_success, read_pem,
};
use magpie_core::config::duration;
use magpie_core::proto::collector::logs::v1::ExportLogsServiceRequest;
use magpie_core::proto::collector::logs::v1::logs_service_client::LogsServiceClient;
use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use magpie_core::proto::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use magpie_core::{Batch, ComponentError, ComponentId, ExportError, Exporter, ExporterContext};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Config of `otlp_grpc`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    /// `host:port` (plain), `http://host:port` or `https://host:port` (TLS).
    pub endpoint: String,
    #[serde(default)]
    pub headers: Headers,
    /// Deadline of one export call.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

impl OtlpGrpcConfig {
    /// The endpoint as a URI with a scheme.
    pub fn uri(&self) -> String {
        if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else if self.tls.is_some() {
            format!("https://{}", self.endpoint)
        } else {
            format!("http://{}", self.endpoint)
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = Endpoint::from_shared(self.uri()) {
            out.push(format!("invalid endpoint `{}`: {e}", self.endpoint));
        }
        for k in self.headers.keys() {
            if MetadataKey::<tonic::metadata::Ascii>::from_bytes(k.to_ascii_lowercase().as_bytes()).is_err() {
                out.push(format!("header name `{k}` is not a valid gRPC metadata key"));
            }
        }
        if let Some(t) = &self.tls {
            out.extend(t.problems());
        }
        out
    }
}

pub struct OtlpGrpcExporter {
    id: ComponentId,
    config: OtlpGrpcConfig,
    channel: Option<Channel>,
    metadata: MetadataMap,
}

impl OtlpGrpcExporter {
    pub fn new(id: &ComponentId, config: &OtlpGrpcConfig) -> Self {
        OtlpGrpcExporter {
            id: id.clone(),
            config: config.clone(),
            channel: None,
            metadata: MetadataMap::new(),
        }
    }

    fn endpoint(&self) -> Result<Endpoint, String> {
        let uri = self.config.uri();
        let mut ep = Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("invalid endpoint {uri}: {e}"))?
            .timeout(self.config.timeout)
            .connect_timeout(self.config.timeout)
            .tcp_nodelay(true);
        if uri.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(t) = &self.config.tls {
                if let Some(ca) = &t.ca_file {
                    tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca)?));
                }
                if let (Some(c), Some(k)) = (&t.cert_file, &t.key_file) {
                    tls = tls.identity(Identity::from_pem(read_pem(c)?, read_pem(k)?));
                }
                if let Some(name) = &t.server_name {
                    tls = tls.domain_name(name.clone());
                }
            }
            ep = ep.tls_config(tls).map_err(|e| format!("tls settings: {e}"))?;
        }
        Ok(ep)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        *req.metadata_mut() = self.metadata.clone();
        req
    }

    async fn send(&self, channel: Channel, batch: &Batch) -> Result<(i64, String), tonic::Status> {
        let gzip = self.config.compression == Compression::Gzip;
        macro_rules! call {
            ($client:ident, $req:expr) => {{
                let mut client = $client::new(channel).max_decoding_message_size(64 * 1024 * 1024);
                if gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                client.export(self.request($req)).await.map(|r| r.into_inner().rejected())
            }};
        }
        match batch {
            Batch::Traces(rs) => {
                call!(TraceServiceClient, ExportTraceServiceRequest { resource_spans: rs.clone() })
            }
            Batch::Metrics(rm) => {
                call!(MetricsServiceClient, ExportMetricsServiceRequest { resource_metrics: rm.clone() })
            }
            Batch::Logs(rl) => {
                call!(LogsServiceClient, ExportLogsServiceRequest { resource_logs: rl.clone() })
            }
            Batch::Alerts(_) => Err(tonic::Status::invalid_argument("alerts are not an OTLP signal")),
        }
    }
}

#[async_trait::async_trait]
impl Exporter for OtlpGrpcExporter {
    async fn start(&mut self, _ctx: &ExporterContext) -> Result<(), ComponentError> {
        for (k, v) in &self.config.headers {
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|e| ComponentError::new(format!("header name `{k}`: {e}")))?;
            let value = MetadataValue::try_from(v.expose().as_str()).map_err(|_| {
                ComponentError::new(format!("header `{k}` has a value that is not valid ASCII"))
            })?;
            self.metadata.insert(key, value);
        }
        // Connect lazily: a gateway that is down at start-up is retried like any outage.
        self.channel = Some(self.endpoint().map_err(ComponentError::new)?.connect_lazy());
        Ok(())
    }

    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError> {
        let Some(channel) = self.channel.clone() else {
            return Err(ExportError::permanent("exporter used before start"));
        };
        match self.send(channel, &batch).await {
            Ok((rejected, message)) => partial_success(rejected, &message),
            Err(status) => {
                tracing::debug!(component = %self.id, code = ?status.code(), message = status.message(), "otlp_grpc export failed");
                Err(classify(&status))
            }
        }
    }
}

/// The OTLP specification's retry table for gRPC status codes.
pub fn classify(status: &tonic::Status) -> ExportError {
    let message = format!("{:?}: {}", status.code(), status.message());
    let retry_after = prost::Message::decode(status.details())
        .ok()
        .and_then(|s: magpie_core::rpc::Status| magpie_core::rpc::retry_delay(&s));
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable { message, retry_after },
        Code::ResourceExhausted if retry_after.is_some() => ExportError::Retryable { message, retry_after },
        _ => ExportError::Permanent { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::rpc;

    fn status_with_retry(code: Code, delay: Option<Duration>) -> tonic::Status {
        let details = rpc::Status {
            code: code as i32,
            message: "x".into(),
            details: delay.map(rpc::retry_info).into_iter().collect(),
        };
        tonic::Status::with_details(code, "x", prost::Message::encode_to_vec(&details).into())
    }

    #[test]
    fn retry_table_follows_the_spec() {
        let retryable = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        let permanent = [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::Unauthenticated,
            Code::ResourceExhausted,
        ];
        for c in retryable {
            assert!(
                matches!(
                    classify(&tonic::Status::new(c, "x")),
                    ExportError::Retryable { retry_after: None, .. }
                ),
                "{c:?}"
            );
        }
        for c in permanent {
            assert!(matches!(classify(&tonic::Status::new(c, "x")), ExportError::Permanent { .. }), "{c:?}");
        }
        let with_info = classify(&status_with_retry(Code::ResourceExhausted, Some(Duration::from_secs(2))));
        assert!(
            matches!(with_info, ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(2))
        );
        let unavailable = classify(&status_with_retry(Code::Unavailable, Some(Duration::from_millis(300))));
        assert!(
            matches!(unavailable, ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_millis(300))
        );
    }

    #[test]
    fn endpoints_get_a_scheme() {
        let c = |endpoint: &str, tls: bool| OtlpGrpcConfig {
            endpoint: endpoint.into(),
            headers: Headers::new(),
            timeout: default_timeout(),
            compression: Compression::Gzip,
            tls: tls.then(ClientTls::default),
        };
        assert_eq!(c("gw:4317", false).uri(), "http://gw:4317");
        assert_eq!(c("gw:4317", true).uri(), "https://gw:4317");
        assert_eq!(c("https://gw", false).uri(), "https://gw");
        assert!(c("not a uri", false).problems().iter().any(|p| p.contains("invalid endpoint")));
    }
}
