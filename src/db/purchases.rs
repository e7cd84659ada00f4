//! The reads a decision is made from, and a purchase's two round trips: [`read`] without locks,
//! then [`record`], which checks the facts under the locks and writes (README, "How it stays
//! correct under concurrency").

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;

use super::{
    Context, Result,
    customers::qualification_texts,
    events::NewEvent,
    idempotency::KeyRecord,
    offers::Offer,
    policies::{self, Decision, VersionInForce},
    subscriptions::SubscriptionRow,
};
use crate::domain::{
    Actor, CustomerId, CustomerQualification, OfferId, PartnerId, PartnerKind, PartnerProfile,
    ProductKind, ResellerQualification, Segment,
};

/// Everything about a customer and partner that the rules read, apart from the offer.
#[derive(Debug, Clone)]
pub struct PurchaseFacts {
    /// The customer's qualification set.
    pub customer: CustomerQualification,
    /// The partner's profile.
    pub partner: PartnerProfile,
    /// Whether the customer has a relationship with the partner.
    pub related: bool,
    /// Whether the customer's history holds a GCC subscription.
    pub gcc_history: bool,
}

/// Which party of a purchase is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No such customer.
    Customer,
    /// No such partner.
    Partner,
}

/// The columns of `purchase_facts`, all null when a party is missing.
struct FactsColumns {
    customer: Option<CustomerQualification>,
    kind: Option<PartnerKind>,
    reseller_qualifications: Option<Vec<ResellerQualification>>,
    related: Option<bool>,
    has_provider: Option<bool>,
    gcc_history: Option<bool>,
}

impl FactsColumns {
    fn facts(self) -> Option<PurchaseFacts> {
        Some(PurchaseFacts {
            customer: self.customer?,
            partner: PartnerProfile {
                kind: self.kind?,
                reseller_qualifications: self.reseller_qualifications?.into_iter().collect(),
                has_indirect_provider: self.has_provider?,
            },
            related: self.related?,
            gcc_history: self.gcc_history?,
        })
    }
}

/// The facts of a `query!` row with the columns of `purchase_facts`, named as [`FactsColumns`]'s
/// fields.
macro_rules! facts_of {
    ($row:ident) => {
        FactsColumns {
            customer: $row.customer,
            kind: $row.kind,
            reseller_qualifications: $row.reseller_qualifications,
            related: $row.related,
            has_provider: $row.has_provider,
            gcc_history: $row.gcc_history,
        }
        .facts()
    };
}

fn decision(at: DateTime<Utc>, version: i32, digest: Vec<u8>) -> sqlx::Result<Decision> {
    Ok(Decision {
        at,
        policy: VersionInForce {
            version,
            digest: policies::digest(digest)?,
        },
    })
}

/// The offer of a left-joined `offers` row.
fn offer_of(
    id: Option<OfferId>,
    name: Option<String>,
    segment: Option<Segment>,
    product_kind: Option<ProductKind>,
    created_at: Option<DateTime<Utc>>,
) -> Option<Offer> {
    Some(Offer {
        id: id?,
        name: name?,
        segment: segment?,
        product_kind: product_kind?,
        created_at: created_at?,
    })
}

/// Which party of a decision by a partner for `customer` is missing, when one is.
pub async fn missing(db: impl PgExecutor<'_>, customer: CustomerId) -> Result<Missing> {
    let customer_exists = sqlx::query_scalar!(
        r#"select exists(select 1 from customers where id = $1) as "e!""#,
        customer.0
    )
    .fetch_one(db)
    .await
    .context("purchases::missing")?;
    Ok(if customer_exists {
        Missing::Partner
    } else {
        Missing::Customer
    })
}

