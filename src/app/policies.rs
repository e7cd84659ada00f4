//! Policy versions (issue 14): which rules a decision is made under, and publishing new ones.
//!
//! Every decision reads the version in force from the database, in its own transaction, at the
//! instant it records (`db::policies`). What an instance keeps is only the checked [`Policy`] of
//! each document it has met, by the document's digest: a published version never changes, so a
//! cache entry never goes stale, and a version the instance has not met yet is read and checked on
//! first use. No notification is needed for correctness, and nothing bounds the switch-over but
//! the database clock.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, RwLock},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use super::{Error, RequestContext, Result};
use crate::{
    db::{
        self,
        events::NewEvent,
        policies::{PolicyVersionRow, VersionInForce},
    },
    domain::{Action, EventType, Policy, PolicyDocument, Reason},
};

/// The checked policies this instance has met, by the SHA-256 of their stored documents.
static CHECKED: LazyLock<RwLock<HashMap<[u8; 32], Arc<Policy>>>> = LazyLock::new(RwLock::default);

/// The checked policy of `version`, read and checked on this instance's first meeting with it.
pub(crate) async fn policy(db: &mut PgConnection, version: VersionInForce) -> Result<Arc<Policy>> {
    if let Some(policy) = CHECKED
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&version.digest)
    {
        return Ok(policy.clone());
    }
    let row = db::policies::get(&mut *db, version.version)
        .await?
        .context("the policy version in force is not stored")
        .map_err(Error::Internal)?;
    let policy = Arc::new(checked(&row)?);
    CHECKED
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(version.digest, policy.clone());
    Ok(policy)
}

/// A stored document as a policy; the service checked it before storing it, so a failure here
/// means someone wrote the table around the service.
fn checked(row: &PolicyVersionRow) -> Result<Policy> {
    let document: PolicyDocument = serde_json::from_value(row.document.clone())
        .with_context(|| format!("stored policy version {} is unreadable", row.version))
        .map_err(Error::Internal)?;
    Policy::try_from(document)
        .with_context(|| format!("stored policy version {} is invalid", row.version))
        .map_err(Error::Internal)
}

/// What a write decides under: the instant it records, and the policy in force then.
pub(crate) struct InForce {
    /// `clock_timestamp()` after POLICY_LOCK.
    pub at: DateTime<Utc>,
    /// The version number.
    pub version: i32,
    /// Its rules.
    pub policy: Arc<Policy>,
}

/// Takes POLICY_LOCK shared in `tx`, then reads the instant and the policy in force: for a write
/// that holds no row lock yet (one that does reads the instant after its lock, as a qualification
/// change does).
pub(crate) async fn for_write(tx: &mut PgConnection) -> Result<InForce> {
    db::policies::lock_shared(&mut *tx).await?;
    let decision = db::policies::in_force_now(&mut *tx).await?;
    Ok(InForce {
        at: decision.at,
        version: decision.policy.version,
        policy: policy(tx, decision.policy).await?,
    })
}

/// The policy in force now, for a read-only decision in `tx`.
pub(crate) async fn in_force_now(tx: &mut PgConnection) -> Result<Arc<Policy>> {
    let decision = db::policies::in_force_now(&mut *tx).await?;
    policy(tx, decision.policy).await
}

/// The policy in force now, for checks ahead of a write that checks again under its own lock
/// (e.g. the lines of an import file, before they are imported).
pub async fn current(pool: &PgPool) -> Result<Arc<Policy>> {
    let mut db = pool.acquire().await?;
    in_force_now(&mut db).await
}

/// A published version, as the API and the console show it.
#[derive(Debug, Clone)]
pub struct PublishedPolicy {
    /// Its rules, checked.
    pub policy: Policy,
    /// From when it is in force; `None` for the rule book, in force since always.
    pub effective_from: Option<DateTime<Utc>>,
    /// Why it was published.
    pub reason: String,
    /// Who published it (an actor id).
    pub published_by: String,
    /// When.
    pub published_at: DateTime<Utc>,
}

impl PublishedPolicy {
    fn from_row(row: &PolicyVersionRow) -> Result<Self> {
        Ok(Self {
            policy: checked(row)?,
            effective_from: (row.version > 1).then_some(row.effective_from),
            reason: row.reason.clone(),
            published_by: row.published_by.clone(),
            published_at: row.published_at,
        })
    }
}

/// Every published version, oldest first.
pub async fn list(pool: &PgPool, ctx: &RequestContext) -> Result<Vec<PublishedPolicy>> {
    ctx.require(Action::ReadPolicies)?;
    db::policies::list(pool)
        .await?
        .iter()
        .map(PublishedPolicy::from_row)
        .collect()
}

/// One published version.
pub async fn get(pool: &PgPool, ctx: &RequestContext, version: i32) -> Result<PublishedPolicy> {
    ctx.require(Action::ReadPolicies)?;
    let row = db::policies::get(pool, version)
        .await?
        .ok_or(Error::PolicyVersionNotFound(version))?;
    PublishedPolicy::from_row(&row)
}

/// Checks a document without storing anything: every problem, not only the first.
pub fn check(ctx: &RequestContext, document: PolicyDocument) -> Result<Policy> {
    ctx.require(Action::PublishPolicies)?;
    Ok(Policy::try_from(document)?)
}

/// A version to publish.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The rules; its `version` must be the next number.
    pub document: PolicyDocument,
    /// From when it is in force; now if `None`. Never earlier than now.
    pub effective_from: Option<DateTime<Utc>>,
    /// Why.
    pub reason: Reason,
}

/// Publishes the next version, audited on the policy chain. Decisions wait while it runs (it
/// holds POLICY_LOCK exclusively), so its effective instant, checked against the database clock
/// under that lock, is never in the past of a decision already made.
pub async fn publish(
    pool: &PgPool,
    ctx: &RequestContext,
    publication: Publication,
) -> Result<PublishedPolicy> {
    ctx.require(Action::PublishPolicies)?;
    let policy = Policy::try_from(publication.document.clone())?;
    let mut tx = pool.begin().await?;
    db::policies::lock_exclusive(&mut *tx).await?;
    let latest = db::policies::latest(&mut *tx).await?;
    let next = latest.version + 1;
    if i64::from(publication.document.version) != i64::from(next) {
        return Err(Error::PolicyVersionNotNext {
            given: publication.document.version,
            next,
        });
    }
    let effective_from = publication.effective_from.unwrap_or(latest.now);
    let earliest = latest.now.max(latest.effective_from);
    if effective_from < latest.now || effective_from <= latest.effective_from {
        return Err(Error::PolicyEffectiveTooEarly { earliest });
    }
    let row = db::policies::insert(
        &mut *tx,
        &publication.document,
        effective_from,
        publication.reason.as_str(),
        ctx.actor.id(),
    )
    .await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::PolicyPublished,
            customer_id: None,
            partner_id: None,
            payload: json!({
                "policy_version": row.version,
                "effective_from": effective_from,
                "reason": publication.reason.as_str(),
                "digest": hex::encode(&row.digest),
                "document": row.document,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(PublishedPolicy {
        policy,
        effective_from: Some(effective_from),
        reason: row.reason,
        published_by: row.published_by,
        published_at: row.published_at,
    })
}
