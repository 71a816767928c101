//! `runcache-bench`: measurements that need the library, each against its
//! baseline in the same run. See docs/benchmarks.md for the figures and
//! `benches/run.sh` for the one command that reproduces them all.
//!
//! - `promote`: promote throughput (MB/s, events/s) on the local backend
//!   against `openssl dgst -sha256` over the very same staged files.
//! - `latency`: from a save's event being sent to the entry being visible,
//!   with `runcache-worker`'s consumer loop running, p50/p99.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Parser, Subcommand};
use runcache_infra::{names, Backend, Config, OutgoingMessage, SystemClock};
use runcache_schemas::{ArtifactStaged, BuildProvenance, ContentHash, Contract, Scope, TrustLevel};
use runcache_worker::{drain, promote::promoter, run, ConsumerConfig};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "runcache-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Promote throughput against `openssl dgst -sha256` on the same bytes.
    Promote {
        /// Artifacts staged.
        #[arg(long, default_value_t = 8)]
        artifacts: usize,
        /// Size of each, MiB.
        #[arg(long, default_value_t = 128)]
        mib: usize,
        /// Messages promoted at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
    },
    /// Save-to-visible latency over many small artifacts.
    Latency {
        #[arg(long, default_value_t = 1000)]
        artifacts: usize,
    },
}

fn backend(dir: &Path) -> Result<Backend> {
    Ok(Backend::local(&Config::local(dir), Arc::new(SystemClock))?)
}

fn event(upload: &str, bytes: &[u8], key: &str) -> ArtifactStaged {
    let hash = ContentHash::from_hex(&hex::encode(Sha256::digest(bytes))).expect("sha256");
    ArtifactStaged {
        upload_id: upload.into(),
        staging_key: names::staging_key(upload),
        claimed_hash: hash,
        size_bytes: bytes.len() as u64,
        cache_key: key.into(),
        scope: Scope::new("bench/repo", "refs/heads/main"),
        cache_version: "bench".into(),
        paths: vec!["bench".into()],
        compression: "zstd-without-long".into(),
        unpacked_bytes: None,
        staged_at: Utc::now(),
        provenance: BuildProvenance {
            repository: "bench/repo".into(),
            trigger_event: "push".into(),
            trust: TrustLevel::Protected,
            ..Default::default()
        },
    }
}

async fn stage(b: &Backend, upload: &str, bytes: Vec<u8>, key: &str) -> Result<()> {
    let ev = event(upload, &bytes, key);
    b.blobs
        .put(
            &ev.staging_key,
            Box::pin(std::io::Cursor::new(bytes)),
            BTreeMap::new(),
        )
        .await?;
    b.staged.send(OutgoingMessage::new(ev.encode())).await?;
    Ok(())
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

async fn promote_bench(artifacts: usize, mib: usize, concurrency: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let b = backend(dir.path())?;
    for i in 0..artifacts {
        stage(
            &b,
            &format!("u{i}"),
            random_bytes(mib << 20, i as u64 + 7),
            &format!("k{i}"),
        )
        .await?;
    }
    let total = (artifacts * (mib << 20)) as f64;
    let staged_dir = dir.path().join("blobs/staging");
    let files: Vec<_> = std::fs::read_dir(&staged_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;

    // Baseline: openssl over the same files (already in the page cache, as
    // they are for promote).
    let t = Instant::now();
    let out = Command::new("openssl")
        .arg("dgst")
        .arg("-sha256")
        .args(&files)
        .output()
        .context("openssl is needed for the baseline")?;
    if !out.status.success() {
        bail!("openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let openssl = t.elapsed();

    let cfg = ConsumerConfig {
        concurrency,
        ..ConsumerConfig::default()
    };
    let t = Instant::now();
    let report = drain(b.staged.clone(), promoter(&b, "bench", 90), cfg).await;
    let promote = t.elapsed();
    if report.done as usize != artifacts {
        bail!("promoted {} of {artifacts}", report.done);
    }
    let mbps = |d: Duration| total / 1e6 / d.as_secs_f64();
    println!("| promote {artifacts} × {mib} MiB (concurrency {concurrency}) | {:.0} MB/s, {:.1} events/s | openssl dgst -sha256: {:.0} MB/s | **{:.2}×** |",
        mbps(promote), artifacts as f64 / promote.as_secs_f64(), mbps(openssl), openssl.as_secs_f64() / promote.as_secs_f64());
    Ok(())
}

async fn latency_bench(artifacts: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let b = backend(dir.path())?;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(run(
        b.staged.clone(),
        promoter(&b, "bench", 90),
        ConsumerConfig {
            wait: Duration::from_secs(1),
            ..ConsumerConfig::default()
        },
        shutdown.clone(),
    ));
    let scope = Scope::new("bench/repo", "refs/heads/main");
    let mut latencies = Vec::with_capacity(artifacts);
    for i in 0..artifacts {
        let bytes = random_bytes(4096, i as u64 + 1);
        let key = format!("small-{i}");
        stage(&b, &format!("s{i}"), bytes, &key).await?;
        let sent = Instant::now();
        loop {
            if b.index.get(&scope, "bench", &key).await?.is_some() {
                break;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                bail!("artifact {i} never became visible");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(sent.elapsed());
    }
    shutdown.cancel();
    let _ = worker.await;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("| save → visible, {artifacts} artifacts of 4 KiB (worker running) | p50 {:.1} ms | p99 {:.1} ms | max {:.1} ms |",
        pct(0.50).as_secs_f64() * 1e3, pct(0.99).as_secs_f64() * 1e3, latencies[latencies.len() - 1].as_secs_f64() * 1e3);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().bench {
        Bench::Promote {
            artifacts,
            mib,
            concurrency,
        } => promote_bench(artifacts, mib, concurrency).await,
        Bench::Latency { artifacts } => latency_bench(artifacts).await,
    }
}
