//! Principals, users and tokens together, as auditors list them: never a secret nor a hash.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Context, Keyset, Result};
use crate::domain::{PartnerId, PrincipalKind, Role};

/// A user or a token as listed.
#[derive(Debug, Clone)]
pub struct PrincipalRow {
    /// The principal's id (a user's or a token's; events record it as `actor`).
    pub id: Uuid,
    /// User or token.
    pub kind: PrincipalKind,
    /// A user's display name (else username), a token's label.
    pub name: String,
    /// A user's username.
    pub username: Option<String>,
    /// The role it acts in.
    pub role: Role,
    /// For partner roles, its partner.
    pub partner_id: Option<PartnerId>,
    /// That partner's name.
    pub partner_name: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// A user: since when it is disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// A token: when it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// A token: when it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// A token: its last verification (to the minute); a user: its last request in a session
    /// (to the minute), else its last sign-in.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A page of users and tokens together, in id order (both are UUIDv7, so oldest first); only one
/// partner's when `partner` is given.
pub async fn list(
    db: impl PgExecutor<'_>,
    partner: Option<PartnerId>,
    page: Keyset,
) -> Result<Vec<PrincipalRow>> {
    // Each side reads at most a page along its primary key; the union is cut to the page again.
    sqlx::query_as!(
        PrincipalRow,
        r#"select p.id as "id!", p.kind as "kind!: PrincipalKind", p.name as "name!", p.username,
                  p.role as "role!: Role", p.partner_id as "partner_id: PartnerId",
                  pa.name as "partner_name?", p.created_at as "created_at!", p.disabled_at,
                  p.revoked_at, p.expires_at, p.last_used_at
           from ((select u.id, 'user' as kind, coalesce(u.display_name, u.username) as name,
                         u.username, u.role, u.partner_id, u.created_at, u.disabled_at,
                         null::timestamptz as revoked_at, null::timestamptz as expires_at,
                         coalesce((select max(s.last_seen_at) from sessions s where s.user_id = u.id),
                                  u.last_sign_in_at) as last_used_at
                  from users u
                  where ($1::uuid is null or u.partner_id = $1) and u.id > $2
                  order by u.id limit $3)
                 union all
                 (select t.id, 'token', t.label, null, t.role, t.partner_id, t.created_at, null,
                         t.revoked_at, t.expires_at, t.last_used_at
                  from api_tokens t
                  where ($1::uuid is null or t.partner_id = $1) and t.id > $2
                  order by t.id limit $3)) p
           left join partners pa on pa.id = p.partner_id
           order by p.id
           limit $3"#,
        partner.map(|p| p.0),
        page.after(),
        page.limit
    )
    .fetch_all(db)
    .await
    .context("principals::list")
}
