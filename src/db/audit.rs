//! Reading the event log for auditors: filtered listings and exports, and the chains in order.

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream::BoxStream};
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{Context, Result};
use crate::domain::audit::ChainedEvent;

/// A stored event with its place in its chain.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Event id (UUIDv7 encoding `occurred_at`).
    pub id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who acted.
    pub actor: String,
    /// The actor's role (absent for `system`).
    pub actor_role: Option<String>,
    /// The partner the actor acted for.
    pub actor_partner_id: Option<Uuid>,
    /// The request that carried it.
    pub request_id: Option<String>,
    /// The customer concerned.
    pub customer_id: Option<Uuid>,
    /// The partner concerned.
    pub partner_id: Option<Uuid>,
    /// Event type.
    pub event_type: String,
    /// The payload as PostgreSQL prints the stored jsonb: the exact text that was hashed.
    pub payload: String,
    /// The chain the event is on.
    pub chain_id: Uuid,
    /// Its position in the chain.
    pub chain_seq: i64,
    /// The previous event's hash.
    pub prev_hash: Vec<u8>,
    /// This event's hash.
    pub hash: Vec<u8>,
}

/// Which events to read. Every bound is on the id: ids sort like `occurred_at` (the constraint
/// `events_id_encodes_occurred_at`), so a time range and the pagination cursor are one id range,
/// which the `(id)` index, the primary key `(chain_id, id)` (a customer's events are its chain:
/// `events_chain_id_is_its_subject`) and the `(partner_id, id)` and `(event_type, id)` indexes
/// all serve newest first.
#[derive(Debug, Clone)]
pub struct EventFilter {
    /// Only events with an id at or above this one.
    pub ids_from: Uuid,
    /// Only events with an id below this one.
    pub ids_below: Uuid,
    /// Only events about this customer.
    pub customer_id: Option<Uuid>,
    /// Only events about this partner.
    pub partner_id: Option<Uuid>,
    /// Only events by this actor.
    pub actor: Option<String>,
    /// Only events of this type.
    pub event_type: Option<&'static str>,
    /// Only events naming this policy version (decisions made under it, its publication).
    pub policy_version: Option<i32>,
}

/// Begins the read-only transaction that [`events`] runs in.
///
/// It plans every statement for its actual parameters (`plan_cache_mode`): the filters that are
/// absent then fold away and the planner picks the index of the one given. A cached generic plan
/// would have to serve every combination of filters and could settle on walking the whole primary
/// key for one customer's page.
pub async fn begin_search(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool
        .begin_with("begin read only")
        .await
        .context("audit::begin_search")?;
    sqlx::query!("set local plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await
        .context("audit::begin_search")?;
    // An export streams for as long as the client reads; the per-statement limit is for requests.
    sqlx::query!("set local statement_timeout = 0")
        .execute(&mut *tx)
        .await
        .context("audit::begin_search")?;
    Ok(tx)
}

/// The matching events, newest first; at most `limit` of them, or all when `limit` is `None`.
/// Rows stream from the server as they are read, so an export never holds more than a few.
pub fn events<'e>(
    db: &'e mut PgConnection,
    filter: &'e EventFilter,
    limit: Option<i64>,
) -> BoxStream<'e, Result<EventRow>> {
    sqlx::query_as!(
        EventRow,
        r#"select id, occurred_at, actor, actor_role, actor_partner_id, request_id, customer_id, partner_id, event_type,
                  payload::text as "payload!", chain_id, chain_seq, prev_hash, hash
           from events -- fan-out: audit search
           where id >= $1 and id < $2
             -- The chain, which a customer's events are on, makes it the primary key's range:
             -- no index has the customer alone.
             and ($3::uuid is null or (chain_id = $3 and customer_id = $3))
             and ($4::uuid is null or partner_id = $4)
             and ($5::text is null or actor = $5)
             and ($6::text is null or event_type = $6)
             and ($8::integer is null
                  or (payload ? 'policy_version' and (payload ->> 'policy_version')::integer = $8))
           order by id desc
           limit $7"#,
        filter.ids_from,
        filter.ids_below,
        filter.customer_id,
        filter.partner_id,
        filter.actor.as_deref(),
        filter.event_type,
        limit,
        filter.policy_version
    )
    .fetch(db)
    .map(|row| row.context("audit::events"))
    .boxed()
}

