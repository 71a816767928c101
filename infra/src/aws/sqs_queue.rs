//! `SqsEventQueue`: the event queue port on an SQS standard queue and its
//! dead-letter queue (`{name}-dlq`). The queue's RedrivePolicy (set by
//! bootstrap/terraform, `maxReceiveCount` = `max_receives`) moves a message
//! that keeps failing to the DLQ; this adapter never counts receives itself.
//!
//! - Queue URLs are resolved with GetQueueUrl on first use and kept.
//! - `receive` long-polls (`WaitTimeSeconds` = `wait`, rounded down, at most
//!   20) for up to 10 messages, asking for every message attribute plus
//!   `ApproximateReceiveCount` and `SentTimestamp`. SQS counts visibility in
//!   whole seconds: `visibility` is rounded up.
//! - `OutgoingMessage.attributes` travel as String message attributes (an
//!   empty value cannot, SQS refuses it, so it is left out).
//! - `dead_letter` first extends the message's visibility (which proves the
//!   receipt is still ours and keeps it hidden meanwhile), sends a copy to
//!   the DLQ with `deadLetterReason` and the original id, send time and
//!   receive count, then deletes the original. A crash between send and
//!   delete leaves a duplicate in the DLQ, never a loss.
//! - `dead_letters` peeks: a receive on the DLQ with visibility 0.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use aws_sdk_sqs::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    types::{
        Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
        SendMessageBatchRequestEntry,
    },
    Client,
};
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

use super::error::{code, map_sdk_error, missing};
use crate::{
    names,
    queue::{
        check_batch, EventQueue, OutgoingMessage, QueueDepth, ReceivedMessage,
        ATTR_DEAD_LETTER_REASON, MAX_BATCH,
    },
    StoreError,
};

/// Attributes `dead_letter` adds so the DLQ copy reads like the original.
const ATTR_ORIGINAL_ID: &str = "originalMessageId";
const ATTR_ORIGINAL_SENT: &str = "originalSentTimestamp";
const ATTR_ORIGINAL_RECEIVES: &str = "originalReceiveCount";
/// SQS's limits.
const MAX_WAIT_SECS: u64 = 20;
const MAX_VISIBILITY_SECS: u64 = 43_200;
const MAX_ATTRIBUTES: usize = 10;
/// How long `dead_letter` holds a message while moving it.
const MOVE_VISIBILITY_SECS: i32 = 60;

#[derive(Debug)]
pub struct SqsEventQueue {
    client: Client,
    name: String,
    dlq: String,
    url: OnceCell<String>,
    dlq_url: OnceCell<String>,
}

/// `wait` in SQS's whole seconds: rounded down (it is an upper bound).
fn wait_secs(wait: Duration) -> i32 {
    wait.as_secs().min(MAX_WAIT_SECS) as i32
}

/// `visibility` in SQS's whole seconds: rounded up (never shorter than asked).
fn visibility_secs(visibility: Duration) -> i32 {
    let secs = visibility.as_secs() + u64::from(visibility.subsec_nanos() > 0);
    secs.min(MAX_VISIBILITY_SECS) as i32
}

/// `message`'s attributes as SQS carries them (empty values left out).
fn sqs_attributes(
    message: &OutgoingMessage,
) -> Result<std::collections::HashMap<String, MessageAttributeValue>, StoreError> {
    let attributes = message
        .attributes
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| Ok((k.clone(), string_attr(v)?)))
        .collect::<Result<std::collections::HashMap<_, _>, StoreError>>()?;
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(StoreError::invalid(
            "message attributes",
            format!(
                "{} given; SQS carries at most {MAX_ATTRIBUTES}",
                attributes.len()
            ),
        ));
    }
    Ok(attributes)
}

/// SQS's limit on the bodies of one `SendMessageBatch` (256 KiB; kept
/// under, leaving room for the attributes). At most [`MAX_BATCH`] entries.
const MAX_BATCH_BODY_BYTES: usize = 200 * 1024;

fn string_attr(value: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| StoreError::backend("building a message attribute", e))
}

/// Whether an error says the receipt handle no longer names an in-flight
/// delivery.
fn stale_receipt<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match code(err) {
        Some(
            "ReceiptHandleIsInvalid"
            | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
            | "MessageNotInflight"
            | "AWS.SimpleQueueService.MessageNotInflight",
        ) => true,
        Some("InvalidParameterValue") => {
            let message = match err {
                SdkError::ServiceError(e) => e.err().message().unwrap_or_default(),
                _ => "",
            };
            message.contains("ReceiptHandle") || message.contains("receipt handle")
        }
        _ => false,
    }
}

