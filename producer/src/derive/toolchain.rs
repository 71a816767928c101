//! Toolchain versions: asked of the tools themselves (`node --version`, …)
//! with a timeout, and normalised to `name-version` summaries.

use std::{
    collections::BTreeMap,
    io::Read,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::DeriveError;

/// How to ask a toolchain its version: name, then candidate commands (the
/// first one found on `PATH` answers).
pub const PROBES: &[(&str, &[&[&str]])] = &[
    ("node", &[&["node", "--version"]]),
    (
        "python",
        &[&["python3", "--version"], &["python", "--version"]],
    ),
    ("go", &[&["go", "version"]]),
    ("rustc", &[&["rustc", "--version"]]),
    // java prints its version on stderr; both streams are read.
    ("java", &[&["java", "-version"]]),
    ("ruby", &[&["ruby", "--version"]]),
];

/// The version of toolchain `name` (one of [`PROBES`]), found by running it
/// in the project directory `dir`, where version managers (rustup's
/// `rust-toolchain.toml`, `.python-version`, `.nvmrc` shims, asdf) pick the
/// version the build will use. `needed_by` (a lockfile path) is for the
/// error message.
pub fn detect_toolchain(
    name: &str,
    needed_by: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<String, DeriveError> {
    let candidates = PROBES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| DeriveError::ToolchainUnknown(name.to_string()))?;
    let mut last = None;
    for command in candidates {
        match probe_version(name, command[0], &command[1..], needed_by, dir, timeout) {
            Err(e @ DeriveError::ToolchainMissing { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| DeriveError::ToolchainUnknown(name.to_string())))
}

/// Runs `program args…` in `dir` (at most `timeout`) and parses a version
/// for toolchain `name` from its stdout and stderr.
pub fn probe_version(
    name: &str,
    program: &str,
    args: &[&str],
    needed_by: &str,
    dir: &Path,
    timeout: Duration,
) -> Result<String, DeriveError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let missing = |problem: String| DeriveError::ToolchainMissing {
        name: name.to_string(),
        command: command.clone(),
        needed_by: needed_by.to_string(),
        problem,
    };
    let out = match run_with_timeout(program, args, Some(dir), timeout) {
        Ok(out) => out,
        Err(RunFailure::NotFound) => return Err(missing("was not found on PATH".into())),
        Err(RunFailure::TimedOut) => {
            return Err(missing(format!(
                "did not answer within {}s",
                timeout.as_secs_f32()
            )))
        }
        Err(RunFailure::Spawn(e)) => return Err(missing(format!("could not start: {e}"))),
    };
    let text = format!("{}\n{}", out.stdout, out.stderr);
    if !out.status.success() {
        return Err(missing(format!(
            "failed ({}): {}",
            out.status,
            first_line(&text)
        )));
    }
    parse_version(name, &text).ok_or_else(|| DeriveError::ToolchainVersion {
        name: name.to_string(),
        command,
        output: first_line(&text),
    })
}

/// The version in a tool's `--version` output: the first word that starts
/// with a digit and has a dot, without quotes or a `v`/`go` prefix.
///
/// `v20.11.0` → `20.11.0`; `Python 3.12.1` → `3.12.1`; `go version
/// go1.22.0 linux/amd64` → `1.22.0`; `rustc 1.85.0 (4d91de4e4 2025-02-17)`
/// → `1.85.0`; `openjdk version "21.0.2" 2024-01-16` → `21.0.2`; `ruby
/// 3.3.0 (…)` → `3.3.0`.
pub fn parse_version(name: &str, output: &str) -> Option<String> {
    output.split_whitespace().find_map(|word| {
        let word = word.trim_matches(|c| matches!(c, '"' | '\'' | ',' | ';' | '(' | ')'));
        let word = match name {
            "go" => word.strip_prefix("go").unwrap_or(word),
            _ => word,
        };
        let word = word.strip_prefix('v').unwrap_or(word);
        (word.starts_with(|c: char| c.is_ascii_digit()) && word.contains('.'))
            .then(|| word.to_string())
    })
}

/// `name-version` pairs sorted by name and joined with `+`
/// (`node-20.11.0+python-3.12.1`); `None` when there are none.
pub fn toolchain_summary(toolchains: &BTreeMap<String, String>) -> Option<String> {
    (!toolchains.is_empty()).then(|| {
        toolchains
            .iter()
            .map(|(name, version)| format!("{name}-{version}"))
            .collect::<Vec<_>>()
            .join("+")
    })
}

fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.unwrap_or("(no output)").chars().take(200).collect()
}

pub(super) struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub(super) enum RunFailure {
    NotFound,
    TimedOut,
    Spawn(std::io::Error),
}

/// Runs a short command, killing it after `timeout`. Output is read on
/// threads so a chatty tool cannot block on a full pipe; a grandchild that
/// keeps a pipe open after the tool exits (version-manager shims) costs at
/// most a short grace period, never a hang.
pub(super) fn run_with_timeout(
    program: &str,
    args: &[&str],
    dir: Option<&Path>,
    timeout: Duration,
) -> Result<RunOutput, RunFailure> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RunFailure::NotFound,
        _ => RunFailure::Spawn(e),
    })?;
    let (tx, rx) = mpsc::channel();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as _),
        child.stderr.take().map(|p| Box::new(p) as _),
    ];
    for (index, pipe) in pipes.into_iter().enumerate() {
        if let Some(mut pipe) = pipe {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send((index, buf));
            });
        }
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunFailure::TimedOut);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(RunFailure::Spawn(e)),
        }
    };
    let mut streams = [Vec::new(), Vec::new()];
    let grace = Instant::now() + Duration::from_millis(500);
    while let Ok((index, buf)) = rx.recv_timeout(grace.saturating_duration_since(Instant::now())) {
        streams[index] = buf;
    }
    let [stdout, stderr] = streams.map(|b| String::from_utf8_lossy(&b).into_owned());
    Ok(RunOutput {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_sorted_and_joined() {
        let mut t = BTreeMap::new();
        assert_eq!(toolchain_summary(&t), None);
        t.insert("python".to_string(), "3.12.1".to_string());
        t.insert("node".to_string(), "20.11.0".to_string());
        assert_eq!(
            toolchain_summary(&t).as_deref(),
            Some("node-20.11.0+python-3.12.1")
        );
    }
}
