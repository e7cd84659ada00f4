//! Customer management: creation, qualification sets with evidence and history, partner
//! relationships, subscription history.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use super::{Error, Precondition, RequestContext, Result, Warning, policies::InForce};
use crate::{
    db::{
        self, Keyset,
        customers::{
            Customer, CustomerEvidence, NewCustomer, QualificationRecord, ReferenceHolder,
        },
        events::NewEvent,
        subscriptions::SubscriptionRow,
    },
    domain::{
        Action, CustomerId, CustomerQualification, DisplayName, EventType, ExternalReference,
        PartnerId, Reason, SpecialQualification, SubscriptionId, evidence_after_change, listing,
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

/// A new customer as sent: the body of `POST /v1/customers`, and of each line of an import.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Fabrikam University", "special_qualifications": ["education"],
    "evidence": {"education": "QEU-ATTEST-88"}, "external_reference": "CRM-000417"}))]
pub struct CreateCustomer {
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// One of the sets of the policy version in force (R3), empty for a commercial customer; a
    /// value listed twice
    /// counts once.
    #[serde(default)]
    #[schema(value_type = Vec<SpecialQualification>)]
    pub special_qualifications: BTreeSet<SpecialQualification>,
    /// Evidence reference per qualification (required for each).
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub evidence: CustomerEvidence,
    /// Why; defaults to "customer created".
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
    /// The customer's id in the reseller's own CRM: 1 to 200 characters after trimming, no
    /// control characters; no two customers have the same.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub external_reference: Option<String>,
}

/// A new customer, every field checked but its evidence (see [`initial_evidence`]).
#[derive(Debug, Clone)]
pub struct CustomerDraft {
    /// Its name.
    pub name: DisplayName,
    /// Its first qualification set, with evidence and reason.
    pub change: QualificationChange,
    /// Its id in the reseller's CRM.
    pub external_reference: Option<ExternalReference>,
}

impl CreateCustomer {
    /// Checks every field, in the order of the body: name, qualifications, reason, reference.
    pub fn parse(self) -> Result<CustomerDraft> {
        let invalid = |field: &'static str, message: String| Error::InvalidField { field, message };
        let name = DisplayName::parse(&self.name).map_err(|e| invalid("name", e.to_string()))?;
        // The set is checked where it is written, under the policy in force then.
        let qualifications = self.special_qualifications.into_iter().collect();
        let reason = Reason::parse(Some(self.reason.as_deref().unwrap_or("customer created")))
            .map_err(|e| invalid("reason", e.to_string()))?;
        let external_reference = self
            .external_reference
            .as_deref()
            .map(ExternalReference::parse)
            .transpose()
            .map_err(|e| invalid("external_reference", e.to_string()))?;
        Ok(CustomerDraft {
            name,
            change: QualificationChange {
                qualifications,
                evidence: self.evidence,
                reason,
            },
            external_reference,
        })
    }
}

impl CustomerDraft {
    /// The customer to write, with a new id, once its evidence is checked (its set is checked
    /// where it is written, [`insert_new`], under the policy in force then).
    pub fn into_new(self) -> Result<NewCustomer> {
        Ok(NewCustomer {
            id: CustomerId::new(),
            evidence: initial_evidence(&self.change)?,
            name: self.name,
            qualifications: self.change.qualifications,
            reason: self.change.reason,
            external_reference: self.external_reference,
        })
    }
}

/// The evidence a new customer's first qualification set needs: every qualification is added.
pub fn initial_evidence(change: &QualificationChange) -> Result<CustomerEvidence> {
    Ok(evidence_after_change(
        &[],
        &CustomerEvidence::new(),
        &change.qualifications.qualifications(),
        &change.evidence,
    )?)
}

