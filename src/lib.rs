//! partner-catalog: the system of record for special-segment sales.
//!
//! Layers, outermost first: [`http`] (routes, extractors, problem+json) → [`app`] (one function per
//! use case, each owning its transaction) → [`domain`] (pure rules) and [`db`] (SQL).

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod delivery;
pub mod dev;
pub mod domain;
pub mod http;
pub mod monitoring;
pub mod server;
pub mod startup;
pub mod telemetry;
