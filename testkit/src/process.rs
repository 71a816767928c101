//! Killing a child process at a chosen point, for tests that show what a
//! `kill -9` leaves behind.

use std::process::Child;
use std::time::{Duration, Instant};

/// Waits until `ready` holds, then SIGKILLs `child` (no cleanup can run)
/// and reaps it. Fails if the child ends first or a minute passes.
pub fn kill_when(mut child: Child, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            child.try_wait().expect("wait for the child").is_none(),
            "ended before the kill point"
        );
        assert!(Instant::now() < deadline, "never reached the kill point");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
}
