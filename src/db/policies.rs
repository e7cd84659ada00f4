//! Published policy versions (issue 14) and the lock that makes their switch-over exact.
//!
//! A writer that decides under the policy takes POLICY_LOCK shared before any row lock
//! ([`lock_shared`], or folded into its first statement), and reads the instant of its decision
//! and the version in force then in a later statement ([`in_force_now`]); publishing takes the
//! lock exclusively ([`lock_exclusive`]) and refuses an effective instant earlier than its own
//! clock (the `policy_versions_publish` trigger re-checks both). README, "Policy versions".

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgExecutor, types::Json};

use super::{Context, Result};
use crate::domain::PolicyDocument;

/// Which version is in force, and the digest of its document: instances cache checked policies
/// by digest, so a cache can be stale only in lacking a version, never in holding a wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInForce {
    /// The version number.
    pub version: i32,
    /// The SHA-256 of its stored document.
    pub digest: [u8; 32],
}

/// A decision's instant on the database clock, and the version in force at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `clock_timestamp()` when the facts were read. A write records the instant it read under
    /// its locks instead (a purchase's `purchase_record`), with the version in force then.
    pub at: DateTime<Utc>,
    /// The version in force at `at`.
    pub policy: VersionInForce,
}

/// A published version as stored.
#[derive(Debug, Clone)]
pub struct PolicyVersionRow {
    /// The version number.
    pub version: i32,
    /// The operator's document.
    pub document: Value,
    /// From when it is in force (`-infinity` for version 1 is read as the earliest instant).
    pub effective_from: DateTime<Utc>,
    /// Why it was published.
    pub reason: String,
    /// Who published it (an actor id).
    pub published_by: String,
    /// When.
    pub published_at: DateTime<Utc>,
    /// The SHA-256 of the document.
    pub digest: Vec<u8>,
}

/// A stored SHA-256 digest.
pub(super) fn digest(bytes: Vec<u8>) -> sqlx::Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode("a policy digest is not 32 bytes".into()))
}

/// Takes POLICY_LOCK shared, until the transaction ends.
pub async fn lock_shared(db: impl PgExecutor<'_>) -> Result<()> {
    sqlx::query!("select policy_lock_shared()")
        .execute(db)
        .await
        .context("policies::lock_shared")?;
    Ok(())
}

/// Takes POLICY_LOCK exclusively, until the transaction ends: decisions wait meanwhile.
pub async fn lock_exclusive(db: impl PgExecutor<'_>) -> Result<()> {
    sqlx::query!("select pg_advisory_xact_lock(1346589250, 1)")
        .execute(db)
        .await
        .context("policies::lock_exclusive")?;
    Ok(())
}

/// The instant of a decision and the version in force then; call after [`lock_shared`], in a
/// later statement.
pub async fn in_force_now(db: impl PgExecutor<'_>) -> Result<Decision> {
    let row = sqlx::query!(
        r#"select t.at as "at!", p.version as "version!", p.digest as "digest!"
           from (select clock_timestamp() as at) t
           cross join lateral policy_in_force(t.at) p"#
    )
    .fetch_one(db)
    .await
    .context("policies::in_force_now")?;
    Ok(Decision {
        at: row.at,
        policy: VersionInForce {
            version: row.version,
            digest: digest(row.digest).context("policies::in_force_now")?,
        },
    })
}

/// The version in force at `at`.
pub async fn in_force_at(db: impl PgExecutor<'_>, at: DateTime<Utc>) -> Result<VersionInForce> {
    let row = sqlx::query!(
        r#"select version as "version!", digest as "digest!" from policy_in_force($1)"#,
        at
    )
    .fetch_one(db)
    .await
    .context("policies::in_force_at")?;
    Ok(VersionInForce {
        version: row.version,
        digest: digest(row.digest).context("policies::in_force_at")?,
    })
}

/// One published version, if it exists.
pub async fn get(db: impl PgExecutor<'_>, version: i32) -> Result<Option<PolicyVersionRow>> {
    sqlx::query_as!(
        PolicyVersionRow,
        r#"select version, document,
                  greatest(effective_from, '0001-01-01Z') as "effective_from!",
                  reason, published_by, published_at, digest
           from policy_versions where version = $1"#,
        version
    )
    .fetch_optional(db)
    .await
    .context("policies::get")
}

/// Every published version, oldest first (a handful: they are published by hand).
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<PolicyVersionRow>> {
    sqlx::query_as!(
        PolicyVersionRow,
        r#"select version, document,
                  greatest(effective_from, '0001-01-01Z') as "effective_from!",
                  reason, published_by, published_at, digest
           from policy_versions order by version"#
    )
    .fetch_all(db)
    .await
    .context("policies::list")
}

/// The newest version and its effective instant, and the database clock now; call after
/// [`lock_exclusive`], in a later statement.
pub struct Latest {
    /// The newest version's number.
    pub version: i32,
    /// From when it is in force.
    pub effective_from: DateTime<Utc>,
    /// `clock_timestamp()`.
    pub now: DateTime<Utc>,
}

/// See [`Latest`].
pub async fn latest(db: impl PgExecutor<'_>) -> Result<Latest> {
    sqlx::query_as!(
        Latest,
        r#"select version, greatest(effective_from, '0001-01-01Z') as "effective_from!",
                  clock_timestamp() as "now!"
           from policy_versions order by version desc limit 1"#
    )
    .fetch_one(db)
    .await
    .context("policies::latest")
}

/// Stores a checked document as the next version; the trigger derives the digest and the rules
/// the database's own checks read.
pub async fn insert(
    db: impl PgExecutor<'_>,
    document: &PolicyDocument,
    effective_from: DateTime<Utc>,
    reason: &str,
    published_by: &str,
) -> Result<PolicyVersionRow> {
    sqlx::query_as!(
        PolicyVersionRow,
        r#"insert into policy_versions (version, document, effective_from, reason, published_by)
           values ($1, $2, $3, $4, $5)
           returning version, document, effective_from, reason, published_by, published_at, digest"#,
        i32::try_from(document.version).unwrap_or(i32::MAX),
        Json(document) as _,
        effective_from,
        reason,
        published_by
    )
    .fetch_one(db)
    .await
    .context("policies::insert")
}
