//! Partners, their reseller qualifications and indirect reseller → provider links.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, types::Json};
use uuid::Uuid;

use super::{Context, Keyset, Result, texts};
use crate::domain::{Actor, PartnerId, PartnerKind, Reason, ResellerQualification};

/// A partner as stored, with its current qualifications and provider links.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c02", "name": "Contoso Reseller", "kind": "direct_bill_partner",
    "reseller_qualifications": ["education", "gcc"], "indirect_providers": [], "version": 2,
    "created_at": "2026-11-24T10:00:00.123456Z"}))]
pub struct Partner {
    /// Partner id.
    pub id: PartnerId,
    /// Display name.
    pub name: String,
    /// How the partner transacts.
    pub kind: PartnerKind,
    /// Special programs the partner is authorized for, sorted.
    pub reseller_qualifications: Vec<ResellerQualification>,
    /// For indirect resellers: the providers it sells through, sorted.
    pub indirect_providers: Vec<PartnerId>,
    /// Incremented by every profile change (the partner's ETag).
    pub version: i64,
    /// When the partner was created.
    pub created_at: DateTime<Utc>,
}

/// Inserts a partner with no provider links.
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: PartnerId,
    name: &str,
    kind: PartnerKind,
    reseller_qualifications: &[ResellerQualification],
) -> Result<Partner> {
    let created_at = sqlx::query_scalar!(
        "insert into partners (id, name, kind, reseller_qualifications) values ($1, $2, $3, $4)
         returning created_at",
        id.0,
        name,
        kind.as_str(),
        &texts(reseller_qualifications, ResellerQualification::as_str) as &[&str],
    )
    .fetch_one(db)
    .await
    .context("partners::insert")?;
    Ok(Partner {
        id,
        name: name.to_owned(),
        kind,
        reseller_qualifications: reseller_qualifications.to_vec(),
        indirect_providers: Vec::new(),
        version: 1,
        created_at,
    })
}

/// `query_as!` of a [`Partner`]: the one select list of `partners p` with its provider links,
/// then `$rest` of the statement.
macro_rules! select_partners {
    ($rest:tt, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            Partner,
            r#"select p.id as "id: PartnerId", p.name, p.kind as "kind: PartnerKind",
                      p.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>",
                      array(select l.provider_id from indirect_reseller_providers l
                            where l.reseller_id = p.id order by l.provider_id) as "indirect_providers!: Vec<PartnerId>",
                      p.version, p.created_at
               from partners p "# + $rest,
            $($arg),+
        )
    };
}

/// One partner, if it exists.
pub async fn get(db: impl PgExecutor<'_>, id: PartnerId) -> Result<Option<Partner>> {
    select_partners!("where p.id = $1", id.0)
        .fetch_optional(db)
        .await
        .context("partners::get")
}

/// A page of partners, oldest first.
pub async fn list(db: impl PgExecutor<'_>, page: Keyset) -> Result<Vec<Partner>> {
    select_partners!(
        "where p.id > $1 order by p.id limit $2",
        page.after(),
        page.limit
    )
    .fetch_all(db)
    .await
    .context("partners::list")
}

/// What to look for among partners.
#[derive(Debug, Clone, Default)]
pub struct PartnerFilter<'a> {
    /// Case-insensitive substring of the name.
    pub name_contains: Option<&'a str>,
    /// Of this kind.
    pub kind: Option<PartnerKind>,
    /// Holds this reseller qualification (`Some(None)`: holds none).
    pub qualification: Option<Option<ResellerQualification>>,
}