/// The facts as they were at `at`, from the qualification and profile histories and the
/// relationships and subscriptions that existed then; `None` if either party did not exist yet.
pub async fn load_as_of(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    partner: PartnerId,
    at: DateTime<Utc>,
) -> Result<Option<PurchaseFacts>> {
    let row = sqlx::query!(
        r#"select c.special_qualifications as "customer!: CustomerQualification",
                  p.kind as "kind!: PartnerKind",
                  ph.reseller_qualifications as "reseller_qualifications!: Vec<ResellerQualification>",
                  cardinality(ph.indirect_providers) > 0 as "has_provider!",
                  exists(select 1 from customer_partners r
                         where r.customer_id = $1 and r.partner_id = $2 and r.created_at <= $3) as "related!",
                  exists(select 1 from subscriptions s
                         where s.customer_id = $1 and s.segment = 'gcc' and s.created_at <= $3) as "gcc_history!"
           from partners p,
                lateral (select h.special_qualifications from customer_qualification_history h
                         where h.customer_id = $1 and h.valid_from <= $3
                         order by h.valid_from desc limit 1) c,
                lateral (select h.reseller_qualifications, h.indirect_providers from partner_profile_history h
                         where h.partner_id = p.id and h.valid_from <= $3
                         order by h.valid_from desc limit 1) ph
           where p.id = $2"#,
        customer.0,
        partner.0,
        at
    )
    .fetch_optional(db)
    .await.context("purchases::load_as_of")?;
    Ok(row.map(|r| PurchaseFacts {
        customer: r.customer,
        partner: PartnerProfile {
            kind: r.kind,
            reseller_qualifications: r.reseller_qualifications.into_iter().collect(),
            has_indirect_provider: r.has_provider,
        },
        related: r.related,
        gcc_history: r.gcc_history,
    }))
}

/// What a decision is made on, read in one statement without locks (one snapshot, no
/// transaction): the outcome stored for an idempotency key, the offer, and the facts now with the
/// instant and the version in force then. A decision that writes nothing is made on it as it is;
/// a purchase's is written only if [`record`] finds the same facts under the locks.
#[derive(Debug)]
pub struct Reading {
    /// The outcome stored for the key, if one was named and has one.
    pub stored: Option<KeyRecord>,
    /// The offer, if one was named and exists; offers never change.
    pub offer: Option<Offer>,
    /// The facts and the version in force, unless a party is missing ([`missing`] says which).
    pub facts: Option<(PurchaseFacts, Decision)>,
}

/// An idempotency key and whose key space it lives in.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    /// The key's owner.
    pub owner: &'a str,
    /// The key.
    pub key: &'a str,
}

/// Reads what a decision by `partner` for `customer` is made on: see [`Reading`].
pub async fn read(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    partner: PartnerId,
    key: Option<Key<'_>>,
    offer: Option<OfferId>,
) -> Result<Reading> {
    let row = sqlx::query!(
        r#"select k.request as "request?", k.outcome as "outcome?",
                  o.id as "offer_id?: OfferId", o.name as "name?", o.segment as "segment?: Segment",
                  o.product_kind as "product_kind?: ProductKind", o.created_at as "created_at?",
                  f.special_qualifications as "customer: CustomerQualification",
                  f.partner_kind as "kind: PartnerKind",
                  f.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>",
                  f.related, f.has_provider, f.gcc_history,
                  t.at as "at!", v.version as "version!", v.digest as "digest!"
           from (select clock_timestamp() as at) t
           cross join lateral policy_in_force(t.at) v
           left join idempotency_keys k on k.customer_id = $1 and k.owner = $3 and k.key = $4
           left join offers o on o.id = $5
           left join lateral purchase_facts($1, $2) f on true"#,
        customer.0,
        partner.0,
        key.map(|k| k.owner),
        key.map(|k| k.key),
        offer.map(|o| o.0),
    )
    .fetch_one(db)
    .await
    .context("purchases::read")?;
    let stored = match (row.request, row.outcome) {
        (Some(request), Some(outcome)) => Some(KeyRecord { request, outcome }),
        _ => None,
    };
    let offer = offer_of(
        row.offer_id,
        row.name,
        row.segment,
        row.product_kind,
        row.created_at,
    );
    let facts = facts_of!(row);
    let decision = decision(row.at, row.version, row.digest).context("purchases::read")?;
    Ok(Reading {
        stored,
        offer,
        facts: facts.map(|facts| (facts, decision)),
    })
}

/// A decided purchase, to be written if it was decided on the facts in force under the locks.
#[derive(Debug)]
pub struct Record<'a> {
    /// The idempotency key.
    pub key: Key<'a>,
    /// The facts the decision was made on.
    pub facts: &'a PurchaseFacts,
    /// The version it was made under.
    pub policy_version: i32,
    /// The subscription it creates, if allowed; its `created_at` is replaced by the instant
    /// of the decision.
    pub subscription: Option<&'a SubscriptionRow>,
    /// The event (`subscription_created` or `purchase_denied`) of the customer; the payload's
    /// `decided_at` is replaced by the instant of the decision.
    pub event: &'a NewEvent,
    /// The request, as stored with the key.
    pub request: &'a Value,
    /// The outcome, as stored with the key; a subscription's `created_at` in it is replaced by
    /// the instant of the decision.
    pub outcome: &'a Value,
    /// How long the database may take before it must refuse to write (the request's deadline,
    /// less a margin); `None`: no limit but `statement_timeout`.
    pub budget: Option<std::time::Duration>,
}

