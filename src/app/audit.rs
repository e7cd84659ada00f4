//! Auditors' use cases: search and export the event log, and verify its hash chains.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt, TryStreamExt};
use sqlx::{
    PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::{
    Error, RequestContext, Result, customers,
    principals::{ActorName, ActorNames},
};
use crate::{
    db::{
        self,
        audit::{EventFilter, EventRow},
    },
    domain::{
        Action, CustomerId, EventType, PartnerId,
        audit::{ChainReport, ChainVerifier, event_id_floor},
    },
};

/// The policy version an audit search may filter by: a version number, 1 up to what the
/// database's `integer` holds; `None` for anything else.
pub fn policy_version_filter(number: i64) -> Option<i32> {
    i32::try_from(number).ok().filter(|v| *v >= 1)
}

/// Which events an auditor asks for; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Events about this customer (including purchases by any partner for it).
    pub customer_id: Option<CustomerId>,
    /// Events about this partner (including its purchases for customers).
    pub partner_id: Option<PartnerId>,
    /// Events by this actor.
    pub actor: Option<String>,
    /// Events of this type.
    pub event_type: Option<EventType>,
    /// Events naming this policy version: decisions made under it, and its publication.
    pub policy_version: Option<i32>,
    /// Events that occurred at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Events that occurred before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Events older than this one (the pagination cursor).
    pub before: Option<Uuid>,
}

impl EventQuery {
    fn filter(&self) -> EventFilter {
        let ids_below = [self.to.map(event_id_floor), self.before]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Uuid::max());
        EventFilter {
            ids_from: self.from.map_or(Uuid::nil(), event_id_floor),
            ids_below,
            customer_id: self.customer_id.map(|c| c.0),
            partner_id: self.partner_id.map(|p| p.0),
            actor: self.actor.clone(),
            event_type: self.event_type.map(EventType::as_str),
            policy_version: self.policy_version,
        }
    }
}

/// 404 for a customer or partner filter that a partner role may not see, then 403 unless the
/// caller may read the log: visibility before permission, as in every use case.
async fn authorize_search(pool: &PgPool, ctx: &RequestContext, query: &EventQuery) -> Result<()> {
    if ctx.partner_scope().is_some() {
        if let Some(partner) = query.partner_id {
            ctx.check_partner(partner)?;
        }
        if let Some(customer) = query.customer_id {
            let mut conn = pool.acquire().await?;
            customers::authorize(&mut conn, ctx, Action::ReadAudit, customer).await?;
        }
    }
    ctx.require(Action::ReadAudit)
}

/// An event as auditors read it: as stored, and who its actor is in words.
#[derive(Debug, Clone)]
pub struct AuditedEvent {
    /// The stored event, every hashed field as it is.
    pub event: EventRow,
    /// The actor as people read it, resolved when read (not hashed); `None` when the actor is
    /// not a known principal.
    pub actor_name: Option<ActorName>,
}

impl AuditedEvent {
    fn named(event: EventRow, names: &ActorNames) -> Self {
        let actor_name = names.get(&event.actor);
        Self { event, actor_name }
    }
}

/// Up to `limit` matching events, newest first, their actors named (one lookup for the page).
pub async fn events(
    pool: &PgPool,
    ctx: &RequestContext,
    query: &EventQuery,
    limit: i64,
) -> Result<Vec<AuditedEvent>> {
    authorize_search(pool, ctx, query).await?;
    let filter = query.filter();
    let mut tx = db::audit::begin_search(pool).await?;
    let rows: Vec<EventRow> = db::audit::events(&mut tx, &filter, Some(limit))
        .try_collect()
        .await?;
    tx.commit().await?;
    let names = super::principals::names(pool, ctx, rows.iter().map(|r| r.actor.as_str())).await?;
    Ok(rows
        .into_iter()
        .map(|row| AuditedEvent::named(row, &names))
        .collect())
}

