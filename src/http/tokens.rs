//! `/v1/tokens`: bearer tokens for operators, and for global admins of their own partner.

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{delete, post},
};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    ApiError, AppState,
    extract::{Json, Path, Query},
    pagination::{Page, PageParams},
};
use crate::{
    app::{self, RequestContext},
    db::tokens::Token,
    domain::{PartnerId, Role},
};

/// Lifetime of a token created without `expires_at`.
const DEFAULT_LIFETIME_DAYS: i64 = 90;

/// The token routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tokens", post(create).get(list))
        .route("/v1/tokens/{token_id}", delete(revoke))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    role: Role,
    partner_id: Option<PartnerId>,
    label: String,
    expires_at: Option<DateTime<Utc>>,
}

/// 201 with the secret, which is shown this once and never again.
async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let expires_at = body
        .expires_at
        .unwrap_or_else(|| Utc::now() + Duration::days(DEFAULT_LIFETIME_DAYS));
    let issued = app::tokens::issue(
        &state.pool,
        &ctx,
        body.role,
        body.partner_id,
        expires_at,
        &body.label,
    )
    .await?;
    let location = format!("/v1/tokens/{}", issued.token.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(issued),
    ))
}

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Token>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::tokens::list(&state.pool, &ctx, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |t| t.id)))
}

/// Revokes the token (idempotent); it stops working within 5 seconds.
async fn revoke(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Token>, ApiError> {
    Ok(Json(app::tokens::revoke(&state.pool, &ctx, id).await?))
}
