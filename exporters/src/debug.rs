//! `debug`: prints what reaches it to stderr, for a first look at what an app
//! sends. `basic` prints counts per batch, `normal` one line per span, data
//! point or log record, `detailed` every field as OTLP/JSON.

use crate::file::to_otlp_json;
use magpie_core::otlp::{any_value_to_string, hex, service_name};
use magpie_core::proto::metrics::v1::{metric::Data, number_data_point};
use magpie_core::{Batch, ComponentId, ExportError, Exporter};
use serde::Deserialize;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;

/// How much `debug` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    /// One line per batch with its counts.
    #[default]
    Basic,
    /// One line per item.
    Normal,
    /// Every field, as OTLP/JSON.
    Detailed,
}

/// Config of `debug`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    pub verbosity: Verbosity,
}

pub struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    out: Box<dyn Write + Send>,
}

impl DebugExporter {
    pub fn new(id: &ComponentId, config: &DebugConfig) -> Self {
        Self::with_writer(id, config, Box::new(std::io::stderr()))
    }

    /// Writes to `out` instead of stderr (tests).
    pub fn with_writer(id: &ComponentId, config: &DebugConfig, out: Box<dyn Write + Send>) -> Self {
        DebugExporter { id: id.to_string(), verbosity: config.verbosity, out }
    }
}

#[async_trait::async_trait]
impl Exporter for DebugExporter {
    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError> {
        let text = render(&self.id, self.verbosity, &batch);
        // Stderr writes are small and unbuffered; a failure here is not worth retrying.
        if let Err(e) = self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush()) {
            return Err(ExportError::permanent(format!("writing to stderr: {e}")));
        }
        Ok(())
    }
}

/// The text `debug` prints for one batch.
pub fn render(id: &str, verbosity: Verbosity, batch: &Batch) -> String {
    let mut s = String::new();
    let (resources, what) = match batch {
        Batch::Traces(r) => (r.len(), "spans"),
        Batch::Metrics(r) => (r.len(), "data points"),
        Batch::Logs(r) => (r.len(), "log records"),
        Batch::Alerts(_) => (0, "alerts"),
    };
    let _ = if let Batch::Alerts(a) = batch {
        writeln!(s, "{id}: alerts batch: {} {what}", a.len())
    } else {
        writeln!(s, "{id}: {} batch: {resources} resources, {} {what}", batch.signal(), batch.item_count())
    };
    match verbosity {
        Verbosity::Basic => {}
        Verbosity::Detailed => {
            s.push_str(&to_otlp_json(batch));
            s.push('\n');
        }
        Verbosity::Normal => match batch {
            Batch::Traces(rs) => magpie_core::otlp::for_each_span(rs, |res, span| {
                let status = span.status.as_ref().map_or(0, |st| st.code);
                let ms = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e6;
                let _ = writeln!(
                    s,
                    "  span {} {} {:?} service={} kind={} status={} duration={ms:.3}ms",
                    hex(&span.trace_id),
                    hex(&span.span_id),
                    span.name,
                    service_name(res).unwrap_or_default(),
                    span.kind,
                    status,
                );
            }),
            Batch::Metrics(rm) => {
                for r in rm {
                    for sm in &r.scope_metrics {
                        for m in &sm.metrics {
                            for line in metric_lines(m) {
                                let _ = writeln!(s, "  metric {} {line}", m.name);
                            }
                        }
                    }
                }
            }
            Batch::Alerts(alerts) => {
                for a in alerts {
                    let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                    let _ = writeln!(
                        s,
                        "  alert {} {} value={} fingerprint={} {{{}}}",
                        a.rule,
                        a.status.as_str(),
                        a.value,
                        a.fingerprint,
                        labels.join(", ")
                    );
                }
            }
            Batch::Logs(rl) => {
                for r in rl {
                    for sl in &r.scope_logs {
                        for l in &sl.log_records {
                            let body =
                                l.body.as_ref().and_then(|b| b.value.as_ref()).map(any_value_to_string);
                            let _ = writeln!(
                                s,
                                "  log {} {:?} trace={}",
                                if l.severity_text.is_empty() {
                                    l.severity_number.to_string()
                                } else {
                                    l.severity_text.clone()
                                },
                                body.unwrap_or_default(),
                                hex(&l.trace_id),
                            );
                        }
                    }
                }
            }
        },
    }
    s
}

