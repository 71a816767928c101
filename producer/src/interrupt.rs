//! Ctrl-C and job cancellation (GitHub cancels a job with SIGINT, then
//! SIGTERM, then kills it). The first signal sets a process-wide flag; the
//! byte streams of a save or restore ([`Interruptible`]) then fail at their
//! next read or write, so the command unwinds through its ordinary error
//! path: the partial upload is deleted (or its multipart upload aborted) and
//! the extraction directory removed, and the binary says so and exits 130.
//! A second signal exits at once.
//!
//! Touches: the flag, and nothing else; the cleanup is the commands' own.

use std::{
    io::{self, Read, Write},
    sync::atomic::{AtomicBool, Ordering},
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The message a stream fails with once interrupted.
pub const MESSAGE: &str = "interrupted by a signal";

/// Whether SIGINT or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Marks the process interrupted (the signal listener calls this).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check() -> io::Result<()> {
    if interrupted() {
        Err(io::Error::other(MESSAGE))
    } else {
        Ok(())
    }
}

/// A reader or writer that fails once the process is interrupted.
pub struct Interruptible<T>(pub T);

impl<R: Read> Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        check()?;
        self.0.read(buf)
    }
}

impl<W: Write> Write for Interruptible<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        check()?;
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        check()?;
        self.0.flush()
    }
}

/// Waits for SIGINT or SIGTERM; on the first, marks the process
/// interrupted and says what happens now; on the second, exits 130.
pub async fn listen() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    for n in 0.. {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if n > 0 {
            eprintln!("runcache: interrupted again; exiting without cleaning up");
            std::process::exit(130);
        }
        interrupt();
        eprintln!("runcache: interrupted; stopping and removing partial files (again to exit now)");
    }
}