/// What [`record`] did.
#[derive(Debug)]
pub enum Recorded {
    /// The purchase was written, decided at this instant.
    Written {
        /// The subscription's `created_at`, the event's `decided_at`.
        decided_at: DateTime<Utc>,
    },
    /// A request with the same key committed first: its outcome; nothing was written.
    Stored(KeyRecord),
    /// The facts or the version in force changed since they were read: the fresh ones, read
    /// under the locks; nothing was written.
    Stale(PurchaseFacts, Decision),
    /// A party no longer exists; nothing was written.
    Missing,
}

/// A purchase's second and last round trip, a transaction of its own: the `purchase_record`
/// function takes the key's lock, the customer's and the partner's, reads the facts again in a
/// fresh snapshot and writes the subscription, the event and the key's row only if they are the
/// ones `record` was decided on (README, "How it stays correct under concurrency").
pub async fn record(
    db: impl PgExecutor<'_>,
    actor: &Actor,
    customer: CustomerId,
    partner: PartnerId,
    record: Record<'_>,
) -> Result<Recorded> {
    let sub = record.subscription;
    let row = sqlx::query!(
        r#"select result as "result!", decided_at, stored_request, stored_outcome,
                  special_qualifications as "customer: CustomerQualification",
                  partner_kind as "kind: PartnerKind",
                  reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>",
                  related, has_provider, gcc_history, policy_version, policy_digest
           from purchase_record($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                                $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"#,
        customer.0,
        partner.0,
        record.key.owner,
        record.key.key,
        &qualification_texts(record.facts.customer) as &[&str],
        record.facts.partner.kind.as_str(),
        &record
            .facts
            .partner
            .reseller_qualifications
            .iter()
            .map(|q| q.as_str())
            .collect::<Vec<_>>() as &[&str],
        record.facts.related,
        record.facts.partner.has_indirect_provider,
        record.facts.gcc_history,
        record.policy_version,
        sub.map(|s| s.id.0),
        sub.map(|s| s.offer_id.0),
        sub.map(|s| s.segment.as_str()),
        sub.map(|s| s.quantity),
        sub.map(|s| s.status.as_str()),
        actor.id(),
        actor.role(),
        actor.partner_id(),
        actor.request_id(),
        record.event.event_type.as_str(),
        record.event.payload,
        record.request,
        record.outcome,
        record
            .budget
            .map(|budget| sqlx::postgres::types::PgInterval {
                months: 0,
                days: 0,
                microseconds: i64::try_from(budget.as_micros()).unwrap_or(i64::MAX),
            }),
    )
    .fetch_one(db)
    .await
    .context("purchases::record")?;
    Ok(match row.result.as_str() {
        "recorded" => Recorded::Written {
            decided_at: row
                .decided_at
                .ok_or_else(|| sqlx::Error::Decode("a recorded purchase without instant".into()))
                .context("purchases::record")?,
        },
        "stored" => match (row.stored_request, row.stored_outcome) {
            (Some(request), Some(outcome)) => Recorded::Stored(KeyRecord { request, outcome }),
            _ => {
                return Err(sqlx::Error::Decode(
                    "a stored key without its outcome".into(),
                ))
                .context("purchases::record");
            }
        },
        "stale" => {
            let facts = facts_of!(row);
            let (Some(facts), Some(at), Some(version), Some(digest)) =
                (facts, row.decided_at, row.policy_version, row.policy_digest)
            else {
                return Err(sqlx::Error::Decode("stale facts missing a column".into()))
                    .context("purchases::record");
            };
            Recorded::Stale(
                facts,
                decision(at, version, digest).context("purchases::record")?,
            )
        }
        "missing" => Recorded::Missing,
        other => {
            return Err(sqlx::Error::Decode(
                format!("purchase_record answered {other:?}").into(),
            ))
            .context("purchases::record");
        }
    })
}
