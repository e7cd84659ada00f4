//! Webhook endpoints, their deliveries and attempts, the dispatcher's per-chain marks and the
//! partner feed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Context, Keyset, Result};
use crate::domain::PartnerId;

/// A registered endpoint, as its owner sees it (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    /// Its id.
    pub id: Uuid,
    /// The partner it belongs to; absent for platform-wide endpoints.
    pub partner_id: Option<PartnerId>,
    /// Where notices are sent.
    pub url: String,
    /// The notice types wanted; empty means all.
    pub event_types: Vec<String>,
    /// What it is for.
    pub description: String,
    /// Who registered it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Until when the previous secret still signs, after a rotation.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// When it was disabled (no more deliveries).
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why: by its owner, `410 Gone`, or failing for too long.
    pub disabled_reason: Option<String>,
}

/// An endpoint to register.
#[derive(Debug)]
pub struct NewEndpoint<'a> {
    /// Its id.
    pub id: Uuid,
    /// Its partner, or none for the platform.
    pub partner_id: Option<PartnerId>,
    /// Its URL, checked.
    pub url: &'a str,
    /// Notice types wanted.
    pub event_types: &'a [String],
    /// What it is for.
    pub description: &'a str,
    /// Its signing key, base64.
    pub secret: &'a str,
    /// The actor.
    pub created_by: &'a str,
}

/// Registers an endpoint.
pub async fn insert_endpoint(db: impl PgExecutor<'_>, new: &NewEndpoint<'_>) -> Result<Endpoint> {
    sqlx::query_as!(
        Endpoint,
        r#"insert into webhook_endpoints (id, partner_id, url, event_types, description, secret, created_by)
           values ($1, $2, $3, $4, $5, $6, $7)
           returning id, partner_id as "partner_id: PartnerId", url, event_types, description, created_by,
                     created_at, previous_secret_until, disabled_at, disabled_reason"#,
        new.id,
        new.partner_id.map(|p| p.0),
        new.url,
        new.event_types,
        new.description,
        new.secret,
        new.created_by,
    )
    .fetch_one(db)
    .await
    .context("webhooks::insert_endpoint")
}

