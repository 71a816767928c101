//! `runcache admin dashboard` as a team trying runcache sees it: a run of
//! saves, hits, misses, a rejected upload, an invalidation and an eviction through the
//! binaries on the local default, then the page loaded in headless
//! Chromium; and the page of a `runcache-bench simulate` month.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Output},
};

use runcache_e2e::binaries;
use runcache_testkit::browser::{artifacts_dir, assert_page_is_sound, check_dashboard};
use serde_json::Value;

struct Store {
    home: tempfile::TempDir,
    workspace: tempfile::TempDir,
    bin: PathBuf,
}

impl Store {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            workspace: tempfile::tempdir().unwrap(),
            bin: binaries(),
        }
    }

    fn run(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = Command::new(self.bin.join(program))
            .args(args)
            .current_dir(self.workspace.path())
            .env("RUNCACHE_HOME", self.home.path())
            .env_remove("GITHUB_ACTIONS")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn runcache(&self, args: &[&str]) -> Output {
        self.run("runcache", args, &[])
    }
}

/// Bytes zstd cannot shrink, so an entry's size is about its content's.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn plot<'a>(result: &'a Value, range: &str, name: &str) -> &'a Value {
    &result["ranges"][range]["plots"][name]
}

fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_dashboard_shows_a_runs_hits_misses_invalidation_and_eviction_in_a_browser() {
    let started = chrono::Utc::now();
    let s = Store::new();
    let ws = s.workspace.path();
    fs::create_dir_all(ws.join("small")).unwrap();
    fs::write(ws.join("small/a.txt"), b"hello").unwrap();
    fs::create_dir_all(ws.join("large")).unwrap();
    fs::write(ws.join("large/blob"), noise(40_000, 7)).unwrap();
    let app = ["--repository", "acme/app"];
    let other = ["--repository", "acme/other"];
    let with = |args: &[&str], scope: &[&str]| -> Vec<String> {
        args.iter().chain(scope).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s.runcache(&args)
    };
    run(with(&["save", "--key", "small-1", "--path", "small"], &app));
    run(with(&["save", "--key", "large-1", "--path", "large"], &app));
    run(with(
        &["save", "--key", "<b>other</b>", "--path", "small"],
        &other,
    ));
    // Hits: small-1 twice, the other repository's once; one miss.
    for _ in 0..2 {
        run(with(
            &["restore", "--key", "small-1", "--path", "small"],
            &app,
        ));
    }
    run(with(
        &["restore", "--key", "<b>other</b>", "--path", "small"],
        &other,
    ));
    let miss = run(with(
        &["restore", "--key", "absent", "--path", "small"],
        &app,
    ));
    assert!(String::from_utf8_lossy(&miss.stderr).contains("miss"));
    // One rejected upload: staged without the in-process promote, altered
    // in staging, then refused and quarantined by the promote worker below.
    s.run(
        "runcache",
        &[
            "save",
            "--key",
            "tampered",
            "--path",
            "small",
            "--repository",
            "acme/app",
        ],
        &[("RUNCACHE_INLINE_WORKERS", "false")],
    );
    let staged = walk(&s.home.path().join("blobs/staging"));
    assert_eq!(staged.len(), 1, "one staged upload: {staged:?}");
    let mut bytes = fs::read(&staged[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&staged[0], bytes).unwrap();
    // One invalidation: the other repository's entry.
    run(with(
        &["admin", "invalidate", "--reason", "test invalidation"],
        &other,
    ));
    // One eviction: a quota that holds small-1 but not both; large-1 was
    // never read, so LRU takes it (`all --once` counts the restores
    // before it sweeps).
    let ls = run(with(&["admin", "ls", "--json"], &app));
    let ls: Value = serde_json::from_slice(&ls.stdout).unwrap();
    let size_of = |key: &str| {
        ls["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["cacheKey"] == key)
            .and_then(|e| e["sizeBytes"].as_u64())
            .unwrap_or_else(|| panic!("no {key} in {ls}"))
    };
    let (small, large) = (size_of("small-1"), size_of("large-1"));
    let quota = (small + large - 1).to_string();
    s.run(
        "runcache-worker",
        &["all", "--once"],
        &[("RUNCACHE_QUOTA_BYTES", quota.as_str())],
    );

    let page = ws.join("dashboard.html");
    let page_arg = page.to_str().unwrap();
    let out = s.runcache(&["admin", "dashboard", "--out", page_arg, "--range", "1h"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("wrote") && said.contains("4 restores"),
        "{said}"
    );
    let html = fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<b>other</b>"), "keys are escaped");

    let shot = artifacts_dir().join("dashboard.png");
    let result = check_dashboard(&format!("file://{}", page.display()), None, &shot);
    assert_page_is_sound(&result);
    assert_eq!(
        result["initialRange"], "1h",
        "--range chooses the first view"
    );
    for range in ["1h", "24h", "7d", "30d"] {
        let hit_rate = plot(&result, range, "hit-rate");
        assert_eq!(
            number(&hit_rate["totals"]["hits"]),
            3.0,
            "{range}: {hit_rate}"
        );
        assert_eq!(
            number(&hit_rate["totals"]["misses"]),
            1.0,
            "{range}: {hit_rate}"
        );
        let points = hit_rate["circles"].as_u64().unwrap();
        assert!(
            (2..=4).contains(&points),
            "{range}: a point per repository per bucket (the run spans one or two minutes): {hit_rate}"
        );
        let churn = plot(&result, range, "evictions-invalidations");
        assert_eq!(
            number(&churn["totals"]["evictions"]),
            1.0,
            "{range}: {churn}"
        );
        assert_eq!(
            number(&churn["totals"]["invalidations"]),
            1.0,
            "{range}: {churn}"
        );
        let stored = plot(&result, range, "stored-bytes");
        assert_eq!(
            number(&stored["totals"]["latest"]),
            small as f64,
            "{range}: after the eviction and the invalidation only small-1 is stored: {stored}"
        );
        let rejected = plot(&result, range, "rejected");
        assert_eq!(
            number(&rejected["totals"]["total"]),
            1.0,
            "{range}: {rejected}"
        );
    }
    // The 30-day range counts in UTC days: a run within one day is one
    // point per repository.
    if started.date_naive() == chrono::Utc::now().date_naive() {
        let hit_rate = plot(&result, "30d", "hit-rate");
        assert_eq!(hit_rate["circles"], 2, "{hit_rate}");
        let churn = plot(&result, "30d", "evictions-invalidations");
        assert_eq!(
            churn["circles"], 2,
            "one eviction point, one invalidation point: {churn}"
        );
    }
    let top = result["mostAccessed"].as_array().unwrap();
    assert_eq!(top[0]["key"], "small-1", "{top:?}");
    assert_eq!(top[0]["reads"], 2, "{top:?}");
    assert_eq!(result["deadLetters"], 0);
    assert!(shot.exists(), "the screenshot is written");
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn the_dashboard_draws_a_simulated_month_with_the_same_totals_in_every_range_that_holds_it() {
    let s = Store::new();
    let sim = s.workspace.path().join("sim");
    let sim_arg = sim.to_str().unwrap();
    s.run(
        "runcache-bench",
        &[
            "simulate",
            "--days",
            "5",
            "--repositories",
            "2",
            "--prs-per-day",
            "2",
            "--keep",
            sim_arg,
        ],
        &[],
    );
    let page = s.workspace.path().join("sim.html");
    let page_arg = page.to_str().unwrap();
    s.runcache(&[
        "admin",
        "dashboard",
        "--from-simulation",
        sim_arg,
        "--range",
        "7d",
        "--out",
        page_arg,
    ]);
    let shot = artifacts_dir().join("dashboard-simulation.png");
    let result = check_dashboard(&format!("file://{}", page.display()), None, &shot);
    assert_page_is_sound(&result);
    assert_eq!(result["initialRange"], "7d");
    // Five simulated days fit the 7- and 30-day ranges whole.
    let restores = |range: &str| {
        let p = plot(&result, range, "hit-rate");
        number(&p["totals"]["hits"]) + number(&p["totals"]["misses"])
    };
    assert!(restores("30d") > 0.0, "{result}");
    assert_eq!(restores("7d"), restores("30d"));
    assert!(restores("24h") <= restores("7d"));
    // 30 days in days: each repository has a point for each day it ran
    // (five days, one more when the days straddle UTC midnights).
    let points = plot(&result, "30d", "hit-rate")["circles"]
        .as_u64()
        .unwrap();
    assert!((2..=12).contains(&points), "{points}");
    // 7 days in 6-hour buckets: more points than days.
    let fine = plot(&result, "7d", "hit-rate")["circles"].as_u64().unwrap();
    assert!(fine > points, "{fine} > {points}");
}

#[test]
fn from_simulation_refuses_a_directory_that_is_not_one() {
    let s = Store::new();
    let out = Command::new(s.bin.join("runcache"))
        .args(["admin", "dashboard", "--from-simulation"])
        .arg(s.workspace.path())
        .env("RUNCACHE_HOME", s.home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a simulation's store") && err.contains("simulate --keep"),
        "{err}"
    );
}

#[test]
fn dashboard_serve_answers_with_the_page_until_stopped() {
    use std::io::{BufRead, BufReader, Read, Write};
    let s = Store::new();
    let mut child = Command::new(s.bin.join("runcache"))
        .args(["admin", "dashboard", "--serve", "127.0.0.1:0"])
        .current_dir(s.workspace.path())
        .env("RUNCACHE_HOME", s.home.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        tcp,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    assert!(response.contains("<title>runcache dashboard</title>"));
}
