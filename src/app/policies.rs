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
        policy_impact::{CustomerSet, LiveSubscription},
    },
    domain::{
        Action, CustomerId, EventType, OfferChange, PartnerId, Policy, PolicyChange,
        PolicyDocument, PolicyVersion, Reason, RuleViolation, SubscriptionId,
    },
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
/// that holds no row lock yet.
pub(crate) async fn for_write(tx: &mut PgConnection) -> Result<InForce> {
    db::policies::lock_shared(&mut *tx).await?;
    in_force_now(tx).await
}

/// The instant now and the policy in force then, read in a statement of its own: a write that
/// holds POLICY_LOCK reads them after its row locks (as a qualification change does), a
/// read-only decision whenever it likes.
pub(crate) async fn in_force_now(tx: &mut PgConnection) -> Result<InForce> {
    let decision = db::policies::in_force_now(&mut *tx).await?;
    Ok(InForce {
        at: decision.at,
        version: decision.policy.version,
        policy: policy(tx, decision.policy).await?,
    })
}

/// The policy in force now, for checks ahead of a write that checks again under its own lock
/// (e.g. the lines of an import file, before they are imported).
pub async fn current(pool: &PgPool) -> Result<Arc<Policy>> {
    let mut db = pool.acquire().await?;
    Ok(in_force_now(&mut db).await?.policy)
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

/// Rows a preview reads per statement while it looks for the next page of a list: pages are
/// sparse (most rows are not affected), so it reads ahead in batches.
const SCAN_BATCH: i64 = 1000;

/// Where the lists of a preview start, and how long their pages are.
#[derive(Debug, Clone, Copy)]
pub struct PreviewPages {
    /// Items per list, at least 1.
    pub limit: usize,
    /// The customers list resumes after this customer.
    pub customers_after: Option<CustomerId>,
    /// The subscriptions list resumes after this subscription.
    pub subscriptions_after: Option<SubscriptionId>,
    /// The pairs list resumes after this (customer, partner) pair.
    pub pairs_after: Option<(CustomerId, PartnerId)>,
}

/// One list of a preview: how many items there are in all, and one page of them.
#[derive(Debug, Clone)]
pub struct Listed<T, K> {
    /// Every item of the list, not only this page's.
    pub count: i64,
    /// This page, in key order.
    pub items: Vec<T>,
    /// The key to resume after, if more items follow.
    pub next: Option<K>,
}

/// A live subscription whose purchase the version in force allows and the draft would deny.
#[derive(Debug, Clone)]
pub struct LostSubscription {
    /// The subscription, which stays: history is never rewritten.
    pub subscription: LiveSubscription,
    /// Every rule of the draft its purchase would break.
    pub violations: Vec<RuleViolation>,
}

/// A linked customer–partner pair whose eligible offers the draft would change.
#[derive(Debug, Clone)]
pub struct ChangedPair {
    /// The customer.
    pub customer_id: CustomerId,
    /// The partner.
    pub partner_id: PartnerId,
    /// The offer terms gained and lost.
    pub change: OfferChange,
}

/// What publishing a draft would change, measured against the version in force now.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The version in force now.
    pub current: PolicyVersion,
    /// The draft, checked.
    pub draft: Policy,
    /// Customers whose set is valid now and not under the draft.
    pub customers: Listed<CustomerSet, CustomerId>,
    /// Live subscriptions the draft would no longer let be bought.
    pub subscriptions: Listed<LostSubscription, SubscriptionId>,
    /// Linked pairs that gain or lose eligible offers.
    pub pairs: Listed<ChangedPair, (CustomerId, PartnerId)>,
    /// Of those pairs, how many gain offers.
    pub pairs_gaining: i64,
    /// Of those pairs, how many lose offers.
    pub pairs_losing: i64,
}

