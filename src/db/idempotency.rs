//! Idempotency keys of purchase requests.

use serde_json::Value;
use sqlx::PgExecutor;

use crate::domain::{CustomerId, SubscriptionId};

/// What was stored for a key.
#[derive(Debug)]
pub struct StoredOutcome {
    /// The request the key was first used with.
    pub request: Value,
    /// The outcome answered to it.
    pub outcome: Value,
}

/// Serializes requests of one owner that use the same key until the holder's transaction ends, so a retry
/// racing the original waits for it and then sees its outcome. An advisory lock on the key's hash
/// (a collision merely serializes two keys) keeps the stored row complete and written once.
pub async fn lock(db: impl PgExecutor<'_>, owner: &str, key: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "select pg_advisory_xact_lock(1346589249, hashtext($1 || ' ' || $2))",
        owner,
        key
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The outcome stored for `owner`'s `key`, if any.
pub async fn find(
    db: impl PgExecutor<'_>,
    owner: &str,
    key: &str,
) -> sqlx::Result<Option<StoredOutcome>> {
    sqlx::query_as!(
        StoredOutcome,
        "select request, outcome from idempotency_keys where owner = $1 and key = $2",
        owner,
        key
    )
    .fetch_optional(db)
    .await
}

/// Stores the outcome for `key`, in the transaction that produced it.
pub async fn insert(
    db: impl PgExecutor<'_>,
    owner: &str,
    key: &str,
    customer: CustomerId,
    request: &Value,
    outcome: &Value,
    subscription: Option<SubscriptionId>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into idempotency_keys (owner, key, customer_id, request, outcome, subscription_id)
         values ($6, $1, $2, $3, $4, $5)",
        key,
        customer.0,
        request,
        outcome,
        subscription.map(|s| s.0),
        owner
    )
    .execute(db)
    .await?;
    Ok(())
}
