//! Prometheus metrics: what is recorded (every metric name is here, so the set is reviewed in one
//! place), and `GET /metrics` on a listener of its own (`METRICS_BIND`), never on the API's.
//!
//! The recorder is process-global and installed only when metrics are served, so with
//! `METRICS_BIND=off` every `metrics::` call is a no-op.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{MatchedPath, State},
    http::{Request, header},
    response::IntoResponse,
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::domain::RuleViolation;

/// Request latency, by `method`, `route` (the matched path template) and `status`.
const REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Latency buckets in seconds: purchases take a few milliseconds, the request timeout is 30 s.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Webhook latencies in seconds: from an event's commit to its queueing or to the receiver's
/// 2xx (retries stretch the latter to days), and of one attempt (at most `WEBHOOK_TIMEOUT_SECS`).
const WEBHOOK_LAG: &str = "webhook_delivery_lag_seconds";
const WEBHOOK_DISPATCH_LAG: &str = "webhook_dispatch_lag_seconds";
const WEBHOOK_ATTEMPT: &str = "webhook_attempt_duration_seconds";
const WEBHOOK_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes, so that memory
/// stays flat.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), REQUEST_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(Matcher::Full(WEBHOOK_LAG.into()), WEBHOOK_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(Matcher::Full(WEBHOOK_DISPATCH_LAG.into()), WEBHOOK_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(Matcher::Full(WEBHOOK_ATTEMPT.into()), WEBHOOK_BUCKETS)
            .expect("the bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed already; ours then renders nothing.
        if let Err(error) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "another metrics recorder is installed; /metrics stays empty");
        }
        handle
    })
}

/// What the metrics listener reads at scrape time.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The request pool.
    pub pool: PgPool,
    /// The audit exports' own pool.
    pub export_pool: PgPool,
}

/// The metrics listener's router: `GET /metrics`. Installs the recorder, so call it only when
/// metrics are served.
pub fn router(scrape: Scrape) -> Router {
    let handle = recorder().clone();
    // Shown from the first scrape on, not only after the first export.
    metrics::gauge!("audit_exports_in_flight").increment(0.0);
    Router::new()
        .route("/metrics", get(render))
        .with_state((scrape, handle))
}

/// Folds histogram samples into their buckets every few seconds, for as long as it runs: without
/// it, samples pile up between scrapes (or for ever, when nobody scrapes).
pub async fn upkeep() {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        recorder().run_upkeep();
    }
}

/// The Prometheus text exposition; the pool gauges are read now, so they are never stale.
async fn render(State((scrape, handle)): State<(Scrape, PrometheusHandle)>) -> impl IntoResponse {
    pool_gauges("requests", &scrape.pool);
    pool_gauges("exports", &scrape.export_pool);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// `db_pool_connections{pool, state}`: open connections in use and idle, and the pool's maximum.
/// Requests waiting for a connection are not counted (sqlx does not say); they show as
/// `database_unavailable` 503s once `DATABASE_ACQUIRE_TIMEOUT_SECS` is over.
fn pool_gauges(name: &'static str, pool: &PgPool) {
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
    let max = pool.options().get_max_connections();
    metrics::gauge!("db_pool_connections", "pool" => name, "state" => "in_use")
        .set(f64::from(size - idle));
    metrics::gauge!("db_pool_connections", "pool" => name, "state" => "idle").set(f64::from(idle));
    metrics::gauge!("db_pool_max_connections", "pool" => name).set(f64::from(max));
}

/// Middleware recording every request's latency under its route template (never the raw URI, so
/// ids do not make a series each); requests no route matched share the route `unmatched`.
pub async fn track_requests(
    request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics::histogram!(
        REQUEST_DURATION,
        "method" => method,
        "route" => route,
        "status" => response.status().as_str().to_owned(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// A purchase decided (not a replay): `purchases_total{outcome}`, and for a denial
/// `purchase_rule_violations_total{code}` once per broken rule (a denial may break several).
pub fn purchase_decided(violations: &[RuleViolation]) {
    let outcome = if violations.is_empty() {
        "allowed"
    } else {
        "denied"
    };
    metrics::counter!("purchases_total", "outcome" => outcome).increment(1);
    for violation in violations {
        metrics::counter!("purchase_rule_violations_total", "code" => violation.code())
            .increment(1);
    }
}

/// A retry answered with a stored purchase outcome: `purchase_replays_total`.
pub fn purchase_replayed() {
    metrics::counter!("purchase_replays_total").increment(1);
}

/// A purchase whose facts changed between its read and its record, decided again:
/// `purchase_facts_changed_total`.
pub fn purchase_facts_changed() {
    metrics::counter!("purchase_facts_changed_total").increment(1);
}

/// `audit_exports_in_flight`: one more export streams (its slot was admitted).
pub fn export_started() {
    metrics::gauge!("audit_exports_in_flight").increment(1.0);
}

/// `audit_exports_in_flight`: an export ended, however it ended (its slot was dropped).
pub fn export_ended() {
    metrics::gauge!("audit_exports_in_flight").decrement(1.0);
}

/// Lines of a finished customer import: `customer_import_rows_total{result}`.
pub fn import_finished(imported: usize, rejected: usize, already_imported: usize) {
    for (result, lines) in [
        ("imported", imported),
        ("rejected", rejected),
        ("already_imported", already_imported),
    ] {
        metrics::counter!("customer_import_rows_total", "result" => result).increment(lines as u64);
    }
}

/// A batch of a console import job committed: `customer_import_job_lines_total{result}`, whose
/// rate is the imports' progress.
pub fn import_job_batch(created: usize, already_imported: usize) {
    for (result, lines) in [("created", created), ("already_imported", already_imported)] {
        metrics::counter!("customer_import_job_lines_total", "result" => result)
            .increment(lines as u64);
    }
}

/// An event turned into `queued` deliveries, `lag` after it happened:
/// `webhook_deliveries_queued_total`, `webhook_dispatch_lag_seconds`.
pub fn webhook_dispatched(queued: u64, lag: Duration) {
    metrics::counter!("webhook_deliveries_queued_total").increment(queued);
    metrics::histogram!(WEBHOOK_DISPATCH_LAG).record(lag.as_secs_f64());
}

/// A webhook attempt that took `took` ended as `outcome` (`delivered`, `retry`, `gone`,
/// `failed`): `webhook_attempts_total{outcome}`, `webhook_attempt_duration_seconds`.
pub fn webhook_attempted(outcome: &'static str, took: Duration) {
    metrics::counter!("webhook_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!(WEBHOOK_ATTEMPT).record(took.as_secs_f64());
}

/// A webhook reached its receiver `lag` after its event happened: `webhook_delivery_lag_seconds`.
pub fn webhook_delivered(lag: Duration) {
    metrics::histogram!(WEBHOOK_LAG).record(lag.as_secs_f64());
}

/// Counts an open connection of a listener (`http_connections_open{listener}`) for as long as it
/// lives.
#[derive(Debug)]
pub struct OpenConnection(&'static str);

impl OpenConnection {
    /// A connection of `listener` (`api` or `metrics`) opened.
    pub fn new(listener: &'static str) -> Self {
        metrics::gauge!("http_connections_open", "listener" => listener).increment(1.0);
        Self(listener)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open", "listener" => self.0).decrement(1.0);
    }
}
