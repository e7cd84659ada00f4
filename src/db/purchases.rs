//! The reads a purchase decision is made from, and the purchase's merged statements.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

use super::{
    Context, Result,
    events::NewEvent,
    idempotency::KeyRecord,
    offers::Offer,
    policies::{Decision, VersionInForce},
};
use crate::domain::{
    Actor, CustomerId, CustomerQualification, OfferId, PartnerId, PartnerKind, PartnerProfile,
    ProductKind, ResellerQualification, Segment, SubscriptionId,
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

/// Whether loading the facts takes the locks that a purchase needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// Lock the customer (the lock every writer of its purchases and qualifications takes) and
    /// share-lock the partner (against a concurrent profile change), for a purchase.
    ForPurchase,
    /// Plain reads, for decisions that write nothing.
    None,
}

struct Parties {
    customer: CustomerQualification,
    kind: PartnerKind,
    reseller_qualifications: Vec<ResellerQualification>,
}

/// Reads the facts of a purchase by `partner` for `customer`, with the instant of the decision
/// and the version in force then, or says which party is missing. A purchase holds POLICY_LOCK
/// shared by now (`super::idempotency::lock`).
pub async fn load(
    db: &mut PgConnection,
    customer: CustomerId,
    partner: PartnerId,
    locking: Locking,
) -> Result<Result<(PurchaseFacts, Decision), Missing>> {
    let parties = match locking {
        Locking::ForPurchase => sqlx::query_as!(
            Parties,
            r#"select c.special_qualifications as "customer: CustomerQualification",
                      p.kind as "kind: PartnerKind",
                      p.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>"
               from customers c, partners p where c.id = $1 and p.id = $2
               for no key update of c for share of p"#,
            customer.0,
            partner.0
        )
        .fetch_optional(&mut *db)
        .await.context("purchases::load")?,
        Locking::None => sqlx::query_as!(
            Parties,
            r#"select c.special_qualifications as "customer: CustomerQualification",
                      p.kind as "kind: PartnerKind",
                      p.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>"
               from customers c, partners p where c.id = $1 and p.id = $2"#,
            customer.0,
            partner.0
        )
        .fetch_optional(&mut *db)
        .await.context("purchases::load")?,
    };
    let Some(parties) = parties else {
        return Ok(Err(missing(db, customer)
            .await
            .context("purchases::load")?));
    };
    // A separate statement on purpose: under READ COMMITTED each statement takes a fresh snapshot,
    // so this one sees every subscription committed by the writers we waited for above. Reading the
    // history in the locking statement would use a snapshot from before the wait. The same
    // holds for the policy version, read after POLICY_LOCK.
    let related = related_history(db, customer, partner)
        .await
        .context("purchases::load")?;
    let decision = Decision {
        at: related.decided_at,
        policy: VersionInForce {
            version: related.policy_version,
            digest: related
                .policy_digest
                .try_into()
                .map_err(|_| sqlx::Error::Decode("a policy digest is not 32 bytes".into()))
                .context("purchases::load")?,
        },
    };
    Ok(Ok((
        PurchaseFacts {
            customer: parties.customer,
            partner: PartnerProfile {
                kind: parties.kind,
                reseller_qualifications: parties.reseller_qualifications.into_iter().collect(),
                has_indirect_provider: related.has_provider,
            },
            related: related.related,
            gcc_history: related.gcc_history,
        },
        decision,
    )))
}

struct Related {
    related: bool,
    has_provider: bool,
    gcc_history: bool,
    decided_at: DateTime<Utc>,
    policy_version: i32,
    policy_digest: Vec<u8>,
}

async fn related_history(
    db: &mut PgConnection,
    customer: CustomerId,
    partner: PartnerId,
) -> sqlx::Result<Related> {
    sqlx::query_as!(
        Related,
        r#"select
             exists(select 1 from customer_partners where customer_id = $1 and partner_id = $2) as "related!",
             exists(select 1 from indirect_reseller_providers where reseller_id = $2) as "has_provider!",
             exists(select 1 from subscriptions where customer_id = $1 and segment = 'gcc') as "gcc_history!",
             t.at as "decided_at!", p.version as policy_version, p.digest as policy_digest
           from (select clock_timestamp() as at) t
           -- policy_version_at(t.at), inlined: one index probe instead of a function call
           cross join lateral (select version, digest from policy_versions
                               where effective_from <= t.at
                               order by effective_from desc limit 1) p"#,
        customer.0,
        partner.0
    )
    .fetch_one(db)
    .await
}

