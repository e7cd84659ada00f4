//! Console users, their sessions, and the names of principals (users and tokens) for audit answers.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Context, Keyset, Result};
use crate::domain::{PartnerId, Principal, Role};

/// A user as listed: never the password hash.
#[derive(Debug, Clone)]
pub struct User {
    /// User (and principal) id.
    pub id: Uuid,
    /// Sign-in name.
    pub username: String,
    /// Name shown to colleagues and auditors.
    pub display_name: Option<String>,
    /// The role the user acts in.
    pub role: Role,
    /// For partner roles, the partner the user acts for.
    pub partner_id: Option<PartnerId>,
    /// Who created the account.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Set while the account may not sign in.
    pub disabled_at: Option<DateTime<Utc>>,
    /// The last successful sign-in.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

/// `query_as!` of a [`User`]: the one select list of `users`, then `$rest` of the statement.
macro_rules! select_users {
    ($rest:tt, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            User,
            r#"select id, username, display_name, role as "role: Role",
                      partner_id as "partner_id: PartnerId", created_by, created_at, disabled_at,
                      last_sign_in_at
               from users "# + $rest,
            $($arg),+
        )
    };
}

/// A new account.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Its id.
    pub id: Uuid,
    /// Sign-in name.
    pub username: &'a str,
    /// Shown name.
    pub display_name: Option<&'a str>,
    /// argon2id PHC string.
    pub password_hash: &'a str,
    /// Role.
    pub role: Role,
    /// Partner, for partner roles.
    pub partner_id: Option<PartnerId>,
    /// The creating actor.
    pub created_by: &'a str,
}

/// Inserts an account; `None` if the username is taken.
pub async fn insert(db: impl PgExecutor<'_>, new: &NewUser<'_>) -> Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"insert into users (id, username, display_name, password_hash, role, partner_id, created_by)
           values ($1, $2, $3, $4, $5, $6, $7)
           on conflict (username) do nothing
           returning id, username, display_name, role as "role: Role",
                     partner_id as "partner_id: PartnerId", created_by, created_at, disabled_at,
                     last_sign_in_at"#,
        new.id,
        new.username,
        new.display_name,
        new.password_hash,
        new.role.as_str(),
        new.partner_id.map(|p| p.0),
        new.created_by,
    )
    .fetch_optional(db)
    .await
    .context("users::insert")
}

/// One account.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<User>> {
    select_users!("where id = $1", id)
        .fetch_optional(db)
        .await
        .context("users::get")
}

/// A page of accounts, oldest first; one partner's only when `partner` is given.
pub async fn list(
    db: impl PgExecutor<'_>,
    partner: Option<PartnerId>,
    page: Keyset,
) -> Result<Vec<User>> {
    select_users!(
        "where ($1::uuid is null or partner_id = $1) and id > $2 order by id limit $3",
        partner.map(|p| p.0),
        page.after(),
        page.limit
    )
    .fetch_all(db)
    .await
    .context("users::list")
}

/// What a sign-in needs of an account, read under a row lock so that concurrent guesses at one
/// account are counted one after the other.
#[derive(Debug)]
pub struct Credentials {
    /// The account's principal.
    pub principal: Principal,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Consecutive failed sign-ins.
    pub failed_sign_ins: i32,
    /// Sign-ins are refused until then.
    pub blocked_until: Option<DateTime<Utc>>,
}

/// The credentials of `username`, locked for the rest of the transaction.
pub async fn lock_credentials(
    db: impl PgExecutor<'_>,
    username: &str,
) -> Result<Option<Credentials>> {
    let row = sqlx::query!(
        r#"select id, role as "role: Role", partner_id as "partner_id: PartnerId", password_hash,
                  disabled_at is not null as "disabled!", failed_sign_ins, sign_in_blocked_until
           from users where username = $1 for update"#,
        username
    )
    .fetch_optional(db)
    .await
    .context("users::lock_credentials")?;
    Ok(row.map(|r| Credentials {
        principal: Principal {
            id: r.id,
            role: r.role,
            partner_id: r.partner_id,
        },
        password_hash: r.password_hash,
        disabled: r.disabled,
        failed_sign_ins: r.failed_sign_ins,
        blocked_until: r.sign_in_blocked_until,
    }))
}

