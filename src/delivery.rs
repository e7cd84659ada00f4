//! Webhook delivery in the background: the dispatcher turns committed events into deliveries and
//! feed entries, the sender leases due deliveries and posts them, signed.
//!
//! **No event is missed.** Events are read per chain past the chain's mark, in `chain_seq` order.
//! A chain's events are numbered under its head's row lock, held until commit, so they commit in
//! `chain_seq` order and every snapshot sees a gapless prefix of each chain: an event whose
//! transaction commits late is past the mark until it is seen, never skipped (a cursor over ids
//! would skip it). The mark moves in the same transaction that queues the deliveries, under the
//! mark's row lock, and deliveries are keyed by `(chain_id, endpoint_id, chain_seq)`: an event is
//! queued once per endpoint whichever instance dispatches it.
//!
//! **Leases.** Sending happens outside any transaction: a short transaction leases due deliveries
//! (`FOR UPDATE SKIP LOCKED`, so instances never queue on each other) until `now() + 2 × timeout +
//! 5 s`; an instance that dies mid-send leaves the lease to expire, and another sends again (at
//! least once). A delivery is due only when no earlier delivery of its chain to its endpoint is
//! pending, so each endpoint hears about each customer in order. The deliveries that the lease
//! would take at once are instead queued leased by the dispatcher and handed to its own sender,
//! which saves writing each of them a second time (BENCHMARKS.md, "Webhook delivery").

use std::{
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{
        Client,
        connect::{HttpConnector, dns::Name},
    },
    rt::TokioExecutor,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    app::webhooks::resolve,
    db::{
        self,
        webhooks::{Attempt, ChainEvent, ChainsBehind, Handover, Leased, Target},
    },
    domain::{
        EventType, PartnerId,
        webhook::{self, AllowList, Audience, EventFacts},
    },
    monitoring,
};

/// Response bytes kept per attempt.
const BODY_PREFIX_BYTES: usize = 256;
/// Chains dispatched per round (one transaction), events per chain per round: a round's notices
/// travel as arrays in a few statements, up to 20,000 events.
const CHAINS_PER_ROUND: i64 = 200;
const EVENTS_PER_CHAIN: i64 = 100;
/// Deliveries sent per round, all at once (so one receiver may get this many requests at a time):
/// those the dispatcher handed over since the last round and as many leased as make up the rest.
/// Under a backlog a larger batch is what lets the sender catch up; measured in BENCHMARKS.md,
/// "Webhook delivery".
const ROUND: i64 = 256;
/// Deliveries handed over and waiting for the sender, at most: half a round, so that the lease
/// always has room for retries and a customer's later notices.
const HANDED_AT_MOST: i64 = ROUND / 2;

/// Delivery settings, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Internal networks webhooks may reach.
    pub allow_private: AllowList,
    /// Waits before each retry; after the last one the delivery fails and the endpoint is disabled.
    pub retry_schedule: Vec<Duration>,
    /// Longest one attempt may take (connect, send, response head and body prefix).
    pub timeout: Duration,
    /// How often each loop looks for work when idle.
    pub poll: Duration,
}

/// Resolves an endpoint's host and refuses internal addresses the allow-list does not permit, at
/// connection time: the address connected to is the address checked, so DNS rebinding after
/// registration gains nothing.
#[derive(Debug, Clone)]
struct GuardedResolver(Arc<AllowList>);

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.0.clone();
        Box::pin(async move {
            let addresses = resolve(name.as_str(), 0).await?;
            if let Some(ip) = addresses.iter().find(|ip| !allow.permits(**ip)) {
                return Err(std::io::Error::other(format!(
                    "{} resolves to the internal address {ip}",
                    name.as_str()
                )));
            }
            Ok(addresses
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
                .into_iter())
        })
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

fn client(allow: &AllowList) -> anyhow::Result<HttpClient> {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver(Arc::new(allow.clone())));
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Runs the dispatcher and the sender until `shutdown` resolves. A send in flight then is
/// abandoned; its lease expires and the delivery is sent again.
pub async fn run(
    pool: PgPool,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let client = match client(&settings.allow_private) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(?error, "no webhook client: webhooks are not delivered");
            return shutdown.await;
        }
    };
    let lease = Lease {
        owner: Uuid::now_v7(),
        // Long enough for an attempt and its recording, even after waiting in the handoff for
        // the round before it; short enough that a crashed instance's deliveries are sent again
        // within seconds.
        length: settings.timeout * 2 + Duration::from_secs(5),
    };
    let handoff = Handoff::default();
    let work = async {
        tokio::join!(
            dispatch_loop(&pool, &settings, lease, &handoff),
            send_loop(&pool, &settings, &client, lease, &handoff)
        )
    };
    tokio::select! {
        _ = work => {}
        () = shutdown => {}
    }
}

