//! The HTTP layer: one module per resource, merged here with the cross-cutting layers.

mod audit;
pub mod console;
mod customers;
mod decisions;
mod error;
mod extract;
mod offers;
pub mod openapi;
mod pagination;
mod partners;
mod policies;
mod principals;
pub mod problem;
mod subscriptions;
mod tokens;
mod webhooks;

use axum::{
    Extension, Router,
    body::Body,
    extract::{DefaultBodyLimit, State},
    http::Request,
};
use sqlx::PgPool;
use tower_http::{
    LatencyUnit,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use error::{ApiError, PROBLEM_JSON};
pub use problem::Code;

/// Header carrying the request id: taken from the client when present, generated otherwise, and
/// echoed on the response.
pub const REQUEST_ID: &str = "x-request-id";

/// What one request may take, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest the service works on one request.
    pub request_timeout: std::time::Duration,
    /// Largest request body: every JSON body of this API is a small object.
    pub body_bytes: usize,
    /// Largest NDJSON body of a customer import.
    pub import_body_bytes: usize,
    /// Longest a customer import may take; it is exempt from `request_timeout`.
    pub import_timeout: std::time::Duration,
}

/// The `ETag` of a resource version, e.g. `"3"`.
pub fn etag_value(version: i64) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&format!("\"{version}\""))
        .expect("digits and quotes are a valid header")
}

/// An `ETag` response header, for handlers.
pub fn etag(version: i64) -> [(axum::http::HeaderName, axum::http::HeaderValue); 1] {
    [(axum::http::header::ETAG, etag_value(version))]
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database pool.
    pub pool: PgPool,
    /// Verifies bearer tokens, with a short-lived cache.
    pub tokens: std::sync::Arc<crate::app::tokens::TokenVerifier>,
    /// Where audit exports run, apart from `pool`.
    pub exports: crate::app::audit::Exports,
    /// What one request may take.
    pub limits: Limits,
    /// Console sessions.
    pub console: console::Settings,
    /// What registering webhook endpoints needs.
    pub webhooks: std::sync::Arc<crate::app::webhooks::Settings>,
    /// Wakes long-polling readers of the change feed.
    pub feed_bell: crate::app::webhooks::FeedBell,
}

/// The whole API. Every route is registered with its OpenAPI operation, so the served contract
/// lists exactly what the router serves, besides the files of the `/docs` page.
pub fn router(state: AppState) -> Router {
    let request_id = axum::http::HeaderName::from_static(REQUEST_ID);
    let limits = state.limits;
    let (router, contract) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(partners::router())
        .merge(customers::router())
        .merge(offers::router())
        .merge(subscriptions::router())
        .merge(decisions::router())
        .merge(tokens::router())
        .merge(webhooks::router())
        .merge(principals::router())
        .merge(audit::router())
        .merge(policies::router())
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::docs))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            limits.body_bytes,
            refuse_declared_oversize,
        ))
        // Merged after the layers above, so the import has only its own, larger limits.
        .merge(
            customers::import_router()
                .layer(axum::middleware::from_fn_with_state(
                    limits.import_timeout,
                    customers::import_budget,
                ))
                .layer(DefaultBodyLimit::max(limits.import_body_bytes))
                .layer(axum::middleware::from_fn_with_state(
                    limits.import_body_bytes,
                    refuse_declared_oversize,
                )),
        )
        .split_for_parts();
    let contract = openapi::Contract::serve(&contract);
    router
        .merge(
            console::router()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    request_timeout,
                ))
                .layer(DefaultBodyLimit::max(limits.body_bytes)),
        )
        .merge(openapi::ui_files())
        // The console's file upload has the import's limits instead (like the API's import).
        .merge(console::upload_router(limits))
        .fallback(|| async { ApiError::new(Code::RouteNotFound, "No such route.") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(Code::MethodNotAllowed, "This route does not accept this method.")
        })
        .layer(Extension(contract))
        // Outermost first: assign the id, open a span carrying it, echo it on the response.
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<Body>| {
                    let id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
                })
                // Microseconds: the audit queries are expected to answer well within a millisecond
                // or two, and their latency is read from this log line.
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(LatencyUnit::Micros),
                )
                // A 5xx is logged where it is made (500s at ERROR with their cause, 503s at WARN);
                // an ERROR line per 503 during a database outage would only bury the real ones.
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuidV7))
        .layer(axum::middleware::from_fn(screen_request_id))
        // Outermost, so the latency is the whole request's; per route, as Router::layer sees
        // the matched path.
        .layer(axum::middleware::from_fn(crate::monitoring::track_requests))
        .with_state(state)
}

