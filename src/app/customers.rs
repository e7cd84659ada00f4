//! Customer management: creation, qualification sets with evidence and history, partner
//! relationships, subscription history.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::{Error, Precondition, RequestContext, Result, Warning};
use crate::{
    db::{
        self, Keyset,
        customers::{Customer, CustomerEvidence, NewCustomer, QualificationRecord},
        events::NewEvent,
        subscriptions::SubscriptionRow,
    },
    domain::{
        Action, CustomerId, CustomerQualification, DisplayName, EventType, PartnerId, Reason,
        SpecialQualification, SubscriptionId, evidence_after_change,
    },
};

/// A qualification set to record, with its evidence and reason.
#[derive(Debug, Clone)]
pub struct QualificationChange {
    /// The new set.
    pub qualifications: CustomerQualification,
    /// Evidence given with this change, by qualification.
    pub evidence: CustomerEvidence,
    /// Why.
    pub reason: Reason,
}

/// A recorded qualification change, and what the caller should know about it.
#[derive(Debug, Clone)]
pub struct QualificationUpdate {
    /// The version now in force.
    pub record: QualificationRecord,
    /// E.g. that the GCC lockout still applies.
    pub warnings: Vec<Warning>,
}

/// The evidence a new customer's first qualification set needs: every qualification is added.
pub fn initial_evidence(change: &QualificationChange) -> Result<CustomerEvidence> {
    Ok(evidence_after_change(
        &[],
        &CustomerEvidence::new(),
        change.qualifications.qualifications(),
        &change.evidence,
    )?)
}

/// Writes new customers, their first history versions and their `customer_created` events, in
/// the caller's transaction: the one write path of `create` and of the bulk import.
pub(crate) async fn insert_new(
    tx: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    customers: &[NewCustomer],
) -> Result<()> {
    db::customers::insert_many(&mut *tx, &ctx.actor, customers).await?;
    let events: Vec<NewEvent> = customers
        .iter()
        .map(|c| NewEvent {
            event_type: EventType::CustomerCreated,
            customer_id: Some(c.id),
            partner_id: None,
            payload: json!({
                "name": c.name.as_str(),
                "special_qualifications": c.qualifications,
                "evidence": c.evidence,
                "reason": c.reason.as_str(),
            }),
        })
        .collect();
    Ok(db::events::append_many(&mut *tx, &ctx.actor, &events).await?)
}

/// Creates a customer with its first qualification set (version 1 of its history).
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    name: &DisplayName,
    change: &QualificationChange,
) -> Result<Customer> {
    ctx.require(Action::ManageCustomers)?;
    let new = NewCustomer {
        id: CustomerId::new(),
        name: name.clone(),
        qualifications: change.qualifications,
        evidence: initial_evidence(change)?,
        reason: change.reason.clone(),
    };
    let mut tx = pool.begin().await?;
    insert_new(&mut tx, ctx, std::slice::from_ref(&new)).await?;
    let customer = db::customers::get(&mut *tx, new.id)
        .await?
        .ok_or(Error::CustomerNotFound(new.id))?;
    tx.commit().await?;
    Ok(customer)
}

/// 404 unless the customer exists and, for partner roles, is related to the caller's partner.
pub(crate) async fn ensure_visible(
    db: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    id: CustomerId,
) -> Result<()> {
    let visible = match ctx.partner_scope() {
        Some(partner) => db::customers::is_related(&mut *db, id, partner).await?,
        None => db::customers::get(&mut *db, id).await?.is_some(),
    };
    if visible {
        Ok(())
    } else {
        Err(Error::CustomerNotFound(id))
    }
}

/// [`ensure_visible`], then 403 unless the caller's role permits `action`. Visibility comes first,
/// so that a 403 never tells a partner that another partner's customer exists.
pub(crate) async fn authorize(
    db: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    action: Action,
    id: CustomerId,
) -> Result<()> {
    ensure_visible(db, ctx, id).await?;
    ctx.require(action)
}

/// One customer.
pub async fn get(pool: &PgPool, ctx: &RequestContext, id: CustomerId) -> Result<Customer> {
    authorize(&mut *pool.acquire().await?, ctx, Action::ReadCustomers, id).await?;
    db::customers::get(pool, id)
        .await?
        .ok_or(Error::CustomerNotFound(id))
}

/// Whether the GCC lockout (R4) applies to the customer: its history holds a GCC subscription.
pub async fn gcc_lockout(pool: &PgPool, ctx: &RequestContext, id: CustomerId) -> Result<bool> {
    let mut conn = pool.acquire().await?;
    authorize(&mut conn, ctx, Action::ReadCustomers, id).await?;
    Ok(db::subscriptions::has_gcc_history(&mut *conn, id).await?)
}

/// A page of customers matching `filter` (partner roles see only their partner's).
pub async fn search(
    pool: &PgPool,
    ctx: &RequestContext,
    filter: &db::customers::CustomerFilter<'_>,
    page: Keyset,
) -> Result<Vec<Customer>> {
    ctx.require(Action::ReadCustomers)?;
    Ok(db::customers::search(pool, ctx.partner_scope(), filter, page).await?)
}

/// A page of customers (partner roles see only their partner's).
pub async fn list(pool: &PgPool, ctx: &RequestContext, page: Keyset) -> Result<Vec<Customer>> {
    ctx.require(Action::ReadCustomers)?;
    Ok(db::customers::list(pool, ctx.partner_scope(), page).await?)
}

