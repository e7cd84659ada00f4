//! Use cases. Each public function is one use case and owns its transaction: it loads what the
//! rules need, asks the domain, writes the outcome and its event, and commits (or writes nothing).

pub mod audit;
pub mod customers;
pub mod offers;
pub mod partners;
pub mod purchases;
pub mod subscriptions;

use crate::domain::{
    CustomerId, InvalidQualificationSet, OfferId, PartnerId, ProductKind, Segment, SubscriptionId,
    SubscriptionStatus, wire_enum,
};

/// Who is acting, for the event log.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The acting principal; `system` until authentication exists.
    pub actor: String,
    /// The request id (`x-request-id`) that carried the action.
    pub request_id: Option<String>,
}

wire_enum!(
    /// The kinds of event in the log.
    EventType("event type") {
        PartnerCreated => "partner_created",
        PartnerQualificationsSet => "partner_qualifications_set",
        PartnerProvidersSet => "partner_providers_set",
        CustomerCreated => "customer_created",
        CustomerPartnerLinked => "customer_partner_linked",
        CustomerQualificationsSet => "customer_qualifications_set",
        OfferCreated => "offer_created",
        SubscriptionCreated => "subscription_created",
        SubscriptionStatusChanged => "subscription_status_changed",
        PurchaseDenied => "purchase_denied",
        IdempotentReplayServed => "idempotent_replay_served",
    }
);

/// Why a use case did not complete; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A qualification set outside the seven of R3.
    #[error(transparent)]
    InvalidQualificationSet(#[from] InvalidQualificationSet),
    /// R1 at offer creation.
    #[error(
        "special prices exist only for license-based products: a {segment} offer cannot be {product_kind}"
    )]
    SpecialOfferNotLicenseBased {
        /// Requested segment.
        segment: Segment,
        /// Requested product kind.
        product_kind: ProductKind,
    },
    /// Only indirect resellers are connected to providers.
    #[error("partner {0} is not an indirect reseller, so it has no indirect providers")]
    NotAnIndirectReseller(PartnerId),
    /// A provider link names a partner that does not exist.
    #[error("provider {0} does not exist")]
    ProviderNotFound(PartnerId),
    /// A provider link names a partner that is not an indirect provider.
    #[error("partner {0} is not an indirect provider")]
    NotAnIndirectProvider(PartnerId),
    /// A cancelled subscription cannot be reactivated or suspended.
    #[error("subscription {0} is {1} and cannot become {2}")]
    InvalidStatusTransition(SubscriptionId, SubscriptionStatus, SubscriptionStatus),
    /// The idempotency key was first used with a different request.
    #[error("idempotency key `{0}` was already used with a different request")]
    IdempotencyKeyReused(String),
    /// The database could not be reached in time; retrying later may succeed.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A bug or an unexpected database failure.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => Error::Unavailable(error),
            other => Error::Internal(anyhow::Error::new(other).context("database error")),
        }
    }
}

/// The result of a use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;
