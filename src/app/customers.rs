//! Customer management: creation, qualification sets, partner relationships, subscription history.

use serde_json::json;
use sqlx::PgPool;

use super::{Error, EventType, RequestContext, Result};
use crate::{
    db::{self, Keyset, customers::Customer, events::NewEvent, subscriptions::Subscription},
    domain::{CustomerId, CustomerQualification, DisplayName, PartnerId, SubscriptionId},
};

/// Creates a customer and records `customer_created`.
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    name: &DisplayName,
    qualifications: CustomerQualification,
) -> Result<Customer> {
    let mut tx = pool.begin().await?;
    let customer =
        db::customers::insert(&mut *tx, CustomerId::new(), name.as_str(), qualifications).await?;
    db::events::append(
        &mut *tx,
        ctx,
        NewEvent {
            event_type: EventType::CustomerCreated,
            customer_id: Some(customer.id),
            partner_id: None,
            payload: json!({ "name": customer.name, "special_qualifications": qualifications }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(customer)
}

/// One customer.
pub async fn get(pool: &PgPool, id: CustomerId) -> Result<Customer> {
    db::customers::get(pool, id)
        .await?
        .ok_or(Error::CustomerNotFound(id))
}

/// A page of customers.
pub async fn list(pool: &PgPool, page: Keyset) -> Result<Vec<Customer>> {
    Ok(db::customers::list(pool, page).await?)
}

/// Replaces a customer's qualification set under the customer's lock, the same lock purchases
/// take, so every purchase is decided under the set in force when it commits.
pub async fn set_qualifications(
    pool: &PgPool,
    ctx: &RequestContext,
    id: CustomerId,
    qualifications: CustomerQualification,
    reason: Option<&str>,
) -> Result<Customer> {
    let mut tx = pool.begin().await?;
    let mut customer = db::customers::lock_for_update(&mut *tx, id)
        .await?
        .ok_or(Error::CustomerNotFound(id))?;
    customer.version = db::customers::set_qualifications(&mut *tx, id, qualifications).await?;
    db::events::append(
        &mut *tx,
        ctx,
        NewEvent {
            event_type: EventType::CustomerQualificationsSet,
            customer_id: Some(id),
            partner_id: None,
            payload: json!({
                "before": customer.special_qualifications,
                "after": qualifications,
                "reason": reason,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    customer.special_qualifications = qualifications;
    Ok(customer)
}

/// Records that `partner` has a relationship with the customer; `false` if it already had.
pub async fn link_partner(
    pool: &PgPool,
    ctx: &RequestContext,
    customer: CustomerId,
    partner: PartnerId,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    if db::customers::get(&mut *tx, customer).await?.is_none() {
        return Err(Error::CustomerNotFound(customer));
    }
    if db::partners::get(&mut *tx, partner).await?.is_none() {
        return Err(Error::PartnerNotFound(partner));
    }
    let created = db::customers::link_partner(&mut *tx, customer, partner).await?;
    if created {
        db::events::append(
            &mut *tx,
            ctx,
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

/// The partners a customer has relationships with.
pub async fn partners(pool: &PgPool, id: CustomerId) -> Result<Vec<PartnerId>> {
    let mut tx = pool.begin().await?;
    if db::customers::get(&mut *tx, id).await?.is_none() {
        return Err(Error::CustomerNotFound(id));
    }
    Ok(db::customers::partners(&mut *tx, id).await?)
}

/// A page of a customer's subscription history.
pub async fn subscriptions(
    pool: &PgPool,
    id: CustomerId,
    page: Keyset,
) -> Result<Vec<Subscription>> {
    let mut tx = pool.begin().await?;
    if db::customers::get(&mut *tx, id).await?.is_none() {
        return Err(Error::CustomerNotFound(id));
    }
    Ok(db::subscriptions::list_for_customer(&mut *tx, id, page).await?)
}

/// One of a customer's subscriptions.
pub async fn subscription(
    pool: &PgPool,
    customer: CustomerId,
    id: SubscriptionId,
) -> Result<Subscription> {
    db::subscriptions::get(pool, customer, id)
        .await?
        .ok_or(Error::SubscriptionNotFound(customer, id))
}
