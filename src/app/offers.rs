//! The offer catalog.

use serde_json::json;
use sqlx::PgPool;

use super::{Error, RequestContext, Result};
use crate::{
    db::{self, Keyset, events::NewEvent, offers::Offer},
    domain::{Action, DisplayName, EventType, OfferId, OfferTerms, ProductKind, Segment},
};

/// Creates an offer; a special offer must be of a product kind the policy sells in its segment (R1).
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    name: &DisplayName,
    terms: OfferTerms,
) -> Result<Offer> {
    ctx.require(Action::ManageOffers)?;
    let mut tx = pool.begin().await?;
    let in_force = super::policies::for_write(&mut tx).await?;
    if !in_force.policy.is_sellable(terms) {
        return Err(Error::OfferNotLicenseBased {
            segment: terms.segment,
            product_kind: terms.product_kind,
        });
    }
    let offer = db::offers::insert(&mut *tx, OfferId::new(), name.as_str(), terms).await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::OfferCreated,
            customer_id: None,
            partner_id: None,
            payload: json!({ "offer_id": offer.id, "name": offer.name, "segment": offer.segment, "product_kind": offer.product_kind }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(offer)
}

/// One offer.
pub async fn get(pool: &PgPool, ctx: &RequestContext, id: OfferId) -> Result<Offer> {
    ctx.require(Action::ReadOffers)?;
    db::offers::get(pool, id)
        .await?
        .ok_or(Error::OfferNotFound(id))
}

/// A page of the catalog, optionally restricted to one segment and/or product kind.
pub async fn list(
    pool: &PgPool,
    ctx: &RequestContext,
    segment: Option<Segment>,
    product_kind: Option<ProductKind>,
    page: Keyset,
) -> Result<Vec<Offer>> {
    ctx.require(Action::ReadOffers)?;
    let terms: Vec<_> = OfferTerms::all()
        .filter(|t| segment.is_none_or(|s| s == t.segment))
        .filter(|t| product_kind.is_none_or(|k| k == t.product_kind))
        .collect();
    Ok(db::offers::list_with_terms(pool, &terms, None, page).await?)
}
