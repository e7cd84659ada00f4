//! Developer tools: `partner-catalog dev seed` fills a database with synthetic, correctly chained
//! history for benchmarks.
//!
//! Seeded events are real events on real chains: their ids encode their time, and their hashes
//! are computed here with the documented canonical form, so `audit verify` passes on them. They
//! go on chains of their own (new customers and partners), written with the actor `dev-seed`, and
//! never extend a chain that existed before.

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    db,
    domain::EventType,
    domain::audit::{ChainedEvent, GENESIS_HASH, event_id_at},
};

/// The actor of every seeded event.
pub const SEED_ACTOR: &str = "dev-seed";

/// Bytes of COPY data sent to the server at a time.
const COPY_CHUNK: usize = 4 << 20;

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Number of events.
    pub events: u64,
    /// Number of new customers the events are about (a few of them get most of the events).
    pub customers: u64,
    /// Number of new partners.
    pub partners: u64,
    /// The events are spread evenly over this many days, up to now.
    pub days: u32,
}

/// What was seeded.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// Events written.
    pub events: u64,
    /// The customer with the most events.
    pub busiest_customer: Uuid,
    /// Its number of events.
    pub busiest_customer_events: i64,
    /// Time of the first event.
    pub first_at: DateTime<Utc>,
    /// Time of the last event.
    pub last_at: DateTime<Utc>,
}

/// SplitMix64: a tiny, fast, reproducible generator; seeded data needs no stronger randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A chain being written: its position and last hash.
#[derive(Clone)]
struct Chain {
    id: Uuid,
    seq: i64,
    hash: [u8; 32],
}

impl Chain {
    fn new(id: Uuid) -> Self {
        Self {
            id,
            seq: 0,
            hash: GENESIS_HASH,
        }
    }
}

