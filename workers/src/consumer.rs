//! The consumer loop shared by every worker: receive a batch (never more
//! than there are free permits), handle each message in its own task and
//! span, keep its visibility extended while the handler runs, then ack,
//! retry (let it come back) or dead-letter it. Unknown, malformed or
//! unsupported messages are dead-lettered with the reason; nothing a message
//! contains can crash the loop.
//!
//! Tracing: the message's span is a child of the sender's span (its W3C
//! `traceparent` attribute), so with OpenTelemetry export on, one trace
//! runs from the producer through every worker that handles its events.
//!
//! Shutdown: when the token is cancelled, intake stops and in-flight
//! handlers finish (bounded by `shutdown_grace`); anything unfinished simply
//! becomes visible again, which is safe because handlers are idempotent.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use runcache_infra::{queue::ATTR_TRACEPARENT, telemetry, EventQueue, ReceivedMessage, StoreError};
use runcache_schemas::Event;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

tokio::task_local! {
    /// The W3C traceparent of the message being handled.
    static TRACEPARENT: String;
}

/// A traceparent for an event emitted while handling the current message:
/// the current span when it is exported to OpenTelemetry (so the consumer of
/// the event continues from it), else a child span of the message's trace,
/// or a new trace outside a handler.
pub fn child_traceparent() -> String {
    if let Some(current) = telemetry::current_traceparent() {
        return current;
    }
    let parent = TRACEPARENT.try_with(|p| p.clone()).ok();
    runcache_infra::queue::trace::child_of(parent.as_deref())
}

/// What a handler decided about one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done (or nothing to do): delete the message.
    Done,
    /// Transient failure: leave the message to come back after `after`.
    Retry { after: Duration, reason: String },
    /// No retry can help: dead-letter it with the reason.
    Reject { reason: String },
}

impl Outcome {
    /// Store errors are retried when transient, rejected otherwise... except
    /// that an unknown store error is retried: the queue's max-receive count
    /// still dead-letters it if it never heals.
    pub fn from_store_error(e: &StoreError) -> Outcome {
        match e {
            StoreError::Invalid { .. } => Outcome::Reject {
                reason: e.to_string(),
            },
            _ => Outcome::Retry {
                after: Duration::from_secs(if e.is_transient() { 5 } else { 30 }),
                reason: e.to_string(),
            },
        }
    }
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// For logs and metrics: `promote`, `metrics`, …
    fn name(&self) -> &'static str;
    async fn handle(&self, event: Event, message: &ReceivedMessage) -> Outcome;
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Messages handled at once.
    pub concurrency: usize,
    /// Visibility of a received message; extended every half of it.
    pub visibility: Duration,
    /// Long-poll wait of one receive.
    pub wait: Duration,
    /// How long in-flight work may take to finish after shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            visibility: Duration::from_secs(60),
            wait: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// What a drain (or a run until shutdown) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainReport {
    pub done: u64,
    pub retried: u64,
    pub rejected: u64,
    /// Why a drain stopped before the queue was empty: its receives kept
    /// failing (a read-only local home, a queue that is gone). A run until
    /// shutdown never stops for this; it backs off and tries again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
}

/// Receives a drain tries before it gives up on the queue.
const DRAIN_RECEIVE_ATTEMPTS: u32 = 3;

impl DrainReport {
    /// This drain followed by `later`.
    pub fn merged(self, later: DrainReport) -> DrainReport {
        DrainReport {
            done: self.done + later.done,
            retried: self.retried + later.retried,
            rejected: self.rejected + later.rejected,
            stopped_by: later.stopped_by.or(self.stopped_by),
        }
    }

    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Done => self.done += 1,
            Outcome::Retry { .. } => self.retried += 1,
            Outcome::Reject { .. } => self.rejected += 1,
        }
    }
}

/// Runs until `shutdown` is cancelled.
pub async fn run(
    queue: Arc<dyn EventQueue>,
    handler: Arc<dyn Handler>,
    cfg: ConsumerConfig,
    shutdown: CancellationToken,
) -> DrainReport {
    consume(queue, handler, cfg, shutdown, false).await
}

/// Handles messages until the queue has none visible, then returns (`--once`,
/// and the local backend's in-process promotion).
pub async fn drain(
    queue: Arc<dyn EventQueue>,
    handler: Arc<dyn Handler>,
    cfg: ConsumerConfig,
) -> DrainReport {
    consume(queue, handler, cfg, CancellationToken::new(), true).await
}

