//! `SqliteEventQueue`: SQS's semantics on a SQLite table. A message row moves
//! between "visible" (`visible_at` ≤ now) and "in flight" (`visible_at` in the
//! future, with a receipt); a receive that finds it has already been received
//! `max_receives` times moves it to the dead-letter queue instead (its row's
//! `queue` becomes `{name}-dlq`), as SQS's redrive policy does.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use rusqlite::params;

use super::db::{from_json, from_micros, micros, to_json, Db};
use crate::{
    names,
    queue::{
        check_batch, EventQueue, OutgoingMessage, QueueDepth, ReceivedMessage,
        ATTR_DEAD_LETTER_REASON,
    },
    Clock, StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    attributes    TEXT NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (queue, visible_at, seq);
CREATE INDEX IF NOT EXISTS messages_receipt ON messages (receipt);
";

/// How often a long poll looks again for a message.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct SqliteEventQueue {
    db: Db,
    name: String,
    dlq: String,
    max_receives: u32,
    clock: Arc<dyn Clock>,
}

impl SqliteEventQueue {
    /// Opens queue `name` (and its DLQ) in the database at `path`. Several
    /// queues may share one database.
    pub fn open(
        path: &Path,
        name: &str,
        max_receives: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        if max_receives == 0 {
            return Err(StoreError::invalid("max receives", "must be at least 1"));
        }
        Ok(Self {
            db: Db::open(path, SCHEMA)?,
            name: name.to_string(),
            dlq: names::dlq(name),
            max_receives,
            clock,
        })
    }

    /// One non-blocking attempt to take up to `max` visible messages.
    async fn take(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        let now = self.clock.now();
        let now_us = micros(now);
        let until = micros(now + to_chrono(visibility));
        let (queue, dlq, max_receives) = (self.name.clone(), self.dlq.clone(), self.max_receives);
        self.db
            .write(move |tx, err| {
                let mut out = Vec::new();
                {
                    let mut select = tx
                        .prepare_cached(
                            "SELECT seq, id, body, attributes, sent_at, receive_count FROM messages
                             WHERE queue = ?1 AND visible_at <= ?2 ORDER BY seq LIMIT ?3",
                        )
                        .map_err(err)?;
                    // Over-fetch: some candidates may be dead-lettered.
                    let rows = select
                        .query_map(params![queue, now_us, (max * 4) as i64], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, i64>(4)?,
                                r.get::<_, u32>(5)?,
                            ))
                        })
                        .map_err(err)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(err)?;
                    for (seq, id, body, attrs, sent_at, count) in rows {
                        if out.len() == max {
                            break;
                        }
                        if count >= max_receives {
                            let mut attributes: BTreeMap<String, String> = from_json(&attrs)?;
                            attributes.insert(
                                ATTR_DEAD_LETTER_REASON.into(),
                                format!(
                                    "received {count} times without success (max {max_receives})"
                                ),
                            );
                            tx.execute(
                                "UPDATE messages SET queue = ?1, visible_at = ?2, receipt = NULL,
                                 attributes = ?3 WHERE seq = ?4",
                                params![dlq, now_us, to_json(&attributes)?, seq],
                            )
                            .map_err(err)?;
                            continue;
                        }
                        let receipt = uuid::Uuid::new_v4().to_string();
                        tx.execute(
                            "UPDATE messages SET receive_count = receive_count + 1,
                             visible_at = ?1, receipt = ?2 WHERE seq = ?3",
                            params![until, receipt, seq],
                        )
                        .map_err(err)?;
                        out.push(ReceivedMessage {
                            id,
                            receipt,
                            body,
                            attributes: from_json(&attrs)?,
                            receive_count: count + 1,
                            sent_at: from_micros(sent_at),
                        });
                    }
                }
                tx.commit().map_err(err)?;
                Ok(out)
            })
            .await
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[async_trait]
impl EventQueue for SqliteEventQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, message: OutgoingMessage) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = micros(self.clock.now());
        let attrs = to_json(&message.attributes)?;
        let (queue, msg_id) = (self.name.clone(), id.clone());
        let err = self.db.err();
        self.db
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO messages (id, queue, body, attributes, sent_at, visible_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![msg_id, queue, message.body, attrs, now],
                )
                .map_err(err)?;
                Ok(())
            })
            .await?;
        Ok(id)
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        check_batch(max)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self.take(max, visibility).await?;
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn extend_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let until = micros(now + to_chrono(visibility));
        let (queue, receipt_s, now_us) = (self.name.clone(), receipt.to_string(), micros(now));
        let err = self.db.err();
        let changed = self
            .db
            .call(move |conn| {
                conn.execute(
                    "UPDATE messages SET visible_at = ?1
                     WHERE queue = ?2 AND receipt = ?3 AND visible_at > ?4",
                    params![until, queue, receipt_s, now_us],
                )
                .map_err(err)
            })
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: format!("in-flight message with receipt {receipt} on {}", self.name),
            });
        }
        Ok(())
    }

    async fn ack(&self, receipt: &str) -> Result<(), StoreError> {
        let (queue, receipt) = (self.name.clone(), receipt.to_string());
        let err = self.db.err();
        self.db
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                    params![queue, receipt],
                )
                .map_err(err)?;
                Ok(())
            })
            .await
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), StoreError> {
        let mut attributes = message.attributes.clone();
        attributes.insert(ATTR_DEAD_LETTER_REASON.into(), reason.to_string());
        let attrs = to_json(&attributes)?;
        let now = micros(self.clock.now());
        let (queue, dlq, receipt) = (self.name.clone(), self.dlq.clone(), message.receipt.clone());
        let err = self.db.err();
        let changed = self
            .db
            .call(move |conn| {
                conn.execute(
                    "UPDATE messages SET queue = ?1, attributes = ?2, visible_at = ?3, receipt = NULL
                     WHERE queue = ?4 AND receipt = ?5",
                    params![dlq, attrs, now, queue, receipt],
                )
                .map_err(err)
            })
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                what: format!("in-flight message {} on {}", message.id, self.name),
            });
        }
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<ReceivedMessage>, StoreError> {
        let dlq = self.dlq.clone();
        let err = self.db.err();
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, body, attributes, sent_at, receive_count FROM messages
                         WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(&err)?;
                let rows = stmt
                    .query_map(params![dlq, max as i64], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, u32>(4)?,
                        ))
                    })
                    .map_err(&err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(&err)?;
                rows.into_iter()
                    .map(|(id, body, attrs, sent_at, count)| {
                        Ok(ReceivedMessage {
                            receipt: String::new(),
                            id,
                            body,
                            attributes: from_json(&attrs)?,
                            receive_count: count,
                            sent_at: from_micros(sent_at),
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let now = micros(self.clock.now());
        let (queue, dlq) = (self.name.clone(), self.dlq.clone());
        let err = self.db.err();
        self.db
            .call(move |conn| {
                let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<u64, StoreError> {
                    conn.query_row(sql, p, |r| r.get::<_, i64>(0))
                        .map(|n| n as u64)
                        .map_err(&err)
                };
                Ok(QueueDepth {
                    visible: count(
                        "SELECT count(*) FROM messages WHERE queue = ?1 AND visible_at <= ?2",
                        &[&queue, &now],
                    )?,
                    in_flight: count(
                        "SELECT count(*) FROM messages WHERE queue = ?1 AND visible_at > ?2",
                        &[&queue, &now],
                    )?,
                    dead_letters: count("SELECT count(*) FROM messages WHERE queue = ?1", &[&dlq])?,
                })
            })
            .await
    }
}
