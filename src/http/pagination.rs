//! Keyset pagination: `?limit=&after=` in, `{items, next_cursor}` out.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiError;
use crate::db::Keyset;

/// Page size when `limit` is absent.
const DEFAULT_LIMIT: u32 = 50;
/// Largest accepted `limit`.
const MAX_LIMIT: u32 = 200;

/// The pagination query parameters; unknown parameters are refused, so a misspelt filter never
/// silently widens a listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub after: Option<Uuid>,
}

impl PageParams {
    /// Checks the parameters; the keyset asks for one row more than the page to detect a next page.
    pub fn keyset(&self) -> Result<(Keyset, usize), ApiError> {
        let limit = page_size(self.limit)?;
        Ok((
            Keyset {
                after: self.after,
                limit: limit as i64 + 1,
            },
            limit,
        ))
    }
}

/// The pagination query parameters of a history, whose rows are numbered by version.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionPageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` (a version) of the previous page.
    after: Option<i64>,
}

impl VersionPageParams {
    /// Checks the parameters: the version to start after, the rows to fetch, the page size.
    pub fn checked(&self) -> Result<(i64, i64, usize), ApiError> {
        let limit = page_size(self.limit)?;
        Ok((self.after.unwrap_or(0), limit as i64 + 1, limit))
    }
}

/// Checks a requested page size: 1 to 200, 50 when absent.
pub fn page_size(limit: Option<u32>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_query(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(limit as usize)
}

/// Checks a page size given in a request body: the same bounds, answered as a field.
pub fn body_page_size(limit: Option<u32>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(limit as usize)
}

/// The cursor of an id-ordered listing: the last id of the page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct IdCursor(Uuid);

impl From<Uuid> for IdCursor {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T, C = IdCursor> {
    /// The items, in the listing's order (oldest first unless it says otherwise).
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[schema(nullable)]
    pub next_cursor: Option<C>,
}

impl<T, C> Page<T, C> {
    /// Builds a page from up to `limit + 1` rows.
    pub fn from_rows<K: Into<C>>(mut rows: Vec<T>, limit: usize, id: impl Fn(&T) -> K) -> Self {
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|row| id(row).into())
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}
