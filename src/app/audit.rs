//! Auditors' use cases: search and export the event log, and verify its hash chains.

use chrono::{DateTime, Utc};
use futures_util::{Stream, TryStreamExt};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{Error, RequestContext, Result, customers};
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

/// Up to `limit` matching events, newest first.
pub async fn events(
    pool: &PgPool,
    ctx: &RequestContext,
    query: &EventQuery,
    limit: i64,
) -> Result<Vec<EventRow>> {
    authorize_search(pool, ctx, query).await?;
    let filter = query.filter();
    let mut tx = db::audit::begin_search(pool).await?;
    let rows = db::audit::events(&mut tx, &filter, Some(limit))
        .try_collect()
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Every matching event, newest first, as a stream that reads them from one database query as it
/// is consumed. The connection is taken now, so an exhausted pool is an error before anything is
/// sent, and held by the stream until it ends or is dropped. One statement, so one snapshot: the
/// export is consistent however long it takes.
pub async fn export(
    pool: &PgPool,
    ctx: &RequestContext,
    query: &EventQuery,
) -> Result<impl Stream<Item = Result<EventRow>> + Send + 'static> {
    authorize_search(pool, ctx, query).await?;
    let mut tx = db::audit::begin_search(pool).await?;
    let filter = query.filter();
    Ok(async_stream::try_stream! {
        let mut rows = db::audit::events(&mut tx, &filter, None);
        while let Some(row) = rows.try_next().await? {
            yield row;
        }
        drop(rows);
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
