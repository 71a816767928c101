//! BlobStore cases.

use std::{
    collections::BTreeMap,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use runcache_infra::{BlobReader, StoreError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::Fixture;

fn reader(bytes: &[u8]) -> BlobReader {
    Box::pin(io::Cursor::new(bytes.to_vec()))
}

async fn read_all(mut r: BlobReader) -> Vec<u8> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read blob");
    out
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn put_get_head_round_trip(fx: &Fixture) {
    let m = meta(&[("upload-id", "u1"), ("claimed-hash", "sha256:00")]);
    let put = fx
        .blobs
        .put("staging/u1", reader(b"hello world"), m.clone())
        .await
        .unwrap();
    assert_eq!(put.size, 11);
    assert_eq!(
        read_all(fx.blobs.get("staging/u1", None).await.unwrap()).await,
        b"hello world"
    );
    let head = fx.blobs.head("staging/u1").await.unwrap().expect("exists");
    assert_eq!(head.size, 11);
    assert_eq!(head.key, "staging/u1");
    assert_eq!(head.metadata, m);
}

pub async fn missing_keys(fx: &Fixture) {
    assert!(fx.blobs.head("artifacts/nope").await.unwrap().is_none());
    assert!(matches!(
        fx.blobs.get("artifacts/nope", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        fx.blobs.copy("artifacts/nope", "artifacts/other").await,
        Err(StoreError::NotFound { .. })
    ));
    fx.blobs
        .delete("artifacts/nope")
        .await
        .expect("deleting a missing key is fine");
    assert!(fx.blobs.head("artifacts/other").await.unwrap().is_none());
}

pub async fn range_reads(fx: &Fixture) {
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    fx.blobs
        .put("artifacts/r", reader(&data), BTreeMap::new())
        .await
        .unwrap();
    let part = read_all(fx.blobs.get("artifacts/r", Some(100..1100)).await.unwrap()).await;
    assert_eq!(part, &data[100..1100]);
    let tail = read_all(
        fx.blobs
            .get("artifacts/r", Some(9_990..10_000))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tail, &data[9_990..]);
}

pub async fn put_replaces_whole_object(fx: &Fixture) {
    fx.blobs
        .put(
            "metadata/x.json",
            reader(&[b'a'; 5000]),
            meta(&[("v", "1")]),
        )
        .await
        .unwrap();
    fx.blobs
        .put("metadata/x.json", reader(b"short"), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        read_all(fx.blobs.get("metadata/x.json", None).await.unwrap()).await,
        b"short"
    );
    let head = fx.blobs.head("metadata/x.json").await.unwrap().unwrap();
    assert_eq!(head.size, 5);
    assert!(
        head.metadata.is_empty(),
        "old metadata must not survive a replace"
    );
}

pub async fn copy_carries_bytes_and_metadata(fx: &Fixture) {
    let m = meta(&[("upload-id", "u2")]);
    fx.blobs
        .put("staging/u2", reader(b"payload"), m.clone())
        .await
        .unwrap();
    let copied = fx.blobs.copy("staging/u2", "artifacts/abc").await.unwrap();
    assert_eq!(copied.size, 7);
    // The copy is independent of its source.
    fx.blobs.delete("staging/u2").await.unwrap();
    assert_eq!(
        read_all(fx.blobs.get("artifacts/abc", None).await.unwrap()).await,
        b"payload"
    );
    assert_eq!(
        fx.blobs
            .head("artifacts/abc")
            .await
            .unwrap()
            .unwrap()
            .metadata,
        m
    );
}

pub async fn list_by_prefix_in_pages(fx: &Fixture) {
    for i in 0..7 {
        fx.blobs
            .put(
                &format!("artifacts/k{i}"),
                reader(&[i as u8; 3]),
                BTreeMap::new(),
            )
            .await
            .unwrap();
    }
    fx.blobs
        .put("staging/other", reader(b"x"), BTreeMap::new())
        .await
        .unwrap();
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = fx
            .blobs
            .list("artifacts/", after.as_deref(), 3)
            .await
            .unwrap();
        assert!(page.objects.len() <= 3);
        pages += 1;
        keys.extend(page.objects.iter().map(|o| o.key.clone()));
        assert!(page.objects.iter().all(|o| o.size == 3));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("artifacts/k{i}")).collect();
    assert_eq!(keys, expected, "lexicographic, complete, no duplicates");
    assert!(pages >= 3);
    let empty = fx.blobs.list("quarantine/", None, 10).await.unwrap();
    assert!(empty.objects.is_empty() && empty.next.is_none());
}

pub async fn delete_many_ignores_missing(fx: &Fixture) {
    for k in ["staging/a", "staging/b"] {
        fx.blobs
            .put(k, reader(b"1"), BTreeMap::new())
            .await
            .unwrap();
    }
    fx.blobs
        .delete_many(&[
            "staging/a".into(),
            "staging/b".into(),
            "staging/never".into(),
        ])
        .await
        .unwrap();
    assert!(fx
        .blobs
        .list("staging/", None, 10)
        .await
        .unwrap()
        .objects
        .is_empty());
}

pub async fn invalid_keys_are_refused(fx: &Fixture) {
    for bad in [
        "",
        "/etc/passwd",
        "artifacts/../../x",
        "a//b",
        "./a",
        "a/./b",
    ] {
        let err = fx
            .blobs
            .put(bad, reader(b"x"), BTreeMap::new())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{bad:?}: {err}");
        assert!(matches!(
            fx.blobs.get(bad, None).await,
            Err(StoreError::Invalid { .. })
        ));
    }
}

/// A body that yields some bytes, then fails: an upload killed midway.
struct FailingReader {
    sent: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.sent >= 3 << 20 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "runner died",
            )));
        }
        let n = buf.remaining().min(64 << 10);
        buf.put_slice(&vec![7u8; n]);
        self.sent += n;
        Poll::Ready(Ok(()))
    }
}

