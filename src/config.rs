//! Runtime configuration, from flags or the environment (a committed `.env` supplies defaults).

use std::{net::SocketAddr, str::FromStr};

use clap::{Args, ValueEnum};

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL connection URL; the database is created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/partner_catalog",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080", global = true)]
    pub bind: SocketAddr,

    /// Size of the database connection pool.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,

    /// Seconds to wait for a pooled connection before answering 503 with `Retry-After`.
    #[arg(
        long,
        env = "DATABASE_ACQUIRE_TIMEOUT_SECS",
        default_value_t = 5,
        global = true
    )]
    pub database_acquire_timeout_secs: u64,

    /// Longest a single SQL statement may run (PostgreSQL `statement_timeout`); audit exports,
    /// which stream for as long as the client reads, are exempt.
    #[arg(
        long,
        env = "STATEMENT_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub statement_timeout_ms: u64,

    /// Longest a connection may sit idle inside a transaction before PostgreSQL ends it
    /// (`idle_in_transaction_session_timeout`), so a stuck request never holds a customer's lock.
    #[arg(
        long,
        env = "IDLE_IN_TRANSACTION_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub idle_in_transaction_timeout_ms: u64,

    /// Longest the service works on one request before answering 503 `request_timeout`
    /// (a streamed body, once started, is not cut).
    #[arg(
        long,
        env = "REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub request_timeout_secs: u64,

    /// Largest accepted request body in bytes (every JSON body of the API); larger is 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024, global = true)]
    pub body_limit_bytes: usize,

    /// Largest accepted NDJSON body of `POST /v1/customers:import`, in bytes; larger is 413.
    #[arg(
        long,
        env = "IMPORT_BODY_LIMIT_BYTES",
        default_value_t = 256 * 1024 * 1024,
        global = true
    )]
    pub import_body_limit_bytes: usize,

    /// Longest a customer import (`POST /v1/customers:import`) may take, body upload included;
    /// it is exempt from `REQUEST_TIMEOUT_SECS` and its statements from `STATEMENT_TIMEOUT_MS`.
    #[arg(
        long,
        env = "IMPORT_TIMEOUT_SECS",
        default_value_t = 300,
        global = true
    )]
    pub import_timeout_secs: u64,

    /// Connections served at once; further ones wait in the listen backlog until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, global = true)]
    pub max_connections: usize,

    /// Longest a client may take to send a request's head, counted from when the connection
    /// opens or its previous response ends (so also how long a keep-alive connection may idle).
    #[arg(
        long,
        env = "HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub header_read_timeout_secs: u64,

    /// Longest a response may wait for the client to accept more bytes before the connection is
    /// closed (a stalled audit export is cut and its database connection freed).
    #[arg(long, env = "SEND_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub send_timeout_secs: u64,

    /// After SIGTERM or Ctrl-C, how long requests in flight may take before the connections still
    /// open are closed and the process exits.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20, global = true)]
    pub shutdown_grace_secs: u64,

    /// Audit exports streaming at once, each on a database connection of its own pool (not the
    /// request pool); one per principal. Beyond that, 503 `export_busy`.
    #[arg(
        long,
        env = "EXPORT_MAX_CONCURRENT",
        default_value_t = 2,
        global = true
    )]
    pub export_max_concurrent: u32,

    /// Address of the metrics listener (`GET /metrics`, Prometheus text), apart from the API's so
    /// that it is not public with it; `off` serves and records no metrics.
    #[arg(
        long,
        env = "METRICS_BIND",
        default_value = "127.0.0.1:9464",
        global = true
    )]
    pub metrics_bind: MetricsBind,

    /// Minutes a console session may go unused before it ends.
    #[arg(
        long,
        env = "SESSION_IDLE_MINUTES",
        default_value_t = 30,
        global = true
    )]
    pub session_idle_minutes: u64,

    /// Hours after sign-in when a console session ends, however busy.
    #[arg(long, env = "SESSION_MAX_HOURS", default_value_t = 12, global = true)]
    pub session_max_hours: u64,

    /// When the console's session cookie is marked `Secure`: `auto` when the request came over
    /// HTTPS through a proxy (`X-Forwarded-Proto: https`), `always`, or `never`.
    #[arg(long, env = "SECURE_COOKIES", value_enum, default_value_t = SecureCookies::Auto, global = true)]
    pub secure_cookies: SecureCookies,

    /// Internal networks (CIDRs, comma-separated) webhook endpoints may resolve to, e.g.
    /// `127.0.0.0/8`; by default none: loopback, private and link-local addresses are refused, and
    /// plain `http://` is accepted only for allowed addresses.
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE", default_value = "", global = true)]
    pub webhook_allow_private: crate::domain::webhook::AllowList,

    /// Waits before each webhook retry (`ms`, `s`, `m`, `h`); after the last the delivery fails and
    /// the endpoint is disabled. The default spans about three days.
    #[arg(long, env = "WEBHOOK_RETRY_SCHEDULE", default_value = crate::domain::webhook::DEFAULT_RETRY_SCHEDULE, global = true)]
    pub webhook_retry_schedule: String,

    /// Longest one webhook attempt may take.
    #[arg(
        long,
        env = "WEBHOOK_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub webhook_timeout_secs: u64,

    /// How often, when idle, the webhook dispatcher and sender look for work (milliseconds).
    #[arg(long, env = "WEBHOOK_POLL_MS", default_value_t = 500, global = true)]
    pub webhook_poll_ms: u64,

    /// Whether this instance runs the webhook dispatcher and sender. Off, it only serves the API
    /// (and the import worker): notices wait, nothing is lost, until an instance with it on reads
    /// each chain from its mark. Accepts `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
    #[arg(
        long,
        env = "WEBHOOK_DELIVERY",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub webhook_delivery: bool,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// When the session cookie carries `Secure` (sent over HTTPS only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecureCookies {
    /// When the request reached the proxy in front of the service over HTTPS.
    Auto,
    /// Always: the service is only ever reached over HTTPS.
    Always,
    /// Never: plain HTTP only (e.g. on 127.0.0.1).
    Never,
}

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with key=value fields.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where `/metrics` is served: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsBind {
    /// No metrics listener; nothing is recorded.
    Off,
    /// Serve `/metrics` on this address.
    On(std::net::SocketAddr),
}

impl FromStr for MetricsBind {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        raw.parse()
            .map(Self::On)
            .map_err(|e| format!("expected an address such as 127.0.0.1:9464, or `off`: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::MetricsBind;

    #[test]
    fn metrics_bind_is_an_address_or_off() {
        assert_eq!("off".parse(), Ok(MetricsBind::Off));
        assert_eq!("OFF".parse(), Ok(MetricsBind::Off));
        assert_eq!(
            "127.0.0.1:9464".parse(),
            Ok(MetricsBind::On("127.0.0.1:9464".parse().unwrap()))
        );
        assert!("9464".parse::<MetricsBind>().is_err());
        assert!("".parse::<MetricsBind>().is_err());
    }
}
