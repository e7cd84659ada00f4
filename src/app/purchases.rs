//! Purchases: the decision, the subscription it creates, and idempotent retries.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{Connection, PgPool};

use super::{Error, RequestContext, Result, policies};
use crate::{
    db::{
        self, Keyset,
        events::NewEvent,
        idempotency::KeyRecord,
        offers::Offer,
        policies::Decision,
        purchases::{Missing, PurchaseFacts, Record, Recorded},
        subscriptions::SubscriptionRow,
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

/// The 404 of a decision whose facts read no row: which party is missing.
async fn not_found(
    conn: &mut sqlx::PgConnection,
    customer: CustomerId,
    partner: PartnerId,
) -> Result<Error> {
    Ok(match db::purchases::missing(conn, customer).await? {
        Missing::Customer => Error::CustomerNotFound(customer),
        Missing::Partner => Error::PartnerNotFound(partner),
    })
}

/// Partner roles see only their partner's customers: an unrelated one does not exist for them.
fn hide_unrelated(ctx: &RequestContext, customer: CustomerId, facts: &PurchaseFacts) -> Result<()> {
    if ctx.partner_scope().is_some() && !facts.related {
        return Err(Error::CustomerNotFound(customer));
    }
    Ok(())
}

/// How often a purchase decides again when its facts changed between reading and recording. Each
/// time means that another writer of this customer or partner committed in the meantime (a
/// qualification change, a GCC purchase, a published version): with the fresh facts read under the
/// locks, a second attempt almost always records.
const ATTEMPTS: usize = 8;

/// How long before the request's deadline `purchase_record` must have decided to write: the
/// writes and the commit after its check take milliseconds, and the answer must not say "nothing
/// was changed" about a purchase committed after it.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// Decides and records a purchase in two round trips on one connection, each a transaction of its
/// own (README, "How it stays correct under concurrency").
///
/// 1. [`db::purchases::read`], without locks: the stored outcome of the key, the offer, and the
///    facts now with the version in force. A stored outcome is replayed.
/// 2. The pure rules decide on those facts.
/// 3. [`db::purchases::record`] takes the key's lock, the customer's row lock (`FOR NO KEY UPDATE`,
///    the lock every qualification change of that customer takes too) and the partner's, reads the
///    facts again in a fresh snapshot and writes the decision only if they are the facts it was
///    made on. Otherwise it writes nothing and answers the fresh facts, and we decide again.
///
/// So every purchase is recorded under the facts in force while it holds the locks, as if it had
/// read them under the locks, on any number of service instances, and the customer's lock is held
/// for one call inside the database, never across a round trip. A lock never aborts, so a hot
/// customer queues instead of failing, and unrelated customers never wait for each other.
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
    let (customer, partner) = (request.customer_id, request.partner_id);
    let mut conn = pool.acquire().await?;

    let stored_key = db::purchases::Key {
        owner: &owner,
        key: key.as_str(),
    };
    let reading = db::purchases::read(
        &mut *conn,
        customer,
        partner,
        Some(stored_key),
        Some(request.offer_id),
    )
    .await?;
    if let Some(stored) = reading.stored {
        return replay(&mut conn, ctx, key, request, &request_json, stored).await;
    }
    let offer = reading
        .offer
        .ok_or(Error::OfferNotFound(request.offer_id))?;
    let Some((mut facts, mut decision)) = reading.facts else {
        return Err(not_found(&mut conn, customer, partner).await?);
    };
    for _ in 0..ATTEMPTS {
        hide_unrelated(ctx, customer, &facts)?;
        let policy = policies::policy(&mut conn, decision.policy).await?;
        let decided = decide(&policy, &context(&facts, offer.terms()));
        let (mut outcome, event) =
            outcome_and_event(decided, request, &offer, &facts, decision, key);
        // A call that could not commit in time would take the locks only to refuse.
        let budget = match ctx.deadline {
            None => None,
            Some(deadline) => Some(
                deadline
                    .checked_duration_since(tokio::time::Instant::now())
                    .and_then(|left| left.checked_sub(DEADLINE_MARGIN))
                    .ok_or(Error::PastDeadline)?,
            ),
        };
        let recorded = db::purchases::record(
            &mut *conn,
            &ctx.actor,
            customer,
            partner,
            Record {
                key: stored_key,
                facts: &facts,
                policy_version: decision.policy.version,
                subscription: match &outcome {
                    PurchaseOutcome::Created { subscription } => Some(subscription),
                    PurchaseOutcome::Denied { .. } => None,
                },
                event: &event,
                request: &request_json,
                outcome: &StoredOutcome::write(&outcome)?,
                budget,
            },
        )
        .await?;
        match recorded {
            Recorded::Written { decided_at } => {
                if let PurchaseOutcome::Created { subscription } = &mut outcome {
                    subscription.created_at = decided_at;
                }
                crate::monitoring::purchase_decided(match &outcome {
                    PurchaseOutcome::Created { .. } => &[],
                    PurchaseOutcome::Denied { violations, .. } => violations,
                });
                return Ok(Purchase {
                    outcome,
                    replayed: false,
                });
            }
            Recorded::Stored(stored) => {
                return replay(&mut conn, ctx, key, request, &request_json, stored).await;
            }
            Recorded::Stale(fresh_facts, fresh_decision) => {
                crate::monitoring::purchase_facts_changed();
                (facts, decision) = (fresh_facts, fresh_decision);
            }
            Recorded::Missing => return Err(not_found(&mut conn, customer, partner).await?),
        }
    }
    Err(Error::Internal(anyhow::anyhow!(
        "the facts of customer {customer} and partner {partner} changed {ATTEMPTS} times while purchasing"
    )))
}

/// What a decision writes: its outcome (a new subscription's `created_at`, the decision's
/// instant, is replaced when it is recorded) and its event on the customer's chain.
fn outcome_and_event(
    decided: PurchaseDecision,
    request: PurchaseRequest,
    offer: &Offer,
    facts: &PurchaseFacts,
    decision: Decision,
    key: &IdempotencyKey,
) -> (PurchaseOutcome, NewEvent) {
    let policy_version = decision.policy.version;
    let (outcome, event_type, payload) = match decided {
        PurchaseDecision::Allowed => {
            let subscription = SubscriptionRow {
                id: SubscriptionId::new(),
                customer_id: request.customer_id,
                partner_id: request.partner_id,
                offer_id: offer.id,
                segment: offer.segment,
                quantity: request.quantity.get(),
                status: SubscriptionStatus::Active,
                created_at: decision.at,
                policy_version,
            };
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
                EventType::SubscriptionCreated,
                payload,
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
                EventType::PurchaseDenied,
                payload,
            )
        }
    };
    let event = NewEvent {
        event_type,
        customer_id: Some(request.customer_id),
        partner_id: Some(request.partner_id),
        payload,
    };
    (outcome, event)
}

