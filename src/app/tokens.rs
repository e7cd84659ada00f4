//! Tokens: issuing (shown once), listing, revoking, and verifying them on every request.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Error, RequestContext, Result};
use crate::{
    db::{
        self, Keyset,
        events::NewEvent,
        tokens::{NewToken, Token},
    },
    domain::{Action, DisplayName, EventType, PartnerId, Principal, Role},
};

/// Prefix of every secret, so leaked tokens are easy to recognize and scan for.
const SECRET_PREFIX: &str = "pct_";
/// How long a verified token is trusted without asking the database again: the bound on how late
/// a revocation takes effect.
pub const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(5);
/// Cache entries beyond which expired ones are swept.
const CACHE_SWEEP_AT: usize = 10_000;

/// A newly issued token and its secret, which is never shown again.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// The stored token.
    #[serde(flatten)]
    pub token: Token,
    /// The bearer secret.
    pub secret: String,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether the caller may give a principal (token or user) `role` for `partner`: operators any,
/// global admins their own partner's partner roles; partner roles need a partner, others none.
pub(crate) fn authorize_grant(
    ctx: &RequestContext,
    role: Role,
    partner: Option<PartnerId>,
) -> Result<()> {
    if let Some(partner) = partner {
        ctx.check_partner(partner)?;
    }
    ctx.require(Action::ManageAccess)?;
    if let Some(principal) = &ctx.principal
        && !principal.may_grant(role, partner)
    {
        return Err(match partner {
            Some(p) if principal.partner_scope().is_some() => Error::PartnerNotFound(p),
            _ => Error::Forbidden {
                role: principal.role,
                action: Action::ManageAccess,
            },
        });
    }
    if role.is_partner_role() != partner.is_some() {
        return Err(Error::InvalidTokenRequest(
            "partner roles (global_admin, admin_agent, sales_agent) need a partner_id; other roles take none",
        ));
    }
    Ok(())
}

/// Issues a token of `role` (bound to `partner` for partner roles) that expires at `expires_at`.
pub async fn issue(
    pool: &PgPool,
    ctx: &RequestContext,
    role: Role,
    partner: Option<PartnerId>,
    expires_at: DateTime<Utc>,
    label: &DisplayName,
) -> Result<IssuedToken> {
    authorize_grant(ctx, role, partner)?;
    if expires_at <= Utc::now() {
        return Err(Error::InvalidTokenRequest(
            "expires_at must be in the future",
        ));
    }
    let label = label.as_str();
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)
        .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness for a token: {e}")))?;
    let secret = format!("{SECRET_PREFIX}{}", hex::encode(random));

    let mut tx = pool.begin().await?;
    if let Some(partner) = partner
        && db::partners::get(&mut *tx, partner).await?.is_none()
    {
        return Err(Error::PartnerNotFound(partner));
    }
    let created_by = ctx.actor.id();
    let token = db::tokens::insert(
        &mut *tx,
        &NewToken {
            id: Uuid::now_v7(),
            secret_hash: &hash(&secret),
            role,
            partner_id: partner,
            label,
            created_by,
            expires_at,
        },
    )
    .await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::TokenCreated,
            customer_id: None,
            partner_id: partner,
            payload: json!({ "token_id": token.id, "role": role, "label": label, "expires_at": expires_at }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedToken { token, secret })
}

/// A page of tokens: all of them for operators, their partner's for global admins.
pub async fn list(pool: &PgPool, ctx: &RequestContext, page: Keyset) -> Result<Vec<Token>> {
    ctx.require(Action::ManageAccess)?;
    Ok(db::tokens::list(pool, ctx.partner_scope(), page).await?)
}

/// Revokes a token; it stops working within [`VERIFIED_TOKEN_TTL`].
pub async fn revoke(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> Result<Token> {
    let mut tx = pool.begin().await?;
    let token = db::tokens::get(&mut *tx, id)
        .await?
        .ok_or(Error::TokenNotFound(id))?;
    // Visibility before permission, as everywhere: another partner's token does not exist.
    if ctx.partner_scope().is_some() && ctx.partner_scope() != token.partner_id {
        return Err(Error::TokenNotFound(id));
    }
    ctx.require(Action::ManageAccess)?;
    if db::tokens::revoke(&mut *tx, id).await? {
        db::events::append(
            &mut *tx,
            &ctx.actor,
            NewEvent {
                event_type: EventType::TokenRevoked,
                customer_id: None,
                partner_id: token.partner_id,
                payload: json!({ "token_id": id, "role": token.role, "label": token.label }),
            },
        )
        .await?;
    }
    let token = db::tokens::get(&mut *tx, id)
        .await?
        .ok_or(Error::TokenNotFound(id))?;
    tx.commit().await?;
    Ok(token)
}

/// Checks bearer secrets, remembering verified ones for [`VERIFIED_TOKEN_TTL`] so that a busy
/// service does not ask the database on every request.
#[derive(Debug, Default)]
pub struct TokenVerifier {
    cache: Mutex<HashMap<[u8; 32], Verified>>,
}

#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    trusted_until: Instant,
}

impl TokenVerifier {
    /// The principal of a valid secret; `None` if it is malformed, unknown, expired or revoked.
    pub async fn verify(&self, pool: &PgPool, secret: &str) -> Result<Option<Principal>> {
        let well_formed = secret
            .strip_prefix(SECRET_PREFIX)
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Ok(None);
        }
        let key = hash(secret);
        let now = Instant::now();
        if let Some(hit) = self.lock().get(&key).filter(|v| v.trusted_until > now) {
            return Ok(Some(hit.principal.clone()));
        }
        let Some((principal, expires_at)) = db::tokens::find_active(pool, &key).await? else {
            self.lock().remove(&key);
            return Ok(None);
        };
        // Trust the answer for the TTL, but never past the token's own expiry.
        let left = (expires_at - Utc::now()).to_std().unwrap_or_default();
        let trusted_until = now + VERIFIED_TOKEN_TTL.min(left);
        let mut cache = self.lock();
        if cache.len() >= CACHE_SWEEP_AT {
            cache.retain(|_, v| v.trusted_until > now);
        }
        cache.insert(
            key,
            Verified {
                principal: principal.clone(),
                trusted_until,
            },
        );
        Ok(Some(principal))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        // A panic while holding the lock cannot leave the map inconsistent; keep serving.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
