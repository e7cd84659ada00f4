//! `/v1/partners`: partners and their profile (reseller qualifications with evidence, indirect
//! provider links), with versions and history.

use std::collections::BTreeSet;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Code, etag,
    extract::{AsOf, IfMatch, Json, Path, Query, reason},
    openapi::{AUTHENTICATED, IF_MATCH, JSON_BODY, PATH, QUERY, problems},
    pagination::{Page, PageParams, VersionPageParams},
};
use crate::{
    app::{self, RequestContext, partners::ResellerQualificationChange, principals::ActorName},
    db::partners::{Partner, PartnerEvidence, ProfileRecord},
    domain::{DisplayName, PartnerId, PartnerKind, ResellerQualification},
};

/// The partner routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(profile))
        .routes(routes!(profile_history))
        .routes(routes!(set_reseller_qualifications))
        .routes(routes!(set_indirect_providers))
}

/// A new partner, optionally with its reseller qualifications and their evidence.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Contoso Reseller", "kind": "direct_bill_partner",
    "reseller_qualifications": ["education"], "evidence": {"education": "EDU-AUTH-2231"}}))]
struct CreatePartner {
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    kind: PartnerKind,
    #[serde(default)]
    #[schema(value_type = Vec<ResellerQualification>)]
    reseller_qualifications: BTreeSet<ResellerQualification>,
    /// Evidence reference per added qualification (required for each).
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    evidence: PartnerEvidence,
    /// Why; defaults to "partner created".
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

problems!(CreateProblems = [AUTHENTICATED, JSON_BODY, &[Code::InvalidField]]);

/// Create a partner (back office).
#[utoipa::path(
    post, path = "/v1/partners", tag = "partners", operation_id = "create_partner",
    request_body = CreatePartner,
    responses(
        (status = 201, description = "Created.", body = Partner, headers(
            ("ETag" = String, description = "The version, e.g. `\"1\"`."),
            ("Location" = String, description = "The partner's URL."))),
        CreateProblems,
    ),
)]

async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreatePartner>,
) -> Result<impl IntoResponse, ApiError> {
    let name = DisplayName::parse(&body.name).map_err(|e| ApiError::invalid_field("name", e))?;
    let change = ResellerQualificationChange {
        qualifications: body.reseller_qualifications,
        evidence: body.evidence,
        reason: reason(Some(body.reason.as_deref().unwrap_or("partner created")))?,
    };
    let partner = app::partners::create(&state.pool, &ctx, &name, body.kind, &change).await?;
    let location = format!("/v1/partners/{}", partner.id);
    Ok((
        StatusCode::CREATED,
        etag(partner.version),
        [(header::LOCATION, location)],
        Json(partner),
    ))
}

problems!(ListProblems = [AUTHENTICATED, QUERY]);

/// List partners (partner roles see their own), oldest first.
#[utoipa::path(
    get, path = "/v1/partners", tag = "partners", operation_id = "list_partners",
    params(PageParams),
    responses((status = 200, description = "A page of partners.", body = Page<Partner>), ListProblems),
)]
async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Partner>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::partners::list(&state.pool, &ctx, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |p| p.id.0)))
}

problems!(ShowProblems = [AUTHENTICATED, PATH, &[Code::PartnerNotFound]]);

/// Read a partner.
#[utoipa::path(
    get, path = "/v1/partners/{partner_id}", tag = "partners", operation_id = "get_partner",
    params(("partner_id" = PartnerId, Path, description = "The partner's id.")),
    responses(
        (status = 200, description = "The partner.", body = Partner,
         headers(("ETag" = String, description = "The version."))),
        ShowProblems,
    ),
)]
async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
) -> Result<impl IntoResponse, ApiError> {
    let partner = app::partners::get(&state.pool, &ctx, id).await?;
    Ok((etag(partner.version), Json(partner)))
}

problems!(
    ProfileProblems = [
        AUTHENTICATED,
        PATH,
        QUERY,
        &[Code::PartnerNotFound, Code::NotRecordedAt]
    ]
);

/// The partner's profile now, or at `as_of`.
#[utoipa::path(
    get, path = "/v1/partners/{partner_id}/profile", tag = "partners", operation_id = "get_partner_profile",
    params(("partner_id" = PartnerId, Path, description = "The partner's id."), AsOf),
    responses(
        (status = 200, description = "The profile version in force.", body = ProfileRecord,
         headers(("ETag" = String, description = "The version."))),
        ProfileProblems,
    ),
)]
async fn profile(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
    Query(AsOf { as_of }): Query<AsOf>,
) -> Result<impl IntoResponse, ApiError> {
    let record = app::partners::profile(&state.pool, &ctx, id, as_of).await?;
    Ok((etag(record.version), Json(record)))
}

problems!(HistoryProblems = [AUTHENTICATED, PATH, QUERY, &[Code::PartnerNotFound]]);

