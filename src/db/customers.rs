//! Customers, their special qualification sets and partner relationships.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, types::Json};
use uuid::Uuid;

use super::{Context, Keyset, Result, texts};
use crate::domain::{
    Actor, CustomerId, CustomerQualification, DisplayName, ExternalReference, PartnerId, Reason,
    SpecialQualification,
};

/// A customer as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c01", "name": "Fabrikam University",
    "special_qualifications": ["education"], "version": 1, "created_at": "2026-11-24T10:00:00.123456Z"}))]
pub struct Customer {
    /// Customer id.
    pub id: CustomerId,
    /// Display name.
    pub name: String,
    /// The special qualification set in force (valid under the policy version it was recorded under).
    pub special_qualifications: CustomerQualification,
    /// Incremented by every qualification change.
    pub version: i64,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
    /// The customer's id in the reseller's own CRM, unique across customers.
    pub external_reference: Option<String>,
}

pub(super) fn qualification_texts(set: CustomerQualification) -> Vec<&'static str> {
    texts(&set.qualifications(), SpecialQualification::as_str)
}

/// `query_as!` of a [`Customer`]: the one select list of `customers c`, then `$rest` of the
/// statement.
macro_rules! select_customers {
    ($rest:tt, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            Customer,
            r#"select c.id as "id: CustomerId", c.name,
                      c.special_qualifications as "special_qualifications: CustomerQualification",
                      c.version, c.created_at, c.external_reference
               from customers c "# + $rest,
            $($arg),+
        )
    };
}

/// One customer, if it exists.
pub async fn get(db: impl PgExecutor<'_>, id: CustomerId) -> Result<Option<Customer>> {
    select_customers!("where c.id = $1", id.0)
        .fetch_optional(db)
        .await
        .context("customers::get")
}

/// A page of customers, oldest first; only those related to `partner` when it is given.
pub async fn list(
    db: impl PgExecutor<'_>,
    partner: Option<PartnerId>,
    page: Keyset,
) -> Result<Vec<Customer>> {
    search(db, partner, &CustomerFilter::default(), page).await
}

/// What to look for among customers.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter<'a> {
    /// Case-insensitive substring of the name.
    pub name_contains: Option<&'a str>,
    /// Holds this qualification (`Some(None)`: holds none, a commercial customer).
    pub qualification: Option<Option<SpecialQualification>>,
    /// Exactly this external reference.
    pub external_reference: Option<&'a str>,
}

/// `text` as a pattern for `ILIKE` that matches it literally anywhere.
pub(super) fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// A page of customers matching `filter`, oldest first; only those related to `partner` when it
/// is given. The name is matched through the trigram index, the qualification through the GIN
/// index of the sets.
pub async fn search(
    db: impl PgExecutor<'_>,
    partner: Option<PartnerId>,
    filter: &CustomerFilter<'_>,
    page: Keyset,
) -> Result<Vec<Customer>> {
    let (any_qualification, qualification) = match filter.qualification {
        None => (true, None),
        Some(q) => (false, q.map(SpecialQualification::as_str)),
    };
    let name = filter.name_contains.map(contains_pattern);
    // Two statements, not one with `$3 is null or exists (…)`: that form walks every customer
    // and asks each whether it is the partner's; a partner's list walks its relationships in
    // customer order instead (index `customer_partners (partner_id, customer_id)`).
    match partner {
        None => select_customers!(
            "-- fan-out: customer list
             where c.id > $1
               and ($3::text is null or c.name ilike $3)
               and ($4 or ($5::text is null and c.special_qualifications = '{}')
                       or c.special_qualifications @> array[$5::text])
               and ($6::text is null or c.external_reference = $6)
             order by c.id limit $2",
            page.after(),
            page.limit,
            name,
            any_qualification,
            qualification,
            filter.external_reference,
        )
        .fetch_all(db)
        .await
        .context("customers::search"),
        Some(partner) => select_customers!(
            "-- fan-out: customer list
             join customer_partners r on r.customer_id = c.id
             where r.partner_id = $7 and r.customer_id > $1
               and ($3::text is null or c.name ilike $3)
               and ($4 or ($5::text is null and c.special_qualifications = '{}')
                       or c.special_qualifications @> array[$5::text])
               and ($6::text is null or c.external_reference = $6)
             order by r.customer_id limit $2",
            page.after(),
            page.limit,
            name,
            any_qualification,
            qualification,
            filter.external_reference,
            partner.0,
        )
        .fetch_all(db)
        .await
        .context("customers::search_related"),
    }
}

/// Takes the customer's write lock, the one every purchase and qualification change of this
/// customer takes, and returns the customer as it is under that lock.
pub async fn lock_for_update(db: impl PgExecutor<'_>, id: CustomerId) -> Result<Option<Customer>> {
    select_customers!("where c.id = $1 for no key update", id.0)
        .fetch_optional(db)
        .await
        .context("customers::lock_for_update")
}

