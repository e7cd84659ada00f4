//! The one error type of the HTTP layer, rendered as RFC 9457 problem+json with a stable `code`.
//! This file is the single place where failures are mapped to statuses and codes.

use axum::{
    extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use crate::{app, domain::RuleViolation};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A failed request: status, stable machine-readable code, human detail, optional extensions.
/// Boxed, so that `Result<_, ApiError>` stays small on the happy path.
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

#[derive(Debug)]
struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
    extensions: Map<String, Value>,
    headers: HeaderMap,
}

impl ApiError {
    /// A problem with no extension members.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(Problem {
            status,
            code,
            detail: detail.into(),
            extensions: Map::new(),
            headers: HeaderMap::new(),
        }))
    }

    /// Adds an extension member to the problem body.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.0.extensions.insert(key.to_owned(), value);
        self
    }

    /// Adds a response header.
    pub fn insert_header(&mut self, name: header::HeaderName, value: HeaderValue) {
        self.0.headers.insert(name, value);
    }

    /// Adds an `ETag` header naming a resource version.
    pub fn with_etag(mut self, version: i64) -> Self {
        self.0
            .headers
            .insert(header::ETAG, super::etag_value(version));
        self
    }

    /// A body field that parsed but is not acceptable.
    pub fn invalid_field(field: impl Into<String>, error: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {error}"),
        )
        .with("field", json!(field))
    }

    /// A query parameter that is missing or not acceptable.
    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query_parameter", detail)
    }

    /// The request took longer than its limit and was abandoned (its transaction rolled back).
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "The request took too long and was abandoned; nothing was changed. Retry later.",
        )
    }

    /// A body over the limit of `max` bytes.
    pub fn payload_too_large(max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The body is larger than this route's limit of {max} bytes."),
        )
    }

    /// A purchase the rules deny, with every broken rule.
    pub fn purchase_denied(violations: &[RuleViolation]) -> Self {
        let codes: Vec<_> = violations.iter().map(RuleViolation::code).collect();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "purchase_denied",
            format!("The purchase is denied by the rules: {}.", codes.join(", ")),
        )
        .with("violations", violations_json(violations))
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.0.code
    }

    /// The human detail.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The `field` extension, for field-level problems.
    pub fn field(&self) -> Option<String> {
        self.0
            .extensions
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// Each violation as `{code, message, ...details}`.
pub fn violations_json(violations: &[RuleViolation]) -> Value {
    violations
        .iter()
        .map(|v| {
            let mut item = serde_json::to_value(v).unwrap_or_else(|_| json!({ "code": v.code() }));
            if let Value::Object(map) = &mut item {
                map.insert("message".into(), Value::String(v.to_string()));
            }
            item
        })
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = *self.0;
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:partner-catalog:problem:{}", problem.code)),
        );
        body.insert(
            "title".into(),
            json!(problem.status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(problem.status.as_u16()));
        body.insert("code".into(), json!(problem.code));
        body.insert("detail".into(), json!(problem.detail));
        body.extend(problem.extensions);
        let mut response = (
            problem.status,
            problem.headers,
            axum::Json(Value::Object(body)),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if problem.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<app::Error> for ApiError {
    fn from(error: app::Error) -> Self {
        use StatusCode as S;
        use app::Error as E;
        let detail = error.to_string();
        match error {
            E::Forbidden { .. } => Self::new(S::FORBIDDEN, "forbidden", detail),
            E::TokenNotFound(_) => Self::new(S::NOT_FOUND, "token_not_found", detail),
            E::InvalidTokenRequest(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_token_request", detail)
            }
            E::CustomerNotFound(_) => Self::new(S::NOT_FOUND, "customer_not_found", detail),
            E::PartnerNotFound(_) => Self::new(S::NOT_FOUND, "partner_not_found", detail),
            E::SubscriptionNotFound(..) => {
                Self::new(S::NOT_FOUND, "subscription_not_found", detail)
            }
            E::OfferNotFound(_) => Self::new(S::NOT_FOUND, "offer_not_found", detail),
            E::InvalidQualificationSet(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_qualification_set", detail)
            }
            E::SpecialOfferNotLicenseBased { .. } => {
                Self::new(S::UNPROCESSABLE_ENTITY, "offer_not_license_based", detail)
            }
            E::NotAnIndirectReseller(_) => Self::new(
                S::UNPROCESSABLE_ENTITY,
                "partner_not_indirect_reseller",
                detail,
            ),
            E::ProviderNotFound(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "provider_not_found", detail)
            }
            E::NotAnIndirectProvider(_) => Self::new(
                S::UNPROCESSABLE_ENTITY,
                "provider_not_indirect_provider",
                detail,
            ),
            E::Evidence(e) => Self::invalid_field(e.field(), e),
            E::CustomerVersionMismatch(current) => {
                Self::new(S::PRECONDITION_FAILED, "version_mismatch", detail)
                    .with_etag(current.version)
                    .with(
                        "current",
                        serde_json::to_value(&current).unwrap_or_default(),
                    )
            }
            E::PartnerVersionMismatch(current) => {
                Self::new(S::PRECONDITION_FAILED, "version_mismatch", detail)
                    .with_etag(current.version)
                    .with(
                        "current",
                        serde_json::to_value(&current).unwrap_or_default(),
                    )
            }
            E::NotRecordedAt(..) => Self::new(S::NOT_FOUND, "not_recorded_at", detail),
            E::InvalidStatusTransition(..) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_status_transition", detail)
            }
            E::IdempotencyKeyReused(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "idempotency_key_reused", detail)
            }
            E::ExportBusy(_) => Self::new(S::SERVICE_UNAVAILABLE, "export_busy", detail),
            E::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "The database is unavailable; retry later.",
                )
            }
            E::TimedOut(source) => {
                tracing::warn!(error = %source, "statement timed out");
                Self::request_timeout()
            }
            E::Internal(source) => {
                // Logged here with its whole chain, inside the request's span; never sent to clients.
                tracing::error!(error = ?source, "internal error");
                Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "An internal error occurred.",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let detail = rejection.body_text();
        let code = match &rejection {
            JsonRejection::JsonDataError(_) => "invalid_body",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "unreadable_body",
        };
        Self::new(rejection.status(), code, detail)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "unreadable_body"
        };
        Self::new(rejection.status(), code, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_path_parameter",
            rejection.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid_query(rejection.body_text())
    }
}
