//! `/v1/customers`: customers, their qualification sets and partner relationships.

use std::collections::BTreeSet;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post, put},
};
use serde::{Deserialize, Serialize};

use super::{
    ApiError, AppState,
    extract::{Json, Path, Query},
    pagination::{Page, PageParams},
};
use crate::{
    app::{self, RequestContext},
    db::customers::Customer,
    domain::{CustomerId, CustomerQualification, DisplayName, PartnerId, SpecialQualification},
};

/// The customer routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/customers", post(create).get(list))
        .route("/v1/customers/{customer_id}", get(show))
        .route(
            "/v1/customers/{customer_id}/qualifications",
            put(set_qualifications),
        )
        .route("/v1/customers/{customer_id}/partners", get(partners))
        .route(
            "/v1/customers/{customer_id}/partners/{partner_id}",
            put(link_partner),
        )
}

fn qualification_set(
    raw: BTreeSet<SpecialQualification>,
) -> Result<CustomerQualification, ApiError> {
    Ok(CustomerQualification::from_set(raw).map_err(app::Error::from)?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCustomer {
    name: String,
    #[serde(default)]
    special_qualifications: BTreeSet<SpecialQualification>,
}

async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreateCustomer>,
) -> Result<impl IntoResponse, ApiError> {
    let name = DisplayName::parse(&body.name).map_err(|e| ApiError::invalid_field("name", e))?;
    let qualifications = qualification_set(body.special_qualifications)?;
    let customer = app::customers::create(&state.pool, &ctx, &name, qualifications).await?;
    let location = format!("/v1/customers/{}", customer.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(customer),
    ))
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Customer>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::customers::list(&state.pool, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |c| c.id.0)))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<CustomerId>,
) -> Result<Json<Customer>, ApiError> {
    Ok(Json(app::customers::get(&state.pool, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetQualifications {
    special_qualifications: BTreeSet<SpecialQualification>,
    reason: Option<String>,
}

async fn set_qualifications(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
    Json(body): Json<SetQualifications>,
) -> Result<Json<Customer>, ApiError> {
    let qualifications = qualification_set(body.special_qualifications)?;
    let customer = app::customers::set_qualifications(
        &state.pool,
        &ctx,
        id,
        qualifications,
        body.reason.as_deref(),
    )
    .await?;
    Ok(Json(customer))
}

#[derive(Debug, Serialize)]
struct CustomerPartners {
    customer_id: CustomerId,
    partner_ids: Vec<PartnerId>,
}

async fn partners(
    State(state): State<AppState>,
    Path(id): Path<CustomerId>,
) -> Result<Json<CustomerPartners>, ApiError> {
    let partner_ids = app::customers::partners(&state.pool, id).await?;
    Ok(Json(CustomerPartners {
        customer_id: id,
        partner_ids,
    }))
}

#[derive(Debug, Serialize)]
struct Relationship {
    customer_id: CustomerId,
    partner_id: PartnerId,
}

/// Idempotent: 201 when the relationship is new, 200 when it already existed.
async fn link_partner(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path((customer_id, partner_id)): Path<(CustomerId, PartnerId)>,
) -> Result<impl IntoResponse, ApiError> {
    let created = app::customers::link_partner(&state.pool, &ctx, customer_id, partner_id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Relationship {
            customer_id,
            partner_id,
        }),
    ))
}