/// Answers a request whose key has a stored outcome: the outcome, if the request is the one it
/// was stored for.
async fn replay(
    conn: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    key: &IdempotencyKey,
    request: PurchaseRequest,
    request_json: &serde_json::Value,
    stored: KeyRecord,
) -> Result<Purchase> {
    if stored.request != *request_json {
        return Err(Error::IdempotencyKeyReused(key.as_str().to_owned()));
    }
    let outcome = StoredOutcome::read(stored.outcome)?;
    // Serving a stored outcome is a decision too: auditors see every retry, and which outcome
    // it was answered with.
    let (result, subscription_id) = match &outcome {
        PurchaseOutcome::Created { subscription } => ("created", Some(subscription.id)),
        PurchaseOutcome::Denied { .. } => ("denied", None),
    };
    // In a transaction of its own, so that a request dropped at its deadline records nothing.
    let mut tx = conn.begin().await?;
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
    Ok(Purchase {
        outcome,
        replayed: true,
    })
}

/// Whose key space an idempotency key lives in: the partner for partner roles (its ordering
/// systems may share keys across tokens), otherwise the principal.
fn idempotency_owner(ctx: &RequestContext) -> String {
    ctx.partner_scope()
        .map_or_else(|| ctx.actor.id().to_owned(), |p| format!("partner:{p}"))
}