/// Replaces the qualification set, decided at `at`, and bumps the version; the caller holds the
/// lock.
pub async fn set_qualifications(
    db: impl PgExecutor<'_>,
    id: CustomerId,
    qualifications: CustomerQualification,
    at: DateTime<Utc>,
) -> Result<i64> {
    sqlx::query_scalar!(
        "update customers set special_qualifications = $2, qualified_at = $3, version = version + 1
         where id = $1 returning version",
        id.0,
        &qualification_texts(qualifications) as &[&str],
        at,
    )
    .fetch_one(db)
    .await
    .context("customers::set_qualifications")
}

/// Records a customer ↔ partner relationship; `false` if it already existed.
pub async fn link_partner(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    partner: PartnerId,
) -> Result<bool> {
    let inserted = sqlx::query!(
        "insert into customer_partners (customer_id, partner_id) values ($1, $2)
         on conflict do nothing",
        customer.0,
        partner.0
    )
    .execute(db)
    .await
    .context("customers::link_partner")?;
    Ok(inserted.rows_affected() == 1)
}

/// The partners a customer has relationships with, sorted.
pub async fn partners(db: impl PgExecutor<'_>, customer: CustomerId) -> Result<Vec<PartnerId>> {
    sqlx::query_scalar!(
        r#"select partner_id as "partner_id: PartnerId" from customer_partners
           where customer_id = $1 order by partner_id"#,
        customer.0
    )
    .fetch_all(db)
    .await
    .context("customers::partners")
}

/// Evidence references by qualification, as stored in history rows.
pub type CustomerEvidence = BTreeMap<SpecialQualification, String>;

/// One version of a customer's qualification set, with when it was in force.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"customer_id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c01", "version": 2, "special_qualifications": ["gcc"],
    "evidence": {"gcc": "GCV-123"}, "reason": "government cloud validation", "actor": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c05",
    "request_id": "0193a0c4-5000-7000-8000-000000000001", "valid_from": "2026-11-24T10:00:00.123456Z", "valid_to": null}))]