/// An event as read for verification, with the head recorded for its chain.
#[derive(Debug)]
pub struct ChainRow {
    /// Event id.
    pub id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who acted.
    pub actor: String,
    /// The actor's role (absent for `system`).
    pub actor_role: Option<String>,
    /// The partner the actor acted for.
    pub actor_partner_id: Option<Uuid>,
    /// The request that carried it.
    pub request_id: Option<String>,
    /// The customer concerned.
    pub customer_id: Option<Uuid>,
    /// The partner concerned.
    pub partner_id: Option<Uuid>,
    /// Event type.
    pub event_type: String,
    /// `payload::text`.
    pub payload: String,
    /// The chain.
    pub chain_id: Uuid,
    /// Position in the chain.
    pub chain_seq: i64,
    /// Stored previous hash.
    pub prev_hash: Vec<u8>,
    /// Stored hash.
    pub hash: Vec<u8>,
    /// The head's sequence number, if the chain has a head.
    pub head_seq: Option<i64>,
    /// The head's hash, if the chain has a head.
    pub head_hash: Option<Vec<u8>>,
}

impl ChainRow {
    /// The fields the hash covers, and the stored hash.
    pub fn chained(&self) -> ChainedEvent<'_> {
        ChainedEvent {
            id: self.id,
            chain_id: self.chain_id,
            chain_seq: self.chain_seq,
            prev_hash: &self.prev_hash,
            stored_hash: &self.hash,
            occurred_at: self.occurred_at,
            event_type: &self.event_type,
            customer_id: self.customer_id,
            partner_id: self.partner_id,
            actor: &self.actor,
            actor_role: self.actor_role.as_deref(),
            actor_partner_id: self.actor_partner_id,
            request_id: self.request_id.as_deref(),
            payload: &self.payload,
        }
    }

    /// The chain's recorded head.
    pub fn head(&self) -> Option<(i64, &[u8])> {
        self.head_seq.zip(self.head_hash.as_deref())
    }
}

/// The events of one chain (or of every chain, one after the other), in chain order.
pub fn chain_events(db: &mut PgConnection, chain: Option<Uuid>) -> BoxStream<'_, Result<ChainRow>> {
    let rows = match chain {
        Some(chain) => sqlx::query_as!(
            ChainRow,
            r#"select e.id, e.occurred_at, e.actor, e.actor_role, e.actor_partner_id, e.request_id, e.customer_id, e.partner_id,
                      e.event_type, e.payload::text as "payload!", e.chain_id, e.chain_seq,
                      e.prev_hash, e.hash, h.seq as "head_seq?", h.hash as "head_hash?"
               from events e left join event_chain_heads h on h.chain_id = $1
               where e.chain_id = $1
               order by e.chain_seq"#,
            chain
        )
        .fetch(db),
        None => sqlx::query_as!(
            ChainRow,
            r#"select e.id, e.occurred_at, e.actor, e.actor_role, e.actor_partner_id, e.request_id, e.customer_id, e.partner_id,
                      e.event_type, e.payload::text as "payload!", e.chain_id, e.chain_seq,
                      e.prev_hash, e.hash, h.seq as "head_seq?", h.hash as "head_hash?"
               from events e left join event_chain_heads h on h.chain_id = e.chain_id -- fan-out: full verify
               order by e.chain_id, e.chain_seq"#
        )
        .fetch(db),
    };
    rows.map(|row| row.context("audit::chain_events")).boxed()
}

/// A chain head as recorded.
#[derive(Debug)]
pub struct HeadRow {
    /// The chain.
    pub chain_id: Uuid,
    /// Position of its last event.
    pub seq: i64,
    /// Hash of its last event.
    pub hash: Vec<u8>,
}

/// Heads (of `chain`, or of all chains) whose chain has no event left.
pub async fn heads_without_events(
    db: impl PgExecutor<'_>,
    chain: Option<Uuid>,
) -> Result<Vec<HeadRow>> {
    // Two statements, so that one chain's check stays on that chain's shard.
    match chain {
        Some(chain) => {
            sqlx::query_as!(
                HeadRow,
                "select h.chain_id, h.seq, h.hash from event_chain_heads h
             where h.chain_id = $1 and not exists (select 1 from events e where e.chain_id = $1)",
                chain
            )
            .fetch_all(db)
            .await
        }
        None => {
            sqlx::query_as!(
                HeadRow,
                "select h.chain_id, h.seq, h.hash from event_chain_heads h -- fan-out: full verify
             where not exists (select 1 from events e where e.chain_id = h.chain_id)"
            )
            .fetch_all(db)
            .await
        }
    }
    .context("audit::heads_without_events")
}
