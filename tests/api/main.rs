//! The service driven over HTTP, each test against its own fresh PostgreSQL database.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod auth;
mod concurrency;
mod connections;
mod console;
mod customers;
mod database_tls;
mod helpers;
mod hostile;
mod limits;
mod logs;
mod malformed;
mod metrics;
mod offers;
mod openapi;
mod partners;
mod policies;
mod policy_preview;
mod principals;
mod purchases;
mod qualifications;
mod schema;
mod scoping;
mod sharding;
mod webhooks;
