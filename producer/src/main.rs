//! `runcache`: save and restore build caches on CI runners. Thin: parse the
//! command line, load the configuration, call the library, print, exit.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use runcache::{
    context::{RunContext, ScopeArgs},
    explain::explain,
    get::{get, GetOutput, GetTarget},
    json,
    outputs::write_github_output,
    restore::{restore, RestoreQuery, RestoreReport, RestoreRequest},
    save::{save, SaveReport, SaveRequest},
};
use runcache_archive::ExtractLimits;
use runcache_infra::{config::Config, telemetry, Backend};
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
    /// Explain why a restore misses (or what it matches): walks restore's
    /// search step by step and reports the key under other paths or
    /// compression, in scopes this run cannot read, invalidated, evicted,
    /// still staged or rejected, and the closest keys that do exist.
    ///
    /// Read-only: it changes nothing and records no access. Give it the
    /// restore's own arguments.
    #[command(after_help = "Examples:\n  \
        runcache explain --key deps-abc --restore-key deps- --path node_modules\n  \
        runcache explain --key deps-abc --path node_modules --ref refs/heads/feature-x --json\n\n\
        After any miss: `runcache restore --explain …` or RUNCACHE_EXPLAIN=1 prints the short form.")]
    Explain(ExplainArgs),
    /// Fetch a stored build output by key or content hash, verified, into a
    /// directory or as the raw archive, and show its provenance.
    Get(GetArgs),
    /// Derive a cache key from lockfiles, toolchains, env vars and build config.
    Key(runcache::derive::KeyArgs),
    /// Operate the cache: stats, ls, provenance, invalidate, verify, bootstrap.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Serve the GitHub Actions cache protocol (v2 Twirp + blob URLs, v1
    /// REST) so the unmodified `actions/cache` and every `setup-*` action's
    /// `cache:` use runcache. Trusted: it holds the backend's credentials,
    /// runners hold only a token.
    #[command(long_about = SERVE_HELP)]
    Serve(ServeArgs),
    /// Show the effective configuration and where each value came from.
    Config {
        /// Print JSON.
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// A repository, and optionally one of its refs.
#[derive(Debug, Args)]
struct RepositoryArgs {
    /// The repository (`owner/name`); default: `$GITHUB_REPOSITORY`, else
    /// the current directory's `origin` remote, else `local/{directory}`.
    #[arg(long, env = "GITHUB_REPOSITORY")]
    repository: Option<String>,
    /// Only this ref (`refs/heads/main`).
    #[arg(long = "ref")]
    git_ref: Option<String>,
}

impl RepositoryArgs {
    fn repository(&self) -> String {
        match self.repository.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => runcache::context::local_repository(std::path::Path::new(".")),
        }
    }
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create the bucket, tables, queues and dead-letter queues on the
    /// configured AWS endpoint (RUNCACHE_BACKEND=aws), idempotently: for
    /// emulators and first trials; production uses terraform/.
    Bootstrap,
    /// Hit rate, storage, average age and the most accessed entries, per
    /// repository. On the local backend, pending access events are counted
    /// first.
    Stats {
        /// Only this repository.
        #[arg(long)]
        repository: Option<String>,
        /// Look back this many days.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// How many of the most accessed entries to list.
        #[arg(long, default_value_t = runcache::admin::DEFAULT_TOP)]
        top: usize,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List a repository's entries (any state), newest first.
    Ls {
        #[command(flatten)]
        at: RepositoryArgs,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Where an artifact came from: by content hash (`sha256:…`) or by key.
    Provenance {
        /// A content hash, or a cache key (resolved in --repository).
        hash_or_key: String,
        #[command(flatten)]
        at: RepositoryArgs,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Soft-delete every live entry matching all the given selectors (at
    /// least one of repository, toolchain, lockfile hash, key prefix).
    /// Enqueued for the invalidate worker; applied at once on the local
    /// backend.
    #[command(after_help = "Examples:\n  \
        runcache admin invalidate --toolchain node-20.11.0 --reason 'node 20.11 native addons break'\n  \
        runcache admin invalidate --repository acme/web --key-prefix deps:acme/web: --reason 'poisoned'")]
    Invalidate {
        /// Entries of this repository (`owner/name`).
        #[arg(long)]
        repository: Option<String>,
        /// Narrow to one ref (with another selector).
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// Entries whose key names this toolchain, as in the key
        /// (`node-20.11.0`; see `runcache admin provenance`).
        #[arg(long)]
        toolchain: Option<String>,
        /// Entries whose key names this lockfile hash (32 hex digits, the
        /// part `runcache key deps` puts in the key).
        #[arg(long)]
        lockfile_hash: Option<String>,
        /// Entries whose key starts with this.
        #[arg(long)]
        key_prefix: Option<String>,
        /// Why (kept in the audit record and shown by restores' explain).
        #[arg(long)]
        reason: String,
        /// Who asks (default: $GITHUB_ACTOR, else $USER).
        #[arg(long)]
        requested_by: Option<String>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove one entry (every ref, or one with --ref), audited, and its
    /// blob from the CAS if that does not hash to its name, so the next
    /// save of the key stores fresh bytes: how to get rid of an entry every
    /// restore refuses (`runcache explain` says when a hit cannot restore).
    /// To replace an entry, delete it and save again.
    #[command(after_help = "Example:\n  \
        runcache admin delete deps:acme/web:node-20.11.0:package-lock.json:5d41… \\\n      \
        --ref refs/heads/main --reason 'corrupt blob; rebuilding'")]
    Delete {
        /// The cache key, exactly.
        key: String,
        #[command(flatten)]
        at: RepositoryArgs,
        /// Why (kept in the audit record and shown by restores' explain).
        #[arg(long)]
        reason: String,
        /// Who asks (default: $GITHUB_ACTOR, else $USER).
        #[arg(long)]
        requested_by: Option<String>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Draw the dashboard: one self-contained HTML page (no script, no
    /// network fetch) with hit rate over time per repository, stored bytes,
    /// build time saved, evictions and invalidations, rejected uploads, the
    /// most accessed entries and the dead letters, for the last hour, day,
    /// week and month.
    #[command(after_help = "Examples:\n  \
        runcache admin dashboard                      # writes runcache-dashboard.html\n  \
        runcache admin dashboard --serve 127.0.0.1:8799 # redrawn at every load\n  \
        runcache-bench simulate --keep /tmp/sim && runcache admin dashboard --from-simulation /tmp/sim\n\n\
        On the local backend, restores not yet counted are counted first and the storage \
        gauges are taken now (what the metrics worker does on AWS). `runcache serve` shows \
        the same page, for the caller's repository, at /dashboard.")]
    Dashboard(DashboardArgs),
    /// Re-hash every CAS object; exit 1 if any does not match its name, is
    /// unreadable, or a live entry's blob is missing (for a cron alert).
    Verify {
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct DashboardArgs {
    /// Write the page to FILE.
    #[arg(long, value_name = "FILE", default_value = "runcache-dashboard.html")]
    out: PathBuf,
    /// Serve the page on ADDR instead (http://ADDR/), redrawn at every
    /// load, until Ctrl-C. No token is asked: keep it on 127.0.0.1.
    #[arg(long, value_name = "ADDR", conflicts_with = "out")]
    serve: Option<std::net::SocketAddr>,
    /// Only this repository (`owner/name`).
    #[arg(long)]
    repository: Option<String>,
    /// Draw the store a `runcache-bench simulate --keep DIR` run left,
    /// instead of the configured backend; the ranges end where the
    /// simulation did.
    #[arg(long, value_name = "DIR")]
    from_simulation: Option<PathBuf>,
    /// The range the page opens on.
    #[arg(long, default_value = "24h", value_parser = ["1h", "24h", "7d", "30d"])]
    range: String,
    /// How many of the most accessed entries to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
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
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=19))]
    compression_level: Option<i32>,
    /// Store this ready archive (an actions/cache `cache.tzst`: POSIX tar +
    /// zstd) as it is, under the version the --path patterns give; workers
    /// verify it and restores check its paths like any entry's.
    #[arg(long, value_name = "FILE")]
    from_archive: Option<PathBuf>,
    /// When the build started (RFC 3339, e.g. 2026-11-25T17:04:00Z), for the
    /// build duration in provenance; default: when the job's first
    /// `runcache restore` ran (inside GitHub Actions).
    #[arg(long, value_name = "TIME")]
    build_started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// A failed save is a warning and exit 0, so a job that did its work
    /// stays green (what the cache actions' save steps use).
    #[arg(long)]
    best_effort: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    scope: ScopeArgs,
}

/// What a restore looks up; `explain` takes the same arguments.
#[derive(Debug, Args)]
struct LookupArgs {
    /// The primary key: an exact match sets cache-hit=true.
    #[arg(long)]
    key: String,
    /// Prefixes tried in order when the key does not match; repeat.
    #[arg(long = "restore-key")]
    restore_keys: Vec<String>,
    /// Path patterns, exactly as given to save (they are part of the version).
    #[arg(long = "path", required = true)]
    paths: Vec<String>,
    /// Only entries built with at least this trust: untrusted,
    /// pull-request, branch or protected.
    #[arg(long, default_value = "untrusted")]
    trust: TrustLevel,
}

impl LookupArgs {
    fn query(&self) -> RestoreQuery {
        RestoreQuery {
            key: self.key.clone(),
            restore_keys: self.restore_keys.clone(),
            paths: self.paths.clone(),
            min_trust: self.trust,
        }
    }
}

#[derive(Debug, Args)]
struct RestoreArgs {
    #[command(flatten)]
    lookup: LookupArgs,
    /// Only look the key up; download nothing.
    #[arg(long)]
    lookup_only: bool,
    /// Exit 1 when nothing matched.
    #[arg(long)]
    fail_on_cache_miss: bool,
    /// Exit 1 on any cache problem instead of warning.
    #[arg(long)]
    strict: bool,
    /// Refuse archives that unpack to more than this many bytes.
    #[arg(long, default_value_t = ExtractLimits::default().max_unpacked_bytes)]
    max_unpacked_bytes: u64,
    /// Print the outputs as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// After a miss, explain it on stderr (the short form of `runcache
    /// explain`): the key under other paths, in other scopes, invalidated,
    /// evicted, staged or rejected, and the closest keys.
    #[arg(long, env = "RUNCACHE_EXPLAIN", value_parser = clap::builder::FalseyValueParser::new())]
    explain: bool,
    #[command(flatten)]
    scope: ScopeArgs,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The restore's own arguments.
    #[command(flatten)]
    lookup: LookupArgs,
    /// Print the whole explanation as JSON (schema `runcache.explain`).
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

const SERVE_HELP: &str = "\
Serve the GitHub Actions cache protocol, so the unmodified actions/cache and
every setup-* action's `cache:` input store in runcache, with its
verification, scopes, provenance, metrics and explain.

Trusted: it holds the backend's credentials (staging write, index read,
events); runners hold only a token. Uploads are staged and promoted like
`runcache save`'s (inline on the local backend, by runcache-worker on AWS).

Setup:
  1. Say how job tokens are checked, one of:
     --tokens tokens.toml: listed tokens, each with its repository, ref and
       trust (a single team, a laptop):
         [[token]]
         token = \"<random secret>\"
         repository = \"acme/app\"
         ref = \"refs/heads/main\"
         trust = \"protected\"    # untrusted | pull-request | branch | protected
     --github-auth github.toml: the runner's own ACTIONS_RUNTIME_TOKEN, a JWT
       verified against a JWKS; repository and cache scopes from its claims:
         jwks_url = \"https://<issuer>/.well-known/jwks\"   # or jwks_file
         issuer = \"https://<issuer>\"
         audience = \"<audience>\"
         repositories = [\"acme/*\"]
         protected_refs = [\"refs/heads/main\"]
  2. runcache serve --listen 0.0.0.0:8080 --tokens tokens.toml \\
         --public-url http://cache.internal:8080 \\
         --upstream https://results-receiver.actions.githubusercontent.com/
     (--upstream: other Actions services under the same URL, such as
     upload-artifact's, are forwarded there)
  3. On the runner, for every job (e.g. in the runner's .env or a job-started
     hook), point the cache client here:
       ACTIONS_RESULTS_URL=http://cache.internal:8080/
       ACTIONS_CACHE_URL=http://cache.internal:8080/
       ACTIONS_CACHE_SERVICE_V2=true
       ACTIONS_RUNTIME_TOKEN=<the job's token>   (static tokens only)

The same address is the build tools' remote cache, each client at its own
prefix with the same tokens: /bazel (--remote_cache), /ccache
(remote_storage), /gradle/ (HttpBuildCache), /nx
(NX_SELF_HOSTED_REMOTE_CACHE_SERVER), /sccache (SCCACHE_WEBDAV_ENDPOINT),
/turbo (TURBO_API); docs/build-caches.md has each client's lines.

See docs/serve.md for the setup and docs/design/github-cache-protocol.md for
what is served.";

/// `runcache serve`'s flags.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("auth").required(true).args(["tokens", "github_auth"])))]
struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Static tokens: a TOML file of `[[token]]` tables with token,
    /// repository, ref, trust (optional: base_ref, trigger_event, actor).
    /// For a single team or a laptop; see docs/serve.md.
    #[arg(long, env = "RUNCACHE_SERVE_TOKENS", value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Runtime tokens verified as JWTs: a TOML file with issuer, audience,
    /// repositories and jwks_file or jwks_url; repository and cache scopes
    /// come from the token's claims. See docs/serve.md.
    #[arg(long, env = "RUNCACHE_SERVE_GITHUB_AUTH", value_name = "FILE")]
    github_auth: Option<PathBuf>,
    /// The URL clients reach this server at, used in the signed blob URLs
    /// (default: http:// + the Host the client used).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Requests handled at once; more wait their turn.
    #[arg(long, default_value_t = 64)]
    max_requests: usize,
    /// Seconds a restore waits for an upload finalized here to be promoted.
    #[arg(long, default_value_t = 15)]
    promotion_wait: u64,
    /// Key for the signed blob URLs, shared by servers behind one address
    /// (default: a random key per process).
    #[arg(long, value_name = "FILE")]
    url_secret_file: Option<PathBuf>,
    /// The largest build-cache object (Bazel, ccache, Gradle, Nx, sccache,
    /// Turborepo) a PUT may store, in MiB; larger ones are refused with 413.
    #[arg(long, value_name = "MIB", default_value_t = runcache_server::DEFAULT_MAX_OBJECT_BYTES >> 20)]
    max_object_size: u64,
    /// Where blocks and chunks wait until their upload completes (default:
    /// serve-spool/ under RUNCACHE_HOME).
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,
    /// Where requests for other Actions services (artifacts…) under the
    /// same URL go: GitHub's results URL, e.g.
    /// https://results-receiver.actions.githubusercontent.com/ (default:
    /// refused with a message).
    #[arg(long, env = "RUNCACHE_SERVE_UPSTREAM", value_name = "URL")]
    upstream: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs on stderr (`RUNCACHE_LOG`, default warn); spans exported over
    // OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let telemetry = telemetry::init_with(telemetry::Settings {
        // A server says what it does; a CLI step only what went wrong.
        default_log_filter: if matches!(cli.command, Command::Serve(_)) {
            "info".into()
        } else {
            "warn".into()
        },
        ..telemetry::Settings::new("runcache")
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runcache: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C (and job cancellation) stops a transfer and removes its
    // partial files; other commands end as the signal's default says.
    let transfer = match &cli.command {
        Command::Save(_) => Some("save"),
        Command::Restore(_) => Some("restore"),
        Command::Get(_) => Some("get"),
        _ => None,
    };
    if transfer.is_some() {
        runtime.spawn(runcache::interrupt::listen());
    }
    let result = runtime.block_on(run(cli));
    let code = match (transfer, result) {
        (Some(what), result) if runcache::interrupt::interrupted() => {
            let how = match (result, what) {
                (Ok(_), _) => "it had finished",
                (Err(_), "save") => "nothing was saved and the partial upload was removed",
                (Err(_), _) => {
                    "nothing was restored; the partial extraction was removed and the \
                     targets are as they were"
                }
            };
            runcache::annotate::warning(&format!("{what} interrupted: {how}"));
            ExitCode::from(130)
        }
        (_, Ok(code)) => code,
        (_, Err(e)) => {
            runcache::annotate::error(&runcache_infra::describe(e.as_ref()));
            ExitCode::FAILURE
        }
    };
    // Flush the export before the runtime goes.
    drop(telemetry);
    code
}

async fn run(cli: Cli) -> Result<ExitCode> {
    // Key derivation needs no configuration: a broken runcache.toml must
    // not stop it.
    if let Command::Key(args) = &cli.command {
        runcache::derive::run(args, cli.quiet)?;
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = match Config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => return unconfigured(&cli, e.into()),
    };
    let config = loaded.config.clone();
    match cli.command {
        Command::Config { json } => {
            let settings = loaded.explain();
            if json {
                println!("{}", config_document(&settings)?);
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
            let (best_effort, key) = (args.best_effort, args.key.clone());
            match save_command(&config, args, cli.quiet).await {
                Err(e) if best_effort => {
                    save_failed(&key, &e);
                    Ok(ExitCode::SUCCESS)
                }
                result => result,
            }
        }
        Command::Key(_) => unreachable!("handled before loading the configuration"),
        Command::Admin(AdminCommand::Bootstrap) => bootstrap(&config).await,
        Command::Admin(AdminCommand::Dashboard(args)) => dashboard_command(&config, args).await,
        Command::Admin(cmd) => admin_command(&config, cmd).await,
        Command::Serve(args) => serve_command(config, args).await,
        Command::Restore(args) => restore_command(&config, args, cli.quiet).await,
        Command::Explain(args) => {
            let ctx = args.scope.resolve(&config.default_branch)?;
            let backend = open(&config).await?;
            let explanation = explain(&backend, &ctx, &args.lookup.query())
                .await
                .context("explain failed")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&explanation)?);
            } else {
                print!("{}", explanation.render_long());
            }
            Ok(ExitCode::SUCCESS)
        }
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
            let report = get(
                &backend,
                &ctx,
                &target,
                &output,
                &ExtractLimits::default(),
                !cli.quiet,
            )
            .await
            .context("get failed")?;
            if args.json {
                println!("{}", json::document("get", &report)?);
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

/// `runcache save`.
async fn save_command(config: &Config, args: SaveArgs, quiet: bool) -> Result<ExitCode> {
    let ctx = args.scope.resolve(&config.default_branch)?;
    let backend = open(config).await?;
    let req = SaveRequest {
        key: args.key,
        paths: args.paths,
        zstd_level: args.compression_level.unwrap_or(config.zstd_level),
        from_archive: args.from_archive,
        progress: !quiet,
        build_started_at: args.build_started_at,
    };
    let report = save(config, &backend, &ctx, &req)
        .await
        .context("save failed")?;
    if args.json {
        println!("{}", json::document("save", &report)?);
    }
    if !quiet {
        match &report {
            SaveReport::AlreadyCached { key, .. } => {
                eprintln!(
                    "runcache: `{key}` is already cached in {}; nothing uploaded",
                    ctx.scope
                )
            }
            SaveReport::Saved {
                key,
                size_bytes,
                unpacked_bytes,
                entries,
                duration_ms,
                content_hash,
                ..
            } => eprintln!(
                "runcache: saved `{key}` ({entries} entries, {} → {}) as {content_hash} in {:.1}s",
                human(*unpacked_bytes),
                human(*size_bytes),
                *duration_ms as f64 / 1000.0
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A `--best-effort` save that failed: warned about, never the job's failure.
fn save_failed(key: &str, error: &anyhow::Error) {
    runcache::annotate::warning(&format!(
        "save failed, the build goes on without saving `{key}`: {}",
        runcache_infra::describe(error.as_ref())
    ));
}

/// The configuration does not load. A restore still must not fail the
/// build: it warns and runs uncached (unless `--strict`); `config` shows
/// the settings as given, the bad one among them; the rest fail with the
/// reason.
fn unconfigured(cli: &Cli, error: anyhow::Error) -> Result<ExitCode> {
    match &cli.command {
        Command::Restore(args) if !args.strict => {
            restore_failed(args, &error)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Save(args) if args.best_effort => {
            save_failed(&args.key, &error);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { json } => {
            runcache::annotate::error(&runcache_infra::describe(error.as_ref()));
            // Listing what was given needs the file to exist, at least.
            let given = Config::given(cli.config.as_deref()).unwrap_or_default();
            if *json {
                println!("{}", config_document(&given)?);
            } else {
                println!("# the settings as given (they do not make a valid configuration):");
                for s in given {
                    println!("{:<18} = {:<45} # {}", s.key, s.value, s.source);
                }
            }
            Ok(ExitCode::FAILURE)
        }
        _ => Err(error),
    }
}

/// A restore that could not run: warned about, reported as a miss, so the
/// build goes on uncached (or stops, with `--fail-on-cache-miss`).
fn restore_failed(args: &RestoreArgs, error: &anyhow::Error) -> Result<()> {
    runcache::annotate::warning(&format!(
        "restore failed, continuing without cache: {}",
        runcache_infra::describe(error.as_ref())
    ));
    let report = RestoreReport::failed(&args.lookup.key, runcache_infra::describe(error.as_ref()));
    emit_outputs(&report.outputs, &args.lookup.key, args.json)?;
    if args.json {
        println!("{}", json::document("restore", &report)?);
    }
    if args.fail_on_cache_miss {
        bail!(
            "no cache restored for `{}` and --fail-on-cache-miss is set",
            args.lookup.key
        );
    }
    Ok(())
}

async fn restore_command(config: &Config, args: RestoreArgs, quiet: bool) -> Result<ExitCode> {
    let ctx: RunContext = args.scope.resolve(&config.default_branch)?;
    let req = RestoreRequest {
        query: args.lookup.query(),
        lookup_only: args.lookup_only,
        limits: ExtractLimits {
            max_unpacked_bytes: args.max_unpacked_bytes,
            ..ExtractLimits::default()
        },
        progress: !quiet,
    };
    let (backend, result) = match open(config).await {
        Ok(backend) => {
            let result = restore(&backend, &ctx, &req)
                .await
                .map_err(anyhow::Error::from);
            (Some(backend), result)
        }
        Err(e) => (None, Err(e)),
    };
    let report = match result {
        Ok(report) => report,
        Err(e) if args.strict => return Err(e.context("restore failed")),
        Err(e) => {
            // A cache problem must not fail the build: warn, report a miss.
            restore_failed(&args, &e)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    emit_outputs(&report.outputs, &args.lookup.key, args.json)?;
    if args.json {
        let mut report = report.clone();
        report.outputs.cache_primary_key = args.lookup.key.clone();
        println!("{}", json::document("restore", &report)?);
    }
    if !quiet {
        match report.hit_kind {
            HitKind::Miss => eprintln!(
                "runcache: cache miss for `{}` in {}",
                args.lookup.key, ctx.scope
            ),
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
    if let (HitKind::Miss, true, Some(backend)) = (report.hit_kind, args.explain, &backend) {
        let req = args.lookup.query();
        // Best effort, like the restore itself: never fails the step.
        match explain(backend, &ctx, &req).await {
            Ok(explanation) => eprint!("{}", explanation.render_short()),
            Err(e) => runcache::annotate::warning(&format!(
                "could not explain the miss: {}",
                runcache_infra::describe(&e)
            )),
        }
    }
    if report.hit_kind == HitKind::Miss && args.fail_on_cache_miss {
        bail!(
            "no cache entry matched `{}` or its restore keys, and --fail-on-cache-miss is set",
            args.lookup.key
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the step outputs to `$GITHUB_OUTPUT` and, unless `--json` (then
/// the caller prints the whole report), prints them as `name=value` lines.
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
    if !json {
        for (name, value) in outputs.lines() {
            println!("{name}={value}");
        }
    }
    Ok(())
}

/// `config --json`: the settings, as a versioned document.
fn config_document(settings: &[runcache_infra::config::Setting]) -> Result<String> {
    #[derive(serde::Serialize)]
    struct Settings<'a> {
        settings: &'a [runcache_infra::config::Setting],
    }
    Ok(json::document("config", &Settings { settings })?)
}

/// `runcache serve`: the protocol door (`runcache-server`) in this binary,
/// so one install on a runner host or a laptop has both doors; the CLI
/// library and the server library never import each other.
async fn serve_command(config: Config, args: ServeArgs) -> Result<ExitCode> {
    use runcache_server::{Auth, GithubAuth, ServeOptions, State, StaticTokens};
    let auth = match (&args.tokens, &args.github_auth) {
        (Some(file), _) => Auth::Static(StaticTokens::load(file)?),
        (None, Some(file)) => Auth::Github(std::sync::Arc::new(GithubAuth::load(file).await?)),
        (None, None) => anyhow::bail!("runcache serve needs --tokens FILE or --github-auth FILE"),
    };
    let url_secret = match &args.url_secret_file {
        Some(file) => Some(
            std::fs::read(file)
                .with_context(|| format!("reading --url-secret-file {}", file.display()))?,
        ),
        None => None,
    };
    let opts = ServeOptions {
        public_url: args.public_url,
        max_requests: args.max_requests,
        promotion_wait: std::time::Duration::from_secs(args.promotion_wait),
        url_secret,
        spool_dir: args.spool_dir,
        max_object_bytes: args.max_object_size.saturating_mul(1 << 20),
        upstream: args
            .upstream
            .as_deref()
            .map(runcache_server::Upstream::new)
            .transpose()?,
        ..ServeOptions::default()
    };
    let backend = open(&config).await?;
    let state =
        State::new(config, backend, auth, &opts).context("preparing the spool directory")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!("listening on http://{}", listener.local_addr()?);
    runcache_server::serve(listener, state, &opts, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM: stop accepting, drain what is in flight.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return interrupt.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    eprintln!("runcache serve: shutting down; draining requests in flight");
}

/// `runcache admin dashboard`.
async fn dashboard_command(config: &Config, args: DashboardArgs) -> Result<ExitCode> {
    let (backend, now, source) = match &args.from_simulation {
        Some(dir) => {
            let marker = dir.join(runcache_dashboard::SIMULATION_MARKER);
            let until = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
                .with_context(|| {
                    format!(
                        "{} is not a simulation's store (no readable {}): make one with \
                         `runcache-bench simulate --keep {}`",
                        dir.display(),
                        marker.display(),
                        dir.display()
                    )
                })?
                .with_timezone(&chrono::Utc);
            let sim = Config::local(dir);
            let backend = Backend::local(&sim, std::sync::Arc::new(runcache_infra::SystemClock))
                .with_context(|| format!("opening the simulation's store in {}", dir.display()))?;
            (backend, until, format!("simulation in {}", dir.display()))
        }
        None => {
            let backend = open(config).await?;
            if config.runs_workers_inline() {
                // No metrics worker runs: do its part first, as `stats` does.
                let drained = runcache_worker::settle::accesses(&backend).await;
                if let Some(why) = drained.stopped_by {
                    runcache::annotate::warning(&format!(
                        "restores still queued are not counted ({why})"
                    ));
                }
                if let Err(e) = runcache_worker::settle::gauges(&backend).await {
                    runcache::annotate::warning(&format!(
                        "the storage figures are not current: {e}"
                    ));
                }
            }
            let source = match config.backend {
                runcache_infra::BackendKind::Local => {
                    format!("local backend in {}", config.home.display())
                }
                other => format!("{other:?} backend, stage {}", config.stage).to_lowercase(),
            };
            (backend, chrono::Utc::now(), source)
        }
    };
    let live = args.from_simulation.is_none();
    let initial = runcache_dashboard::RANGES
        .iter()
        .find(|r| r.id == args.range)
        .map_or("24h", |r| r.id);
    let options = move || runcache_dashboard::Options {
        repository: args.repository.clone(),
        now: if live { chrono::Utc::now() } else { now },
        top: args.top,
        queues: true,
        initial_range: initial,
        source: source.clone(),
    };
    if let Some(addr) = args.serve {
        if !addr.ip().is_loopback() {
            runcache::annotate::warning(&format!(
                "`--serve {addr}` asks for no token: whoever reaches it sees every repository's \
                 figures and keys. For jobs, use `runcache serve`'s /dashboard (a token sees its \
                 own repository only)"
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} (is it in use?)"))?;
        eprintln!(
            "runcache dashboard: http://{}/ (redrawn at every load; Ctrl-C stops)",
            listener.local_addr()?
        );
        runcache_server::dashboard::serve_page(listener, backend, options, shutdown_signal())
            .await?;
        return Ok(ExitCode::SUCCESS);
    }
    let out = args.out.clone();
    let dashboard = runcache_dashboard::gather(&backend, &options())
        .await
        .context("reading the figures for the dashboard")?;
    let page = runcache_dashboard::render(&dashboard);
    std::fs::write(&out, &page).with_context(|| format!("writing {}", out.display()))?;
    let restores: u64 = dashboard
        .views
        .iter()
        .find(|v| v.range.id == initial)
        .map_or(0, |v| {
            v.hit_rate.iter().map(|r| r.hits() + r.misses()).sum()
        });
    println!(
        "wrote {} ({}, {} restores in the last {}): open it in a browser",
        out.display(),
        human(page.len() as u64),
        restores,
        runcache_dashboard::RANGES
            .iter()
            .find(|r| r.id == initial)
            .map_or("", |r| r.label)
    );
    Ok(ExitCode::SUCCESS)
}

async fn open(config: &Config) -> Result<Backend> {
    Backend::open(config).await.with_context(|| {
        format!(
            "opening the {:?} backend (see `runcache config`)",
            config.backend
        )
    })
}

async fn admin_command(config: &Config, cmd: AdminCommand) -> Result<ExitCode> {
    use runcache::admin;
    let backend = open(config).await?;
    // Where no worker runs (the local backend by default), this command does
    // the workers' part of its own work.
    let inline = config.runs_workers_inline();
    // `document`: the command's name in the JSON's `schema`.
    let print =
        |json: bool, document: &str, value: &dyn erased::Json, text: &dyn Fn()| -> Result<()> {
            if json {
                println!("{}", value.to_json(&format!("admin.{document}"))?);
            } else {
                text();
            }
            Ok(())
        };
    match cmd {
        AdminCommand::Bootstrap | AdminCommand::Dashboard(_) => {
            unreachable!("handled by the caller")
        }
        AdminCommand::Stats {
            repository,
            days,
            top,
            json,
        } => {
            if inline {
                // No metrics worker runs (by default on the local backend):
                // count what is pending first.
                let drained = runcache_worker::settle::accesses(&backend).await;
                if let Some(why) = drained.stopped_by {
                    runcache::annotate::warning(&format!(
                        "restores still queued are not counted ({why}); \
                         run `runcache admin stats` as a user who may write {}",
                        config.home.display()
                    ));
                }
            }
            let since = chrono::Utc::now() - chrono::Duration::days(days);
            let report = admin::stats(&backend, repository.as_deref(), since, top).await?;
            print(json, "stats", &report, &|| {
                if report.repositories.is_empty() {
                    println!(
                        "no entries or restores since {}",
                        report.since.format("%Y-%m-%d")
                    );
                }
                for r in &report.repositories {
                    let rate = r
                        .hit_rate_percent
                        .map_or("-".to_string(), |p| format!("{p:.1}%"));
                    println!(
                        "{}: hit rate {rate} ({} hits, {} misses), {} restored, {:.0}s build time saved, {} in {} entries, average age {:.1} days",
                        r.repository, r.hits, r.misses, human(r.bytes_restored), r.build_time_saved_seconds,
                        human(r.storage_bytes), r.object_count, r.average_age_seconds / 86_400.0
                    );
                    for e in &r.most_accessed {
                        println!(
                            "    {:>6}×  {}  ({})",
                            e.access_count, e.cache_key, e.git_ref
                        );
                    }
                }
            })?;
        }
        AdminCommand::Ls { at, json } => {
            let (repository, git_ref) = (at.repository(), at.git_ref);
            let entries = admin::ls(&backend, &repository, git_ref.as_deref()).await?;
            print(json, "ls", &Entries { entries: &entries }, &|| {
                for e in &entries {
                    println!(
                        "{:<11} {}  {:<24} {}  {}  {}",
                        e.state.as_str(),
                        e.created_at.format("%Y-%m-%d %H:%M"),
                        e.git_ref,
                        human(e.size_bytes),
                        e.content_hash,
                        e.cache_key
                    );
                }
                if entries.is_empty() {
                    println!("no entries for {repository}");
                }
            })?;
        }
        AdminCommand::Provenance {
            hash_or_key,
            at,
            json,
        } => {
            let (repository, git_ref) = (at.repository(), at.git_ref);
            let report = admin::provenance(
                &backend,
                &hash_or_key,
                Some(&repository),
                git_ref.as_deref(),
            )
            .await?;
            print(json, "provenance", &report, &|| {
                for r in &report.records {
                    println!(
                        "{}  key `{}` in {}\n    built from {} at {} by {} run {} ({}, trust {})\n    toolchain {}  lockfile {}  build {}  promoted {} by {}",
                        r.content_hash, r.cache_key, r.scope,
                        r.build.repository, r.build.commit_sha.as_deref().unwrap_or("-"),
                        r.build.actor.as_deref().unwrap_or("-"), r.build.workflow_run_id.as_deref().unwrap_or("-"),
                        r.build.trigger_event, r.build.trust,
                        r.build.toolchain.as_deref().unwrap_or("-"), r.build.lockfile_hash.as_deref().unwrap_or("-"),
                        r.build.build_duration_ms.map_or("-".into(), |ms| format!("{:.0}s", ms as f64 / 1000.0)),
                        r.promoted_at.format("%Y-%m-%d %H:%M:%S"), r.promoted_by
                    );
                }
            })?;
        }
        AdminCommand::Invalidate {
            repository,
            git_ref,
            toolchain,
            lockfile_hash,
            key_prefix,
            reason,
            requested_by,
            json,
        } => {
            let selector = runcache_schemas::InvalidationSelector {
                repository,
                git_ref,
                toolchain,
                lockfile_hash,
                key_prefix,
                cache_key: None,
            };
            let by = requested_by
                .or_else(RunContext::requester)
                .unwrap_or_else(|| "unknown".into());
            let request = admin::invalidate(&backend, selector, &reason, &by, false).await?;
            if inline {
                let drained = runcache_worker::settle::invalidations(&backend).await;
                if let Some(why) = drained.stopped_by {
                    anyhow::bail!(
                        "invalidation {} was recorded but not applied: {why}",
                        request.request_id
                    );
                }
            }
            print(json, "invalidate", &request, &|| {
                println!(
                    "invalidation {} {} ({} live entries matched when sent)",
                    request.request_id,
                    if inline {
                        "applied"
                    } else {
                        "enqueued for the invalidate worker"
                    },
                    request.live_matches_now
                );
            })?;
        }
        AdminCommand::Delete {
            key,
            at,
            reason,
            requested_by,
            json,
        } => {
            let selector = runcache_schemas::InvalidationSelector {
                repository: Some(at.repository()),
                git_ref: at.git_ref.clone(),
                cache_key: Some(key.clone()),
                ..Default::default()
            };
            let by = requested_by
                .or_else(RunContext::requester)
                .unwrap_or_else(|| "unknown".into());
            let request = admin::invalidate(&backend, selector, &reason, &by, true).await?;
            if request.live_matches_now == 0 {
                anyhow::bail!(
                    "no live entry `{key}` in {}{}; `runcache admin ls` lists them",
                    at.repository(),
                    at.git_ref
                        .as_deref()
                        .map(|r| format!(" {r}"))
                        .unwrap_or_default()
                );
            }
            if inline {
                let drained = runcache_worker::settle::invalidations(&backend).await;
                if let Some(why) = drained.stopped_by {
                    anyhow::bail!(
                        "deletion {} was recorded but not applied: {why}",
                        request.request_id
                    );
                }
            }
            print(json, "delete", &request, &|| {
                println!(
                    "deletion {} of `{key}` {} ({} live entries); a blob that does not verify is \
                     removed too, so the next save stores fresh bytes",
                    request.request_id,
                    if inline {
                        "applied"
                    } else {
                        "enqueued for the invalidate worker"
                    },
                    request.live_matches_now
                );
            })?;
        }
        AdminCommand::Verify { json } => {
            let progress = runcache::progress::counter("verifying", !json);
            let report = admin::verify_with_progress(&backend, &progress).await?;
            print(json, "verify", &report, &|| {
                println!(
                    "checked {} objects ({})",
                    report.checked,
                    human(report.bytes)
                );
                for m in &report.mismatches {
                    println!("MISMATCH {}: content is {}", m.key, m.actual);
                }
                for u in &report.unreadable {
                    println!("UNREADABLE {u:?}");
                }
                for m in &report.missing {
                    println!("MISSING {m:?}");
                }
            })?;
            if !report.ok() {
                bail!("verify found problems in the store (see above)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Lets `admin_command` print any report as JSON through one closure.
mod erased {
    pub trait Json {
        fn to_json(&self, document: &str) -> serde_json::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self, document: &str) -> serde_json::Result<String> {
            runcache::json::document(document, self)
        }
    }
}

/// `admin ls --json`: the entries in a named field, as every document is an
/// object.
#[derive(serde::Serialize)]
struct Entries<'a, T> {
    entries: &'a [T],
}

#[cfg(feature = "aws")]
async fn bootstrap(config: &Config) -> Result<ExitCode> {
    if config.backend != runcache_infra::BackendKind::Aws {
        bail!("`admin bootstrap` creates AWS resources: set RUNCACHE_BACKEND=aws (and AWS_ENDPOINT_URL for an emulator); the local backend needs no setup");
    }
    let report = runcache_infra::aws::bootstrap(config)
        .await
        .context("bootstrap failed")?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "aws"))]
async fn bootstrap(_config: &Config) -> Result<ExitCode> {
    bail!("this runcache was built without the `aws` feature; rebuild with default features")
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