/// The furthest back a quick look goes, on the database's clock: where it reads from while rounds
/// do not keep up (see [`QuickLooks`]), and after a restart.
const RECENT: Duration = Duration::from_secs(5);
/// How far before the start of the last look that took everything it found the next look starts:
/// room for events that took their id (the database clock at their insert) before that look and
/// committed after it. A purchase writes its event just before it commits; an event that commits
/// later than this after its insert (an import's batch) is found by the next full sweep instead.
const OVERLAP: chrono::TimeDelta = chrono::TimeDelta::milliseconds(500);
/// How often every chain is compared with its mark.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// This instance's leases: its id and how long one lasts.
#[derive(Debug, Clone, Copy)]
struct Lease {
    owner: Uuid,
    length: Duration,
}

/// A delivery handed over, and when: no later than its lease began.
type Handed = (Instant, Leased);

/// The deliveries the dispatcher queued leased, waiting for the sender's next round, which takes
/// them all: normally none waits longer than the round in progress (one timeout and its
/// recording), well inside its lease. At most [`HANDED_AT_MOST`].
#[derive(Default)]
struct Handoff {
    waiting: std::sync::Mutex<Vec<Handed>>,
    bell: tokio::sync::Notify,
}

impl Handoff {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Handed>> {
        // Nothing panics while holding it; a poisoned list is still a list.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many more may be handed over now. Only the dispatcher adds, so there is no less room
    /// once its round is over.
    fn room(&self) -> i64 {
        HANDED_AT_MOST - self.waiting().len() as i64
    }

    fn give(&self, at: Instant, leased: Vec<Leased>) {
        if !leased.is_empty() {
            self.waiting().extend(leased.into_iter().map(|d| (at, d)));
            self.bell.notify_one();
        }
    }

    fn take(&self) -> Vec<Handed> {
        std::mem::take(&mut *self.waiting())
    }
}

async fn dispatch_loop(
    pool: &PgPool,
    settings: &Settings,
    lease: Lease,
    handoff: &Handoff,
) -> Infallible {
    let mut last_sweep: Option<Instant> = None;
    let mut looks = QuickLooks::default();
    loop {
        let full = last_sweep.is_none_or(|at| at.elapsed() >= FULL_SWEEP_EVERY);
        if full {
            last_sweep = Some(Instant::now());
        }
        let look = if full {
            Look::Full
        } else {
            Look::Recent { from: looks.from() }
        };
        let room = handoff.room();
        let handover = (room > 0).then_some(Handover {
            owner: lease.owner,
            lease_secs: lease.length.as_secs_f64(),
            limit: room,
        });
        // Before the round's transaction, whose start the leases count from.
        let leased_at = Instant::now();
        match dispatch_round(pool, look, handover).await {
            Ok(round) => {
                looks.after(&round);
                handoff.give(leased_at, round.handed);
                if round.events == 0 {
                    tokio::time::sleep(settings.poll).await;
                }
            }
            Err(error) => {
                tracing::warn!(?error, "webhook dispatch failed; retrying");
                tokio::time::sleep(settings.poll.max(Duration::from_secs(1))).await;
            }
        }
    }
}

/// Where the dispatcher's quick looks start. Under load the dispatcher polls back to back, and a
/// look costs every event of its window: a fixed window of [`RECENT`] cost 28–31 ms per poll at
/// 1,000 purchases/s, most of it spent on chains dispatched long ago (BENCHMARKS.md). So a look
/// starts [`OVERLAP`] before the last one that took everything it found, and reads little more
/// than what is new since. Both instants are the database's, which stamps the event ids.
#[derive(Debug, Default)]
struct QuickLooks {
    /// When the last round that took everything it found looked.
    drained_at: Option<DateTime<Utc>>,
}

impl QuickLooks {
    /// Where the next look starts; `None`: [`RECENT`] ago.
    fn from(&self) -> Option<DateTime<Utc>> {
        self.drained_at.map(|at| at - OVERLAP)
    }