pub async fn failed_put_leaves_nothing(fx: &Fixture) {
    fx.blobs
        .put("staging/keep", reader(b"old"), BTreeMap::new())
        .await
        .unwrap();
    let err = fx
        .blobs
        .put(
            "staging/keep",
            Box::pin(FailingReader { sent: 0 }),
            BTreeMap::new(),
        )
        .await;
    assert!(err.is_err(), "a failing body must fail the put");
    let err = fx
        .blobs
        .put(
            "staging/new",
            Box::pin(FailingReader { sent: 0 }),
            BTreeMap::new(),
        )
        .await;
    assert!(err.is_err());
    assert!(
        fx.blobs.head("staging/new").await.unwrap().is_none(),
        "no partial object"
    );
    assert_eq!(
        read_all(fx.blobs.get("staging/keep", None).await.unwrap()).await,
        b"old",
        "a failed replace keeps the old object"
    );
    let far_future = chrono::Utc::now() + chrono::Duration::days(1);
    fx.blobs.abort_stale_uploads(far_future).await.unwrap();
    assert_eq!(
        fx.blobs.abort_stale_uploads(far_future).await.unwrap(),
        0,
        "nothing left to abort"
    );
    let keys: Vec<_> = fx
        .blobs
        .list("", None, 100)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec!["staging/keep".to_string()]);
}

/// `len` bytes of a repeated pseudo-random chunk, generated as it is read.
struct Generated {
    chunk: Vec<u8>,
    left: u64,
    pos: usize,
}

impl Generated {
    fn new(len: u64) -> Self {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let chunk = (0..(1 << 20))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        Self {
            chunk,
            left: len,
            pos: 0,
        }
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (self.chunk.len() - self.pos)
            .min(buf.remaining())
            .min(self.left as usize);
        let pos = self.pos;
        buf.put_slice(&self.chunk[pos..pos + n]);
        self.pos = (pos + n) % self.chunk.len();
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Hashes a stream chunk by chunk, never holding it.
async fn sha256_of(mut r: impl AsyncRead + Unpin) -> (String, u64) {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (hex::encode(hasher.finalize()), total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

pub async fn large_blob_streams_with_bounded_memory(fx: &Fixture) {
    let len = fx.large_blob_bytes;
    let (expected, _) = sha256_of(Generated::new(len)).await;
    crate::PEAK_ALLOC.reset_peak_usage();
    let before = crate::PEAK_ALLOC.current_usage();
    let put = fx
        .blobs
        .put(
            "artifacts/big",
            Box::pin(Generated::new(len)),
            BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(put.size, len);
    let (actual, read) = sha256_of(fx.blobs.get("artifacts/big", None).await.unwrap()).await;
    let peak = crate::PEAK_ALLOC.peak_usage().saturating_sub(before);
    assert_eq!(read, len);
    assert_eq!(actual, expected, "read back byte-identical");
    assert!(
        peak >= 1 << 20,
        "the allocator counter sees the I/O buffers"
    );
    // Other cases run in parallel in this process, so allow them room; a
    // store that buffered the object would need `len` bytes.
    let bound = 96 << 20;
    assert!(
        (peak as u64) < bound.min(len / 4).max(32 << 20),
        "peak memory grew by {} MiB streaming {} MiB",
        peak >> 20,
        len >> 20
    );
}

/// An empty object is an object: S3 refuses ranges on it (416), so a
/// whole-object read must not ask for one blindly.
pub async fn empty_blob_round_trip(fx: &Fixture) {
    let put = fx
        .blobs
        .put(
            "metadata/empty.json",
            reader(b""),
            meta(&[("kind", "empty")]),
        )
        .await
        .unwrap();
    assert_eq!(put.size, 0);
    assert_eq!(
        read_all(fx.blobs.get("metadata/empty.json", None).await.unwrap()).await,
        b""
    );
    let head = fx
        .blobs
        .head("metadata/empty.json")
        .await
        .unwrap()
        .expect("exists");
    assert_eq!((head.size, head.metadata), (0, meta(&[("kind", "empty")])));
    let copied = fx
        .blobs
        .copy("metadata/empty.json", "metadata/empty-copy.json")
        .await
        .unwrap();
    assert_eq!(copied.size, 0);
}

/// The etag is what lets promote trust a digest computed while writing
/// (`WrittenUpload`): the same while the object is untouched, different
/// once other bytes are put there, as reported by put, head and list.
pub async fn etag_holds_until_the_bytes_are_replaced(fx: &Fixture) {
    let put = fx
        .blobs
        .put("staging/e1", reader(b"first bytes"), BTreeMap::new())
        .await
        .unwrap();
    let etag = put.etag.clone().expect("put reports an etag");
    let head = fx.blobs.head("staging/e1").await.unwrap().expect("exists");
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()));
    let listed = fx.blobs.list("staging/", None, 10).await.unwrap();
    assert_eq!(listed.objects.len(), 1);
    assert_eq!(listed.objects[0].etag.as_deref(), Some(etag.as_str()));
    let again = fx
        .blobs
        .put("staging/e1", reader(b"other bytes"), BTreeMap::new())
        .await
        .unwrap();
    assert_ne!(again.etag.as_deref(), Some(etag.as_str()));
    let head = fx.blobs.head("staging/e1").await.unwrap().expect("exists");
    assert_eq!(head.etag, again.etag);
}
