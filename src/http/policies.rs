//! `/v1/policies`: the published policy versions, checking a draft, previewing its impact, and
//! publishing it (issue 14).

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Code,
    error::violations_json,
    extract::{Json, Path},
    openapi::{AUTHENTICATED, JSON_BODY, PATH, Violation, problems},
    pagination::body_page_size,
};
use crate::{
    app::{
        self, RequestContext,
        policies::{ChangedPair, LostSubscription, PreviewPages, Publication, PublishedPolicy},
    },
    db::policy_impact::CustomerSet,
    domain::{
        CustomerId, CustomerQualification, OfferId, OfferTerms, PartnerId, PolicyDocument,
        ProductKind, Segment, SubscriptionId, SubscriptionStatus,
    },
};

/// The policy routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, publish))
        .routes(routes!(show))
        .routes(routes!(check))
        .routes(routes!(preview))
}

/// A published policy version.
#[derive(Debug, Serialize, ToSchema)]
struct PolicyView {
    /// The version number.
    version: i32,
    /// From when it is in force, until the next version's; `null` for version 1, the rule book,
    /// in force since always.
    #[schema(nullable)]
    effective_from: Option<DateTime<Utc>>,
    /// Why it was published.
    reason: String,
    /// Who published it (principal id, or `system`).
    published_by: String,
    /// When.
    published_at: DateTime<Utc>,
    /// The rules.
    document: PolicyDocument,
}

impl From<PublishedPolicy> for PolicyView {
    fn from(published: PublishedPolicy) -> Self {
        let document = PolicyDocument::from(&published.policy);
        Self {
            version: i32::try_from(document.version).unwrap_or(i32::MAX),
            effective_from: published.effective_from,
            reason: published.reason,
            published_by: published.published_by,
            published_at: published.published_at,
            document,
        }
    }
}

/// Every published version.
#[derive(Debug, Serialize, ToSchema)]
struct PolicyList {
    /// Oldest first.
    items: Vec<PolicyView>,
}

problems!(ListProblems = [AUTHENTICATED]);

/// The published policy versions, oldest first: the rules every decision was made under.
#[utoipa::path(
    get, path = "/v1/policies", tag = "policies", operation_id = "list_policies",
    responses((status = 200, description = "Every version.", body = PolicyList), ListProblems),
)]
async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
) -> Result<Json<PolicyList>, ApiError> {
    let items = app::policies::list(&state.pool, &ctx)
        .await?
        .into_iter()
        .map(PolicyView::from)
        .collect();
    Ok(Json(PolicyList { items }))
}

problems!(ShowProblems = [AUTHENTICATED, PATH, &[Code::PolicyVersionNotFound]]);

/// One published policy version.
#[utoipa::path(
    get, path = "/v1/policies/{version}", tag = "policies", operation_id = "get_policy",
    params(("version" = i32, Path, description = "The version number.")),
    responses((status = 200, description = "The version.", body = PolicyView), ShowProblems),
)]
async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(version): Path<i32>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(
        app::policies::get(&state.pool, &ctx, version).await?.into(),
    ))
}

/// A draft's verdict.
#[derive(Debug, Serialize, ToSchema)]
struct CheckedPolicy {
    /// Always `true`: a draft with problems is answered 422 `invalid_policy`, naming each.
    valid: bool,
    /// The draft as it would be stored, normalized (lists sorted, repeated values reported).
    document: PolicyDocument,
}

problems!(CheckProblems = [AUTHENTICATED, JSON_BODY, &[Code::InvalidPolicy]]);

/// Check a draft policy document (operator); stores nothing.
#[utoipa::path(
    post, path = "/v1/policy-checks", tag = "policies", operation_id = "check_policy",
    request_body = PolicyDocument,
    responses((status = 200, description = "The draft is valid.", body = CheckedPolicy), CheckProblems),
)]
async fn check(
    ctx: RequestContext,
    Json(document): Json<PolicyDocument>,
) -> Result<Json<CheckedPolicy>, ApiError> {
    let policy = app::policies::check(&ctx, document)?;
    Ok(Json(CheckedPolicy {
        valid: true,
        document: PolicyDocument::from(&policy),
    }))
}

