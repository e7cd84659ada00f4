//! Decisions without side effects: a dry-run purchase decision and the eligible-offer listing.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Code,
    error::violations_json,
    extract::{Json, Path, Query},
    openapi::{AUTHENTICATED, JSON_BODY, PATH, QUERY, Violation, problems},
    pagination::{IdCursor, Page, PageParams},
};
use crate::{
    app::{self, RequestContext},
    db::offers::Offer,
    domain::{CustomerId, OfferId, PartnerId, PurchaseDecision, Quantity},
};

/// The decision routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(decide))
        .routes(routes!(eligible_offers))
}

/// A purchase to decide without buying.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProposedPurchase {
    customer_id: CustomerId,
    partner_id: PartnerId,
    offer_id: OfferId,
    /// Accepted so an ordering system can send its purchase body as is; checked, not decisive.
    #[schema(minimum = 1, maximum = 1_000_000)]
    quantity: Option<i64>,
}

/// The rules' answer.
#[derive(Debug, Serialize, ToSchema)]
struct DecisionBody {
    allowed: bool,
    /// Every broken rule, in rule-book order; empty when allowed.
    #[schema(value_type = Vec<Violation>)]
    violations: Value,
    /// The policy version the decision was made under: the one in force now.
    policy_version: i32,
}

problems!(
    DecideProblems = [
        AUTHENTICATED,
        JSON_BODY,
        &[
            Code::InvalidField,
            Code::CustomerNotFound,
            Code::PartnerNotFound,
            Code::OfferNotFound,
        ]
    ]
);

/// Ask the rules whether a purchase would be allowed; writes nothing.
#[utoipa::path(
    post, path = "/v1/purchase-decisions", tag = "decisions", operation_id = "decide_purchase",
    request_body = ProposedPurchase,
    responses((status = 200, description = "The decision.", body = DecisionBody), DecideProblems),
)]

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
    let violations = match &decision.answer {
        PurchaseDecision::Allowed => Vec::new(),
        PurchaseDecision::Denied(v) => v.clone(),
    };
    Ok(Json(DecisionBody {
        allowed: decision.answer.is_allowed(),
        violations: violations_json(&violations),
        policy_version: decision.policy_version,
    }))
}

/// Whose eligible offers, when, and which page (one struct, so unknown parameters can be refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EligibleOffersParams {
    /// The partner that would sell (required).
    #[param(required = true)]
    partner_id: Option<PartnerId>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    after: Option<uuid::Uuid>,
    /// RFC 3339 instant: what the partner could have sold then. Absent means now.
    #[serde(default, deserialize_with = "super::extract::optional_instant")]
    as_of: Option<DateTime<Utc>>,
}

problems!(
    EligibleProblems = [
        AUTHENTICATED,
        PATH,
        QUERY,
        &[Code::CustomerNotFound, Code::PartnerNotFound,]
    ]
);

/// A page of eligible offers, and the policy version they were decided under.
#[derive(Debug, Serialize, ToSchema)]
struct EligibleOffers {
    /// The offers, oldest first.
    items: Vec<Offer>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[schema(nullable)]
    next_cursor: Option<IdCursor>,
    /// The policy version in force at `as_of` (or now), which decided them.
    policy_version: i32,
}

/// The offers the partner may sell the customer now (or could have at `as_of`), under the policy
/// version in force then.
#[utoipa::path(
    get, path = "/v1/customers/{customer_id}/eligible-offers", tag = "decisions",
    operation_id = "list_eligible_offers",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), EligibleOffersParams),
    responses((status = 200, description = "A page of offers.", body = EligibleOffers), EligibleProblems),
)]
async fn eligible_offers(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(customer_id): Path<CustomerId>,
    Query(params): Query<EligibleOffersParams>,
) -> Result<Json<EligibleOffers>, ApiError> {
    let partner_id = params
        .partner_id
        .ok_or_else(|| ApiError::invalid_query("partner_id is required"))?;
    let (keyset, limit) = PageParams {
        limit: params.limit,
        after: params.after,
    }
    .keyset()?;
    let decided = app::purchases::eligible_offers(
        &state.pool,
        &ctx,
        customer_id,
        partner_id,
        params.as_of,
        keyset,
    )
    .await?;
    let page = Page::<_, IdCursor>::from_rows(decided.answer, limit, |o| o.id.0);
    Ok(Json(EligibleOffers {
        items: page.items,
        next_cursor: page.next_cursor,
        policy_version: decided.policy_version,
    }))
}
