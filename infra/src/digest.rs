//! SHA-256 of byte streams, for every side that checks content: [`digest`]
//! reads a stream to the end (`admin verify`, the benchmarks), and
//! [`HashingReader`] hashes what passes through it and, at the end, fails
//! the stream unless the bytes are exactly the claimed ones. Used as the
//! body of a put (promote, the sweep), it makes the store refuse (and leave
//! nothing of) a mismatched upload, in the same pass that moves the bytes.
//!
//! May touch: nothing but the stream it wraps.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use runcache_schemas::ContentHash;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// What the bytes really were, once the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    pub hash: ContentHash,
    pub size: u64,
}

/// Shared slot the caller reads after the stream is consumed.
pub type DigestSlot = Arc<Mutex<Option<Digested>>>;

pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    expected: Option<(ContentHash, u64)>,
    slot: DigestSlot,
    done: bool,
}

impl<R> HashingReader<R> {
    /// Hashes `inner`; if `expected` is set, the stream ends with an
    /// `InvalidData` error instead of EOF when hash or size differ.
    pub fn new(inner: R, expected: Option<(ContentHash, u64)>) -> (Self, DigestSlot) {
        let slot = DigestSlot::default();
        (
            Self {
                inner,
                hasher: Sha256::new(),
                size: 0,
                expected,
                slot: slot.clone(),
                done: false,
            },
            slot,
        )
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    this.hasher.update(new);
                    this.size += new.len() as u64;
                    return Poll::Ready(Ok(()));
                }
                this.done = true;
                let hex = hex::encode(std::mem::take(&mut this.hasher).finalize());
                let digested = Digested {
                    hash: ContentHash::from_hex(&hex).expect("sha256 is 64 hex digits"),
                    size: this.size,
                };
                *this.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(digested.clone());
                match &this.expected {
                    Some((hash, size)) if *hash != digested.hash || *size != digested.size => {
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "content is {} ({} bytes), claimed {hash} ({size} bytes)",
                                digested.hash, digested.size
                            ),
                        )))
                    }
                    _ => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

/// Reads `reader` to the end and returns its digest.
pub async fn digest(reader: impl AsyncRead + Unpin) -> io::Result<Digested> {
    let (hashing, slot) = HashingReader::new(reader, None);
    // Large reads: a file behind `reader` costs one blocking-pool round
    // trip per read.
    let mut hashing = tokio::io::BufReader::with_capacity(1 << 20, hashing);
    tokio::io::copy_buf(&mut hashing, &mut tokio::io::sink()).await?;
    let d = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
    d.ok_or_else(|| io::Error::other("stream ended without a digest"))
}
