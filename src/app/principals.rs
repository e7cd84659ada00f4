//! Who can act, as people read it: the principals (console users and API tokens) for auditors and
//! access managers, and the readable names of the actors that events and histories record.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{RequestContext, Result, users};
use crate::{
    db::{self, Keyset, principals::PrincipalRow, users::PrincipalName},
    domain::{Action, PartnerId, PrincipalKind, PrincipalState, Role},
};

/// The actor recorded for the operator's command line.
const SYSTEM_ACTOR: &str = "system";

/// Names a resolver remembers at most; past it, it starts again (an export of a log written by
/// very many principals then looks some up twice, in flat memory).
const MAX_REMEMBERED: usize = 10_000;

/// An event's or a history version's actor as people read it. Resolved when read, from the
/// principal as it is now: it is not part of what the hash chain covers (the recorded `actor`,
/// `actor_role` and `actor_partner_id` are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"kind": "user", "name": "Jane Doe", "username": "jdoe",
    "role": "back_office", "partner_id": null, "partner_name": null}))]
pub struct ActorName {
    /// A console user, an API token, or the command line.
    pub kind: PrincipalKind,
    /// A user's display name (else username), a token's label, `system` for the command line.
    pub name: String,
    /// A user's username.
    pub username: Option<String>,
    /// The principal's role (none for the command line).
    pub role: Option<Role>,
    /// For partner roles, the partner it acts for.
    pub partner_id: Option<PartnerId>,
    /// That partner's name.
    pub partner_name: Option<String>,
}

impl ActorName {
    fn system() -> Self {
        Self {
            kind: PrincipalKind::System,
            name: SYSTEM_ACTOR.to_owned(),
            username: None,
            role: None,
            partner_id: None,
            partner_name: None,
        }
    }

    fn from_principal(p: PrincipalName) -> Option<Self> {
        Some(Self {
            kind: p.kind.parse().ok()?,
            name: p.name,
            username: p.username,
            role: Some(p.role),
            partner_id: p.partner_id,
            partner_name: p.partner_name,
        })
    }
}

/// Resolves actors to [`ActorName`]s: one query per page or export batch for the actors it has
/// not seen yet, none for those it has.
#[derive(Debug, Default)]
pub struct ActorNames {
    known: HashMap<String, Option<ActorName>>,
}

impl ActorNames {
    /// Looks up the `actors` not resolved yet, as far as `ctx` may see them: a partner role sees
    /// the names of its own partner's principals only (not the reseller's staff and tokens);
    /// everyone else every name.
    pub async fn resolve<'a>(
        &mut self,
        pool: &PgPool,
        ctx: &RequestContext,
        actors: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let mut missing: HashSet<&str> = HashSet::new();
        for actor in actors {
            if actor != SYSTEM_ACTOR && !self.known.contains_key(actor) {
                missing.insert(actor);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if self.known.len() + missing.len() > MAX_REMEMBERED {
            self.known.clear();
        }
        // Only an id in its canonical spelling is the principal: an event written around the
        // service with another spelling is shown as recorded, unnamed.
        let ids: Vec<String> = missing
            .iter()
            .filter(|a| Uuid::parse_str(a).is_ok_and(|id| id.to_string() == **a))
            .map(|a| (*a).to_owned())
            .collect();
        let scope = ctx.partner_scope();
        let mut found: HashMap<String, ActorName> = users::principal_names(pool, &ids)
            .await?
            .into_iter()
            .filter(|p| scope.is_none() || p.partner_id == scope)
            .filter_map(|p| Some((p.id.to_string(), ActorName::from_principal(p)?)))
            .collect();
        for actor in missing {
            let name = found.remove(actor);
            self.known.insert(actor.to_owned(), name);
        }
        Ok(())
    }

    /// The name of an actor [`Self::resolve`] was given; `None` when it is not a principal (e.g.
    /// `dev-seed`), no longer exists, or may not be shown to the caller.
    pub fn get(&self, actor: &str) -> Option<ActorName> {
        if actor == SYSTEM_ACTOR {
            return Some(ActorName::system());
        }
        self.known.get(actor).cloned().flatten()
    }
}

/// The names of `actors` at once (a page of events or history versions).
pub async fn names<'a>(
    pool: &PgPool,
    ctx: &RequestContext,
    actors: impl IntoIterator<Item = &'a str>,
) -> Result<ActorNames> {
    let mut names = ActorNames::default();
    names.resolve(pool, ctx, actors).await?;
    Ok(names)
}

/// A principal as listed to auditors and access managers: who it is, what it may do, whether it
/// still can, and when it last did. Never a secret nor a hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c05", "kind": "token",
    "name": "ordering system", "username": null, "role": "sales_agent",
    "partner_id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c02", "partner_name": "Contoso Reseller",
    "created_at": "2026-11-24T10:00:00.123456Z", "state": "active", "disabled_at": null,
    "revoked_at": null, "expires_at": "2027-02-22T10:00:00.123456Z",
    "last_used_at": "2026-11-25T08:31:00.004211Z"}))]
pub struct PrincipalSummary {
    /// The principal's id, as events record it in `actor`.
    pub id: Uuid,
    /// `user` or `token`.
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
    /// Whether it can act now.
    pub state: PrincipalState,
    /// A user: since when it is disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// A token: when it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// A token: when it stops (or stopped) working.
    pub expires_at: Option<DateTime<Utc>>,
    /// A token: when it was last verified (to the minute); a user: their last request in a
    /// session (to the minute), else their last sign-in. Absent if never used.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl PrincipalSummary {
    fn new(row: PrincipalRow, now: DateTime<Utc>) -> Self {
        Self {
            state: PrincipalState::at(now, row.disabled_at, row.revoked_at, row.expires_at),
            id: row.id,
            kind: row.kind,
            name: row.name,
            username: row.username,
            role: row.role,
            partner_id: row.partner_id,
            partner_name: row.partner_name,
            created_at: row.created_at,
            disabled_at: row.disabled_at,
            revoked_at: row.revoked_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
        }
    }
}

/// A page of principals, users and tokens together, oldest first: every one for auditors and
/// operators, their own partner's for global admins; 403 for everyone else.
pub async fn list(
    pool: &PgPool,
    ctx: &RequestContext,
    page: Keyset,
) -> Result<Vec<PrincipalSummary>> {
    ctx.require_any(&[Action::ManageAccess, Action::ReadAudit])?;
    let now = Utc::now();
    Ok(db::principals::list(pool, ctx.partner_scope(), page)
        .await?
        .into_iter()
        .map(|row| PrincipalSummary::new(row, now))
        .collect())
}
