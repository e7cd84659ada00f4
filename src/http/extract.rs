//! Extractors whose rejections are [`ApiError`]s, so even malformed input answers in problem+json.

use axum::{
    extract::{FromRequest, FromRequestParts},
    http::{HeaderMap, HeaderValue, header, request::Parts},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Code, REQUEST_ID};
use crate::app::{Precondition, RequestContext, purchases::IdempotencyKey};

/// JSON body in, JSON body out.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query string parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Every API request is authenticated: `Authorization: Bearer <token>`.
impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauthenticated = |code, detail: &str| {
            let mut error = ApiError::new(code, detail);
            error.insert_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            error
        };
        let value = match at_most_one(&parts.headers, header::AUTHORIZATION) {
            Ok(Some(value)) => value,
            Ok(None) => {
                return Err(unauthenticated(
                    Code::Unauthenticated,
                    "This API needs an Authorization: Bearer token.",
                ));
            }
            // Which one would count is a guess an attacker could exploit between proxies.
            Err(SentTwice) => {
                return Err(ApiError::new(
                    Code::DuplicateAuthorization,
                    "Send one Authorization header, not several.",
                ));
            }
        };
        let secret = value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
            unauthenticated(
                Code::InvalidToken,
                "The Authorization header must be `Bearer <token>`.",
            )
        })?;
        let principal = state
            .tokens
            .verify(&state.pool, secret)
            .await?
            .ok_or_else(|| {
                unauthenticated(
                    Code::InvalidToken,
                    "The token is unknown, expired or revoked.",
                )
            })?;
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(
            RequestContext::new(Some(principal), request_id)
                .answered_by(super::Deadline::of(parts)),
        )
    }
}

/// A header sent more than once where one value is all that makes sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SentTwice;

/// The header `name` if it was sent once, `None` if not at all.
pub(super) fn at_most_one(
    headers: &HeaderMap,
    name: impl header::AsHeaderName,
) -> Result<Option<&HeaderValue>, SentTwice> {
    let mut sent = headers.get_all(name).iter();
    match (sent.next(), sent.next()) {
        (value, None) => Ok(value),
        (_, Some(_)) => Err(SentTwice),
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Err(ApiError::new(
                Code::MissingIdempotencyKey,
                "Purchases need an Idempotency-Key header, so that a retry never buys twice.",
            ));
        };
        value
            .to_str()
            .ok()
            .and_then(|raw| IdempotencyKey::parse(raw).ok())
            .ok_or_else(|| {
                ApiError::new(
                    Code::InvalidIdempotencyKey,
                    "An Idempotency-Key must be 1 to 255 visible ASCII characters.",
                )
            })
    }
}

/// The `If-Match` precondition of a conditional write; required, so no write is blind.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Precondition);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Err(ApiError::new(
                Code::IfMatchRequired,
                "This change needs an If-Match header with the ETag you read, so that no one's change is lost.",
            ));
        };
        value
            .to_str()
            .ok()
            .and_then(parse_if_match)
            .map(IfMatch)
            .ok_or_else(|| {
                ApiError::new(
                    Code::InvalidIfMatch,
                    "If-Match must be an ETag of this API, like \"3\", or *.",
                )
            })
    }
}

/// A required header parameter of the contract, with the pattern its extractor accepts.
fn header_parameter(
    name: &str,
    pattern: &str,
    description: &str,
) -> Vec<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::{
        ObjectBuilder, Required,
        path::{ParameterBuilder, ParameterIn},
        schema::Type,
    };
    vec![
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(pattern)),
            ))
            .build(),
    ]
}

impl utoipa::IntoParams for IfMatch {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        header_parameter(
            "If-Match",
            r#"^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$"#,
            "The `ETag` last read, or `*` to override.",
        )
    }
}

impl utoipa::IntoParams for IdempotencyKey {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        header_parameter(
            "Idempotency-Key",
            "^[!-~]{1,255}$",
            "1 to 255 visible ASCII characters, unique per purchase of the caller for this customer.",
        )
    }
}

/// `*`, `"3"`, `W/"3"` or a bare `3`.
fn parse_if_match(raw: &str) -> Option<Precondition> {
    let raw = raw.trim();
    if raw == "*" {
        return Some(Precondition::Any);
    }
    let tag = raw.strip_prefix("W/").unwrap_or(raw);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    tag.parse().ok().map(Precondition::Version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_our_etags_and_star() {
        assert_eq!(parse_if_match("*"), Some(Precondition::Any));
        assert_eq!(parse_if_match("\"3\""), Some(Precondition::Version(3)));
        assert_eq!(parse_if_match("W/\"12\""), Some(Precondition::Version(12)));
        assert_eq!(parse_if_match(" 7 "), Some(Precondition::Version(7)));
        assert_eq!(parse_if_match("\"abc\""), None);
        assert_eq!(parse_if_match(""), None);
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer pct_1",
            "bearer pct_1",
            "BEARER  pct_1",
            " bEaReR pct_1 ",
        ] {
            assert_eq!(bearer_token(value), Some("pct_1"), "{value}");
        }
        for value in [
            "Bearer",
            "Bearer ",
            "Basic pct_1",
            "Bearerpct_1",
            "pct_1",
            "",
        ] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}

/// The `as_of` query parameter of the "what was true then" reads.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// RFC 3339 instant; absent means now.
    #[serde(default, deserialize_with = "optional_instant")]
    pub as_of: Option<DateTime<Utc>>,
}

/// Deserializes an optional RFC 3339 instant of the years 0001 to 9999, the ones RFC 3339 can
/// write. chrono reads far wider years than PostgreSQL stores, and such an instant must be
/// refused here as bad input, not fail in the database as a 500. For `deserialize_with`.
pub fn optional_instant<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(at) = Option::<DateTime<Utc>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if in_storable_years(&at) {
        Ok(Some(at))
    } else {
        Err(serde::de::Error::custom(
            "an instant must lie in the years 0001 to 9999",
        ))
    }
}

/// Whether an instant lies in the years 0001 to 9999: those RFC 3339 writes and PostgreSQL stores;
/// others would fail in the database.
pub fn in_storable_years(at: &DateTime<Utc>) -> bool {
    (1..=9999).contains(&at.year())
}

/// A change's `reason` field, checked; a 422 naming `reason` otherwise.
pub fn reason(raw: Option<&str>) -> Result<crate::domain::Reason, ApiError> {
    crate::domain::Reason::parse(raw).map_err(|e| ApiError::invalid_field("reason", e))
}