fn metric_lines(m: &magpie_core::proto::metrics::v1::Metric) -> Vec<String> {
    let attrs =
        |a: &[magpie_core::proto::common::v1::KeyValue]| magpie_core::otlp::attributes_to_json(a).to_string();
    let number = |v: Option<&number_data_point::Value>| match v {
        Some(number_data_point::Value::AsDouble(d)) => d.to_string(),
        Some(number_data_point::Value::AsInt(i)) => i.to_string(),
        None => "none".to_string(),
    };
    match m.data.as_ref() {
        None => vec!["(no data)".to_string()],
        Some(Data::Gauge(g)) => g
            .data_points
            .iter()
            .map(|p| format!("gauge {} {}", number(p.value.as_ref()), attrs(&p.attributes)))
            .collect(),
        Some(Data::Sum(x)) => x
            .data_points
            .iter()
            .map(|p| format!("sum {} {}", number(p.value.as_ref()), attrs(&p.attributes)))
            .collect(),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter()
            .map(|p| {
                format!("histogram count={} sum={} {}", p.count, p.sum.unwrap_or(0.0), attrs(&p.attributes))
            })
            .collect(),
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .iter()
            .map(|p| {
                format!(
                    "exponential_histogram count={} sum={} {}",
                    p.count,
                    p.sum.unwrap_or(0.0),
                    attrs(&p.attributes)
                )
            })
            .collect(),
        Some(Data::Summary(x)) => x
            .data_points
            .iter()
            .map(|p| format!("summary count={} sum={} {}", p.count, p.sum, attrs(&p.attributes)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magpie_core::otlp::testdata;

    fn check(verbosity: Verbosity, batch: Batch, expect: &[&str]) {
        let text = render("debug/x", verbosity, &batch);
        for e in expect {
            assert!(text.contains(e), "`{text}` lacks `{e}`");
        }
    }

    #[test]
    fn verbosities() {
        check(
            Verbosity::Basic,
            Batch::Traces(testdata::spans(2, 3)),
            &["debug/x: traces batch: 2 resources, 6 spans"],
        );
        check(
            Verbosity::Normal,
            Batch::Traces(testdata::spans(1, 1)),
            &[
                "span abababababababab0000000000000000 0000000000000000 \"GET /items/0\" service=svc-0 kind=2 status=1 duration=2.500ms",
            ],
        );
        check(Verbosity::Normal, Batch::Metrics(testdata::gauges(1, 2)), &["metric test.gauge.1 gauge 1 {}"]);
        check(Verbosity::Normal, Batch::Logs(testdata::logs(1, 1)), &["log INFO \"log 0\""]);
        check(
            Verbosity::Detailed,
            Batch::Logs(testdata::logs(1, 1)),
            &["\"resourceLogs\"", "\"severityText\":\"INFO\""],
        );
    }

    #[test]
    fn alerts_print_one_line_each() {
        let labels: std::collections::BTreeMap<String, String> =
            [("alertname".to_string(), "DeepQueue".to_string())].into();
        let alert = magpie_core::alert::Alert {
            rule: "DeepQueue".into(),
            status: magpie_core::alert::AlertStatus::Firing,
            fingerprint: magpie_core::alert::fingerprint(&labels),
            labels,
            annotations: Default::default(),
            value: 42.0,
            starts_at: std::time::UNIX_EPOCH,
            ends_at: None,
            generator: "alerts".into(),
        };
        let batch = || Batch::Alerts(vec![alert.clone()]);
        check(Verbosity::Basic, batch(), &["debug/x: alerts batch: 1 alerts"]);
        check(
            Verbosity::Normal,
            batch(),
            &["alert DeepQueue firing value=42 fingerprint=", "{alertname=\"DeepQueue\"}"],
        );
        check(Verbosity::Detailed, batch(), &["\"status\":\"firing\"", "\"generatorURL\":\"alerts\""]);
    }

    #[tokio::test]
    async fn writes_to_its_writer() {
        #[derive(Clone, Default)]
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Shared::default();
        let id: ComponentId = "debug".parse().unwrap();
        let mut e = DebugExporter::with_writer(&id, &DebugConfig::default(), Box::new(buf.clone()));
        e.export(Arc::new(Batch::Logs(testdata::logs(1, 2)))).await.unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "debug: logs batch: 1 resources, 2 log records\n");
    }
}
