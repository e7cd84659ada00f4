//! `/v1/customers/{id}/subscriptions`: buying, and the subscription history.

use axum::{
    extract::State,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Code,
    extract::{Json, Path, Query},
    openapi::{AUTHENTICATED, JSON_BODY, PATH, QUERY, problems},
    pagination::{Page, PageParams},
};
use crate::{
    app::{
        self, RequestContext,
        purchases::{IdempotencyKey, PurchaseOutcome, PurchaseRequest},
    },
    db::subscriptions::SubscriptionRow,
    domain::{
        CustomerId, OfferId, PartnerId, Quantity, Segment, SubscriptionId, SubscriptionStatus,
    },
};

/// Set on a response that replays the stored outcome of an earlier request with the same key.
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The subscription routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, purchase))
        .routes(routes!(show))
        .routes(routes!(set_status))
}

/// A subscription as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c04", "customer_id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c01", "partner_id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c02",
    "offer_id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c03", "segment": "education", "quantity": 25, "status": "active",
    "created_at": "2026-11-24T10:00:00.123456Z", "policy_version": 1}))]
pub(super) struct Subscription {
    /// Subscription id.
    id: SubscriptionId,
    /// The customer who owns it.
    customer_id: CustomerId,
    /// The partner who sold it.
    partner_id: PartnerId,
    /// The offer bought.
    offer_id: OfferId,
    /// The offer's segment.
    segment: Segment,
    /// Number of licenses.
    quantity: i32,
    /// Lifecycle state.
    status: SubscriptionStatus,
    /// When it was created: the instant of its decision, under the customer's lock.
    created_at: DateTime<Utc>,
    /// The policy version it was decided under, the one in force at `created_at`.
    policy_version: i32,
}

impl From<SubscriptionRow> for Subscription {
    fn from(row: SubscriptionRow) -> Self {
        Self {
            id: row.id,
            customer_id: row.customer_id,
            partner_id: row.partner_id,
            offer_id: row.offer_id,
            segment: row.segment,
            quantity: row.quantity,
            status: row.status,
            created_at: row.created_at,
            policy_version: row.policy_version,
        }
    }
}

/// What to buy, and from which partner.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    partner_id: PartnerId,
    offer_id: OfferId,
    /// Licenses, 1 to 1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    quantity: i64,
}

problems!(
    PurchaseProblems = [
        AUTHENTICATED,
        JSON_BODY,
        PATH,
        &[
            Code::MissingIdempotencyKey,
            Code::InvalidIdempotencyKey,
            Code::InvalidField,
            Code::CustomerNotFound,
            Code::PartnerNotFound,
            Code::OfferNotFound,
            Code::IdempotencyKeyReused,
            Code::PurchaseDenied,
        ]
    ]
);

/// Buy a subscription: decided by the rules inside one transaction; a retry with the same
/// `Idempotency-Key` gets the stored outcome (allowed or denied) and never buys twice.
#[utoipa::path(
    post, path = "/v1/customers/{customer_id}/subscriptions", tag = "subscriptions",
    operation_id = "purchase_subscription",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), IdempotencyKey),
    request_body = PurchaseBody,
    responses(
        (status = 201, description = "Bought.", body = Subscription, headers(
            ("Location" = String, description = "The subscription's URL."),
            ("idempotent-replayed" = String, description = "`true` when this replays an earlier outcome."))),
        PurchaseProblems,
    ),
)]

async fn purchase(
    State(state): State<AppState>,
    ctx: RequestContext,
    key: IdempotencyKey,
    Path(customer_id): Path<CustomerId>,
    Json(body): Json<PurchaseBody>,
) -> Result<Response, ApiError> {
    let quantity =
        Quantity::new(body.quantity).map_err(|e| ApiError::invalid_field("quantity", e))?;
    let request = PurchaseRequest {
        customer_id,
        partner_id: body.partner_id,
        offer_id: body.offer_id,
        quantity,
    };
    let purchase = app::purchases::purchase(&state.pool, &ctx, &key, request).await?;
    let mut response = match purchase.outcome {
        PurchaseOutcome::Created { subscription } => {
            let location = format!(
                "/v1/customers/{customer_id}/subscriptions/{}",
                subscription.id
            );
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(Subscription::from(subscription)),
            )
                .into_response()
        }
        PurchaseOutcome::Denied {
            violations,
            policy_version,
        } => ApiError::purchase_denied(&violations, policy_version).into_response(),
    };
    if purchase.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

problems!(ListProblems = [AUTHENTICATED, PATH, QUERY, &[Code::CustomerNotFound]]);

/// The customer's subscriptions, oldest first (partner roles see their own sales).
#[utoipa::path(
    get, path = "/v1/customers/{customer_id}/subscriptions", tag = "subscriptions",
    operation_id = "list_subscriptions",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), PageParams),
    responses((status = 200, description = "A page of subscriptions.", body = Page<Subscription>), ListProblems),
)]
async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(customer_id): Path<CustomerId>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Subscription>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::customers::subscriptions(&state.pool, &ctx, customer_id, keyset).await?;
    let views = rows.into_iter().map(Subscription::from).collect();
    Ok(Json(Page::from_rows(views, limit, |s: &Subscription| {
        s.id.0
    })))
}

problems!(
    ShowProblems = [
        AUTHENTICATED,
        PATH,
        &[Code::CustomerNotFound, Code::SubscriptionNotFound]
    ]
);

/// Read one subscription.
#[utoipa::path(
    get, path = "/v1/customers/{customer_id}/subscriptions/{subscription_id}", tag = "subscriptions",
    operation_id = "get_subscription",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), ("subscription_id" = SubscriptionId, Path, description = "The subscription's id.")),
    responses((status = 200, description = "The subscription.", body = Subscription), ShowProblems),
)]
async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path((customer_id, id)): Path<(CustomerId, SubscriptionId)>,
) -> Result<Json<Subscription>, ApiError> {
    let row = app::customers::subscription(&state.pool, &ctx, customer_id, id).await?;
    Ok(Json(row.into()))
}

/// A subscription's new status.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "suspended", "reason": "unpaid invoice"}))]
struct SetStatus {
    status: SubscriptionStatus,
    /// Why (required).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1000, pattern = "\\S")]
    reason: Option<String>,
}

problems!(
    SetStatusProblems = [
        AUTHENTICATED,
        JSON_BODY,
        PATH,
        &[
            Code::CustomerNotFound,
            Code::SubscriptionNotFound,
            Code::InvalidField,
            Code::InvalidStatusTransition,
        ]
    ]
);

/// Change a subscription's status (back office); `cancelled` is final.
#[utoipa::path(
    put, path = "/v1/customers/{customer_id}/subscriptions/{subscription_id}/status",
    tag = "subscriptions", operation_id = "set_subscription_status",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), ("subscription_id" = SubscriptionId, Path, description = "The subscription's id.")),
    request_body = SetStatus,
    responses((status = 200, description = "The changed subscription.", body = Subscription), SetStatusProblems),
)]

async fn set_status(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path((customer_id, id)): Path<(CustomerId, SubscriptionId)>,
    Json(body): Json<SetStatus>,
) -> Result<Json<Subscription>, ApiError> {
    let reason = super::extract::reason(body.reason.as_deref())?;
    let subscription =
        app::subscriptions::set_status(&state.pool, &ctx, customer_id, id, body.status, &reason)
            .await?;
    Ok(Json(subscription.into()))
}