/// The facts of a decision that writes nothing, if the caller may ask about `partner` selling
/// to `customer`: partner roles ask only about their own partner, and see only its customers (an
/// unrelated one does not exist for them, as for purchases); then 403 unless the role may read
/// decisions, so that a 403 never tells a partner that another partner's customer exists.
async fn visible(
    conn: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
    facts: Option<(PurchaseFacts, Decision)>,
) -> Result<(PurchaseFacts, Decision)> {
    let Some((facts, decision)) = facts else {
        return Err(not_found(conn, customer, partner).await?);
    };
    hide_unrelated(ctx, customer, &facts)?;
    ctx.require(Action::ReadDecisions)?;
    Ok((facts, decision))
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
    ctx.check_partner(partner)?;
    let mut conn = pool.acquire().await?;
    let reading = db::purchases::read(&mut *conn, customer, partner, None, Some(offer)).await?;
    let (facts, decision) = visible(&mut conn, ctx, customer, partner, reading.facts).await?;
    let offer = reading.offer.ok_or(Error::OfferNotFound(offer))?;
    let policy = policies::policy(&mut conn, decision.policy).await?;
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

/// A read-only decision's connection: plain when it reads the facts now (one statement), in a
/// read-only, repeatable-read transaction when it reads them at an instant (several statements,
/// which must read one snapshot).
enum ReadConnection {
    Now(sqlx::pool::PoolConnection<sqlx::Postgres>),
    AsOf(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl ReadConnection {
    async fn open(pool: &PgPool, at: Option<DateTime<Utc>>) -> Result<Self> {
        Ok(match at {
            None => Self::Now(pool.acquire().await?),
            Some(_) => Self::AsOf(db::begin_read_only(pool).await?),
        })
    }

    fn get(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Self::Now(conn) => conn,
            Self::AsOf(tx) => tx,
        }
    }
}

/// The facts now or at `at`, and the policy in force at that instant; `conn` is in a read-only
/// transaction when `at` is given, so that its several statements read one snapshot.
async fn facts_at(
    conn: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
    at: Option<DateTime<Utc>>,
) -> Result<FactsAt> {
    ctx.check_partner(partner)?;
    let reading = db::purchases::read(&mut *conn, customer, partner, None, None).await?;
    let (now, decision) = visible(conn, ctx, customer, partner, reading.facts).await?;
    let (facts, version) = match at {
        None => (Some(now), decision.policy),
        Some(at) => (
            db::purchases::load_as_of(&mut *conn, customer, partner, at).await?,
            db::policies::in_force_at(&mut *conn, at).await?,
        ),
    };
    Ok(FactsAt {
        facts,
        policy_version: version.version,
        policy: policies::policy(conn, version).await?,
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
    let mut conn = ReadConnection::open(pool, at).await?;
    let conn = conn.get();
    let then = facts_at(conn, ctx, customer, partner, at).await?;
    let Some(facts) = then.facts else {
        return Ok(None);
    };
    let every: Vec<_> = OfferTerms::all().collect();
    let offers =
        db::offers::list_with_terms(&mut *conn, &every, at, Keyset { after: None, limit }).await?;
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
    let mut conn = ReadConnection::open(pool, at).await?;
    let conn = conn.get();
    let then = facts_at(conn, ctx, customer, partner, at).await?;
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
        answer: db::offers::list_with_terms(&mut *conn, &allowed, at, page).await?,
        policy_version: then.policy_version,
    })
}