/// Records a failed sign-in and when the next attempt may come.
pub async fn record_failed_sign_in(
    db: impl PgExecutor<'_>,
    id: Uuid,
    failures: i32,
    blocked_until: DateTime<Utc>,
) -> Result<()> {
    sqlx::query!(
        "update users set failed_sign_ins = $2, sign_in_blocked_until = $3 where id = $1",
        id,
        failures,
        blocked_until
    )
    .execute(db)
    .await
    .context("users::record_failed_sign_in")?;
    Ok(())
}

/// Records a successful sign-in: the failure count starts again.
pub async fn record_sign_in(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query!(
        "update users set failed_sign_ins = 0, sign_in_blocked_until = null, last_sign_in_at = now()
         where id = $1",
        id
    )
    .execute(db)
    .await
    .context("users::record_sign_in")?;
    Ok(())
}

/// Replaces an account's password hash.
pub async fn set_password_hash(db: impl PgExecutor<'_>, id: Uuid, hash: &str) -> Result<bool> {
    let done = sqlx::query!(
        "update users set password_hash = $2, failed_sign_ins = 0, sign_in_blocked_until = null
         where id = $1",
        id,
        hash
    )
    .execute(db)
    .await
    .context("users::set_password_hash")?;
    Ok(done.rows_affected() == 1)
}

/// Disables (`true`) or enables an account; `false` if it already was so.
pub async fn set_disabled(db: impl PgExecutor<'_>, id: Uuid, disabled: bool) -> Result<bool> {
    let done = sqlx::query!(
        "update users set disabled_at = case when $2 then now() end
         where id = $1 and (disabled_at is not null) <> $2",
        id,
        disabled
    )
    .execute(db)
    .await
    .context("users::set_disabled")?;
    Ok(done.rows_affected() == 1)
}

/// A console session as listed.
#[derive(Debug, Clone)]
pub struct Session {
    /// Session id (not the cookie's secret).
    pub id: Uuid,
    /// Whose.
    pub user_id: Uuid,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Last request (to the minute).
    pub last_seen_at: DateTime<Utc>,
    /// Absolute end.
    pub expires_at: DateTime<Utc>,
    /// The browser that signed in.
    pub user_agent: Option<String>,
}

/// A new session.
#[derive(Debug)]
pub struct NewSession<'a> {
    /// Its id.
    pub id: Uuid,
    /// SHA-256 of the cookie's secret.
    pub secret_hash: &'a [u8; 32],
    /// Whose.
    pub user_id: Uuid,
    /// The session's CSRF token.
    pub csrf_token: &'a str,
    /// Absolute end.
    pub expires_at: DateTime<Utc>,
    /// The browser's `User-Agent`, cut to 300 characters.
    pub user_agent: Option<&'a str>,
}

/// Inserts a session.
pub async fn insert_session(db: impl PgExecutor<'_>, new: &NewSession<'_>) -> Result<()> {
    sqlx::query!(
        "insert into sessions (id, secret_hash, user_id, csrf_token, expires_at, user_agent)
         values ($1, $2, $3, $4, $5, $6)",
        new.id,
        &new.secret_hash[..],
        new.user_id,
        new.csrf_token,
        new.expires_at,
        new.user_agent
    )
    .execute(db)
    .await
    .context("users::insert_session")?;
    Ok(())
}

/// A live session found by its cookie.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// Session id.
    pub id: Uuid,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// The signed-in user as a principal.
    pub principal: Principal,
    /// Sign-in name.
    pub username: String,
    /// Shown name.
    pub display_name: Option<String>,
    /// Whether `last_seen_at` is old enough to be refreshed.
    pub stale: bool,
}

