//! `/v1/partners`: partners, their reseller qualifications and indirect provider links.

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
    ApiError, AppState,
    extract::{Json, Path, Query},
    pagination::{Page, PageParams},
};
use crate::{
    app::{self, RequestContext},
    db::partners::Partner,
    domain::{DisplayName, PartnerId, PartnerKind, ResellerQualification},
};

/// The partner routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners", post(create).get(list))
        .route("/v1/partners/{partner_id}", get(show))
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
}

async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreatePartner>,
) -> Result<impl IntoResponse, ApiError> {
    let name = DisplayName::parse(&body.name).map_err(|e| ApiError::invalid_field("name", e))?;
    let partner = app::partners::create(
        &state.pool,
        &ctx,
        &name,
        body.kind,
        &body.reseller_qualifications,
    )
    .await?;
    let location = format!("/v1/partners/{}", partner.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(partner),
    ))
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Partner>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::partners::list(&state.pool, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |p| p.id.0)))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<PartnerId>,
) -> Result<Json<Partner>, ApiError> {
    Ok(Json(app::partners::get(&state.pool, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetResellerQualifications {
    reseller_qualifications: BTreeSet<ResellerQualification>,
    reason: Option<String>,
}

async fn set_reseller_qualifications(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
    Json(body): Json<SetResellerQualifications>,
) -> Result<Json<Partner>, ApiError> {
    let partner = app::partners::set_reseller_qualifications(
        &state.pool,
        &ctx,
        id,
        &body.reseller_qualifications,
        body.reason.as_deref(),
    )
    .await?;
    Ok(Json(partner))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetIndirectProviders {
    provider_ids: BTreeSet<PartnerId>,
}

async fn set_indirect_providers(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<PartnerId>,
    Json(body): Json<SetIndirectProviders>,
) -> Result<Json<Partner>, ApiError> {
    Ok(Json(
        app::partners::set_indirect_providers(&state.pool, &ctx, id, &body.provider_ids).await?,
    ))
}
