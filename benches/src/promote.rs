//! Promote benchmarks on the local backend: throughput against
//! `openssl dgst -sha256` over the very same staged files, and the latency
//! from a save's event to its entry being visible with the worker's
//! consumer loop running.

use std::{
    io,
    path::Path,
    pin::Pin,
    process::Command,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use chrono::Utc;
use runcache_infra::{staging, Backend, Config, OutgoingMessage, SystemClock};
use runcache_schemas::{ArtifactStaged, BuildProvenance, ContentHash, Contract, Scope, TrustLevel};
use runcache_worker::{drain, promote::promoter, run, ConsumerConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::{
    rng::Rng,
    stats::{median, ms, percentile, rss_cell},
};

fn backend(dir: &Path) -> Result<Backend> {
    Ok(Backend::local(&Config::local(dir), Arc::new(SystemClock))?)
}

/// `len` pseudo-random bytes from `seed`, generated as they are read, so
/// that staging a large artifact takes no memory.
struct RandomReader {
    rng: Rng,
    left: u64,
}

impl AsyncRead for RandomReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let n = (buf.remaining() as u64).min(this.left) as usize;
        this.rng.fill(buf.initialize_unfilled_to(n));
        buf.advance(n);
        this.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// The SHA-256 of what `RandomReader` yields for (`seed`, `len`).
fn random_hash(seed: u64, len: u64) -> ContentHash {
    let (mut rng, mut hasher, mut left) = (Rng::new(seed), Sha256::new(), len);
    let mut chunk = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (chunk.len() as u64).min(left) as usize;
        rng.fill(&mut chunk[..n]);
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    ContentHash::from_hex(&hex::encode(hasher.finalize())).expect("sha256 is 64 hex digits")
}

/// Stages `len` random bytes (from `seed`) under `key` and sends the event.
async fn stage(b: &Backend, upload: &str, key: &str, seed: u64, len: u64) -> Result<()> {
    let ev = ArtifactStaged {
        upload_id: upload.into(),
        staging_key: staging::key(TrustLevel::Protected, upload),
        claimed_hash: random_hash(seed, len),
        size_bytes: len,
        cache_key: key.into(),
        scope: Scope::new("bench/repo", "refs/heads/main"),
        cache_version: "bench".into(),
        paths: vec!["bench".into()],
        compression: "zstd-without-long".into(),
        unpacked_bytes: None,
        staged_at: Utc::now(),
        attributes: Default::default(),
        provenance: BuildProvenance {
            repository: "bench/repo".into(),
            trigger_event: "push".into(),
            trust: TrustLevel::Protected,
            ..Default::default()
        },
    };
    let body = RandomReader {
        rng: Rng::new(seed),
        left: len,
    };
    b.blobs
        .put(
            &ev.staging_key,
            Box::pin(body),
            staging::claim_metadata(&ev.scope, &ev.cache_version, &ev.cache_key),
        )
        .await?;
    b.staged.send(OutgoingMessage::new(ev.encode())).await?;
    Ok(())
}

/// One run: (promote, openssl) durations over the same staged files.
async fn promote_once(artifacts: usize, mib: usize, concurrency: usize) -> Result<[Duration; 2]> {
    let dir = tempfile::tempdir()?;
    let b = backend(dir.path())?;
    for i in 0..artifacts {
        let seed = i as u64 + 7;
        stage(
            &b,
            &format!("u{i}"),
            &format!("k{i}"),
            seed,
            (mib << 20) as u64,
        )
        .await?;
    }
    // `stage` puts them under the protected tier: staging/protected/u{i}.
    let staged_dir = dir
        .path()
        .join("blobs")
        .join(staging::key(TrustLevel::Protected, ""));
    let files: Vec<_> = std::fs::read_dir(staged_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;

    // Baseline: openssl over the same files (in the page cache, as they
    // are for promote).
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
    let report = drain(
        b.staged.clone(),
        promoter(&b, "bench", &Config::default()),
        cfg,
    )
    .await;
    let promote = t.elapsed();
    if report.done as usize != artifacts {
        bail!("promoted {} of {artifacts}", report.done);
    }
    Ok([promote, openssl])
}

/// Promote throughput against openssl, medians of `runs`; one table row:
/// | what | runcache | baseline | ratio | peak RSS |
pub async fn promote_bench(
    artifacts: usize,
    mib: usize,
    concurrency: usize,
    runs: usize,
) -> Result<String> {
    let total_mb = (artifacts * (mib << 20)) as f64 / 1e6;
    let (mut promote, mut openssl) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let [p, o] = promote_once(artifacts, mib, concurrency).await?;
        promote.push(p.as_secs_f64());
        openssl.push(o.as_secs_f64());
    }
    let (p, o) = (median(&promote), median(&openssl));
    Ok(format!(
        "| promote {artifacts} × {mib} MiB (concurrency {concurrency}) | {:.0} MB/s, {:.1} events/s | `openssl dgst -sha256` on the same staged files: {:.0} MB/s | **{:.2}×** | {} |",
        total_mb / p,
        artifacts as f64 / p,
        total_mb / o,
        o / p,
        rss_cell()
    ))
}

/// Save-to-visible latency over `artifacts` small artifacts with the
/// consumer loop running; one table row:
/// | what | p50 | p99 | max | peak RSS |
pub async fn latency_bench(artifacts: usize) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let b = backend(dir.path())?;
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(run(
        b.staged.clone(),
        promoter(&b, "bench", &Config::default()),
        ConsumerConfig {
            wait: Duration::from_secs(1),
            ..ConsumerConfig::default()
        },
        shutdown.clone(),
    ));
    let scope = Scope::new("bench/repo", "refs/heads/main");
    let mut latencies = Vec::with_capacity(artifacts);
    for i in 0..artifacts {
        let key = format!("small-{i}");
        stage(&b, &format!("s{i}"), &key, i as u64 + 1, 4096).await?;
        let sent = Instant::now();
        while b.index.get(&scope, "bench", &key).await?.is_none() {
            if sent.elapsed() > Duration::from_secs(30) {
                bail!("artifact {i} never became visible");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(sent.elapsed());
    }
    shutdown.cancel();
    let _ = worker.await;
    Ok(format!(
        "| save → entry visible, {artifacts} artifacts of 4 KiB, `runcache-worker` consumer running (local backend) | {} | {} | {} | {} |",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        rss_cell()
    ))
}
