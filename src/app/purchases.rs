//! Purchases: the decision, the subscription it creates, and idempotent retries.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;

use super::{Error, RequestContext, Result, customers::authorize, policies};
use crate::{
    db::{
        self, Keyset,
        events::NewEvent,
        offers::Offer,
        purchases::{Locking, Missing, PurchaseFacts, Record},
        subscriptions::{NewSubscription, SubscriptionRow},
    },
    domain::{
        Action, CustomerId, EventType, OfferId, OfferTerms, PartnerId, Policy, PurchaseContext,
        PurchaseDecision, Quantity, RuleViolation, Segment, SubscriptionId, SubscriptionStatus,
        decide,
    },
};

/// An ordering system's key for one purchase attempt: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// A key that is empty, too long, or not visible ASCII.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an Idempotency-Key must be 1 to 255 visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// Checks a key.
    pub fn parse(raw: &str) -> Result<Self, InvalidIdempotencyKey> {
        let ok = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A proposed purchase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PurchaseRequest {
    /// The customer buying.
    pub customer_id: CustomerId,
    /// The partner buying on the customer's behalf.
    pub partner_id: PartnerId,
    /// The offer.
    pub offer_id: OfferId,
    /// Number of licenses.
    pub quantity: Quantity,
}

/// What a purchase ended in; stored with its idempotency key (as a [`StoredOutcome`]) and
/// answered again to retries.
#[derive(Debug, Clone, PartialEq)]
pub enum PurchaseOutcome {
    /// The subscription was created.
    Created {
        /// The new subscription.
        subscription: SubscriptionRow,
    },
    /// The rules denied the purchase; nothing but the denial event was written.
    Denied {
        /// Every broken rule.
        violations: Vec<RuleViolation>,
        /// The policy version it was decided under.
        policy_version: i32,
    },
}

/// A purchase outcome as stored with its idempotency key, to be replayed to retries for as long as
/// the key is kept. It has types of its own, so that no change to the API's views or to the
/// database's rows can change what a stored outcome says. Format 1 is the first, written before
/// formats were numbered, hence without a `format` member; a new format gets a number and a
/// variant, and every stored format stays readable (`tests/api/purchases.rs` replays golden
/// outcomes of each). The policy version was added to format 1 as a member without a new number:
/// every outcome stored before it was decided under version 1, which is what its absence reads
/// as, and its replay gains the member as every answer of the API did.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum StoredOutcome {
    /// Format 1: the subscription was created.
    Created {
        /// The subscription as it was created.
        subscription: StoredSubscription,
    },
    /// Format 1: the rules denied the purchase.
    Denied {
        /// Every broken rule, with its code and details.
        violations: Vec<RuleViolation>,
        /// The policy version it was decided under.
        #[serde(default = "rule_book")]
        policy_version: i32,
    },
}

/// The policy version of outcomes stored before versions were recorded.
fn rule_book() -> i32 {
    1
}

/// A created subscription in format 1 of [`StoredOutcome`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredSubscription {
    id: SubscriptionId,
    customer_id: CustomerId,
    partner_id: PartnerId,
    offer_id: OfferId,
    segment: Segment,
    quantity: i32,
    status: SubscriptionStatus,
    created_at: DateTime<Utc>,
    #[serde(default = "rule_book")]
    policy_version: i32,
}

impl StoredOutcome {
    /// The stored form of `outcome`.
    fn write(outcome: &PurchaseOutcome) -> Result<serde_json::Value> {
        let stored = match outcome {
            PurchaseOutcome::Created { subscription: s } => Self::Created {
                subscription: StoredSubscription {
                    id: s.id,
                    customer_id: s.customer_id,
                    partner_id: s.partner_id,
                    offer_id: s.offer_id,
                    segment: s.segment,
                    quantity: s.quantity,
                    status: s.status,
                    created_at: s.created_at,
                    policy_version: s.policy_version,
                },
            },
            PurchaseOutcome::Denied {
                violations,
                policy_version,
            } => Self::Denied {
                violations: violations.clone(),
                policy_version: *policy_version,
            },
        };
        serde_json::to_value(stored)
            .context("serialize purchase outcome")
            .map_err(Error::Internal)
    }