/// The process is up (no database involved).
#[utoipa::path(
    get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process is up.", body = String, content_type = "text/plain", example = "ok")),
)]
async fn healthz() -> &'static str {
    "ok"
}

openapi::problems!(
    ReadyProblems = [&[
        Code::DatabaseUnavailable,
        Code::MigrationsPending,
        Code::InternalError
    ]]
);

/// Ready when the database answers and has every migration this build knows.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready to serve.", body = String, content_type = "text/plain", example = "ready"),
        ReadyProblems,
    ),
)]
async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let applied = crate::db::migrations_applied(&state.pool)
        .await
        .map_err(crate::app::Error::from)?;
    if !applied {
        return Err(ApiError::new(
            Code::MigrationsPending,
            "The database lacks migrations this build needs.",
        ));
    }
    Ok("ready")
}

/// When a request is answered 503 `request_timeout` if it is not done: a request extension, which
/// the handlers pass to the use cases in their `RequestContext`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(tokio::time::Instant);

impl Deadline {
    /// The deadline [`request_timeout`] set on a request, if it went through it.
    pub(crate) fn of(parts: &axum::http::request::Parts) -> Option<tokio::time::Instant> {
        parts.extensions.get::<Self>().map(|d| d.0)
    }
}

/// Answers 503 `request_timeout` when producing a response takes longer than the configured
/// limit. Dropping the handler's future rolls back its transaction (a purchase's last call, which
/// the database commits on its own, is given the [`Deadline`]); a body that is already streaming
/// (an audit export) is not cut.
async fn request_timeout(
    State(state): State<AppState>,
    mut request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let deadline = tokio::time::Instant::now() + state.limits.request_timeout;
    request.extensions_mut().insert(Deadline(deadline));
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::request_timeout().into_response(),
    }
}

/// Response header saying that the caller's `x-request-id` was refused and replaced by the one
/// this response carries.
pub const REQUEST_ID_REPLACED: &str = "x-request-id-replaced";

/// Longest request id kept from a caller.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// Whether a caller's request id may be kept. It is logged and stored in the tamper-evident event
/// log, so only 1 to 128 letters, digits, `.`, `_`, `:` and `-`, starting with a letter or digit:
/// room for a UUID, a W3C trace id or an ordering system's reference, none for a spreadsheet
/// formula or kilobytes of text.
fn acceptable_request_id(value: &axum::http::HeaderValue) -> bool {
    let bytes = value.as_bytes();
    bytes.len() <= MAX_REQUEST_ID_CHARS
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Drops a caller's `x-request-id` that is not acceptable, or is sent more than once, so that a new
/// one is made; the response says so in [`REQUEST_ID_REPLACED`].
async fn screen_request_id(
    mut request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let replaced = match extract::at_most_one(request.headers(), REQUEST_ID) {
        Ok(None) => false,
        Ok(Some(id)) => !acceptable_request_id(id),
        Err(extract::SentTwice) => true,
    };
    if !replaced {
        return next.run(request).await;
    }
    request.headers_mut().remove(REQUEST_ID);
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        REQUEST_ID_REPLACED,
        axum::http::HeaderValue::from_static(
            "the x-request-id sent must be 1 to 128 of A-Z a-z 0-9 . _ : - starting with a letter or digit",
        ),
    );
    response
}

/// Answers 413 `payload_too_large` at once when the declared `Content-Length` is over `max`:
/// otherwise the handler would wait for a body it will refuse, as long as the client cares to
/// take to send it (or not send it). Bodies without a length are still cut at `max` as they come.
async fn refuse_declared_oversize(
    State(max): State<usize>,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return ApiError::payload_too_large(max).into_response();
    }
    next.run(request).await
}

/// Request ids are UUIDv7, so they sort by arrival time in logs.
#[derive(Debug, Clone, Copy)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7()
            .to_string()
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::acceptable_request_id;

    #[test]
    fn request_ids_are_kept_only_when_short_and_plain() {
        for kept in [
            "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c8d",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "order:1001.retry_2",
            &"a".repeat(128),
        ] {
            let value = HeaderValue::from_str(kept).unwrap();
            assert!(acceptable_request_id(&value), "{kept}");
        }
        for refused in [
            "",
            "=HYPERLINK(\"http://x\")",
            "-1",
            "@x",
            "a b",
            "a;b",
            &"a".repeat(129),
        ] {
            let value = HeaderValue::from_str(refused).unwrap();
            assert!(!acceptable_request_id(&value), "{refused}");
        }
        let latin = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert!(!acceptable_request_id(&latin));
    }
}
