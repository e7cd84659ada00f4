//! A webhook receiver for the delivery benchmark (issue 13; `BENCHMARKS.md`, "Webhook delivery").
//!
//! Listens on 127.0.0.1, answers every `POST` with 204 at once, and records for each request its
//! path (one per endpoint), its `webhook-id` and the lag `now - body.timestamp` (the event's
//! `occurred_at`, written by the database clock at the event's insert, just before its commit).
//! `GET /stats` answers the counts so far and the unix time of the last arrival, so a script can
//! wait for the drain. On SIGINT, SIGTERM or after `--seconds` it prints lag percentiles, counts
//! and a `RESULT` line for `scripts/bench-webhooks.sh`.
//!
//! One thread (a current-thread runtime) and no signature check: the service under test has the
//! machine's other cycles, and the integration tests verify signatures.
//!
//! ```sh
//! cargo run --release --example webhook_sink -- --bind 127.0.0.1:18090 [--seconds 60]
//! ```

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Receive webhooks, answer 204, report the delivery lag")]
struct Cli {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:18090")]
    bind: SocketAddr,
    /// Stop after this many seconds (default: at SIGINT or SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
}

/// One request: which endpoint (path), which event, and its lag.
struct Arrival {
    path: Box<str>,
    id: u128,
    lag_us: i64,
}

#[derive(Default)]
struct Log {
    arrivals: Vec<Arrival>,
    /// Requests whose body had no readable `id` or `timestamp`.
    unreadable: u64,
    /// Unix time of the last arrival, in microseconds.
    last_at_us: i64,
    first_at_us: i64,
}

type Shared = Arc<Mutex<Log>>;

/// Only what is measured; the rest of the body is skipped.
#[derive(serde::Deserialize)]
struct Notice {
    id: uuid::Uuid,
    timestamp: DateTime<Utc>,
}

fn now_us() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

async fn receive(State(log): State<Shared>, Path(path): Path<String>, body: Bytes) -> StatusCode {
    let now = now_us();
    let notice = serde_json::from_slice::<Notice>(&body).ok();
    let mut log = log.lock().expect("the log lock is never poisoned");
    if log.first_at_us == 0 {
        log.first_at_us = now;
    }
    log.last_at_us = now;
    match notice {
        Some(n) => log.arrivals.push(Arrival {
            path: path.into(),
            id: n.id.as_u128(),
            lag_us: now - n.timestamp.timestamp_micros(),
        }),
        None => log.unreadable += 1,
    }
    StatusCode::NO_CONTENT
}

/// Distinct (endpoint, event) pairs.
fn distinct(log: &Log) -> usize {
    log.arrivals
        .iter()
        .map(|a| (&a.path, a.id))
        .collect::<HashSet<_>>()
        .len()
}

async fn stats(State(log): State<Shared>) -> String {
    let log = log.lock().expect("the log lock is never poisoned");
    format!(
        "requests={} distinct={} unreadable={} last_at={:.6}\n",
        log.arrivals.len(),
        distinct(&log),
        log.unreadable,
        log.last_at_us as f64 / 1e6
    )
}

fn report(log: &Log) {
    let mut lags: Vec<i64> = log.arrivals.iter().map(|a| a.lag_us).collect();
    lags.sort_unstable();
    let n = lags.len();
    let pct = |p: f64| {
        if n == 0 {
            return f64::NAN;
        }
        lags[((n as f64 * p).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0
    };
    let distinct = distinct(log);
    let endpoints = log
        .arrivals
        .iter()
        .map(|a| &a.path)
        .collect::<HashSet<_>>()
        .len();
    println!(
        "received {n} notices ({distinct} distinct endpoint+id, {} duplicates, {} unreadable) at \
         {endpoints} endpoints; lag ms p50 {:.1} p99 {:.1} max {:.1}",
        n - distinct,
        log.unreadable,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "RESULT requests={n} distinct={distinct} unreadable={} endpoints={endpoints} lag_p50={:.1} lag_p99={:.1} lag_max={:.1} first_at={:.6} last_at={:.6}",
        log.unreadable,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        log.first_at_us as f64 / 1e6,
        log.last_at_us as f64 / 1e6,
    );
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(cli))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let log = Shared::default();
    let app = Router::new()
        .route("/stats", get(stats))
        .route("/{*path}", post(receive))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind(cli.bind).await?;
    eprintln!("webhook sink listening on {}", listener.local_addr()?);
    let stop = async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        let limit = async {
            match cli.seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            () = limit => {}
        }
    };
    // Not a graceful shutdown: the service keeps its connections alive, and nothing waits on them.
    tokio::select! {
        served = axum::serve(listener, app) => served?,
        () = stop => {}
    }
    report(&log.lock().expect("the log lock is never poisoned"));
    Ok(())
}