/// Records a new qualification set under the customer's lock, the same lock purchases take, so
/// every purchase is decided under the set in force when it commits. Refused (nothing written)
/// if the customer moved past the version the caller read, or evidence is missing.
pub async fn set_qualifications(
    pool: &PgPool,
    ctx: &RequestContext,
    id: CustomerId,
    precondition: Precondition,
    change: &QualificationChange,
) -> Result<QualificationUpdate> {
    let mut tx = pool.begin().await?;
    authorize(&mut tx, ctx, Action::ManageCustomers, id).await?;
    db::customers::lock_for_update(&mut *tx, id)
        .await?
        .ok_or(Error::CustomerNotFound(id))?;
    let current = db::customers::qualifications_at(&mut *tx, id, None)
        .await?
        .ok_or(Error::CustomerNotFound(id))?;
    if !precondition.holds(current.version) {
        return Err(Error::CustomerVersionMismatch(Box::new(current)));
    }
    let before = current.special_qualifications;
    let after = change.qualifications;
    let evidence = evidence_after_change(
        before.qualifications(),
        &current.evidence,
        after.qualifications(),
        &change.evidence,
    )?;
    let version = db::customers::set_qualifications(&mut *tx, id, after).await?;
    db::customers::insert_history(
        &mut *tx,
        &ctx.actor,
        id,
        version,
        after,
        &evidence,
        &change.reason,
    )
    .await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::CustomerQualificationsSet,
            customer_id: Some(id),
            partner_id: None,
            payload: json!({
                "before": before,
                "after": after,
                "evidence": evidence,
                "reason": change.reason.as_str(),
                "version": version,
            }),
        },
    )
    .await?;
    let mut warnings = Vec::new();
    if !after.has(SpecialQualification::Gcc)
        && db::subscriptions::has_gcc_history(&mut *tx, id).await?
    {
        warnings.push(Warning {
            code: "gcc_lockout_still_applies",
            message: "The customer has a GCC subscription in its history, so it still may not buy \
                      commercial, education or nonprofit subscriptions (R4)."
                .into(),
        });
    }
    let record = db::customers::qualifications_at(&mut *tx, id, None)
        .await?
        .ok_or(Error::CustomerNotFound(id))?;
    tx.commit().await?;
    Ok(QualificationUpdate { record, warnings })
}

/// The qualification set in force now, or at `at`.
pub async fn qualifications(
    pool: &PgPool,
    ctx: &RequestContext,
    id: CustomerId,
    at: Option<DateTime<Utc>>,
) -> Result<QualificationRecord> {
    let mut conn = pool.acquire().await?;
    authorize(&mut conn, ctx, Action::ReadCustomers, id).await?;
    match db::customers::qualifications_at(&mut *conn, id, at).await? {
        Some(record) => Ok(record),
        None => Err(Error::NotRecordedAt(
            format!("customer {id}"),
            at.unwrap_or_else(Utc::now),
        )),
    }
}

/// A page of every qualification set the customer ever had, oldest first.
pub async fn qualification_history(
    pool: &PgPool,
    ctx: &RequestContext,
    id: CustomerId,
    after_version: i64,
    limit: i64,
) -> Result<Vec<QualificationRecord>> {
    let mut conn = pool.acquire().await?;
    authorize(&mut conn, ctx, Action::ReadCustomers, id).await?;
    Ok(db::customers::qualification_history(&mut *conn, id, after_version, limit).await?)
}

/// Records that `partner` has a relationship with the customer; `false` if it already had.
/// Back office only: a relationship lets a partner see the customer and buy for it, so no partner
/// may make one for itself.
pub async fn link_partner(
    pool: &PgPool,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
) -> Result<bool> {
    ctx.check_partner(partner)?;
    let mut tx = pool.begin().await?;
    authorize(&mut tx, ctx, Action::ManageRelationships, customer).await?;
    if db::partners::get(&mut *tx, partner).await?.is_none() {
        return Err(Error::PartnerNotFound(partner));
    }
    let created = db::customers::link_partner(&mut *tx, customer, partner).await?;
    if created {
        db::events::append(
            &mut *tx,
            &ctx.actor,
            NewEvent {
                event_type: EventType::CustomerPartnerLinked,
                customer_id: Some(customer),
                partner_id: Some(partner),
                payload: json!({}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(created)
}

/// The partners a customer has relationships with (partner roles see only their own).
pub async fn partners(
    pool: &PgPool,
    ctx: &RequestContext,
    id: CustomerId,
) -> Result<Vec<PartnerId>> {
    let mut conn = pool.acquire().await?;
    authorize(&mut conn, ctx, Action::ReadCustomers, id).await?;
    let partners = db::customers::partners(&mut *conn, id).await?;
    Ok(match ctx.partner_scope() {
        Some(own) => partners.into_iter().filter(|p| *p == own).collect(),
        None => partners,
    })
}

/// A page of a customer's subscription history; partner roles see only what their partner sold.
pub async fn subscriptions(
    pool: &PgPool,
    ctx: &RequestContext,
    id: CustomerId,
    page: Keyset,
) -> Result<Vec<SubscriptionRow>> {
    let mut conn = pool.acquire().await?;
    authorize(&mut conn, ctx, Action::ReadSubscriptions, id).await?;
    Ok(db::subscriptions::list_for_customer(&mut *conn, id, ctx.partner_scope(), page).await?)
}

/// One of a customer's subscriptions.
pub async fn subscription(
    pool: &PgPool,
    ctx: &RequestContext,
    customer: CustomerId,
    id: SubscriptionId,
) -> Result<SubscriptionRow> {
    let mut conn = pool.acquire().await?;
    authorize(&mut conn, ctx, Action::ReadSubscriptions, customer).await?;
    db::subscriptions::get(&mut *conn, customer, ctx.partner_scope(), id)
        .await?
        .ok_or(Error::SubscriptionNotFound(customer, id))
}
