//! EventQueue cases: SQS semantics on every backend.

use std::time::Duration;

use runcache_infra::{
    queue::{ATTR_DEAD_LETTER_REASON, ATTR_SCHEMA},
    OutgoingMessage, StoreError,
};

use super::{fixtures::MAX_RECEIVES, Fixture};

const NO_WAIT: Duration = Duration::ZERO;

fn msg(body: &str) -> OutgoingMessage {
    OutgoingMessage::new(body).with_attribute(ATTR_SCHEMA, "artifact.staged")
}

pub async fn send_receive_ack(fx: &Fixture) {
    let id = fx.queue.send(msg("one")).await.unwrap();
    let got = fx
        .queue
        .receive(10, Duration::from_secs(1), fx.visibility)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].body, "one");
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(
        got[0].attributes.get(ATTR_SCHEMA).map(String::as_str),
        Some("artifact.staged")
    );
    fx.queue.ack(&got[0].receipt).await.unwrap();
    fx.elapse(fx.visibility * 2).await;
    assert!(
        fx.queue
            .receive(10, NO_WAIT, fx.visibility)
            .await
            .unwrap()
            .is_empty(),
        "acked is gone"
    );
}

pub async fn empty_receive_returns_nothing(fx: &Fixture) {
    let got = fx
        .queue
        .receive(1, Duration::from_millis(200), fx.visibility)
        .await
        .unwrap();
    assert!(got.is_empty());
}

pub async fn batch_receive_is_bounded(fx: &Fixture) {
    for i in 0..13 {
        fx.queue.send(msg(&format!("m{i}"))).await.unwrap();
    }
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let got = fx
            .queue
            .receive(4, NO_WAIT, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(got.len() <= 4);
        bodies.extend(got.into_iter().map(|m| m.body));
        if bodies.len() == 13 {
            break;
        }
    }
    bodies.sort();
    let mut expected: Vec<String> = (0..13).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(
        bodies, expected,
        "each message delivered once while in flight"
    );
    for bad in [0, 11] {
        assert!(matches!(
            fx.queue.receive(bad, NO_WAIT, fx.visibility).await,
            Err(StoreError::Invalid { .. })
        ));
    }
}

/// A batch of more than SQS's ten per request is sent whole, each message
/// with its attributes.
pub async fn send_batch_delivers_every_message(fx: &Fixture) {
    let sent: Vec<String> = (0..23).map(|i| format!("b{i}")).collect();
    fx.queue
        .send_batch(sent.iter().map(|b| msg(b)).collect())
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        for m in fx.queue.receive(10, NO_WAIT, fx.visibility).await.unwrap() {
            assert_eq!(
                m.attributes.get(ATTR_SCHEMA).map(String::as_str),
                Some("artifact.staged")
            );
            fx.queue.ack(&m.receipt).await.unwrap();
            got.push(m.body);
        }
        if got.len() == sent.len() {
            break;
        }
    }
    got.sort();
    let mut want = sent;
    want.sort();
    assert_eq!(got, want);
}

pub async fn redelivered_after_visibility_timeout(fx: &Fixture) {
    fx.queue.send(msg("again")).await.unwrap();
    let first = fx.queue.receive(1, NO_WAIT, fx.visibility).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        fx.queue
            .receive(1, NO_WAIT, fx.visibility)
            .await
            .unwrap()
            .is_empty(),
        "invisible while in flight"
    );
    fx.elapse(fx.visibility + Duration::from_millis(500)).await;
    let second = fx
        .queue
        .receive(1, Duration::from_secs(2), fx.visibility)
        .await
        .unwrap();
    assert_eq!(second.len(), 1, "redelivered after the visibility timeout");
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(
        second[0].receipt, first[0].receipt,
        "each delivery has its own receipt"
    );
    fx.queue.ack(&second[0].receipt).await.unwrap();
}

pub async fn extend_visibility_keeps_message_hidden(fx: &Fixture) {
    fx.queue.send(msg("long work")).await.unwrap();
    let got = fx.queue.receive(1, NO_WAIT, fx.visibility).await.unwrap();
    fx.queue
        .extend_visibility(&got[0].receipt, fx.visibility * 5)
        .await
        .unwrap();
    fx.elapse(fx.visibility * 2).await;
    assert!(
        fx.queue
            .receive(1, NO_WAIT, fx.visibility)
            .await
            .unwrap()
            .is_empty(),
        "extension keeps it hidden past the first timeout"
    );
    fx.queue.ack(&got[0].receipt).await.unwrap();
    let depth = fx.queue.depth().await.unwrap();
    assert_eq!(depth.visible + depth.in_flight, 0);
}

pub async fn dead_lettered_after_max_receives(fx: &Fixture) {
    let id = fx.queue.send(msg("poison")).await.unwrap();
    for n in 1..=MAX_RECEIVES {
        let got = fx
            .queue
            .receive(1, Duration::from_secs(2), fx.visibility)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "delivery {n}");
        assert_eq!(got[0].receive_count, n);
        // The handler fails: no ack; let visibility lapse.
        fx.elapse(fx.visibility + Duration::from_millis(500)).await;
    }
    let after = fx
        .queue
        .receive(1, Duration::from_secs(1), fx.visibility)
        .await
        .unwrap();
    assert!(
        after.is_empty(),
        "not delivered a {}th time",
        MAX_RECEIVES + 1
    );
    let dead = fx.queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].body, "poison");
}

pub async fn explicit_dead_letter_keeps_reason(fx: &Fixture) {
    fx.queue.send(msg("{not json")).await.unwrap();
    let got = fx.queue.receive(1, NO_WAIT, fx.visibility).await.unwrap();
    fx.queue
        .dead_letter(&got[0], "malformed document")
        .await
        .unwrap();
    let dead = fx.queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "{not json");
    assert_eq!(
        dead[0]
            .attributes
            .get(ATTR_DEAD_LETTER_REASON)
            .map(String::as_str),
        Some("malformed document")
    );
    assert_eq!(
        dead[0].attributes.get(ATTR_SCHEMA).map(String::as_str),
        Some("artifact.staged")
    );
    fx.elapse(fx.visibility * 2).await;
    assert!(fx
        .queue
        .receive(1, NO_WAIT, fx.visibility)
        .await
        .unwrap()
        .is_empty());
}

pub async fn depth_counts_visible_in_flight_and_dead(fx: &Fixture) {
    for i in 0..3 {
        fx.queue.send(msg(&format!("d{i}"))).await.unwrap();
    }
    let got = fx
        .queue
        .receive(1, NO_WAIT, Duration::from_secs(60))
        .await
        .unwrap();
    let got2 = fx
        .queue
        .receive(1, NO_WAIT, Duration::from_secs(60))
        .await
        .unwrap();
    fx.queue.dead_letter(&got2[0], "test").await.unwrap();
    let depth = fx.queue.depth().await.unwrap();
    assert_eq!(depth.visible, 1);
    assert_eq!(depth.in_flight, 1);
    assert_eq!(depth.dead_letters, 1);
    fx.queue.ack(&got[0].receipt).await.unwrap();
}
