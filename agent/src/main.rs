//! The `magpie` command line.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use magpie::config::{self, AgentConfig};
use magpie::service::{self, Control};
use magpie_core::ComponentKind;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::sync::mpsc;

/// mimalloc instead of the system allocator: decoding OTLP makes one heap
/// allocation per string, id and list of every span, and glibc's malloc and
/// free were half the receive path's CPU time (ARCHITECTURE.md). Build with
/// `--no-default-features` for the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Magpie: an OpenTelemetry-native telemetry agent for web apps with LLM/RAG
/// backends on PostgreSQL and Redis.
///
/// Magpie receives OTLP from instrumented apps and scrapes the host, Redis and
/// PostgreSQL, runs it through YAML-defined pipelines, and delivers it to
/// PostgreSQL tables, a live WebSocket feed and page, files, or any OTLP
/// backend. With no command it runs the pipelines (`magpie run`); with no
/// --config, the built-in default serves a live page on http://127.0.0.1:8765/.
#[derive(Parser)]
#[command(name = "magpie", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: ConfigArgs,
}

#[derive(Args, Clone)]
struct ConfigArgs {
    /// A YAML config file. Repeat to merge several in order: maps merge,
    /// lists replace, later files win. Without it, the built-in default
    /// (configs/default.yaml) is used, which needs no external service.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines until SIGINT or SIGTERM; SIGHUP reloads the config.
    Run(ConfigArgs),
    /// Check a config without starting anything: exit 0 when valid, 1 with
    /// every error (file, line, column, component path) otherwise.
    Validate(ConfigArgs),
    /// Print the effective config after merging files and expanding
    /// ${env:...} references, with secrets redacted.
    PrintConfig(ConfigArgs),
    /// List every component type with its kind, the signals it handles and
    /// what it does.
    Components,
    /// Create or upgrade the database schema of every exporter that has one
    /// (postgres: versioned migrations and daily partitions), then exit.
    /// Safe to run while agents are running, and by several at once.
    Migrate(ConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS provider for every client in the process (ring; no C crypto libraries).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Validate(args)) => validate(&args),
        Some(Command::PrintConfig(args)) => print_config(&args),
        Some(Command::Components) => {
            components();
            ExitCode::SUCCESS
        }
        Some(Command::Migrate(args)) => migrate(&args),
    }
}

fn migrate(args: &ConfigArgs) -> ExitCode {
    let Some(config) = load_or_report(args) else { return ExitCode::FAILURE };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut failed = 0;
        let mut migrated = 0;
        for (id, decl) in &config.exporters {
            match decl.config.spec.migrate().await {
                None => {}
                Some(Ok(summary)) => {
                    migrated += 1;
                    println!("{id}: {summary}");
                }
                Some(Err(e)) => {
                    failed += 1;
                    eprintln!("error: {id}: {e}");
                }
            }
        }
        if migrated + failed == 0 {
            println!("no exporter in the config has a schema to migrate");
        }
        if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
    })
}

fn load_or_report(args: &ConfigArgs) -> Option<AgentConfig> {
    match config::load(&args.config) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{w}");
            }
            Some(c)
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            let errors = problems.iter().filter(|p| p.is_error()).count();
            eprintln!("{errors} error{} in the config", if errors == 1 { "" } else { "s" });
            None
        }
    }
}

fn validate(args: &ConfigArgs) -> ExitCode {
    match load_or_report(args) {
        Some(c) => {
            let names: Vec<String> = if args.config.is_empty() {
                vec![config::DEFAULT_CONFIG_NAME.to_string()]
            } else {
                args.config.iter().map(|p| p.display().to_string()).collect()
            };
            println!("{} is valid: {} pipelines", names.join(" + "), c.pipelines.len());
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn print_config(args: &ConfigArgs) -> ExitCode {
    match load_or_report(args) {
        Some(c) => {
            print!("{}", c.to_redacted_yaml());
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn components() {
    println!("{:<10} {:<20} {:<20} DESCRIPTION", "KIND", "TYPE", "SIGNALS");
    for kind in
        [ComponentKind::Receiver, ComponentKind::Processor, ComponentKind::Connector, ComponentKind::Exporter]
    {
        for t in magpie::components::types(kind) {
            let signals = if t.routes.is_empty() {
                t.signals.to_string()
            } else {
                t.routes.iter().map(|(a, b)| format!("{a}→{b}")).collect::<Vec<_>>().join(",")
            };
            println!("{:<10} {:<20} {:<20} {}", kind.as_str(), t.name, signals, t.about);
        }
    }
}

fn run(args: ConfigArgs) -> ExitCode {
    let Some(config) = load_or_report(&args) else { return ExitCode::FAILURE };
    magpie::logging::init(&config.telemetry.logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args.config, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(component = "service", "{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(paths: Vec<PathBuf>, config: AgentConfig) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(4);
    forward_signals(tx).context("installing signal handlers")?;
    service::run(paths, config, rx, |_| {}).await?;
    Ok(())
}

/// Turns SIGHUP into reloads and SIGINT/SIGTERM into a shutdown.
fn forward_signals(tx: mpsc::Sender<Control>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = hup.recv() => Control::Reload,
                _ = int.recv() => Control::Shutdown,
                _ = term.recv() => Control::Shutdown,
            };
            if tx.send(msg).await.is_err() || msg == Control::Shutdown {
                break;
            }
        }
    });
    Ok(())
}
