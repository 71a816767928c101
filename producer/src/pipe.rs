//! Bridges between the synchronous archive code (tar, zstd run on blocking
//! threads) and the async ports. Bounded channels keep memory flat: the
//! archiver blocks when the upload falls behind, and an error on either
//! side fails the other instead of truncating the stream.

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use runcache_infra::BlobReader;
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

/// Chunk size handed across the channel.
const CHUNK: usize = 1 << 20;
/// Chunks in flight: with CHUNK this bounds the pipe at 8 MiB.
const DEPTH: usize = 8;

/// The sync end: a `Write` for blocking threads.
pub struct PipeWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

/// A pipe whose writer is sync and whose reader is a [`BlobReader`].
pub fn pipe() -> (PipeWriter, BlobReader) {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        PipeWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        },
        Box::pin(StreamReader::new(stream)),
    )
}

impl PipeWriter {
    fn send(&mut self, item: io::Result<Bytes>) -> io::Result<()> {
        self.tx
            .blocking_send(item)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped reading"))
    }

    /// Flushes what is buffered and ends the stream cleanly.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()
    }

    /// Ends the stream with an error, so the reader fails rather than
    /// seeing a short, clean end.
    pub fn fail(mut self, error: io::Error) {
        let _ = self.send(Err(error));
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            let chunk = self.buf.split().freeze();
            self.send(Ok(chunk))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.send(Ok(chunk))?;
        }
        Ok(())
    }
}
