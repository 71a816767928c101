//! Transfer progress on stderr: bytes, rate and ETA, shown only for
//! transfers that last more than a couple of seconds, only on a terminal,
//! never with `--quiet`. The one-line summary the commands print is
//! separate and always there.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runcache_infra::BlobReader;

/// How long a transfer runs before its progress bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(2);

/// A bar that stays hidden until [`SHOW_AFTER`] has passed.
pub fn bar(label: &str, total: Option<u64>, enabled: bool) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::hidden()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
    };
    let template = if total.is_some() {
        "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{prefix} {bytes} {bytes_per_sec} {elapsed}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    if enabled && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let delayed = bar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHOW_AFTER).await;
            if !delayed.is_finished() {
                delayed.set_draw_target(ProgressDrawTarget::stderr());
            }
        });
    }
    bar
}

/// Wraps a stream so that reading it advances `bar`.
pub fn track(reader: BlobReader, bar: &ProgressBar) -> BlobReader {
    Box::pin(bar.wrap_async_read(reader))
}
