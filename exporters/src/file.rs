//! `file`: writes every batch as one line of OTLP/JSON (the spec's JSON
//! encoding: hex ids, integer enums, 64-bit integers as strings), the same
//! lines the Collector's file exporter writes, so files can be replayed or
//! diffed. Optional size-based rotation keeps numbered backups
//! (`path.1` is the newest); optional gzip compresses each file as one
//! stream, flushed after every batch so a reader never waits.

use flate2::Compression;
use flate2::write::GzEncoder;
use magpie_core::proto::collector::logs::v1::ExportLogsServiceRequest;
use magpie_core::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use magpie_core::proto::collector::trace::v1::ExportTraceServiceRequest;
use magpie_core::{Batch, ComponentError, ComponentId, ExportError, Exporter, ExporterContext};
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Compression of the output file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileCompression {
    #[default]
    None,
    Gzip,
}

/// Size-based rotation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Rotate before the file would grow past this many MiB.
    pub max_megabytes: u64,
    /// Rotated files to keep (`path.1` … `path.N`); older ones are deleted.
    pub max_backups: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_megabytes: 100, max_backups: 10 }
    }
}

/// Config of `file`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to write; created with its parent directories.
    pub path: PathBuf,
    /// Rotation; without it the file grows without bound.
    #[serde(default)]
    pub rotation: Option<Rotation>,
    #[serde(default)]
    pub compression: FileCompression,
}

impl FileConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.path.as_os_str().is_empty() {
            out.push("path must not be empty".to_string());
        }
        if let Some(r) = &self.rotation
            && r.max_megabytes == 0
        {
            out.push("rotation.max_megabytes must be at least 1".to_string());
        }
        out
    }
}

/// A batch as one line of spec OTLP/JSON (an Export*ServiceRequest).
pub fn to_otlp_json(batch: &Batch) -> String {
    let r = match batch {
        Batch::Traces(rs) => serde_json::to_string(&ExportTraceServiceRequest { resource_spans: rs.clone() }),
        Batch::Metrics(rm) => {
            serde_json::to_string(&ExportMetricsServiceRequest { resource_metrics: rm.clone() })
        }
        Batch::Logs(rl) => serde_json::to_string(&ExportLogsServiceRequest { resource_logs: rl.clone() }),
        // Not OTLP: the alerts as Alertmanager's alert objects.
        Batch::Alerts(a) => serde_json::to_string(&crate::webhook::payload::alerts_json(a)),
    };
    // Serializing prost structs to JSON cannot fail (no maps with non-string keys).
    r.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Counts bytes that reach the file (after compression).
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Sink {
    Plain(Counting<BufWriter<File>>),
    Gzip(GzEncoder<Counting<BufWriter<File>>>),
}

impl Sink {
    fn written(&self) -> u64 {
        match self {
            Sink::Plain(c) => c.written,
            Sink::Gzip(g) => g.get_ref().written,
        }
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(c) => {
                c.write_all(line)?;
                c.write_all(b"\n")?;
                c.flush()
            }
            Sink::Gzip(g) => {
                g.write_all(line)?;
                g.write_all(b"\n")?;
                // A sync flush makes everything so far decodable by a reader.
                g.flush()
            }
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(mut c) => c.flush(),
            Sink::Gzip(g) => g.finish()?.flush(),
        }
    }
}

/// The writer state, moved into blocking tasks for each write.
struct Writer {
    path: PathBuf,
    rotation: Option<Rotation>,
    compression: FileCompression,
    sink: Option<Sink>,
}

impl Writer {
    fn open(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        let existing = file.metadata()?.len();
        let counting = Counting { inner: BufWriter::new(file), written: existing };
        self.sink = Some(match self.compression {
            FileCompression::None => Sink::Plain(counting),
            FileCompression::Gzip => Sink::Gzip(GzEncoder::new(counting, Compression::fast())),
        });
        Ok(())
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        if self.sink.is_none() {
            self.open()?;
        }
        if let (Some(rot), Some(sink)) = (&self.rotation, &self.sink) {
            let limit = rot.max_megabytes.saturating_mul(1024 * 1024);
            if sink.written() > 0 && sink.written() + line.len() as u64 + 1 > limit {
                self.rotate()?;
            }
        }
        match self.sink.as_mut() {
            Some(s) => s.write_line(line),
            None => Err(io::Error::other("file not open")),
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(s) = self.sink.take() {
            s.finish()?;
        }
        let keep = self.rotation.as_ref().map_or(0, |r| r.max_backups);
        if keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(backup(&self.path, keep));
            for i in (1..keep).rev() {
                let from = backup(&self.path, i);
                if from.exists() {
                    std::fs::rename(&from, backup(&self.path, i + 1))?;
                }
            }
            std::fs::rename(&self.path, backup(&self.path, 1))?;
        }
        self.open()
    }

    fn close(&mut self) -> io::Result<()> {
        match self.sink.take() {
            Some(s) => s.finish(),
            None => Ok(()),
        }
    }
}