/// One endpoint.
pub async fn get_endpoint(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Endpoint>> {
    sqlx::query_as!(
        Endpoint,
        r#"select id, partner_id as "partner_id: PartnerId", url, event_types, description, created_by,
                  created_at, previous_secret_until, disabled_at, disabled_reason
           from webhook_endpoints where id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
    .context("webhooks::get_endpoint")
}

/// Endpoints of one partner (`Some`), or of the platform (`None`), by id.
pub async fn list_endpoints(
    db: impl PgExecutor<'_>,
    partner: Option<PartnerId>,
    page: Keyset,
) -> Result<Vec<Endpoint>> {
    sqlx::query_as!(
        Endpoint,
        r#"select id, partner_id as "partner_id: PartnerId", url, event_types, description, created_by,
                  created_at, previous_secret_until, disabled_at, disabled_reason
           from webhook_endpoints
           where partner_id is not distinct from $1 and id > $2
           order by id limit $3"#,
        partner.map(|p| p.0),
        page.after(),
        page.limit
    )
    .fetch_all(db)
    .await
    .context("webhooks::list_endpoints")
}

/// Disables an endpoint with `reason`, unless it is disabled already; whether it was enabled.
pub async fn disable_endpoint(db: impl PgExecutor<'_>, id: Uuid, reason: &str) -> Result<bool> {
    let done = sqlx::query!(
        "update webhook_endpoints set disabled_at = now(), disabled_reason = $2
         where id = $1 and disabled_at is null",
        id,
        reason
    )
    .execute(db)
    .await
    .context("webhooks::disable_endpoint")?;
    Ok(done.rows_affected() == 1)
}

/// Enables a disabled endpoint; whether it was disabled. Its pending deliveries are sent again;
/// what happened while it was disabled was not queued for it (see [`notices_to_redeliver`]).
pub async fn enable_endpoint(db: &mut sqlx::PgConnection, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "update webhook_endpoints set disabled_at = null, disabled_reason = null
         where id = $1 and disabled_at is not null",
        id
    )
    .execute(&mut *db)
    .await
    .context("webhooks::enable_endpoint")?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // Its pending deliveries start their schedules over: after a long outage, one near the end of
    // its schedule would otherwise disable the endpoint again at its first failure.
    sqlx::query!(
        "update webhook_deliveries set retry_base = attempts -- fan-out: webhook dispatch
         where endpoint_id = $1 and state = 'pending'",
        id
    )
    .execute(&mut *db)
    .await
    .context("webhooks::enable_endpoint")?;
    Ok(true)
}

/// Replaces the signing key; the old one keeps signing until `overlap_until`.
pub async fn rotate_secret(
    db: impl PgExecutor<'_>,
    id: Uuid,
    secret: &str,
    overlap_until: DateTime<Utc>,
) -> Result<()> {
    sqlx::query!(
        "update webhook_endpoints
         set previous_secret = secret, previous_secret_until = $3, secret = $2
         where id = $1",
        id,
        secret,
        overlap_until
    )
    .execute(db)
    .await
    .context("webhooks::rotate_secret")?;
    Ok(())
}

/// An endpoint's URL and its signing keys (the previous one only while it still signs).
pub async fn signing(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<(String, String, Option<String>)>> {
    let row = sqlx::query!(
        r#"select url, secret,
                  case when previous_secret_until > now() then previous_secret end as previous_secret
           from webhook_endpoints where id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
    .context("webhooks::signing")?;
    Ok(row.map(|r| (r.url, r.secret, r.previous_secret)))
}

/// What the dispatcher needs of an enabled endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its id.
    pub id: Uuid,
    /// Its partner; none for the platform.
    pub partner_id: Option<Uuid>,
    /// Notice types wanted; empty means all.
    pub event_types: Vec<String>,
}

/// Every enabled endpoint.
pub async fn enabled_targets(db: impl PgExecutor<'_>) -> Result<Vec<Target>> {
    sqlx::query_as!(
        Target,
        "select id, partner_id, event_types from webhook_endpoints where disabled_at is null"
    )
    .fetch_all(db)
    .await
    .context("webhooks::enabled_targets")
}

/// Chains with events past their mark (or never marked), at most `limit`.
pub async fn chains_behind(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"select h.chain_id as "chain_id!" -- fan-out: webhook dispatch
         from event_chain_heads h left join webhook_chain_marks m on m.chain_id = h.chain_id
         where h.seq > coalesce(m.seq, 0)
         limit $1"#,
        limit
    )
    .fetch_all(db)
    .await
    .context("webhooks::chains_behind")
}

/// Chains behind their mark among those with an event whose id is above `since` (a recent
/// instant, as a UUIDv7 bound), at most `limit`: the cheap look between full sweeps.
pub async fn recent_chains_behind(
    db: impl PgExecutor<'_>,
    since: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"select h.chain_id as "chain_id!" -- fan-out: webhook dispatch
           from (select distinct e.chain_id from events e where e.id > $1) r
           join event_chain_heads h on h.chain_id = r.chain_id
           left join webhook_chain_marks m on m.chain_id = h.chain_id
           where h.seq > coalesce(m.seq, 0)
           limit $2"#,
        since,
        limit
    )
    .fetch_all(db)
    .await
    .context("webhooks::recent_chains_behind")
}

/// The advisory lock (class, key) between dispatching and endpoints becoming enabled: dispatching a
/// chain holds it shared, registering or enabling an endpoint holds it exclusively. So a chain
/// dispatched while an endpoint becomes enabled either reads it enabled (a later statement than
/// the lock, so a later snapshot) or commits its feed entries before the endpoint is enabled, where
/// a redelivery of the range finds them: no notice falls between.
const ENDPOINTS_LOCK: (i32, i32) = (1346589249, 2);

/// Holds [`ENDPOINTS_LOCK`] exclusively until the transaction ends.
pub async fn lock_endpoints(db: impl PgExecutor<'_>) -> Result<()> {
    sqlx::query!(
        "select pg_advisory_xact_lock($1, $2)",
        ENDPOINTS_LOCK.0,
        ENDPOINTS_LOCK.1
    )
    .fetch_one(db)
    .await
    .context("webhooks::lock_endpoints")?;
    Ok(())
}

