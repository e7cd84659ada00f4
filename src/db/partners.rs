//! Partners, their reseller qualifications and indirect reseller → provider links.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use super::{Keyset, texts};
use crate::domain::{PartnerId, PartnerKind, ResellerQualification};

/// A partner as stored, with its current qualifications and provider links.
#[derive(Debug, Clone, Serialize)]
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
) -> sqlx::Result<Partner> {
    let created_at = sqlx::query_scalar!(
        "insert into partners (id, name, kind, reseller_qualifications) values ($1, $2, $3, $4)
         returning created_at",
        id.0,
        name,
        kind.as_str(),
        &texts(reseller_qualifications, ResellerQualification::as_str) as &[&str],
    )
    .fetch_one(db)
    .await?;
    Ok(Partner {
        id,
        name: name.to_owned(),
        kind,
        reseller_qualifications: reseller_qualifications.to_vec(),
        indirect_providers: Vec::new(),
        created_at,
    })
}

/// One partner, if it exists.
pub async fn get(db: impl PgExecutor<'_>, id: PartnerId) -> sqlx::Result<Option<Partner>> {
    sqlx::query_as!(
        Partner,
        r#"select p.id as "id: PartnerId", p.name, p.kind as "kind: PartnerKind",
                  p.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>",
                  array(select l.provider_id from indirect_reseller_providers l
                        where l.reseller_id = p.id order by l.provider_id) as "indirect_providers!: Vec<PartnerId>",
                  p.created_at
           from partners p where p.id = $1"#,
        id.0
    )
    .fetch_optional(db)
    .await
}

/// A page of partners, oldest first.
pub async fn list(db: impl PgExecutor<'_>, page: Keyset) -> sqlx::Result<Vec<Partner>> {
    sqlx::query_as!(
        Partner,
        r#"select p.id as "id: PartnerId", p.name, p.kind as "kind: PartnerKind",
                  p.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>",
                  array(select l.provider_id from indirect_reseller_providers l
                        where l.reseller_id = p.id order by l.provider_id) as "indirect_providers!: Vec<PartnerId>",
                  p.created_at
           from partners p where p.id > $1 order by p.id limit $2"#,
        page.after(),
        page.limit
    )
    .fetch_all(db)
    .await
}

/// Locks a partner against concurrent profile changes (and purchases reading it) and returns
/// its kind and current reseller qualifications.
pub async fn lock_for_update(
    db: impl PgExecutor<'_>,
    id: PartnerId,
) -> sqlx::Result<Option<(PartnerKind, Vec<ResellerQualification>)>> {
    let row = sqlx::query!(
        r#"select kind as "kind: PartnerKind",
                  reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>"
           from partners where id = $1 for no key update"#,
        id.0
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.kind, r.reseller_qualifications)))
}

/// Replaces a partner's reseller qualifications.
pub async fn set_reseller_qualifications(
    db: impl PgExecutor<'_>,
    id: PartnerId,
    qualifications: &[ResellerQualification],
) -> sqlx::Result<()> {
    sqlx::query!(
        "update partners set reseller_qualifications = $2 where id = $1",
        id.0,
        &texts(qualifications, ResellerQualification::as_str) as &[&str],
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The kinds of those of `ids` that exist.
pub async fn kinds(
    db: impl PgExecutor<'_>,
    ids: &[PartnerId],
) -> sqlx::Result<Vec<(PartnerId, PartnerKind)>> {
    let ids: Vec<_> = ids.iter().map(|id| id.0).collect();
    let rows = sqlx::query!(
        r#"select id as "id: PartnerId", kind as "kind: PartnerKind" from partners where id = any($1)"#,
        &ids
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.kind)).collect())
}

/// The providers an indirect reseller is connected to, sorted.
pub async fn providers(
    db: impl PgExecutor<'_>,
    reseller: PartnerId,
) -> sqlx::Result<Vec<PartnerId>> {
    sqlx::query_scalar!(
        r#"select provider_id as "provider_id: PartnerId" from indirect_reseller_providers
           where reseller_id = $1 order by provider_id"#,
        reseller.0
    )
    .fetch_all(db)
    .await
}

/// Replaces the set of providers an indirect reseller is connected to.
pub async fn replace_providers(
    db: &mut sqlx::PgConnection,
    reseller: PartnerId,
    providers: &[PartnerId],
) -> sqlx::Result<()> {
    sqlx::query!(
        "delete from indirect_reseller_providers where reseller_id = $1",
        reseller.0
    )
    .execute(&mut *db)
    .await?;
    let providers: Vec<_> = providers.iter().map(|id| id.0).collect();
    sqlx::query!(
        "insert into indirect_reseller_providers (reseller_id, provider_id)
         select $1, provider_id from unnest($2::uuid[]) as provider_id",
        reseller.0,
        &providers
    )
    .execute(&mut *db)
    .await?;
    Ok(())
}
