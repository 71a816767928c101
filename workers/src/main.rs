//! `runcache-worker`: the queue consumers. Thin: parse, load config, run the
//! chosen worker until SIGTERM/SIGINT (or, with `--once`, until its queue is
//! empty).

use std::{process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use runcache_infra::{config::Config, Backend};
use runcache_worker::{drain, promote::promoter, run, ConsumerConfig, DrainReport};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Consumes runcache's queues: verifies and promotes staged uploads into the
/// content-addressed store. Configuration as for `runcache` (see
/// `runcache config`).
#[derive(Debug, Parser)]
#[command(name = "runcache-worker", version)]
struct Cli {
    /// Which worker to run.
    #[arg(value_enum)]
    mode: Mode,
    /// Drain the queue and exit (tests, cron) instead of running until
    /// SIGTERM/SIGINT.
    #[arg(long)]
    once: bool,
    /// Messages handled at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Name recorded as `promotedBy` in provenance.
    #[arg(long, env = "HOSTNAME", default_value = "runcache-worker")]
    worker_id: String,
    /// Configuration file (default: $RUNCACHE_CONFIG, else ./runcache.toml).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Verify staged uploads and move them into the CAS, index and provenance.
    Promote,
    /// Every worker this build has, in one process.
    All,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runcache-worker: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(cli)) {
        Ok(report) => {
            info!(
                done = report.done,
                retried = report.retried,
                rejected = report.rejected,
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("runcache-worker: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> Result<DrainReport> {
    let config = Config::load(cli.config.as_deref())?.config;
    let backend = Backend::open(&config).await.with_context(|| {
        format!(
            "opening the {:?} backend (see `runcache config`)",
            config.backend
        )
    })?;
    let cfg = ConsumerConfig {
        concurrency: cli.concurrency.max(1),
        ..ConsumerConfig::default()
    };
    let handler = promoter(&backend, &cli.worker_id, config.ttl_days);
    match cli.mode {
        Mode::Promote | Mode::All if cli.once => {
            Ok(drain(backend.staged.clone(), handler, cfg).await)
        }
        Mode::Promote | Mode::All => {
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                info!("shutting down: no new messages; finishing in-flight work");
                signal.cancel();
            });
            info!(queue = backend.staged.name(), "promote worker running");
            Ok(run(backend.staged.clone(), handler as Arc<_>, cfg, shutdown).await)
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
