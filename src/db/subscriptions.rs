//! Subscription history: inserted, never deleted.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::{Context, Keyset, Result};
use crate::domain::{CustomerId, OfferId, PartnerId, Segment, SubscriptionId, SubscriptionStatus};

/// A row of `subscriptions`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRow {
    /// Subscription id.
    pub id: SubscriptionId,
    /// The customer who owns it.
    pub customer_id: CustomerId,
    /// The partner who sold it.
    pub partner_id: PartnerId,
    /// The offer bought.
    pub offer_id: OfferId,
    /// The offer's segment.
    pub segment: Segment,
    /// Number of licenses.
    pub quantity: i32,
    /// Lifecycle state.
    pub status: SubscriptionStatus,
    /// When it was created: the instant of its decision, under the customer's lock.
    pub created_at: DateTime<Utc>,
    /// The policy version it was decided under: the one in force at `created_at`.
    pub policy_version: i32,
}

/// `query_as!` of a [`SubscriptionRow`]: the one select list of the table, then `$rest` of the
/// statement (sqlx joins string literals with `+`).
macro_rules! select_subscriptions {
    ($rest:tt, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            SubscriptionRow,
            r#"select id as "id: SubscriptionId", customer_id as "customer_id: CustomerId",
                      partner_id as "partner_id: PartnerId", offer_id as "offer_id: OfferId",
                      segment as "segment: Segment", quantity,
                      status as "status: SubscriptionStatus", created_at, policy_version
               from subscriptions "# + $rest,
            $($arg),+
        )
    };
}

/// A page of a customer's subscriptions, oldest first; only those sold by `seller` when given.
pub async fn list_for_customer(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    seller: Option<PartnerId>,
    page: Keyset,
) -> Result<Vec<SubscriptionRow>> {
    select_subscriptions!(
        "where customer_id = $1 and id > $2 and ($4::uuid is null or partner_id = $4)
         order by id limit $3",
        customer.0,
        page.after(),
        page.limit,
        seller.map(|p| p.0)
    )
    .fetch_all(db)
    .await
    .context("subscriptions::list_for_customer")
}

/// One of a customer's subscriptions (sold by `seller`, when given), if it exists.
pub async fn get(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    seller: Option<PartnerId>,
    id: SubscriptionId,
) -> Result<Option<SubscriptionRow>> {
    select_subscriptions!(
        "where customer_id = $1 and id = $2 and ($3::uuid is null or partner_id = $3)",
        customer.0,
        id.0,
        seller.map(|p| p.0)
    )
    .fetch_optional(db)
    .await
    .context("subscriptions::get")
}

/// Whether the customer's history holds any GCC subscription (R4), whatever its status.
pub async fn has_gcc_history(db: impl PgExecutor<'_>, customer: CustomerId) -> Result<bool> {
    sqlx::query_scalar!(
        r#"select exists(select 1 from subscriptions where customer_id = $1 and segment = 'gcc') as "exists!""#,
        customer.0
    )
    .fetch_one(db)
    .await.context("subscriptions::has_gcc_history")
}

/// Sets a subscription's status; the caller holds the customer's lock.
pub async fn set_status(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    id: SubscriptionId,
    status: SubscriptionStatus,
) -> Result<()> {
    sqlx::query!(
        "update subscriptions set status = $3 where customer_id = $1 and id = $2",
        customer.0,
        id.0,
        status.as_str()
    )
    .execute(db)
    .await
    .context("subscriptions::set_status")?;
    Ok(())
}
