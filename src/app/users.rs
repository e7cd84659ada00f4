//! Console users and their sessions: accounts (created on the command line, then by operators),
//! passwords (argon2id), sign-in with throttling, and sessions kept in PostgreSQL.

use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Error, RequestContext, Result, tokens::authorize_grant};
use crate::{
    db::{
        self, Keyset,
        events::NewEvent,
        users::{LiveSession, NewSession, NewUser, PrincipalName, Session, Sessions, User},
    },
    domain::{
        Action, DisplayName, EventType, NewPassword, PartnerId, Role, Username, sign_in_delay,
    },
};

/// Why an account change was not made; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Another account has this username.
    #[error("the username `{0}` is taken")]
    UsernameTaken(String),
    /// No account with this id (within the caller's scope).
    #[error("no such user")]
    UserNotFound(Uuid),
    /// The current password given for a change was wrong.
    #[error("the current password is not correct")]
    WrongPassword,
    /// Anything a use case can answer.
    #[error(transparent)]
    App(#[from] Error),
}

impl From<db::Error> for AccountError {
    fn from(e: db::Error) -> Self {
        Self::App(e.into())
    }
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        Self::App(e.into())
    }
}

/// A new account as asked for.
#[derive(Debug)]
pub struct NewAccount {
    /// Sign-in name.
    pub username: Username,
    /// Shown name.
    pub display_name: Option<DisplayName>,
    /// First password.
    pub password: NewPassword,
    /// Role.
    pub role: Role,
    /// Partner, for partner roles.
    pub partner: Option<PartnerId>,
}

/// The argon2id hash (PHC string) of `password`, computed off the async threads (~20 ms of CPU).
async fn hash_password(password: &NewPassword) -> Result<String> {
    let password = password.expose().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for a salt: {e}"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        Ok(hash.to_string())
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
    .map_err(Error::Internal)
}

/// Whether `password` matches the PHC string `hash`, computed off the async threads. Without a
/// hash (unknown username) it is checked against [`DECOY_HASH`] and fails, taking as long as for a
/// known username, so the answer does not tell which usernames exist.
async fn password_matches(password: &str, hash: Option<String>) -> Result<bool> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.as_deref().unwrap_or(&DECOY_HASH);
        let matched = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        known && matched
    })
    .await
    .map_err(|e| Error::Internal(e.into()))
}

/// The hash of a random password nobody knows, made once per process with the same parameters.
static DECOY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut random = [0u8; 32];
    let _ = getrandom::fill(&mut random);
    let (salt, password) = random.split_at(16);
    SaltString::encode_b64(salt)
        .ok()
        .and_then(|salt| {
            Argon2::default()
                .hash_password(password, &salt)
                .map(|h| h.to_string())
                .ok()
        })
        .unwrap_or_default()
});

/// Creates an account; by operators (any role) and global admins (their partner's partner roles),
/// or on the command line.
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    new: &NewAccount,
) -> Result<User, AccountError> {
    authorize_grant(ctx, new.role, new.partner)?;
    let password_hash = hash_password(&new.password).await?;
    let mut tx = pool.begin().await?;
    if let Some(partner) = new.partner
        && db::partners::get(&mut *tx, partner).await?.is_none()
    {
        return Err(Error::PartnerNotFound(partner).into());
    }
    let user = db::users::insert(
        &mut *tx,
        &NewUser {
            id: Uuid::now_v7(),
            username: new.username.as_str(),
            display_name: new.display_name.as_ref().map(DisplayName::as_str),
            password_hash: &password_hash,
            role: new.role,
            partner_id: new.partner,
            created_by: ctx.actor.id(),
        },
    )
    .await?
    .ok_or_else(|| AccountError::UsernameTaken(new.username.as_str().to_owned()))?;
    append_event(&mut tx, ctx, &user, EventType::UserCreated).await?;
    tx.commit().await?;
    Ok(user)
}

async fn append_event(
    tx: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    user: &User,
    event_type: EventType,
) -> Result<()> {
    Ok(db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type,
            customer_id: None,
            partner_id: user.partner_id,
            payload: json!({
                "user_id": user.id, "username": user.username, "role": user.role,
                "display_name": user.display_name,
            }),
        },
    )
    .await?)
}

/// The account `id` if the caller may manage it; 404 otherwise (also for another partner's).
async fn manageable(
    db: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    id: Uuid,
) -> Result<User, AccountError> {
    let user = db::users::get(&mut *db, id)
        .await?
        .filter(|u| ctx.partner_scope().is_none() || u.partner_id == ctx.partner_scope())
        .ok_or(AccountError::UserNotFound(id))?;
    authorize_grant(ctx, user.role, user.partner_id)?;
    Ok(user)
}

