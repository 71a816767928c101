//! Stream adapters: hash and count what passes through, or cap it.
//!
//! Touches only the streams they wrap. Per-chunk hot path: no logging here.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// Where the count is published for another thread, if anyone watches.
    published: Option<Arc<AtomicU64>>,
}

impl<W: Write> CountingWriter<W> {
    pub fn new(inner: W, published: Option<Arc<AtomicU64>>) -> Self {
        CountingWriter {
            inner,
            bytes: 0,
            published,
        }
    }

    pub fn finish(self) -> (u64, W) {
        (self.bytes, self.inner)
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        if let Some(published) = &self.published {
            published.store(self.bytes, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes handed from one read-ahead stage to the next at a time, and how
/// many chunks may wait between two stages: bounds each at 4 MiB.
const READ_AHEAD_CHUNK: usize = 1 << 20;
const READ_AHEAD_DEPTH: usize = 4;

/// What a read-ahead stage hands over: bytes, or why it stopped.
enum Ahead {
    Bytes(Vec<u8>),
    /// Reading the archive itself failed.
    InputFailed(io::Error),
    /// The archive could not be decompressed.
    Corrupt(io::Error),
}

/// Reads the zstd stream `inner` to its end in two stages on threads of
/// `scope`: one reads, hashes and counts every compressed byte (whatever
/// follows the last zstd frame included), the next decompresses; the
/// returned reader yields the decompressed bytes. Reading and hashing,
/// decompressing and the caller's unpacking thus overlap, as `zstd -d |
/// tar -x` runs in two processes: which one dominates depends on the data
/// (hashing for incompressible bytes, file creation for many small files).
/// The join handle gives the SHA-256 hex and byte count of the compressed
/// input once it is exhausted; both stages stop early when the returned
/// reader is dropped.
pub(crate) fn decompressing_read_ahead<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut inner: R,
    failed: Rc<Cell<bool>>,
) -> (
    ChunkReader,
    std::thread::ScopedJoinHandle<'scope, (String, u64)>,
) {
    let (compressed_tx, compressed_rx) = std::sync::mpsc::sync_channel::<Ahead>(READ_AHEAD_DEPTH);
    let hashing = scope.spawn(move || {
        let (mut hasher, mut bytes) = (Sha256::new(), 0u64);
        loop {
            let mut chunk = vec![0; READ_AHEAD_CHUNK];
            let item = match inner.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    hasher.update(&chunk);
                    bytes += n as u64;
                    Ahead::Bytes(chunk)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Ahead::InputFailed(e),
            };
            let stop = !matches!(item, Ahead::Bytes(_));
            if compressed_tx.send(item).is_err() || stop {
                break;
            }
        }
        (hex::encode(hasher.finalize()), bytes)
    });
    let (tx, rx) = std::sync::mpsc::sync_channel::<Ahead>(READ_AHEAD_DEPTH);
    scope.spawn(move || {
        let input_failed = Rc::new(Cell::new(false));
        let compressed = ChunkReader::new(compressed_rx, Rc::clone(&input_failed));
        let classify = |e: io::Error| {
            if input_failed.get() {
                Ahead::InputFailed(e)
            } else {
                Ahead::Corrupt(e)
            }
        };
        let mut decoder = match zstd::stream::read::Decoder::new(compressed) {
            Ok(decoder) => decoder,
            Err(e) => {
                let _ = tx.send(Ahead::Corrupt(e));
                return;
            }
        };
        loop {
            let mut chunk = vec![0; READ_AHEAD_CHUNK];
            match fill(&mut decoder, &mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.send(Ahead::Bytes(chunk)).is_err() {
                        return; // the caller stopped
                    }
                }
                Err(e) => {
                    let _ = tx.send(classify(e));
                    return;
                }
            }
        }
        // Whatever follows the last zstd frame goes through the hashing
        // stage too.
        if let Err(e) = io::copy(&mut decoder.finish(), &mut io::sink()) {
            let _ = tx.send(classify(e));
        }
    });
    (ChunkReader::new(rx, failed), hashing)
}

/// Reads into `buf` until it is full or the input ends.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The receiving end of a read-ahead stage, as a reader. Records (in a
/// flag shared with its owner) whether the input itself failed, so that an
/// error surfacing through the decompressor and the tar parser can be told
/// apart from a corrupt archive.
pub(crate) struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Ahead>,
    chunk: Vec<u8>,
    pos: usize,
    failed: Rc<Cell<bool>>,
}

impl ChunkReader {
    fn new(rx: std::sync::mpsc::Receiver<Ahead>, failed: Rc<Cell<bool>>) -> Self {
        ChunkReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            failed,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ahead::Bytes(chunk)) => (self.chunk, self.pos) = (chunk, 0),
                Ok(Ahead::InputFailed(e)) => {
                    self.failed.set(true);
                    return Err(e);
                }
                Ok(Ahead::Corrupt(e)) => return Err(e),
                // The stage finished: the input ended.
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
