//! Partner management: creation, reseller qualifications, indirect provider links.

use std::collections::BTreeSet;

use serde_json::json;
use sqlx::PgPool;

use super::{Error, EventType, RequestContext, Result};
use crate::{
    db::{self, Keyset, events::NewEvent, partners::Partner},
    domain::{DisplayName, PartnerId, PartnerKind, ResellerQualification},
};

/// Creates a partner and records `partner_created`.
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    name: &DisplayName,
    kind: PartnerKind,
    reseller_qualifications: &BTreeSet<ResellerQualification>,
) -> Result<Partner> {
    let qualifications: Vec<_> = reseller_qualifications.iter().copied().collect();
    let mut tx = pool.begin().await?;
    let partner = db::partners::insert(
        &mut *tx,
        PartnerId::new(),
        name.as_str(),
        kind,
        &qualifications,
    )
    .await?;
    db::events::append(
        &mut *tx,
        ctx,
        NewEvent {
            event_type: EventType::PartnerCreated,
            customer_id: None,
            partner_id: Some(partner.id),
            payload: json!({ "name": partner.name, "kind": kind, "reseller_qualifications": qualifications }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(partner)
}

/// One partner.
pub async fn get(pool: &PgPool, id: PartnerId) -> Result<Partner> {
    db::partners::get(pool, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))
}

/// A page of partners.
pub async fn list(pool: &PgPool, page: Keyset) -> Result<Vec<Partner>> {
    Ok(db::partners::list(pool, page).await?)
}

/// Replaces a partner's reseller qualifications, serialized with purchases by that partner.
pub async fn set_reseller_qualifications(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
    qualifications: &BTreeSet<ResellerQualification>,
    reason: Option<&str>,
) -> Result<Partner> {
    let after: Vec<_> = qualifications.iter().copied().collect();
    let mut tx = pool.begin().await?;
    let (_, before) = db::partners::lock_for_update(&mut *tx, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))?;
    db::partners::set_reseller_qualifications(&mut *tx, id, &after).await?;
    db::events::append(
        &mut *tx,
        ctx,
        NewEvent {
            event_type: EventType::PartnerQualificationsSet,
            customer_id: None,
            partner_id: Some(id),
            payload: json!({ "before": before, "after": after, "reason": reason }),
        },
    )
    .await?;
    let partner = db::partners::get(&mut *tx, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))?;
    tx.commit().await?;
    Ok(partner)
}

/// Replaces the providers an indirect reseller sells through.
pub async fn set_indirect_providers(
    pool: &PgPool,
    ctx: &RequestContext,
    id: PartnerId,
    providers: &BTreeSet<PartnerId>,
) -> Result<Partner> {
    let after: Vec<_> = providers.iter().copied().collect();
    let mut tx = pool.begin().await?;
    let (kind, _) = db::partners::lock_for_update(&mut *tx, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))?;
    if kind != PartnerKind::IndirectReseller {
        return Err(Error::NotAnIndirectReseller(id));
    }
    let kinds = db::partners::kinds(&mut *tx, &after).await?;
    for provider in &after {
        match kinds.iter().find(|(found, _)| found == provider) {
            None => return Err(Error::ProviderNotFound(*provider)),
            Some((_, PartnerKind::IndirectProvider)) => {}
            Some(_) => return Err(Error::NotAnIndirectProvider(*provider)),
        }
    }
    let before = db::partners::providers(&mut *tx, id).await?;
    db::partners::replace_providers(&mut tx, id, &after).await?;
    db::events::append(
        &mut *tx,
        ctx,
        NewEvent {
            event_type: EventType::PartnerProvidersSet,
            customer_id: None,
            partner_id: Some(id),
            payload: json!({ "before": before, "after": after }),
        },
    )
    .await?;
    let partner = db::partners::get(&mut *tx, id)
        .await?
        .ok_or(Error::PartnerNotFound(id))?;
    tx.commit().await?;
    Ok(partner)
}
