//! Decisions without side effects: a dry-run purchase decision and the eligible-offer listing.

use axum::{
    Router,
    extract::State,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ApiError, AppState,
    error::violations_json,
    extract::{Json, Path, Query},
    pagination::{Page, PageParams},
};
use crate::{
    app::{self, RequestContext},
    db::offers::Offer,
    domain::{CustomerId, OfferId, PartnerId, PurchaseDecision, Quantity},
};

/// The decision routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/purchase-decisions", post(decide))
        .route(
            "/v1/customers/{customer_id}/eligible-offers",
            get(eligible_offers),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposedPurchase {
    customer_id: CustomerId,
    partner_id: PartnerId,
    offer_id: OfferId,
    /// Accepted so an ordering system can send its purchase body as is; checked, not decisive.
    quantity: Option<i64>,
}

#[derive(Debug, Serialize)]
struct DecisionBody {
    allowed: bool,
    violations: Value,
}

async fn decide(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<ProposedPurchase>,
) -> Result<Json<DecisionBody>, ApiError> {
    if let Some(quantity) = body.quantity {
        Quantity::new(quantity).map_err(|e| ApiError::invalid_field("quantity", e))?;
    }
    let decision = app::purchases::decide_only(
        &state.pool,
        &ctx,
        body.customer_id,
        body.partner_id,
        body.offer_id,
    )
    .await?;
    let violations = match &decision {
        PurchaseDecision::Allowed => Vec::new(),
        PurchaseDecision::Denied(v) => v.clone(),
    };
    Ok(Json(DecisionBody {
        allowed: decision.is_allowed(),
        violations: violations_json(&violations),
    }))
}

#[derive(Debug, Deserialize)]
struct EligibleOffersParams {
    partner_id: Option<PartnerId>,
    /// RFC 3339 instant: what the partner could have sold then. Absent means now.
    as_of: Option<DateTime<Utc>>,
}

async fn eligible_offers(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(customer_id): Path<CustomerId>,
    Query(params): Query<EligibleOffersParams>,
    Query(page): Query<PageParams>,
) -> Result<Json<Page<Offer>>, ApiError> {
    let partner_id = params
        .partner_id
        .ok_or_else(|| ApiError::invalid_query("partner_id is required"))?;
    let (keyset, limit) = page.keyset()?;
    let rows = app::purchases::eligible_offers(
        &state.pool,
        &ctx,
        customer_id,
        partner_id,
        params.as_of,
        keyset,
    )
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |o| o.id.0)))
}
