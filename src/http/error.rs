//! The one error type of the HTTP layer, rendered as RFC 9457 problem+json with a stable `code`.
//! This file is the single place where failures are mapped to statuses and codes.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use crate::{app, domain::RuleViolation};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A failed request: status, stable machine-readable code, human detail, optional extensions.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    extensions: Map<String, Value>,
}

impl ApiError {
    /// A problem with no extension members.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    /// Adds an extension member to the problem body.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    /// A body field that parsed but is not acceptable.
    pub fn invalid_field(field: &'static str, error: impl std::fmt::Display) -> Self {
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
        self.code
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
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:partner-catalog:problem:{}", self.code)),
        );
        body.insert(
            "title".into(),
            json!(self.status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("code".into(), json!(self.code));
        body.insert("detail".into(), json!(self.detail));
        body.extend(self.extensions);
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
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
            E::InvalidStatusTransition(..) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_status_transition", detail)
            }
            E::IdempotencyKeyReused(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "idempotency_key_reused", detail)
            }
            E::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "The database is unavailable; retry later.",
                )
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