    /// Takes note of a round: only one that left nothing behind in what it looked at lets the
    /// next look start later.
    fn after(&mut self, round: &Round) {
        if round.drained {
            self.drained_at = Some(round.looked_at);
        }
    }
}

/// Which chains a dispatch round looks at.
#[derive(Debug, Clone, Copy)]
pub enum Look {
    /// Every chain behind its mark: the full sweep.
    Full,
    /// Chains behind their mark with an event after `from` and of the last [`RECENT`] (both on the
    /// database's clock): cheap, a range of the events' id index.
    Recent {
        /// `None`: [`RECENT`] ago.
        from: Option<DateTime<Utc>>,
    },
}

/// What a dispatch round did.
#[derive(Debug)]
pub struct Round {
    /// Events it took.
    pub events: usize,
    /// Whether it took every event its look found (or another instance did): no chain was over
    /// the round's limits.
    pub drained: bool,
    /// When its look began, on the database's clock.
    pub looked_at: DateTime<Utc>,
    /// The deliveries it queued leased to the handover's owner, to be sent now.
    pub handed: Vec<Leased>,
}

/// Turns the committed events of chains past their marks into feed entries and deliveries. The
/// look says which chains it considers; either way a chain is read from its mark, so what a round
/// does not look at is delayed until a later round, never lost. With a `handover`, the deliveries
/// the lease would take at once are queued leased and returned (see [`db::webhooks::queue_all`]).
pub async fn dispatch_round(
    pool: &PgPool,
    look: Look,
    handover: Option<Handover>,
) -> anyhow::Result<Round> {
    let ChainsBehind {
        mut chains,
        looked_at,
    } = match look {
        Look::Full => db::webhooks::chains_behind(pool, CHAINS_PER_ROUND).await?,
        Look::Recent { from } => {
            db::webhooks::recent_chains_behind(pool, from, RECENT, CHAINS_PER_ROUND).await?
        }
    };
    if chains.is_empty() {
        return Ok(Round {
            events: 0,
            drained: true,
            looked_at,
            handed: Vec::new(),
        });
    }
    let every_chain = (chains.len() as i64) < CHAINS_PER_ROUND;
    chains.sort_unstable();
    db::webhooks::create_marks(pool, &chains).await?;
    // The round's chains in one transaction, in a fixed number of statements however many chains
    // and events: each chain under its mark's row lock (those another instance holds are
    // skipped), its feed entries and deliveries queued and its mark moved together.
    let mut tx = pool.begin().await?;
    db::webhooks::share_endpoints_lock(&mut *tx).await?;
    let marks = db::webhooks::lock_marks(&mut *tx, &chains).await?;
    // Read after the endpoints lock, in a later snapshot: see `db::webhooks::lock_endpoints`.
    let targets = db::webhooks::enabled_targets(&mut *tx).await?;
    let events = if marks.is_empty() {
        Vec::new()
    } else {
        db::webhooks::events_after_marks(&mut *tx, &marks, EVENTS_PER_CHAIN).await?
    };
    // Chains another instance holds count as taken: if that instance fails, the full sweep finds
    // them.
    let drained = every_chain
        && events
            .chunk_by(|a, b| a.chain_id == b.chain_id)
            .all(|chain| (chain.len() as i64) < EVENTS_PER_CHAIN);
    if events.is_empty() {
        tx.commit().await?;
        return Ok(Round {
            events: 0,
            drained,
            looked_at,
            handed: Vec::new(),
        });
    }
    let mut feed = db::webhooks::Notices::default();
    let mut queue = db::webhooks::Queue::default();
    let (mut moved, mut moved_to): (Vec<Uuid>, Vec<i64>) = (Vec::new(), Vec::new());
    let mut dispatched = Vec::with_capacity(events.len());
    for ChainEvent { chain_id, event } in &events {
        let chain = *chain_id;
        // Events come by chain, each chain's in order: the last one seen is its new mark.
        match moved.last() {
            Some(last) if *last == chain => *moved_to.last_mut().expect("paired") = event.chain_seq,
            _ => {
                moved.push(chain);
                moved_to.push(event.chain_seq);
            }
        }
        // A type this build does not know makes no notice.
        let Ok(event_type) = event.event_type.parse::<EventType>() else {
            continue;
        };
        let linked: Vec<PartnerId> = event.linked.iter().copied().map(PartnerId).collect();
        let facts = EventFacts {
            id: event.id,
            event_type,
            customer_id: event.customer_id,
            partner_id: event.partner_id.map(PartnerId),
            payload: &event.payload,
        };
        let mut queued = 0;
        for notice in webhook::notices(&facts, &linked) {
            let kind = notice.event_type.as_str();
            let mut body = None;
            for target in targets.iter().filter(|t| wants(t, notice.audience, kind)) {
                let body = body.get_or_insert_with(|| {
                    webhook::body(event.id, event.occurred_at, notice.event_type, &notice.data)
                });
                queue.chains.push(chain);
                queue.endpoints.push(target.id);
                queue.chain_seqs.push(event.chain_seq);
                queue.event_ids.push(event.id);
                queue.event_types.push(kind.to_owned());
                queue.bodies.push(body.clone());
                queued += 1;
            }
            feed.audiences.push(notice.audience.key());
            feed.chains.push(chain);
            feed.chain_seqs.push(event.chain_seq);
            feed.event_ids.push(event.id);
            feed.event_types.push(kind.to_owned());
            feed.occurred_at.push(event.occurred_at);
            feed.data.push(notice.data);
        }
        let lag = (Utc::now() - event.occurred_at)
            .to_std()
            .unwrap_or_default();
        dispatched.push((queued, lag));
    }
    if !feed.audiences.is_empty() {
        db::webhooks::feed_append_all(&mut *tx, &feed).await?;
    }
    let handed = if queue.chains.is_empty() {
        Vec::new()
    } else {
        db::webhooks::queue_all(&mut *tx, &queue, handover).await?
    };
    db::webhooks::set_marks(&mut *tx, &moved, &moved_to).await?;
    tx.commit().await?;
    for (queued, lag) in dispatched {
        monitoring::webhook_dispatched(queued, lag);
    }
    // Announced after the commit and outside it: a transaction that notifies takes a
    // database-wide lock at its commit, which would serialize dispatching with everything else
    // that notifies.
    let mut audiences = feed.audiences;
    audiences.sort_unstable();
    audiences.dedup();
    // The round is committed: a failed announcement delays long polls (they wait out their
    // timeout) but must not lose the deliveries handed over.
    if !audiences.is_empty()
        && let Err(error) = db::webhooks::announce_feeds(pool, &audiences).await
    {
        tracing::warn!(?error, "announcing the partner feeds' news failed");
    }
    Ok(Round {
        events: events.len(),
        drained,
        looked_at,
        handed,
    })
}

fn wants(target: &Target, audience: Audience, kind: &str) -> bool {
    let ours = match audience {
        Audience::Platform => target.partner_id.is_none(),
        Audience::Partner(p) => target.partner_id == Some(p.0),
    };
    ours && (target.event_types.is_empty() || target.event_types.iter().any(|t| t == kind))
}

async fn send_loop(
    pool: &PgPool,
    settings: &Settings,
    client: &HttpClient,
    lease: Lease,
    handoff: &Handoff,
) -> Infallible {
    // A handed delivery is sent only while its lease outlasts an attempt; after that another
    // instance may lease it, and this one must not send it beside or after a later notice.
    let send_within = lease
        .length
        .saturating_sub(settings.timeout + Duration::from_secs(1));
    loop {
        let mut handed = handoff.take();
        let mut round = Vec::new();
        // Every round also leases: retries, a chain's later deliveries once the one before is
        // settled, and those of an instance whose lease ran out are never handed over.
        let room = ROUND - handed.len() as i64;
        match db::webhooks::lease(pool, lease.owner, lease.length.as_secs_f64(), room).await {
            Ok(leased) => round = leased,
            Err(error) => {
                tracing::warn!(?error, "leasing webhook deliveries failed; retrying");
                if handed.is_empty() {
                    tokio::time::sleep(settings.poll.max(Duration::from_secs(1))).await;
                    continue;
                }
            }
        }
        if handed.is_empty() && round.is_empty() {
            // Idle: until the dispatcher hands deliveries over, or the poll comes round.
            tokio::select! {
                () = handoff.bell.notified() => handed = handoff.take(),
                () = tokio::time::sleep(settings.poll) => {}
            }
        }
        // Endpoints disabled meanwhile: by a `410 Gone` in the last round, or by their owner.
        let disabled = if handed.is_empty() {
            Vec::new()
        } else {
            let endpoints: Vec<Uuid> = handed.iter().map(|(_, d)| d.endpoint_id).collect();
            db::webhooks::disabled_among(pool, &endpoints)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(?error, "checking webhook endpoints failed; sending anyway");
                    Vec::new()
                })
        };
        let held_back = keep_back(&mut handed, &disabled, Instant::now(), send_within);
        round.extend(handed.into_iter().map(|(_, d)| d));
        if held_back > 0 {
            tracing::warn!(
                held_back,
                "handed-over webhook deliveries held back (lease running out or endpoint \
                 disabled); due again when their lease ends"
            );
        }
        if round.is_empty() {
            continue;
        }
        let sends = round.iter().map(|d| attempt(settings, client, d));
        let sent = futures_util::future::join_all(sends).await;
        if let Err(error) = settle_round(pool, settings, lease.owner, &round, &sent).await {
            // The leases expire and another round sends them again.
            tracing::warn!(?error, "recording webhook attempts failed");
        }
    }
}

