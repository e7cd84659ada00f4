//! Purchase load: concurrent buyers that, like a real ordering system, retry each purchase with its
//! own Idempotency-Key until it is answered 201; what every attempt was answered; and the checks of
//! what the database holds afterwards.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::service::{Shop, http_client};

/// Longest a buyer keeps retrying one key: far more than any outage of these tests.
const KEY_BUDGET: Duration = Duration::from_secs(30);
/// Pause between retries of a key (the service says `Retry-After: 1`; the tests want to see
/// every second of an outage, so they ask more often).
const RETRY_PAUSE: Duration = Duration::from_millis(150);
/// Pause after a purchase succeeded: none, so that a database stop always meets transactions in
/// flight (bounded by [`MAX_KEYS_PER_BUYER`]).
const PACE: Duration = Duration::ZERO;
/// Most keys one buyer uses in a run.
const MAX_KEYS_PER_BUYER: usize = 5_000;

/// How one purchase attempt was answered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 201: the subscription, and whether it was stored by an earlier attempt.
    Created {
        /// The subscription's id.
        subscription: Uuid,
        /// `idempotent-replayed: true`.
        replayed: bool,
    },
    /// 503 problem+json `database_unavailable` or `request_timeout`, with `Retry-After`.
    Unavailable(String),
    /// Anything else the service answered (a 500, a 401, a 503 without its problem, ...).
    Unexpected(String),
    /// No answer: the connection was refused or reset.
    Unanswered(String),
    /// No answer within [`crate::CLIENT_TIMEOUT`]: the service hung.
    TimedOut(String),
}

/// Every attempt of one idempotency key.
#[derive(Debug, Clone)]
pub struct KeyHistory {
    /// The key.
    pub key: String,
    /// The customer bought for.
    pub customer: Uuid,
    /// Each attempt's answer, and how long it took.
    pub answers: Vec<(Answer, Duration)>,
}

impl KeyHistory {
    /// The subscription the key ended with.
    pub fn created(&self) -> Option<Uuid> {
        self.answers.iter().rev().find_map(|(a, _)| match a {
            Answer::Created { subscription, .. } => Some(*subscription),
            _ => None,
        })
    }
}

/// One purchase attempt.
pub async fn buy(
    client: &reqwest::Client,
    shop: &Shop,
    token: &str,
    customer: Uuid,
    key: &str,
) -> Answer {
    let sent = client
        .post(format!(
            "{}/v1/customers/{customer}/subscriptions",
            shop.base
        ))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({ "partner_id": shop.partner, "offer_id": shop.offer, "quantity": 1 }))
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Answer::TimedOut(format!("{e:?}")),
        Err(e) => return Answer::Unanswered(format!("{e:?}")),
    };
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, retry_after, replayed) = (
        header("content-type"),
        header("retry-after"),
        header("idempotent-replayed"),
    );
    let body: serde_json::Value = match response.json().await {
        Ok(body) => body,
        Err(e) if e.is_timeout() => return Answer::TimedOut(format!("{status}, body: {e:?}")),
        Err(e) => return Answer::Unanswered(format!("{status}, body unreadable: {e:?}")),
    };
    match status {
        StatusCode::CREATED => match body["id"].as_str().and_then(|s| s.parse().ok()) {
            Some(subscription) => Answer::Created {
                subscription,
                replayed: replayed.as_deref() == Some("true"),
            },
            None => Answer::Unexpected(format!("201 without an id: {body}")),
        },
        StatusCode::SERVICE_UNAVAILABLE
            if content_type.as_deref() == Some("application/problem+json")
                && retry_after.as_deref() == Some("1")
                && matches!(
                    body["code"].as_str(),
                    Some("database_unavailable" | "request_timeout")
                ) =>
        {
            Answer::Unavailable(body["code"].as_str().unwrap_or_default().to_owned())
        }
        _ => Answer::Unexpected(format!(
            "{status} content-type={content_type:?} retry-after={retry_after:?} {body}"
        )),
    }
}