/// Locks a chain's mark for dispatching, creating it at 0 for a new chain, and holds
/// [`ENDPOINTS_LOCK`] shared; `None` if another instance holds the mark.
pub async fn lock_mark(db: &mut sqlx::PgConnection, chain: Uuid) -> Result<Option<i64>> {
    sqlx::query!(
        "with endpoints as (select pg_advisory_xact_lock_shared($2, $3))
         insert into webhook_chain_marks (chain_id, seq) select $1, 0 from endpoints
         on conflict do nothing",
        chain,
        ENDPOINTS_LOCK.0,
        ENDPOINTS_LOCK.1
    )
    .execute(&mut *db)
    .await
    .context("webhooks::lock_mark")?;
    sqlx::query_scalar!(
        "select seq from webhook_chain_marks where chain_id = $1 for update skip locked",
        chain
    )
    .fetch_optional(&mut *db)
    .await
    .context("webhooks::lock_mark")
}

/// Moves a chain's mark.
pub async fn set_mark(db: impl PgExecutor<'_>, chain: Uuid, seq: i64) -> Result<()> {
    sqlx::query!(
        "update webhook_chain_marks set seq = $2 where chain_id = $1",
        chain,
        seq
    )
    .execute(db)
    .await
    .context("webhooks::set_mark")?;
    Ok(())
}

/// A committed event past a chain's mark.
#[derive(Debug)]
pub struct PendingEvent {
    /// Its id.
    pub id: Uuid,
    /// Its place in the chain.
    pub chain_seq: i64,
    /// Its audit type.
    pub event_type: String,
    /// The customer concerned.
    pub customer_id: Option<Uuid>,
    /// The partner concerned.
    pub partner_id: Option<Uuid>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Its payload.
    pub payload: Value,
    /// Partners linked to its customer when it happened.
    pub linked: Vec<Uuid>,
}

/// The chain's committed events after `seq`, in order. A snapshot sees a gapless prefix of each
/// chain (its events commit in `chain_seq` order under the head's lock), so nothing after the
/// last one returned can be older than it.
pub async fn events_after(
    db: impl PgExecutor<'_>,
    chain: Uuid,
    seq: i64,
    limit: i64,
) -> Result<Vec<PendingEvent>> {
    sqlx::query_as!(
        PendingEvent,
        r#"select e.id, e.chain_seq, e.event_type, e.customer_id, e.partner_id, e.occurred_at, e.payload,
                  array(select cp.partner_id from customer_partners cp
                        where cp.customer_id = $1 and e.customer_id = $1
                          and cp.created_at <= e.occurred_at) as "linked!"
           from events e
           where e.chain_id = $1 and e.chain_seq > $2
           order by e.chain_seq limit $3"#,
        chain,
        seq,
        limit
    )
    .fetch_all(db)
    .await
    .context("webhooks::events_after")
}

/// Queues an event for an endpoint (once: the chain position is the key).
#[allow(clippy::too_many_arguments)]
pub async fn queue(
    db: impl PgExecutor<'_>,
    chain: Uuid,
    endpoint: Uuid,
    seq: i64,
    event_id: Uuid,
    event_type: &str,
    body: &str,
) -> Result<()> {
    sqlx::query!(
        "insert into webhook_deliveries (chain_id, endpoint_id, chain_seq, event_id, event_type, body)
         values ($1, $2, $3, $4, $5, $6) on conflict do nothing",
        chain,
        endpoint,
        seq,
        event_id,
        event_type,
        body
    )
    .execute(db)
    .await
    .context("webhooks::queue")?;
    Ok(())
}

/// Appends a notice to an audience's feed (a partner, or the nil id for the platform) under the
/// row lock of its head, so feed numbers commit in order.
#[allow(clippy::too_many_arguments)]
pub async fn feed_append(
    db: &mut sqlx::PgConnection,
    audience: Uuid,
    chain: Uuid,
    chain_seq: i64,
    event_id: Uuid,
    event_type: &str,
    occurred_at: DateTime<Utc>,
    data: &Value,
) -> Result<()> {
    let seq = sqlx::query_scalar!(
        "insert into partner_feed_heads (partner_id, seq) values ($1, 1)
         on conflict (partner_id) do update set seq = partner_feed_heads.seq + 1
         returning seq",
        audience
    )
    .fetch_one(&mut *db)
    .await
    .context("webhooks::feed_append")?;
    sqlx::query!(
        "insert into partner_feed (partner_id, seq, chain_id, chain_seq, event_id, event_type, occurred_at, data)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        audience,
        seq,
        chain,
        chain_seq,
        event_id,
        event_type,
        occurred_at,
        data
    )
    .execute(&mut *db)
    .await
    .context("webhooks::feed_append")?;
    Ok(())
}