/// Takes out of `handed` those not to be sent now, and says how many: a delivery whose lease no
/// longer outlasts an attempt (`send_within` after it was handed over), as another instance may
/// lease it once it runs out, and one to an endpoint disabled meanwhile. Both stay leased, due
/// when their lease ends, for the lease, which skips disabled endpoints.
fn keep_back(
    handed: &mut Vec<Handed>,
    disabled: &[Uuid],
    now: Instant,
    send_within: Duration,
) -> usize {
    let before = handed.len();
    handed.retain(|(at, d)| {
        now.saturating_duration_since(*at) < send_within && !disabled.contains(&d.endpoint_id)
    });
    before - handed.len()
}

/// What one attempt came to.
struct Outcome {
    status: Option<u16>,
    retry_after: Option<Duration>,
    error: Option<String>,
    body_prefix: Option<String>,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.status.is_some_and(webhook::delivers)
    }
}

/// What a test notice's one attempt came to.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TestOutcome {
    /// The `webhook-id` sent (a fresh id: a test is no event).
    pub id: Uuid,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// How long the attempt took.
    pub latency_ms: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The first 256 bytes of the answer.
    pub body_prefix: Option<String>,
}

/// Sends one signed `webhook.test` notice to `url` now, with the same client, checks and timeout
/// as deliveries; nothing is queued or retried.
pub async fn send_test(
    allow: &AllowList,
    timeout: Duration,
    url: String,
    secret: String,
    previous_secret: Option<String>,
) -> anyhow::Result<TestOutcome> {
    let client = client(allow)?;
    let id = Uuid::now_v7();
    let body = serde_json::json!({
        "type": "webhook.test",
        "version": webhook::PAYLOAD_VERSION,
        "id": id,
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": {},
    })
    .to_string();
    let probe = Leased {
        chain_id: Uuid::nil(),
        endpoint_id: Uuid::nil(),
        chain_seq: 0,
        event_id: id,
        body,
        attempts: 1,
        retry_base: 0,
        url,
        secret,
        previous_secret,
    };
    let clock = Instant::now();
    let outcome = tokio::time::timeout(timeout, post(&client, allow, &probe))
        .await
        .unwrap_or_else(|_| Outcome {
            status: None,
            retry_after: None,
            error: Some(format!("no answer within {timeout:?}")),
            body_prefix: None,
        });
    Ok(TestOutcome {
        id,
        status: outcome.status,
        latency_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        error: outcome.error,
        body_prefix: outcome.body_prefix,
    })
}

