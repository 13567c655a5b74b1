//! Settings and helpers shared by the `otlp_grpc` and `otlp_http` exporters:
//! headers (API keys, usually from the environment), client TLS, compression,
//! and reading the partial-success part of an OTLP response.

use magpie_core::config::Secret;
use magpie_core::proto::collector::logs::v1::ExportLogsServiceResponse;
use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceResponse;
use magpie_core::proto::collector::trace::v1::ExportTraceServiceResponse;
use magpie_core::{Batch, ExportError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Request compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

/// Client TLS. An `https://` endpoint uses TLS with the system's roots even
/// without this section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTls {
    /// PEM file of the CA(s) that sign the server's certificate (added to the system roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to verify the server's certificate against, when it differs from the endpoint's host.
    pub server_name: Option<String>,
}

impl ClientTls {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cert_file.is_some() != self.key_file.is_some() {
            out.push("tls.cert_file and tls.key_file go together".to_string());
        }
        for (name, f) in
            [("ca_file", &self.ca_file), ("cert_file", &self.cert_file), ("key_file", &self.key_file)]
        {
            if let Some(p) = f
                && !p.exists()
            {
                out.push(format!("tls.{name} {} does not exist", p.display()));
            }
        }
        out
    }
}

/// Headers sent with every request; values are secrets (API keys).
pub type Headers = BTreeMap<String, Secret<String>>;

pub fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The `partial_success` of a response, as an error when items were rejected.
pub fn partial_success(rejected: i64, message: &str) -> Result<(), ExportError> {
    if rejected > 0 {
        return Err(ExportError::Partial { rejected: rejected.unsigned_abs(), message: message.to_string() });
    }
    if !message.is_empty() {
        tracing::warn!(message, "destination accepted everything with a warning");
    }
    Ok(())
}

/// The rejected count and message of a decoded response of `batch`'s signal.
pub trait PartialSuccess {
    fn rejected(&self) -> (i64, String);
}

impl PartialSuccess for ExportTraceServiceResponse {
    fn rejected(&self) -> (i64, String) {
        self.partial_success
            .as_ref()
            .map_or((0, String::new()), |p| (p.rejected_spans, p.error_message.clone()))
    }
}

impl PartialSuccess for ExportMetricsServiceResponse {
    fn rejected(&self) -> (i64, String) {
        self.partial_success
            .as_ref()
            .map_or((0, String::new()), |p| (p.rejected_data_points, p.error_message.clone()))
    }
}

impl PartialSuccess for ExportLogsServiceResponse {
    fn rejected(&self) -> (i64, String) {
        self.partial_success
            .as_ref()
            .map_or((0, String::new()), |p| (p.rejected_log_records, p.error_message.clone()))
    }
}

/// The signal's name as used in URL paths and messages.
pub fn signal_path(batch: &Batch) -> &'static str {
    match batch {
        Batch::Traces(_) => "/v1/traces",
        Batch::Metrics(_) => "/v1/metrics",
        Batch::Logs(_) => "/v1/logs",
        // Not an OTLP signal: no path (the OTLP exporters refuse alerts first).
        Batch::Alerts(_) => "",
    }
}

/// An HTTP client with `headers` (marked sensitive), `timeout` and client
/// TLS, on rustls with the ring provider: what every HTTP exporter uses.
pub fn http_client(
    headers: &Headers,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<reqwest::Client, String> {
    // The process-wide TLS provider is ring; installing it is a no-op when the binary already did.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| format!("header name `{k}`: {e}"))?;
        let mut value = reqwest::header::HeaderValue::from_str(v.expose())
            .map_err(|_| format!("header `{k}` has a value that is not valid in HTTP"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    let mut b = reqwest::Client::builder().timeout(timeout).default_headers(map);
    if let Some(t) = tls {
        if let Some(ca) = &t.ca_file {
            for cert in reqwest::Certificate::from_pem_bundle(&read_pem(ca)?)
                .map_err(|e| format!("tls.ca_file: {e}"))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let (Some(c), Some(k)) = (&t.cert_file, &t.key_file) {
            let mut pem = read_pem(c)?;
            pem.extend(read_pem(k)?);
            b = b.identity(
                reqwest::Identity::from_pem(&pem).map_err(|e| format!("tls client identity: {e}"))?,
            );
        }
    }
    b.build().map_err(|e| format!("building the http client: {e}"))
}

/// Reads a PEM file for TLS settings.
pub fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The partial success of an OTLP/JSON response. Read by hand because the
/// protobuf JSON mapping writes int64 counts as strings, which the generated
/// serde types do not accept; numbers are accepted too.
pub fn json_partial_success(body: &[u8]) -> (i64, String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return (0, String::new()) };
    let Some(p) = v.get("partialSuccess").or_else(|| v.get("partial_success")) else {
        return (0, String::new());
    };
    let rejected = [
        "rejectedSpans",
        "rejectedDataPoints",
        "rejectedLogRecords",
        "rejected_spans",
        "rejected_data_points",
        "rejected_log_records",
    ]
    .iter()
    .find_map(|k| p.get(*k))
    .and_then(|n| n.as_i64().or_else(|| n.as_str().and_then(|s| s.parse().ok())))
    .unwrap_or(0);
    let message =
        p.get("errorMessage").or_else(|| p.get("error_message")).and_then(|m| m.as_str()).unwrap_or_default();
    (rejected, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_partial_success_takes_strings_and_numbers() {
        assert_eq!(
            json_partial_success(br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"x"}}"#),
            (3, "x".into())
        );
        assert_eq!(
            json_partial_success(br#"{"partialSuccess":{"rejectedLogRecords":2}}"#),
            (2, String::new())
        );
        assert_eq!(json_partial_success(br#"{}"#), (0, String::new()));
        assert_eq!(json_partial_success(b"not json"), (0, String::new()));
    }
}
