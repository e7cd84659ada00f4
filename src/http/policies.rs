//! `/v1/policies`: the published policy versions, checking a draft, and publishing it (issue 14).

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
    extract::{Json, Path},
    openapi::{AUTHENTICATED, JSON_BODY, PATH, problems},
};
use crate::{
    app::{
        self, RequestContext,
        policies::{Publication, PublishedPolicy},
    },
    domain::PolicyDocument,
};

/// The policy routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, publish))
        .routes(routes!(show))
        .routes(routes!(check))
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
