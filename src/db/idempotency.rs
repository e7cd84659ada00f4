//! Idempotency keys of purchase requests. A purchase reads and stores its key together with other
//! data, in `db::purchases`, to save round trips.

use serde_json::Value;
use sqlx::PgExecutor;

use super::{Context, Result};
use crate::domain::CustomerId;

/// What was stored for a key.
#[derive(Debug)]
pub struct KeyRecord {
    /// The request the key was first used with.
    pub request: Value,
    /// The outcome answered to it.
    pub outcome: Value,
}

/// Serializes requests of one owner for one customer that use the same key until the holder's
/// transaction ends, so a retry racing the original waits for it and then sees its outcome. An
/// advisory lock on the hash of customer, owner and key (a collision merely serializes two keys)
/// keeps the stored row complete and written once. Keys are scoped per customer (README,
/// "Scaling out: Citus"), so the lock names the customer too. The same statement takes
/// POLICY_LOCK shared ([`super::policies`]): a purchase takes it before any row lock.
pub async fn lock(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    owner: &str,
    key: &str,
) -> Result<()> {
    sqlx::query!(
        "select policy_lock_shared(),
                pg_advisory_xact_lock(1346589249, hashtext($3::uuid::text || ' ' || $1 || ' ' || $2))",
        owner,
        key,
        customer.0
    )
    .execute(db)
    .await
    .context("idempotency::lock")?;
    Ok(())
}
