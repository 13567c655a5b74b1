//! PostgreSQL connection settings shared by the `postgres` exporter and the
//! `postgresql` receiver: the DSN (URL or `key=value` form, libpq's
//! spelling) and TLS through rustls with the ring provider, with libpq's
//! `sslmode` semantics, so one connection string means the same thing to
//! both components and to `psql`.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` only, so the
//! libpq options it lacks (`verify-ca`, `verify-full`, `sslrootcert`) are
//! taken out of the DSN here and applied through the rustls configuration.
//! The DSN is a secret: nothing here puts it, or the password in it, into an
//! error message or a log line.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::SslMode;

/// What can go wrong building a [`Connector`] or connecting with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings are unusable (a bad DSN, an unreadable CA file).
    #[error("{0}")]
    Config(String),
    /// The server could not be reached, refused the session or failed the
    /// TLS handshake.
    #[error("connecting to postgres at {target}: {}", error_text(source))]
    Connect { target: String, source: tokio_postgres::Error },
}

/// A client error as text: the server's message (with its SQLSTATE and
/// detail) for database errors, the cause chain for the rest.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.detail() {
            Some(d) => format!("{} ({}): {}", db.message(), db.code().code(), d),
            None => format!("{} ({})", db.message(), db.code().code()),
        };
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// How the connection uses TLS, as libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without verifying its certificate (libpq's default).
    Prefer,
    /// TLS always; the certificate is verified against `ca_file` when one is given
    /// (as libpq does with a root certificate), otherwise not at all.
    Require,
    /// TLS; the certificate must chain to `ca_file` (or the system roots), any host name.
    VerifyCa,
    /// TLS; the certificate must chain to `ca_file` (or the system roots) and name the host.
    VerifyFull,
}

impl TlsMode {
    fn parse(s: &str) -> Option<TlsMode> {
        Some(match s {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }
}

/// `tls:` of the `postgres` exporter and the `postgresql` receiver. Unset
/// fields fall back to the DSN's `sslmode` and `sslrootcert`, then to
/// `prefer` without a CA file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub mode: Option<TlsMode>,
    /// PEM file of the CA(s) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.ca_file {
            if !p.exists() {
                out.push(format!("tls.ca_file {} does not exist", p.display()));
            }
            if matches!(self.mode, Some(TlsMode::Disable | TlsMode::Prefer)) {
                out.push("tls.ca_file needs tls.mode require, verify-ca or verify-full".to_string());
            }
        }
        out
    }
}

/// A DSN taken apart: what tokio-postgres parses, and the TLS options it does not.
#[derive(Debug)]
pub struct Dsn {
    pub config: tokio_postgres::Config,
    pub sslmode: Option<TlsMode>,
    pub sslrootcert: Option<PathBuf>,
}

