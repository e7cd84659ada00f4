//! The append-only event log.

use serde_json::Value;
use sqlx::PgExecutor;

use crate::{
    app::{EventType, RequestContext},
    domain::{CustomerId, PartnerId},
};

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

/// Appends an event, in the caller's transaction.
///
/// The database's `events_chain` trigger does the rest: it locks the head of the event's chain
/// (the customer's, else the partner's, else the catalog's), then stamps `occurred_at` and derives
/// the time-ordered id from it, and links the event into the chain with its hash. Taking the time
/// after that lock keeps each chain in time order, and the id and `occurred_at` agree exactly, so
/// time ranges can be searched as id ranges.
pub async fn append(
    db: impl PgExecutor<'_>,
    ctx: &RequestContext,
    event: NewEvent,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into events (actor, request_id, customer_id, partner_id, event_type, payload)
         values ($1, $2, $3, $4, $5, $6)",
        ctx.actor,
        ctx.request_id.as_deref(),
        event.customer_id.map(|c| c.0),
        event.partner_id.map(|p| p.0),
        event.event_type.as_str(),
        event.payload
    )
    .execute(db)
    .await?;
    Ok(())
}
