//! The worker modes as a library (`runcache-worker promote | metrics |
//! invalidate | sweep | all`), so that the binary stays thin and tests can
//! run a mode, `--once` or until a shutdown token fires.
//!
//! - Queue modes run [`consumer::run`](crate::consumer::run) until the token
//!   is cancelled (intake stops, in-flight messages finish, bounded by the
//!   consumer's `shutdown_grace`), or drain their queue once.
//! - `metrics` also publishes the storage gauges every `gauge_interval`.
//! - `sweep` runs a sweep at start and every `sweep_interval`; on shutdown a
//!   running sweep gets `shutdown_grace` to finish, then is dropped, which is
//!   safe: every sweep step is safe to stop after (see `sweep.rs`).
//! - `all` runs the three consumers concurrently plus the sweep loop, all
//!   under one token. With `once` it drains promote, then invalidate, runs
//!   one sweep, then drains metrics last so that it counts the outcomes the
//!   others emitted.
//!
//! Handler failures (retry or reject) are counted as `WorkerErrors` with
//! dimension `Worker`, best effort.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use runcache_infra::{
    metrics::names::{DIM_WORKER, WORKER_ERRORS},
    Backend, EventQueue, MetricDatum, MetricUnit, ReceivedMessage,
};
use runcache_schemas::Event;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    consumer::{drain, run, ConsumerConfig, DrainReport, Handler, Outcome},
    invalidate::Invalidator,
    metrics::{publish_gauges, MetricsHandler},
    promote::Promoter,
    sweep::{sweep, SweepConfig},
};

/// Which worker(s) to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Promote,
    Metrics,
    Invalidate,
    Sweep,
    All,
}

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Drain each queue / run one sweep, then return.
    pub once: bool,
    pub consumer: ConsumerConfig,
    /// Recorded as `promotedBy` and as the actor of evictions.
    pub worker_id: String,
    /// Entries' `ttl` attribute, set by promote.
    pub ttl: Duration,
    pub sweep: SweepConfig,
    pub sweep_interval: Duration,
    pub gauge_interval: Duration,
}

/// What a run of the service did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReport {
    pub promote: Option<DrainReport>,
    pub metrics: Option<DrainReport>,
    pub invalidate: Option<DrainReport>,
    pub sweeps: u64,
    pub sweep_failures: u64,
    pub gauge_failures: u64,
}

impl ServiceReport {
    /// Every sweep and gauge publication succeeded and no drain stopped on
    /// a queue it could not read (messages that were retried or
    /// dead-lettered are the queue's business, not a failure of the process).
    pub fn ok(&self) -> bool {
        let drains = [&self.promote, &self.metrics, &self.invalidate];
        self.sweep_failures == 0
            && self.gauge_failures == 0
            && drains
                .iter()
                .all(|d| d.as_ref().is_none_or(|d| d.stopped_by.is_none()))
    }
}

/// Runs `mode` until `shutdown` is cancelled (or, with `once`, until done).
pub async fn serve(
    backend: Backend,
    mode: Mode,
    opts: ServiceOptions,
    shutdown: CancellationToken,
) -> ServiceReport {
    let promoter: Arc<dyn Handler> = counted(
        &backend,
        Arc::new(
            Promoter::new(backend.clone(), opts.worker_id.clone(), opts.ttl)
                .with_default_branch(opts.sweep.default_branch.clone()),
        ),
    );
    let metrics: Arc<dyn Handler> =
        counted(&backend, Arc::new(MetricsHandler::new(backend.clone())));
    let invalidator: Arc<dyn Handler> =
        counted(&backend, Arc::new(Invalidator::new(backend.clone())));
    let consume = |queue: Arc<dyn EventQueue>, handler: Arc<dyn Handler>| {
        let (cfg, shutdown, once) = (opts.consumer.clone(), shutdown.clone(), opts.once);
        async move {
            info!(
                queue = queue.name(),
                worker = handler.name(),
                once,
                "consumer running"
            );
            if once {
                drain(queue, handler, cfg).await
            } else {
                run(queue, handler, cfg, shutdown).await
            }
        }
    };
    let mut report = ServiceReport::default();
    match (mode, opts.once) {
        (Mode::Promote, _) => {
            report.promote = Some(consume(backend.staged.clone(), promoter).await);
        }
        (Mode::Invalidate, _) => {
            report.invalidate = Some(consume(backend.invalidate.clone(), invalidator).await);
        }
        (Mode::Metrics, true) => {
            report.metrics = Some(consume(backend.accessed.clone(), metrics).await);
            gauges_once(&backend, &mut report).await;
        }
        (Mode::Metrics, false) => {
            let gauges = gauge_loop(&backend, &opts, &shutdown);
            let (drained, failures) =
                tokio::join!(consume(backend.accessed.clone(), metrics), gauges);
            report.metrics = Some(drained);
            report.gauge_failures = failures;
        }
        (Mode::Sweep, true) => sweep_once(&backend, &opts, &shutdown, &mut report).await,
        (Mode::Sweep, false) => {
            (report.sweeps, report.sweep_failures) = sweep_loop(&backend, &opts, &shutdown).await;
        }
        (Mode::All, true) => {
            report.promote = Some(consume(backend.staged.clone(), promoter).await);
            report.invalidate = Some(consume(backend.invalidate.clone(), invalidator).await);
            // The restores first, so the sweep's LRU order sees their
            // access times; then the sweep's own outcomes.
            let before = consume(backend.accessed.clone(), metrics.clone()).await;
            sweep_once(&backend, &opts, &shutdown, &mut report).await;
            let after = consume(backend.accessed.clone(), metrics).await;
            report.metrics = Some(before.merged(after));
        }
        (Mode::All, false) => {
            let (p, i, m, g, s) = tokio::join!(
                consume(backend.staged.clone(), promoter),
                consume(backend.invalidate.clone(), invalidator),
                consume(backend.accessed.clone(), metrics),
                gauge_loop(&backend, &opts, &shutdown),
                sweep_loop(&backend, &opts, &shutdown),
            );
            report.promote = Some(p);
            report.invalidate = Some(i);
            report.metrics = Some(m);
            report.gauge_failures = g;
            (report.sweeps, report.sweep_failures) = s;
        }
    }
    report
}

