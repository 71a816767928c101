//! `runcache-bench simulate`: replays a month of CI history of several
//! repositories through the real product code on the local backend, with a
//! [`ManualClock`] for time, and reports hit rates, storage, cache age,
//! evictions and the build time saved against the seed's success metrics.
//!
//! What is real and what is modelled:
//! - **real**: the restore search ([`search`] over [`restore_scopes`]:
//!   own scope, then the pull request's base, then the default branch);
//!   the index (SQLite); the metrics worker ([`MetricsHandler`]: access
//!   counters that drive LRU, hit/miss/eviction/invalidation datums, the
//!   storage and age gauges); invalidation ([`Invalidator`]); the sweep
//!   (TTL, per-repository quota LRU by trust tier, deletion of unreferenced
//!   blobs) with the product's defaults.
//! - **modelled**: the workload ([`workload`]); artifact sizes (a save puts
//!   a small placeholder blob into the CAS and inserts the entry promote
//!   would write, claiming the modelled size, which is what quotas and
//!   gauges read; promote's own cost is measured by `runcache-bench
//!   promote`); and build times ([`Params`]: a cold build, the share its
//!   dependency install takes, what an exact and a partial hit save, and
//!   transfer time at a given throughput).
//!
//! Each run restores two caches, as a typical Node or Rust pipeline does:
//! - dependencies: key `deps-Linux-{toolchain}-{lockfile}`, restore key
//!   `deps-Linux-{toolchain}-`;
//! - build outputs: key `build-Linux-{toolchain}-{commit}`, restore key
//!   `build-Linux-{toolchain}-` (an exact hit only on a re-run).
//!
//! and saves each one it did not restore exactly (as actions/cache: keys
//! are immutable).

mod report;
pub mod workload;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use runcache_infra::{
    index::{restore_scopes, search, SearchRequest},
    metrics::names as metric,
    Backend, Config, InsertOutcome, ManualClock,
};
use runcache_schemas::{
    CacheAccessed, CacheInvalidate, HitKind, IndexEntry, InvalidationSelector, Scope, TrustLevel,
};
use runcache_worker::{
    drain, metrics::repository_gauges, sweep, ConsumerConfig, Invalidator, MetricsHandler,
    SweepConfig,
};

pub use report::{Check, RepoReport, Report, SweepTotals};
use workload::{Action, GitRef, Run};

