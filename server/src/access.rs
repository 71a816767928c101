//! Access events (`cache.accessed`) off the request path. A restore or a
//! build-cache GET hands its event to a bounded buffer and answers at once;
//! one task sends what has gathered as a batch (on AWS one SQS
//! `SendMessageBatch` per ten events instead of a `SendMessage` before
//! every response, which is most of a small object's latency and of its
//! request cost). Best effort, as every access event is: when the buffer
//! is full (the queue is down or slower than the requests) an event is
//! dropped and counted, never waited for. [`AccessReporter::close`] sends
//! what is buffered before `serve` returns.
//!
//! May touch: the accessed queue.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex,
};

use runcache_infra::{Backend, OutgoingMessage};
use runcache_schemas::CacheAccessed;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{info, warn, Instrument};

/// Events buffered at most; beyond, new ones are dropped.
const BUFFER: usize = 8192;
/// Events sent in one `send_batch` call at most.
const BATCH: usize = 100;

#[derive(Debug)]
pub struct AccessReporter {
    tx: Mutex<Option<mpsc::Sender<OutgoingMessage>>>,
    sender: Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
}

impl AccessReporter {
    /// Starts the sending task on the current runtime.
    pub fn start(backend: Backend) -> Self {
        let (tx, mut rx) = mpsc::channel::<OutgoingMessage>(BUFFER);
        let task = tokio::spawn(
            async move {
                let mut batch = Vec::with_capacity(BATCH);
                while rx.recv_many(&mut batch, BATCH).await > 0 {
                    let count = batch.len();
                    if let Err(e) = backend
                        .accessed
                        .send_batch(std::mem::take(&mut batch))
                        .await
                    {
                        warn!(error = %e, count, "could not record accesses (metrics only)");
                    }
                }
            }
            .instrument(tracing::info_span!("access_reporter")),
        );
        Self {
            tx: Mutex::new(Some(tx)),
            sender: Mutex::new(Some(task)),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `accessed` for sending; never waits.
    pub fn report(&self, accessed: &CacheAccessed, traceparent: &str) {
        let message = OutgoingMessage::event(accessed, traceparent);
        let sent = match &*self.tx.lock().unwrap() {
            Some(tx) => tx.try_send(message).is_ok(),
            None => false,
        };
        if !sent {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(
                    dropped,
                    "access events dropped: the accessed queue is not keeping up (metrics only)"
                );
            }
        }
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking events and waits until the buffered ones are sent.
    pub async fn close(&self) {
        drop(self.tx.lock().unwrap().take());
        let task = self.sender.lock().unwrap().take();
        if let Some(task) = task {
            let _ = task.await;
            info!(dropped = self.dropped(), "access events sent");
        }
    }
}
