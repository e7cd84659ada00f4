//! `/v1/tokens`: bearer tokens for operators, and for global admins of their own partner.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState, Code,
    extract::{Json, Path, Query},
    openapi::{AUTHENTICATED, JSON_BODY, PATH, QUERY, problems},
    pagination::{Page, PageParams},
};
use crate::{
    app::{self, RequestContext, tokens::IssuedToken},
    db::tokens::Token,
    domain::{DisplayName, PartnerId, Role},
};

/// Lifetime of a token created without `expires_at`.
const DEFAULT_LIFETIME_DAYS: i64 = 90;

/// The token routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

/// A token to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "sales_agent", "partner_id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c8d", "label": "ordering system"}))]
struct CreateToken {
    role: Role,
    /// The partner a partner role acts for (required for those roles, refused for the others).
    partner_id: Option<PartnerId>,
    /// Who holds the token: 1 to 200 characters, no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    label: String,
    /// Default: 90 days from now.
    #[serde(default, deserialize_with = "super::extract::optional_instant")]
    expires_at: Option<DateTime<Utc>>,
}

problems!(
    CreateProblems = [
        AUTHENTICATED,
        JSON_BODY,
        &[
            Code::InvalidField,
            Code::InvalidTokenRequest,
            Code::PartnerNotFound
        ]
    ]
);

/// Issue a token: 201 with the secret, which is shown this once and never again.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens", operation_id = "create_token",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Issued.", body = IssuedToken,
         headers(("Location" = String, description = "The token's URL."))),
        CreateProblems,
    ),
)]
async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let label = DisplayName::parse(&body.label).map_err(|e| ApiError::invalid_field("label", e))?;
    let expires_at = body
        .expires_at
        .unwrap_or_else(|| Utc::now() + Duration::days(DEFAULT_LIFETIME_DAYS));
    let issued = app::tokens::issue(
        &state.pool,
        &ctx,
        body.role,
        body.partner_id,
        expires_at,
        &label,
    )
    .await?;
    let location = format!("/v1/tokens/{}", issued.token.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(issued),
    ))
}

problems!(ListProblems = [AUTHENTICATED, QUERY]);

/// List tokens (never their secrets).
#[utoipa::path(
    get, path = "/v1/tokens", tag = "tokens", operation_id = "list_tokens",
    params(PageParams),
    responses((status = 200, description = "A page of tokens.", body = Page<Token>), ListProblems),
)]
async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Token>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::tokens::list(&state.pool, &ctx, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |t| t.id)))
}

problems!(RevokeProblems = [AUTHENTICATED, PATH, &[Code::TokenNotFound]]);

/// Revoke a token (idempotent); it stops working within 5 seconds.
#[utoipa::path(
    delete, path = "/v1/tokens/{token_id}", tag = "tokens", operation_id = "revoke_token",
    params(("token_id" = Uuid, Path, description = "The token's id.")),
    responses((status = 200, description = "The revoked token.", body = Token), RevokeProblems),
)]
async fn revoke(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Token>, ApiError> {
    Ok(Json(app::tokens::revoke(&state.pool, &ctx, id).await?))
}
