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

/// Decompressed bytes handed from the read-ahead thread at a time, and how
/// many chunks may wait: bounds the read-ahead at 4 MiB.
const READ_AHEAD_CHUNK: usize = 1 << 20;
const READ_AHEAD_DEPTH: usize = 4;

/// What the read-ahead thread hands over: decompressed bytes, or why it
/// stopped.
enum Ahead {
    Bytes(Vec<u8>),
    /// Reading the archive itself failed.
    InputFailed(io::Error),
    /// The archive could not be decompressed.
    Corrupt(io::Error),
}

/// Reads the zstd stream `inner` to its end on a thread of `scope`: hashes
/// and counts every compressed byte, decompresses, and hands the
/// decompressed bytes over through a bounded channel. Reading, hashing and
/// decompressing thus overlap with unpacking on the caller's thread (as
/// `zstd -d | tar -x` runs in two processes). Whatever follows the last
/// zstd frame is read and hashed too. The thread returns the SHA-256 hex
/// and byte count of the compressed input once it is exhausted; it stops
/// early when the returned reader is dropped.
pub(crate) fn decompressing_read_ahead<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    inner: R,
    failed: Rc<Cell<bool>>,
) -> (
    ChunkReader,
    std::thread::ScopedJoinHandle<'scope, (String, u64)>,
) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Ahead>(READ_AHEAD_DEPTH);
    let reader = scope.spawn(move || {
        let input = HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            failed: false,
        };
        let mut decoder = match zstd::stream::read::Decoder::new(input) {
            Ok(decoder) => decoder,
            Err(e) => {
                let _ = tx.send(Ahead::Corrupt(e));
                return (String::new(), 0);
            }
        };
        loop {
            let mut chunk = vec![0; READ_AHEAD_CHUNK];
            match fill(&mut decoder, &mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.send(Ahead::Bytes(chunk)).is_err() {
                        break; // the caller stopped
                    }
                }
                Err(e) => {
                    let _ = tx.send(if decoder.get_ref().get_ref().failed {
                        Ahead::InputFailed(e)
                    } else {
                        Ahead::Corrupt(e)
                    });
                    break;
                }
            }
        }
        let mut rest = decoder.finish();
        if let Err(e) = io::copy(&mut rest, &mut io::sink()) {
            let _ = tx.send(Ahead::InputFailed(e));
        }
        let input = rest.into_inner();
        (hex::encode(input.hasher.finalize()), input.bytes)
    });
    let chunks = ChunkReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
        failed,
    };
    (chunks, reader)
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

/// Hashes and counts what is read from `inner`, and remembers whether
/// `inner` itself failed.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    failed: bool,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}

/// The caller's end of [`decompressing_read_ahead`]: the decompressed
/// stream. Records (in a flag shared with the caller) whether the input
/// itself failed, so that an error surfacing through the tar parser can be
/// told apart from a corrupt archive.
pub(crate) struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Ahead>,
    chunk: Vec<u8>,
    pos: usize,
    failed: Rc<Cell<bool>>,
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