/// A version to publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    /// The rules; `version` must be the next number.
    document: PolicyDocument,
    /// From when it is in force: now if absent, never in the past, and after the latest
    /// version's. Decisions are made under the version in force at their instant.
    #[serde(default, deserialize_with = "super::extract::optional_instant")]
    effective_from: Option<DateTime<Utc>>,
    /// Why (1 to 1,000 characters).
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S")]
    reason: String,
}

problems!(
    PublishProblems = [
        AUTHENTICATED,
        JSON_BODY,
        &[
            Code::InvalidField,
            Code::InvalidPolicy,
            Code::PolicyVersionNotNext,
            Code::PolicyEffectiveTooEarly,
        ]
    ]
);

/// Publish the next policy version (operator). Published versions never change.
#[utoipa::path(
    post, path = "/v1/policies", tag = "policies", operation_id = "publish_policy",
    request_body = PublishBody,
    responses(
        (status = 201, description = "Published.", body = PolicyView,
         headers(("Location" = String, description = "The version's URL."))),
        PublishProblems,
    ),
)]
async fn publish(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<PublishBody>,
) -> Result<impl IntoResponse, ApiError> {
    let reason = super::extract::reason(Some(&body.reason))?;
    let published = app::policies::publish(
        &state.pool,
        &ctx,
        Publication {
            document: body.document,
            effective_from: body.effective_from,
            reason,
        },
    )
    .await?;
    let view = PolicyView::from(published);
    let location = format!("/v1/policies/{}", view.version);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    ))
}

/// A draft to measure against the version in force, and where each list's page starts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    /// The draft; checked as `POST /v1/policy-checks` checks it.
    document: PolicyDocument,
    /// Items per list, 1 to 200 (default 50).
    #[schema(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `customers.next_cursor` of a previous answer.
    customers_after: Option<CustomerId>,
    /// The `subscriptions.next_cursor` of a previous answer.
    subscriptions_after: Option<SubscriptionId>,
    /// The `pairs.next_cursor` of a previous answer.
    pairs_after: Option<PairKey>,
}

/// A linked customer–partner pair, the key of the pairs list.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PairKey {
    customer_id: CustomerId,
    partner_id: PartnerId,
}

/// What publishing the draft now would change. Nothing is written.
#[derive(Debug, Serialize, ToSchema)]
struct PreviewView {
    /// The version in force now, which the draft is measured against.
    current_version: u32,
    /// The draft's version.
    draft_version: u32,
    /// Customers whose qualification set is valid now and not under the draft.
    customers: InvalidatedCustomers,
    /// Active and suspended subscriptions whose purchase the version in force allows and the
    /// draft would deny, decided on the customer's and partner's facts now. They stay.
    subscriptions: LostSubscriptions,
    /// Linked customer–partner pairs that gain or lose offers of the catalog.
    pairs: ChangedPairs,
}

/// Customers whose set the draft does not accept, by id.
#[derive(Debug, Serialize, ToSchema)]
struct InvalidatedCustomers {
    /// All of them, not only this page.
    count: i64,
    items: Vec<InvalidatedCustomer>,
    /// For `customers_after`; `null` on the last page.
    #[schema(nullable)]
    next_cursor: Option<CustomerId>,
}

/// A customer whose set the draft does not accept.
#[derive(Debug, Serialize, ToSchema)]
struct InvalidatedCustomer {
    customer_id: CustomerId,
    name: String,
    /// The set it holds now.
    special_qualifications: CustomerQualification,
}

impl From<CustomerSet> for InvalidatedCustomer {
    fn from(customer: CustomerSet) -> Self {
        Self {
            customer_id: customer.id,
            name: customer.name,
            special_qualifications: customer.set,
        }
    }
}

/// Subscriptions that could no longer be bought, by id.
#[derive(Debug, Serialize, ToSchema)]
struct LostSubscriptions {
    /// All of them, not only this page.
    count: i64,
    items: Vec<LostSubscriptionView>,
    /// For `subscriptions_after`; `null` on the last page.
    #[schema(nullable)]
    next_cursor: Option<SubscriptionId>,
}

/// A subscription that could no longer be bought.
#[derive(Debug, Serialize, ToSchema)]
struct LostSubscriptionView {
    subscription_id: SubscriptionId,
    customer_id: CustomerId,
    partner_id: PartnerId,
    offer_id: OfferId,
    status: SubscriptionStatus,
    /// Every rule of the draft its purchase would break.
    #[schema(value_type = Vec<Violation>)]
    violations: serde_json::Value,
}

