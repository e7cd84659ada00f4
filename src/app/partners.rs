//! Partner management: creation, and the partner's profile (reseller qualifications with evidence,
//! indirect provider links), kept with its full history.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::{Error, Precondition, RequestContext, Result};
use crate::{
    db::{
        self, Keyset,
        customers::{Customer, CustomerFilter},
        events::NewEvent,
        partners::{Partner, PartnerEvidence, PartnerFilter, PartnerName, ProfileRecord},
    },
    domain::{
        Action, DisplayName, EventType, PartnerId, PartnerKind, Reason, ResellerQualification,
        evidence_after_change,
    },
};

/// Reseller qualifications to record, with their evidence and reason.
#[derive(Debug, Clone)]
pub struct ResellerQualificationChange {
    /// The new set.
    pub qualifications: BTreeSet<ResellerQualification>,
    /// Evidence given with this change, by qualification.
    pub evidence: PartnerEvidence,
    /// Why.
    pub reason: Reason,
}

impl ResellerQualificationChange {
    fn sorted(&self) -> Vec<ResellerQualification> {
        self.qualifications.iter().copied().collect()
    }
}

/// Creates a partner with its first profile (version 1 of its history).
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    name: &DisplayName,
    kind: PartnerKind,
    change: &ResellerQualificationChange,
) -> Result<Partner> {
    ctx.require(Action::ManagePartners)?;
    let qualifications = change.sorted();
    let evidence = evidence_after_change(
        &[],
        &PartnerEvidence::new(),
        &qualifications,
        &change.evidence,
    )?;
    let mut tx = pool.begin().await?;
    let partner = db::partners::insert(
        &mut *tx,
        PartnerId::new(),
        name.as_str(),
        kind,
        &qualifications,
    )
    .await?;
    db::partners::insert_history(&mut *tx, &ctx.actor, &partner, &evidence, &change.reason).await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::PartnerCreated,
            customer_id: None,
            partner_id: Some(partner.id),
            payload: json!({
                "name": partner.name,
                "kind": kind,
                "reseller_qualifications": qualifications,
                "evidence": evidence,
                "reason": change.reason.as_str(),
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(partner)
}

/// One partner (partner roles see only their own).
pub async fn get(pool: &PgPool, ctx: &RequestContext, id: PartnerId) -> Result<Partner> {
    ctx.check_partner(id)?;
    ctx.require(Action::ReadPartners)?;
    db::partners::get(pool, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))
}

/// A page of partners (partner roles see only their own).
pub async fn list(pool: &PgPool, ctx: &RequestContext, page: Keyset) -> Result<Vec<Partner>> {
    ctx.require(Action::ReadPartners)?;
    match ctx.partner_scope() {
        Some(own) if page.after.is_none_or(|after| own.0 > after) => {
            Ok(db::partners::get(pool, own).await?.into_iter().collect())
        }
        Some(_) => Ok(Vec::new()),
        None => Ok(db::partners::list(pool, page).await?),
    }
}

/// A page of partners matching `filter` (partner roles find only their own).
pub async fn search(
    pool: &PgPool,
    ctx: &RequestContext,
    filter: &PartnerFilter<'_>,
    page: Keyset,
) -> Result<Vec<Partner>> {
    ctx.require(Action::ReadPartners)?;
    Ok(db::partners::search(pool, ctx.partner_scope(), filter, page).await?)
}

/// A page of the customers related to a partner (partner roles: only their own partner's).
pub async fn customers(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
    page: Keyset,
) -> Result<Vec<Customer>> {
    ctx.check_partner(id)?;
    ctx.require(Action::ReadCustomers)?;
    if db::partners::get(pool, id).await?.is_none() {
        return Err(Error::PartnerNotFound(id));
    }
    Ok(db::customers::search(pool, Some(id), &CustomerFilter::default(), page).await?)
}

/// The names of the providers an indirect reseller is or ever was connected to, to show its
/// profile and history; a partner role sees them for its own partner only.
pub async fn provider_names(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
) -> Result<Vec<PartnerName>> {
    ctx.check_partner(id)?;
    ctx.require(Action::ReadPartners)?;
    Ok(db::partners::provider_names(pool, id).await?)
}

/// Locks the partner (serializing with its purchases and other profile changes), checks the
/// caller's version, and returns the partner with its current profile record.
async fn lock_at_version(
    tx: &mut sqlx::PgConnection,
    id: PartnerId,
    precondition: Precondition,
) -> Result<(Partner, ProfileRecord)> {
    let partner = db::partners::lock_for_update(tx, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))?;
    if !precondition.holds(partner.version) {
        return Err(Error::PartnerVersionMismatch(Box::new(partner)));
    }
    let record = db::partners::profile_at(&mut *tx, id, None)
        .await?
        .ok_or(Error::PartnerNotFound(id))?;
    Ok((partner, record))
}

