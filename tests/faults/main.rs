//! Fault tests: the real service binary, over a private PostgreSQL cluster of each test's own,
//! under purchase load while the database restarts and while the service is killed.
//!
//! Needs the PostgreSQL server programs (`initdb`, `pg_ctl`); see `cluster.rs` for how they are
//! found. When a test fails, the tails of the service's and the cluster's logs are printed.

mod citus;
mod cluster;
mod database_restart;
mod load;
mod service;
mod service_crash;
mod shutdown;
mod webhook_crash;

use std::time::Duration;

/// Longest a client waits for any answer. The service is configured to answer within about
/// `REQUEST_TIMEOUT_SECS` (5 s) whatever the database does, so running out of this counts as a hang.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