/// Which notices of an audience to send an endpoint again.
#[derive(Debug, Clone, Copy)]
pub enum Redelivery {
    /// The notice of one event.
    Event(Uuid),
    /// The notices of events that happened in `[since, until)`, oldest first.
    Range {
        /// From this instant on.
        since: DateTime<Utc>,
        /// Before this instant.
        until: DateTime<Utc>,
    },
}

/// A notice of the feed, with its event's place in the chain.
#[derive(Debug)]
pub struct FeedNotice {
    /// The event's chain.
    pub chain_id: Uuid,
    /// Its place in the chain.
    pub chain_seq: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// The notice type.
    pub event_type: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The notice's `data`.
    pub data: Value,
}

/// Up to `limit` notices of `audience` that `which` selects, of the types wanted (empty: all),
/// oldest first. Two statements, so that each has the plan of its index.
pub async fn notices_to_redeliver(
    db: impl PgExecutor<'_>,
    audience: Uuid,
    event_types: &[String],
    which: Redelivery,
    limit: i64,
) -> Result<Vec<FeedNotice>> {
    match which {
        Redelivery::Event(event) => {
            sqlx::query_as!(
                FeedNotice,
                r#"select chain_id, chain_seq, event_id, event_type, occurred_at, data
               from partner_feed
               where partner_id = $1 and event_id = $2
                 and (cardinality($3::text[]) = 0 or event_type = any($3))
               order by seq limit $4"#,
                audience,
                event,
                event_types,
                limit
            )
            .fetch_all(db)
            .await
        }
        Redelivery::Range { since, until } => {
            sqlx::query_as!(
                FeedNotice,
                r#"select chain_id, chain_seq, event_id, event_type, occurred_at, data
               from partner_feed
               where partner_id = $1 and occurred_at >= $2 and occurred_at < $3
                 and (cardinality($4::text[]) = 0 or event_type = any($4))
               order by occurred_at, seq limit $5"#,
                audience,
                since,
                until,
                event_types,
                limit
            )
            .fetch_all(db)
            .await
        }
    }
    .context("webhooks::notices_to_redeliver")
}

/// Queues notices for an endpoint again, due now, each with a fresh retry schedule: new
/// deliveries for notices never queued for it, and delivered, failed or pending ones made pending
/// again (their attempts stay on record). One in flight loses its owner, so that attempt's outcome
/// settles nothing, but keeps its lease's end: it is sent again once that attempt is over, never
/// beside it (nor is the customer's next notice released meanwhile). `bodies` pairs with
/// `notices`.
pub async fn requeue(
    db: impl PgExecutor<'_>,
    endpoint: Uuid,
    notices: &[FeedNotice],
    bodies: &[String],
) -> Result<u64> {
    let chains: Vec<Uuid> = notices.iter().map(|n| n.chain_id).collect();
    let seqs: Vec<i64> = notices.iter().map(|n| n.chain_seq).collect();
    let ids: Vec<Uuid> = notices.iter().map(|n| n.event_id).collect();
    let types: Vec<String> = notices.iter().map(|n| n.event_type.clone()).collect();
    let done = sqlx::query!(
        "insert into webhook_deliveries (chain_id, endpoint_id, chain_seq, event_id, event_type, body)
         select c, $1, s, i, t, b from unnest($2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::text[]) as n(c, s, i, t, b)
         on conflict (chain_id, endpoint_id, chain_seq) do update
         set state = 'pending', next_attempt_at = now(), retry_base = webhook_deliveries.attempts,
             delivered_at = null, lease_owner = null",
        endpoint,
        &chains,
        &seqs,
        &ids,
        &types,
        bodies,
    )
    .execute(db)
    .await
    .context("webhooks::requeue")?;
    Ok(done.rows_affected())
}