/// The name of the `n`th backup of `path`.
pub fn backup(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

pub struct FileExporter {
    id: String,
    writer: Option<Writer>,
}

impl FileExporter {
    pub fn new(id: &ComponentId, config: &FileConfig) -> Self {
        FileExporter {
            id: id.to_string(),
            writer: Some(Writer {
                path: config.path.clone(),
                rotation: config.rotation.clone(),
                compression: config.compression,
                sink: None,
            }),
        }
    }

    async fn with_writer<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Writer) -> io::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let Some(mut w) = self.writer.take() else {
            return Err("file writer lost after a failed write".to_string());
        };
        let path = w.path.display().to_string();
        match tokio::task::spawn_blocking(move || {
            let r = f(&mut w);
            (w, r)
        })
        .await
        {
            Ok((w, r)) => {
                self.writer = Some(w);
                r.map_err(|e| format!("writing {path}: {e}"))
            }
            Err(e) => Err(format!("file writer task failed: {e}")),
        }
    }
}

#[async_trait::async_trait]
impl Exporter for FileExporter {
    async fn start(&mut self, _ctx: &ExporterContext) -> Result<(), ComponentError> {
        self.with_writer(Writer::open).await.map_err(ComponentError::new)
    }

    async fn export(&mut self, batch: Arc<Batch>) -> Result<(), ExportError> {
        self.with_writer(move |w| w.write(to_otlp_json(&batch).as_bytes())).await.map_err(|e| {
            // The disk may fill up or come back: worth retrying.
            tracing::warn!(component = %self.id, error = %e, "file export failed");
            ExportError::retryable(e)
        })
    }

    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        self.with_writer(Writer::close).await.map_err(ComponentError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use magpie_core::otlp::testdata;
    use magpie_core::telemetry::ComponentStats;
    use std::io::Read;

    fn ctx() -> ExporterContext {
        ExporterContext {
            id: "file".parse().unwrap(),
            stats: Arc::new(ComponentStats::default()),
            shutdown: Default::default(),
        }
    }

    async fn run(config: FileConfig, batches: Vec<Batch>) {
        let mut e = FileExporter::new(&"file".parse().unwrap(), &config);
        e.start(&ctx()).await.unwrap();
        for b in batches {
            e.export(Arc::new(b)).await.unwrap();
        }
        e.shutdown().await.unwrap();
    }

    fn lines(path: &Path, gzip: bool) -> Vec<serde_json::Value> {
        let mut text = String::new();
        let f = File::open(path).unwrap();
        if gzip {
            MultiGzDecoder::new(f).read_to_string(&mut text).unwrap();
        } else {
            io::BufReader::new(f).read_to_string(&mut text).unwrap();
        }
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[tokio::test]
    async fn writes_spec_otlp_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let config = FileConfig { path: path.clone(), rotation: None, compression: FileCompression::None };
        run(config, vec![Batch::Traces(testdata::spans(1, 2)), Batch::Logs(testdata::logs(1, 1))]).await;
        let l = lines(&path, false);
        assert_eq!(l.len(), 2);
        let span = &l[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][1];
        assert_eq!(span["traceId"], "abababababababab0000000000000001");
        assert_eq!(span["spanId"], "0000000000000001");
        assert_eq!(span["kind"], 2, "enums are integers");
        assert_eq!(span["startTimeUnixNano"], "1700000000000001000", "int64 as strings");
        let round: ExportTraceServiceRequest = serde_json::from_value(l[0].clone()).unwrap();
        assert_eq!(round.resource_spans, testdata::spans(1, 2));
        assert_eq!(l[1]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["severityText"], "INFO");
    }

    #[tokio::test]
    async fn rotates_by_size_and_keeps_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let line_len = to_otlp_json(&Batch::Traces(testdata::spans(1, 400))).len() as u64;
        assert!(line_len > 100_000 && line_len < 1024 * 1024 / 2, "line of {line_len} bytes");
        let config = FileConfig {
            path: path.clone(),
            rotation: Some(Rotation { max_megabytes: 1, max_backups: 2 }),
            compression: FileCompression::None,
        };
        let per_file = (1024 * 1024 / (line_len + 1)) as usize;
        let total = per_file * 3 + 1;
        run(config, (0..total).map(|_| Batch::Traces(testdata::spans(1, 400))).collect()).await;
        assert_eq!(lines(&path, false).len(), 1, "current file holds the last line");
        assert_eq!(lines(&backup(&path, 1), false).len(), per_file);
        assert_eq!(lines(&backup(&path, 2), false).len(), per_file);
        assert!(!backup(&path, 3).exists(), "only max_backups are kept");
        for p in [path.clone(), backup(&path, 1)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 1024 * 1024);
        }
    }

    #[tokio::test]
    async fn gzip_output_is_readable_and_appends_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl.gz");
        let config = FileConfig { path: path.clone(), rotation: None, compression: FileCompression::Gzip };
        run(config.clone(), vec![Batch::Metrics(testdata::gauges(1, 3))]).await;
        run(config, vec![Batch::Metrics(testdata::gauges(1, 2))]).await;
        let l = lines(&path, true);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[1]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].as_array().map(Vec::len),
            Some(2)
        );
        assert!(
            std::fs::metadata(&path).unwrap().len()
                < to_otlp_json(&Batch::Metrics(testdata::gauges(1, 3))).len() as u64 * 2
        );
    }

    #[tokio::test]
    async fn an_unwritable_path_fails_start() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let config = FileConfig {
            path: blocker.join("out.jsonl"),
            rotation: None,
            compression: FileCompression::None,
        };
        let mut e = FileExporter::new(&"file".parse().unwrap(), &config);
        let err = e.start(&ctx()).await.unwrap_err();
        assert!(err.message.contains("out.jsonl"), "{err}");
    }
}
