//! `otlp_http`: sends batches to any OTLP/HTTP endpoint, as protobuf or
//! JSON. Retries exactly as the OTLP specification says: only 429, 502, 503
//! and 504 are retryable, honouring `Retry-After` (seconds or an HTTP date);
//! connection errors and timeouts are retryable too; every other status is
//! permanent. A partial success is never retried.

use crate::otlp_common::{
    ClientTls, Compression, Headers, PartialSuccess, default_timeout, http_client, json_partial_success,
    partial_success, signal_path,
};
use bytes::Bytes;
use flate2::Compression as Level;
use flate2::write::GzEncoder;
use magpie_core::config::duration;
use magpie_core::proto::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use magpie_core::proto::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use magpie_core::proto::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use magpie_core::{Batch, ComponentError, ComponentId, ExportError, Exporter, ExporterContext};
use prost::Message;
use serde::Deserialize;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Body encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

/// Config of `otlp_http`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    /// Base URL; `/v1/traces`, `/v1/metrics` and `/v1/logs` are appended.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URLs per signal, overriding `endpoint` (no path is appended).
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

impl OtlpHttpConfig {
    /// The URL batches of `batch`'s signal go to.
    pub fn url_for(&self, batch: &Batch) -> Option<String> {
        let specific = match batch {
            Batch::Traces(_) => &self.traces_endpoint,
            Batch::Metrics(_) => &self.metrics_endpoint,
            Batch::Logs(_) => &self.logs_endpoint,
            Batch::Alerts(_) => return None,
        };
        specific.clone().or_else(|| {
            self.endpoint.as_ref().map(|e| format!("{}{}", e.trim_end_matches('/'), signal_path(batch)))
        })
    }

    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let all = [&self.endpoint, &self.traces_endpoint, &self.metrics_endpoint, &self.logs_endpoint];
        if all.iter().all(|e| e.is_none()) {
            out.push("set `endpoint` (or traces_endpoint, metrics_endpoint, logs_endpoint)".to_string());
        }
        for e in all.into_iter().flatten() {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                out.push(format!("endpoint `{e}` must start with http:// or https://"));
            }
        }
        if let Some(t) = &self.tls {
            out.extend(t.problems());
        }
        out
    }
}

pub struct OtlpHttpExporter {
    id: ComponentId,
    config: OtlpHttpConfig,
    client: Option<reqwest::Client>,
}

impl OtlpHttpExporter {
    pub fn new(id: &ComponentId, config: &OtlpHttpConfig) -> Self {
        OtlpHttpExporter { id: id.clone(), config: config.clone(), client: None }
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        http_client(&self.config.headers, self.config.timeout, self.config.tls.as_ref())
    }

    fn body(&self, batch: &Batch) -> Result<Vec<u8>, ExportError> {
        let raw = match (self.config.encoding, batch) {
            (Encoding::Proto, Batch::Traces(rs)) => {
                ExportTraceServiceRequest { resource_spans: rs.clone() }.encode_to_vec()
            }
            (Encoding::Proto, Batch::Metrics(rm)) => {
                ExportMetricsServiceRequest { resource_metrics: rm.clone() }.encode_to_vec()
            }
            (Encoding::Proto, Batch::Logs(rl)) => {
                ExportLogsServiceRequest { resource_logs: rl.clone() }.encode_to_vec()
            }
            (_, Batch::Alerts(_)) => return Err(ExportError::permanent("alerts are not an OTLP signal")),
            (Encoding::Json, b) => crate::file::to_otlp_json(b).into_bytes(),
        };
        match self.config.compression {
            Compression::None => Ok(raw),
            Compression::Gzip => {
                let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 4), Level::fast());
                enc.write_all(&raw)
                    .and_then(|()| enc.finish())
                    .map_err(|e| ExportError::permanent(format!("compressing the request: {e}")))
            }
        }
    }

    fn parse_response(&self, batch: &Batch, body: &Bytes) -> (i64, String) {
        fn decode<T: Message + Default + PartialSuccess>(b: &Bytes) -> (i64, String) {
            T::decode(b.as_ref()).map_or((0, String::new()), |r| r.rejected())
        }
        if body.is_empty() {
            return (0, String::new());
        }
        match (self.config.encoding, batch) {
            (Encoding::Json, _) => json_partial_success(body),
            (Encoding::Proto, Batch::Traces(_)) => decode::<ExportTraceServiceResponse>(body),
            (Encoding::Proto, Batch::Metrics(_)) => decode::<ExportMetricsServiceResponse>(body),
            (Encoding::Proto, Batch::Logs(_)) => decode::<ExportLogsServiceResponse>(body),
            (Encoding::Proto, Batch::Alerts(_)) => (0, String::new()),
        }
    }
}

