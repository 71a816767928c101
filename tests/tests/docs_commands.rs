//! Every shell command in the user guide runs as written: the ```sh blocks
//! of `docs/usage.md`, `cache-keys.md`, `troubleshooting.md`,
//! `security.md` and `dashboard.md` are run in order, page by page, on the local backend in a
//! fresh directory with a fresh `$RUNCACHE_HOME`, the way a new user would
//! paste them.
//!
//! A block is skipped only when it says so: the info string `sh aws` (it
//! needs AWS credentials) or a first line `# docs-test: skip`. Examples of
//! output and workflow YAML use ```text / ```yaml and are not run.

use std::{fs, process::Command};

use runcache_e2e::{binaries, workspace};

const PAGES: [&str; 5] = [
    "docs/usage.md",
    "docs/cache-keys.md",
    "docs/troubleshooting.md",
    "docs/security.md",
    "docs/dashboard.md",
];

/// One fenced shell block and where it starts.
#[derive(Debug)]
struct Block {
    line: usize,
    script: String,
    skip: bool,
}

/// Where the extractor is in a page.
enum Fence {
    Outside,
    /// In a ```sh block that started on `line`.
    Shell {
        line: usize,
        skip: bool,
        script: String,
    },
    /// In any other fenced block (```yaml, ```text, a bare fence).
    Other,
}

/// The ```sh blocks of a Markdown page, in order.
fn shell_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut fence = Fence::Outside;
    for (i, text) in markdown.lines().enumerate() {
        let marker = text.trim_start().strip_prefix("```");
        fence = match (fence, marker) {
            (Fence::Outside, Some(info)) => {
                let mut words = info.split_whitespace();
                if words.next() == Some("sh") {
                    Fence::Shell {
                        line: i + 1,
                        skip: words.any(|w| w == "aws"),
                        script: String::new(),
                    }
                } else {
                    Fence::Other
                }
            }
            (Fence::Shell { line, skip, script }, Some(_)) => {
                let skip = skip || script.trim_start().starts_with("# docs-test: skip");
                blocks.push(Block { line, script, skip });
                Fence::Outside
            }
            (
                Fence::Shell {
                    line,
                    skip,
                    mut script,
                },
                None,
            ) => {
                script.push_str(text);
                script.push('\n');
                Fence::Shell { line, skip, script }
            }
            (Fence::Other, Some(_)) => Fence::Outside,
            (state, _) => state,
        };
    }
    blocks
}

#[test]
fn the_extractor_finds_sh_blocks_and_honours_skips() {
    let page = "text\n```sh\necho one\n```\n```yaml\nrun: no\n```\n```sh aws\naws s3 ls\n```\n\
                ```sh\n# docs-test: skip\nexit 1\n```\n```\nplain\n```\n```sh\necho two\n```\n";
    let blocks = shell_blocks(page);
    let got: Vec<(&str, bool)> = blocks.iter().map(|b| (b.script.as_str(), b.skip)).collect();
    assert_eq!(
        got,
        [
            ("echo one\n", false),
            ("aws s3 ls\n", true),
            ("# docs-test: skip\nexit 1\n", true),
            ("echo two\n", false),
        ]
    );
    assert_eq!(blocks[0].line, 2);
}

#[test]
#[allow(clippy::disallowed_methods)] // passes the test runner's PATH on
fn every_shell_command_in_the_user_guide_runs_as_written() {
    let bin = binaries();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut failures = Vec::new();
    let mut ran = 0;
    for page in PAGES {
        let text = fs::read_to_string(workspace().join(page))
            .unwrap_or_else(|e| panic!("reading {page}: {e}"));
        let blocks = shell_blocks(&text);
        assert!(!blocks.is_empty(), "{page} has no ```sh block");
        let skipped = blocks.iter().filter(|b| b.skip).count();
        assert!(
            skipped * 4 <= blocks.len(),
            "{page}: {skipped} of {} blocks skipped; keep skipped blocks few",
            blocks.len()
        );
        // One fresh user per page: blocks of a page build on each other.
        let sandbox = tempfile::tempdir().unwrap();
        let work = sandbox.path().join("work");
        fs::create_dir_all(&work).unwrap();
        for block in blocks.iter().filter(|b| !b.skip) {
            ran += 1;
            let out = Command::new("timeout")
                .args(["120", "bash", "-euo", "pipefail", "-c", &block.script])
                .current_dir(&work)
                .env_clear()
                .env("PATH", &path)
                .env("HOME", sandbox.path())
                .env("TMPDIR", sandbox.path())
                .env("RUNCACHE_HOME", sandbox.path().join("runcache-home"))
                .env("RUNCACHE_LOG", "error")
                .output()
                .expect("running bash");
            if !out.status.success() {
                failures.push(format!(
                    "{page}:{} exited {:?}\n--- block\n{}--- stdout\n{}--- stderr\n{}",
                    block.line,
                    out.status.code(),
                    block.script,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(ran >= 20, "only {ran} blocks ran");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