/// One event by its id, its actor named; `None` if there is none.
pub async fn event(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> Result<Option<AuditedEvent>> {
    // The log is the auditors' alone, whatever the event is about: no lookup before the refusal.
    ctx.require(Action::ReadAudit)?;
    // The search's id range narrowed to one id: the same statement, on the primary key.
    let filter = EventFilter {
        ids_from: id,
        ids_below: id
            .as_u128()
            .checked_add(1)
            .map_or(Uuid::max(), Uuid::from_u128),
        customer_id: None,
        partner_id: None,
        actor: None,
        event_type: None,
        policy_version: None,
    };
    let mut tx = db::audit::begin_search(pool).await?;
    let row = db::audit::events(&mut tx, &filter, Some(1))
        .try_next()
        .await?;
    tx.commit().await?;
    let Some(row) = row.filter(|r| r.id == id) else {
        return Ok(None);
    };
    let names = super::principals::names(pool, ctx, [row.actor.as_str()]).await?;
    Ok(Some(AuditedEvent::named(row, &names)))
}

/// Exports streaming at once per principal: an auditor cannot take every export slot alone.
pub const EXPORTS_PER_PRINCIPAL: usize = 1;

/// Where exports run: a pool of their own, so however many clients stall an export, requests
/// (purchases above all) keep every connection of the request pool; a slot per export, taken
/// without waiting; and at most [`EXPORTS_PER_PRINCIPAL`] per principal.
#[derive(Debug, Clone)]
pub struct Exports {
    pool: PgPool,
    slots: Arc<Semaphore>,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl Exports {
    /// At most `max` exports at once, each on a connection opened for it with `options`.
    pub fn new(options: PgConnectOptions, max: u32, acquire_timeout: Duration) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(max.max(1))
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            // Never reused: a cut export leaves its query sending rows, which the next user of
            // the connection would first have to read to the end. Closing it stops the query.
            .after_release(|_, _| Box::pin(async { Ok(false) }))
            .connect_lazy_with(options);
        Self {
            pool,
            slots: Arc::new(Semaphore::new(max as usize)),
            running: Arc::default(),
        }
    }

    /// The exports' own pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the export pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A slot for `actor`'s export, or `ExportBusy`.
    fn admit(&self, actor: String) -> Result<ExportSlot> {
        let permit = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| Error::ExportBusy("every export slot of this instance is taken"))?;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let own = running.entry(actor.clone()).or_default();
        if *own >= EXPORTS_PER_PRINCIPAL {
            return Err(Error::ExportBusy(
                "this principal already has as many exports running as it may",
            ));
        }
        *own += 1;
        crate::monitoring::export_started();
        Ok(ExportSlot {
            _permit: permit,
            running: Arc::clone(&self.running),
            actor,
        })
    }
}

/// An admitted export; dropping it (with the export's stream) frees the slot.
struct ExportSlot {
    _permit: OwnedSemaphorePermit,
    running: Arc<Mutex<HashMap<String, usize>>>,
    actor: String,
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        crate::monitoring::export_ended();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(own) = running.get_mut(&self.actor) {
            *own -= 1;
            if *own == 0 {
                running.remove(&self.actor);
            }
        }
    }
}

/// Events an export reads, names and hands on together, at most (fewer when the database is
/// slower than the client): one chunk of the response body.
pub const EXPORT_BATCH: usize = 256;

/// Every matching event, newest first, as a stream of batches (up to [`EXPORT_BATCH`] events)
/// read from one database query as it is consumed. The slot and the connection are taken now, so
/// a busy instance or an unreachable database is an error before anything is sent; both are held
/// by the stream until it ends or is dropped (the HTTP layer drops it when the client stops
/// reading, `SEND_TIMEOUT_SECS`). One statement, so one snapshot: the export is consistent however
/// long it takes. Actors are named per batch on the request pool, looking up only those not met
/// before in this export, so a long export asks for names a few times, not once per event.
pub async fn export(
    pool: &PgPool,
    exports: &Exports,
    ctx: &RequestContext,
    query: &EventQuery,
) -> Result<impl Stream<Item = Result<Vec<AuditedEvent>>> + Send + 'static> {
    // The request pool: the export pool's few connections are for exports that were admitted.
    authorize_search(pool, ctx, query).await?;
    let slot = exports.admit(ctx.actor.id().to_owned())?;
    let mut tx = db::audit::begin_search(&exports.pool).await?;
    let filter = query.filter();
    let (pool, ctx) = (pool.clone(), ctx.clone());
    Ok(async_stream::try_stream! {
        let _slot = slot;
        let mut names = ActorNames::default();
        let mut batches = db::audit::events(&mut tx, &filter, None).ready_chunks(EXPORT_BATCH);
        while let Some(batch) = batches.next().await {
            let rows = batch.into_iter().collect::<db::Result<Vec<EventRow>>>()?;
            names.resolve(&pool, &ctx, rows.iter().map(|r| r.actor.as_str())).await?;
            yield rows.into_iter().map(|row| AuditedEvent::named(row, &names)).collect::<Vec<_>>();
        }
        drop(batches);
        tx.commit().await?;
    })
}

