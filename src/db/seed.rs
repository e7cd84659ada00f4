//! Bulk loading of synthetic history, for benchmarks (`partner-catalog dev seed`).

use sqlx::{PgConnection, PgExecutor, postgres::PgCopyIn};
use uuid::Uuid;

use super::{Context, Result};

/// Inserts customers named `Seed customer <n>`, with no special qualification.
pub async fn insert_customers(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<()> {
    sqlx::query!(
        "insert into customers (id, name)
         select id, 'Seed customer ' || n from unnest($1::uuid[]) with ordinality as t(id, n)",
        ids
    )
    .execute(db)
    .await
    .context("seed::insert_customers")?;
    Ok(())
}

/// Inserts direct-bill partners named `Seed partner <n>`, authorized for every program.
pub async fn insert_partners(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<()> {
    sqlx::query!(
        "insert into partners (id, name, kind, reseller_qualifications)
         select id, 'Seed partner ' || n, 'direct_bill_partner', '{education,gcc,nonprofit}'
         from unnest($1::uuid[]) with ordinality as t(id, n)",
        ids
    )
    .execute(db)
    .await
    .context("seed::insert_partners")?;
    Ok(())
}

/// Turns the chaining trigger off or on again. Seeding writes chained rows itself, in bulk;
/// the caller does both in one transaction, so no other writer ever sees the trigger off (the
/// `alter table` holds an exclusive lock on `events` until the transaction ends).
pub async fn set_chaining(db: impl PgExecutor<'_>, on: bool) -> Result<()> {
    if on {
        sqlx::query!("alter table events enable trigger events_chain")
            .execute(db)
            .await
            .context("seed::set_chaining")?;
    } else {
        sqlx::query!("alter table events disable trigger events_chain")
            .execute(db)
            .await
            .context("seed::set_chaining")?;
    }
    Ok(())
}

/// Starts a `COPY` of chained events; rows are the text format, columns in this order.
pub async fn copy_events(db: &mut PgConnection) -> Result<PgCopyIn<&mut PgConnection>> {
    db.copy_in_raw(
        "copy events (id, occurred_at, actor, request_id, customer_id, partner_id, event_type,
                      payload, chain_seq, prev_hash, hash, chain_id) from stdin",
    )
    .await
    .context("seed::copy_events")
}

/// Records the heads of newly written chains.
pub async fn insert_heads(
    db: impl PgExecutor<'_>,
    chains: &[Uuid],
    seqs: &[i64],
    hashes: &[Vec<u8>],
) -> Result<()> {
    sqlx::query!(
        "insert into event_chain_heads (chain_id, seq, hash)
         select * from unnest($1::uuid[], $2::int8[], $3::bytea[])",
        chains,
        seqs,
        hashes
    )
    .execute(db)
    .await
    .context("seed::insert_heads")?;
    Ok(())
}
