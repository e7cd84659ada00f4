//! The problem codes of the API: each one value, with the status it is answered with and when.
//! The error mapping, the contract's problem responses and the README's table all come from here
//! (the last checked by a test).

use axum::http::StatusCode;

/// Defines [`Code`] from `Variant = "code", STATUS, "when";` lines.
macro_rules! problem_codes {
    ($($variant:ident = $code:literal, $status:ident, $when:literal;)+) => {
        /// A stable, machine-readable problem code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(#[doc = concat!("`", $code, "`: ", $when)] $variant),+
        }

        impl Code {
            /// Every code, in the order of the table below.
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The wire spelling, e.g. `customer_not_found`.
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),+ }
            }

            /// The status the service answers it with.
            pub const fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status),+ }
            }

            /// When it is answered (also the `detail` of its example in the contract).
            pub const fn when(self) -> &'static str {
                match self { $(Code::$variant => $when),+ }
            }
        }
    };
}

problem_codes! {
    MalformedJson = "malformed_json", BAD_REQUEST, "The body is not JSON.";
    UnreadableBody = "unreadable_body", BAD_REQUEST, "The body could not be read.";
    InvalidPathParameter = "invalid_path_parameter", BAD_REQUEST, "A path parameter is malformed, e.g. an id that is not a UUID.";
    InvalidQueryParameter = "invalid_query_parameter", BAD_REQUEST, "A query parameter is missing, unknown or malformed, e.g. `limit=0`.";
    MissingIdempotencyKey = "missing_idempotency_key", BAD_REQUEST, "A purchase without an `Idempotency-Key` header.";
    InvalidIdempotencyKey = "invalid_idempotency_key", BAD_REQUEST, "An `Idempotency-Key` that is not 1 to 255 visible ASCII characters.";
    InvalidIfMatch = "invalid_if_match", BAD_REQUEST, "`If-Match` is not one of our ETags (`\"3\"`) or `*`.";
    DuplicateAuthorization = "duplicate_authorization", BAD_REQUEST, "More than one `Authorization` header.";
    Unauthenticated = "unauthenticated", UNAUTHORIZED, "No `Authorization: Bearer` token.";
    InvalidToken = "invalid_token", UNAUTHORIZED, "A malformed, unknown, expired or revoked token.";
    Forbidden = "forbidden", FORBIDDEN, "The token's role may not do this.";
    CustomerNotFound = "customer_not_found", NOT_FOUND, "No such customer (or not one the caller's partner may see).";
    PartnerNotFound = "partner_not_found", NOT_FOUND, "No such partner (or not the caller's own).";
    OfferNotFound = "offer_not_found", NOT_FOUND, "No such offer.";
    SubscriptionNotFound = "subscription_not_found", NOT_FOUND, "No such subscription of this customer.";
    TokenNotFound = "token_not_found", NOT_FOUND, "No such token (or another partner's).";
    WebhookEndpointNotFound = "webhook_endpoint_not_found", NOT_FOUND, "No such webhook endpoint (or another partner's).";
    PolicyVersionNotFound = "policy_version_not_found", NOT_FOUND, "No such policy version.";
    WebhookEventNotFound = "webhook_event_not_found", NOT_FOUND, "The event made no notice for this endpoint (another partner's, a type it does not want, or no such event).";
    NotRecordedAt = "not_recorded_at", NOT_FOUND, "`as_of` is before the customer or partner existed.";
    RouteNotFound = "route_not_found", NOT_FOUND, "No such route.";
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, "The route does not accept this method.";
    NotAcceptable = "not_acceptable", NOT_ACCEPTABLE, "`Accept` names none of the representations offered.";
    ExternalReferenceTaken = "external_reference_taken", CONFLICT, "Another customer has this `external_reference`; `customer_id` names it.";
    PolicyVersionNotNext = "policy_version_not_next", CONFLICT, "The document's `version` is not the next number; `next` is (another version was published meanwhile, or the number is wrong).";
    VersionMismatch = "version_mismatch", PRECONDITION_FAILED, "`If-Match` names an old version; `current` holds the current state.";
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE, "The body is larger than the limit.";
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body is not sent with the expected `content-type`.";
    InvalidBody = "invalid_body", UNPROCESSABLE_ENTITY, "JSON of the wrong shape: a wrong type, an unknown enum value, an unknown or missing field.";
    InvalidField = "invalid_field", UNPROCESSABLE_ENTITY, "A field of the right type whose value is not acceptable; `field` names it.";
    InvalidQualificationSet = "invalid_qualification_set", UNPROCESSABLE_ENTITY, "Not one of the qualification sets of the policy version in force (R3).";
    InvalidPolicy = "invalid_policy", UNPROCESSABLE_ENTITY, "A policy document that cannot be published; `problems` lists every reason.";
    PolicyEffectiveTooEarly = "policy_effective_too_early", UNPROCESSABLE_ENTITY, "`effective_from` is in the past, or not after the latest version's; `earliest` is the first instant allowed.";
    OfferNotLicenseBased = "offer_not_license_based", UNPROCESSABLE_ENTITY, "A special offer of a product kind the policy does not sell in its segment (R1; in version 1, anything but license based).";
    PartnerNotIndirectReseller = "partner_not_indirect_reseller", UNPROCESSABLE_ENTITY, "Provider links are for indirect resellers only.";
    ProviderNotFound = "provider_not_found", UNPROCESSABLE_ENTITY, "A named provider does not exist.";
    ProviderNotIndirectProvider = "provider_not_indirect_provider", UNPROCESSABLE_ENTITY, "A named provider is not an indirect provider.";
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY, "The key was first used with a different request.";
    ImportRejected = "import_rejected", UNPROCESSABLE_ENTITY, "An all-or-nothing import with bad lines; `errors` lists them.";
    InvalidStatusTransition = "invalid_status_transition", UNPROCESSABLE_ENTITY, "A cancelled subscription cannot become active or suspended.";
    PurchaseDenied = "purchase_denied", UNPROCESSABLE_ENTITY, "The rules deny the purchase; `violations` lists every broken rule.";
    InvalidWebhookUrl = "invalid_webhook_url", UNPROCESSABLE_ENTITY, "Not `https`, or the host resolves to an internal address the operator has not allowed.";
    InvalidTokenRequest = "invalid_token_request", UNPROCESSABLE_ENTITY, "E.g. a partner role without `partner_id`, an expiry in the past.";
    IfMatchRequired = "if_match_required", PRECONDITION_REQUIRED, "A change without `If-Match`.";
    InternalError = "internal_error", INTERNAL_SERVER_ERROR, "A bug; details are logged with the request id, never sent.";
    DatabaseUnavailable = "database_unavailable", SERVICE_UNAVAILABLE, "No database connection in time; retry after `Retry-After` seconds.";
    RequestTimeout = "request_timeout", SERVICE_UNAVAILABLE, "The request took too long and was abandoned; nothing was changed.";
    ExportBusy = "export_busy", SERVICE_UNAVAILABLE, "Every audit export slot (`EXPORT_MAX_CONCURRENT`), or the caller's one, is taken.";
    ImportTimeout = "import_timeout", SERVICE_UNAVAILABLE, "The import did not finish within `IMPORT_TIMEOUT_SECS`; nothing was imported.";
    MigrationsPending = "migrations_pending", SERVICE_UNAVAILABLE, "The database lacks a migration this build needs.";
}

impl Code {
    /// The code spelled `code`, if there is one.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::Code;

    #[test]
    fn codes_are_unique_snake_case_and_their_variants_are_named_after_them() {
        let spelled: BTreeSet<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(spelled.len(), Code::ALL.len());
        for code in Code::ALL {
            let text = code.as_str();
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            let camel: String = text
                .split('_')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect();
            assert_eq!(format!("{code:?}"), camel);
            assert_eq!(Code::parse(text), Some(*code));
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }

    #[test]
    fn every_code_of_an_import_line_is_a_problem_code() {
        for code in crate::app::import::LineCode::ALL {
            assert!(Code::parse(code.as_str()).is_some(), "{code:?}");
        }
    }
}
