//! Restore lookup latency: the real restore search ([`index::search`] over
//! [`restore_scopes`]) against a populated index, on the local backend
//! (SQLite on disk) and on DynamoDB as moto serves it.
//!
//! The index holds `entries` build-output entries of one repository, half
//! on the default branch and half spread over ten pull requests. Lookups
//! cycle through three kinds, each from a pull request's scope:
//! - **exact**: a key the pull request saved itself (one `get`);
//! - **restore key, via the base branch**: a new pull request whose key is
//!   unknown; its restore key matches the default branch's entries (own
//!   scope: `get` + two prefix queries, then the same on the base branch);
//! - **miss**: nothing matches (every query of both scopes).

use std::{sync::Arc, time::Instant};

use anyhow::{bail, Result};
use chrono::Utc;
use runcache_infra::{
    index::{restore_scopes, search, SearchRequest},
    Backend, Config, SystemClock,
};
use runcache_schemas::{HitKind, Scope, TrustLevel};

use crate::{
    index_entry,
    stats::{ms, percentile, rss_cell},
};

const REPO: &str = "bench/repo";
const VERSION: &str = "bench";
const PREFIX: &str = "build-Linux-node-20-";

/// Where the index lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LookupBackend {
    /// The local backend: SQLite in a temporary directory.
    Local,
    /// The AWS adapters against a moto server started for the run.
    Moto,
}

async fn open(kind: LookupBackend, dir: &std::path::Path) -> Result<Backend> {
    match kind {
        LookupBackend::Local => Ok(Backend::local(&Config::local(dir), Arc::new(SystemClock))?),
        #[cfg(feature = "aws")]
        LookupBackend::Moto => {
            let (sdk, config, _) = runcache_testkit::moto::fresh(5).await;
            Ok(runcache_infra::aws::connect_with(&sdk, &config)?)
        }
        #[cfg(not(feature = "aws"))]
        LookupBackend::Moto => {
            bail!("this build has no AWS adapters: rebuild with `--features aws`")
        }
    }
}

fn pr(n: usize) -> Scope {
    Scope::new(REPO, format!("refs/pull/{n}/merge"))
}

/// Populates an index, times `lookups` searches; one table row:
/// | backend | exact p50 / p99 | restore key p50 / p99 | miss p50 / p99 | peak RSS |
pub async fn lookup_bench(kind: LookupBackend, entries: usize, lookups: usize) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let b = open(kind, dir.path()).await?;
    let main = Scope::new(REPO, "refs/heads/main");
    let start = Utc::now();
    for i in 0..entries {
        let (scope, trust) = if i % 2 == 0 {
            (main.clone(), TrustLevel::Protected)
        } else {
            (pr(i / 2 % 10 + 1), TrustLevel::PullRequest)
        };
        let key = format!("{PREFIX}{i:06}");
        let at = start + chrono::Duration::seconds(i as i64);
        let e = index_entry(&scope, VERSION, &key, 100 << 20, trust, at);
        b.index.insert(&e).await?;
    }

    let mut samples: [Vec<_>; 3] = Default::default();
    for j in 0..lookups {
        let (scope, primary, restore, expect) = match j % 3 {
            0 => {
                let i = (j * 2 + 1) % entries.max(2);
                (
                    pr(i / 2 % 10 + 1),
                    format!("{PREFIX}{i:06}"),
                    PREFIX,
                    HitKind::Exact,
                )
            }
            1 => (
                pr(5000 + j),
                format!("{PREFIX}new-{j}"),
                PREFIX,
                HitKind::Prefix,
            ),
            _ => (
                pr(5000 + j),
                format!("deps-Linux-node-22-{j}"),
                "deps-Linux-node-22-",
                HitKind::Miss,
            ),
        };
        let req = SearchRequest {
            scopes: restore_scopes(&scope, Some("main"), "main"),
            version: VERSION.into(),
            primary_key: primary,
            restore_keys: vec![restore.into()],
            min_trust: TrustLevel::Untrusted,
        };
        let t = Instant::now();
        let hit = search(&*b.index, &req).await?;
        samples[j % 3].push(t.elapsed());
        let got = hit.map_or(HitKind::Miss, |h| h.kind);
        if got != expect {
            bail!("lookup {j}: expected {expect:?}, got {got:?} (is the index populated?)");
        }
    }
    let cell = |s: &[_]| format!("{} / {}", ms(percentile(s, 0.5)), ms(percentile(s, 0.99)));
    let what = match kind {
        LookupBackend::Local => "local (SQLite on disk)",
        LookupBackend::Moto => "aws adapters on moto (DynamoDB emulated, loopback)",
    };
    Ok(format!(
        "| {what}, {entries} entries, {lookups} lookups | {} | {} | {} | {} |",
        cell(&samples[0]),
        cell(&samples[1]),
        cell(&samples[2]),
        rss_cell()
    ))
}