/// One attempt, as sent.
struct Sent {
    started_at: chrono::DateTime<Utc>,
    latency: Duration,
    outcome: Outcome,
}

impl Sent {
    /// The attempt as recorded.
    fn attempt(&self) -> Attempt<'_> {
        Attempt {
            started_at: self.started_at,
            latency_ms: i32::try_from(self.latency.as_millis()).unwrap_or(i32::MAX),
            status: self.outcome.status.map(i32::from),
            error: self.outcome.error.as_deref(),
            body_prefix: self.outcome.body_prefix.as_deref(),
        }
    }
}

async fn attempt(settings: &Settings, client: &HttpClient, delivery: &Leased) -> Sent {
    let started_at = Utc::now();
    let clock = Instant::now();
    let outcome = match tokio::time::timeout(
        settings.timeout,
        post(client, &settings.allow_private, delivery),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Outcome {
            status: None,
            retry_after: None,
            error: Some(format!("no answer within {:?}", settings.timeout)),
            body_prefix: None,
        },
    };
    Sent {
        started_at,
        latency: clock.elapsed(),
        outcome,
    }
}

/// Records a round's attempts and settles its deliveries, in one transaction: the deliveries
/// locked first, in key order (see [`db::webhooks::lock_round`]), then the attempts that did not
/// deliver in one statement, the delivered ones with their attempts in another, the rest
/// (retries, `410 Gone`, failures) one by one, and last the endpoints to disable, in id order.
async fn settle_round(
    pool: &PgPool,
    settings: &Settings,
    owner: Uuid,
    leased: &[Leased],
    sent: &[Sent],
) -> anyhow::Result<()> {
    let deliveries: Vec<&Leased> = leased.iter().collect();
    let (mut delivered, mut undelivered) = (Vec::new(), Vec::new());
    for (delivery, sent) in leased.iter().zip(sent) {
        let to = if sent.outcome.delivered() {
            &mut delivered
        } else {
            &mut undelivered
        };
        to.push((delivery, sent.attempt()));
    }
    let mut tx = pool.begin().await?;
    db::webhooks::lock_round(&mut *tx, &deliveries).await?;
    if !undelivered.is_empty() {
        db::webhooks::record_attempts(&mut *tx, &undelivered).await?;
    }
    if !delivered.is_empty() {
        db::webhooks::settle_delivered(&mut *tx, &delivered, owner).await?;
    }
    let mut results = Vec::with_capacity(leased.len());
    // An outcome that settles nothing (the lease was lost) disables nothing either: the delivery
    // is someone else's now, or was asked for again with a fresh schedule.
    let mut to_disable: Vec<(Uuid, &str)> = Vec::new();
    for (delivery, sent) in leased.iter().zip(sent) {
        let result = match sent.outcome.status {
            _ if sent.outcome.delivered() => "delivered",
            Some(410) => {
                if db::webhooks::settle(&mut *tx, delivery, owner, "pending", None).await? {
                    to_disable.push((delivery.endpoint_id, "the endpoint answered 410 Gone"));
                }
                "gone"
            }
            _ => {
                let attempts =
                    u32::try_from(delivery.attempts - delivery.retry_base).unwrap_or(u32::MAX);
                match webhook::retry_delay(
                    &settings.retry_schedule,
                    attempts,
                    jitter(),
                    sent.outcome.retry_after,
                ) {
                    Some(wait) => {
                        let at = Utc::now() + chrono::Duration::from_std(wait)?;
                        db::webhooks::settle(&mut *tx, delivery, owner, "pending", Some(at))
                            .await?;
                        "retry"
                    }
                    None => {
                        if db::webhooks::settle(&mut *tx, delivery, owner, "failed", None).await? {
                            to_disable.push((
                                delivery.endpoint_id,
                                "deliveries kept failing for the whole retry schedule",
                            ));
                        }
                        "failed"
                    }
                }
            }
        };
        results.push(result);
    }
    // The first reason of each endpoint is the one recorded.
    to_disable.sort_by_key(|(endpoint, _)| *endpoint);
    to_disable.dedup_by_key(|(endpoint, _)| *endpoint);
    for (endpoint, reason) in to_disable {
        db::webhooks::disable_endpoint(&mut *tx, endpoint, reason).await?;
    }
    tx.commit().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    for ((delivery, sent), result) in leased.iter().zip(sent).zip(results) {
        if result == "delivered"
            && let Some((secs, nanos)) = delivery.event_id.get_timestamp().map(|t| t.to_unix())
        {
            monitoring::webhook_delivered(now.saturating_sub(Duration::new(secs, nanos)));
        }
        monitoring::webhook_attempted(result, sent.latency);
    }
    Ok(())
}