/// The channel on which a dispatch announces, at its commit, the audiences whose feeds grew.
pub const FEED_CHANNEL: &str = "partner_feed";

/// Announces, when the transaction commits, that the feeds of `audiences` grew (PostgreSQL sends
/// a notification only on commit, and each distinct one once).
pub async fn announce_feeds(db: impl PgExecutor<'_>, audiences: &[Uuid]) -> Result<()> {
    sqlx::query!(
        "select pg_notify($1, a::text) from unnest($2::uuid[]) as a",
        FEED_CHANNEL,
        audiences
    )
    .fetch_all(db)
    .await
    .context("webhooks::announce_feeds")?;
    Ok(())
}

/// A connection listening to [`FEED_CHANNEL`]: a connection of its own, to the database of `pool`,
/// not one taken from `pool` (it would be held for good).
pub async fn feed_listener(pool: &sqlx::PgPool) -> Result<sqlx::postgres::PgListener> {
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(pool.connect_options().as_ref().clone());
    let mut listener = sqlx::postgres::PgListener::connect_with(&own)
        .await
        .context("webhooks::feed_listener")?;
    listener
        .listen(FEED_CHANNEL)
        .await
        .context("webhooks::feed_listener")?;
    Ok(listener)
}

/// One entry of the pull feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedEntry {
    /// Its place in the feed: pass the last one seen as `after`.
    pub seq: i64,
    /// The audit event's id (the webhook's `webhook-id`).
    pub id: Uuid,
    /// The notice type, as in webhooks.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The same `data` as the webhook.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The feed of `audience` after `after`, oldest first.
pub async fn feed_page(
    db: impl PgExecutor<'_>,
    audience: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<FeedEntry>> {
    sqlx::query_as!(
        FeedEntry,
        r#"select seq, event_id as id, event_type, occurred_at as timestamp, data
           from partner_feed where partner_id = $1 and seq > $2 order by seq limit $3"#,
        audience,
        after,
        limit
    )
    .fetch_all(db)
    .await
    .context("webhooks::feed_page")
}

/// A delivery leased to this instance for sending.
#[derive(Debug, Clone)]
pub struct Leased {
    /// Its chain.
    pub chain_id: Uuid,
    /// Its endpoint.
    pub endpoint_id: Uuid,
    /// Its place in the chain.
    pub chain_seq: i64,
    /// The event's id: `webhook-id`.
    pub event_id: Uuid,
    /// The body to send.
    pub body: String,
    /// This attempt's number, from 1.
    pub attempts: i32,
    /// Attempts before the last redelivery: the retry schedule counts those after it.
    pub retry_base: i32,
    /// The endpoint's URL.
    pub url: String,
    /// Its keys: the current, and the previous during an overlap.
    pub secret: String,
    /// The previous key while it still signs.
    pub previous_secret: Option<String>,
}

/// Leases up to `limit` due deliveries to `owner` for `lease_secs`: pending, due, not leased (or
/// the lease expired, e.g. its instance crashed), to an enabled endpoint, and with no earlier
/// pending delivery of the same chain to the same endpoint (per customer in order). Rows another
/// instance is leasing right now are skipped, never waited for.
pub async fn lease(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    lease_secs: f64,
    limit: i64,
) -> Result<Vec<Leased>> {
    sqlx::query_as!(
        Leased,
        r#"with due as (
               select d.chain_id, d.endpoint_id, d.chain_seq -- fan-out: webhook dispatch
               from webhook_deliveries d
               join webhook_endpoints ep on ep.id = d.endpoint_id and ep.disabled_at is null
               where d.state = 'pending' and d.next_attempt_at <= now()
                 and (d.lease_until is null or d.lease_until < now())
                 and not exists (
                     select 1 from webhook_deliveries p
                     where p.chain_id = d.chain_id and p.endpoint_id = d.endpoint_id
                       and p.chain_seq < d.chain_seq and p.state = 'pending')
               order by d.next_attempt_at
               limit $3
               for update of d skip locked
           )
           update webhook_deliveries d
           set lease_owner = $1, lease_until = now() + make_interval(secs => $2), attempts = d.attempts + 1
           from due, webhook_endpoints ep
           where d.chain_id = due.chain_id and d.endpoint_id = due.endpoint_id
             and d.chain_seq = due.chain_seq and ep.id = d.endpoint_id
           returning d.chain_id, d.endpoint_id, d.chain_seq, d.event_id, d.body, d.attempts, d.retry_base, ep.url,
                     ep.secret,
                     case when ep.previous_secret_until > now() then ep.previous_secret end as previous_secret"#,
        owner,
        lease_secs,
        limit
    )
    .fetch_all(db)
    .await
    .context("webhooks::lease")
}