async fn gauges_once(backend: &Backend, report: &mut ServiceReport) {
    if let Err(e) = publish_gauges(backend).await {
        warn!(error = %e, "could not publish the storage gauges");
        report.gauge_failures += 1;
    }
}

async fn sweep_once(
    backend: &Backend,
    opts: &ServiceOptions,
    shutdown: &CancellationToken,
    report: &mut ServiceReport,
) {
    report.sweeps += 1;
    if !one_sweep(backend, opts, shutdown).await {
        report.sweep_failures += 1;
    }
}

/// One sweep, dropped `shutdown_grace` after a shutdown; `false` if it
/// failed or was dropped.
async fn one_sweep(backend: &Backend, opts: &ServiceOptions, shutdown: &CancellationToken) -> bool {
    let cut_off = async {
        shutdown.cancelled().await;
        tokio::time::sleep(opts.consumer.shutdown_grace).await;
    };
    tokio::select! {
        result = sweep(backend, &opts.sweep) => match result {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, "sweep failed; the next one resumes");
                count_error(backend, "sweep").await;
                false
            }
        },
        _ = cut_off => {
            warn!("sweep stopped by shutdown; the next one resumes");
            false
        }
    }
}

/// Sweeps at start and every `sweep_interval` until shutdown; returns
/// (sweeps, failures).
async fn sweep_loop(
    backend: &Backend,
    opts: &ServiceOptions,
    shutdown: &CancellationToken,
) -> (u64, u64) {
    let (mut runs, mut failures) = (0, 0);
    while !shutdown.is_cancelled() {
        runs += 1;
        if !one_sweep(backend, opts, shutdown).await {
            failures += 1;
        }
        if !pause(opts.sweep_interval, shutdown).await {
            break;
        }
    }
    (runs, failures)
}

/// Gauges at start and every `gauge_interval` until shutdown; returns the
/// failures.
async fn gauge_loop(backend: &Backend, opts: &ServiceOptions, shutdown: &CancellationToken) -> u64 {
    let mut failures = 0;
    while !shutdown.is_cancelled() {
        if let Err(e) = publish_gauges(backend).await {
            warn!(error = %e, "could not publish the storage gauges");
            failures += 1;
        }
        if !pause(opts.gauge_interval, shutdown).await {
            break;
        }
    }
    failures
}

/// Sleeps `interval`; `false` if shutdown came first.
async fn pause(interval: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(interval) => true,
        _ = shutdown.cancelled() => false,
    }
}

async fn count_error(backend: &Backend, worker: &str) {
    let datum = MetricDatum::new(WORKER_ERRORS, 1.0, MetricUnit::Count, backend.clock.now())
        .with_dimension(DIM_WORKER, worker);
    if let Err(e) = backend.metrics.put(&[datum]).await {
        warn!(error = %e, "could not count a worker error");
    }
}

fn counted(backend: &Backend, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
    Arc::new(Counted {
        inner,
        backend: backend.clone(),
    })
}

/// Counts a handler's retries and rejections as `WorkerErrors`.
struct Counted {
    inner: Arc<dyn Handler>,
    backend: Backend,
}

#[async_trait]
impl Handler for Counted {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn handle(&self, event: Event, message: &ReceivedMessage) -> Outcome {
        let outcome = self.inner.handle(event, message).await;
        if outcome != Outcome::Done {
            count_error(&self.backend, self.inner.name()).await;
        }
        outcome
    }
}

impl ServiceOptions {
    /// Options from the configuration, with the defaults of the binary.
    pub fn from_config(config: &runcache_infra::Config, worker_id: &str) -> Self {
        Self {
            once: false,
            consumer: ConsumerConfig::default(),
            worker_id: worker_id.to_string(),
            ttl: Duration::from_secs(u64::from(config.ttl_days) * 86_400),
            sweep: SweepConfig::from_config(config, worker_id),
            sweep_interval: Duration::from_secs(3600),
            gauge_interval: Duration::from_secs(300),
        }
    }
}