/// The workload and the build-time model. Every field is a flag of
/// `runcache-bench simulate` (`--help` lists them with their defaults);
/// docs/benchmarks.md explains the defaults.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Params {
    /// Seed of the random workload: the same seed gives the same report.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated days (day 0 is a Monday; days 5 and 6 of each week are the
    /// weekend).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Repositories. Each gets a scale factor between 0.5 and 1.5 (from the
    /// seed) applied to its cache sizes and cold build time.
    #[arg(long, default_value_t = 5)]
    pub repositories: u32,
    /// Pull requests opened per repository per weekday (Poisson mean).
    #[arg(long, default_value_t = 8.0)]
    pub prs_per_day: f64,
    /// Activity on Saturdays and Sundays, as a fraction of a weekday's.
    #[arg(long, default_value_t = 0.2)]
    pub weekend_activity: f64,
    /// Mean pushes per pull request, the first included (each push runs CI).
    #[arg(long, default_value_t = 3.0)]
    pub pushes_per_pr: f64,
    /// Mean hours from opening a pull request to closing it (exponential).
    #[arg(long, default_value_t = 24.0)]
    pub pr_hours: f64,
    /// Fraction of pull requests merged; each merge is a push to the default
    /// branch, which runs CI there.
    #[arg(long, default_value_t = 0.8)]
    pub merge_rate: f64,
    /// Fraction of pull requests that change the lockfile: a new dependency
    /// key (the older lockfile's cache still matches the restore key).
    #[arg(long, default_value_t = 0.1)]
    pub lockfile_change_rate: f64,
    /// Fraction of runs re-run on the same commit half an hour later (flaky
    /// tests, re-run buttons): the only exact build-output hits.
    #[arg(long, default_value_t = 0.05)]
    pub rerun_rate: f64,
    /// Toolchain bumps per repository over the whole simulation: every key
    /// changes and nothing matches until the caches are rebuilt.
    #[arg(long, default_value_t = 1)]
    pub toolchain_bumps: u32,
    /// Invalidations per repository over the whole simulation: `runcache
    /// admin invalidate` of everything built from the default branch's
    /// current lockfile (a bad dependency found in the cache).
    #[arg(long, default_value_t = 1)]
    pub invalidations: u32,
    /// Compressed size of a dependency cache (node_modules, ~/.cargo), MB.
    #[arg(long, default_value_t = 300.0)]
    pub deps_mb: f64,
    /// Compressed size of a build-output cache (target/, dist/), MB.
    #[arg(long, default_value_t = 1000.0)]
    pub build_mb: f64,
    /// Minutes a run takes with no cache at all.
    #[arg(long, default_value_t = 15.0)]
    pub cold_build_minutes: f64,
    /// Share of a cold run spent installing dependencies; the rest is the
    /// build the build-output cache speeds up.
    #[arg(long, default_value_t = 0.3)]
    pub deps_share: f64,
    /// Fraction of a step's cold time an exact hit saves (the rest: the
    /// steps that run anyway, e.g. tests reading the outputs).
    #[arg(long, default_value_t = 0.9)]
    pub exact_hit_saves: f64,
    /// Fraction of a step's cold time a restore-key (partial) hit saves: an
    /// incremental build from an older commit's outputs, an install on top
    /// of an older lockfile's dependencies.
    #[arg(long, default_value_t = 0.5)]
    pub partial_hit_saves: f64,
    /// Runner ↔ store throughput, MB/s: every restore and save costs
    /// size / throughput of run time.
    #[arg(long, default_value_t = 100.0)]
    pub transfer_mb_per_s: f64,
    /// Entries not accessed for this many days are evicted (the product's
    /// `ttl_days`).
    #[arg(long, default_value_t = Config::default().ttl_days)]
    pub ttl_days: u32,
    /// Storage quota per repository, GB (the product's `quota_bytes`).
    #[arg(long, default_value_t = Config::default().quota_bytes as f64 / 1e9)]
    pub quota_gb: f64,
    /// Hours between sweeps (production schedules one an hour).
    #[arg(long, default_value_t = 1)]
    pub sweep_every_hours: u32,
    /// Keep the simulation's store (a local backend) in DIR, a new or
    /// empty directory, for `runcache admin dashboard --from-simulation
    /// DIR`; by default it is a scratch directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
}

impl Default for Params {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            params: Params,
        }
        <Defaults as clap::Parser>::parse_from(["simulate"]).params
    }
}

impl Params {
    fn validate(&self) -> Result<()> {
        let fractions = [
            ("weekend-activity", self.weekend_activity),
            ("merge-rate", self.merge_rate),
            ("lockfile-change-rate", self.lockfile_change_rate),
            ("rerun-rate", self.rerun_rate),
            ("deps-share", self.deps_share),
            ("exact-hit-saves", self.exact_hit_saves),
            ("partial-hit-saves", self.partial_hit_saves),
        ];
        for (name, v) in fractions {
            if !(0.0..=1.0).contains(&v) {
                bail!("--{name} is a fraction between 0 and 1, not {v}");
            }
        }
        let positive = [
            ("prs-per-day", self.prs_per_day),
            ("pushes-per-pr", self.pushes_per_pr),
            ("pr-hours", self.pr_hours),
            ("cold-build-minutes", self.cold_build_minutes),
            ("transfer-mb-per-s", self.transfer_mb_per_s),
            ("quota-gb", self.quota_gb),
        ];
        for (name, v) in positive {
            if v.is_nan() || v <= 0.0 {
                bail!("--{name} must be above 0, not {v}");
            }
        }
        if self.days == 0 || self.repositories == 0 {
            bail!("--days and --repositories must be at least 1");
        }
        Ok(())
    }
}

/// Where the simulation starts. Fixed, so that a seed gives the same
/// report on any day; and later than any real file time, because the local
/// blob store dates objects by their real modification time: every blob
/// then looks older than the sweep's one-hour grace period, as it would
/// after the first hour of a real deployment.
const START: &str = "2030-01-07T00:00:00Z";

const DEFAULT_BRANCH: &str = "main";

/// The two caches of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cache {
    Dependencies,
    BuildOutputs,
}

