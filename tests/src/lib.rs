//! Shared helpers for Magpie's integration tests: parsing configs from text,
//! unique names so tests run in parallel, locating the built binary, and
//! throwaway PostgreSQL clusters a test may stop and start.

use magpie::config::{self, AgentConfig, Source};
use magpie_core::config::ConfigError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Parses one config text named `test.yaml`, with `env` as the environment.
pub fn parse_with_env(yaml: &str, env: &[(&str, &str)]) -> Result<AgentConfig, Vec<ConfigError>> {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    config::parse(&[Source { name: "test.yaml".into(), text: yaml.into() }], &lookup)
}

/// Parses one config text with an empty environment.
pub fn parse(yaml: &str) -> Result<AgentConfig, Vec<ConfigError>> {
    parse_with_env(yaml, &[])
}

/// A name no other test in this process uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The `magpie` binary built alongside the tests.
pub fn magpie_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let bin = dir.join("magpie");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p magpie` (the test script does)",
        bin.display()
    );
    bin
}

/// An HTTP client for tests (plain HTTP on loopback; the ring provider is
/// installed for the occasional TLS test).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().expect("http client")
}

/// Sends `signal` (e.g. "HUP", "TERM") to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The PostgreSQL the tests use: `MAGPIE_TEST_POSTGRES_URL`, by default the
/// machine's own on 127.0.0.1:5432 (trust auth, database `test`).
pub fn postgres_url() -> String {
    std::env::var("MAGPIE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A plain client for a test's own queries; fails with directions when
/// PostgreSQL does not answer.
pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let mut cfg: tokio_postgres::Config = url.parse().expect("the PostgreSQL URL parses");
    cfg.ssl_mode(tokio_postgres::config::SslMode::Disable).application_name("magpie-tests");
    match cfg.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => panic!(
            "PostgreSQL is not reachable at {url} ({e}: {:?}). Start it (as root: pg_ctlcluster --skip-systemctl-redirect \
             $(ls /etc/postgresql) main start), run tests/run which starts it, or set MAGPIE_TEST_POSTGRES_URL",
            std::error::Error::source(&e)
        ),
    }
}

/// A throwaway PostgreSQL cluster in a temporary directory, on a free
/// loopback port, that a test can stop and start (outages, TLS settings).
/// `initdb` refuses to run as root, so as root the cluster runs as the
/// `postgres` OS user.
pub struct TempPostgres {
    dir: tempfile::TempDir,
    pub port: u16,
    as_root: bool,
}

impl TempPostgres {
    /// Creates the cluster (trust auth, superuser `postgres`), not started;
    /// `conf` is appended to its postgresql.conf.
    pub fn init(conf: &str) -> TempPostgres {
        let as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = TempPostgres { dir, port, as_root };
        if as_root {
            pg.run("chown", &["postgres:postgres", &pg.dir()], false);
        }
        pg.run(
            "initdb",
            &["-D", &pg.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            true,
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{}/postgresql.conf", pg.data()))
            .expect("postgresql.conf");
        std::io::Write::write_all(&mut f, format!("\n{conf}\n").as_bytes()).expect("writing postgresql.conf");
        pg
    }

    /// The cluster's directory (certificates may go here; it is owned by the server's user).
    pub fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir())
    }

    /// Makes `path` readable by the server only (key files).
    pub fn own_file(&self, path: &str) {
        if self.as_root {
            self.run("chown", &["postgres:postgres", path], false);
        }
        self.run("chmod", &["0600", path], false);
    }

    fn run(&self, program: &str, args: &[&str], as_server_user: bool) {
        let mut cmd = if as_server_user && self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            std::process::Command::new(program)
        };
        let out = cmd.args(args).output().unwrap_or_else(|e| {
            panic!("running {program}: {e}; install PostgreSQL's server binaries (Debian: apt-get install postgresql)")
        });
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir());
        let log = format!("{}/server.log", self.dir());
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "-t", "30", "start"], true);
    }

    /// Stops the server (fast shutdown: sessions are terminated, transactions rolled back).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"], true);
    }

    /// The URL of database `postgres` as superuser `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let mut cmd = if self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", "pg_ctl"]);
            c
        } else {
            std::process::Command::new("pg_ctl")
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}
