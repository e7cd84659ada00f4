//! Load generator for purchases per second (issue 6; `BENCHMARKS.md`, "Purchases per second").
//!
//! `loadgen seed` writes the dataset straight into an empty, migrated database: 10 partners,
//! 4 offers (one license-based offer per segment) and 10,000 customers with a mix of the seven
//! qualification sets, each linked to one partner. Ids are derived from numbers (see [`customer_id`]),
//! so `scripts/bench/purchase.sql` (pgbench) picks the same rows without a lookup.
//!
//! `loadgen run` issues its tokens in the database, drives a running service over HTTP with N
//! concurrent clients for a fixed time, prints throughput, latency percentiles and status counts,
//! and checks in the database that no customer got a non-GCC subscription after a GCC one.
//!
//! `loadgen webhooks` registers, through the API, a webhook endpoint for every partner (as its
//! global admin) and one for the platform (as an operator), all pointing at a receiver
//! (`examples/webhook_sink.rs`; `scripts/bench-webhooks.sh`).
//!
//! ```sh
//! cargo run --release --example loadgen -- seed --database-url postgres://…/partner_catalog_loadgen
//! cargo run --release --example loadgen -- run --scenario spread --clients 32 --seconds 20 \
//!     --url http://127.0.0.1:18081 --database-url postgres://…/partner_catalog_loadgen
//! ```

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use partner_catalog::{
    app::{RequestContext, tokens},
    domain::{DisplayName, PartnerId, Role},
};
use serde_json::json;
use sqlx::{PgPool, postgres::PgPoolOptions};
use uuid::Uuid;

/// Customers in the dataset.
const CUSTOMERS: u64 = 10_000;
/// Partners in the dataset; customer `n` is linked to partner `n % PARTNERS + 1`.
const PARTNERS: u64 = 10;
/// Customers the `hot` scenario buys for.
const HOT_CUSTOMERS: u64 = 5;

/// The seven qualification sets of R3, by `n % 20`: 40 % commercial, 15 % education, 15 %
/// nonprofit, 10 % gcc, 5 % state owned entity, 5 % education + SOE, 10 % gcc + SOE.
const MIX: [&str; 20] = [
    "{}",
    "{}",
    "{}",
    "{}",
    "{}",
    "{}",
    "{}",
    "{}",
    "{education}",
    "{education}",
    "{education}",
    "{nonprofit}",
    "{nonprofit}",
    "{nonprofit}",
    "{gcc}",
    "{gcc}",
    "{state_owned_entity}",
    "{education,state_owned_entity}",
    "{gcc,state_owned_entity}",
    "{gcc,state_owned_entity}",
];
/// The offer (1 commercial, 2 education, 3 nonprofit, 4 gcc) customer `n` buys, by `n % 20`: the
/// one its seeded set allows, so purchases are allowed unless a qualification change intervened.
const OFFER_FOR: [u64; 20] = [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 1, 2, 4, 4];

/// Customer `n`'s id; the same expression is in the seed SQL and in the pgbench script.
fn customer_id(n: u64) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-7000-8000-{n:012x}")).expect("valid uuid")
}
fn partner_id(n: u64) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-7000-9000-{n:012x}")).expect("valid uuid")
}
fn offer_id(n: u64) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-7000-a000-{n:012x}")).expect("valid uuid")
}
fn partner_of(customer: u64) -> u64 {
    customer % PARTNERS + 1
}

