//! `/v1/webhook-endpoints`: where notices of changes are sent, signed (Standard Webhooks); and
//! `/v1/partner-events`: the same notices as a feed to pull.

use std::time::Duration;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState, Code,
    extract::{Json, Path, Query},
    openapi::{AUTHENTICATED, JSON_BODY, PATH, QUERY, problems},
    pagination::{Page, PageParams, page_size},
};
use crate::{
    app::{
        self, RequestContext,
        webhooks::{EndpointWithSecret, MAX_DESCRIPTION_CHARS, MAX_URL_CHARS},
    },
    db::webhooks::{Delivery, Endpoint, FeedEntry, Redelivery},
    domain::{PartnerId, checked_text, webhook::WebhookEventType},
};

/// The webhook routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(redeliver))
        .routes(routes!(rotate))
        .routes(routes!(send_test))
        .routes(routes!(deliveries))
        .routes(routes!(feed))
}

/// An endpoint to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://orders.example.com/hooks/catalog", "event_types": ["subscription.created", "customer.lockout_applies"]}))]
struct CreateEndpoint {
    /// `https://` URL; its host must resolve to public addresses (or ones the operator allows).
    #[schema(max_length = 2000)]
    url: String,
    /// Notice types wanted; empty or absent: all.
    #[serde(default)]
    event_types: Vec<WebhookEventType>,
    /// What it is for: up to 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    description: String,
    /// For partner roles their own partner (the default); operators omit it for a platform-wide
    /// endpoint.
    partner_id: Option<PartnerId>,
}

problems!(
    CreateProblems = [
        AUTHENTICATED,
        JSON_BODY,
        &[
            Code::InvalidField,
            Code::InvalidWebhookUrl,
            Code::PartnerNotFound
        ]
    ]
);

/// Register an endpoint: 201 with its signing secret (`whsec_…`), shown this once.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints", tag = "webhooks", operation_id = "create_webhook_endpoint",
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Registered.", body = EndpointWithSecret,
         headers(("Location" = String, description = "The endpoint's URL."))),
        CreateProblems,
    ),
)]
async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreateEndpoint>,
) -> Result<impl IntoResponse, ApiError> {
    if body.url.chars().count() > MAX_URL_CHARS {
        return Err(ApiError::invalid_field(
            "url",
            format!("at most {MAX_URL_CHARS} characters"),
        ));
    }
    let description = if body.description.is_empty() {
        String::new()
    } else {
        checked_text(&body.description, MAX_DESCRIPTION_CHARS)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "description",
                    format!("at most {MAX_DESCRIPTION_CHARS} printable characters"),
                )
            })?
            .to_owned()
    };
    let created = app::webhooks::create(
        &state.pool,
        &ctx,
        &state.webhooks,
        body.partner_id,
        &body.url,
        &body.event_types,
        &description,
    )
    .await?;
    let location = format!("/v1/webhook-endpoints/{}", created.endpoint.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    ))
}

problems!(ListProblems = [AUTHENTICATED, QUERY]);

/// List endpoints: a partner's own, or the platform's for operators.
#[utoipa::path(
    get, path = "/v1/webhook-endpoints", tag = "webhooks", operation_id = "list_webhook_endpoints",
    params(PageParams),
    responses((status = 200, description = "A page of endpoints.", body = Page<Endpoint>), ListProblems),
)]
async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Endpoint>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::webhooks::list(&state.pool, &ctx, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |e| e.id)))
}

problems!(OneProblems = [AUTHENTICATED, PATH, &[Code::WebhookEndpointNotFound]]);

/// One endpoint.
#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "webhooks", operation_id = "get_webhook_endpoint",
    params(("endpoint_id" = Uuid, Path, description = "The endpoint's id.")),
    responses((status = 200, description = "The endpoint.", body = Endpoint), OneProblems),
)]
async fn get(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(app::webhooks::get(&state.pool, &ctx, id).await?))
}

/// Disable an endpoint (idempotent): nothing more is queued for it or sent to it.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{endpoint_id}/disable", tag = "webhooks", operation_id = "disable_webhook_endpoint",
    params(("endpoint_id" = Uuid, Path, description = "The endpoint's id.")),
    responses((status = 200, description = "The disabled endpoint.", body = Endpoint), OneProblems),
)]
async fn disable(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(app::webhooks::disable(&state.pool, &ctx, id).await?))
}

/// Enable a disabled endpoint (idempotent): its pending deliveries are sent again. What happened
/// while it was disabled was not queued for it: redeliver that range.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{endpoint_id}/enable", tag = "webhooks", operation_id = "enable_webhook_endpoint",
    params(("endpoint_id" = Uuid, Path, description = "The endpoint's id.")),
    responses((status = 200, description = "The enabled endpoint.", body = Endpoint), OneProblems),
)]
async fn enable(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(app::webhooks::enable(&state.pool, &ctx, id).await?))
}

/// What to send again: one event's notice, or those of the events in a time range.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"since": "2026-11-27T08:00:00Z", "until": "2026-11-27T12:00:00Z"}))]
struct RedeliverRequest {
    /// The audit event (the `webhook-id` received) whose notice to send again.
    event_id: Option<Uuid>,
    /// Notices of events that happened at or after this instant; with `until`, instead of
    /// `event_id`.
    #[serde(default, deserialize_with = "super::extract::optional_instant")]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// And before this instant (default: now).
    #[serde(default, deserialize_with = "super::extract::optional_instant")]
    until: Option<chrono::DateTime<chrono::Utc>>,
}

problems!(
    RedeliverProblems = [
        AUTHENTICATED,
        PATH,
        JSON_BODY,
        &[
            Code::InvalidField,
            Code::WebhookEndpointNotFound,
            Code::WebhookEventNotFound
        ]
    ]
);

