//! Use cases. Each public function is one use case and owns its transaction: it loads what the
//! rules need, asks the domain, writes the outcome and its event, and commits (or writes nothing).

pub mod audit;
pub mod customers;
pub mod import;
pub mod offers;
pub mod partners;
pub mod policies;
pub mod principals;
pub mod purchases;
pub mod subscriptions;
pub mod tokens;
pub mod users;
pub mod webhooks;

use chrono::{DateTime, Utc};

use crate::{
    db::{self, customers::QualificationRecord, partners::Partner},
    domain::{
        Action, Actor, CustomerId, EvidenceError, InvalidPolicy, InvalidQualificationSet, OfferId,
        PartnerId, Principal, ProductKind, Role, Segment, SubscriptionId, SubscriptionStatus,
        permits,
    },
};

/// Who is acting, and through which request: every use case gets one, every event records it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The authenticated caller; `None` only for the operator's command line (`system`).
    pub principal: Option<Principal>,
    /// The actor every change of the request records.
    pub actor: Actor,
    /// When the caller is answered 503 `request_timeout`, "nothing was changed", if the request
    /// is not done by then (`REQUEST_TIMEOUT_SECS`); `None` outside HTTP requests. A transaction
    /// the service commits itself is rolled back when the request is dropped at this instant; a
    /// write committed by the database on its own (a purchase's `purchase_record`) is given the
    /// time left and must refuse to commit after it.
    pub deadline: Option<tokio::time::Instant>,
}

impl RequestContext {
    /// The caller `principal`, acting through the request `request_id` (`x-request-id`).
    pub fn new(principal: Option<Principal>, request_id: Option<String>) -> Self {
        let actor = Actor::new(principal.as_ref(), request_id);
        Self {
            principal,
            actor,
            deadline: None,
        }
    }

    /// The same, answered `request_timeout` at `deadline`.
    #[must_use]
    pub fn answered_by(self, deadline: Option<tokio::time::Instant>) -> Self {
        Self { deadline, ..self }
    }

    /// The command line acting as the operator of the installation.
    pub fn system() -> Self {
        Self::new(None, None)
    }

    /// Refuses the action unless the principal's role permits it.
    pub fn require(&self, action: Action) -> Result<()> {
        match &self.principal {
            Some(p) if !permits(p.role, action) => Err(Error::Forbidden {
                role: p.role,
                action,
            }),
            _ => Ok(()),
        }
    }

    /// Passes if the principal's role permits any of `actions`; else the first one's refusal.
    pub fn require_any(&self, actions: &[Action]) -> Result<()> {
        match actions.iter().find(|&&action| self.require(action).is_ok()) {
            Some(_) => Ok(()),
            None => actions.first().map_or(Ok(()), |&first| self.require(first)),
        }
    }

    /// The partner whose data alone the caller may see, for partner roles.
    pub fn partner_scope(&self) -> Option<PartnerId> {
        self.principal.as_ref().and_then(Principal::partner_scope)
    }

    /// 404 for a partner outside the caller's scope, as if it did not exist. Called before
    /// [`Self::require`], so that a 403 never tells a partner that another partner exists.
    pub fn check_partner(&self, partner: PartnerId) -> Result<()> {
        match self.partner_scope() {
            Some(own) if own != partner => Err(Error::PartnerNotFound(partner)),
            _ => Ok(()),
        }
    }
}

/// What a conditional write expects the current version to be (from `If-Match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: *`: whatever the current version is.
    Any,
    /// `If-Match: "N"`: only if the current version is N.
    Version(i64),
}

impl Precondition {
    /// Whether `current` satisfies the precondition.
    pub fn holds(self, current: i64) -> bool {
        match self {
            Self::Any => true,
            Self::Version(expected) => expected == current,
        }
    }
}

/// Something the caller should know about a change that succeeded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Warning {
    /// Stable code.
    pub code: &'static str,
    /// Human sentence.
    pub message: String,
}