pub struct QualificationRecord {
    /// The customer.
    pub customer_id: CustomerId,
    /// The version this record is (the customer's ETag).
    pub version: i64,
    /// The set.
    pub special_qualifications: CustomerQualification,
    /// Evidence for each qualification of the set.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub evidence: Json<CustomerEvidence>,
    /// Why the set was recorded.
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

/// Appends version `version` of a customer's qualification history, in force from `at`, the
/// instant it was decided.
#[allow(clippy::too_many_arguments)]
pub async fn insert_history(
    db: impl PgExecutor<'_>,
    actor: &Actor,
    customer: CustomerId,
    version: i64,
    qualifications: CustomerQualification,
    evidence: &CustomerEvidence,
    reason: &Reason,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query!(
        "insert into customer_qualification_history
           (id, customer_id, version, special_qualifications, evidence, reason, actor, request_id, valid_from)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        Uuid::now_v7(),
        customer.0,
        version,
        &qualification_texts(qualifications) as &[&str],
        Json(evidence) as _,
        reason.as_str(),
        actor.id(),
        actor.request_id(),
        at,
    )
    .execute(db)
    .await
    .context("customers::insert_history")?;
    Ok(())
}

/// `query_as!` of a [`QualificationRecord`]: the one select list of a qualification version with
/// the instant it ended (`valid_to`, when the next version began), then `$rest` of the statement.
/// The statement's `$1` is the customer: the `valid_to` subquery names it too, so on Citus it stays
/// on the customer's shard.
macro_rules! select_qualification_versions {
    ($rest:tt, $($arg:expr),+ $(,)?) => {
        sqlx::query_as!(
            QualificationRecord,
            r#"select h.customer_id as "customer_id: CustomerId", h.version,
                      h.special_qualifications as "special_qualifications: CustomerQualification",
                      h.evidence as "evidence: Json<CustomerEvidence>", h.reason, h.actor, h.request_id,
                      h.valid_from,
                      (select n.valid_from from customer_qualification_history n
                       where n.customer_id = $1 and n.version = h.version + 1) as valid_to
               from customer_qualification_history h "# + $rest,
            $($arg),+
        )
    };
}

/// The version in force at `at` (`None`: now), if the customer existed then.
pub async fn qualifications_at(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    at: Option<DateTime<Utc>>,
) -> Result<Option<QualificationRecord>> {
    select_qualification_versions!(
        "where h.customer_id = $1 and h.valid_from <= coalesce($2::timestamptz, 'infinity')
         order by h.valid_from desc limit 1",
        customer.0,
        at
    )
    .fetch_optional(db)
    .await
    .context("customers::qualifications_at")
}

/// A page of a customer's qualification history, oldest first.
pub async fn qualification_history(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    after_version: i64,
    limit: i64,
) -> Result<Vec<QualificationRecord>> {
    select_qualification_versions!(
        "where h.customer_id = $1 and h.version > $2 order by h.version limit $3",
        customer.0,
        after_version,
        limit
    )
    .fetch_all(db)
    .await
    .context("customers::qualification_history")
}

/// A customer to create in bulk, with version 1 of its history.
#[derive(Debug)]
pub struct NewCustomer {
    /// Its id.
    pub id: CustomerId,
    /// Its name.
    pub name: DisplayName,
    /// Its first qualification set.
    pub qualifications: CustomerQualification,
    /// Evidence for that set.
    pub evidence: CustomerEvidence,
    /// Why.
    pub reason: Reason,
    /// Its id in the reseller's CRM, claimed with [`claim_references`] before it is written.
    pub external_reference: Option<ExternalReference>,
}

/// Creates many customers with their first history versions, in two statements.
pub async fn insert_many(
    db: &mut sqlx::PgConnection,
    actor: &Actor,
    customers: &[&NewCustomer],
    at: DateTime<Utc>,
) -> Result<()> {
    let ids: Vec<Uuid> = customers.iter().map(|c| c.id.0).collect();
    let names: Vec<&str> = customers.iter().map(|c| c.name.as_str()).collect();
    // Each set as comma-joined text: PostgreSQL has no arrays of arrays of different lengths.
    let sets: Vec<String> = customers
        .iter()
        .map(|c| qualification_texts(c.qualifications).join(","))
        .collect();
    let references: Vec<Option<&str>> = customers
        .iter()
        .map(|c| c.external_reference.as_ref().map(ExternalReference::as_str))
        .collect();
    let evidence: Vec<Json<&CustomerEvidence>> =
        customers.iter().map(|c| Json(&c.evidence)).collect();
    let reasons: Vec<&str> = customers.iter().map(|c| c.reason.as_str()).collect();
    let history_ids: Vec<Uuid> = customers.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query!(
        "insert into customers (id, name, special_qualifications, external_reference, qualified_at)
         select id, name, string_to_array(q, ','), r, $5
         from unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) as t(id, name, q, r)",
        &ids,
        &names as &[&str],
        &sets,
        &references as &[Option<&str>],
        at,
    )
    .execute(&mut *db)
    .await
    .context("customers::insert_many")?;
    sqlx::query!(
        "insert into customer_qualification_history
           (id, customer_id, version, special_qualifications, evidence, reason, actor, request_id, valid_from)
         select h, c, 1, string_to_array(q, ','), e, r, $6, $7, $8
         from unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[]) as t(h, c, q, e, r)",
        &history_ids,
        &ids,
        &sets,
        &evidence as _,
        &reasons as &[&str],
        actor.id(),
        actor.request_id(),
        at,
    )
    .execute(&mut *db)
    .await.context("customers::insert_many")?;
    Ok(())
}

/// Claims each `references[i]` for `customers[i]`; returns the customers whose claim succeeded.
/// A reference that another customer holds, or that an earlier element claims, is not claimed (a
/// claim by a transaction still open is waited for).
pub async fn claim_references(
    db: impl PgExecutor<'_>,
    references: &[&str],
    customers: &[Uuid],
) -> Result<Vec<CustomerId>> {
    sqlx::query_scalar!(
        r#"insert into customer_external_references (external_reference, customer_id)
           select * from unnest($1::text[], $2::uuid[])
           on conflict do nothing
           returning customer_id as "customer_id: CustomerId""#,
        references as &[&str],
        customers,
    )
    .fetch_all(db)
    .await
    .context("customers::claim_references")
}

/// A customer holding an external reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferenceHolder {
    /// The reference.
    pub external_reference: String,
    /// The customer that has it.
    pub customer_id: CustomerId,
}

/// The customers holding any of `references` (those nobody holds are left out).
pub async fn reference_holders(
    db: impl PgExecutor<'_>,
    references: &[&str],
) -> Result<Vec<ReferenceHolder>> {
    sqlx::query_as!(
        ReferenceHolder,
        r#"-- fan-out: bulk import
           select external_reference, customer_id as "customer_id: CustomerId"
           from customer_external_references where external_reference = any($1)"#,
        references as &[&str],
    )
    .fetch_all(db)
    .await
    .context("customers::reference_holders")
}

/// Whether the customer has a relationship with the partner.
pub async fn is_related(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    partner: PartnerId,
) -> Result<bool> {
    sqlx::query_scalar!(
        r#"select exists(select 1 from customer_partners where customer_id = $1 and partner_id = $2) as "related!""#,
        customer.0,
        partner.0
    )
    .fetch_one(db)
    .await.context("customers::is_related")
}
