//! [`Faults`]: fails the k-th write across the ports it wraps, as if the
//! process died there, so a test can crash a handler after every step in
//! turn and check that the next run repairs what was left.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use async_trait::async_trait;
use runcache_infra::{Backend, StoreError};

use crate::intercept::{Call, Intercepted, Interceptor};

/// Fails the `fail_at`-th write (1-based) it sees; reads pass.
#[derive(Debug)]
pub struct Faults {
    writes: AtomicUsize,
    fail_at: usize,
}

impl Faults {
    pub fn new(fail_at: usize) -> Arc<Self> {
        Arc::new(Self {
            writes: AtomicUsize::new(0),
            fail_at,
        })
    }

    /// Whether the injected failure was reached.
    pub fn fired(&self) -> bool {
        self.writes.load(Ordering::SeqCst) >= self.fail_at
    }
}

#[async_trait]
impl Interceptor for Faults {
    async fn before(&self, call: Call<'_>) -> Result<(), StoreError> {
        if call.writes && self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(StoreError::Unavailable {
                what: call.op.into(),
                reason: "injected crash".into(),
            });
        }
        Ok(())
    }
}

/// `backend` with the ports a handler writes through (blobs, index, the
/// access queue) failing at `faults`' write.
pub fn crashing(backend: &Backend, faults: &Arc<Faults>) -> Backend {
    let mut b = backend.clone();
    b.blobs = Intercepted::wrap(backend.blobs.clone(), faults.clone());
    b.index = Intercepted::wrap(backend.index.clone(), faults.clone());
    b.accessed = Intercepted::wrap(backend.accessed.clone(), faults.clone());
    b
}