/// Writes new customers, their first history versions and their `customer_created` events, in
/// the caller's transaction: the one write path of `create` and of the imports. Each external
/// reference is claimed first; a customer whose reference another customer holds (or an earlier
/// one of `customers`) is not written, and is returned (by its index) with that holder.
pub(crate) async fn insert_new(
    tx: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    in_force: &InForce,
    customers: &[NewCustomer],
) -> Result<Vec<(usize, ReferenceHolder)>> {
    // R3 under the version in force at the instant the customers are recorded with.
    for customer in customers {
        in_force
            .policy
            .qualification_set(customer.qualifications.iter())?;
    }
    let (references, ids): (Vec<&str>, Vec<uuid::Uuid>) = customers
        .iter()
        .filter_map(|c| Some((c.external_reference.as_ref()?.as_str(), c.id.0)))
        .unzip();
    let mut claimed = HashSet::new();
    let mut holders = HashMap::new();
    if !references.is_empty() {
        claimed = db::customers::claim_references(&mut *tx, &references, &ids)
            .await?
            .into_iter()
            .collect::<HashSet<CustomerId>>();
        let lost: Vec<&str> = customers
            .iter()
            .filter(|c| !claimed.contains(&c.id))
            .filter_map(|c| Some(c.external_reference.as_ref()?.as_str()))
            .collect();
        if !lost.is_empty() {
            for holder in db::customers::reference_holders(&mut *tx, &lost).await? {
                holders.insert(holder.external_reference.clone(), holder);
            }
        }
    }
    let mut skipped = Vec::new();
    let mut written = Vec::with_capacity(customers.len());
    for (i, c) in customers.iter().enumerate() {
        match &c.external_reference {
            // Held by a customer stored already, or by an earlier one of `customers`.
            Some(reference) if !claimed.contains(&c.id) => {
                let holder = holders.get(reference.as_str()).ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!(
                        "external reference `{}` was neither claimed nor held",
                        reference.as_str()
                    ))
                })?;
                skipped.push((i, holder.clone()));
            }
            _ => written.push(c),
        }
    }
    if written.is_empty() {
        return Ok(skipped);
    }
    db::customers::insert_many(&mut *tx, &ctx.actor, &written, in_force.at).await?;
    let events: Vec<NewEvent> = written
        .iter()
        .map(|c| {
            let mut payload = json!({
                "name": c.name.as_str(),
                "special_qualifications": c.qualifications,
                "evidence": c.evidence,
                "reason": c.reason.as_str(),
                "policy_version": in_force.version,
            });
            if let Some(reference) = &c.external_reference {
                payload["external_reference"] = json!(reference.as_str());
            }
            NewEvent {
                event_type: EventType::CustomerCreated,
                customer_id: Some(c.id),
                partner_id: None,
                payload,
            }
        })
        .collect();
    db::events::append_many(&mut *tx, &ctx.actor, &events).await?;
    Ok(skipped)
}

/// Creates a customer with its first qualification set (version 1 of its history), claiming its
/// external reference; refused if another customer has that reference.
pub async fn create(pool: &PgPool, ctx: &RequestContext, draft: CustomerDraft) -> Result<Customer> {
    ctx.require(Action::ManageCustomers)?;
    let mut tx = pool.begin().await?;
    let in_force = super::policies::for_write(&mut tx).await?;
    // The set first, as the body lists it, then its evidence.
    in_force
        .policy
        .qualification_set(draft.change.qualifications.iter())?;
    let new = draft.into_new()?;
    if let Some((_, holder)) = insert_new(&mut tx, ctx, &in_force, std::slice::from_ref(&new))
        .await?
        .pop()
    {
        return Err(Error::ExternalReferenceTaken {
            reference: holder.external_reference,
            customer: holder.customer_id,
        });
    }
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
    // Before the customer lock, as every decision takes them (`db::policies`).
    db::policies::lock_shared(&mut *tx).await?;
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
    let in_force = super::policies::in_force_now(&mut tx).await?;
    let before = current.special_qualifications;
    let after = in_force
        .policy
        .qualification_set(change.qualifications.iter())?;
    let evidence = evidence_after_change(
        &before.qualifications(),
        &current.evidence,
        &after.qualifications(),
        &change.evidence,
    )?;
    let version = db::customers::set_qualifications(&mut *tx, id, after, in_force.at).await?;
    db::customers::insert_history(
        &mut *tx,
        &ctx.actor,
        id,
        version,
        after,
        &evidence,
        &change.reason,
        in_force.at,
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
                "policy_version": in_force.version,
            }),
        },
    )
    .await?;
    let mut warnings = Vec::new();
    let locked_out = in_force.policy.gcc_lockout_segments();
    if !after.has(SpecialQualification::Gcc)
        && !locked_out.is_empty()
        && db::subscriptions::has_gcc_history(&mut *tx, id).await?
    {
        warnings.push(Warning {
            code: "gcc_lockout_still_applies",
            message: format!(
                "The customer has a GCC subscription in its history, so it still may not buy \
                 {} subscriptions (R4).",
                listing(locked_out, "or")
            ),
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
