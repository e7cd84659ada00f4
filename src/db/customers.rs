//! Customers, their special qualification sets and partner relationships.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use super::{Keyset, texts};
use crate::domain::{CustomerId, CustomerQualification, PartnerId, SpecialQualification};

/// A customer as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Customer {
    /// Customer id.
    pub id: CustomerId,
    /// Display name.
    pub name: String,
    /// The special qualification set in force (one of the seven of R3).
    pub special_qualifications: CustomerQualification,
    /// Incremented by every qualification change.
    pub version: i64,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
}

fn qualification_texts(set: CustomerQualification) -> Vec<&'static str> {
    texts(set.qualifications(), SpecialQualification::as_str)
}

/// Inserts a customer.
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: CustomerId,
    name: &str,
    qualifications: CustomerQualification,
) -> sqlx::Result<Customer> {
    let created_at = sqlx::query_scalar!(
        "insert into customers (id, name, special_qualifications) values ($1, $2, $3)
         returning created_at",
        id.0,
        name,
        &qualification_texts(qualifications) as &[&str],
    )
    .fetch_one(db)
    .await?;
    Ok(Customer {
        id,
        name: name.to_owned(),
        special_qualifications: qualifications,
        version: 1,
        created_at,
    })
}

/// One customer, if it exists.
pub async fn get(db: impl PgExecutor<'_>, id: CustomerId) -> sqlx::Result<Option<Customer>> {
    sqlx::query_as!(
        Customer,
        r#"select id as "id: CustomerId", name,
                  special_qualifications as "special_qualifications: CustomerQualification",
                  version, created_at
           from customers where id = $1"#,
        id.0
    )
    .fetch_optional(db)
    .await
}

/// A page of customers, oldest first.
pub async fn list(db: impl PgExecutor<'_>, page: Keyset) -> sqlx::Result<Vec<Customer>> {
    sqlx::query_as!(
        Customer,
        r#"select id as "id: CustomerId", name,
                  special_qualifications as "special_qualifications: CustomerQualification",
                  version, created_at
           from customers where id > $1 order by id limit $2"#,
        page.after(),
        page.limit
    )
    .fetch_all(db)
    .await
}

/// Takes the customer's write lock, the one every purchase and qualification change of this
/// customer takes, and returns the customer as it is under that lock.
pub async fn lock_for_update(
    db: impl PgExecutor<'_>,
    id: CustomerId,
) -> sqlx::Result<Option<Customer>> {
    sqlx::query_as!(
        Customer,
        r#"select id as "id: CustomerId", name,
                  special_qualifications as "special_qualifications: CustomerQualification",
                  version, created_at
           from customers where id = $1 for no key update"#,
        id.0
    )
    .fetch_optional(db)
    .await
}

/// Replaces the qualification set and bumps the version; the caller holds the lock.
pub async fn set_qualifications(
    db: impl PgExecutor<'_>,
    id: CustomerId,
    qualifications: CustomerQualification,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "update customers set special_qualifications = $2, version = version + 1
         where id = $1 returning version",
        id.0,
        &qualification_texts(qualifications) as &[&str],
    )
    .fetch_one(db)
    .await
}

/// Records a customer ↔ partner relationship; `false` if it already existed.
pub async fn link_partner(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
    partner: PartnerId,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "insert into customer_partners (customer_id, partner_id) values ($1, $2)
         on conflict do nothing",
        customer.0,
        partner.0
    )
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The partners a customer has relationships with, sorted.
pub async fn partners(
    db: impl PgExecutor<'_>,
    customer: CustomerId,
) -> sqlx::Result<Vec<PartnerId>> {
    sqlx::query_scalar!(
        r#"select partner_id as "partner_id: PartnerId" from customer_partners
           where customer_id = $1 order by partner_id"#,
        customer.0
    )
    .fetch_all(db)
    .await
}
