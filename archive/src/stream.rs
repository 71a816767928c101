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

/// Bytes hashed at a time on the hashing thread, and how many such chunks
/// may wait for it: bounds what [`HashingWriter`] holds at 6 MiB.
const HASH_CHUNK: usize = 1 << 20;
const HASH_DEPTH: usize = 4;

/// Hashes and counts every byte written through it to `inner`. The hashing
/// runs on a thread of its own, fed in chunks, so that it overlaps with
/// producing the bytes: for an incompressible archive, SHA-256 of the
/// output costs about as much as compressing it, and on the thread that
/// feeds zstd it would hold the compression back.
pub(crate) struct HashingWriter<W> {
    inner: W,
    /// Bytes written to `inner` but not yet handed to the hasher.
    chunk: Vec<u8>,
    to_hasher: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    /// Chunks the hasher is done with, for reuse.
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    hasher: Option<std::thread::JoinHandle<Sha256>>,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        let (to_hasher, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_DEPTH);
        let (give_back, spare) = std::sync::mpsc::channel();
        let hasher = std::thread::Builder::new()
            .name("runcache-hash".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                for mut chunk in chunks {
                    hasher.update(&chunk);
                    chunk.clear();
                    let _ = give_back.send(chunk);
                }
                hasher
            })
            .expect("spawning a thread");
        HashingWriter {
            inner,
            chunk: Vec::with_capacity(HASH_CHUNK),
            to_hasher: Some(to_hasher),
            spare,
            hasher: Some(hasher),
            bytes: 0,
        }
    }

    /// Hands the current chunk to the hasher and starts the next one.
    fn hand_over(&mut self) {
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(HASH_CHUNK));
        let full = std::mem::replace(&mut self.chunk, next);
        if let Some(to_hasher) = &self.to_hasher {
            // Only fails if the hasher panicked: `finish` reports that.
            let _ = to_hasher.send(full);
        }
    }

    /// The SHA-256 hex and byte count of everything written, and `inner`.
    pub fn finish(mut self) -> io::Result<(String, u64, W)> {
        if !self.chunk.is_empty() {
            self.hand_over();
        }
        drop(self.to_hasher.take());
        let hasher = self
            .hasher
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        Ok((hex::encode(hasher.finalize()), self.bytes, self.inner))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut written = &buf[..n];
        while !written.is_empty() {
            let room = HASH_CHUNK - self.chunk.len();
            let (now, later) = written.split_at(room.min(written.len()));
            self.chunk.extend_from_slice(now);
            if self.chunk.len() == HASH_CHUNK {
                self.hand_over();
            }
            written = later;
        }
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