/// Replaces a partner's reseller qualifications; added ones need evidence.
pub async fn set_reseller_qualifications(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
    precondition: Precondition,
    change: &ResellerQualificationChange,
) -> Result<Partner> {
    ctx.check_partner(id)?;
    ctx.require(Action::ManagePartners)?;
    let after = change.sorted();
    let mut tx = pool.begin().await?;
    let (before, record) = lock_at_version(&mut tx, id, precondition).await?;
    let evidence = evidence_after_change(
        &before.reseller_qualifications,
        &record.evidence,
        &after,
        &change.evidence,
    )?;
    db::partners::set_reseller_qualifications(&mut *tx, id, &after).await?;
    let partner = db::partners::get(&mut *tx, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))?;
    db::partners::insert_history(&mut *tx, &ctx.actor, &partner, &evidence, &change.reason).await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::PartnerQualificationsSet,
            customer_id: None,
            partner_id: Some(id),
            payload: json!({
                "before": before.reseller_qualifications,
                "after": after,
                "evidence": evidence,
                "reason": change.reason.as_str(),
                "version": partner.version,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(partner)
}

/// Replaces the providers an indirect reseller sells through.
pub async fn set_indirect_providers(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
    precondition: Precondition,
    providers: &BTreeSet<PartnerId>,
    reason: &Reason,
) -> Result<Partner> {
    ctx.check_partner(id)?;
    ctx.require(Action::ManagePartners)?;
    let after: Vec<_> = providers.iter().copied().collect();
    let mut tx = pool.begin().await?;
    let (before, record) = lock_at_version(&mut tx, id, precondition).await?;
    if before.kind != PartnerKind::IndirectReseller {
        return Err(Error::PartnerNotIndirectReseller(id));
    }
    let kinds = db::partners::kinds(&mut *tx, &after).await?;
    for provider in &after {
        match kinds.iter().find(|(found, _)| found == provider) {
            None => return Err(Error::ProviderNotFound(*provider)),
            Some((_, PartnerKind::IndirectProvider)) => {}
            Some(_) => return Err(Error::ProviderNotIndirectProvider(*provider)),
        }
    }
    db::partners::replace_providers(&mut tx, id, &after).await?;
    let partner = db::partners::get(&mut *tx, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))?;
    db::partners::insert_history(&mut *tx, &ctx.actor, &partner, &record.evidence, reason).await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::PartnerProvidersSet,
            customer_id: None,
            partner_id: Some(id),
            payload: json!({
                "before": before.indirect_providers,
                "after": after,
                "reason": reason.as_str(),
                "version": partner.version,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(partner)
}

/// The profile in force now, or at `at`.
pub async fn profile(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
    at: Option<DateTime<Utc>>,
) -> Result<ProfileRecord> {
    ctx.check_partner(id)?;
    ctx.require(Action::ReadPartners)?;
    if let Some(record) = db::partners::profile_at(pool, id, at).await? {
        return Ok(record);
    }
    match (at, db::partners::get(pool, id).await?) {
        (Some(at), Some(_)) => Err(Error::NotRecordedAt(format!("partner {id}"), at)),
        _ => Err(Error::PartnerNotFound(id)),
    }
}

/// A page of every profile the partner ever had, oldest first.
pub async fn profile_history(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
    after_version: i64,
    limit: i64,
) -> Result<Vec<ProfileRecord>> {
    ctx.check_partner(id)?;
    ctx.require(Action::ReadPartners)?;
    let rows = db::partners::profile_history(pool, id, after_version, limit).await?;
    if rows.is_empty() && db::partners::get(pool, id).await?.is_none() {
        return Err(Error::PartnerNotFound(id));
    }
    Ok(rows)
}
