//! TODO: audit pages.

use axum::Router;

use crate::http::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
}
