//! The append-only event log.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Context, Result};
use crate::domain::{Actor, CustomerId, EventType, PartnerId, audit::POLICY_CHAIN};

/// One event to append.
#[derive(Debug)]
pub struct NewEvent {
    /// What happened.
    pub event_type: EventType,
    /// The customer concerned, if any.
    pub customer_id: Option<CustomerId>,
    /// The partner concerned, if any.
    pub partner_id: Option<PartnerId>,
    /// Details: before/after, reason, rule codes.
    pub payload: Value,
}

impl NewEvent {
    /// The chain the event goes on: the customer's, else the partner's, else the policy chain for
    /// a published policy and the catalog's (the nil id) for the rest. Writers name it because it
    /// is the table's shard column on Citus; the `events_chain_id_is_its_subject` constraint holds
    /// it to this rule.
    pub fn chain_id(&self) -> Uuid {
        if self.event_type == EventType::PolicyPublished {
            return POLICY_CHAIN;
        }
        chain_of(self.customer_id, self.partner_id)
    }
}

/// The chain of an event about `customer` and `partner`.
pub fn chain_of(customer: Option<CustomerId>, partner: Option<PartnerId>) -> Uuid {
    customer
        .map(|c| c.0)
        .or(partner.map(|p| p.0))
        .unwrap_or(Uuid::nil())
}

/// Appends an event, in the caller's transaction.
///
/// The database's `events_chain` trigger does the rest: it locks the head of the event's chain
/// (the customer's, else the partner's, else the catalog's), then stamps `occurred_at` and derives
/// the time-ordered id from it, and links the event into the chain with its hash. Taking the time
/// after that lock keeps each chain in time order, and the id and `occurred_at` agree exactly, so
/// time ranges can be searched as id ranges.
pub async fn append(db: impl PgExecutor<'_>, actor: &Actor, event: NewEvent) -> Result<()> {
    sqlx::query!(
        "insert into events (chain_id, actor, actor_role, actor_partner_id, request_id, customer_id, partner_id, event_type, payload)
         values ($9, $1, $7, $8, $2, $3, $4, $5, $6)",
        actor.id(),
        actor.request_id(),
        event.customer_id.map(|c| c.0),
        event.partner_id.map(|p| p.0),
        event.event_type.as_str(),
        event.payload,
        actor.role(),
        actor.partner_id(),
        event.chain_id(),
    )
    .execute(db)
    .await.context("events::append")?;
    Ok(())
}

/// Appends many events in one statement, in the caller's transaction; each is stamped and
/// chained by the trigger as in [`append`].
pub async fn append_many(
    db: impl PgExecutor<'_>,
    actor: &Actor,
    events: &[NewEvent],
) -> Result<()> {
    let customers: Vec<Option<Uuid>> = events.iter().map(|e| e.customer_id.map(|c| c.0)).collect();
    let partners: Vec<Option<Uuid>> = events.iter().map(|e| e.partner_id.map(|p| p.0)).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    let chains: Vec<Uuid> = events.iter().map(NewEvent::chain_id).collect();
    sqlx::query!(
        "insert into events (chain_id, actor, actor_role, actor_partner_id, request_id, customer_id, partner_id, event_type, payload)
         select ch, $1, $7, $8, $2, c, p, t, pl
         from unnest($3::uuid[], $4::uuid[], $5::text[], $6::jsonb[], $9::uuid[]) as u(c, p, t, pl, ch)",
        actor.id(),
        actor.request_id(),
        &customers as &[Option<Uuid>],
        &partners as &[Option<Uuid>],
        &types as &[&str],
        &payloads as _,
        actor.role(),
        actor.partner_id(),
        &chains,
    )
    .execute(db)
    .await.context("events::append_many")?;
    Ok(())
}