/// Send notices again, due now, each with a fresh retry schedule: one event's (`event_id`), or
/// those of events that happened in `[since, until)`, up to 1,000 a call (`next_since` says where
/// to go on). Notices never queued for the endpoint (it was disabled, or registered later) are
/// sent too; a partner's endpoint only ever gets its own partner's. Per customer, order holds.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{endpoint_id}/redeliver", tag = "webhooks", operation_id = "redeliver_webhooks",
    params(("endpoint_id" = Uuid, Path, description = "The endpoint's id.")),
    request_body = RedeliverRequest,
    responses((status = 202, description = "Queued.", body = app::webhooks::Redelivered), RedeliverProblems),
)]
async fn redeliver(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
    Json(body): Json<RedeliverRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let which = match (body.event_id, body.since, body.until) {
        (Some(event), None, None) => Redelivery::Event(event),
        (None, Some(since), until) => {
            let until = until.unwrap_or_else(chrono::Utc::now);
            if until <= since {
                return Err(ApiError::invalid_field("until", "must be after `since`"));
            }
            Redelivery::Range { since, until }
        }
        (Some(_), _, _) => {
            return Err(ApiError::invalid_field(
                "event_id",
                "either `event_id` or a range (`since`, `until`), not both",
            ));
        }
        (None, None, _) => {
            return Err(ApiError::invalid_field(
                "since",
                "name an `event_id` or the start of a range",
            ));
        }
    };
    let done = app::webhooks::redeliver(&state.pool, &ctx, id, which).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

/// Rotate the signing secret: the new one is shown this once; for 24 hours both sign
/// (`webhook-signature` carries two signatures).
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", tag = "webhooks", operation_id = "rotate_webhook_secret",
    params(("endpoint_id" = Uuid, Path, description = "The endpoint's id.")),
    responses((status = 200, description = "The endpoint and its new secret.", body = EndpointWithSecret), OneProblems),
)]
async fn rotate(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    Ok(Json(app::webhooks::rotate(&state.pool, &ctx, id).await?))
}

/// Send a signed `webhook.test` notice now (`data` empty, a fresh `webhook-id`), to check the URL
/// and the receiver's signature check; 200 with how it went, whatever the receiver answered.
/// Nothing is queued or retried.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints/{endpoint_id}/test", tag = "webhooks", operation_id = "test_webhook_endpoint",
    params(("endpoint_id" = Uuid, Path, description = "The endpoint's id.")),
    responses((status = 200, description = "How the attempt went.", body = crate::delivery::TestOutcome), OneProblems),
)]
async fn send_test(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Json<crate::delivery::TestOutcome>, ApiError> {
    Ok(Json(
        app::webhooks::send_test(&state.pool, &ctx, &state.webhooks, id).await?,
    ))
}

/// How many recent deliveries to show.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RecentParams {
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

problems!(DeliveriesProblems = [AUTHENTICATED, PATH, QUERY, &[Code::WebhookEndpointNotFound]]);

/// The endpoint's recent deliveries, newest first, each with every attempt (status, latency,
/// error, the first 256 bytes of the answer).
#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{endpoint_id}/deliveries", tag = "webhooks", operation_id = "list_webhook_deliveries",
    params(("endpoint_id" = Uuid, Path, description = "The endpoint's id."), RecentParams),
    responses((status = 200, description = "Recent deliveries.", body = Vec<Delivery>), DeliveriesProblems),
)]
async fn deliveries(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
    Query(params): Query<RecentParams>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let limit = page_size(params.limit)?;
    Ok(Json(
        app::webhooks::deliveries(&state.pool, &ctx, id, limit as i64).await?,
    ))
}

/// Longest a feed request may wait for news.
const MAX_FEED_WAIT_SECS: u32 = 25;

/// A page of the feed, and how long to wait for one if nothing is new.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FeedParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` (a `seq`) of the previous page; 0 or absent: from the start.
    after: Option<i64>,
    /// Seconds to hold the request while nothing is new (long-poll), 0 to 25 (default 0): it
    /// answers as soon as a notice is added, or empty when the time is up. Never longer than the
    /// service's request time limit.
    #[param(minimum = 0, maximum = 25)]
    wait: Option<u32>,
}

problems!(FeedProblems = [AUTHENTICATED, QUERY]);

/// The change feed: the notices the caller's webhooks get (its partner's; the platform's for
/// operators), oldest first. Pass the last `next_cursor` as `after`; an empty page means nothing
/// new yet (with `wait`, after waiting for news that long). A cursor never skips a notice that
/// commits late.
#[utoipa::path(
    get, path = "/v1/partner-events", tag = "webhooks", operation_id = "list_partner_events",
    params(FeedParams),
    responses((status = 200, description = "A page of the feed.", body = Page<FeedEntry, i64>), FeedProblems),
)]
async fn feed(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<FeedParams>,
) -> Result<Json<Page<FeedEntry, i64>>, ApiError> {
    let limit = page_size(params.limit)?;
    let wait = params.wait.unwrap_or(0);
    if wait > MAX_FEED_WAIT_SECS {
        return Err(ApiError::invalid_query(format!(
            "wait must be between 0 and {MAX_FEED_WAIT_SECS} seconds"
        )));
    }
    // Answered, empty, a second before the request's time limit would answer 503.
    let wait = Duration::from_secs(wait.into()).min(
        state
            .limits
            .request_timeout
            .saturating_sub(Duration::from_secs(1)),
    );
    let rows = app::webhooks::feed(
        &state.pool,
        &ctx,
        &state.feed_bell,
        params.after.unwrap_or(0),
        limit as i64 + 1,
        wait,
    )
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |e| e.seq)))
}
