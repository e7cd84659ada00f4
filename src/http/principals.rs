//! `/v1/principals`: every console user and API token that can act or once could, for auditors
//! and access managers (never a secret).

use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState,
    extract::{Json, Query},
    openapi::{AUTHENTICATED, QUERY, problems},
    pagination::{Page, PageParams},
};
use crate::app::{self, RequestContext, principals::PrincipalSummary};

/// The principal routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

problems!(ListProblems = [AUTHENTICATED, QUERY]);

/// List principals, users and tokens together, oldest first, with their state and last use
/// (auditors and operators: all; global admins: their partner's).
#[utoipa::path(
    get, path = "/v1/principals", tag = "principals", operation_id = "list_principals",
    params(PageParams),
    responses((status = 200, description = "A page of principals.", body = Page<PrincipalSummary>), ListProblems),
)]
async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<PrincipalSummary>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::principals::list(&state.pool, &ctx, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |p| p.id)))
}