/// Runs the simulation in a scratch directory (under /dev/shm when there
/// is one: the result does not depend on the disk, only the run time does).
pub async fn simulate(p: &Params) -> Result<Report> {
    p.validate()?;
    if let Some(dir) = &p.keep {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            bail!(
                "--keep {}: the directory is not empty; name a new one (the simulation writes a fresh store)",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let report = Simulation::new(p, dir)?.replay().await?;
        let start: DateTime<Utc> = START.parse()?;
        let until = start + chrono::Duration::from_std(report.simulated)?;
        std::fs::write(
            dir.join(runcache_dashboard::SIMULATION_MARKER),
            until.to_rfc3339(),
        )?;
        return Ok(report);
    }
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    Simulation::new(p, dir.path())?.replay().await
}

struct Repo {
    name: String,
    factor: f64,
    toolchain: u32,
    lockfile: u64,
    report: RepoReport,
}

struct Simulation<'a> {
    p: &'a Params,
    b: Backend,
    clock: ManualClock,
    start: DateTime<Utc>,
    metrics: Arc<MetricsHandler>,
    sweep: SweepConfig,
    repos: Vec<Repo>,
    events: Vec<workload::Event>,
    /// The lockfile of each pull request that changes it (kept after the
    /// merge: a re-run may follow).
    pr_lockfiles: HashMap<(usize, u32), u64>,
    lockfiles: u64,
    /// Makes access and request ids unique.
    serial: u64,
    sweeps: SweepTotals,
}