#[derive(Parser)]
#[command(about = "Seed the purchase benchmark's dataset, or drive a running service")]
struct Cli {
    /// The benchmark's database (seeded by `seed`, read by `run` for tokens and checks).
    #[arg(long, env = "LOADGEN_DATABASE_URL")]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the dataset into an empty, migrated database.
    Seed,
    /// Drive the service and report.
    Run {
        /// The service's base URL.
        #[arg(long, default_value = "http://127.0.0.1:18081")]
        url: String,
        /// Which requests to send.
        #[arg(long, value_enum)]
        scenario: Scenario,
        /// Concurrent clients, each with one request in flight.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// How long to drive, after a one-second warm-up.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Register an endpoint for every partner and one for the platform, all event types.
    Webhooks {
        /// The service's base URL.
        #[arg(long, default_value = "http://127.0.0.1:18081")]
        url: String,
        /// The receiver's base URL: partner n's endpoint is `<receiver>/partner/<n>`, the
        /// platform's `<receiver>/platform`.
        #[arg(long)]
        receiver: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scenario {
    /// Purchases for random customers.
    Spread,
    /// Every client buys for the same 5 customers.
    Hot,
    /// Dry-run decisions (`POST /v1/purchase-decisions`) for random customers.
    Decide,
    /// Eligible-offer listings (`GET /v1/customers/{id}/eligible-offers`) for random customers.
    Eligible,
    /// 50 % purchases, 25 % dry-run decisions, 24 % eligible-offer listings, 1 % qualification changes.
    Mixed,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&cli.database_url)
        .await
        .context("connect to the benchmark database")?;
    match cli.command {
        Command::Seed => seed(&pool).await,
        Command::Run {
            url,
            scenario,
            clients,
            seconds,
        } => run(&pool, &url, scenario, clients, Duration::from_secs(seconds)).await,
        Command::Webhooks { url, receiver } => register_webhooks(&pool, &url, &receiver).await,
    }
}

async fn register_webhooks(pool: &PgPool, url: &str, receiver: &str) -> anyhow::Result<()> {
    let ctx = RequestContext::system();
    let expires = Utc::now() + chrono::Duration::hours(2);
    let label = DisplayName::parse("loadgen").expect("a valid label");
    let http = reqwest::Client::new();
    let mut owners = vec![(Role::Operator, None, format!("{receiver}/platform"))];
    owners.extend((1..=PARTNERS).map(|p| {
        (
            Role::GlobalAdmin,
            Some(PartnerId(partner_id(p))),
            format!("{receiver}/partner/{p}"),
        )
    }));
    for (role, partner, endpoint) in &owners {
        let token = tokens::issue(pool, &ctx, *role, *partner, expires, &label)
            .await
            .map_err(|e| anyhow::anyhow!("issue a {role:?} token: {e:?}"))?
            .secret;
        let response = http
            .post(format!("{url}/v1/webhook-endpoints"))
            .bearer_auth(token)
            .json(&json!({"url": endpoint, "description": "loadgen"}))
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        if status != reqwest::StatusCode::CREATED {
            bail!("registering {endpoint}: {status} {body}");
        }
    }
    println!(
        "registered {} webhook endpoints at {receiver}",
        owners.len()
    );
    Ok(())
}

async fn seed(pool: &PgPool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let id = |prefix: &str, n: &str| {
        format!("('00000000-0000-7000-{prefix}-' || lpad(to_hex({n}), 12, '0'))::uuid")
    };
    let mix = MIX
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let statements = [
        format!(
            "insert into partners (id, name, kind, reseller_qualifications)
             select {}, 'Bench partner ' || n, 'direct_bill_partner', '{{education,gcc,nonprofit}}'
             from generate_series(1, {PARTNERS}) n",
            id("9000", "n")
        ),
        "insert into partner_profile_history (id, partner_id, version, reseller_qualifications, evidence, reason, actor)
         select gen_random_uuid(), id, 1, reseller_qualifications,
                '{\"education\": \"SEED\", \"gcc\": \"SEED\", \"nonprofit\": \"SEED\"}', 'bench seed', 'system'
         from partners"
            .to_owned(),
        format!(
            "insert into offers (id, name, segment, product_kind)
             select {}, 'Bench ' || s, s, 'license_based'
             from unnest(array['commercial', 'education', 'nonprofit', 'gcc']) with ordinality t(s, n)",
            id("a000", "n")
        ),
        format!(
            "insert into customers (id, name, special_qualifications)
             select {}, 'Bench customer ' || n, (array[{mix}]::text[][])[n % 20 + 1]::text[]
             from generate_series(1, {CUSTOMERS}) n",
            id("8000", "n")
        ),
        "insert into customer_qualification_history
             (id, customer_id, version, special_qualifications, evidence, reason, actor)
         select gen_random_uuid(), id, 1, special_qualifications,
                coalesce((select jsonb_object_agg(q, 'SEED') from unnest(special_qualifications) q), '{}'),
                'bench seed', 'system'
         from customers"
            .to_owned(),
        format!(
            "insert into customer_partners (customer_id, partner_id)
             select {}, {} from generate_series(1, {CUSTOMERS}) n",
            id("8000", "n"),
            id("9000", &format!("n % {PARTNERS} + 1"))
        ),
        // Chained by the events_chain trigger, like every event.
        "insert into events (customer_id, event_type, payload, actor)
         select id, 'customer_created',
                jsonb_build_object('name', name, 'special_qualifications', special_qualifications), 'system'
         from customers order by id"
            .to_owned(),
    ];
    for statement in &statements {
        sqlx::raw_sql(statement)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("seed: {statement}"))?;
    }
    tx.commit().await?;
    sqlx::raw_sql("vacuum analyze").execute(pool).await?;
    println!(
        "seeded {PARTNERS} partners, 4 offers, {CUSTOMERS} customers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

struct Tokens {
    sales: Vec<String>,
    back_office: String,
}

async fn issue_tokens(pool: &PgPool) -> anyhow::Result<Tokens> {
    let ctx = RequestContext::system();
    let expires = Utc::now() + chrono::Duration::hours(2);
    let label = DisplayName::parse("loadgen").expect("a valid label");
    let mut sales = Vec::new();
    for p in 1..=PARTNERS {
        let issued = tokens::issue(
            pool,
            &ctx,
            Role::SalesAgent,
            Some(PartnerId(partner_id(p))),
            expires,
            &label,
        )
        .await
        .map_err(|e| anyhow::anyhow!("issue a sales_agent token: {e:?}"))?;
        sales.push(issued.secret);
    }
    let back_office = tokens::issue(pool, &ctx, Role::BackOffice, None, expires, &label)
        .await
        .map_err(|e| anyhow::anyhow!("issue a back_office token: {e:?}"))?
        .secret;
    Ok(Tokens { sales, back_office })
}

async fn deadlocks(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(
        "select deadlocks from pg_stat_database where datname = current_database()",
    )
    .fetch_one(pool)
    .await?)
}

/// A small, fast, non-cryptographic generator (xorshift), one per client.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

static RUN: AtomicU64 = AtomicU64::new(0);

async fn run(
    pool: &PgPool,
    url: &str,
    scenario: Scenario,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let tokens = std::sync::Arc::new(issue_tokens(pool).await?);
    let deadlocks_before = deadlocks(pool).await?;
    let subscriptions_before: i64 = sqlx::query_scalar("select count(*) from subscriptions")
        .fetch_one(pool)
        .await?;
    RUN.store(
        Utc::now().timestamp_micros().unsigned_abs(),
        Ordering::Relaxed,
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let warmup = Instant::now() + Duration::from_secs(1);
    let deadline = warmup + duration;
    let mut handles = Vec::new();
    for client in 0..clients {
        let http = http.clone();
        let tokens = tokens.clone();
        let url = url.to_owned();
        handles.push(tokio::spawn(async move {
            drive(&http, &url, &tokens, scenario, client, warmup, deadline).await
        }));
    }
    let mut total = Tally::default();
    for handle in handles {
        let tally = handle.await?;
        total.latencies_us.extend(tally.latencies_us);
        for (status, n) in tally.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
        total.errors += tally.errors;
    }
    let ended_at = Utc::now();
    // Statistics reach pg_stat_database when backends flush them, up to a second later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new_deadlocks = deadlocks(pool).await? - deadlocks_before;
    let subscriptions_after: i64 = sqlx::query_scalar("select count(*) from subscriptions")
        .fetch_one(pool)
        .await?;
    let gcc_violations: i64 = sqlx::query_scalar(
        "select count(*) from subscriptions s
         join (select customer_id, min(created_at) as first_gcc from subscriptions
               where segment = 'gcc' group by customer_id) g using (customer_id)
         where s.segment <> 'gcc' and s.created_at > g.first_gcc",
    )
    .fetch_one(pool)
    .await?;

    let lat = &mut total.latencies_us;
    lat.sort_unstable();
    let n = lat.len();
    if n == 0 {
        bail!("no request completed");
    }
    let pct = |p: f64| f64::from(lat[((n as f64 * p).ceil() as usize).clamp(1, n) - 1]) / 1000.0;
    let rps = n as f64 / duration.as_secs_f64();
    let five_xx: u64 = total
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    let statuses = total
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "scenario {scenario:?}, {clients} clients, {} s: {n} requests, {rps:.0}/s; \
         latency ms p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}; statuses {statuses}; \
         transport errors {}; subscriptions written (warm-up included) {}; deadlocks {new_deadlocks}; \
         GCC lockout violations {gcc_violations}",
        duration.as_secs(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0),
        total.errors,
        subscriptions_after - subscriptions_before,
    );
    // One machine-readable line for scripts/bench.sh.
    println!(
        "RESULT rps={rps:.1} p50={:.2} p95={:.2} p99={:.2} max={:.2} statuses={statuses} 5xx={five_xx} errors={} deadlocks={new_deadlocks} gcc_violations={gcc_violations} ended_at={:.6}",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0),
        total.errors,
        ended_at.timestamp_micros() as f64 / 1e6,
    );
    if gcc_violations > 0 {
        bail!("the GCC lockout was broken for {gcc_violations} subscriptions");
    }
    Ok(())
}

async fn drive(
    http: &reqwest::Client,
    url: &str,
    tokens: &Tokens,
    scenario: Scenario,
    client: usize,
    warmup: Instant,
    deadline: Instant,
) -> Tally {
    let run = RUN.load(Ordering::Relaxed);
    let mut rng = Rng((run ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
    let mut tally = Tally::default();
    let mut i = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return tally;
        }
        i += 1;
        let customer = match scenario {
            Scenario::Hot => rng.below(HOT_CUSTOMERS) + 1,
            Scenario::Spread | Scenario::Decide | Scenario::Eligible | Scenario::Mixed => {
                rng.below(CUSTOMERS) + 1
            }
        };
        let partner = partner_of(customer);
        let sales = &tokens.sales[(partner - 1) as usize];
        let (c, p) = (customer_id(customer), partner_id(partner));
        let offer = offer_id(OFFER_FOR[(customer % 20) as usize]);
        // Which request: below 50 a purchase, below 75 a decision, below 99 a listing.
        let roll = match scenario {
            Scenario::Spread | Scenario::Hot => 0,
            Scenario::Decide => 50,
            Scenario::Eligible => 75,
            Scenario::Mixed => rng.below(100),
        };
        let request = if roll < 50 {
            http.post(format!("{url}/v1/customers/{c}/subscriptions"))
                .bearer_auth(sales)
                .header("idempotency-key", format!("lg-{run}-{client}-{i}"))
                .json(&json!({"partner_id": p, "offer_id": offer, "quantity": 5}))
        } else if roll < 75 {
            http.post(format!("{url}/v1/purchase-decisions"))
                .bearer_auth(sales)
                .json(&json!({"customer_id": c, "partner_id": p, "offer_id": offer}))
        } else if roll < 99 {
            http.get(format!(
                "{url}/v1/customers/{c}/eligible-offers?partner_id={p}"
            ))
            .bearer_auth(sales)
        } else {
            let set = MIX[rng.below(20) as usize];
            let quals: Vec<&str> = set
                .trim_matches(['{', '}'])
                .split(',')
                .filter(|q| !q.is_empty())
                .collect();
            let evidence: serde_json::Map<_, _> = quals
                .iter()
                .map(|q| ((*q).to_owned(), json!("LOADGEN")))
                .collect();
            http.put(format!("{url}/v1/customers/{c}/qualifications"))
                .bearer_auth(&tokens.back_office)
                .header("if-match", "*")
                .json(
                    &json!({"special_qualifications": quals, "evidence": evidence,
                              "reason": "loadgen"}),
                )
        };
        let started = Instant::now();
        let result = request.send().await;
        let result = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                response.bytes().await.map(|_| status)
            }
            Err(e) => Err(e),
        };
        let elapsed = started.elapsed();
        if started < warmup {
            continue;
        }
        match result {
            Ok(status) => {
                *tally.statuses.entry(status).or_default() += 1;
                tally
                    .latencies_us
                    .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
            }
            Err(_) => tally.errors += 1,
        }
    }
}
