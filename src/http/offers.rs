//! `/v1/offers`: the catalog.

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use serde::Deserialize;

use super::{
    ApiError, AppState,
    extract::{Json, Path, Query},
    pagination::{Page, PageParams},
};
use crate::{
    app::{self, RequestContext},
    db::offers::Offer,
    domain::{DisplayName, OfferId, OfferTerms, ProductKind, Segment},
};

/// The offer routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/offers", post(create).get(list))
        .route("/v1/offers/{offer_id}", get(show))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOffer {
    name: String,
    segment: Segment,
    product_kind: ProductKind,
}

async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreateOffer>,
) -> Result<impl IntoResponse, ApiError> {
    let name = DisplayName::parse(&body.name).map_err(|e| ApiError::invalid_field("name", e))?;
    let terms = OfferTerms {
        segment: body.segment,
        product_kind: body.product_kind,
    };
    let offer = app::offers::create(&state.pool, &ctx, &name, terms).await?;
    let location = format!("/v1/offers/{}", offer.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(offer),
    ))
}

#[derive(Debug, Deserialize)]
struct OfferFilter {
    segment: Option<Segment>,
    product_kind: Option<ProductKind>,
}

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(filter): Query<OfferFilter>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Offer>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::offers::list(
        &state.pool,
        &ctx,
        filter.segment,
        filter.product_kind,
        keyset,
    )
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |o| o.id.0)))
}

async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<OfferId>,
) -> Result<Json<Offer>, ApiError> {
    Ok(Json(app::offers::get(&state.pool, &ctx, id).await?))
}