#[async_trait::async_trait]
impl Exporter for OtlpHttpExporter {
    async fn start(&mut self, _ctx: &ExporterContext) -> Result<(), ComponentError> {
        self.client = Some(self.client().map_err(ComponentError::new)?);
        Ok(())
    }

    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError> {
        let Some(client) = self.client.clone() else {
            return Err(ExportError::permanent("exporter used before start"));
        };
        let Some(url) = self.config.url_for(&batch) else {
            return Err(ExportError::permanent(format!("no endpoint configured for {}", batch.signal())));
        };
        let body = self.body(&batch)?;
        let mut req = client.post(&url).header(
            reqwest::header::CONTENT_TYPE,
            match self.config.encoding {
                Encoding::Proto => "application/x-protobuf",
                Encoding::Json => "application/json",
            },
        );
        if self.config.compression == Compression::Gzip {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return Err(ExportError::retryable(format!("sending to {url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            let (rejected, message) = self.parse_response(&batch, &body);
            return partial_success(rejected, &message);
        }
        let detail = error_detail(&body);
        tracing::debug!(component = %self.id, status, detail, "otlp_http export failed");
        Err(classify(
            status,
            retry_after.as_deref(),
            SystemTime::now(),
            &format!("{url} answered {status}: {detail}"),
        ))
    }
}

/// The OTLP specification's retry table for HTTP status codes.
pub fn classify(status: u16, retry_after: Option<&str>, now: SystemTime, message: &str) -> ExportError {
    match status {
        429 | 502 | 503 | 504 => ExportError::Retryable {
            message: message.to_string(),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => ExportError::Permanent { message: message.to_string() },
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The message of a `google.rpc.Status` error body, or the body's start.
fn error_detail(body: &Bytes) -> String {
    if let Ok(s) = magpie_core::rpc::Status::decode(body.as_ref())
        && !s.message.is_empty()
    {
        return s.message;
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("message").and_then(|m| m.as_str())
    {
        return m.to_string();
    }
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_table_follows_the_spec() {
        let now = SystemTime::now();
        for s in [429, 502, 503, 504] {
            assert!(matches!(classify(s, None, now, "m"), ExportError::Retryable { .. }), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 413, 415, 500, 501] {
            assert!(matches!(classify(s, Some("5"), now, "m"), ExportError::Permanent { .. }), "{s}");
        }
        assert!(matches!(
            classify(503, Some("7"), now, "m"),
            ExportError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn urls_per_signal() {
        let c = OtlpHttpConfig {
            endpoint: Some("http://gw:4318/".into()),
            traces_endpoint: None,
            metrics_endpoint: Some("http://m/custom".into()),
            logs_endpoint: None,
            headers: Headers::new(),
            timeout: default_timeout(),
            compression: Compression::None,
            encoding: Encoding::Proto,
            tls: None,
        };
        assert_eq!(
            c.url_for(&Batch::empty(magpie_core::Signal::Traces)).as_deref(),
            Some("http://gw:4318/v1/traces")
        );
        assert_eq!(
            c.url_for(&Batch::empty(magpie_core::Signal::Metrics)).as_deref(),
            Some("http://m/custom")
        );
        assert!(c.problems().is_empty());
    }
}
