//! Transfer progress on stderr: bytes, rate and ETA, shown only for
//! transfers that last more than a couple of seconds, only on a terminal,
//! never with `--quiet`. The one-line summary the commands print is
//! separate and always there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runcache_infra::BlobReader;

/// How long a transfer runs before its progress bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(2);

/// How often a followed count is copied onto its bar.
const TICK: Duration = Duration::from_millis(100);

/// A bar that stays hidden until [`SHOW_AFTER`] has passed. With no
/// `total`, set one with `set_length` before it shows (a save does, once
/// its paths are resolved); until then its total reads 0 B.
pub fn bar(label: &str, total: Option<u64>, enabled: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    show_later(&bar, enabled, false);
    bar
}

/// Draws `bar` on stderr once [`SHOW_AFTER`] has passed, if `enabled` and
/// stderr is a terminal; `tick`: redraw on a timer (a spinner).
fn show_later(bar: &ProgressBar, enabled: bool, tick: bool) {
    if enabled && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let delayed = bar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHOW_AFTER).await;
            if !delayed.is_finished() {
                delayed.set_draw_target(ProgressDrawTarget::stderr());
                if tick {
                    delayed.enable_steady_tick(TICK);
                }
            }
        });
    }
}

/// A spinner with a count and a message, for work whose total is not known
/// up front (`admin verify`): hidden like [`bar`] until [`SHOW_AFTER`],
/// only on a terminal.
pub fn counter(label: &str, enabled: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {prefix} {human_pos} {msg} ({elapsed})")
    {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    show_later(&bar, enabled, true);
    bar
}

/// Keeps `bar` at the count another thread publishes in `done` until the
/// returned task is aborted (or the bar finishes).
pub fn follow(bar: &ProgressBar, done: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let bar = bar.clone();
    tokio::spawn(async move {
        while !bar.is_finished() {
            bar.set_position(done.load(Ordering::Relaxed));
            tokio::time::sleep(TICK).await;
        }
    })
}

/// Wraps a stream so that reading it advances `bar`.
pub fn track(reader: BlobReader, bar: &ProgressBar) -> BlobReader {
    Box::pin(bar.wrap_async_read(reader))
}
