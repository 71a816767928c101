//! A page as a person sees it: Debian's headless Chromium driven by the
//! pinned playwright-core (`tests/clients/browser/`), both installed once
//! per test binary by its `install.sh`. [`check_dashboard`] returns the
//! driver's `RESULT {json}`: console errors, requests made, each range's
//! plots (drawn points, data rows, totals) and the narrow-width layout.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde_json::Value;

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/browser")
}

fn installed() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = client_dir();
            let status = Command::new("bash")
                .arg(dir.join("install.sh"))
                .status()
                .unwrap_or_else(|e| panic!("could not run {}/install.sh: {e}", dir.display()));
            assert!(
                status.success(),
                "installing the browser checks failed: they need Debian's Chromium \
                 (apt-get install chromium) and Node.js 20+ with npm; then \
                 `bash tests/clients/browser/install.sh`"
            );
            dir.join("check-dashboard.mjs")
        })
        .clone()
}

/// Loads `url` (a `file://` page, or an HTTP one with `token` as its
/// bearer token), clicks through every time range, writes a full-page
/// screenshot to `screenshot` and one at 360 px wide beside it.
pub fn check_dashboard(url: &str, token: Option<&str>, screenshot: &Path) -> Value {
    let script = installed();
    let narrow = screenshot.with_extension("narrow.png");
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(url).arg(screenshot).arg(&narrow);
    if let Some(token) = token {
        cmd.env("DASHBOARD_TOKEN", token);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run node {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser check of {url} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line from the browser check:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).expect("the browser check's RESULT is JSON")
}

/// Where tests leave screenshots: `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/test-artifacts
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/test-artifacts");
    dir
}

/// The checks every dashboard load must pass, whatever its data: nothing
/// logged, nothing fetched, one range shown at a time, each chart's drawn
/// points equal to its data rows, nothing wider than a 360 px screen.
pub fn assert_page_is_sound(result: &Value) {
    assert_eq!(
        result["consoleErrors"],
        Value::Array(vec![]),
        "console: {result}"
    );
    assert_eq!(
        result["pageErrors"],
        Value::Array(vec![]),
        "page errors: {result}"
    );
    assert_eq!(
        result["requests"],
        Value::Array(vec![]),
        "the page fetched: {result}"
    );
    let ranges = result["ranges"].as_object().expect("ranges");
    assert_eq!(ranges.len(), 4, "four time ranges: {result}");
    for (id, view) in ranges {
        assert_eq!(view["visible"], true, "range {id} shows when chosen");
        assert_eq!(view["othersVisible"], 0, "range {id} alone is shown");
        let plots = view["plots"].as_object().expect("plots");
        for name in [
            "hit-rate",
            "stored-bytes",
            "build-time-saved",
            "evictions-invalidations",
            "rejected",
        ] {
            let plot = &plots[name];
            assert!(plot.is_object(), "range {id} lacks plot {name}: {view}");
            assert_eq!(
                plot["circles"], plot["rows"],
                "range {id}, {name}: every data row is one drawn point"
            );
            assert_eq!(
                plot["circles"], plot["drawnCircles"],
                "range {id}, {name}: every point is on screen"
            );
            assert_eq!(
                plot["empty"],
                plot["rows"] == 0,
                "range {id}, {name}: an empty chart says so, and only then"
            );
        }
    }
    let narrow = &result["narrow"];
    assert!(
        narrow["scrollWidth"].as_u64() <= narrow["width"].as_u64(),
        "the page scrolls sideways at 360 px: {narrow}"
    );
    assert_eq!(
        narrow["tooWide"],
        Value::Array(vec![]),
        "too wide at 360 px: {narrow}"
    );
}