/// One attempt's outcome.
#[derive(Debug)]
pub struct Attempt<'a> {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub latency_ms: i32,
    /// The response status, if one came.
    pub status: Option<i32>,
    /// What went wrong, if anything.
    pub error: Option<&'a str>,
    /// The first bytes of the response body.
    pub body_prefix: Option<&'a str>,
}

/// Records an attempt.
pub async fn record_attempt(
    db: impl PgExecutor<'_>,
    delivery: &Leased,
    attempt: &Attempt<'_>,
) -> Result<()> {
    sqlx::query!(
        "insert into webhook_attempts (chain_id, endpoint_id, chain_seq, attempt, started_at, latency_ms, status, error, body_prefix)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict do nothing",
        delivery.chain_id,
        delivery.endpoint_id,
        delivery.chain_seq,
        delivery.attempts,
        attempt.started_at,
        attempt.latency_ms,
        attempt.status,
        attempt.error,
        attempt.body_prefix,
    )
    .execute(db)
    .await
    .context("webhooks::record_attempt")?;
    Ok(())
}

/// Settles a delivery leased to `owner`: `delivered`, `failed`, or `pending` again at
/// `next_attempt_at`; whether it still held the lease. If the lease ran out and another instance
/// took the delivery over, or a redelivery took it back, this outcome settles nothing.
pub async fn settle(
    db: impl PgExecutor<'_>,
    delivery: &Leased,
    owner: Uuid,
    state: &str,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Result<bool> {
    let done = sqlx::query!(
        "update webhook_deliveries
         set state = $4, lease_owner = null, lease_until = null,
             next_attempt_at = coalesce($5, next_attempt_at),
             delivered_at = case when $4 = 'delivered' then now() end
         where chain_id = $1 and endpoint_id = $2 and chain_seq = $3 and lease_owner = $6",
        delivery.chain_id,
        delivery.endpoint_id,
        delivery.chain_seq,
        state,
        next_attempt_at,
        owner,
    )
    .execute(db)
    .await
    .context("webhooks::settle")?;
    Ok(done.rows_affected() == 1)
}

/// A recent delivery of an endpoint, with its attempts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The event's id (`webhook-id`).
    pub event_id: Uuid,
    /// The notice type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i32,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first: `{attempt, started_at, latency_ms, status, error, body_prefix}`.
    #[schema(value_type = Vec<Object>)]
    pub attempt_log: Value,
}

/// The endpoint's deliveries, newest first.
pub async fn recent_deliveries(
    db: impl PgExecutor<'_>,
    endpoint: Uuid,
    limit: i64,
) -> Result<Vec<Delivery>> {
    sqlx::query_as!(
        Delivery,
        r#"select d.event_id, d.event_type, d.state, d.attempts, d.created_at, d.next_attempt_at, -- fan-out: webhook dispatch
                  d.delivered_at,
                  coalesce((select jsonb_agg(jsonb_build_object('attempt', a.attempt, 'started_at', a.started_at,
                                'latency_ms', a.latency_ms, 'status', a.status, 'error', a.error,
                                'body_prefix', a.body_prefix) order by a.attempt)
                            from webhook_attempts a
                            where a.chain_id = d.chain_id and a.endpoint_id = d.endpoint_id
                              and a.chain_seq = d.chain_seq), '[]'::jsonb) as "attempt_log!"
           from webhook_deliveries d
           where d.endpoint_id = $1
           order by d.created_at desc limit $2"#,
        endpoint,
        limit
    )
    .fetch_all(db)
    .await
    .context("webhooks::recent_deliveries")
}