async fn missing(db: &mut PgConnection, customer: CustomerId) -> sqlx::Result<Missing> {
    let customer_exists = sqlx::query_scalar!(
        r#"select exists(select 1 from customers where id = $1) as "e!""#,
        customer.0
    )
    .fetch_one(db)
    .await?;
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

/// The outcome stored for `owner`'s `key` for `customer` (if any) and the offer (if it exists), in one statement:
/// one round trip fewer on every purchase. Offers never change, so reading one here, before the
/// customer lock, is as good as reading it later; the key must be read after
/// [`super::idempotency::lock`], in a later statement, as it is here.
pub async fn stored_outcome_and_offer(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    owner: &str,
    key: &str,
    offer: OfferId,
) -> Result<(Option<KeyRecord>, Option<Offer>)> {
    let row = sqlx::query!(
        r#"select k.request as "request?", k.outcome as "outcome?",
                  o.id as "offer_id?: OfferId", o.name as "name?", o.segment as "segment?: Segment",
                  o.product_kind as "product_kind?: ProductKind", o.created_at as "created_at?"
           from (select) as one
           left join idempotency_keys k on k.customer_id = $4 and k.owner = $1 and k.key = $2
           left join offers o on o.id = $3"#,
        owner,
        key,
        offer.0,
        customer.0
    )
    .fetch_one(db)
    .await
    .context("purchases::stored_outcome_and_offer")?;
    let stored = match (row.request, row.outcome) {
        (Some(request), Some(outcome)) => Some(KeyRecord { request, outcome }),
        _ => None,
    };
    let offer = match (
        row.offer_id,
        row.name,
        row.segment,
        row.product_kind,
        row.created_at,
    ) {
        (Some(id), Some(name), Some(segment), Some(product_kind), Some(created_at)) => {
            Some(Offer {
                id,
                name,
                segment,
                product_kind,
                created_at,
            })
        }
        _ => None,
    };
    Ok((stored, offer))
}

/// What a decided purchase leaves behind, apart from the subscription.
#[derive(Debug)]
pub struct Record<'a> {
    /// The event (`subscription_created` or `purchase_denied`).
    pub event: NewEvent,
    /// The idempotency key's owner.
    pub owner: &'a str,
    /// The idempotency key.
    pub key: &'a str,
    /// The request, as stored with the key.
    pub request: &'a Value,
    /// The outcome, as stored with the key.
    pub outcome: &'a Value,
    /// The subscription created, if any.
    pub subscription: Option<SubscriptionId>,
}

/// Appends the purchase's event and stores its idempotency key in one statement (one round trip,
/// and one fewer while the customer lock is held). The event is on the customer's chain, whose id
/// is the customer's, so on Citus both rows land on the customer's shard. The `events_chain` trigger chains the event as
/// in [`super::events::append`].
pub async fn record(
    db: impl PgExecutor<'_>,
    actor: &Actor,
    customer: CustomerId,
    record: Record<'_>,
) -> Result<()> {
    sqlx::query!(
        "with event as (
             insert into events (chain_id, actor, actor_role, actor_partner_id, request_id, customer_id, partner_id, event_type, payload)
             values ($5, $1, $2, $3, $4, $5, $6, $7, $8)
         )
         insert into idempotency_keys (owner, key, customer_id, request, outcome, subscription_id)
         values ($9, $10, $5, $11, $12, $13)",
        actor.id(),
        actor.role(),
        actor.partner_id(),
        actor.request_id(),
        customer.0,
        record.event.partner_id.map(|p| p.0),
        record.event.event_type.as_str(),
        record.event.payload,
        record.owner,
        record.key,
        record.request,
        record.outcome,
        record.subscription.map(|s| s.0),
    )
    .execute(db)
    .await.context("purchases::record")?;
    Ok(())
}
