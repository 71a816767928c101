//! What only the AWS adapters do, against moto: parallel multipart uploads
//! and ranged downloads, aborting interrupted uploads, SQS's redrive policy,
//! UploadPartCopy, idempotent bootstrap, and the errors a user sees when
//! something is missing. (Everything the ports promise is in the
//! conformance suite, which runs on moto as `aws_moto::…`.)

use std::{
    collections::BTreeMap,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use runcache_infra::{
    aws::{self, Clients, S3BlobStore, SqsEventQueue, TransferConfig},
    BlobReader, BlobStore, EventQueue, OutgoingMessage, StoreError,
};
use runcache_schemas::Scope;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use runcache_testkit::moto;

const MIB: u64 = 1 << 20;

/// `len` pseudo-random bytes made as they are read; then, if `then_fail`,
/// an error, or if `then_stall`, a read that never completes.
struct Body {
    left: u64,
    state: u64,
    then_fail: bool,
    then_stall: bool,
}

impl Body {
    fn new(len: u64) -> Self {
        Self {
            left: len,
            state: 0x2545_F491_4F6C_DD1D,
            then_fail: false,
            then_stall: false,
        }
    }
}

impl AsyncRead for Body {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            if self.then_fail {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "runner died",
                )));
            }
            if self.then_stall {
                return Poll::Pending;
            }
            return Poll::Ready(Ok(()));
        }
        let n = (buf.remaining() as u64).min(self.left).min(64 << 10) as usize;
        let mut chunk = Vec::with_capacity(n);
        for _ in 0..n {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.push(self.state as u8);
        }
        buf.put_slice(&chunk);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