/// The unrevoked, unexpired session of an enabled user with this secret hash, idle for less than
/// `idle_secs`.
pub async fn find_live_session(
    db: impl PgExecutor<'_>,
    secret_hash: &[u8; 32],
    idle_secs: f64,
) -> Result<Option<LiveSession>> {
    let row = sqlx::query!(
        r#"select s.id, s.csrf_token, u.id as user_id, u.role as "role: Role",
                  u.partner_id as "partner_id: PartnerId", u.username, u.display_name,
                  s.last_seen_at < now() - interval '1 minute' as "stale!"
           from sessions s join users u on u.id = s.user_id
           where s.secret_hash = $1 and s.revoked_at is null and s.expires_at > now()
             and s.last_seen_at > now() - make_interval(secs => $2) and u.disabled_at is null"#,
        &secret_hash[..],
        idle_secs
    )
    .fetch_optional(db)
    .await
    .context("users::find_live_session")?;
    Ok(row.map(|r| LiveSession {
        id: r.id,
        csrf_token: r.csrf_token,
        principal: Principal {
            id: r.user_id,
            role: r.role,
            partner_id: r.partner_id,
        },
        username: r.username,
        display_name: r.display_name,
        stale: r.stale,
    }))
}

/// Marks a session as seen now.
pub async fn touch_session(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query!("update sessions set last_seen_at = now() where id = $1", id)
        .execute(db)
        .await
        .context("users::touch_session")?;
    Ok(())
}

/// A user's live sessions, newest first.
pub async fn sessions_of(db: impl PgExecutor<'_>, user: Uuid) -> Result<Vec<Session>> {
    sqlx::query_as!(
        Session,
        "select id, user_id, created_at, last_seen_at, expires_at, user_agent
         from sessions
         where user_id = $1 and revoked_at is null and expires_at > now()
         order by id desc limit 100",
        user
    )
    .fetch_all(db)
    .await
    .context("users::sessions_of")
}

/// Which of a user's sessions to revoke.
#[derive(Debug, Clone, Copy)]
pub enum Sessions {
    /// This one.
    One(Uuid),
    /// All but this one (all of them for `None`).
    AllBut(Option<Uuid>),
}

/// Revokes sessions of `user`; the number revoked.
pub async fn revoke_sessions(db: impl PgExecutor<'_>, user: Uuid, which: Sessions) -> Result<u64> {
    let (only, keep) = match which {
        Sessions::One(id) => (Some(id), None),
        Sessions::AllBut(keep) => (None, keep),
    };
    let done = sqlx::query!(
        "update sessions set revoked_at = now()
         where user_id = $1 and ($2::uuid is null or id = $2) and ($3::uuid is null or id <> $3)
           and revoked_at is null",
        user,
        only,
        keep
    )
    .execute(db)
    .await
    .context("users::revoke_sessions")?;
    Ok(done.rows_affected())
}

/// How a principal is shown to people: its kind, a name, and its role and partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalName {
    /// The principal's id.
    pub id: Uuid,
    /// `user` or `token`.
    pub kind: String,
    /// A user's display name (or username), a token's label.
    pub name: String,
    /// A user's username.
    pub username: Option<String>,
    /// Its role.
    pub role: Role,
    /// For partner roles, the partner it acts for.
    pub partner_id: Option<PartnerId>,
    /// That partner's name.
    pub partner_name: Option<String>,
}

/// The names of those of `ids` that are users or tokens.
pub async fn principal_names(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<PrincipalName>> {
    sqlx::query_as!(
        PrincipalName,
        r#"select p.id as "id!", p.kind as "kind!", p.name as "name!", p.username,
                  p.role as "role!: Role", p.partner_id as "partner_id: PartnerId",
                  pa.name as "partner_name?"
           from (select id, 'user' as kind, coalesce(display_name, username) as name, username,
                        role, partner_id
                 from users where id = any($1)
                 union all
                 select id, 'token', label, null, role, partner_id
                 from api_tokens where id = any($1)) p
           left join partners pa on pa.id = p.partner_id"#,
        ids
    )
    .fetch_all(db)
    .await
    .context("users::principal_names")
}
