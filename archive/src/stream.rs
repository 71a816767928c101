//! Stream adapters: hash and count what passes through, or cap it.
//!
//! Touches only the streams they wrap. Per-chunk hot path: no logging here.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::rc::Rc;

use sha2::{Digest, Sha256};

/// Hashes and counts every byte written through it to `inner`.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The SHA-256 hex and byte count of everything written, and `inner`.
    pub fn finish(self) -> (String, u64, W) {
        (hex::encode(self.hasher.finalize()), self.bytes, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes written through it.
pub(crate) struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> CountingWriter<W> {
    pub fn new(inner: W) -> Self {
        CountingWriter { inner, bytes: 0 }
    }

    pub fn finish(self) -> (u64, W) {
        (self.bytes, self.inner)
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes handed from the read-ahead thread at a time, and how many chunks
/// may wait: bounds the read-ahead at 4 MiB.
const READ_AHEAD_CHUNK: usize = 1 << 20;
const READ_AHEAD_DEPTH: usize = 4;

/// Reads `inner` to its end on a thread of `scope`, hashing and counting
/// every byte, and hands the bytes over through a bounded channel: reading
/// and hashing overlap with decompressing and unpacking on the caller's
/// thread (a second core instead of one thread doing everything). The
/// thread returns the SHA-256 hex and byte count once `inner` is exhausted;
/// it stops early when the returned reader is dropped.
pub(crate) fn hashing_read_ahead<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut inner: R,
    failed: Rc<Cell<bool>>,
) -> (
    ChunkReader,
    std::thread::ScopedJoinHandle<'scope, (String, u64)>,
) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(READ_AHEAD_DEPTH);
    let reader = scope.spawn(move || {
        let (mut hasher, mut bytes) = (Sha256::new(), 0u64);
        loop {
            let mut chunk = vec![0; READ_AHEAD_CHUNK];
            let item = match inner.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    hasher.update(&chunk);
                    bytes += n as u64;
                    Ok(chunk)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.send(item).is_err() || stop {
                break;
            }
        }
        (hex::encode(hasher.finalize()), bytes)
    });
    let chunks = ChunkReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
        failed,
    };
    (chunks, reader)
}

/// The caller's end of [`hashing_read_ahead`]. Records (in a flag shared
/// with the caller) whether the input itself failed, so that an error
/// surfacing through the decompressor and the tar parser can be told apart
/// from a corrupt archive.
pub(crate) struct ChunkReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    failed: Rc<Cell<bool>>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => (self.chunk, self.pos) = (chunk, 0),
                Ok(Err(e)) => {
                    self.failed.set(true);
                    return Err(e);
                }
                // The reader thread finished: the input ended.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The error a [`LimitedReader`] returns once its limit is passed; find it
/// with [`LimitExceeded::is`].
#[derive(Debug)]
pub(crate) struct LimitExceeded;

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("decompressed size limit exceeded")
    }
}

impl std::error::Error for LimitExceeded {}

impl LimitExceeded {
    pub fn is(error: &io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.is::<LimitExceeded>())
    }
}

/// Counts bytes read from `inner` and fails once more than `limit` have
/// been read: the decompression-bomb cap, enforced as bytes arrive.
pub(crate) struct LimitedReader<R> {
    inner: R,
    limit: u64,
    bytes: u64,
}

impl<R: Read> LimitedReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        LimitedReader {
            inner,
            limit,
            bytes: 0,
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes > self.limit {
            return Err(io::Error::other(LimitExceeded));
        }
        Ok(n)
    }
}