/// A page of partners matching `filter`, oldest first; only `only` when it is given (a partner
/// role's own). The name is matched through the trigram index `partners_name_trgm_idx`.
pub async fn search(
    db: impl PgExecutor<'_>,
    only: Option<PartnerId>,
    filter: &PartnerFilter<'_>,
    page: Keyset,
) -> Result<Vec<Partner>> {
    let (any_qualification, qualification) = match filter.qualification {
        None => (true, None),
        Some(q) => (false, q.map(ResellerQualification::as_str)),
    };
    select_partners!(
        "where p.id > $1
           and ($3::uuid is null or p.id = $3)
           and ($4::text is null or p.name ilike $4)
           and ($5::text is null or p.kind = $5)
           and ($6 or ($7::text is null and p.reseller_qualifications = '{}')
                   or p.reseller_qualifications @> array[$7::text])
         order by p.id limit $2",
        page.after(),
        page.limit,
        only.map(|p| p.0),
        filter.name_contains.map(super::customers::contains_pattern),
        filter.kind.map(PartnerKind::as_str),
        any_qualification,
        qualification,
    )
    .fetch_all(db)
    .await
    .context("partners::search")
}

/// A partner's id and name, to show a link to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerName {
    /// Partner id.
    pub id: PartnerId,
    /// Display name.
    pub name: String,
}

/// The names of every provider `reseller` is or ever was connected to (in any profile version),
/// by name.
pub async fn provider_names(
    db: impl PgExecutor<'_>,
    reseller: PartnerId,
) -> Result<Vec<PartnerName>> {
    sqlx::query_as!(
        PartnerName,
        r#"select p.id as "id: PartnerId", p.name from partners p
           where p.id in (select unnest(h.indirect_providers) from partner_profile_history h
                          where h.partner_id = $1)
           order by p.name, p.id"#,
        reseller.0
    )
    .fetch_all(db)
    .await
    .context("partners::provider_names")
}

/// Locks a partner against concurrent profile changes (and purchases reading it) and returns it
/// as it is under that lock.
pub async fn lock_for_update(
    db: &mut sqlx::PgConnection,
    id: PartnerId,
) -> Result<Option<Partner>> {
    let locked = sqlx::query_scalar!(
        "select id from partners where id = $1 for no key update",
        id.0
    )
    .fetch_optional(&mut *db)
    .await
    .context("partners::lock_for_update")?;
    match locked {
        Some(_) => get(db, id).await,
        None => Ok(None),
    }
}

/// Replaces a partner's reseller qualifications and bumps its version; returns the new version.
pub async fn set_reseller_qualifications(
    db: impl PgExecutor<'_>,
    id: PartnerId,
    qualifications: &[ResellerQualification],
) -> Result<i64> {
    sqlx::query_scalar!(
        "update partners set reseller_qualifications = $2, version = version + 1 where id = $1
         returning version",
        id.0,
        &texts(qualifications, ResellerQualification::as_str) as &[&str],
    )
    .fetch_one(db)
    .await
    .context("partners::set_reseller_qualifications")
}

/// The kinds of those of `ids` that exist.
pub async fn kinds(
    db: impl PgExecutor<'_>,
    ids: &[PartnerId],
) -> Result<Vec<(PartnerId, PartnerKind)>> {
    let ids: Vec<_> = ids.iter().map(|id| id.0).collect();
    let rows = sqlx::query!(
        r#"select id as "id: PartnerId", kind as "kind: PartnerKind" from partners where id = any($1)"#,
        &ids
    )
    .fetch_all(db)
    .await.context("partners::kinds")?;
    Ok(rows.into_iter().map(|r| (r.id, r.kind)).collect())
}

/// Replaces the set of providers an indirect reseller is connected to and bumps its version;
/// returns the new version.
pub async fn replace_providers(
    db: &mut sqlx::PgConnection,
    reseller: PartnerId,
    providers: &[PartnerId],
) -> Result<i64> {
    sqlx::query!(
        "delete from indirect_reseller_providers where reseller_id = $1",
        reseller.0
    )
    .execute(&mut *db)
    .await
    .context("partners::replace_providers")?;
    let providers: Vec<_> = providers.iter().map(|id| id.0).collect();
    sqlx::query!(
        "insert into indirect_reseller_providers (reseller_id, provider_id)
         select $1, provider_id from unnest($2::uuid[]) as provider_id",
        reseller.0,
        &providers
    )
    .execute(&mut *db)
    .await
    .context("partners::replace_providers")?;
    sqlx::query_scalar!(
        "update partners set version = version + 1 where id = $1 returning version",
        reseller.0
    )
    .fetch_one(&mut *db)
    .await
    .context("partners::replace_providers")
}