async fn consume(
    queue: Arc<dyn EventQueue>,
    handler: Arc<dyn Handler>,
    cfg: ConsumerConfig,
    shutdown: CancellationToken,
    until_empty: bool,
) -> DrainReport {
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut report = DrainReport::default();
    let wait = if until_empty {
        Duration::ZERO
    } else {
        cfg.wait
    };
    let mut failed_receives = 0u32;
    loop {
        while let Some(done) = tasks.try_join_next() {
            report.add(&done.unwrap_or_else(panicked));
        }
        if shutdown.is_cancelled() {
            break;
        }
        // Take only as many messages as we can start now: the rest stay on
        // the queue for other workers (backpressure).
        let Ok(first) = permits.clone().acquire_owned().await else {
            break;
        };
        let free = 1 + permits
            .available_permits()
            .min(runcache_infra::queue::MAX_BATCH - 1);
        let received = tokio::select! {
            r = queue.receive(free, wait, cfg.visibility) => r,
            _ = shutdown.cancelled() => break,
        };
        let messages = match received {
            Ok(m) => {
                failed_receives = 0;
                m
            }
            Err(e) => {
                drop(first);
                failed_receives += 1;
                if until_empty && failed_receives >= DRAIN_RECEIVE_ATTEMPTS {
                    // A one-shot drain must end: its caller reports this.
                    warn!(queue = queue.name(), error = %e, "receive failed; drain stops");
                    report.stopped_by = Some(format!("receiving from {}: {e}", queue.name()));
                    break;
                }
                let pause = if until_empty {
                    Duration::from_millis(200 * u64::from(failed_receives))
                } else {
                    Duration::from_secs(2)
                };
                if until_empty {
                    debug!(queue = queue.name(), error = %e, "receive failed; trying again");
                } else {
                    warn!(queue = queue.name(), error = %e, "receive failed; backing off");
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        if messages.is_empty() {
            drop(first);
            if until_empty {
                if tasks.is_empty() {
                    break;
                }
                // Others are still running and may be retried; wait for one.
                if let Some(done) = tasks.join_next().await {
                    report.add(&done.unwrap_or_else(panicked));
                }
            }
            continue;
        }
        let mut first = Some(first);
        for message in messages {
            let permit = match first.take() {
                Some(p) => p,
                None => match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (queue, handler, cfg) = (queue.clone(), handler.clone(), cfg.clone());
            let span = info_span!(
                "message",
                worker = handler.name(),
                queue = queue.name(),
                message_id = %message.id,
                receive_count = message.receive_count,
                schema = message.attributes.get("schema").map(String::as_str).unwrap_or(""),
                traceparent = message.attributes.get(ATTR_TRACEPARENT).map(String::as_str).unwrap_or(""),
            );
            // Join the sender's trace (OpenTelemetry export; a no-op without).
            if let Some(parent) = message.attributes.get(ATTR_TRACEPARENT) {
                telemetry::set_remote_parent(&span, parent);
            }
            tasks.spawn(
                async move {
                    let outcome = handle_one(&*queue, &*handler, &cfg, &message).await;
                    drop(permit);
                    outcome
                }
                .instrument(span),
            );
        }
        if until_empty {
            // Drain the batch before asking again, so retried messages are
            // not taken twice in one pass.
            while let Some(done) = tasks.join_next().await {
                report.add(&done.unwrap_or_else(panicked));
            }
        }
    }
    // Shutdown: let in-flight work finish, bounded.
    let _ = tokio::time::timeout(cfg.shutdown_grace, async {
        while let Some(done) = tasks.join_next().await {
            report.add(&done.unwrap_or_else(panicked));
        }
    })
    .await;
    tasks.abort_all();
    report
}

fn panicked(e: tokio::task::JoinError) -> Outcome {
    Outcome::Retry {
        after: Duration::from_secs(30),
        reason: format!("handler task failed: {e}"),
    }
}

async fn handle_one(
    queue: &dyn EventQueue,
    handler: &dyn Handler,
    cfg: &ConsumerConfig,
    message: &ReceivedMessage,
) -> Outcome {
    let outcome = match Event::decode(&message.body) {
        Err(e) => Outcome::Reject {
            reason: e.to_string(),
        },
        Ok(event) => {
            // Handlers emit events as children of the message's trace.
            let parent = message
                .attributes
                .get(ATTR_TRACEPARENT)
                .cloned()
                .unwrap_or_default();
            let work = TRACEPARENT.scope(parent, handler.handle(event, message));
            tokio::pin!(work);
            let mut tick = tokio::time::interval(cfg.visibility / 2);
            tick.tick().await;
            loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = tick.tick() => {
                        if let Err(e) = queue.extend_visibility(&message.receipt, cfg.visibility).await {
                            warn!(error = %e, "could not extend visibility; the message may be redelivered");
                        }
                    }
                }
            }
        }
    };
    let settled = match &outcome {
        Outcome::Done => queue.ack(&message.receipt).await,
        Outcome::Retry { after, reason } => {
            warn!(%reason, retry_in = ?after, "handler will retry");
            queue.extend_visibility(&message.receipt, *after).await
        }
        Outcome::Reject { reason } => {
            warn!(%reason, "dead-lettering message");
            queue.dead_letter(message, reason).await
        }
    };
    if let Err(e) = settled {
        warn!(error = %e, "could not settle the message; it will be redelivered");
    }
    outcome
}
