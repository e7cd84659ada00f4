//! Bearer tokens, stored as the SHA-256 of their secret.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Context, Keyset, Result};
use crate::domain::{PartnerId, Principal, Role};

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c05", "role": "sales_agent", "partner_id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c02",
    "label": "ordering system", "created_by": "system", "created_at": "2026-11-24T10:00:00.123456Z",
    "expires_at": "2027-02-22T10:00:00.123456Z", "revoked_at": null}))]
pub struct Token {
    /// Token (and principal) id.
    pub id: Uuid,
    /// The role it acts in.
    pub role: Role,
    /// For partner roles, its partner.
    pub partner_id: Option<PartnerId>,
    /// Who holds it, in words.
    pub label: String,
    /// The principal that created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token to store.
#[derive(Debug)]
pub struct NewToken<'a> {
    /// Its id.
    pub id: Uuid,
    /// SHA-256 of the secret.
    pub secret_hash: &'a [u8; 32],
    /// The role.
    pub role: Role,
    /// For partner roles, the partner.
    pub partner_id: Option<PartnerId>,
    /// Who holds it.
    pub label: &'a str,
    /// Who creates it.
    pub created_by: &'a str,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// Stores a token.
pub async fn insert(db: impl PgExecutor<'_>, new: &NewToken<'_>) -> Result<Token> {
    sqlx::query_as!(
        Token,
        r#"insert into api_tokens (id, secret_hash, role, partner_id, label, created_by, expires_at)
           values ($1, $2, $3, $4, $5, $6, $7)
           returning id, role as "role: Role", partner_id as "partner_id: PartnerId", label, created_by,
                     created_at, expires_at, revoked_at"#,
        new.id,
        &new.secret_hash[..],
        new.role.as_str(),
        new.partner_id.map(|p| p.0),
        new.label,
        new.created_by,
        new.expires_at
    )
    .fetch_one(db)
    .await.context("tokens::insert")
}

/// The principal of an unexpired, unrevoked token with this secret hash; stamps its
/// `last_used_at` in the same statement when the stamp is a minute old or more, so a busy token
/// costs one row write a minute, not one per verification.
pub async fn find_active(
    db: impl PgExecutor<'_>,
    secret_hash: &[u8; 32],
) -> Result<Option<(Principal, DateTime<Utc>)>> {
    // The stamp is re-checked on the row being updated (not only on the snapshot `found` read),
    // so of instances verifying the same token at once, one writes and the others skip.
    let row = sqlx::query!(
        r#"with found as (
               select id, role, partner_id, expires_at
               from api_tokens
               where secret_hash = $1 and revoked_at is null and expires_at > now()
           ), stamped as (
               update api_tokens t set last_used_at = now()
               from found
               where t.id = found.id
                 and (t.last_used_at is null or t.last_used_at < now() - interval '1 minute')
           )
           select id as "id!", role as "role!: Role", partner_id as "partner_id: PartnerId",
                  expires_at as "expires_at!"
           from found"#,
        &secret_hash[..]
    )
    .fetch_optional(db)
    .await
    .context("tokens::find_active")?;
    Ok(row.map(|r| {
        (
            Principal {
                id: r.id,
                role: r.role,
                partner_id: r.partner_id,
            },
            r.expires_at,
        )
    }))
}

/// One token.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Token>> {
    sqlx::query_as!(
        Token,
        r#"select id, role as "role: Role", partner_id as "partner_id: PartnerId", label, created_by,
                  created_at, expires_at, revoked_at
           from api_tokens where id = $1"#,
        id
    )
    .fetch_optional(db)
    .await.context("tokens::get")
}

/// A page of tokens, oldest first; only one partner's when `partner` is given.
pub async fn list(
    db: impl PgExecutor<'_>,
    partner: Option<PartnerId>,
    page: Keyset,
) -> Result<Vec<Token>> {
    sqlx::query_as!(
        Token,
        r#"select id, role as "role: Role", partner_id as "partner_id: PartnerId", label, created_by,
                  created_at, expires_at, revoked_at
           from api_tokens
           where ($1::uuid is null or partner_id = $1) and id > $2
           order by id limit $3"#,
        partner.map(|p| p.0),
        page.after(),
        page.limit
    )
    .fetch_all(db)
    .await.context("tokens::list")
}

/// Revokes a token; `false` if it was already revoked. The time is the transaction's (`now()`):
/// Citus refuses volatile functions such as `clock_timestamp()` in an UPDATE.
pub async fn revoke(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "update api_tokens set revoked_at = now() where id = $1 and revoked_at is null",
        id
    )
    .execute(db)
    .await
    .context("tokens::revoke")?;
    Ok(done.rows_affected() == 1)
}
