//! The event queue port: one queue and its dead-letter queue, with SQS's
//! semantics (at-least-once delivery, visibility timeout, receive count,
//! dead-letter after N receives).
//!
//! # Contract
//! - A received message is invisible for `visibility`; unless acked or
//!   extended it is delivered again afterwards, with `receive_count` + 1.
//! - A message received more than the queue's max-receive count is moved to
//!   the dead-letter queue instead of being delivered.
//! - Each receive hands out a new receipt; acking or extending with a
//!   receipt whose message was since redelivered or acked is a
//!   [`StoreError::NotFound`] for extend and a no-op for ack.
//! - `receive` returns at most `max` (1 to 10) messages, waiting up to
//!   `wait` for the first (long polling); an empty vector is no error.

use std::{collections::BTreeMap, fmt::Debug, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// Message attribute carrying the envelope's schema name.
pub const ATTR_SCHEMA: &str = "schema";
/// Message attribute carrying the envelope's version.
pub const ATTR_VERSION: &str = "version";
/// W3C trace context, so one trace spans producer and worker.
pub const ATTR_TRACEPARENT: &str = "traceparent";
/// Why a message was dead-lettered explicitly.
pub const ATTR_DEAD_LETTER_REASON: &str = "deadLetterReason";

/// The most messages one receive returns (SQS's limit).
pub const MAX_BATCH: usize = 10;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingMessage {
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            attributes: BTreeMap::new(),
        }
    }

    pub fn with_attribute(mut self, name: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(name.to_string(), value.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub id: String,
    /// Handle for ack/extend, valid for this delivery only.
    pub receipt: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// 1 on first delivery.
    pub receive_count: u32,
    pub sent_at: DateTime<Utc>,
}

/// Approximate counts, as SQS reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
}

#[async_trait]
pub trait EventQueue: Send + Sync + Debug {
    /// The queue's name (for logs and errors).
    fn name(&self) -> &str;

    async fn send(&self, message: OutgoingMessage) -> Result<String, StoreError>;

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError>;

    /// Makes an in-flight message invisible for `visibility` from now.
    async fn extend_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), StoreError>;

    /// Deletes a delivered message: its work is done.
    async fn ack(&self, receipt: &str) -> Result<(), StoreError>;

    /// Moves a delivered message to the dead-letter queue now, recording
    /// `reason` (a poison message that no retry can fix).
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), StoreError>;

    /// Peeks at up to `max` dead-lettered messages without removing them.
    async fn dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, StoreError>;

    async fn depth(&self) -> Result<QueueDepth, StoreError>;
}