impl SqsEventQueue {
    /// The queue `name` and its DLQ `{name}-dlq`.
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            client,
            dlq: names::dlq(&name),
            name,
            url: OnceCell::new(),
            dlq_url: OnceCell::new(),
        }
    }

    /// The one place SQS errors become [`StoreError`]s.
    fn error<E>(&self, action: &str, queue: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if matches!(
            code(&err),
            Some(
                "QueueDoesNotExist"
                    | "AWS.SimpleQueueService.NonExistentQueue"
                    | "NonExistentQueue"
            )
        ) {
            return missing(
                "SQS queue",
                queue,
                "RUNCACHE_STAGED_QUEUE / RUNCACHE_ACCESSED_QUEUE / RUNCACHE_INVALIDATE_QUEUE",
            );
        }
        let region = super::region_of(self.client.config().region());
        map_sdk_error(err, action, &format!("arn:aws:sqs:{region}:*:{queue}"))
    }

    async fn resolve(&self, name: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| self.error("sqs:GetQueueUrl", name, e))?;
        out.queue_url.ok_or_else(|| {
            StoreError::backend(format!("SQS queue `{name}`"), "GetQueueUrl returned no URL")
        })
    }

    async fn url(&self) -> Result<&str, StoreError> {
        self.url
            .get_or_try_init(|| self.resolve(&self.name))
            .await
            .map(String::as_str)
    }

    async fn dlq_url(&self) -> Result<&str, StoreError> {
        self.dlq_url
            .get_or_try_init(|| self.resolve(&self.dlq))
            .await
            .map(String::as_str)
    }

    async fn receive_from(
        &self,
        queue: &str,
        url: &str,
        max: usize,
        wait: i32,
        visibility: i32,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait)
            .visibility_timeout(visibility)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| self.error("sqs:ReceiveMessage", queue, e))?;
        Ok(out.messages().iter().map(received).collect())
    }

    async fn depth_of(&self, queue: &str, url: &str) -> Result<(u64, u64), StoreError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| self.error("sqs:GetQueueAttributes", queue, e))?;
        let get = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_default()
        };
        Ok((
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

fn received(m: &Message) -> ReceivedMessage {
    let system = |name: MessageSystemAttributeName| {
        m.attributes()
            .and_then(|a| a.get(&name))
            .map(String::as_str)
    };
    let attributes: BTreeMap<String, String> = m
        .message_attributes()
        .map(|attrs| {
            attrs
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    ReceivedMessage {
        id: m.message_id().unwrap_or_default().to_string(),
        receipt: m.receipt_handle().unwrap_or_default().to_string(),
        body: m.body().unwrap_or_default().to_string(),
        attributes,
        receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
        sent_at: system(MessageSystemAttributeName::SentTimestamp)
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_default(),
    }
}

#[async_trait]
impl EventQueue for SqsEventQueue {
    fn name(&self) -> &str {
        &self.name
    }

    #[tracing::instrument(skip_all, fields(queue = %self.name))]
    async fn send(&self, message: OutgoingMessage) -> Result<String, StoreError> {
        let attributes = sqs_attributes(&message)?;
        let url = self.url().await?;
        let out = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(message.body)
            .set_message_attributes(Some(attributes).filter(|a| !a.is_empty()))
            .send()
            .await
            .map_err(|e| self.error("sqs:SendMessage", &self.name, e))?;
        Ok(out.message_id.unwrap_or_default())
    }

    #[tracing::instrument(skip_all, fields(queue = %self.name, count = messages.len()))]
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<(), StoreError> {
        let url = self.url().await?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut messages = messages.into_iter().peekable();
        while let Some(message) = messages.next() {
            bytes += message.body.len();
            let entry = SendMessageBatchRequestEntry::builder()
                .id(batch.len().to_string())
                .message_body(message.body.clone())
                .set_message_attributes(Some(sqs_attributes(&message)?).filter(|a| !a.is_empty()))
                .build()
                .map_err(|e| StoreError::invalid("SendMessageBatch entry", e.to_string()))?;
            batch.push(entry);
            let next_fits = messages
                .peek()
                .is_some_and(|m| bytes + m.body.len() <= MAX_BATCH_BODY_BYTES);
            if batch.len() == MAX_BATCH || !next_fits {
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(std::mem::take(&mut batch)))
                    .send()
                    .await
                    .map_err(|e| self.error("sqs:SendMessageBatch", &self.name, e))?;
                if let Some(failed) = out.failed.first() {
                    return Err(StoreError::invalid(
                        "SendMessageBatch",
                        format!(
                            "{} of the batch refused, e.g. {}: {}",
                            out.failed.len(),
                            failed.code,
                            failed.message.as_deref().unwrap_or("no message")
                        ),
                    ));
                }
                bytes = 0;
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(queue = %self.name, max = max))]
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        check_batch(max)?;
        let url = self.url().await?;
        self.receive_from(
            &self.name,
            url,
            max,
            wait_secs(wait),
            visibility_secs(visibility),
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(queue = %self.name))]
    async fn extend_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), StoreError> {
        let url = self.url().await?;
        match self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(visibility_secs(visibility))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if stale_receipt(&e) => Err(StoreError::NotFound {
                what: format!("in-flight message with this receipt on {}", self.name),
            }),
            Err(e) => Err(self.error("sqs:ChangeMessageVisibility", &self.name, e)),
        }
    }

    #[tracing::instrument(skip_all, fields(queue = %self.name))]
    async fn ack(&self, receipt: &str) -> Result<(), StoreError> {
        let url = self.url().await?;
        match self
            .client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already acked, or redelivered since: nothing of ours to delete.
            Err(e) if stale_receipt(&e) => Ok(()),
            Err(e) => Err(self.error("sqs:DeleteMessage", &self.name, e)),
        }
    }

    #[tracing::instrument(skip_all, fields(queue = %self.name, message_id = %message.id))]
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), StoreError> {
        let url = self.url().await?;
        let dlq_url = self.dlq_url().await?;
        // Still ours? (and hidden while we move it)
        match self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(&message.receipt)
            .visibility_timeout(MOVE_VISIBILITY_SECS)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if stale_receipt(&e) => {
                return Err(StoreError::NotFound {
                    what: format!("in-flight message {} on {}", message.id, self.name),
                })
            }
            Err(e) => return Err(self.error("sqs:ChangeMessageVisibility", &self.name, e)),
        }
        let mut attributes = message.attributes.clone();
        attributes.insert(ATTR_DEAD_LETTER_REASON.into(), reason.to_string());
        attributes.insert(ATTR_ORIGINAL_ID.into(), message.id.clone());
        attributes.insert(
            ATTR_ORIGINAL_SENT.into(),
            message.sent_at.timestamp_millis().to_string(),
        );
        attributes.insert(
            ATTR_ORIGINAL_RECEIVES.into(),
            message.receive_count.to_string(),
        );
        let attributes = attributes
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| Ok((k.clone(), string_attr(v)?)))
            .collect::<Result<std::collections::HashMap<_, _>, StoreError>>()?;
        self.client
            .send_message()
            .queue_url(dlq_url)
            .message_body(&message.body)
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| self.error("sqs:SendMessage", &self.dlq, e))?;
        self.ack(&message.receipt).await
    }

    #[tracing::instrument(skip_all, fields(queue = %self.name, max = max))]
    async fn dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, StoreError> {
        let dlq_url = self.dlq_url().await?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        // Visibility 0 leaves the messages where they are, so later
        // receives may hand out the same ones again: stop when nothing new.
        for _ in 0..max.div_ceil(MAX_BATCH).max(1) + 1 {
            if out.len() >= max {
                break;
            }
            let batch = (max - out.len()).min(MAX_BATCH);
            // A short long-poll: SQS's short poll samples a subset of its
            // servers and can miss messages in a small queue.
            let got = self.receive_from(&self.dlq, dlq_url, batch, 1, 0).await?;
            let before = out.len();
            for mut m in got {
                if !seen.insert(m.id.clone()) {
                    continue;
                }
                if let Some(id) = m.attributes.remove(ATTR_ORIGINAL_ID) {
                    m.id = id;
                }
                if let Some(sent) = m
                    .attributes
                    .remove(ATTR_ORIGINAL_SENT)
                    .and_then(|t| t.parse::<i64>().ok())
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                {
                    m.sent_at = sent;
                }
                if let Some(count) = m
                    .attributes
                    .remove(ATTR_ORIGINAL_RECEIVES)
                    .and_then(|c| c.parse().ok())
                {
                    m.receive_count = count;
                }
                m.receipt = String::new();
                out.push(m);
            }
            if out.len() == before {
                break;
            }
        }
        out.truncate(max);
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(queue = %self.name))]
    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let url = self.url().await?;
        let dlq_url = self.dlq_url().await?;
        let ((visible, in_flight), (dead_visible, dead_hidden)) = tokio::try_join!(
            self.depth_of(&self.name, url),
            self.depth_of(&self.dlq, dlq_url)
        )?;
        Ok(QueueDepth {
            visible,
            in_flight,
            dead_letters: dead_visible + dead_hidden,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_the_safe_way() {
        assert_eq!(wait_secs(Duration::from_millis(200)), 0);
        assert_eq!(wait_secs(Duration::from_secs(60)), 20);
        assert_eq!(visibility_secs(Duration::from_millis(1500)), 2);
        assert_eq!(visibility_secs(Duration::from_secs(1)), 1);
        assert_eq!(visibility_secs(Duration::ZERO), 0);
    }
}
