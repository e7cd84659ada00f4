//! The reads of a policy draft's impact preview (issue 14, item 3): customers, relationships and
//! live subscriptions with the facts the rules read, counted by those facts or listed in keyset
//! pages. Each statement scans every customer (`-- fan-out: policy impact`); the caller runs
//! them in one repeatable-read transaction, so counts and pages read the same snapshot.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Context, Result};
use crate::domain::{
    CustomerId, CustomerQualification, OfferId, OfferTerms, PartnerId, PartnerKind, PartnerProfile,
    ProductKind, ResellerQualification, Segment, Standing, SubscriptionId, SubscriptionStatus,
};

/// How many rows share one combination of facts.
#[derive(Debug, Clone)]
pub struct Counted<T> {
    /// The number of rows.
    pub rows: i64,
    /// Their common facts.
    pub facts: T,
}

/// The qualification sets customers hold now, each with the number of customers holding it.
pub async fn customer_sets(db: impl PgExecutor<'_>) -> Result<Vec<Counted<CustomerQualification>>> {
    let rows = sqlx::query!(
        r#"select count(*) as "rows!", -- fan-out: policy impact
                  special_qualifications as "set: CustomerQualification"
           from customers group by special_qualifications"#
    )
    .fetch_all(db)
    .await
    .context("policy_impact::customer_sets")?;
    Ok(rows
        .into_iter()
        .map(|r| Counted {
            rows: r.rows,
            facts: r.set,
        })
        .collect())
}

/// A customer and its qualification set now.
#[derive(Debug, Clone)]
pub struct CustomerSet {
    /// The customer.
    pub id: CustomerId,
    /// Its name.
    pub name: String,
    /// Its set.
    pub set: CustomerQualification,
}

/// The customers after `after` in id order, at most `limit`.
pub async fn customers(
    db: impl PgExecutor<'_>,
    after: Option<CustomerId>,
    limit: i64,
) -> Result<Vec<CustomerSet>> {
    sqlx::query_as!(
        CustomerSet,
        r#"select id as "id: CustomerId", name, -- fan-out: policy impact
                  special_qualifications as "set: CustomerQualification"
           from customers where id > $1 order by id limit $2"#,
        after.map_or(Uuid::nil(), |c| c.0),
        limit
    )
    .fetch_all(db)
    .await
    .context("policy_impact::customers")
}

/// The terms of the offers in the catalog, each once, sorted.
pub async fn offer_terms(db: impl PgExecutor<'_>) -> Result<Vec<OfferTerms>> {
    let rows = sqlx::query!(
        r#"select distinct segment as "segment: Segment", product_kind as "product_kind: ProductKind"
           from offers order by 1, 2"#
    )
    .fetch_all(db)
    .await
    .context("policy_impact::offer_terms")?;
    Ok(rows
        .into_iter()
        .map(|r| OfferTerms {
            segment: r.segment,
            product_kind: r.product_kind,
        })
        .collect())
}

/// `query!` over linked pairs: `$head`, the columns of a [`Standing`] of customer `c` and
/// partner `p`, the pairs `customer_partners r` joined to both, then `$rest`.
macro_rules! pairs {
    ($head:tt, $rest:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query!(
            $head + r#"
                  c.special_qualifications as "customer: CustomerQualification",
                  exists(select 1 from subscriptions g
                         where g.customer_id = c.id and g.segment = 'gcc') as "gcc_history!",
                  p.kind as "kind: PartnerKind",
                  p.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>",
                  exists(select 1 from indirect_reseller_providers l
                         where l.reseller_id = p.id) as "has_provider!"
               from customer_partners r
               join customers c on c.id = r.customer_id
               join partners p on p.id = r.partner_id "# + $rest
            $(, $arg)*
        )
    };
}

/// The standing of a row read by [`pairs!`] or [`subscriptions!`].
macro_rules! standing {
    ($row:expr, $related:expr) => {
        Standing {
            customer: $row.customer,
            gcc_history: $row.gcc_history,
            partner: PartnerProfile {
                kind: $row.kind,
                reseller_qualifications: $row.reseller_qualifications.into_iter().collect(),
                has_indirect_provider: $row.has_provider,
            },
            related: $related,
        }
    };
}

/// The standings of every linked customer–partner pair, with the number of pairs in each.
pub async fn pair_standings(db: impl PgExecutor<'_>) -> Result<Vec<Counted<Standing>>> {
    let rows = pairs!(
        r#"select count(*) as "rows!", -- fan-out: policy impact
        "#,
        "group by 2, 3, 4, 5, 6"
    )
    .fetch_all(db)
    .await
    .context("policy_impact::pair_standings")?;
    Ok(rows
        .into_iter()
        .map(|r| Counted {
            rows: r.rows,
            facts: standing!(r, true),
        })
        .collect())
}

/// A linked customer–partner pair and its standing.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The customer.
    pub customer_id: CustomerId,
    /// The partner.
    pub partner_id: PartnerId,
    /// What the rules read of both.
    pub standing: Standing,
}

