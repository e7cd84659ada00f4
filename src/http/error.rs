//! The one error type of the HTTP layer, rendered as RFC 9457 problem+json with a stable `code`.
//! This file is the single place where failures are mapped to statuses and codes.

use axum::{
    extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::problem::Code;
use crate::{app, domain::RuleViolation};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A failed request: status, stable machine-readable code, human detail, optional extensions.
/// Boxed, so that `Result<_, ApiError>` stays small on the happy path.
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

#[derive(Debug)]
struct Problem {
    code: Code,
    detail: String,
    extensions: Map<String, Value>,
    headers: HeaderMap,
}

impl ApiError {
    /// A problem with no extension members; its status is the code's.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self(Box::new(Problem {
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
        Self::new(Code::InvalidField, format!("{field}: {error}")).with("field", json!(field))
    }

    /// A query parameter that is missing or not acceptable.
    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(Code::InvalidQueryParameter, detail)
    }

    /// The request took longer than its limit and was abandoned (its transaction rolled back).
    pub fn request_timeout() -> Self {
        Self::new(
            Code::RequestTimeout,
            "The request took too long and was abandoned; nothing was changed. Retry later.",
        )
    }

    /// A body over the limit of `max` bytes.
    pub fn payload_too_large(max: usize) -> Self {
        Self::new(
            Code::PayloadTooLarge,
            format!("The body is larger than this route's limit of {max} bytes."),
        )
    }

    /// A purchase the rules of `policy_version` deny, with every broken rule.
    pub fn purchase_denied(violations: &[RuleViolation], policy_version: i32) -> Self {
        let codes: Vec<_> = violations.iter().map(RuleViolation::code).collect();
        Self::new(
            Code::PurchaseDenied,
            format!(
                "The purchase is denied by the rules of policy version {policy_version}: {}.",
                codes.join(", ")
            ),
        )
        .with("violations", violations_json(violations))
        .with("policy_version", json!(policy_version))
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.0.code.as_str()
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
        let status = problem.code.status();
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:partner-catalog:problem:{}", problem.code)),
        );
        body.insert(
            "title".into(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("code".into(), json!(problem.code.as_str()));
        body.insert("detail".into(), json!(problem.detail));
        body.extend(problem.extensions);
        let mut response =
            (status, problem.headers, axum::Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<app::Error> for ApiError {
    fn from(error: app::Error) -> Self {
        use app::Error as E;
        let detail = error.to_string();
        match error {
            E::Forbidden { .. } => Self::new(Code::Forbidden, detail),
            E::TokenNotFound(_) => Self::new(Code::TokenNotFound, detail),
            E::WebhookEndpointNotFound(_) => Self::new(Code::WebhookEndpointNotFound, detail),
            E::WebhookEventNotFound(_) => Self::new(Code::WebhookEventNotFound, detail),
            E::InvalidWebhookUrl(_) => Self::new(Code::InvalidWebhookUrl, detail),
            E::InvalidTokenRequest(_) => Self::new(Code::InvalidTokenRequest, detail),
            E::CustomerNotFound(_) => Self::new(Code::CustomerNotFound, detail),
            E::PartnerNotFound(_) => Self::new(Code::PartnerNotFound, detail),
            E::SubscriptionNotFound(..) => Self::new(Code::SubscriptionNotFound, detail),
            E::OfferNotFound(_) => Self::new(Code::OfferNotFound, detail),
            E::InvalidField { field, message } => Self::invalid_field(field, message),
            E::ExternalReferenceTaken {
                reference,
                customer,
            } => Self::new(Code::ExternalReferenceTaken, detail)
                .with("external_reference", json!(reference))
                .with("customer_id", json!(customer)),
            E::InvalidQualificationSet(_) => Self::new(Code::InvalidQualificationSet, detail),
            E::OfferNotLicenseBased { .. } => Self::new(Code::OfferNotLicenseBased, detail),
            E::PartnerNotIndirectReseller(_) => Self::new(Code::PartnerNotIndirectReseller, detail),
            E::ProviderNotFound(_) => Self::new(Code::ProviderNotFound, detail),
            E::ProviderNotIndirectProvider(_) => {
                Self::new(Code::ProviderNotIndirectProvider, detail)
            }
            E::Evidence(e) => Self::invalid_field(e.field(), e),
            E::CustomerVersionMismatch(current) => Self::new(Code::VersionMismatch, detail)
                .with_etag(current.version)
                .with(
                    "current",
                    serde_json::to_value(&current).unwrap_or_default(),
                ),
            E::PartnerVersionMismatch(current) => Self::new(Code::VersionMismatch, detail)
                .with_etag(current.version)
                .with(
                    "current",
                    serde_json::to_value(&current).unwrap_or_default(),
                ),
            E::NotRecordedAt(..) => Self::new(Code::NotRecordedAt, detail),
            E::InvalidStatusTransition(..) => Self::new(Code::InvalidStatusTransition, detail),
            E::IdempotencyKeyReused(_) => Self::new(Code::IdempotencyKeyReused, detail),
            E::ExportBusy(_) => Self::new(Code::ExportBusy, detail),
            E::PolicyVersionNotFound(_) => Self::new(Code::PolicyVersionNotFound, detail),
            E::InvalidPolicy(invalid) => Self::new(Code::InvalidPolicy, detail).with(
                "problems",
                json!(
                    invalid
                        .0
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ),
            ),
            E::PolicyVersionNotNext { next, .. } => {
                Self::new(Code::PolicyVersionNotNext, detail).with("next", json!(next))
            }
            E::PolicyEffectiveTooEarly { earliest } => {
                Self::new(Code::PolicyEffectiveTooEarly, detail).with("earliest", json!(earliest))
            }
            E::DatabaseUnavailable(source) => {
                tracing::warn!(statement = source.statement, error = %source.source, "database unavailable");
                Self::new(
                    Code::DatabaseUnavailable,
                    "The database is unavailable; retry later.",
                )
            }
            E::RequestTimeout(source) => {
                tracing::warn!(statement = source.statement, error = %source.source, "statement timed out");
                Self::request_timeout()
            }
            E::PastDeadline => {
                tracing::warn!("too little time left to record a purchase");
                Self::request_timeout()
            }
            E::Internal(source) => {
                // Logged here with its whole chain, inside the request's span; never sent to clients.
                tracing::error!(error = ?source, "internal error");
                Self::new(Code::InternalError, "An internal error occurred.")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let detail = rejection.body_text();
        let code = match &rejection {
            JsonRejection::JsonDataError(_) => Code::InvalidBody,
            JsonRejection::JsonSyntaxError(_) => Code::MalformedJson,
            JsonRejection::MissingJsonContentType(_) => Code::UnsupportedMediaType,
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
            _ => Code::UnreadableBody,
        };
        Self::new(code, detail)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Code::PayloadTooLarge
        } else {
            Code::UnreadableBody
        };
        Self::new(code, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(Code::InvalidPathParameter, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid_query(rejection.body_text())
    }
}