/// A page of accounts: all for operators and auditors, their partner's for global admins.
pub async fn list(pool: &PgPool, ctx: &RequestContext, page: Keyset) -> Result<Vec<User>> {
    ctx.require_any(&[Action::ManageAccess, Action::ReadAudit])?;
    Ok(db::users::list(pool, ctx.partner_scope(), page).await?)
}

/// One account, as [`list`] would show it.
pub async fn get(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> Result<User, AccountError> {
    ctx.require_any(&[Action::ManageAccess, Action::ReadAudit])?;
    db::users::get(pool, id)
        .await?
        .filter(|u| ctx.partner_scope().is_none() || u.partner_id == ctx.partner_scope())
        .ok_or(AccountError::UserNotFound(id))
}

/// Disables (ending its sessions) or enables an account. Nobody disables their own.
pub async fn set_disabled(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    disabled: bool,
) -> Result<User, AccountError> {
    let mut tx = pool.begin().await?;
    let user = manageable(&mut tx, ctx, id).await?;
    if ctx.principal.as_ref().is_some_and(|p| p.id == id) {
        return Err(Error::InvalidTokenRequest("you cannot disable your own account").into());
    }
    if db::users::set_disabled(&mut *tx, id, disabled).await? {
        if disabled {
            db::users::revoke_sessions(&mut *tx, id, Sessions::AllBut(None)).await?;
        }
        let event = if disabled {
            EventType::UserDisabled
        } else {
            EventType::UserEnabled
        };
        append_event(&mut tx, ctx, &user, event).await?;
    }
    let user = db::users::get(&mut *tx, id)
        .await?
        .ok_or(AccountError::UserNotFound(id))?;
    tx.commit().await?;
    Ok(user)
}

/// Sets another account's password (an operator helping a colleague); its sessions end.
pub async fn reset_password(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    password: &NewPassword,
) -> Result<(), AccountError> {
    let hash = hash_password(password).await?;
    let mut tx = pool.begin().await?;
    let user = manageable(&mut tx, ctx, id).await?;
    store_password(&mut tx, ctx, &user, &hash, None).await?;
    tx.commit().await?;
    Ok(())
}

/// Changes the signed-in user's own password, given the current one; their other sessions end.
pub async fn change_own_password(
    pool: &PgPool,
    ctx: &RequestContext,
    session: Uuid,
    current: &str,
    new: &NewPassword,
) -> Result<(), AccountError> {
    let Some(me) = ctx.principal.as_ref() else {
        return Err(Error::InvalidTokenRequest("the command line has no password").into());
    };
    let hash = hash_password(new).await?;
    let mut tx = pool.begin().await?;
    let user = db::users::get(&mut *tx, me.id)
        .await?
        .ok_or(AccountError::UserNotFound(me.id))?;
    let stored = db::users::lock_credentials(&mut *tx, &user.username)
        .await?
        .ok_or(AccountError::UserNotFound(me.id))?;
    if !password_matches(current, Some(stored.password_hash)).await? {
        return Err(AccountError::WrongPassword);
    }
    store_password(&mut tx, ctx, &user, &hash, Some(session)).await?;
    tx.commit().await?;
    Ok(())
}

/// Stores a new password hash and ends the user's sessions but `keep`.
async fn store_password(
    tx: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    user: &User,
    hash: &str,
    keep: Option<Uuid>,
) -> Result<()> {
    db::users::set_password_hash(&mut *tx, user.id, hash).await?;
    db::users::revoke_sessions(&mut *tx, user.id, Sessions::AllBut(keep)).await?;
    append_event(tx, ctx, user, EventType::UserPasswordChanged).await
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// A session unused for this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub absolute: Duration,
}

/// A new session: the cookie's secret, which is stored only as its hash.
#[derive(Debug)]
pub struct SignedIn {
    /// The cookie value.
    pub secret: String,
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown username, wrong password or disabled account: one answer for all three.
    #[error("the username or password is not correct")]
    InvalidCredentials,
    /// Too many failures: the account refuses attempts for a while.
    #[error("too many failed sign-ins; try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    /// Anything a use case can answer.
    #[error(transparent)]
    App(#[from] Error),
}

impl From<db::Error> for SignInError {
    fn from(e: db::Error) -> Self {
        Self::App(e.into())
    }
}

impl From<sqlx::Error> for SignInError {
    fn from(e: sqlx::Error) -> Self {
        Self::App(e.into())
    }
}

fn random_token() -> Result<String> {
    use base64::Engine;
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)
        .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness for a session: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random))
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Checks a username and password and starts a new session (always a new id: the one a browser
/// had before signing in is never promoted). Attempts at one account are counted one after the
/// other under its row lock; after [`crate::domain::FREE_SIGN_IN_FAILURES`] failures each further
/// one blocks the account for [`sign_in_delay`].
pub async fn sign_in(
    pool: &PgPool,
    limits: SessionLimits,
    username: &str,
    password: &str,
    user_agent: Option<&str>,
) -> Result<SignedIn, SignInError> {
    let mut tx = pool.begin().await?;
    let account = match Username::parse(username) {
        Ok(name) => db::users::lock_credentials(&mut *tx, name.as_str()).await?,
        Err(_) => None,
    };
    let Some(account) = account else {
        password_matches(password, None).await?;
        return Err(SignInError::InvalidCredentials);
    };
    let now = Utc::now();
    if let Some(left) = account
        .blocked_until
        .and_then(|until| (until - now).to_std().ok())
    {
        return Err(SignInError::Throttled(left));
    }
    let matches = password_matches(password, Some(account.password_hash)).await?;
    let id = account.principal.id;
    if !matches || account.disabled {
        let failures = account.failed_sign_ins.saturating_add(1);
        let delay = chrono::Duration::from_std(sign_in_delay(failures)).unwrap_or_default();
        db::users::record_failed_sign_in(&mut *tx, id, failures, now + delay).await?;
        tx.commit().await?;
        tracing::warn!(user_id = %id, failures, "console sign-in failed");
        return Err(SignInError::InvalidCredentials);
    }
    db::users::record_sign_in(&mut *tx, id).await?;
    let secret = random_token()?;
    let absolute = chrono::Duration::from_std(limits.absolute).unwrap_or_default();
    db::users::insert_session(
        &mut *tx,
        &NewSession {
            id: Uuid::now_v7(),
            secret_hash: &hash(&secret),
            user_id: id,
            csrf_token: &random_token()?,
            expires_at: now + absolute,
            user_agent: user_agent.map(|ua| ua.get(..300).unwrap_or(ua)),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %id, "console sign-in");
    Ok(SignedIn { secret })
}

/// The live session of a cookie secret, if any; refreshes its last use at most once a minute.
pub async fn session(
    pool: &PgPool,
    limits: SessionLimits,
    secret: &str,
) -> Result<Option<LiveSession>> {
    let Some(live) =
        db::users::find_live_session(pool, &hash(secret), limits.idle.as_secs_f64()).await?
    else {
        return Ok(None);
    };
    if live.stale {
        db::users::touch_session(pool, live.id).await?;
    }
    Ok(Some(live))
}

/// Ends the session of a cookie secret.
pub async fn sign_out(pool: &PgPool, ctx: &RequestContext, session: Uuid) -> Result<()> {
    if let Some(me) = &ctx.principal {
        db::users::revoke_sessions(pool, me.id, Sessions::One(session)).await?;
    }
    Ok(())
}

/// A user's live sessions: one's own, or (for whoever may manage the account) another's.
pub async fn sessions(
    pool: &PgPool,
    ctx: &RequestContext,
    user: Uuid,
) -> Result<Vec<Session>, AccountError> {
    if ctx.principal.as_ref().is_none_or(|p| p.id != user) {
        manageable(&mut *pool.acquire().await?, ctx, user).await?;
    }
    Ok(db::users::sessions_of(pool, user).await?)
}

/// Ends one session of a user: one's own, or another's for whoever may manage the account.
pub async fn revoke_session(
    pool: &PgPool,
    ctx: &RequestContext,
    user: Uuid,
    session: Uuid,
) -> Result<(), AccountError> {
    if ctx.principal.as_ref().is_none_or(|p| p.id != user) {
        manageable(&mut *pool.acquire().await?, ctx, user).await?;
    }
    db::users::revoke_sessions(pool, user, Sessions::One(session)).await?;
    Ok(())
}

/// How the actors among `ids` are shown to people (users and tokens; `system` is not looked up).
pub async fn principal_names(pool: &PgPool, ids: &[String]) -> Result<Vec<PrincipalName>> {
    let ids: Vec<Uuid> = ids.iter().filter_map(|id| id.parse().ok()).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(db::users::principal_names(pool, &ids).await?)
}
