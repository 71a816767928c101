//! End-to-end test support for runcache: whole flows (save → promote →
//! restore → metrics → invalidate → sweep) driven through the binaries and
//! library APIs, and static checks of the deployment in `terraform/`.
//! The tests themselves live in `tests/tests/`.