/// Verifies the chain of one customer.
pub async fn verify_customer(
    pool: &PgPool,
    ctx: &RequestContext,
    id: CustomerId,
) -> Result<ChainReport> {
    customers::authorize(&mut *pool.acquire().await?, ctx, Action::ReadAudit, id).await?;
    verify_chain(pool, id.0).await
}

/// Verifies the chain of one partner (the events about that partner alone).
pub async fn verify_partner(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
) -> Result<ChainReport> {
    ctx.check_partner(id)?;
    ctx.require(Action::ReadAudit)?;
    if db::partners::get(pool, id).await?.is_none() {
        return Err(Error::PartnerNotFound(id));
    }
    verify_chain(pool, id.0).await
}

/// Verifies one chain; an unknown chain is an empty, intact one.
pub async fn verify_chain(pool: &PgPool, chain: Uuid) -> Result<ChainReport> {
    let mut tx = db::begin_read_only(pool).await?;
    let mut report = None;
    verify(&mut tx, Some(chain), |r| report = Some(r)).await?;
    Ok(report.unwrap_or_else(|| ChainVerifier::new(chain).finish(None)))
}

/// Verifies every chain, for an auditor (the command line calls [`verify_all`] itself).
pub async fn verify_every_chain(pool: &PgPool, ctx: &RequestContext) -> Result<Verification> {
    ctx.require(Action::ReadAudit)?;
    verify_all(pool).await
}

/// The outcome of verifying every chain.
#[derive(Debug, Default)]
pub struct Verification {
    /// Chains verified.
    pub chains: u64,
    /// Events verified.
    pub events: u64,
    /// The chains that do not hold, each with its first broken link.
    pub broken: Vec<ChainReport>,
}

/// Verifies every chain, in one snapshot, streaming the whole log once in chain order.
pub async fn verify_all(pool: &PgPool) -> Result<Verification> {
    let mut tx = db::begin_read_only(pool).await?;
    let mut verification = Verification::default();
    verify(&mut tx, None, |report| {
        verification.chains += 1;
        verification.events += report.events;
        if !report.ok {
            verification.broken.push(report);
        }
    })
    .await?;
    Ok(verification)
}

/// Recomputes the chains (one, or all) and hands each chain's report to `report`.
async fn verify(
    db: &mut PgConnection,
    chain: Option<Uuid>,
    mut report: impl FnMut(ChainReport),
) -> Result<()> {
    for head in db::audit::heads_without_events(&mut *db, chain).await? {
        report(ChainVerifier::new(head.chain_id).finish(Some((head.seq, &head.hash))));
    }
    let mut rows = db::audit::chain_events(db, chain);
    let mut current: Option<Walk> = None;
    while let Some(row) = rows.try_next().await? {
        if current
            .as_ref()
            .is_some_and(|walk| walk.verifier.chain_id() != row.chain_id)
            && let Some(walk) = current.take()
        {
            report(walk.finish());
        }
        let walk = current.get_or_insert_with(|| Walk {
            verifier: ChainVerifier::new(row.chain_id),
            head: row.head().map(|(seq, hash)| (seq, hash.to_vec())),
        });
        walk.verifier.push(&row.chained());
    }
    if let Some(walk) = current {
        report(walk.finish());
    }
    Ok(())
}

/// The chain being walked, and the head recorded for it.
struct Walk {
    verifier: ChainVerifier,
    head: Option<(i64, Vec<u8>)>,
}

impl Walk {
    fn finish(self) -> ChainReport {
        let head = self
            .head
            .as_ref()
            .map(|(seq, hash)| (*seq, hash.as_slice()));
        self.verifier.finish(head)
    }
}
