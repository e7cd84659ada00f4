//! The append-only event log.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

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
pub async fn append(
    db: impl PgExecutor<'_>,
    ctx: &RequestContext,
    event: NewEvent,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into events (id, actor, actor_role, actor_partner_id, request_id, customer_id, partner_id, event_type, payload)
         values ($1, $2, $8, $9, $3, $4, $5, $6, $7)",
        Uuid::now_v7(),
        ctx.actor(),
        ctx.request_id.as_deref(),
        event.customer_id.map(|c| c.0),
        event.partner_id.map(|p| p.0),
        event.event_type.as_str(),
        event.payload,
        ctx.principal.as_ref().map(|p| p.role.as_str()),
        ctx.principal.as_ref().and_then(|p| p.partner_id).map(|p| p.0),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Appends many events in one statement, in the caller's transaction.
pub async fn append_many(
    db: impl PgExecutor<'_>,
    ctx: &RequestContext,
    events: &[NewEvent],
) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let customers: Vec<Option<Uuid>> = events.iter().map(|e| e.customer_id.map(|c| c.0)).collect();
    let partners: Vec<Option<Uuid>> = events.iter().map(|e| e.partner_id.map(|p| p.0)).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    sqlx::query!(
        "insert into events (id, actor, actor_role, actor_partner_id, request_id, customer_id, partner_id, event_type, payload)
         select id, $1, $8, $9, $2, c, p, t, pl
         from unnest($3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::jsonb[]) as u(id, c, p, t, pl)",
        ctx.actor(),
        ctx.request_id.as_deref(),
        &ids,
        &customers as &[Option<Uuid>],
        &partners as &[Option<Uuid>],
        &types as &[&str],
        &payloads as _,
        ctx.principal.as_ref().map(|p| p.role.as_str()),
        ctx.principal.as_ref().and_then(|p| p.partner_id).map(|p| p.0),
    )
    .execute(db)
    .await?;
    Ok(())
}
