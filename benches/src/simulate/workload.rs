//! The simulated history: when each repository's CI runs happen and when
//! the admin events and sweeps fall between them. Generated up front from
//! the seed; what each run finds in the cache is decided when it is
//! replayed ([`super::Simulation`]).
//!
//! Per repository and per day, pull requests open at a Poisson rate
//! (lower at weekends) during working hours (09:00–18:00). Each gets a
//! Poisson number of pushes (one CI run each, the first at opening, the
//! others spread over its lifetime, which is exponential); a merged one
//! ends with a push to the default branch (one run there). Any run may be
//! re-run on the same commit half an hour later. Toolchain bumps and
//! invalidations fall at uniformly random times; sweeps run on a fixed
//! schedule, as the `rate(1 hour)` EventBridge schedule does in production.

use super::Params;
use crate::rng::Rng;

pub const HOUR: u64 = 3600;
pub const DAY: u64 = 24 * HOUR;
const RERUN_AFTER: u64 = HOUR / 2;

/// The branch a run builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitRef {
    /// The default branch, `main`.
    Main,
    /// A pull request (`refs/pull/{n}/merge`, base `main`).
    Pr(u32),
}

/// One CI run: restores the dependency and build-output caches, builds,
/// saves what it did not restore exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub repo: usize,
    pub git: GitRef,
    /// Unique per push; a re-run builds the same commit.
    pub commit: u64,
    pub rerun: bool,
    /// This pull request changes the lockfile (its runs use a lockfile
    /// of their own, which reaches the default branch when it merges).
    pub changes_lockfile: bool,
    /// On the default branch: the pull request this push merges.
    pub merges: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Run(Run),
    /// Every key of the repository changes (the toolchain is in each).
    ToolchainBump {
        repo: usize,
    },
    /// `runcache admin invalidate` of everything built from the default
    /// branch's current lockfile.
    Invalidate {
        repo: usize,
    },
    Sweep,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start of the simulation.
    pub at: u64,
    pub action: Action,
}

/// The repositories' scale factors (sizes and build times, 0.5–1.5) and
/// every event, in time order.
pub fn generate(p: &Params) -> (Vec<f64>, Vec<Event>) {
    let end = u64::from(p.days) * DAY;
    let mut root = Rng::new(p.seed);
    let mut factors = Vec::new();
    let mut events = Vec::new();
    let mut commit = 0;
    for repo in 0..p.repositories as usize {
        let mut rng = root.fork();
        factors.push(rng.between(0.5, 1.5));
        let mut run = |rng: &mut Rng, at: u64, git, changes_lockfile, merges| {
            commit += 1;
            let r = Run {
                repo,
                git,
                commit,
                rerun: false,
                changes_lockfile,
                merges,
            };
            if rng.chance(p.rerun_rate) {
                let rerun = Run {
                    rerun: true,
                    merges: None,
                    ..r.clone()
                };
                events.push(Event {
                    at: at + RERUN_AFTER,
                    action: Action::Run(rerun),
                });
            }
            events.push(Event {
                at,
                action: Action::Run(r),
            });
        };
        let mut pr = 0;
        for day in 0..u64::from(p.days) {
            let activity = if day % 7 >= 5 {
                p.weekend_activity
            } else {
                1.0
            };
            for _ in 0..rng.poisson(p.prs_per_day * activity) {
                pr += 1;
                let open = day * DAY + (rng.between(9.0, 18.0) * HOUR as f64) as u64;
                let close = open + (rng.exponential(p.pr_hours) * HOUR as f64).max(600.0) as u64;
                let changes_lockfile = rng.chance(p.lockfile_change_rate);
                let pushes = 1 + rng.poisson((p.pushes_per_pr - 1.0).max(0.0));
                let mut times = vec![open];
                times.extend((1..pushes).map(|_| rng.between(open as f64, close as f64) as u64));
                times.sort_unstable();
                for t in times {
                    run(&mut rng, t, GitRef::Pr(pr), changes_lockfile, None);
                }
                if rng.chance(p.merge_rate) {
                    run(&mut rng, close, GitRef::Main, false, Some(pr));
                }
            }
        }
        for _ in 0..p.toolchain_bumps {
            let at = rng.between(0.0, end as f64) as u64;
            events.push(Event {
                at,
                action: Action::ToolchainBump { repo },
            });
        }
        for _ in 0..p.invalidations {
            let at = rng.between(0.0, end as f64) as u64;
            events.push(Event {
                at,
                action: Action::Invalidate { repo },
            });
        }
    }
    events.retain(|e| e.at < end);
    let every = u64::from(p.sweep_every_hours.max(1)) * HOUR;
    events.extend((1..=end / every).map(|k| Event {
        at: k * every,
        action: Action::Sweep,
    }));
    // Stable: events at the same second keep their generation order.
    events.sort_by_key(|e| e.at);
    (factors, events)
}