/// Why a use case did not complete; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's role does not permit the action.
    #[error("the {role} role may not do this ({action:?})")]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// What it tried.
        action: Action,
    },
    /// No token with this id (within the caller's scope).
    #[error("token {0} does not exist")]
    TokenNotFound(uuid::Uuid),
    /// A token request that cannot be granted as asked.
    #[error("{0}")]
    InvalidTokenRequest(&'static str),
    /// No webhook endpoint with this id (within the caller's scope).
    #[error("webhook endpoint {0} does not exist")]
    WebhookEndpointNotFound(uuid::Uuid),
    /// The endpoint has no notice of this event to send again.
    #[error("event {0} made no notice for this webhook endpoint")]
    WebhookEventNotFound(uuid::Uuid),
    /// A webhook URL that cannot be registered.
    #[error("{0}")]
    InvalidWebhookUrl(String),
    /// No customer has this id.
    #[error("customer {0} does not exist")]
    CustomerNotFound(CustomerId),
    /// No partner has this id.
    #[error("partner {0} does not exist")]
    PartnerNotFound(PartnerId),
    /// The customer has no subscription with this id.
    #[error("customer {0} has no subscription {1}")]
    SubscriptionNotFound(CustomerId, SubscriptionId),
    /// No offer has this id.
    #[error("offer {0} does not exist")]
    OfferNotFound(OfferId),
    /// A field of the right type whose value is not acceptable.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field, as the request names it.
        field: &'static str,
        /// Why it is not acceptable.
        message: String,
    },
    /// Another customer already has this external reference.
    #[error("customer {customer} already has the external reference `{reference}`")]
    ExternalReferenceTaken {
        /// The reference.
        reference: String,
        /// The customer that has it.
        customer: CustomerId,
    },
    /// A qualification set the policy in force does not list (R3).
    #[error(transparent)]
    InvalidQualificationSet(#[from] InvalidQualificationSet),
    /// R1 at offer creation.
    #[error(
        "the policy in force does not sell {segment} offers as {product_kind}: special prices are only for the product kinds it lists"
    )]
    OfferNotLicenseBased {
        /// Requested segment.
        segment: Segment,
        /// Requested product kind.
        product_kind: ProductKind,
    },
    /// Only indirect resellers are connected to providers.
    #[error("partner {0} is not an indirect reseller, so it has no indirect providers")]
    PartnerNotIndirectReseller(PartnerId),
    /// A provider link names a partner that does not exist.
    #[error("provider {0} does not exist")]
    ProviderNotFound(PartnerId),
    /// A provider link names a partner that is not an indirect provider.
    #[error("partner {0} is not an indirect provider")]
    ProviderNotIndirectProvider(PartnerId),
    /// Added qualifications without proper evidence.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The customer changed since the version the caller read.
    #[error("customer {} is at version {}, not the version in If-Match", .0.customer_id, .0.version)]
    CustomerVersionMismatch(Box<QualificationRecord>),
    /// The partner changed since the version the caller read.
    #[error("partner {} is at version {}, not the version in If-Match", .0.id, .0.version)]
    PartnerVersionMismatch(Box<Partner>),
    /// The customer or partner did not exist yet at the requested time.
    #[error("nothing was recorded for {0} at {1}")]
    NotRecordedAt(String, DateTime<Utc>),
    /// A cancelled subscription cannot be reactivated or suspended.
    #[error("subscription {0} is {1} and cannot become {2}")]
    InvalidStatusTransition(SubscriptionId, SubscriptionStatus, SubscriptionStatus),
    /// The idempotency key was first used with a different request.
    #[error("idempotency key `{0}` was already used with a different request")]
    IdempotencyKeyReused(String),
    /// The database could not be reached in time; retrying later may succeed.
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] db::Error),
    /// A statement ran past `statement_timeout` (e.g. waiting for a lock), or a purchase past
    /// its request's deadline: the transaction was rolled back, so retrying later may succeed.
    #[error("a statement ran past its time limit")]
    RequestTimeout(#[source] db::Error),
    /// Too little of the request's time was left to make a write that the database commits on
    /// its own (a purchase's last call), so it was not made.
    #[error("too little of the request's time was left to record it")]
    PastDeadline,
    /// No export slot is free (`app::audit::Exports`); retrying later may succeed.
    #[error("no audit export can start now: {0}; retry when one has finished")]
    ExportBusy(&'static str),
    /// No policy version has this number.
    #[error("policy version {0} does not exist")]
    PolicyVersionNotFound(i32),
    /// A policy document that cannot be published: every problem found.
    #[error(transparent)]
    InvalidPolicy(#[from] InvalidPolicy),
    /// Versions are numbered in the order they are published.
    #[error("the document is version {given}, but the next version to publish is {next}")]
    PolicyVersionNotNext {
        /// The document's number.
        given: u32,
        /// The number the next version gets.
        next: i32,
    },
    /// A version takes effect after the latest one, and never in the past.
    #[error(
        "effective_from must be {earliest} or later: not in the past, and after the latest version's"
    )]
    PolicyEffectiveTooEarly {
        /// The earliest instant allowed when it was checked.
        earliest: DateTime<Utc>,
    },
    /// A bug or an unexpected database failure.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<db::Error> for Error {
    fn from(error: db::Error) -> Self {
        if database_unreachable(&error.source) {
            Error::DatabaseUnavailable(error)
        } else if statement_timed_out(&error.source) {
            Error::RequestTimeout(error)
        } else {
            Error::Internal(error.into())
        }
    }
}