    /// The outcome a stored one says.
    fn read(stored: serde_json::Value) -> Result<PurchaseOutcome> {
        let stored: Self = serde_json::from_value(stored)
            .context("stored purchase outcome is unreadable")
            .map_err(Error::Internal)?;
        Ok(match stored {
            Self::Created { subscription: s } => PurchaseOutcome::Created {
                subscription: SubscriptionRow {
                    id: s.id,
                    customer_id: s.customer_id,
                    partner_id: s.partner_id,
                    offer_id: s.offer_id,
                    segment: s.segment,
                    quantity: s.quantity,
                    status: s.status,
                    created_at: s.created_at,
                    policy_version: s.policy_version,
                },
            },
            Self::Denied {
                violations,
                policy_version,
            } => PurchaseOutcome::Denied {
                violations,
                policy_version,
            },
        })
    }
}

/// A purchase's outcome, and whether it is a replay of an earlier request with the same key.
#[derive(Debug)]
pub struct Purchase {
    /// The outcome.
    pub outcome: PurchaseOutcome,
    /// `true` when the outcome was stored by an earlier request.
    pub replayed: bool,
}

fn context(facts: &PurchaseFacts, offer: OfferTerms) -> PurchaseContext<'_> {
    PurchaseContext {
        partner: &facts.partner,
        customer_related_to_partner: facts.related,
        customer: facts.customer,
        customer_has_gcc_history: facts.gcc_history,
        offer,
    }
}

fn not_found(missing: Missing, customer: CustomerId, partner: PartnerId) -> Error {
    match missing {
        Missing::Customer => Error::CustomerNotFound(customer),
        Missing::Partner => Error::PartnerNotFound(partner),
    }
}

