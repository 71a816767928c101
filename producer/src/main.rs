//! `runcache`: save and restore build caches on CI runners. Thin: parse the
//! command line, load the configuration, call the library, print, exit.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use runcache::{
    context::{RunContext, ScopeArgs},
    get::{get, GetOutput, GetTarget},
    outputs::write_github_output,
    restore::{restore, RestoreRequest},
    save::{save, SaveReport, SaveRequest},
};
use runcache_archive::ExtractLimits;
use runcache_infra::{config::Config, Backend};
use runcache_schemas::{ContentHash, HitKind, TrustLevel};

/// Artifact store and build cache for CI runners: content-addressed,
/// verified, compatible with actions/cache keys and archives.
///
/// Works with nothing installed (the local backend under $RUNCACHE_HOME);
/// set RUNCACHE_BACKEND=aws to use S3, DynamoDB and SQS.
#[derive(Debug, Parser)]
#[command(name = "runcache", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    runcache save --key deps-$(sha256sum package-lock.json | cut -c1-16) --path node_modules\n  \
    runcache restore --key deps-abc --restore-key deps- --path node_modules\n  \
    runcache config")]
struct Cli {
    /// Configuration file (default: $RUNCACHE_CONFIG, else ./runcache.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// No progress or summary on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Archive paths and store them under a key (a no-op if the key exists).
    Save(SaveArgs),
    /// Restore paths from the best matching entry: exact key, then prefixes.
    Restore(RestoreArgs),
    /// Fetch a stored build output by key or content hash, verified, into a
    /// directory or as the raw archive, and show its provenance.
    Get(GetArgs),
    /// Show the effective configuration and where each value came from.
    Config {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct SaveArgs {
    /// The cache key (at most 512 characters, no commas).
    #[arg(long)]
    key: String,
    /// Path pattern to cache (glob; `!` excludes; `~` is home); repeat.
    #[arg(long = "path", required = true)]
    paths: Vec<String>,
    /// zstd level, 1–19 (default from config: 3).
    #[arg(long)]
    compression_level: Option<i32>,
    /// Store this ready archive (an actions/cache `cache.tzst`: POSIX tar +
    /// zstd) as it is, under the version the --path patterns give; workers
    /// verify it and restores check its paths like any entry's.
    #[arg(long, value_name = "FILE")]
    from_archive: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    scope: ScopeArgs,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// The primary key: an exact match sets cache-hit=true.
    #[arg(long)]
    key: String,
    /// Prefixes tried in order when the key does not match; repeat.
    #[arg(long = "restore-key")]
    restore_keys: Vec<String>,
    /// Path patterns, exactly as given to save (they are part of the version).
    #[arg(long = "path", required = true)]
    paths: Vec<String>,
    /// Only look the key up; download nothing.
    #[arg(long)]
    lookup_only: bool,
    /// Exit 1 when nothing matched.
    #[arg(long)]
    fail_on_cache_miss: bool,
    /// Exit 1 on any cache problem instead of warning.
    #[arg(long)]
    strict: bool,
    /// Restore only entries built with at least this trust:
    /// untrusted, pull-request, branch or protected.
    #[arg(long, default_value = "untrusted")]
    trust: TrustLevel,
    /// Refuse archives that unpack to more than this many bytes.
    #[arg(long, default_value_t = ExtractLimits::default().max_unpacked_bytes)]
    max_unpacked_bytes: u64,
    /// Print the outputs as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    scope: ScopeArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["key", "hash"])))]
#[command(group(clap::ArgGroup::new("into").args(["out", "archive"])))]
struct GetArgs {
    /// The newest live entry with exactly this key in your scopes.
    #[arg(long)]
    key: Option<String>,
    /// The artifact with this content hash (`sha256:…` or bare hex).
    #[arg(long)]
    hash: Option<ContentHash>,
    /// With --key: only entries saved with these path patterns (the version).
    #[arg(long = "path")]
    paths: Vec<String>,
    /// Unpack into this directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write the verified archive (POSIX tar + zstd) to this file instead.
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
    /// Print the result and provenance as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    scope: ScopeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runcache: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("runcache: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let loaded = Config::load(cli.config.as_deref())?;
    let config = loaded.config.clone();
    match cli.command {
        Command::Config { json } => {
            let settings = loaded.explain();
            if json {
                println!("{}", serde_json::to_string_pretty(&settings)?);
            } else {
                if let Some(file) = &loaded.file {
                    println!("# config file: {}", file.display());
                }
                for s in settings {
                    println!("{:<18} = {:<45} # {}", s.key, s.value, s.source);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Save(args) => {
            let ctx = args.scope.resolve(&config.default_branch)?;
            let backend = open(&config).await?;
            let req = SaveRequest {
                key: args.key,
                paths: args.paths,
                zstd_level: args.compression_level.unwrap_or(config.zstd_level),
                from_archive: args.from_archive,
                progress: !cli.quiet,
            };
            let report = save(&config, &backend, &ctx, &req)
                .await
                .context("save failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            if !cli.quiet {
                match &report {
                    SaveReport::AlreadyCached { key, .. } => {
                        eprintln!("runcache: `{key}` is already cached in {}; nothing uploaded", ctx.scope)
                    }
                    SaveReport::Saved { key, size_bytes, unpacked_bytes, entries, duration_ms, content_hash, .. } => eprintln!(
                        "runcache: saved `{key}` ({entries} entries, {} → {}) as {content_hash} in {:.1}s",
                        human(*unpacked_bytes),
                        human(*size_bytes),
                        *duration_ms as f64 / 1000.0
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => restore_command(&config, args, cli.quiet).await,
        Command::Get(args) => {
            let ctx = args.scope.resolve(&config.default_branch)?;
            let backend = open(&config).await?;
            let target = match (args.key, args.hash) {
                (_, Some(hash)) => GetTarget::Hash(hash),
                (Some(key), None) => GetTarget::Key {
                    key,
                    paths: (!args.paths.is_empty()).then_some(args.paths),
                },
                (None, None) => bail!("pass --key or --hash"),
            };
            let output = match (args.archive, args.out) {
                (Some(file), _) => GetOutput::Archive(file),
                (None, dir) => GetOutput::Dir(dir.unwrap_or_else(|| PathBuf::from("."))),
            };
            let report = get(&backend, &ctx, &target, &output, &ExtractLimits::default())
                .await
                .context("get failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            if !cli.quiet {
                eprintln!(
                    "runcache: wrote {} ({}) to {}",
                    report.content_hash,
                    human(report.bytes),
                    report.written_to.display()
                );
                for p in &report.provenance {
                    eprintln!(
                        "  built by {} run {} ({}, {} trust) at commit {} on {}: key `{}`, promoted {}",
                        p.build.repository,
                        p.build.workflow_run_id.as_deref().unwrap_or("-"),
                        p.build.trigger_event,
                        p.build.trust,
                        p.build.commit_sha.as_deref().unwrap_or("-"),
                        p.scope.git_ref,
                        p.cache_key,
                        p.promoted_at.format("%Y-%m-%d %H:%M:%S UTC")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn restore_command(config: &Config, args: RestoreArgs, quiet: bool) -> Result<ExitCode> {
    let ctx: RunContext = args.scope.resolve(&config.default_branch)?;
    let req = RestoreRequest {
        key: args.key.clone(),
        restore_keys: args.restore_keys.clone(),
        paths: args.paths.clone(),
        lookup_only: args.lookup_only,
        min_trust: args.trust,
        limits: ExtractLimits {
            max_unpacked_bytes: args.max_unpacked_bytes,
            ..ExtractLimits::default()
        },
        progress: !quiet,
    };
    let result = match open(config).await {
        Ok(backend) => restore(&backend, &ctx, &req)
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    let report = match result {
        Ok(report) => report,
        Err(e) if args.strict => return Err(e.context("restore failed")),
        Err(e) => {
            // A cache problem must not fail the build: warn, report a miss.
            eprintln!("runcache: warning: restore failed, continuing without cache: {e:#}");
            emit_outputs(&Default::default(), &args.key, args.json)?;
            if args.fail_on_cache_miss {
                bail!(
                    "no cache restored for `{}` and --fail-on-cache-miss is set",
                    args.key
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    emit_outputs(&report.outputs, &args.key, args.json)?;
    if !quiet {
        match report.hit_kind {
            HitKind::Miss => eprintln!("runcache: cache miss for `{}` in {}", args.key, ctx.scope),
            _ if args.lookup_only => eprintln!(
                "runcache: found `{}` (lookup only, nothing downloaded)",
                report.outputs.cache_matched_key
            ),
            _ => eprintln!(
                "runcache: restored `{}` from {} ({} entries, {}) in {:.1}s",
                report.outputs.cache_matched_key,
                report.matched_ref.as_deref().unwrap_or("?"),
                report.entries,
                human(report.bytes),
                report.duration_ms as f64 / 1000.0
            ),
        }
    }
    if report.hit_kind == HitKind::Miss && args.fail_on_cache_miss {
        bail!(
            "no cache entry matched `{}` or its restore keys, and --fail-on-cache-miss is set",
            args.key
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn emit_outputs(
    outputs: &runcache::outputs::RestoreOutputs,
    primary: &str,
    json: bool,
) -> Result<()> {
    let mut outputs = outputs.clone();
    outputs.cache_primary_key = primary.to_string();
    if let Some(path) = RunContext::github_output() {
        write_github_output(&path, &outputs.lines())
            .with_context(|| format!("writing step outputs to {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&outputs)?);
    } else {
        for (name, value) in outputs.lines() {
            println!("{name}={value}");
        }
    }
    Ok(())
}

async fn open(config: &Config) -> Result<Backend> {
    Backend::open(config).await.with_context(|| {
        format!(
            "opening the {:?} backend (see `runcache config`)",
            config.backend
        )
    })
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