/// Retries one key until it is answered 201, or its budget runs out.
pub async fn buy_until_created(
    client: &reqwest::Client,
    shop: &Shop,
    token: &str,
    customer: Uuid,
    key: String,
) -> KeyHistory {
    let started = Instant::now();
    let mut history = KeyHistory {
        key,
        customer,
        answers: Vec::new(),
    };
    loop {
        let attempt = Instant::now();
        let answer = buy(client, shop, token, customer, &history.key).await;
        let done = matches!(answer, Answer::Created { .. });
        history.answers.push((answer, attempt.elapsed()));
        if done || started.elapsed() > KEY_BUDGET {
            return history;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Buyers running until told to stop.
pub struct Load {
    stop: Arc<AtomicBool>,
    buyers: Vec<JoinHandle<Vec<KeyHistory>>>,
}

impl Load {
    /// Starts `buyers` buyers, spread over the shop's customers; their keys start with `run`.
    pub fn start(shop: &Shop, buyers: usize, run: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let buyers = (0..buyers)
            .map(|b| {
                let (shop, stop) = (shop.clone(), stop.clone());
                let customer = shop.customers[b % shop.customers.len()];
                let prefix = format!("{run}-b{b}");
                tokio::spawn(async move {
                    let client = http_client();
                    let mut histories = Vec::new();
                    for n in 0..MAX_KEYS_PER_BUYER {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let history = buy_until_created(
                            &client,
                            &shop,
                            &shop.sales_token,
                            customer,
                            format!("{prefix}-k{n}"),
                        )
                        .await;
                        histories.push(history);
                        tokio::time::sleep(PACE).await;
                    }
                    histories
                })
            })
            .collect();
        Self { stop, buyers }
    }

    /// Tells the buyers to start no new key, and waits for each to finish the one it retries.
    pub async fn finish(self) -> Vec<KeyHistory> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for buyer in self.buyers {
            let histories = tokio::time::timeout(KEY_BUDGET + Duration::from_secs(15), buyer)
                .await
                .expect("a buyer did not finish within its key budget")
                .expect("a buyer panicked");
            all.extend(histories);
        }
        all
    }
}

/// What the buyers saw, counted.
#[derive(Debug, Default)]
pub struct Tally {
    /// Keys used.
    pub keys: usize,
    /// 201 answers that created the subscription.
    pub created: usize,
    /// 201 answers replayed from an earlier attempt.
    pub replayed: usize,
    /// 503 answers, by code.
    pub unavailable: HashMap<String, usize>,
    /// Attempts without an answer (refused, reset).
    pub no_answer: usize,
    /// Attempts that ran out of the client's timeout: hangs.
    pub timed_out: Vec<String>,
    /// Answers that are a bug: one line each.
    pub unexpected: Vec<String>,
    /// Keys never answered 201 within their budget.
    pub unresolved: Vec<String>,
    /// The slowest answer.
    pub slowest: Duration,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys: {} created, {} replayed, 503s {:?}, {} without answer, {} timed out, \
             {} unexpected, {} unresolved, slowest answer {:?}",
            self.keys,
            self.created,
            self.replayed,
            self.unavailable,
            self.no_answer,
            self.timed_out.len(),
            self.unexpected.len(),
            self.unresolved.len(),
            self.slowest
        )
    }
}

/// Counts every answer of every key.
impl Tally {
    /// What every fault must leave true: no answer that is a bug, no internal error logged (also
    /// none that no client saw, e.g. in a token lookup), no hang, and a 201 for every key.
    pub fn assert_sound(&self, service: &crate::service::Service) {
        assert!(self.unexpected.is_empty(), "{self}\n{:#?}", self.unexpected);
        let internal = service.log_count("internal error");
        assert_eq!(internal, 0, "the service logged {internal} internal errors");
        assert!(
            self.timed_out.is_empty(),
            "{self}\nhangs: {:#?}",
            self.timed_out
        );
        assert!(
            self.unresolved.is_empty(),
            "{self}\nkeys never answered 201: {:?}",
            self.unresolved
        );
    }
}

pub fn tally(histories: &[KeyHistory]) -> Tally {
    let mut tally = Tally {
        keys: histories.len(),
        ..Tally::default()
    };
    for history in histories {
        for (answer, took) in &history.answers {
            tally.slowest = tally.slowest.max(*took);
            match answer {
                Answer::Created {
                    replayed: false, ..
                } => tally.created += 1,
                Answer::Created { replayed: true, .. } => tally.replayed += 1,
                Answer::Unavailable(code) => {
                    *tally.unavailable.entry(code.clone()).or_default() += 1
                }
                Answer::Unanswered(_) => tally.no_answer += 1,
                Answer::TimedOut(what) => tally.timed_out.push(format!("{}: {what}", history.key)),
                Answer::Unexpected(what) => {
                    tally.unexpected.push(format!("{}: {what}", history.key))
                }
            }
        }
        if history.created().is_none() {
            tally.unresolved.push(history.key.clone());
        }
    }
    tally
}