impl<'a> Simulation<'a> {
    fn new(p: &'a Params, home: &Path) -> Result<Self> {
        let start: DateTime<Utc> = START.parse()?;
        let clock = ManualClock::new(start);
        let mut config = Config::local(home);
        config.ttl_days = p.ttl_days;
        config.quota_bytes = (p.quota_gb * 1e9) as u64;
        config.default_branch = DEFAULT_BRANCH.into();
        let b = Backend::local(&config, Arc::new(clock.clone()))?;
        let (factors, events) = workload::generate(p);
        let repos = factors
            .into_iter()
            .enumerate()
            .map(|(i, factor)| Repo {
                name: format!("sim/repo-{}", i + 1),
                factor,
                toolchain: 0,
                lockfile: i as u64,
                report: RepoReport {
                    repository: format!("sim/repo-{}", i + 1),
                    scale: factor,
                    ..Default::default()
                },
            })
            .collect::<Vec<_>>();
        Ok(Self {
            p,
            metrics: Arc::new(MetricsHandler::new(b.clone())),
            sweep: SweepConfig::from_config(&config, "simulator"),
            lockfiles: repos.len() as u64,
            repos,
            events,
            b,
            clock,
            start,
            pr_lockfiles: HashMap::new(),
            serial: 0,
            sweeps: SweepTotals::default(),
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.b.clock.now()
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    async fn replay(mut self) -> Result<Report> {
        for ev in std::mem::take(&mut self.events) {
            let target = self.start + chrono::Duration::seconds(ev.at as i64);
            if let Ok(ahead) = (target - self.now()).to_std() {
                self.clock.advance(ahead);
            }
            match ev.action {
                Action::Run(run) => self.run(&run).await?,
                Action::ToolchainBump { repo } => self.repos[repo].toolchain += 1,
                Action::Invalidate { repo } => self.invalidate(repo).await?,
                Action::Sweep => self.sweep().await?,
            }
        }
        self.drain_outcomes().await?;
        self.finish().await
    }

    /// One CI run: both caches, restore then (unless exact) save.
    async fn run(&mut self, run: &Run) -> Result<()> {
        if let Some(pr) = run.merges {
            if let Some(&lockfile) = self.pr_lockfiles.get(&(run.repo, pr)) {
                self.repos[run.repo].lockfile = lockfile;
            }
        }
        let lockfile = match run.git {
            GitRef::Pr(pr) if run.changes_lockfile => {
                let next = self.lockfiles;
                let l = *self.pr_lockfiles.entry((run.repo, pr)).or_insert(next);
                if l == next {
                    self.lockfiles += 1;
                }
                l
            }
            _ => self.repos[run.repo].lockfile,
        };
        let factor = self.repos[run.repo].factor;
        let cold = self.p.cold_build_minutes * 60.0 * factor;
        let mut spent = cold;
        for cache in [Cache::Dependencies, Cache::BuildOutputs] {
            let (step, mb) = match cache {
                Cache::Dependencies => (cold * self.p.deps_share, self.p.deps_mb),
                Cache::BuildOutputs => (cold * (1.0 - self.p.deps_share), self.p.build_mb),
            };
            let size = (mb * 1e6 * factor) as u64;
            spent -= self.step(run, cache, lockfile, step, size).await?;
        }
        let r = &mut self.repos[run.repo].report;
        r.runs += 1;
        r.pr_runs += u64::from(matches!(run.git, GitRef::Pr(_)));
        r.reruns += u64::from(run.rerun);
        r.cold_seconds += cold;
        r.cached_seconds += spent;
        Ok(())
    }

    /// Restore, account, save; returns the seconds the cache saved this
    /// step (negative when transfers cost more than the hit saved).
    async fn step(
        &mut self,
        run: &Run,
        cache: Cache,
        lockfile: u64,
        step_seconds: f64,
        size: u64,
    ) -> Result<f64> {
        let repo = &self.repos[run.repo];
        let toolchain = format!("node-20.{}.0", repo.toolchain);
        let (version, prefix, key) = match cache {
            Cache::Dependencies => {
                let prefix = format!("deps-Linux-{toolchain}-");
                (
                    "deps-v1",
                    prefix.clone(),
                    format!("{prefix}lock-{lockfile:05}"),
                )
            }
            Cache::BuildOutputs => {
                let prefix = format!("build-Linux-{toolchain}-");
                (
                    "build-v1",
                    prefix.clone(),
                    format!("{prefix}{:012x}", run.commit),
                )
            }
        };
        let (scope, base, trust) = match run.git {
            GitRef::Main => (
                Scope::new(repo.name.clone(), "refs/heads/main"),
                None,
                TrustLevel::Protected,
            ),
            GitRef::Pr(n) => (
                Scope::new(repo.name.clone(), format!("refs/pull/{n}/merge")),
                Some(DEFAULT_BRANCH),
                TrustLevel::PullRequest,
            ),
        };
        let req = SearchRequest {
            scopes: restore_scopes(&scope, base, DEFAULT_BRANCH),
            version: version.into(),
            primary_key: key.clone(),
            restore_keys: vec![prefix],
            min_trust: TrustLevel::Untrusted,
        };
        let hit = search(&*self.b.index, &req).await?;
        let kind = hit.as_ref().map_or(HitKind::Miss, |h| h.kind);
        let restored = hit.as_ref().map_or(0, |h| h.entry.size_bytes);
        let transfer = |bytes: u64| bytes as f64 / (self.p.transfer_mb_per_s * 1e6);
        let saved_fraction = match kind {
            HitKind::Exact => self.p.exact_hit_saves,
            HitKind::Prefix => self.p.partial_hit_saves,
            HitKind::Miss => 0.0,
        };
        let restore_seconds = transfer(restored);
        let mut saved = step_seconds * saved_fraction - restore_seconds;

        // What the restore reports; the metrics worker counts it and
        // records the access (which is what LRU eviction goes by).
        let serial = self.next_serial();
        let total_ms = (restore_seconds * 1e3) as u64;
        self.metrics
            .accessed(&CacheAccessed {
                access_id: format!("sim-{serial}"),
                scope: scope.clone(),
                primary_key: key.clone(),
                restore_keys: req.restore_keys.clone(),
                cache_version: version.into(),
                hit_kind: kind,
                matched_key: hit.as_ref().map(|h| h.entry.cache_key.clone()),
                matched_ref: hit.as_ref().map(|h| h.entry.git_ref.clone()),
                content_hash: hit.as_ref().map(|h| h.entry.content_hash.clone()),
                bytes: restored,
                lookup_ms: 0,
                download_ms: total_ms,
                extract_ms: 0,
                total_ms,
                lookup_only: false,
                error: None,
                accessed_at: self.now(),
            })
            .await?;
        let r = &mut self.repos[run.repo].report;
        r.restores += 1;
        r.transfer_seconds += restore_seconds;
        match kind {
            HitKind::Exact => {
                r.exact += 1;
                r.exact_step_seconds += step_seconds;
            }
            HitKind::Prefix => {
                r.partial += 1;
                r.partial_step_seconds += step_seconds;
            }
            HitKind::Miss => r.misses += 1,
        }

        if kind != HitKind::Exact {
            let now = self.now();
            let mut entry = crate::index_entry(&scope, version, &key, size, trust, now);
            entry.toolchain = toolchain;
            entry.lockfile_hash = Some(format!("lock-{lockfile:05}"));
            entry.ttl = (now + chrono::Duration::days(i64::from(self.p.ttl_days))).timestamp();
            // The duration the producer reports: what this run spent on it.
            entry.build_duration_ms =
                Some(((step_seconds - step_seconds * saved_fraction) * 1e3) as u64);
            if self.save(&entry).await? {
                let r = &mut self.repos[run.repo].report;
                r.saves += 1;
                r.written_bytes += size;
                r.transfer_seconds += transfer(size);
                saved -= transfer(size);
            }
        }
        Ok(saved)
    }

    /// What promote leaves after a save: the blob in the CAS, then the
    /// entry. `false` if the key was taken (keys are immutable).
    async fn save(&self, entry: &IndexEntry) -> Result<bool> {
        let bytes = crate::placeholder(
            &entry.scope(),
            &entry.cache_version,
            &entry.cache_key,
            entry.created_at,
        );
        self.b
            .blobs
            .put(
                &entry.s3_key,
                Box::pin(std::io::Cursor::new(bytes)),
                BTreeMap::new(),
            )
            .await?;
        Ok(matches!(
            self.b.index.insert(entry).await?,
            InsertOutcome::Inserted
        ))
    }

    async fn invalidate(&mut self, repo: usize) -> Result<()> {
        let serial = self.next_serial();
        let r = &self.repos[repo];
        Invalidator::new(self.b.clone())
            .invalidate(&CacheInvalidate {
                request_id: format!("sim-invalidation-{serial}"),
                selector: InvalidationSelector {
                    repository: Some(r.name.clone()),
                    lockfile_hash: Some(format!("lock-{:05}", r.lockfile)),
                    ..Default::default()
                },
                reason: "simulated: a broken dependency found in the cache".into(),
                requested_by: "simulator".into(),
                requested_at: self.now(),
                purge_corrupt_blobs: false,
            })
            .await?;
        Ok(())
    }

    /// One sweep; storage is sampled just before it, when it is highest
    /// (it only grows between sweeps).
    async fn sweep(&mut self) -> Result<()> {
        for g in repository_gauges(&*self.b.index, self.now())
            .await?
            .values()
        {
            if let Some(r) = self.repos.iter_mut().find(|r| r.name == g.repository) {
                r.report.peak_storage_bytes = r.report.peak_storage_bytes.max(g.storage_bytes);
            }
        }
        let s = sweep(&self.b, &self.sweep).await?;
        self.sweeps.runs += 1;
        self.sweeps.ttl_evicted += s.ttl_evicted;
        self.sweeps.quota_evicted += s.quota_evicted;
        self.sweeps.blobs_deleted += s.blobs_deleted;
        self.sweeps.bytes_evicted += s.bytes_evicted;
        self.drain_outcomes().await
    }

    /// Eviction and invalidation outcomes → the metrics worker, through
    /// its queue and consumer loop.
    async fn drain_outcomes(&self) -> Result<()> {
        let report = drain(
            self.b.accessed.clone(),
            self.metrics.clone(),
            ConsumerConfig::default(),
        )
        .await;
        if report.rejected > 0 || report.retried > 0 {
            bail!("the metrics worker refused outcome events: {report:?}");
        }
        Ok(())
    }

    /// The final gauges and the metrics worker's sums.
    async fn finish(mut self) -> Result<Report> {
        let now = self.now();
        let gauges = runcache_worker::publish_gauges(&self.b).await?;
        for r in &mut self.repos {
            let rep = &mut r.report;
            if let Some(g) = gauges.iter().find(|g| g.repository == r.name) {
                rep.storage_bytes = g.storage_bytes;
                rep.live_entries = g.object_count;
                rep.average_age_seconds = g.average_age_seconds;
            }
            let dims = BTreeMap::from([(metric::DIM_REPOSITORY.to_string(), r.name.clone())]);
            let stat = |name| self.b.metrics.stats(name, &dims, self.start);
            rep.metric_hits = stat(metric::CACHE_HIT).await?.count;
            rep.metric_misses = stat(metric::CACHE_MISS).await?.count;
            rep.evictions = stat(metric::EVICTIONS).await?.count;
            rep.invalidations = stat(metric::INVALIDATIONS).await?.count;
            rep.metric_build_time_saved_seconds = stat(metric::BUILD_TIME_SAVED).await?.sum;
            if rep.metric_hits != rep.exact + rep.partial || rep.metric_misses != rep.misses {
                bail!(
                    "{}: the metrics worker counted {} hits and {} misses, the simulation {} and {}",
                    r.name,
                    rep.metric_hits,
                    rep.metric_misses,
                    rep.exact + rep.partial,
                    rep.misses
                );
            }
        }
        let simulated = Duration::from_secs((now - self.start).num_seconds().max(0) as u64);
        Ok(Report::new(
            self.p.clone(),
            self.repos.into_iter().map(|r| r.report).collect(),
            self.sweeps,
            simulated,
        ))
    }
}
