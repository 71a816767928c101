//! Warnings and errors as the person reading the log needs them: inside a
//! GitHub Actions job, workflow commands (`::warning::`, `::error::`), so
//! they show in the run's summary and on the step; elsewhere plain
//! `runcache: warning: …` lines. Everything the CLI says to stderr about a
//! problem goes through here.
//!
//! May touch: stderr.

use crate::context::RunContext;

/// How a problem is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warning,
    Error,
}

/// The line for `message` at `level`; `actions`: inside GitHub Actions.
pub fn line(level: Level, message: &str, actions: bool) -> String {
    let word = match level {
        Level::Warning => "warning",
        Level::Error => "error",
    };
    if actions {
        // Workflow commands end at a newline; `%`, CR and LF are escaped.
        let escaped = message
            .replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
        format!("::{word} title=runcache::{escaped}")
    } else {
        format!("runcache: {word}: {message}")
    }
}

/// Prints a warning on stderr.
pub fn warning(message: &str) {
    eprintln!(
        "{}",
        line(Level::Warning, message, RunContext::in_github_actions())
    );
}

/// Prints an error on stderr.
pub fn error(message: &str) {
    eprintln!(
        "{}",
        line(Level::Error, message, RunContext::in_github_actions())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_actions_problems_are_workflow_commands() {
        assert_eq!(
            line(Level::Warning, "restore failed: 50% of\nit", true),
            "::warning title=runcache::restore failed: 50%25 of%0Ait"
        );
        assert_eq!(
            line(Level::Error, "no cache", false),
            "runcache: error: no cache"
        );
    }
}
