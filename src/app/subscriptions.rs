//! The lifecycle of a subscription after its purchase.

use serde_json::json;
use sqlx::PgPool;

use super::{Error, RequestContext, Result, customers};
use crate::{
    db::{self, events::NewEvent, subscriptions::SubscriptionRow},
    domain::{Action, CustomerId, EventType, Reason, SubscriptionId, SubscriptionStatus},
};

/// Puts a subscription in `status` and records `subscription_status_changed` with the status
/// before and after and the reason. Setting the status it already has changes nothing and records
/// nothing.
///
/// Runs under the customer's lock, the lock purchases take, so a customer's subscription history
/// and its events are written one change at a time.
pub async fn set_status(
    pool: &PgPool,
    ctx: &RequestContext,
    customer: CustomerId,
    id: SubscriptionId,
    status: SubscriptionStatus,
    reason: &Reason,
) -> Result<SubscriptionRow> {
    let mut tx = pool.begin().await?;
    // Visibility of both ids before permission: partner roles see only their partner's sales.
    customers::ensure_visible(&mut tx, ctx, customer).await?;
    if db::subscriptions::get(&mut *tx, customer, ctx.partner_scope(), id)
        .await?
        .is_none()
    {
        return Err(Error::SubscriptionNotFound(customer, id));
    }
    ctx.require(Action::ManageSubscriptions)?;
    if db::customers::lock_for_update(&mut *tx, customer)
        .await?
        .is_none()
    {
        return Err(Error::CustomerNotFound(customer));
    }
    let mut subscription = db::subscriptions::get(&mut *tx, customer, None, id)
        .await?
        .ok_or(Error::SubscriptionNotFound(customer, id))?;
    let before = subscription.status;
    if before == status {
        return Ok(subscription);
    }
    if !before.may_become(status) {
        return Err(Error::InvalidStatusTransition(id, before, status));
    }
    db::subscriptions::set_status(&mut *tx, customer, id, status).await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::SubscriptionStatusChanged,
            customer_id: Some(customer),
            partner_id: Some(subscription.partner_id),
            payload: json!({
                "subscription_id": id,
                "before": before,
                "after": status,
                "reason": reason.as_str(),
            }),
        },
    )
    .await?;
    tx.commit().await?;
    subscription.status = status;
    Ok(subscription)
}