/// What publishing `document` now would change; writes nothing. Counts come from the facts the
/// rules read, grouped in the database and decided once per combination under both policies;
/// the pages from rows read in key order and decided one by one, in the same snapshot.
pub async fn preview(
    pool: &PgPool,
    ctx: &RequestContext,
    document: PolicyDocument,
    pages: PreviewPages,
) -> Result<Preview> {
    ctx.require(Action::PublishPolicies)?;
    let draft = Policy::try_from(document)?;
    let mut tx = db::begin_read_only(pool).await?;
    let current = in_force_now(&mut tx).await?.policy;
    let change = PolicyChange {
        current: &current,
        draft: &draft,
    };

    let customers_count = db::policy_impact::customer_sets(&mut *tx)
        .await?
        .iter()
        .filter(|c| change.invalidates(c.facts))
        .map(|c| c.rows)
        .sum();
    let mut pager = Pager::new(pages.customers_after, pages.limit);
    while let Some(after) = pager.next_batch() {
        let rows = db::policy_impact::customers(&mut *tx, after, SCAN_BATCH).await?;
        pager.take(rows, |c| c.id, |c| change.invalidates(c.set).then_some(c));
    }
    let (items, next) = pager.page();
    let customers = Listed {
        count: customers_count,
        items,
        next,
    };

    let subscriptions_count = db::policy_impact::subscription_standings(&mut *tx)
        .await?
        .iter()
        .filter(|s| {
            change
                .newly_denied(&s.facts.standing, s.facts.offer)
                .is_some()
        })
        .map(|s| s.rows)
        .sum();
    let mut pager = Pager::new(pages.subscriptions_after, pages.limit);
    while let Some(after) = pager.next_batch() {
        let rows = db::policy_impact::subscriptions(&mut *tx, after, SCAN_BATCH).await?;
        pager.take(
            rows,
            |s| s.id,
            |subscription| {
                let purchase = &subscription.purchase;
                change
                    .newly_denied(&purchase.standing, purchase.offer)
                    .map(|violations| LostSubscription {
                        subscription,
                        violations,
                    })
            },
        );
    }
    let (items, next) = pager.page();
    let subscriptions = Listed {
        count: subscriptions_count,
        items,
        next,
    };

    // Eligible offers are offers of the catalog, so a pair gains or loses only terms it holds.
    let terms = db::policy_impact::offer_terms(&mut *tx).await?;
    let (mut pairs_count, mut pairs_gaining, mut pairs_losing) = (0, 0, 0);
    for pairs in db::policy_impact::pair_standings(&mut *tx).await? {
        let offers = change.offer_change(&pairs.facts, &terms);
        if !offers.is_empty() {
            pairs_count += pairs.rows;
        }
        if !offers.gained.is_empty() {
            pairs_gaining += pairs.rows;
        }
        if !offers.lost.is_empty() {
            pairs_losing += pairs.rows;
        }
    }
    let mut pager = Pager::new(pages.pairs_after, pages.limit);
    while let Some(after) = pager.next_batch() {
        let rows = db::policy_impact::pairs(&mut *tx, after, SCAN_BATCH).await?;
        pager.take(
            rows,
            |p| (p.customer_id, p.partner_id),
            |pair| {
                let offers = change.offer_change(&pair.standing, &terms);
                (!offers.is_empty()).then_some(ChangedPair {
                    customer_id: pair.customer_id,
                    partner_id: pair.partner_id,
                    change: offers,
                })
            },
        );
    }
    let (items, next) = pager.page();
    let pairs = Listed {
        count: pairs_count,
        items,
        next,
    };
    tx.commit().await?;

    Ok(Preview {
        current: current.version(),
        draft,
        customers,
        subscriptions,
        pairs,
        pairs_gaining,
        pairs_losing,
    })
}

/// One page of a list, gathered from rows read in key order, batch by batch: each row is kept
/// as an item or skipped, until one item more than the page holds shows that more follow.
struct Pager<K, T> {
    limit: usize,
    items: Vec<T>,
    /// The key of the last row read: the next batch starts after it.
    cursor: Option<K>,
    /// No batch is needed: the list ended, or the page is full.
    done: bool,
    /// The key of the page's last item, once an item beyond the page was found.
    next: Option<K>,
}

impl<K: Copy, T> Pager<K, T> {
    fn new(after: Option<K>, limit: usize) -> Self {
        Self {
            limit,
            items: Vec::new(),
            cursor: after,
            done: false,
            next: None,
        }
    }

    /// Where the next batch starts (`Some(None)`: at the beginning); `None` once none is needed.
    fn next_batch(&self) -> Option<Option<K>> {
        (!self.done).then_some(self.cursor)
    }

    /// Takes a batch of rows read after the cursor.
    fn take<R>(&mut self, rows: Vec<R>, key: impl Fn(&R) -> K, keep: impl Fn(R) -> Option<T>) {
        self.done = rows.len() < SCAN_BATCH as usize;
        for row in rows {
            let row_key = key(&row);
            if let Some(item) = keep(row) {
                if self.items.len() == self.limit {
                    self.done = true;
                    self.next = self.cursor;
                    return;
                }
                self.items.push(item);
            }
            self.cursor = Some(row_key);
        }
    }

    /// The page, and the key to resume after if more items follow.
    fn page(self) -> (Vec<T>, Option<K>) {
        (self.items, self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page of the multiples of 7 below 2,500, read as the database would serve them.
    fn pages(limit: usize) -> Vec<Vec<u32>> {
        let rows: Vec<u32> = (0..2500).collect();
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let mut pager = Pager::new(after, limit);
            while let Some(cursor) = pager.next_batch() {
                let batch = rows
                    .iter()
                    .copied()
                    .filter(|&r| cursor.is_none_or(|c| r > c))
                    .take(SCAN_BATCH as usize)
                    .collect();
                pager.take(batch, |&r| r, |r| (r % 7 == 0).then_some(r));
            }
            let (items, next) = pager.page();
            pages.push(items);
            match next {
                Some(next) => after = Some(next),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_across_batches_hold_every_kept_row_once_in_order() {
        let expected: Vec<u32> = (0..2500).filter(|r| r % 7 == 0).collect();
        for limit in [1, 7, 100, 357, 358, 1000] {
            let pages = pages(limit);
            assert!(pages.iter().all(|p| p.len() <= limit && !p.is_empty()));
            assert_eq!(pages.concat(), expected, "limit {limit}");
        }
    }
}