async fn sha256(mut r: impl AsyncRead + Unpin) -> (String, u64) {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf).await.expect("read");
        if n == 0 {
            return (hex::encode(hasher.finalize()), total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

async fn store(transfer: TransferConfig) -> (S3BlobStore, Clients) {
    let (sdk, config, _) = moto::fresh(3).await;
    let clients = Clients::new(&sdk);
    (
        S3BlobStore::with_transfer(clients.s3.clone(), config.bucket(), transfer),
        clients,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_move_in_parallel_parts_and_ranges() {
    let (blobs, _) = store(TransferConfig::default()).await;
    let len = 112 * MIB; // over 100 MB: 14 parts of 8 MiB
    let (expected, _) = sha256(Body::new(len)).await;
    let meta = BTreeMap::from([("upload-id".to_string(), "big".to_string())]);
    let put = blobs
        .put("staging/big", Box::pin(Body::new(len)), meta.clone())
        .await
        .unwrap();
    assert_eq!(put.size, len);
    assert_eq!(put.metadata, meta);
    let c = blobs.counters();
    assert_eq!(c.parts_uploaded, 14);
    assert!(
        c.peak_parts_in_flight > 1,
        "parts went up one at a time: {c:?}"
    );
    assert!(c.peak_parts_in_flight <= TransferConfig::default().upload_concurrency);

    let (actual, read) = sha256(blobs.get("staging/big", None).await.unwrap()).await;
    assert_eq!((actual, read), (expected, len));
    let c = blobs.counters();
    assert_eq!(c.chunks_downloaded, 13, "all but the streamed first chunk");
    assert!(
        c.peak_chunks_in_flight > 1,
        "ranges fetched one at a time: {c:?}"
    );
    assert!(blobs.incomplete_uploads().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_failing_midway_is_aborted() {
    let (blobs, _) = store(TransferConfig::default()).await;
    let mut body = Body::new(30 * MIB); // parts 1–3 read, then the body fails
    body.then_fail = true;
    let err = blobs
        .put("staging/dies", Box::pin(body), BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(
        blobs.incomplete_uploads().await.unwrap().is_empty(),
        "the multipart upload was aborted before put returned"
    );
    assert!(blobs.head("staging/dies").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_aborted() {
    let (blobs, _) = store(TransferConfig::default()).await;
    let blobs = Arc::new(blobs);
    let mut body = Body::new(20 * MIB); // two full parts, then nothing ever
    body.then_stall = true;
    let task = {
        let blobs = blobs.clone();
        tokio::spawn(async move {
            blobs
                .put(
                    "staging/cancelled",
                    Box::pin(body) as BlobReader,
                    BTreeMap::new(),
                )
                .await
        })
    };
    // Wait until the multipart upload exists and parts went up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while blobs.counters().parts_uploaded < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "parts never uploaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(blobs.incomplete_uploads().await.unwrap().len(), 1);
    task.abort(); // drops the put future mid-upload
    assert!(task.await.unwrap_err().is_cancelled());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = blobs.incomplete_uploads().await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped upload was never aborted: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(blobs.head("staging/cancelled").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_use_upload_part_copy() {
    // Thresholds scaled down so moto need not hold a 5 GiB object.
    let transfer = TransferConfig {
        copy_part_threshold: 6 * MIB,
        copy_part_size: 5 * MIB,
        ..TransferConfig::default()
    };
    let (blobs, _) = store(transfer).await;
    let len = 13 * MIB;
    let meta = BTreeMap::from([("claimed-hash".to_string(), "sha256:ab".to_string())]);
    blobs
        .put("staging/src", Box::pin(Body::new(len)), meta.clone())
        .await
        .unwrap();
    let before = blobs.counters().parts_uploaded;
    let copied = blobs.copy("staging/src", "artifacts/dst").await.unwrap();
    assert_eq!(copied.size, len);
    assert_eq!(copied.metadata, meta, "metadata travels with the copy");
    assert_eq!(blobs.counters().parts_uploaded - before, 3, "5 + 5 + 3 MiB");
    let (expected, _) = sha256(Body::new(len)).await;
    let (actual, _) = sha256(blobs.get("artifacts/dst", None).await.unwrap()).await;
    assert_eq!(actual, expected);
    assert!(blobs.incomplete_uploads().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redrive_policy_dead_letters_a_never_acked_message() {
    let (sdk, config, _) = moto::fresh(2).await;
    let clients = Clients::new(&sdk);
    let queue = SqsEventQueue::new(clients.sqs.clone(), config.staged_queue());
    let id = queue.send(OutgoingMessage::new("poison")).await.unwrap();
    let visibility = Duration::from_secs(1);
    for n in 1..=2 {
        let got = queue
            .receive(1, Duration::from_secs(3), visibility)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "delivery {n}");
        assert_eq!(got[0].receive_count, n);
        tokio::time::sleep(visibility + Duration::from_millis(500)).await;
    }
    assert!(queue
        .receive(1, Duration::from_secs(1), visibility)
        .await
        .unwrap()
        .is_empty());
    // SQS itself moved it: the DLQ holds it, found by its own URL.
    let dlq_url = clients
        .sqs
        .get_queue_url()
        .queue_name(runcache_infra::names::dlq(&config.staged_queue()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let raw = clients
        .sqs
        .receive_message()
        .queue_url(dlq_url)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.messages().len(), 1);
    assert_eq!(raw.messages()[0].message_id(), Some(id.as_str()));
    assert_eq!(queue.depth().await.unwrap().dead_letters, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_is_idempotent() {
    let (sdk, config, first) = moto::fresh(5).await;
    // bucket + 2 tables + 3 queues with their DLQs
    assert_eq!(first.created(), 9, "{first}");
    let again = aws::bootstrap_with(&Clients::new(&sdk), &config)
        .await
        .unwrap();
    assert!(again.all_present(), "{again}");
    assert_eq!(again.items.len(), 9);
    let text = again.to_string();
    assert!(
        text.contains(&config.bucket()) && text.contains("0 created"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_resources_say_how_to_create_them() {
    let sdk = moto::sdk_config().await;
    let config = moto::unique_config(5); // never bootstrapped
    let backend = aws::connect_with(&sdk, &config).expect("connect does no I/O");
    let hint = |e: &StoreError, name: &str| {
        let text = e.to_string();
        assert!(matches!(e, StoreError::NotFound { .. }), "{text}");
        assert!(text.contains(name), "{text}");
        assert!(text.contains("runcache admin bootstrap"), "{text}");
        assert!(text.contains("terraform/"), "{text}");
    };
    let reader = || Box::pin(io::Cursor::new(b"x".to_vec())) as BlobReader;
    let err = backend
        .blobs
        .put("staging/x", reader(), BTreeMap::new())
        .await
        .unwrap_err();
    hint(&err, &config.bucket());
    let err = backend.blobs.get("artifacts/x", None).await.err().unwrap();
    hint(&err, &config.bucket());
    let err = backend
        .staged
        .send(OutgoingMessage::new("{}"))
        .await
        .unwrap_err();
    hint(&err, &config.staged_queue());
    let err = backend
        .index
        .get(&Scope::new("acme/app", "refs/heads/main"), "v", "k")
        .await
        .unwrap_err();
    hint(&err, &config.index_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_say_where_they_come_from() {
    let empty = tempfile::NamedTempFile::new().unwrap();
    let profile = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .profile_files(
            aws_runtime::env_config::file::EnvConfigFiles::builder()
                .with_file(
                    aws_runtime::env_config::file::EnvConfigFileKind::Credentials,
                    empty.path(),
                )
                .build(),
        )
        .profile_name("runcache-test-no-such-profile")
        .build();
    let sdk = aws::loader()
        .endpoint_url(&moto::moto().endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(profile)
        .load()
        .await;
    let config = moto::unique_config(5);
    let backend = aws::connect_with(&sdk, &config).unwrap();
    let err = backend
        .staged
        .send(OutgoingMessage::new("{}"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Invalid { .. }), "{text}");
    assert!(text.contains("AWS credentials"), "{text}");
    assert!(text.contains("AWS_PROFILE"), "{text}");
}