/// Checks that each key the buyers used ended with exactly one subscription, the one every 201 of
/// that key named, and that the database holds no other subscription. Returns the problems found.
pub async fn check_one_subscription_per_key(
    pool: &PgPool,
    shop: &Shop,
    histories: &[KeyHistory],
) -> Vec<String> {
    let mut problems = Vec::new();
    let rows: Vec<(String, Option<Uuid>, Option<String>)> = sqlx::query_as(
        "select key, subscription_id, outcome->>'result' from idempotency_keys where owner = $1",
    )
    .bind(format!("partner:{}", shop.partner))
    .fetch_all(pool)
    .await
    .expect("read idempotency keys");
    let stored: HashMap<String, (Option<Uuid>, Option<String>)> =
        rows.into_iter().map(|(k, s, r)| (k, (s, r))).collect();
    let subscriptions: Vec<(Uuid, Uuid)> =
        sqlx::query_as("select id, customer_id from subscriptions")
            .fetch_all(pool)
            .await
            .expect("read subscriptions");
    let existing: HashMap<Uuid, Uuid> = subscriptions.iter().copied().collect();

    let mut claimed = HashSet::new();
    for history in histories {
        let seen: HashSet<Uuid> = history
            .answers
            .iter()
            .filter_map(|(a, _)| match a {
                Answer::Created { subscription, .. } => Some(*subscription),
                _ => None,
            })
            .collect();
        if seen.len() > 1 {
            problems.push(format!(
                "key {} was answered with several subscriptions: {seen:?}",
                history.key
            ));
        }
        let fresh = history
            .answers
            .iter()
            .filter(|(a, _)| {
                matches!(
                    a,
                    Answer::Created {
                        replayed: false,
                        ..
                    }
                )
            })
            .count();
        if fresh > 1 {
            problems.push(format!("key {} created {fresh} times", history.key));
        }
        match stored.get(&history.key) {
            Some((Some(id), Some(result))) if result == "created" => {
                if !seen.is_empty() && !seen.contains(id) {
                    problems.push(format!(
                        "key {}: clients saw {seen:?}, stored {id}",
                        history.key
                    ));
                }
                if existing.get(id) != Some(&history.customer) {
                    problems.push(format!(
                        "key {}: subscription {id} is not stored for its customer",
                        history.key
                    ));
                }
                claimed.insert(*id);
            }
            // Never answered 201 and nothing stored: the purchase never happened, which is fine.
            None if seen.is_empty() => {}
            other => problems.push(format!(
                "key {}: stored {other:?}, clients saw {seen:?}",
                history.key
            )),
        }
    }
    for (id, _) in subscriptions {
        if !claimed.contains(&id) {
            problems.push(format!(
                "subscription {id} belongs to no key the buyers used"
            ));
        }
    }
    problems
}

/// Checks that no purchase is half-written: every subscription has exactly one
/// `subscription_created` event and one idempotency row that says created and names it, and every
/// such row and event names an existing subscription. Returns the problems found.
pub async fn check_purchases_whole(pool: &PgPool) -> Vec<String> {
    let checks = [
        (
            "subscriptions without exactly one subscription_created event",
            "select s.id::text from subscriptions s
             where (select count(*) from events e
                    where e.event_type = 'subscription_created'
                      and e.payload->>'subscription_id' = s.id::text) <> 1",
        ),
        (
            "subscription_created events naming no subscription",
            "select e.id::text from events e
             where e.event_type = 'subscription_created'
               and not exists (select 1 from subscriptions s where s.id::text = e.payload->>'subscription_id')",
        ),
        (
            "subscriptions without exactly one idempotency row",
            "select s.id::text from subscriptions s
             where (select count(*) from idempotency_keys k where k.subscription_id = s.id) <> 1",
        ),
        (
            "idempotency rows saying created without their subscription",
            "select k.key from idempotency_keys k
             where k.outcome->>'result' = 'created'
               and (k.subscription_id is null
                    or k.outcome->'subscription'->>'id' is distinct from k.subscription_id::text
                    or not exists (select 1 from subscriptions s where s.id = k.subscription_id))",
        ),
        (
            "idempotency rows naming a subscription without saying created",
            "select k.key from idempotency_keys k
             where k.subscription_id is not null and k.outcome->>'result' is distinct from 'created'",
        ),
    ];
    let mut problems = Vec::new();
    for (what, sql) in checks {
        let found: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("check {what}: {e}"));
        if !found.is_empty() {
            problems.push(format!("{what}: {found:?}"));
        }
    }
    problems
}
