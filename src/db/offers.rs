//! The offer catalog.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use super::{Context, Keyset, Result};
use crate::domain::{OfferId, OfferTerms, ProductKind, Segment};

/// An offer as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c03", "name": "Microsoft 365 A3", "segment": "education",
    "product_kind": "license_based", "created_at": "2026-11-24T10:00:00.123456Z"}))]
pub struct Offer {
    /// Offer id.
    pub id: OfferId,
    /// Display name.
    pub name: String,
    /// Segment the offer is priced for.
    pub segment: Segment,
    /// Kind of product.
    pub product_kind: ProductKind,
    /// When the offer was created.
    pub created_at: DateTime<Utc>,
}

impl Offer {
    /// What the purchase rules look at.
    pub fn terms(&self) -> OfferTerms {
        OfferTerms {
            segment: self.segment,
            product_kind: self.product_kind,
        }
    }
}

/// Inserts an offer; the database rejects special offers that are not license based (R1).
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: OfferId,
    name: &str,
    terms: OfferTerms,
) -> Result<Offer> {
    let created_at = sqlx::query_scalar!(
        "insert into offers (id, name, segment, product_kind) values ($1, $2, $3, $4)
         returning created_at",
        id.0,
        name,
        terms.segment.as_str(),
        terms.product_kind.as_str(),
    )
    .fetch_one(db)
    .await
    .context("offers::insert")?;
    Ok(Offer {
        id,
        name: name.to_owned(),
        segment: terms.segment,
        product_kind: terms.product_kind,
        created_at,
    })
}

/// One offer, if it exists.
pub async fn get(db: impl PgExecutor<'_>, id: OfferId) -> Result<Option<Offer>> {
    sqlx::query_as!(
        Offer,
        r#"select id as "id: OfferId", name, segment as "segment: Segment",
                  product_kind as "product_kind: ProductKind", created_at
           from offers where id = $1"#,
        id.0
    )
    .fetch_optional(db)
    .await
    .context("offers::get")
}

/// A page of the offers whose terms are among `terms` (and that existed at `at`, if given),
/// oldest first.
pub async fn list_with_terms(
    db: impl PgExecutor<'_>,
    terms: &[OfferTerms],
    at: Option<DateTime<Utc>>,
    page: Keyset,
) -> Result<Vec<Offer>> {
    let segments: Vec<_> = terms.iter().map(|t| t.segment.as_str()).collect();
    let kinds: Vec<_> = terms.iter().map(|t| t.product_kind.as_str()).collect();
    sqlx::query_as!(
        Offer,
        r#"select id as "id: OfferId", name, segment as "segment: Segment",
                  product_kind as "product_kind: ProductKind", created_at
           from offers
           where (segment, product_kind) in (select * from unnest($1::text[], $2::text[]))
             and created_at <= coalesce($3::timestamptz, 'infinity') and id > $4
           order by id limit $5"#,
        &segments as &[&str],
        &kinds as &[&str],
        at,
        page.after(),
        page.limit
    )
    .fetch_all(db)
    .await
    .context("offers::list_with_terms")
}
