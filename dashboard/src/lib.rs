//! runcache's dashboard: one self-contained HTML page (CSS inlined, charts
//! as inline SVG, no script, no network fetch) with hit rate over time per
//! repository, stored bytes, build time saved, evictions and
//! invalidations, rejected uploads, the most accessed entries and the
//! queues' dead letters, for four time ranges.
//!
//! - [`data`] reads the figures from a [`Backend`](runcache_infra::Backend)
//!   through its ports: the same code on the local backend (SQLite), on AWS
//!   (CloudWatch, DynamoDB, SQS) and on a `runcache-bench simulate` store.
//! - [`page`] turns them into the page; `plot` draws the charts.
//!
//! May touch: the ports, read only. The doors (`runcache admin dashboard`,
//! `runcache serve`'s `/dashboard`) decide who may see what
//! ([`Options::repository`], [`Options::queues`]).

pub mod data;
pub mod page;
mod plot;

pub use data::{gather, Dashboard, Options, RANGES};
pub use page::render;

/// The file `runcache-bench simulate --keep DIR` writes in DIR: the
/// simulation's last instant (RFC 3339), where the dashboard's ranges end.
pub const SIMULATION_MARKER: &str = "simulated-until";
