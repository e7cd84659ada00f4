//! `/v1/customers/{id}/subscriptions`: buying, and the subscription history.

use axum::{
    Router,
    extract::State,
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde::Deserialize;

use super::{
    ApiError, AppState,
    extract::{Json, Path, Query},
    pagination::{Page, PageParams},
};
use crate::{
    app::{
        self, RequestContext,
        purchases::{IdempotencyKey, PurchaseOutcome, PurchaseRequest},
    },
    db::subscriptions::Subscription,
    domain::{CustomerId, OfferId, PartnerId, Quantity, SubscriptionId, SubscriptionStatus},
};

/// Set on a response that replays the stored outcome of an earlier request with the same key.
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The subscription routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/customers/{customer_id}/subscriptions",
            get(list).post(purchase),
        )
        .route(
            "/v1/customers/{customer_id}/subscriptions/{subscription_id}",
            get(show),
        )
        .route(
            "/v1/customers/{customer_id}/subscriptions/{subscription_id}/status",
            put(set_status),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    partner_id: PartnerId,
    offer_id: OfferId,
    quantity: i64,
}

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
                Json(subscription),
            )
                .into_response()
        }
        PurchaseOutcome::Denied { violations } => {
            ApiError::purchase_denied(&violations).into_response()
        }
    };
    if purchase.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(customer_id): Path<CustomerId>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Subscription>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::customers::subscriptions(&state.pool, &ctx, customer_id, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |s| s.id.0)))
}

async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path((customer_id, id)): Path<(CustomerId, SubscriptionId)>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(
        app::customers::subscription(&state.pool, &ctx, customer_id, id).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetStatus {
    status: SubscriptionStatus,
    reason: Option<String>,
}

async fn set_status(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path((customer_id, id)): Path<(CustomerId, SubscriptionId)>,
    Json(body): Json<SetStatus>,
) -> Result<Json<Subscription>, ApiError> {
    let subscription = app::subscriptions::set_status(
        &state.pool,
        &ctx,
        customer_id,
        id,
        body.status,
        body.reason.as_deref(),
    )
    .await?;
    Ok(Json(subscription))
}