/// The linked pairs after `after` in (customer, partner) order, at most `limit`.
pub async fn pairs(
    db: impl PgExecutor<'_>,
    after: Option<(CustomerId, PartnerId)>,
    limit: i64,
) -> Result<Vec<Pair>> {
    let (customer, partner) = after.map_or((Uuid::nil(), Uuid::nil()), |(c, p)| (c.0, p.0));
    let rows = pairs!(
        r#"select r.customer_id as "customer_id: CustomerId", -- fan-out: policy impact
                  r.partner_id as "partner_id: PartnerId",
        "#,
        "where (r.customer_id, r.partner_id) > ($1, $2)
         order by r.customer_id, r.partner_id limit $3",
        customer,
        partner,
        limit
    )
    .fetch_all(db)
    .await
    .context("policy_impact::pairs")?;
    Ok(rows
        .into_iter()
        .map(|r| Pair {
            customer_id: r.customer_id,
            partner_id: r.partner_id,
            standing: standing!(r, true),
        })
        .collect())
}

/// `query!` over live (not cancelled) subscriptions `s`: `$head`, the columns of the
/// [`Standing`] of its customer `c` and partner `p` now, whether they are related, its offer's
/// terms, then `$rest`.
macro_rules! subscriptions {
    ($head:tt, $rest:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query!(
            $head + r#"
                  c.special_qualifications as "customer: CustomerQualification",
                  exists(select 1 from subscriptions g
                         where g.customer_id = c.id and g.segment = 'gcc') as "gcc_history!",
                  p.kind as "kind: PartnerKind",
                  p.reseller_qualifications as "reseller_qualifications: Vec<ResellerQualification>",
                  exists(select 1 from indirect_reseller_providers l
                         where l.reseller_id = p.id) as "has_provider!",
                  exists(select 1 from customer_partners r
                         where r.customer_id = s.customer_id and r.partner_id = s.partner_id) as "related!",
                  o.segment as "segment: Segment",
                  o.product_kind as "product_kind: ProductKind"
               from subscriptions s
               join customers c on c.id = s.customer_id
               join partners p on p.id = s.partner_id
               join offers o on o.id = s.offer_id
               where s.status <> 'cancelled' "# + $rest
            $(, $arg)*
        )
    };
}

/// What one live subscription's purchase would be decided from now.
#[derive(Debug, Clone)]
pub struct PurchaseStanding {
    /// The customer and partner.
    pub standing: Standing,
    /// The offer's terms.
    pub offer: OfferTerms,
}

/// The standings of every live subscription, with the number of subscriptions in each.
pub async fn subscription_standings(
    db: impl PgExecutor<'_>,
) -> Result<Vec<Counted<PurchaseStanding>>> {
    let rows = subscriptions!(
        r#"select count(*) as "rows!", -- fan-out: policy impact
        "#,
        "group by 2, 3, 4, 5, 6, 7, 8, 9"
    )
    .fetch_all(db)
    .await
    .context("policy_impact::subscription_standings")?;
    Ok(rows
        .into_iter()
        .map(|r| Counted {
            rows: r.rows,
            facts: PurchaseStanding {
                offer: OfferTerms {
                    segment: r.segment,
                    product_kind: r.product_kind,
                },
                standing: standing!(r, r.related),
            },
        })
        .collect())
}

/// A live subscription and what its purchase would be decided from now.
#[derive(Debug, Clone)]
pub struct LiveSubscription {
    /// The subscription.
    pub id: SubscriptionId,
    /// Its customer.
    pub customer_id: CustomerId,
    /// Its partner.
    pub partner_id: PartnerId,
    /// Its offer.
    pub offer_id: OfferId,
    /// Active or suspended.
    pub status: SubscriptionStatus,
    /// What the rules read.
    pub purchase: PurchaseStanding,
}

/// The live subscriptions after `after` in id order, at most `limit`.
pub async fn subscriptions(
    db: impl PgExecutor<'_>,
    after: Option<SubscriptionId>,
    limit: i64,
) -> Result<Vec<LiveSubscription>> {
    let rows = subscriptions!(
        r#"select s.id as "id: SubscriptionId", -- fan-out: policy impact
                  s.customer_id as "customer_id: CustomerId", s.partner_id as "partner_id: PartnerId",
                  s.offer_id as "offer_id: OfferId", s.status as "status: SubscriptionStatus",
        "#,
        "and s.id > $1 order by s.id limit $2",
        after.map_or(Uuid::nil(), |s| s.0),
        limit
    )
    .fetch_all(db)
    .await
    .context("policy_impact::subscriptions")?;
    Ok(rows
        .into_iter()
        .map(|r| LiveSubscription {
            id: r.id,
            customer_id: r.customer_id,
            partner_id: r.partner_id,
            offer_id: r.offer_id,
            status: r.status,
            purchase: PurchaseStanding {
                offer: OfferTerms {
                    segment: r.segment,
                    product_kind: r.product_kind,
                },
                standing: standing!(r, r.related),
            },
        })
        .collect())
}