/// The calls use cases make on the pool itself: taking a connection, beginning and committing.
impl From<sqlx::Error> for Error {
    fn from(source: sqlx::Error) -> Self {
        db::Error {
            statement: "connection or transaction control",
            source,
        }
        .into()
    }
}

/// Whether `error` says the database cannot be reached right now (down, restarting, failing over,
/// the connection lost or refused), so that retrying later may succeed: 503, not a 500 that pages
/// someone for a bug. Whatever the statement's outcome was, the transaction did not commit, or its
/// commit was cut off; a retry with the same Idempotency-Key sees which (`db::idempotency`).
fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // Class 08: connection exception. 57P01 admin_shutdown: the server terminated the
            // session (`pg_ctl stop -m fast`, pg_terminate_backend). 57P02 crash_shutdown: another
            // backend crashed. 57P03 cannot_connect_now: starting up or shutting down. 53300
            // too_many_connections: no connection slot free.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Whether `error` is PostgreSQL cancelling a statement (57014 query_canceled), which is what
/// `statement_timeout` does.
fn statement_timed_out(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("57014"))
}

/// The result of a use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A server error with just a SQLSTATE, as PostgreSQL sends it.
    #[derive(Debug, thiserror::Error)]
    #[error("SQLSTATE {0}")]
    struct ServerError(&'static str);

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn server(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError(code)))
    }

    #[test]
    fn a_failed_statement_is_named_in_what_is_logged() {
        let failed = db::Error {
            statement: "customers::get",
            source: server("42P01"),
        };
        let Error::Internal(logged) = Error::from(failed) else {
            panic!("a bug is internal");
        };
        let logged = format!("{logged:?}");
        assert!(
            logged.contains("customers::get") && logged.contains("42P01"),
            "{logged}"
        );
        let unavailable = Error::from(db::Error {
            statement: "purchases::load",
            source: server("57P01"),
        });
        let chain = anyhow::Error::new(unavailable)
            .chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        assert!(
            chain.iter().any(|c| c.contains("purchases::load")),
            "{chain:?}"
        );
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_a_bug_is_internal() {
        let unreachable = [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::ErrorKind::UnexpectedEof.into()),
            server("57P01"), // terminating connection due to administrator command
            server("57P02"),
            server("57P03"), // the database system is starting up / shutting down
            server("08006"),
            server("53300"),
        ];
        for error in unreachable {
            let shown = error.to_string();
            assert!(
                matches!(Error::from(error), Error::DatabaseUnavailable(_)),
                "{shown}"
            );
        }
        let bugs = [
            sqlx::Error::RowNotFound,
            sqlx::Error::Protocol("unexpected message".into()),
            server("23505"), // unique_violation
            server("42P01"), // undefined_table
        ];
        for error in bugs {
            let shown = error.to_string();
            assert!(matches!(Error::from(error), Error::Internal(_)), "{shown}");
        }
        // statement_timeout cancels with 57014: the request took too long, not a bug.
        assert!(matches!(
            Error::from(server("57014")),
            Error::RequestTimeout(_)
        ));
    }
}
