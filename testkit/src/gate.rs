//! [`Gate`]: holds one port call at a chosen point (before or after it
//! reaches the port) until the test lets it go, so a test can build an
//! interleaving of two workers step by step.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use runcache_infra::StoreError;
use tokio::sync::oneshot;

use crate::intercept::{Call, Interceptor};

/// Holds the first call of `op` on a key starting with `key_prefix`.
#[derive(Debug)]
pub struct Gate {
    op: &'static str,
    key_prefix: String,
    after: bool,
    reached: Mutex<Option<oneshot::Sender<()>>>,
    release: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

/// The test's side of a gate: `reached` fires when the call arrives,
/// sending on `release` lets it go on.
pub struct GateHandle {
    pub reached: oneshot::Receiver<()>,
    pub release: oneshot::Sender<()>,
}

impl Gate {
    /// Holds the call before it reaches the port.
    pub fn before(op: &'static str, key_prefix: &str) -> (Arc<Gate>, GateHandle) {
        Self::new(op, key_prefix, false)
    }

    /// Holds the call after the port has done it, before the caller sees
    /// the result.
    pub fn after(op: &'static str, key_prefix: &str) -> (Arc<Gate>, GateHandle) {
        Self::new(op, key_prefix, true)
    }

    fn new(op: &'static str, key_prefix: &str, after: bool) -> (Arc<Gate>, GateHandle) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        let gate = Gate {
            op,
            key_prefix: key_prefix.into(),
            after,
            reached: Mutex::new(Some(reached_tx)),
            release: tokio::sync::Mutex::new(Some(release_rx)),
        };
        let handle = GateHandle {
            reached: reached_rx,
            release: release_tx,
        };
        (Arc::new(gate), handle)
    }

    async fn pass(&self, call: Call<'_>, after: bool) {
        if call.op != self.op || after != self.after || !call.key.starts_with(&self.key_prefix) {
            return;
        }
        let Some(reached) = self.reached.lock().unwrap().take() else {
            return; // only the first matching call is held
        };
        let _ = reached.send(());
        if let Some(release) = self.release.lock().await.take() {
            let _ = release.await;
        }
    }
}

#[async_trait]
impl Interceptor for Gate {
    async fn before(&self, call: Call<'_>) -> Result<(), StoreError> {
        self.pass(call, false).await;
        Ok(())
    }
    async fn after(&self, call: Call<'_>) {
        self.pass(call, true).await;
    }
}
