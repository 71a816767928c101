//! `runcache-bench`: measurements that need the library, each against its
//! baseline in the same run, and the workload simulator. See
//! docs/benchmarks.md for the figures and `benches/run.sh` for the one
//! command that reproduces them all. Each measurement prints one markdown
//! table row; `simulate` prints its whole report.

use std::{path::PathBuf, time::Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use runcache_bench::{
    hash::hash_file,
    lookup::{lookup_bench, LookupBackend},
    promote::{latency_bench, promote_bench},
    simulate::{simulate, Params},
};

#[derive(Parser)]
#[command(
    name = "runcache-bench",
    about = "runcache's benchmarks and workload simulator"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Promote throughput (local backend) against `openssl dgst -sha256` on
    /// the same staged bytes; medians of `--runs`.
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
        /// Runs, each on a fresh backend; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Save-to-visible latency over many small artifacts, worker running.
    Latency {
        #[arg(long, default_value_t = 1000)]
        artifacts: usize,
    },
    /// Restore lookup latency (the real index search) on a populated index.
    Lookup {
        #[arg(long, value_enum, default_value_t = LookupBackend::Local)]
        backend: LookupBackend,
        /// Entries in the index before the lookups.
        #[arg(long, default_value_t = 1000)]
        entries: usize,
        /// Lookups, a third of each kind (exact, restore key via the base
        /// branch, miss).
        #[arg(long, default_value_t = 600)]
        lookups: usize,
    },
    /// SHA-256 of a file through the workers' hashing reader (promote's
    /// code path), for timing against openssl and sha256sum.
    Hash { file: PathBuf },
    /// Replays a month of CI history through the real index, search,
    /// metrics, invalidation and sweep code; reports against the seed's
    /// success metrics.
    Simulate {
        #[command(flatten)]
        params: Params,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let out = match Cli::parse().bench {
        Bench::Promote {
            artifacts,
            mib,
            concurrency,
            runs,
        } => promote_bench(artifacts, mib, concurrency, runs).await?,
        Bench::Latency { artifacts } => latency_bench(artifacts).await?,
        Bench::Lookup {
            backend,
            entries,
            lookups,
        } => lookup_bench(backend, entries, lookups).await?,
        Bench::Hash { file } => hash_file(&file).await?,
        Bench::Simulate { params } => {
            let t = Instant::now();
            let report = simulate(&params).await?;
            eprintln!("simulated in {:.1} s", t.elapsed().as_secs_f64());
            report.markdown()
        }
    };
    println!("{}", out.trim_end());
    Ok(())
}