/// Decides and records a purchase in one transaction.
///
/// Concurrency: the transaction row-locks the customer (`FOR NO KEY UPDATE`), the lock every
/// qualification change of that customer takes too, and only then reads its GCC history. Writers
/// of one customer therefore run one after another and each sees what the previous committed, on
/// any number of service instances. We chose the lock over SERIALIZABLE because it never aborts, so
/// there is no retry loop, and a hot customer queues instead of failing; unrelated customers never
/// wait for each other.
pub async fn purchase(
    pool: &PgPool,
    ctx: &RequestContext,
    key: &IdempotencyKey,
    request: PurchaseRequest,
) -> Result<Purchase> {
    ctx.check_partner(request.partner_id)?;
    ctx.require(Action::Purchase)?;
    let request_json = serde_json::to_value(request)
        .context("serialize purchase request")
        .map_err(Error::Internal)?;
    let owner = idempotency_owner(ctx);
    let mut tx = pool.begin().await?;

    db::idempotency::lock(&mut *tx, request.customer_id, &owner, key.as_str()).await?;
    let (stored, offer) = db::purchases::stored_outcome_and_offer(
        &mut *tx,
        request.customer_id,
        &owner,
        key.as_str(),
        request.offer_id,
    )
    .await?;
    if let Some(stored) = stored {
        if stored.request != request_json {
            return Err(Error::IdempotencyKeyReused(key.as_str().to_owned()));
        }
        let outcome = StoredOutcome::read(stored.outcome)?;
        // Serving a stored outcome is a decision too: auditors see every retry, and which outcome
        // it was answered with.
        let (result, subscription_id) = match &outcome {
            PurchaseOutcome::Created { subscription } => ("created", Some(subscription.id)),
            PurchaseOutcome::Denied { .. } => ("denied", None),
        };
        db::events::append(
            &mut *tx,
            &ctx.actor,
            NewEvent {
                event_type: EventType::IdempotentReplayServed,
                customer_id: Some(request.customer_id),
                partner_id: Some(request.partner_id),
                payload: json!({
                    "idempotency_key": key.as_str(),
                    "result": result,
                    "subscription_id": subscription_id,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        crate::monitoring::purchase_replayed();
        return Ok(Purchase {
            outcome,
            replayed: true,
        });
    }

    // Offers never change, so reading it before taking the customer lock is safe and shortens the lock.
    let offer = offer.ok_or(Error::OfferNotFound(request.offer_id))?;
    let (facts, decision) = db::purchases::load(
        &mut tx,
        request.customer_id,
        request.partner_id,
        Locking::ForPurchase,
    )
    .await?
    .map_err(|m| not_found(m, request.customer_id, request.partner_id))?;

    // Partner roles see only their partner's customers: an unrelated one does not exist for them.
    if ctx.partner_scope().is_some() && !facts.related {
        return Err(Error::CustomerNotFound(request.customer_id));
    }
    let policy = policies::policy(&mut tx, decision.policy).await?;
    let policy_version = decision.policy.version;
    let (outcome, event) = match decide(&policy, &context(&facts, offer.terms())) {
        PurchaseDecision::Allowed => {
            let subscription = db::subscriptions::insert(
                &mut *tx,
                NewSubscription {
                    customer_id: request.customer_id,
                    partner_id: request.partner_id,
                    offer_id: request.offer_id,
                    segment: offer.segment,
                    quantity: request.quantity.get(),
                    decision,
                },
            )
            .await?;
            let payload = json!({
                "subscription_id": subscription.id,
                "offer_id": offer.id,
                "segment": offer.segment,
                "quantity": subscription.quantity,
                "customer_qualifications": facts.customer,
                "idempotency_key": key.as_str(),
                "policy_version": policy_version,
                "decided_at": decision.at,
            });
            (
                PurchaseOutcome::Created { subscription },
                (EventType::SubscriptionCreated, payload),
            )
        }
        PurchaseDecision::Denied(violations) => {
            let payload = json!({
                "offer_id": offer.id,
                "segment": offer.segment,
                "quantity": request.quantity,
                "customer_qualifications": facts.customer,
                "violations": violations,
                "idempotency_key": key.as_str(),
                "policy_version": policy_version,
                "decided_at": decision.at,
            });
            (
                PurchaseOutcome::Denied {
                    violations,
                    policy_version,
                },
                (EventType::PurchaseDenied, payload),
            )
        }
    };
    let subscription_id = match &outcome {
        PurchaseOutcome::Created { subscription } => Some(subscription.id),
        PurchaseOutcome::Denied { .. } => None,
    };
    let outcome_json = StoredOutcome::write(&outcome)?;
    db::purchases::record(
        &mut *tx,
        &ctx.actor,
        request.customer_id,
        Record {
            event: NewEvent {
                event_type: event.0,
                customer_id: Some(request.customer_id),
                partner_id: Some(request.partner_id),
                payload: event.1,
            },
            owner: &owner,
            key: key.as_str(),
            request: &request_json,
            outcome: &outcome_json,
            subscription: subscription_id,
        },
    )
    .await?;
    tx.commit().await?;
    crate::monitoring::purchase_decided(match &outcome {
        PurchaseOutcome::Created { .. } => &[],
        PurchaseOutcome::Denied { violations, .. } => violations,
    });
    Ok(Purchase {
        outcome,
        replayed: false,
    })
}

/// Whose key space an idempotency key lives in: the partner for partner roles (its ordering
/// systems may share keys across tokens), otherwise the principal.
fn idempotency_owner(ctx: &RequestContext) -> String {
    ctx.partner_scope()
        .map_or_else(|| ctx.actor.id().to_owned(), |p| format!("partner:{p}"))
}

/// Checks that the caller may ask about `partner` selling to `customer`, inside `tx`.
async fn check_parties(
    tx: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
) -> Result<()> {
    ctx.check_partner(partner)?;
    authorize(tx, ctx, Action::ReadDecisions, customer).await
}

/// A decision that wrote nothing, and the policy version it was made under.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided<T> {
    /// The answer.
    pub answer: T,
    /// The version in force at the instant asked about.
    pub policy_version: i32,
}

/// The decision a purchase would get now, without writing anything.
pub async fn decide_only(
    pool: &PgPool,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
    offer: OfferId,
) -> Result<Decided<PurchaseDecision>> {
    let mut tx = db::begin_read_only(pool).await?;
    check_parties(&mut tx, ctx, customer, partner).await?;
    let offer = db::offers::get(&mut *tx, offer)
        .await?
        .ok_or(Error::OfferNotFound(offer))?;
    let (facts, decision) = db::purchases::load(&mut tx, customer, partner, Locking::None)
        .await?
        .map_err(|m| not_found(m, customer, partner))?;
    let policy = policies::policy(&mut tx, decision.policy).await?;
    Ok(Decided {
        answer: decide(&policy, &context(&facts, offer.terms())),
        policy_version: decision.policy.version,
    })
}

/// What a read-only decision is made on: the facts now or at an instant, and the policy in force
/// then.
struct FactsAt {
    /// `None` if a party did not exist yet at that instant.
    facts: Option<PurchaseFacts>,
    /// The version in force then.
    policy_version: i32,
    /// Its rules.
    policy: Arc<Policy>,
}

/// The facts now or at `at`, and the policy in force at that instant.
async fn facts_at(
    tx: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
    at: Option<DateTime<Utc>>,
) -> Result<FactsAt> {
    check_parties(tx, ctx, customer, partner).await?;
    let (now, decision) = db::purchases::load(tx, customer, partner, Locking::None)
        .await?
        .map_err(|m| not_found(m, customer, partner))?;
    let (facts, version) = match at {
        None => (Some(now), decision.policy),
        Some(at) => (
            db::purchases::load_as_of(&mut *tx, customer, partner, at).await?,
            db::policies::in_force_at(&mut *tx, at).await?,
        ),
    };
    Ok(FactsAt {
        facts,
        policy_version: version.version,
        policy: policies::policy(tx, version).await?,
    })
}

/// Every offer (up to `limit`) with the decision a purchase of it by `partner` for `customer`
/// would get now, or would have got at `at` under the version then in force: the console's
/// eligibility panel. `None` if the parties did not both exist yet at `at`.
pub async fn eligibility(
    pool: &PgPool,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
    at: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Option<Decided<Vec<(Offer, PurchaseDecision)>>>> {
    let mut tx = db::begin_read_only(pool).await?;
    let then = facts_at(&mut tx, ctx, customer, partner, at).await?;
    let Some(facts) = then.facts else {
        return Ok(None);
    };
    let every: Vec<_> = OfferTerms::all().collect();
    let offers =
        db::offers::list_with_terms(&mut *tx, &every, at, Keyset { after: None, limit }).await?;
    Ok(Some(Decided {
        answer: offers
            .into_iter()
            .map(|offer| {
                let decision = decide(&then.policy, &context(&facts, offer.terms()));
                (offer, decision)
            })
            .collect(),
        policy_version: then.policy_version,
    }))
}

/// A page of the offers `partner` may sell `customer` now, or could have sold it at `at`: every
/// offer whose terms the rules allow, decided on the facts then in force (R4 on the subscription
/// history as of `at`) under the policy version then in force. Parties that did not exist yet at
/// `at` could sell nothing.
pub async fn eligible_offers(
    pool: &PgPool,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
    at: Option<DateTime<Utc>>,
    page: Keyset,
) -> Result<Decided<Vec<Offer>>> {
    let mut tx = db::begin_read_only(pool).await?;
    let then = facts_at(&mut tx, ctx, customer, partner, at).await?;
    let Some(facts) = then.facts else {
        return Ok(Decided {
            answer: Vec::new(),
            policy_version: then.policy_version,
        });
    };
    let allowed: Vec<_> = OfferTerms::all()
        .filter(|&terms| decide(&then.policy, &context(&facts, terms)).is_allowed())
        .collect();
    Ok(Decided {
        answer: db::offers::list_with_terms(&mut *tx, &allowed, at, page).await?,
        policy_version: then.policy_version,
    })
}