/// A uniform number in [0, 1).
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

async fn post(client: &HttpClient, allow: &AllowList, delivery: &Leased) -> Outcome {
    let failed = |error: String| Outcome {
        status: None,
        retry_after: None,
        error: Some(error),
        body_prefix: None,
    };
    // An IP literal does not go through the resolver: check it here.
    if let Ok(url) = url::Url::parse(&delivery.url)
        && let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = url.host()
        && let Some(ip) = url
            .host_str()
            .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok())
        && !allow.permits(ip)
    {
        return failed(format!("{ip} is an internal address"));
    }
    let id = delivery.event_id.to_string();
    let timestamp = Utc::now().timestamp();
    let keys: Vec<Vec<u8>> = std::iter::once(&delivery.secret)
        .chain(delivery.previous_secret.as_ref())
        .filter_map(|s| webhook::secret_key(s))
        .collect();
    let signature = webhook::signature_header(&keys, &id, timestamp, &delivery.body);
    let request = hyper::Request::post(&delivery.url)
        .header("content-type", "application/json")
        .header("user-agent", "partner-catalog-webhooks/1")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(delivery.body.clone())));
    let request = match request {
        Ok(request) => request,
        Err(error) => return failed(format!("cannot build the request: {error}")),
    };
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(error) => {
            let chain = anyhow::Error::new(error);
            return failed(format!("{chain:#}"));
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = response.into_body();
    let mut prefix = Vec::new();
    while prefix.len() < BODY_PREFIX_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    prefix.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    prefix.truncate(BODY_PREFIX_BYTES);
    let mut text = String::from_utf8_lossy(&prefix).into_owned();
    while text.len() > BODY_PREFIX_BYTES {
        text.pop();
    }
    Outcome {
        status: Some(status),
        retry_after,
        error: (!webhook::delivers(status)).then(|| format!("answered {status}")),
        body_prefix: (!text.is_empty()).then_some(text),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chrono::{DateTime, Duration, Utc};
    use uuid::Uuid;

    use super::{OVERLAP, QuickLooks, Round, keep_back};
    use crate::db::webhooks::Leased;

    fn round(at: DateTime<Utc>, drained: bool) -> Round {
        Round {
            events: 3,
            drained,
            looked_at: at,
            handed: Vec::new(),
        }
    }

    #[test]
    fn a_quick_look_starts_just_before_the_last_look_that_took_everything() {
        let t = DateTime::<Utc>::from_timestamp(1_795_862_400, 0).unwrap();
        let mut looks = QuickLooks::default();
        assert_eq!(looks.from(), None, "nothing taken yet: the whole window");
        looks.after(&round(t, true));
        assert_eq!(looks.from(), Some(t - OVERLAP));
        // A round that left events behind does not move it: they are read again.
        let next = t + Duration::milliseconds(40);
        looks.after(&round(next, false));
        assert_eq!(looks.from(), Some(t - OVERLAP));
        looks.after(&round(next, true));
        assert_eq!(looks.from(), Some(next - OVERLAP));
    }

    fn leased_to(endpoint: Uuid, chain_seq: i64) -> Leased {
        Leased {
            chain_id: Uuid::nil(),
            endpoint_id: endpoint,
            chain_seq,
            event_id: Uuid::nil(),
            body: String::new(),
            attempts: 1,
            retry_base: 0,
            url: "https://example.com/hook".into(),
            secret: "whsec_x".into(),
            previous_secret: None,
        }
    }

    #[test]
    fn a_handed_delivery_is_kept_back_when_its_lease_runs_short_or_its_endpoint_was_disabled() {
        let (on, off) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let secs = std::time::Duration::from_secs;
        // A minute on from now, so that every instant handed over below is a valid `Instant`.
        let now = Instant::now() + secs(60);
        let within = secs(30);
        let ago = |n| now - secs(n);
        let mut handed = vec![
            (ago(1), leased_to(on, 1)),
            (ago(30), leased_to(on, 2)),
            (ago(1), leased_to(off, 3)),
            (ago(29), leased_to(on, 4)),
        ];
        assert_eq!(keep_back(&mut handed, &[off], now, within), 2);
        let sent: Vec<i64> = handed.iter().map(|(_, d)| d.chain_seq).collect();
        assert_eq!(sent, vec![1, 4]);
        // Nothing disabled, all fresh: all are sent.
        let mut handed = vec![(now, leased_to(on, 1)), (now, leased_to(off, 2))];
        assert_eq!(keep_back(&mut handed, &[], now, within), 0);
        assert_eq!(handed.len(), 2);
    }
}