/// Writes `options.events` chained events ending at `now`, in one transaction.
pub async fn seed(
    pool: &PgPool,
    options: &SeedOptions,
    now: DateTime<Utc>,
) -> anyhow::Result<SeedReport> {
    anyhow::ensure!(options.events > 0, "--events must be at least 1");
    anyhow::ensure!(
        options.customers > 0 && options.partners > 0,
        "--customers and --partners must be at least 1"
    );
    let span = TimeDelta::days(i64::from(options.days))
        .num_microseconds()
        .context("--days is too large")?;
    let last = now.timestamp_micros();
    let first = last - span;
    let mut rng = Rng(0x5eed_5eed_5eed_5eed ^ options.events);
    let mut customers: Vec<Chain> = (0..options.customers)
        .map(|_| Chain::new(event_id_at(first, rng.next())))
        .collect();
    let mut partners: Vec<Chain> = (0..options.partners)
        .map(|_| Chain::new(event_id_at(first, rng.next())))
        .collect();

    let mut tx = pool.begin().await?;
    let ids = |chains: &[Chain]| chains.iter().map(|c| c.id).collect::<Vec<_>>();
    db::seed::insert_customers(&mut *tx, &ids(&customers)).await?;
    db::seed::insert_partners(&mut *tx, &ids(&partners)).await?;
    db::seed::set_chaining(&mut *tx, false).await?;
    let mut copy = db::seed::copy_events(&mut tx).await?;
    let mut buffer = Vec::with_capacity(COPY_CHUNK + 4096);
    for i in 0..options.events {
        let micros = first + (i128::from(span) * i128::from(i) / i128::from(options.events)) as i64;
        let partner = rng.below(options.partners) as usize;
        // Cubing a uniform number skews the choice, like a few large tenants among many small
        // ones: of 100,000 customers, the first gets about 2% of all events.
        let customer = (rng.unit().powi(3) * options.customers as f64) as usize;
        let kind = rng.below(100);
        let (event_type, about_customer, names_partner) = match kind {
            0..3 => (EventType::PartnerQualificationsSet, false, true),
            3..43 => (EventType::SubscriptionCreated, true, true),
            43..58 => (EventType::PurchaseDenied, true, true),
            58..70 => (EventType::IdempotentReplayServed, true, true),
            70..80 => (EventType::SubscriptionStatusChanged, true, true),
            80..90 => (EventType::CustomerPartnerLinked, true, true),
            _ => (EventType::CustomerQualificationsSet, true, false),
        };
        let segment = ["commercial", "education", "nonprofit", "gcc"][rng.below(4) as usize];
        // Written exactly as PostgreSQL prints this jsonb (keys by length, then bytes; ", " and
        // ": " separators), because that text is what the hash covers.
        let payload = format!(
            r#"{{"seed": {i}, "segment": "{segment}", "quantity": {}}}"#,
            1 + rng.below(500)
        );
        let customer_id = about_customer.then(|| customers[customer].id);
        let partner_id = names_partner.then(|| partners[partner].id);
        let chain = if about_customer {
            &mut customers[customer]
        } else {
            &mut partners[partner]
        };
        let occurred_at =
            DateTime::from_timestamp_micros(micros).context("event time out of range")?;
        let event = ChainedEvent {
            id: event_id_at(micros, rng.next()),
            chain_id: chain.id,
            chain_seq: chain.seq + 1,
            prev_hash: &chain.hash,
            stored_hash: &[],
            occurred_at,
            event_type: event_type.as_str(),
            customer_id,
            partner_id,
            actor: SEED_ACTOR,
            actor_role: None,
            actor_partner_id: None,
            request_id: None,
            payload: &payload,
        };
        let hash = event.hash();
        copy_line(&mut buffer, &event, &hash);
        chain.seq += 1;
        chain.hash = hash;
        if buffer.len() >= COPY_CHUNK {
            copy.send(std::mem::take(&mut buffer)).await?;
        }
        if (i + 1) % 1_000_000 == 0 {
            tracing::info!(events = i + 1, "seeding");
        }
    }
    copy.send(buffer).await?;
    let written = copy.finish().await?;

    let chains: Vec<&Chain> = customers
        .iter()
        .chain(&partners)
        .filter(|c| c.seq > 0)
        .collect();
    db::seed::insert_heads(
        &mut *tx,
        &chains.iter().map(|c| c.id).collect::<Vec<_>>(),
        &chains.iter().map(|c| c.seq).collect::<Vec<_>>(),
        &chains.iter().map(|c| c.hash.to_vec()).collect::<Vec<_>>(),
    )
    .await?;
    db::seed::set_chaining(&mut *tx, true).await?;
    tx.commit().await?;

    customers.sort_by_key(|c| std::cmp::Reverse(c.seq));
    Ok(SeedReport {
        events: written,
        busiest_customer: customers[0].id,
        busiest_customer_events: customers[0].seq,
        first_at: DateTime::from_timestamp_micros(first).context("first event time")?,
        last_at: DateTime::from_timestamp_micros(last).context("last event time")?,
    })
}

/// One row of `db::seed::copy_events`, in COPY's text format. No seeded value holds a tab, a
/// line break or a backslash, so none needs escaping; bytea is written `\\x<hex>`.
fn copy_line(out: &mut Vec<u8>, event: &ChainedEvent<'_>, hash: &[u8; 32]) {
    use std::io::Write;
    let optional = |id: Option<Uuid>| id.map_or_else(|| r"\N".to_owned(), |id| id.to_string());
    // Writing into a Vec cannot fail.
    let _ = writeln!(
        out,
        "{}\t{}\t{}\t\\N\t{}\t{}\t{}\t{}\t{}\t\\\\x{}\t\\\\x{}\t{}",
        event.id,
        event.occurred_at.format("%Y-%m-%d %H:%M:%S%.6f+00"),
        event.actor,
        optional(event.customer_id),
        optional(event.partner_id),
        event.event_type,
        event.payload,
        event.chain_seq,
        hex::encode(event.prev_hash),
        hex::encode(hash),
        event.chain_id,
    );
}