/// Parses a DSN, URL (`postgres://…?sslmode=verify-full`) or `key=value` form.
/// Errors never quote the DSN.
pub fn parse_dsn(dsn: &str) -> Result<Dsn, String> {
    let dsn = dsn.trim();
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => {
                sslmode = Some(TlsMode::parse(value).ok_or_else(|| {
                    format!("sslmode `{value}` is not one of disable, allow, prefer, require, verify-ca, verify-full")
                })?);
                Ok(true)
            }
            "sslrootcert" => {
                sslrootcert = Some(PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        match dsn.split_once('?') {
            None => dsn.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, &percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (k, v) in key_values(dsn)? {
            if !take(&k, &v)? {
                kept.push(format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")));
            }
        }
        kept.join(" ")
    };
    let config: tokio_postgres::Config =
        rest.parse().map_err(|e: tokio_postgres::Error| match std::error::Error::source(&e) {
            Some(cause) => redact_error(&cause.to_string()),
            None => redact_error(&e.to_string()),
        })?;
    if config.get_hosts().is_empty() {
        return Err("it names no host".to_string());
    }
    Ok(Dsn { config, sslmode, sslrootcert })
}

/// tokio-postgres' parse errors name the option, never its value; only the
/// first line is kept, to be sure nothing else is echoed.
fn redact_error(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value` pairs of a libpq connection string; values may be single-quoted
/// with `\'` and `\\` escapes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no `=` and a value"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote in the value of `{key}`")),
                    Some('\'') => break,
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

/// `host:port` of the first host, for messages (never the user or password).
pub fn target(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// The TLS mode and CA file in effect: the component's `tls:` first, then
/// the DSN. Without a mode anywhere it is libpq's `prefer`, unless a CA file
/// is named: whoever names one wants the server verified (`verify-full`).
pub fn effective_tls(tls: &TlsConfig, dsn: &Dsn) -> (TlsMode, Option<PathBuf>) {
    let ca = tls.ca_file.clone().or_else(|| dsn.sslrootcert.clone());
    let default = if ca.is_some() { TlsMode::VerifyFull } else { TlsMode::Prefer };
    let mode = tls.mode.or(dsn.sslmode).unwrap_or(default);
    // libpq: `require` with a root certificate verifies the chain.
    let mode = if mode == TlsMode::Require && ca.is_some() { TlsMode::VerifyCa } else { mode };
    (mode, ca)
}

/// Connection settings shared by the pool and one-off connections.
#[derive(Clone)]
pub struct Connector {
    pub config: tokio_postgres::Config,
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    pub target: String,
}

impl Connector {
    /// Builds the connector for `dsn` with `tls`, `connect_timeout` and a
    /// default `application_name` of `magpie`.
    pub fn new(dsn: &str, tls: &TlsConfig, connect_timeout: Duration) -> Result<Connector, Error> {
        let parsed = parse_dsn(dsn).map_err(|e| Error::Config(format!("connection string: {e}")))?;
        let (mode, ca) = effective_tls(tls, &parsed);
        let mut config = parsed.config;
        config.connect_timeout(connect_timeout);
        config.keepalives_idle(Duration::from_secs(60));
        if config.get_application_name().is_none() {
            config.application_name("magpie");
        }
        let target = target(&config);
        let tls = match mode {
            TlsMode::Disable => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            TlsMode::Prefer => {
                config.ssl_mode(SslMode::Prefer);
                Some(rustls_connector(mode, None)?)
            }
            _ => {
                config.ssl_mode(SslMode::Require);
                Some(rustls_connector(mode, ca.as_deref())?)
            }
        };
        Ok(Connector { config, tls, target })
    }

    /// One connection; its I/O runs in a task of its own that ends when the
    /// client is dropped or the server closes the session.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, Error> {
        let err = |e| Error::Connect { target: self.target.clone(), source: e };
        let target = self.target.clone();
        let closed = move |r: Result<(), tokio_postgres::Error>| {
            if let Err(e) = r {
                tracing::debug!(target = %target, error = %error_text(&e), "postgres connection closed");
            }
        };
        match &self.tls {
            None => {
                let (client, conn) = self.config.connect(tokio_postgres::NoTls).await.map_err(err)?;
                tokio::spawn(async move { closed(conn.await) });
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await.map_err(err)?;
                tokio::spawn(async move { closed(conn.await) });
                Ok(client)
            }
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: Option<&Path>) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Config(format!("reading tls.ca_file {}: {e}", path.display())))?;
            for c in certs {
                let c =
                    c.map_err(|e| Error::Config(format!("reading tls.ca_file {}: {e}", path.display())))?;
                roots.add(c).map_err(|e| Error::Config(format!("tls.ca_file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(Error::Config(format!("tls.ca_file {} holds no certificate", path.display())));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::Config(
                    "no system CA certificates found for tls verification: set tls.ca_file".to_string(),
                ));
            }
        }
    }
    Ok(roots)
}

fn rustls_connector(
    mode: TlsMode,
    ca: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?;
    let config = match mode {
        TlsMode::VerifyFull => builder.with_root_certificates(roots(ca)?).with_no_client_auth(),
        TlsMode::VerifyCa => {
            let inner =
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                    .build()
                    .map_err(|e| Error::Config(format!("tls: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName { inner }))
                .with_no_client_auth()
        }
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified { provider }))
            .with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `verify-ca`: the chain must verify; the host name need not match.
#[derive(Debug)]
struct AnyName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: encryption without authentication,
/// as libpq does. The handshake signatures are still checked.
#[derive(Debug)]
struct Unverified {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dsn: &str, mode: Option<TlsMode>, rootcert: Option<&str>, host_port: &str, db: Option<&str>) {
        let d = parse_dsn(dsn).unwrap_or_else(|e| panic!("{dsn}: {e}"));
        assert_eq!(d.sslmode, mode, "{dsn}");
        assert_eq!(d.sslrootcert.as_deref(), rootcert.map(Path::new), "{dsn}");
        assert_eq!(target(&d.config), host_port, "{dsn}");
        assert_eq!(d.config.get_dbname(), db, "{dsn}");
    }

    #[test]
    fn dsns_in_both_forms_give_up_their_tls_options() {
        check("postgres://u:p@db.example.com:6432/app", None, None, "db.example.com:6432", Some("app"));
        check(
            "postgresql://u:p@db/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
            Some(TlsMode::VerifyFull),
            Some("/etc/ca.pem"),
            "db:5432",
            Some("app"),
        );
        check("postgres://db/app?sslmode=require", Some(TlsMode::Require), None, "db:5432", Some("app"));
        check(
            "host=127.0.0.1 port=5433 user=postgres dbname='my db' sslmode=verify-ca sslrootcert='/tmp/ca.pem'",
            Some(TlsMode::VerifyCa),
            Some("/tmp/ca.pem"),
            "127.0.0.1:5433",
            Some("my db"),
        );
        check("host=h password='it\\'s'", None, None, "h:5432", None);
    }

    #[test]
    fn bad_dsns_are_reported_without_their_secrets() {
        for (dsn, fragment) in [
            ("postgres://u:hunter2@db/app?sslmode=sometimes", "sslmode `sometimes`"),
            ("host=db password=hunter2 bogus=1", "unknown option `bogus`"),
            ("host=db password='hunter2", "unterminated quote"),
            ("dbname=x password=hunter2", "names no host"),
        ] {
            let e = parse_dsn(dsn).expect_err(dsn);
            assert!(e.contains(fragment), "{dsn}: {e}");
            assert!(!e.contains("hunter2"), "{dsn}: {e}");
        }
    }

    #[test]
    fn tls_settings_come_from_the_config_then_the_dsn() {
        let dsn = parse_dsn("postgres://db/app?sslmode=require&sslrootcert=/ca.pem").expect("dsn");
        assert_eq!(effective_tls(&TlsConfig::default(), &dsn), (TlsMode::VerifyCa, Some("/ca.pem".into())));
        let cfg = TlsConfig { mode: Some(TlsMode::VerifyFull), ca_file: Some("/other.pem".into()) };
        assert_eq!(effective_tls(&cfg, &dsn), (TlsMode::VerifyFull, Some("/other.pem".into())));
        let plain = parse_dsn("postgres://db/app").expect("dsn");
        assert_eq!(effective_tls(&TlsConfig::default(), &plain), (TlsMode::Prefer, None));
        let off = TlsConfig { mode: Some(TlsMode::Disable), ca_file: None };
        assert_eq!(effective_tls(&off, &dsn).0, TlsMode::Disable);
        let ca_only = TlsConfig { mode: None, ca_file: Some("/ca.pem".into()) };
        assert_eq!(effective_tls(&ca_only, &plain), (TlsMode::VerifyFull, Some("/ca.pem".into())));
        let root_only = parse_dsn("postgres://db/app?sslrootcert=/ca.pem").expect("dsn");
        assert_eq!(effective_tls(&TlsConfig::default(), &root_only).0, TlsMode::VerifyFull);
    }

    #[test]
    fn connectors_build_for_every_mode_and_name_only_host_and_port() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        for mode in [TlsMode::Disable, TlsMode::Prefer, TlsMode::Require] {
            let c = Connector::new(
                "postgres://user:hunter2@127.0.0.1:5999/x",
                &TlsConfig { mode: Some(mode), ca_file: None },
                Duration::from_secs(1),
            )
            .expect("connector");
            assert_eq!(c.target, "127.0.0.1:5999");
            assert_eq!(c.tls.is_some(), mode != TlsMode::Disable);
            assert_eq!(c.config.get_application_name(), Some("magpie"));
        }
        let missing =
            TlsConfig { mode: Some(TlsMode::VerifyFull), ca_file: Some("/nonexistent/ca.pem".into()) };
        let e = Connector::new("postgres://h/x", &missing, Duration::from_secs(1)).err().expect("fails");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