/// A version of a partner's profile history, with its actor in words.
#[derive(Debug, Serialize, ToSchema)]
struct ProfileVersion {
    #[serde(flatten)]
    record: ProfileRecord,
    /// Who recorded it, in words (resolved when read, not hashed); null when the actor is not a
    /// known principal, or, for partner roles, not one of their partner's.
    #[schema(nullable)]
    actor_name: Option<ActorName>,
}

/// Every profile version of the partner, oldest first.
#[utoipa::path(
    get, path = "/v1/partners/{partner_id}/profile/history", tag = "partners",
    operation_id = "get_partner_profile_history",
    params(("partner_id" = PartnerId, Path, description = "The partner's id."), VersionPageParams),
    responses((status = 200, description = "A page of versions.", body = Page<ProfileVersion, i64>), HistoryProblems),
)]
async fn profile_history(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
    Query(params): Query<VersionPageParams>,
) -> Result<Json<Page<ProfileVersion, i64>>, ApiError> {
    let (after, fetch, limit) = params.checked()?;
    let rows = app::partners::profile_history(&state.pool, &ctx, id, after, fetch).await?;
    let names =
        app::principals::names(&state.pool, &ctx, rows.iter().map(|r| r.actor.as_str())).await?;
    let versions = rows
        .into_iter()
        .map(|record| ProfileVersion {
            actor_name: names.get(&record.actor),
            record,
        })
        .collect();
    Ok(Json(Page::from_rows(versions, limit, |v| v.record.version)))
}

/// The partner's whole new set of reseller qualifications.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reseller_qualifications": ["education", "gcc"],
    "evidence": {"gcc": "GCV-ENROLL-7"}, "reason": "enrolled"}))]
struct SetResellerQualifications {
    #[schema(value_type = Vec<ResellerQualification>)]
    reseller_qualifications: BTreeSet<ResellerQualification>,
    /// Evidence reference per added qualification (required for each).
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    evidence: PartnerEvidence,
    /// Why (required).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1000, pattern = "\\S")]
    reason: Option<String>,
}

problems!(
    SetQualificationsProblems = [
        AUTHENTICATED,
        JSON_BODY,
        PATH,
        IF_MATCH,
        &[Code::PartnerNotFound, Code::InvalidField]
    ]
);

/// Replace the partner's reseller qualifications (back office).
#[utoipa::path(
    put, path = "/v1/partners/{partner_id}/reseller-qualifications", tag = "partners",
    operation_id = "set_partner_reseller_qualifications",
    params(
        ("partner_id" = PartnerId, Path, description = "The partner's id."),
        IfMatch,
    ),
    request_body = SetResellerQualifications,
    responses(
        (status = 200, description = "The changed partner.", body = Partner,
         headers(("ETag" = String, description = "The new version."))),
        SetQualificationsProblems,
    ),
)]

async fn set_reseller_qualifications(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
    IfMatch(precondition): IfMatch,
    Json(body): Json<SetResellerQualifications>,
) -> Result<impl IntoResponse, ApiError> {
    let change = ResellerQualificationChange {
        qualifications: body.reseller_qualifications,
        evidence: body.evidence,
        reason: reason(body.reason.as_deref())?,
    };
    let partner =
        app::partners::set_reseller_qualifications(&state.pool, &ctx, id, precondition, &change)
            .await?;
    Ok((etag(partner.version), Json(partner)))
}

/// The indirect reseller's whole new set of providers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetIndirectProviders {
    #[schema(value_type = Vec<PartnerId>)]
    provider_ids: BTreeSet<PartnerId>,
    /// Why (required).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1000, pattern = "\\S")]
    reason: Option<String>,
}

problems!(
    SetProvidersProblems = [
        AUTHENTICATED,
        JSON_BODY,
        PATH,
        IF_MATCH,
        &[
            Code::PartnerNotFound,
            Code::InvalidField,
            Code::PartnerNotIndirectReseller,
            Code::ProviderNotFound,
            Code::ProviderNotIndirectProvider,
        ]
    ]
);

/// Replace an indirect reseller's provider links (back office).
#[utoipa::path(
    put, path = "/v1/partners/{partner_id}/indirect-providers", tag = "partners",
    operation_id = "set_partner_indirect_providers",
    params(
        ("partner_id" = PartnerId, Path, description = "The indirect reseller's id."),
        IfMatch,
    ),
    request_body = SetIndirectProviders,
    responses(
        (status = 200, description = "The changed partner.", body = Partner,
         headers(("ETag" = String, description = "The new version."))),
        SetProvidersProblems,
    ),
)]

async fn set_indirect_providers(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
    IfMatch(precondition): IfMatch,
    Json(body): Json<SetIndirectProviders>,
) -> Result<impl IntoResponse, ApiError> {
    let reason = reason(body.reason.as_deref())?;
    let partner = app::partners::set_indirect_providers(
        &state.pool,
        &ctx,
        id,
        precondition,
        &body.provider_ids,
        &reason,
    )
    .await?;
    Ok((etag(partner.version), Json(partner)))
}