/// Evidence references by reseller qualification, as stored in history rows.
pub type PartnerEvidence = BTreeMap<ResellerQualification, String>;

/// One version of a partner's profile (reseller qualifications and provider links).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProfileRecord {
    /// The partner.
    pub partner_id: PartnerId,
    /// The version this record is (the partner's ETag).
    pub version: i64,
    /// Special programs the partner was authorized for.
    pub reseller_qualifications: Vec<ResellerQualification>,
    /// Providers an indirect reseller was connected to.
    pub indirect_providers: Vec<PartnerId>,
    /// Evidence for each reseller qualification.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub evidence: Json<PartnerEvidence>,
    /// Why this version was recorded.
    pub reason: String,
    /// Who recorded it.
    pub actor: String,
    /// The request that recorded it.
    pub request_id: Option<String>,
    /// In force from.
    pub valid_from: DateTime<Utc>,
    /// In force until (exclusive); absent for the current version.
    pub valid_to: Option<DateTime<Utc>>,
}

/// Appends a snapshot of the partner's current profile as version `partner.version`.
pub async fn insert_history(
    db: impl PgExecutor<'_>,
    actor: &Actor,
    partner: &Partner,
    evidence: &PartnerEvidence,
    reason: &Reason,
) -> Result<()> {
    let providers: Vec<_> = partner.indirect_providers.iter().map(|id| id.0).collect();
    sqlx::query!(
        "insert into partner_profile_history
           (id, partner_id, version, reseller_qualifications, indirect_providers, evidence, reason, actor, request_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        Uuid::now_v7(),
        partner.id.0,
        partner.version,
        &texts(&partner.reseller_qualifications, ResellerQualification::as_str) as &[&str],
        &providers,
        Json(evidence) as _,
        reason.as_str(),
        actor.id(),
        actor.request_id(),
    )
    .execute(db)
    .await.context("partners::insert_history")?;
    Ok(())
}

/// `query_as!` of a [`ProfileRecord`]: the one select list of a profile version with the instant
/// it ended (`valid_to`, when the next version began), then `$rest` of the statement.
macro_rules! select_profiles {
    ($rest:tt, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            ProfileRecord,
            r#"select h.partner_id as "partner_id: PartnerId", h.version,
                      h.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>",
                      h.indirect_providers as "indirect_providers: Vec<PartnerId>",
                      h.evidence as "evidence: Json<PartnerEvidence>", h.reason, h.actor, h.request_id,
                      h.valid_from,
                      (select n.valid_from from partner_profile_history n
                       where n.partner_id = h.partner_id and n.version = h.version + 1) as valid_to
               from partner_profile_history h "# + $rest,
            $($arg),+
        )
    };
}

/// The profile version in force at `at` (`None`: now), if the partner existed then.
pub async fn profile_at(
    db: impl PgExecutor<'_>,
    partner: PartnerId,
    at: Option<DateTime<Utc>>,
) -> Result<Option<ProfileRecord>> {
    select_profiles!(
        "where h.partner_id = $1 and h.valid_from <= coalesce($2::timestamptz, 'infinity')
         order by h.valid_from desc limit 1",
        partner.0,
        at
    )
    .fetch_optional(db)
    .await
    .context("partners::profile_at")
}

/// A page of a partner's profile history, oldest first.
pub async fn profile_history(
    db: impl PgExecutor<'_>,
    partner: PartnerId,
    after_version: i64,
    limit: i64,
) -> Result<Vec<ProfileRecord>> {
    select_profiles!(
        "where h.partner_id = $1 and h.version > $2 order by h.version limit $3",
        partner.0,
        after_version,
        limit
    )
    .fetch_all(db)
    .await
    .context("partners::profile_history")
}
