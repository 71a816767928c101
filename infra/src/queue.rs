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

/// Refuses a receive batch size outside `1..=MAX_BATCH` (every adapter).
pub fn check_batch(max: usize) -> Result<(), StoreError> {
    if (1..=MAX_BATCH).contains(&max) {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "receive batch size",
            format!("{max} is not between 1 and {MAX_BATCH}"),
        ))
    }
}

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

    /// An event in its envelope, with `schema`, `version` and the W3C trace
    /// context as attributes so a consumer can route, reject and trace it
    /// without parsing the body.
    pub fn event<T: runcache_schemas::Contract>(event: &T, traceparent: &str) -> Self {
        Self::new(event.encode())
            .with_attribute(ATTR_SCHEMA, T::SCHEMA)
            .with_attribute(ATTR_VERSION, T::VERSION.to_string())
            .with_attribute(ATTR_TRACEPARENT, traceparent)
    }
}

/// W3C trace context: `00-{trace id}-{span id}-01`. The producer starts a
/// trace per command; workers continue it (same trace id, new span id) in
/// what they emit, so one trace id spans runner and workers in the logs.
pub mod trace {
    fn random_hex(bytes: usize) -> String {
        let mut out = String::new();
        while out.len() < bytes * 2 {
            out.push_str(&uuid::Uuid::new_v4().simple().to_string());
        }
        out.truncate(bytes * 2);
        out
    }

    /// A new trace.
    pub fn new_traceparent() -> String {
        format!("00-{}-{}-01", random_hex(16), random_hex(8))
    }

    /// A child of `parent` (a new span in the same trace); a new trace if
    /// `parent` is absent or malformed.
    pub fn child_of(parent: Option<&str>) -> String {
        match parent.and_then(trace_id) {
            Some(trace) => format!("00-{trace}-{}-01", random_hex(8)),
            None => new_traceparent(),
        }
    }

    /// The 32-hex trace id of a well-formed traceparent.
    pub fn trace_id(traceparent: &str) -> Option<&str> {
        let mut parts = traceparent.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(version, 2)
            && hex(trace, 32)
            && hex(span, 16)
            && hex(flags, 2)
            && parts.next().is_none())
        .then_some(trace)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn children_keep_the_trace_id() {
            let root = new_traceparent();
            let trace = trace_id(&root).expect("well formed").to_string();
            let child = child_of(Some(&root));
            assert_eq!(trace_id(&child), Some(trace.as_str()));
            assert_ne!(child, root);
            assert!(trace_id(&child_of(Some("garbage"))).is_some());
            assert_eq!(trace_id("00-abc-def-01"), None);
        }
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

    /// Sends `messages` in as few requests as the queue allows (SQS: ten
    /// per `SendMessageBatch`), for senders that buffer events off their
    /// request path. Not atomic: on an error, some may have been sent.
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<(), StoreError> {
        for message in messages {
            self.send(message).await?;
        }
        Ok(())
    }

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
