//! `/v1/partners`: partners and their profile (reseller qualifications with evidence, indirect
//! provider links), with versions and history.

use std::collections::BTreeSet;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post, put},
};
use serde::Deserialize;

use super::{
    ApiError, AppState, etag,
    extract::{AsOf, IfMatch, Json, Path, Query, reason},
    pagination::{Page, PageParams, VersionPageParams},
};
use crate::{
    app::{self, RequestContext, partners::ResellerQualificationChange},
    db::partners::{Partner, PartnerEvidence, ProfileRecord},
    domain::{DisplayName, PartnerId, PartnerKind, ResellerQualification},
};

/// The partner routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners", post(create).get(list))
        .route("/v1/partners/{partner_id}", get(show))
        .route("/v1/partners/{partner_id}/profile", get(profile))
        .route(
            "/v1/partners/{partner_id}/profile/history",
            get(profile_history),
        )
        .route(
            "/v1/partners/{partner_id}/reseller-qualifications",
            put(set_reseller_qualifications),
        )
        .route(
            "/v1/partners/{partner_id}/indirect-providers",
            put(set_indirect_providers),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePartner {
    name: String,
    kind: PartnerKind,
    #[serde(default)]
    reseller_qualifications: BTreeSet<ResellerQualification>,
    #[serde(default)]
    evidence: PartnerEvidence,
    reason: Option<String>,
}

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

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Partner>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::partners::list(&state.pool, &ctx, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |p| p.id.0)))
}

async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
) -> Result<impl IntoResponse, ApiError> {
    let partner = app::partners::get(&state.pool, &ctx, id).await?;
    Ok((etag(partner.version), Json(partner)))
}

async fn profile(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
    Query(AsOf { as_of }): Query<AsOf>,
) -> Result<impl IntoResponse, ApiError> {
    let record = app::partners::profile(&state.pool, &ctx, id, as_of).await?;
    Ok((etag(record.version), Json(record)))
}

async fn profile_history(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
    Query(params): Query<VersionPageParams>,
) -> Result<Json<Page<ProfileRecord, i64>>, ApiError> {
    let (after, fetch, limit) = params.checked()?;
    let rows = app::partners::profile_history(&state.pool, &ctx, id, after, fetch).await?;
    Ok(Json(Page::from_rows(rows, limit, |r| r.version)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetResellerQualifications {
    reseller_qualifications: BTreeSet<ResellerQualification>,
    #[serde(default)]
    evidence: PartnerEvidence,
    reason: Option<String>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetIndirectProviders {
    provider_ids: BTreeSet<PartnerId>,
    reason: Option<String>,
}

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
