//! `runcache-bench hash FILE`: SHA-256 of a file through the hashing
//! reader promote and the sweep verify with ([`runcache_infra::digest`]),
//! timed by `benches/run.sh` against `openssl dgst -sha256` and `sha256sum`.

use std::{path::Path, time::Instant};

use anyhow::{Context, Result};
use runcache_infra::digest::digest;

/// `{hex}  {path}` (as sha256sum prints it), then size and throughput.
pub async fn hash_file(path: &Path) -> Result<String> {
    let t = Instant::now();
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let d = digest(file)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let secs = t.elapsed().as_secs_f64();
    Ok(format!(
        "{}  {}  ({} bytes, {:.0} MB/s)",
        d.hash.hex(),
        path.display(),
        d.size,
        d.size as f64 / 1e6 / secs
    ))
}
