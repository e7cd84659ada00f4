//! `/v1/offers`: the catalog.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Code,
    extract::{Json, Path, Query},
    openapi::{AUTHENTICATED, JSON_BODY, PATH, QUERY, problems},
    pagination::{Page, PageParams},
};
use crate::{
    app::{self, RequestContext},
    db::offers::Offer,
    domain::{DisplayName, OfferId, OfferTerms, ProductKind, Segment},
};

/// The offer routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
}

/// A new catalog offer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Microsoft 365 A3", "segment": "education", "product_kind": "license_based"}))]
struct CreateOffer {
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    segment: Segment,
    /// Special segments need `license_based` (R1).
    product_kind: ProductKind,
}

problems!(
    CreateProblems = [
        AUTHENTICATED,
        JSON_BODY,
        &[Code::InvalidField, Code::OfferNotLicenseBased]
    ]
);

/// Create an offer (operator).
#[utoipa::path(
    post, path = "/v1/offers", tag = "offers", operation_id = "create_offer",
    request_body = CreateOffer,
    responses(
        (status = 201, description = "Created.", body = Offer,
         headers(("Location" = String, description = "The offer's URL."))),
        CreateProblems,
    ),
)]
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

/// Filters and page of the offer listing (one struct, so unknown parameters can be refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct OfferFilter {
    /// Only offers of this segment.
    segment: Option<Segment>,
    /// Only offers of this product kind.
    product_kind: Option<ProductKind>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    after: Option<uuid::Uuid>,
}

problems!(ListProblems = [AUTHENTICATED, QUERY]);

/// List offers, oldest first.
#[utoipa::path(
    get, path = "/v1/offers", tag = "offers", operation_id = "list_offers",
    params(OfferFilter),
    responses((status = 200, description = "A page of offers.", body = Page<Offer>), ListProblems),
)]
async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(filter): Query<OfferFilter>,
) -> Result<Json<Page<Offer>>, ApiError> {
    let (keyset, limit) = PageParams {
        limit: filter.limit,
        after: filter.after,
    }
    .keyset()?;
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

problems!(ShowProblems = [AUTHENTICATED, PATH, &[Code::OfferNotFound]]);

/// Read an offer.
#[utoipa::path(
    get, path = "/v1/offers/{offer_id}", tag = "offers", operation_id = "get_offer",
    params(("offer_id" = OfferId, Path, description = "The offer's id.")),
    responses((status = 200, description = "The offer.", body = Offer), ShowProblems),
)]
async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<OfferId>,
) -> Result<Json<Offer>, ApiError> {
    Ok(Json(app::offers::get(&state.pool, &ctx, id).await?))
}
