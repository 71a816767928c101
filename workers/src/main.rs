//! `runcache-worker`: the queue consumers and the sweep. Thin: parse, load
//! config, open the backend, run the chosen mode (`service.rs`) until
//! SIGTERM/SIGINT, or with `--once` until its queues are drained and one
//! sweep ran.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use runcache_infra::{
    config::Config,
    telemetry::{self, LogFormat},
    Backend,
};
use runcache_worker::{serve, Mode, ServiceOptions, ServiceReport};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// runcache's workers: verify and promote staged uploads, turn access and
/// outcome events into metrics, apply invalidations, and sweep (TTL, quota,
/// unreferenced blobs). Configuration as for `runcache` (see
/// `runcache config`).
#[derive(Debug, Parser)]
#[command(name = "runcache-worker", version)]
struct Cli {
    /// Which worker to run.
    #[arg(value_enum)]
    mode: CliMode,
    /// Drain the queue(s) and run one sweep, then exit (tests, cron),
    /// instead of running until SIGTERM/SIGINT.
    #[arg(long)]
    once: bool,
    /// Messages handled at once, per queue.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Name recorded as `promotedBy` in provenance and as the actor of
    /// evictions.
    #[arg(long, env = "HOSTNAME", default_value = "runcache-worker")]
    worker_id: String,
    /// Minutes between sweeps (`sweep` and `all` without --once).
    #[arg(long, default_value_t = 60)]
    sweep_interval_minutes: u64,
    /// Minutes between storage gauges (`metrics` and `all`).
    #[arg(long, default_value_t = 5)]
    gauge_interval_minutes: u64,
    /// Configuration file (default: $RUNCACHE_CONFIG, else ./runcache.toml).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Log lines on stderr: `plain`, or `json` (one object per line). Which
    /// lines: `RUNCACHE_LOG` (e.g. `info`, `debug,aws_smithy_runtime=warn`).
    /// Spans are also exported to OpenTelemetry when
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (OTLP over HTTP).
    #[arg(long, value_enum, env = "RUNCACHE_LOG_FORMAT", default_value_t = LogFormatArg::Plain)]
    log_format: LogFormatArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Plain,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliMode {
    /// Verify staged uploads and move them into the CAS, index and provenance.
    Promote,
    /// Access and outcome events → metrics and access counters; storage gauges.
    Metrics,
    /// Soft-delete the entries an invalidation request selects.
    Invalidate,
    /// Evict by TTL and quota, delete unreferenced blobs, clean staging.
    Sweep,
    /// All of the above in one process (one sweep at a time per deployment).
    All,
}

impl From<CliMode> for Mode {
    fn from(m: CliMode) -> Mode {
        match m {
            CliMode::Promote => Mode::Promote,
            CliMode::Metrics => Mode::Metrics,
            CliMode::Invalidate => Mode::Invalidate,
            CliMode::Sweep => Mode::Sweep,
            CliMode::All => Mode::All,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Flushes exported spans when dropped, after the runtime (declared
    // later) has stopped.
    let _telemetry = telemetry::init_with(telemetry::Settings {
        log_format: match cli.log_format {
            LogFormatArg::Plain => LogFormat::Plain,
            LogFormatArg::Json => LogFormat::Json,
        },
        ..telemetry::Settings::new("runcache-worker")
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runcache-worker: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(cli)) {
        Ok(report) => {
            info!(report = %serde_json::to_string(&report).unwrap_or_default(), "stopped");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                let stopped = [&report.promote, &report.metrics, &report.invalidate]
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.stopped_by.as_deref())
                    .collect::<Vec<_>>();
                if stopped.is_empty() {
                    eprintln!("runcache-worker: a sweep or gauge publication failed (see the log)");
                } else {
                    eprintln!("runcache-worker: error: {}", stopped.join("; "));
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!(
                "runcache-worker: error: {}",
                runcache_infra::describe(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> Result<ServiceReport> {
    let config = Config::load(cli.config.as_deref())?.config;
    let backend = Backend::open(&config).await.with_context(|| {
        format!(
            "opening the {:?} backend (see `runcache config`)",
            config.backend
        )
    })?;
    let mut opts = ServiceOptions::from_config(&config, &cli.worker_id);
    opts.once = cli.once;
    opts.consumer.concurrency = cli.concurrency.max(1);
    opts.sweep_interval = Duration::from_secs(cli.sweep_interval_minutes.max(1) * 60);
    opts.gauge_interval = Duration::from_secs(cli.gauge_interval_minutes.max(1) * 60);

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down: no new messages; finishing in-flight work");
        signal.cancel();
    });
    if !cli.once {
        return Ok(serve(backend, cli.mode.into(), opts, shutdown).await);
    }
    // A run to completion: a spinner on a terminal, one summary line always.
    // With JSON logs stderr is JSON lines only: the `stopped` log line
    // carries the report.
    let plain = matches!(cli.log_format, LogFormatArg::Plain);
    let what = format!("{:?} --once", cli.mode).to_lowercase();
    let spinner = indicatif::ProgressBar::new_spinner();
    if plain && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        spinner.set_message(format!(
            "runcache-worker {what}: draining the queues and sweeping"
        ));
        spinner.enable_steady_tick(Duration::from_millis(100));
    } else {
        spinner.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let report = serve(backend, cli.mode.into(), opts, shutdown).await;
    spinner.finish_and_clear();
    if !plain {
        return Ok(report);
    }
    eprintln!(
        "runcache-worker {what}: done in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        summary(&report)
    );
    Ok(report)
}

/// What a `--once` run did, in one line.
fn summary(r: &ServiceReport) -> String {
    let mut parts = Vec::new();
    for (name, drain) in [
        ("promote", &r.promote),
        ("metrics", &r.metrics),
        ("invalidate", &r.invalidate),
    ] {
        if let Some(d) = drain {
            parts.push(format!(
                "{name} {} handled, {} retried, {} rejected",
                d.done, d.retried, d.rejected
            ));
        }
    }
    if r.sweeps + r.sweep_failures > 0 {
        parts.push(format!(
            "{} sweep(s), {} failed",
            r.sweeps, r.sweep_failures
        ));
    }
    if parts.is_empty() {
        "nothing to do".into()
    } else {
        parts.join("; ")
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
