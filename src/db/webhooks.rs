//! Webhook endpoints, their deliveries and attempts, the dispatcher's per-chain marks and the
//! partner feed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Context, Keyset, Result};
use crate::domain::{PartnerId, audit::event_millisecond};

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

/// Those of `endpoints` that are disabled.
pub async fn disabled_among(db: impl PgExecutor<'_>, endpoints: &[Uuid]) -> Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "select id from webhook_endpoints where id = any($1) and disabled_at is not null",
        endpoints
    )
    .fetch_all(db)
    .await
    .context("webhooks::disabled_among")
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
///
/// Its pending deliveries are locked before the endpoint, in key order: the order of every writer
/// of both (see [`lock_round`]), so that a sender settling one of them and disabling the endpoint
/// cannot deadlock with this.
pub async fn enable_endpoint(db: &mut sqlx::PgConnection, id: Uuid) -> Result<bool> {
    let pending = sqlx::query!(
        "select chain_id, chain_seq from webhook_deliveries -- fan-out: webhook dispatch
         where endpoint_id = $1 and state = 'pending'
         order by chain_id, endpoint_id, chain_seq
         for no key update",
        id
    )
    .fetch_all(&mut *db)
    .await
    .context("webhooks::enable_endpoint")?;
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
    // its schedule would otherwise disable the endpoint again at its first failure. Only the rows
    // locked above: any other is new since, queued with a fresh schedule.
    let (chains, seqs): (Vec<Uuid>, Vec<i64>) = pending
        .into_iter()
        .map(|d| (d.chain_id, d.chain_seq))
        .unzip();
    sqlx::query!(
        "update webhook_deliveries d set retry_base = d.attempts -- fan-out: webhook dispatch
         from unnest($2::uuid[], $3::bigint[]) as n(chain_id, chain_seq)
         where d.chain_id = n.chain_id and d.endpoint_id = $1 and d.chain_seq = n.chain_seq
           and d.state = 'pending'",
        id,
        &chains,
        &seqs
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

/// Chains behind their mark, and the database's clock when the look began.
#[derive(Debug)]
pub struct ChainsBehind {
    /// At most the limit asked for.
    pub chains: Vec<Uuid>,
    /// The look's `statement_timestamp()`: events that commit after its snapshot have ids after
    /// this instant, unless their transaction wrote them earlier.
    pub looked_at: DateTime<Utc>,
}

/// Chains with events past their mark (or never marked), at most `limit`.
pub async fn chains_behind(db: impl PgExecutor<'_>, limit: i64) -> Result<ChainsBehind> {
    sqlx::query_as!(
        ChainsBehind,
        r#"select statement_timestamp() as "looked_at!",
                  array(select h.chain_id -- fan-out: webhook dispatch
                        from event_chain_heads h
                        left join webhook_chain_marks m on m.chain_id = h.chain_id
                        where h.seq > coalesce(m.seq, 0)
                        limit $1) as "chains!""#,
        limit
    )
    .fetch_one(db)
    .await
    .context("webhooks::chains_behind")
}

/// Chains behind their mark among those with an event after `from` and within the last `window`
/// of the database's clock (which stamps event ids), at most `limit`: the cheap look between full
/// sweeps.
pub async fn recent_chains_behind(
    db: impl PgExecutor<'_>,
    from: Option<DateTime<Utc>>,
    window: std::time::Duration,
    limit: i64,
) -> Result<ChainsBehind> {
    // The range is closed by `Uuid::max()` as a parameter, not left open: the generic plan of an
    // open range guesses a third of the table and walked the whole primary key (chain_id, id)
    // instead of the range of `events_id_idx`: 24 ms per poll at 30,000 events, growing with the
    // log (BENCHMARKS.md, "Purchases per second").
    sqlx::query_as!(
        ChainsBehind,
        r#"select statement_timestamp() as "looked_at!",
                  array(select h.chain_id -- fan-out: webhook dispatch
                        from (select distinct e.chain_id from events e
                              where e.id > event_id_floor(greatest(
                                        $1, statement_timestamp() - make_interval(secs => $2)))
                                and e.id <= $3) r
                        join event_chain_heads h on h.chain_id = r.chain_id
                        left join webhook_chain_marks m on m.chain_id = h.chain_id
                        where h.seq > coalesce(m.seq, 0)
                        limit $4) as "chains!""#,
        from,
        window.as_secs_f64(),
        Uuid::max(),
        limit
    )
    .fetch_one(db)
    .await
    .context("webhooks::recent_chains_behind")
}

/// The advisory lock (class, key) between dispatching and endpoints becoming enabled: a dispatch
/// round holds it shared ([`share_endpoints_lock`]), registering or enabling an endpoint holds it exclusively. So a chain
/// dispatched while an endpoint becomes enabled either reads it enabled (a later statement than
/// the lock, so a later snapshot) or commits its feed entries before the endpoint is enabled, where
/// a redelivery of the range finds them: no notice falls between.
const ENDPOINTS_LOCK: (i32, i32) = (1346589249, 2);

/// Holds [`ENDPOINTS_LOCK`] shared until the transaction ends: a dispatch round, before it reads
/// the enabled endpoints (in a later statement, so a later snapshot).
pub async fn share_endpoints_lock(db: impl PgExecutor<'_>) -> Result<()> {
    sqlx::query!(
        "select pg_advisory_xact_lock_shared($1, $2)",
        ENDPOINTS_LOCK.0,
        ENDPOINTS_LOCK.1
    )
    .fetch_one(db)
    .await
    .context("webhooks::share_endpoints_lock")?;
    Ok(())
}

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

/// Creates the marks of chains never dispatched, at 0. Idempotent, and committed on its own
/// (an absent mark means 0 anyway), so that no round's transaction holds a new mark's insert
/// while another instance waits on it.
pub async fn create_marks(db: impl PgExecutor<'_>, chains: &[Uuid]) -> Result<()> {
    sqlx::query!(
        "insert into webhook_chain_marks (chain_id, seq)
         select c, 0 from unnest($1::uuid[]) c order by c on conflict do nothing",
        chains
    )
    .execute(db)
    .await
    .context("webhooks::create_marks")?;
    Ok(())
}

/// Locks the marks of those of `chains` no other instance holds; returns each with its `seq`.
pub async fn lock_marks(db: impl PgExecutor<'_>, chains: &[Uuid]) -> Result<Vec<(Uuid, i64)>> {
    let rows = sqlx::query!(
        "select chain_id, seq from webhook_chain_marks -- fan-out: webhook dispatch
         where chain_id = any($1)
         order by chain_id for update skip locked",
        chains
    )
    .fetch_all(db)
    .await
    .context("webhooks::lock_marks")?;
    Ok(rows.into_iter().map(|r| (r.chain_id, r.seq)).collect())
}

/// Moves the marks of `chains` to `seqs` (pairwise).
pub async fn set_marks(db: impl PgExecutor<'_>, chains: &[Uuid], seqs: &[i64]) -> Result<()> {
    sqlx::query!(
        "update webhook_chain_marks m set seq = n.seq -- fan-out: webhook dispatch
         from unnest($1::uuid[], $2::bigint[]) as n(chain_id, seq)
         where m.chain_id = n.chain_id",
        chains,
        seqs
    )
    .execute(db)
    .await
    .context("webhooks::set_marks")?;
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

/// A committed event past its chain's mark, with its chain.
#[derive(Debug)]
pub struct ChainEvent {
    /// Its chain.
    pub chain_id: Uuid,
    /// The event.
    pub event: PendingEvent,
}

/// The committed events after each chain's mark (`marks`: chain and seq), at most `limit` per
/// chain, by chain and then in chain order. A snapshot sees a gapless prefix of each chain (its
/// events commit in `chain_seq` order under the head's lock), so nothing after the last one
/// returned for a chain can be older than it.
pub async fn events_after_marks(
    db: impl PgExecutor<'_>,
    marks: &[(Uuid, i64)],
    limit: i64,
) -> Result<Vec<ChainEvent>> {
    let chains: Vec<Uuid> = marks.iter().map(|m| m.0).collect();
    let seqs: Vec<i64> = marks.iter().map(|m| m.1).collect();
    let rows = sqlx::query!(
        r#"select m.chain_id as "chain_id!", e.id as "id!", e.chain_seq as "chain_seq!", -- fan-out: webhook dispatch
                  e.event_type as "event_type!", e.customer_id, e.partner_id,
                  e.occurred_at as "occurred_at!", e.payload as "payload!",
                  array(select cp.partner_id from customer_partners cp
                        where cp.customer_id = m.chain_id and e.customer_id = m.chain_id
                          and cp.created_at <= e.occurred_at) as "linked!"
           from unnest($1::uuid[], $2::bigint[]) as m(chain_id, seq)
           cross join lateral (
               select * from events e where e.chain_id = m.chain_id and e.chain_seq > m.seq
               order by e.chain_seq limit $3) e
           order by m.chain_id, e.chain_seq"#,
        &chains,
        &seqs,
        limit
    )
    .fetch_all(db)
    .await
    .context("webhooks::events_after_marks")?;
    Ok(rows
        .into_iter()
        .map(|r| ChainEvent {
            chain_id: r.chain_id,
            event: PendingEvent {
                id: r.id,
                chain_seq: r.chain_seq,
                event_type: r.event_type,
                customer_id: r.customer_id,
                partner_id: r.partner_id,
                occurred_at: r.occurred_at,
                payload: r.payload,
                linked: r.linked,
            },
        })
        .collect())
}

/// Notices of one dispatch round, column by column, in the order they are appended.
#[derive(Debug, Default)]
pub struct Notices {
    /// The audience: a partner, or the nil id for the platform.
    pub audiences: Vec<Uuid>,
    /// The event's chain.
    pub chains: Vec<Uuid>,
    /// Its place in the chain.
    pub chain_seqs: Vec<i64>,
    /// The event.
    pub event_ids: Vec<Uuid>,
    /// The notice type.
    pub event_types: Vec<String>,
    /// When the event happened.
    pub occurred_at: Vec<DateTime<Utc>>,
    /// The notice's `data`.
    pub data: Vec<Value>,
}

/// Appends notices to their audiences' feeds, each audience's in the order given, under the row
/// lock of each audience's head (taken in audience order, so two instances never deadlock on
/// them), so feed numbers commit in order: one statement for the whole round.
pub async fn feed_append_all(db: impl PgExecutor<'_>, n: &Notices) -> Result<()> {
    sqlx::query!(
        "with n as (
             select * from unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[],
                                  $6::timestamptz[], $7::jsonb[]) with ordinality
                 as n(audience, chain_id, chain_seq, event_id, event_type, occurred_at, data, ord)
         ),
         counts as (select audience, count(*) as k from n group by audience),
         heads as (
             insert into partner_feed_heads (partner_id, seq)
             select audience, k from counts order by audience
             on conflict (partner_id) do update set seq = partner_feed_heads.seq + excluded.seq
             returning partner_id, seq
         )
         insert into partner_feed (partner_id, seq, chain_id, chain_seq, event_id, event_type, occurred_at, data)
         select n.audience, h.seq - c.k + row_number() over (partition by n.audience order by n.ord),
                n.chain_id, n.chain_seq, n.event_id, n.event_type, n.occurred_at, n.data
         from n join counts c using (audience) join heads h on h.partner_id = n.audience",
        &n.audiences,
        &n.chains,
        &n.chain_seqs,
        &n.event_ids,
        &n.event_types,
        &n.occurred_at,
        &n.data,
    )
    .execute(db)
    .await
    .context("webhooks::feed_append_all")?;
    Ok(())
}

/// Deliveries of one dispatch round, column by column.
#[derive(Debug, Default)]
pub struct Queue {
    /// The event's chain.
    pub chains: Vec<Uuid>,
    /// The endpoint.
    pub endpoints: Vec<Uuid>,
    /// The event's place in the chain.
    pub chain_seqs: Vec<i64>,
    /// The event.
    pub event_ids: Vec<Uuid>,
    /// The notice type.
    pub event_types: Vec<String>,
    /// The body to send.
    pub bodies: Vec<String>,
}

/// A dispatching instance's lease on the deliveries it queues, so that its own sender posts them
/// at once instead of leasing them back (see [`queue_all`]).
#[derive(Debug, Clone, Copy)]
pub struct Handover {
    /// The instance, as in [`lease`].
    pub owner: Uuid,
    /// How long the lease lasts.
    pub lease_secs: f64,
    /// At most this many are leased.
    pub limit: i64,
}

/// Queues deliveries (each once: the chain position is the key), in one statement, in key order
/// (see [`lock_round`]). With a `handover`, those that [`lease`] would take at once are queued
/// already leased to its owner and returned: the first of the round for each chain and endpoint
/// that has no earlier pending delivery, up to its limit, in key order. Their next attempt is the
/// lease's end (due again only if this one is lost), so the lease's walk of due deliveries does
/// not pass them while they wait to be sent. The others are queued due, for the lease.
///
/// One already there is skipped, neither leased nor returned. The chain's mark, locked and moved
/// in the same transaction, rules that out unless a mark was moved back by hand (a redelivery
/// queues only notices of the feed, written with their round's deliveries). So the check is a
/// guard, and a plain `NOT EXISTS`: `ON CONFLICT` would write a confirmation record per row.
/// Should another transaction insert the same delivery meanwhile, this round fails, and the next
/// one skips it.
pub async fn queue_all(
    db: impl PgExecutor<'_>,
    q: &Queue,
    handover: Option<Handover>,
) -> Result<Vec<Leased>> {
    let (owner, lease_secs, limit) = match handover {
        Some(h) => (Some(h.owner), h.lease_secs, h.limit),
        None => (None, 0.0, 0),
    };
    sqlx::query_as!(
        Leased,
        r#"with round as (
               select c, e, s, i, t, b, s = min(s) over (partition by c, e) as first
               from unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::text[])
                    as q(c, e, s, i, t, b)
               where not exists (
                   select 1 from webhook_deliveries x -- fan-out: webhook dispatch
                   where x.chain_id = q.c and x.endpoint_id = q.e and x.chain_seq = q.s)
           ), heads as (
               select round.*, $7::uuid is not null and first and not exists (
                   select 1 from webhook_deliveries p -- fan-out: webhook dispatch
                   where p.chain_id = round.c and p.endpoint_id = round.e
                     and p.chain_seq < round.s and p.state = 'pending') as head
               from round
           ), handed as (
               select heads.*,
                      head and count(*) filter (where head) over (order by c, e, s) <= $9 as leased
               from heads
           ), queued as (
               insert into webhook_deliveries (chain_id, endpoint_id, chain_seq, event_id, event_type,
                                               body, attempts, lease_owner, lease_until,
                                               next_attempt_at)
               select c, e, s, i, t, b, case when leased then 1 else 0 end,
                      case when leased then $7 end,
                      case when leased then now() + make_interval(secs => $8) end,
                      -- Due now, or, leased, only once the lease has run out.
                      case when leased then now() + make_interval(secs => $8)
                           else clock_timestamp() end
               from handed
               order by c, e, s
               returning chain_id, endpoint_id, chain_seq, event_id, body, attempts, retry_base,
                         lease_owner
           )
           select queued.chain_id, queued.endpoint_id, queued.chain_seq, queued.event_id,
                  queued.body, queued.attempts, queued.retry_base, ep.url, ep.secret,
                  case when ep.previous_secret_until > now() then ep.previous_secret end
                      as previous_secret
           from queued join webhook_endpoints ep on ep.id = queued.endpoint_id
           where queued.lease_owner is not null"#,
        &q.chains,
        &q.endpoints,
        &q.chain_seqs,
        &q.event_ids,
        &q.event_types,
        &q.bodies,
        owner as Option<Uuid>,
        lease_secs,
        limit,
    )
    .fetch_all(db)
    .await
    .context("webhooks::queue_all")
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
/// oldest first. Two statements, so that each has its own plan; both read the feed by
/// `(partner_id, occurred_at)`, one event's in the millisecond its id names.
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
                 and occurred_at >= $3 and occurred_at < $3 + interval '1 millisecond'
                 and (cardinality($4::text[]) = 0 or event_type = any($4))
               order by seq limit $5"#,
                audience,
                event,
                event_millisecond(event),
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
/// `notices`. Rows are written in key order, not the notices' (see [`lock_round`]). A notice the
/// feed holds twice (a mark moved back by hand appends its events again) is queued once, with
/// its first body.
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
         select distinct on (c, s) c, $1, s, i, t, b
         from unnest($2::uuid[], $3::bigint[], $4::uuid[], $5::text[], $6::text[])
              with ordinality as n(c, s, i, t, b, o)
         order by c, s, o
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
/// instance is leasing right now are skipped, never waited for. The SQL function `webhook_lease`
/// walks the due deliveries in order and stops at `limit`; "no earlier pending" is one probe of
/// `webhook_deliveries_pending_idx` (`scripts/bench-lease.sh` times it).
pub async fn lease(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    lease_secs: f64,
    limit: i64,
) -> Result<Vec<Leased>> {
    sqlx::query_as!(
        Leased,
        r#"select chain_id as "chain_id!", endpoint_id as "endpoint_id!", chain_seq as "chain_seq!",
                  event_id as "event_id!", body as "body!", attempts as "attempts!",
                  retry_base as "retry_base!", url as "url!", secret as "secret!", previous_secret
           from webhook_lease($1, $2, $3)"#,
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

/// Locks a sending round's deliveries, in key order, before its outcomes are written.
///
/// Every transaction that writes several deliveries and may wait for them takes their row locks
/// in key order (`chain_id, endpoint_id, chain_seq`) and deliveries before endpoints: queueing,
/// redelivery, enabling an endpoint and settling a round ([`lease`] never waits: it skips locked
/// rows). Without one order, two of them locking the same rows in opposite orders deadlock, and
/// one fails (a redelivery answered 500).
pub async fn lock_round(db: impl PgExecutor<'_>, deliveries: &[&Leased]) -> Result<()> {
    let chains: Vec<Uuid> = deliveries.iter().map(|d| d.chain_id).collect();
    let endpoints: Vec<Uuid> = deliveries.iter().map(|d| d.endpoint_id).collect();
    let seqs: Vec<i64> = deliveries.iter().map(|d| d.chain_seq).collect();
    sqlx::query!(
        "select 1 as locked from webhook_deliveries d -- fan-out: webhook dispatch
         join unnest($1::uuid[], $2::uuid[], $3::bigint[]) as n(chain_id, endpoint_id, chain_seq)
           on d.chain_id = n.chain_id and d.endpoint_id = n.endpoint_id and d.chain_seq = n.chain_seq
         order by d.chain_id, d.endpoint_id, d.chain_seq
         for no key update of d",
        &chains,
        &endpoints,
        &seqs,
    )
    .fetch_all(db)
    .await
    .context("webhooks::lock_round")?;
    Ok(())
}

/// Records attempts of one sending round that did not deliver, in one statement.
pub async fn record_attempts(
    db: impl PgExecutor<'_>,
    round: &[(&Leased, Attempt<'_>)],
) -> Result<()> {
    let c = AttemptColumns::of(round);
    sqlx::query!(
        "insert into webhook_attempts (chain_id, endpoint_id, chain_seq, attempt, started_at, latency_ms, status, error, body_prefix)
         select * from unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::int[], $5::timestamptz[],
                              $6::int[], $7::int[], $8::text[], $9::text[])
         on conflict do nothing",
        &c.chains,
        &c.endpoints,
        &c.seqs,
        &c.numbers,
        &c.started,
        &c.latencies,
        &c.statuses as &[Option<i32>],
        &c.errors as &[Option<String>],
        &c.prefixes as &[Option<String>],
    )
    .execute(db)
    .await
    .context("webhooks::record_attempts")?;
    Ok(())
}

/// Settles as delivered, in one statement, those of a round's deliveries still leased to `owner`
/// (see [`settle`]), each with the attempt that delivered it in its row; a delivering attempt
/// already there (delivered before a redelivery) moves to `webhook_attempts`. The attempt of a
/// delivery whose lease was lost meanwhile settles nothing and goes to `webhook_attempts`. The
/// round's rows must be locked ([`lock_round`]) earlier in the transaction, so that the row as it
/// was is the row as it is updated.
pub async fn settle_delivered(
    db: impl PgExecutor<'_>,
    round: &[(&Leased, Attempt<'_>)],
    owner: Uuid,
) -> Result<()> {
    let c = AttemptColumns::of(round);
    // The row as it was comes back from the update's own join (`was`), not from a separate read
    // of the table: on Citus a data-modifying CTE runs before the rest of the statement.
    sqlx::query!(
        "with n as (
             select * from unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::int[], $5::timestamptz[],
                                  $6::int[], $7::int[], $8::text[], $9::text[])
                 as n(chain_id, endpoint_id, chain_seq, attempt, started_at, latency_ms, status, error,
                      body_prefix)
         ), settled as (
             update webhook_deliveries d -- fan-out: webhook dispatch
             set state = 'delivered', lease_owner = null, lease_until = null, delivered_at = now(),
                 delivered_attempt = n.attempt, delivered_started_at = n.started_at,
                 delivered_latency_ms = n.latency_ms, delivered_status = n.status,
                 delivered_body_prefix = n.body_prefix
             from n join webhook_deliveries was using (chain_id, endpoint_id, chain_seq)
             where d.chain_id = n.chain_id and d.endpoint_id = n.endpoint_id
               and d.chain_seq = n.chain_seq and d.lease_owner = $10
             returning d.chain_id, d.endpoint_id, d.chain_seq, was.delivered_attempt,
                       was.delivered_started_at, was.delivered_latency_ms, was.delivered_status,
                       was.delivered_body_prefix
         )
         insert into webhook_attempts (chain_id, endpoint_id, chain_seq, attempt, started_at,
                                       latency_ms, status, error, body_prefix)
         select chain_id, endpoint_id, chain_seq, delivered_attempt, delivered_started_at,
                delivered_latency_ms, delivered_status, null, delivered_body_prefix
         from settled where delivered_attempt is not null
         union all
         select * from n
         where not exists (select 1 from settled s
                           where s.chain_id = n.chain_id and s.endpoint_id = n.endpoint_id
                             and s.chain_seq = n.chain_seq)
         on conflict do nothing",
        &c.chains,
        &c.endpoints,
        &c.seqs,
        &c.numbers,
        &c.started,
        &c.latencies,
        &c.statuses as &[Option<i32>],
        &c.errors as &[Option<String>],
        &c.prefixes as &[Option<String>],
        owner,
    )
    .execute(db)
    .await
    .context("webhooks::settle_delivered")?;
    Ok(())
}

/// A round's attempts, column by column, for `unnest`.
struct AttemptColumns {
    chains: Vec<Uuid>,
    endpoints: Vec<Uuid>,
    seqs: Vec<i64>,
    numbers: Vec<i32>,
    started: Vec<DateTime<Utc>>,
    latencies: Vec<i32>,
    statuses: Vec<Option<i32>>,
    errors: Vec<Option<String>>,
    prefixes: Vec<Option<String>>,
}

impl AttemptColumns {
    fn of(round: &[(&Leased, Attempt<'_>)]) -> Self {
        Self {
            chains: round.iter().map(|(d, _)| d.chain_id).collect(),
            endpoints: round.iter().map(|(d, _)| d.endpoint_id).collect(),
            seqs: round.iter().map(|(d, _)| d.chain_seq).collect(),
            numbers: round.iter().map(|(d, _)| d.attempts).collect(),
            started: round.iter().map(|(_, a)| a.started_at).collect(),
            latencies: round.iter().map(|(_, a)| a.latency_ms).collect(),
            statuses: round.iter().map(|(_, a)| a.status).collect(),
            errors: round
                .iter()
                .map(|(_, a)| a.error.map(str::to_owned))
                .collect(),
            prefixes: round
                .iter()
                .map(|(_, a)| a.body_prefix.map(str::to_owned))
                .collect(),
        }
    }
}

/// Settles a delivery leased to `owner` that was not delivered (delivered ones:
/// [`settle_delivered`]): `failed`, or `pending` again at `next_attempt_at`; whether it still
/// held the lease. If the lease ran out and another instance took the delivery over, or a
/// redelivery took it back, this outcome settles nothing.
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
             next_attempt_at = coalesce($5, next_attempt_at), delivered_at = null
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
    // For a delivery handed over and in flight, when its lease ends (`queue_all`).
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
                            from webhook_attempt_log a
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