impl From<LostSubscription> for LostSubscriptionView {
    fn from(lost: LostSubscription) -> Self {
        let s = lost.subscription;
        Self {
            subscription_id: s.id,
            customer_id: s.customer_id,
            partner_id: s.partner_id,
            offer_id: s.offer_id,
            status: s.status,
            violations: violations_json(&lost.violations),
        }
    }
}

/// Pairs whose eligible offers change, by (customer, partner).
#[derive(Debug, Serialize, ToSchema)]
struct ChangedPairs {
    /// All of them, not only this page.
    count: i64,
    /// Of them, those that gain offers.
    gaining: i64,
    /// Of them, those that lose offers (a pair may both gain and lose).
    losing: i64,
    items: Vec<ChangedPairView>,
    /// For `pairs_after`; `null` on the last page.
    #[schema(nullable)]
    next_cursor: Option<PairKey>,
}

/// A pair whose eligible offers change.
#[derive(Debug, Serialize, ToSchema)]
struct ChangedPairView {
    customer_id: CustomerId,
    partner_id: PartnerId,
    /// Terms of catalog offers the pair may buy under the draft and not now.
    gained: Vec<TermsView>,
    /// Terms of catalog offers the pair may buy now and not under the draft.
    lost: Vec<TermsView>,
}

/// The terms of offers: every offer with them is decided alike.
#[derive(Debug, Serialize, ToSchema)]
struct TermsView {
    segment: Segment,
    product_kind: ProductKind,
}

impl From<OfferTerms> for TermsView {
    fn from(terms: OfferTerms) -> Self {
        Self {
            segment: terms.segment,
            product_kind: terms.product_kind,
        }
    }
}

impl From<ChangedPair> for ChangedPairView {
    fn from(pair: ChangedPair) -> Self {
        Self {
            customer_id: pair.customer_id,
            partner_id: pair.partner_id,
            gained: pair
                .change
                .gained
                .into_iter()
                .map(TermsView::from)
                .collect(),
            lost: pair.change.lost.into_iter().map(TermsView::from).collect(),
        }
    }
}

problems!(
    PreviewProblems = [
        AUTHENTICATED,
        JSON_BODY,
        &[Code::InvalidField, Code::InvalidPolicy]
    ]
);

/// Preview a draft's impact against the version in force (operator): customers whose sets become
/// invalid, subscriptions that could no longer be bought, pairs that gain or lose offers. Writes
/// nothing.
#[utoipa::path(
    post, path = "/v1/policy-previews", tag = "policies", operation_id = "preview_policy",
    request_body = PreviewBody,
    responses((status = 200, description = "The impact.", body = PreviewView), PreviewProblems),
)]
async fn preview(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<PreviewBody>,
) -> Result<Json<PreviewView>, ApiError> {
    let pages = PreviewPages {
        limit: body_page_size(body.limit)?,
        customers_after: body.customers_after,
        subscriptions_after: body.subscriptions_after,
        pairs_after: body.pairs_after.map(|k| (k.customer_id, k.partner_id)),
    };
    let preview = app::policies::preview(&state.pool, &ctx, body.document, pages).await?;
    Ok(Json(PreviewView {
        current_version: preview.current.get(),
        draft_version: preview.draft.version().get(),
        customers: InvalidatedCustomers {
            count: preview.customers.count,
            items: preview
                .customers
                .items
                .into_iter()
                .map(Into::into)
                .collect(),
            next_cursor: preview.customers.next,
        },
        subscriptions: LostSubscriptions {
            count: preview.subscriptions.count,
            items: preview
                .subscriptions
                .items
                .into_iter()
                .map(Into::into)
                .collect(),
            next_cursor: preview.subscriptions.next,
        },
        pairs: ChangedPairs {
            count: preview.pairs.count,
            gaining: preview.pairs_gaining,
            losing: preview.pairs_losing,
            items: preview.pairs.items.into_iter().map(Into::into).collect(),
            next_cursor: preview.pairs.next.map(|(customer_id, partner_id)| PairKey {
                customer_id,
                partner_id,
            }),
        },
    }))
}
