//! The service is killed (SIGKILL) while it delivers webhooks under purchase load, and started
//! again: every committed event still reaches the endpoint, at least once, in per-customer order,
//! signed.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    cluster::Cluster,
    load::Load,
    service::{Service, http_client, seed},
};

/// What the receiver got: each request's `webhook-id`, and whether its signature verified.
type Log = Arc<Mutex<Vec<(String, bool)>>>;

/// The receiver's state. While `hold` is set, requests are logged and then held unanswered, and
/// `held` counts them: the test kills the service once one is held, so every kill cuts a
/// delivery off between its arrival and its answer (a chance timing did not always, in CI).
#[derive(Clone, Default)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    log: Log,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let verified = standardwebhooks::Webhook::new(&receiver.secret.lock().unwrap())
        .unwrap()
        .verify(&body, &headers)
        .is_ok();
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    receiver.log.lock().unwrap().push((id, verified));
    if receiver.hold.load(Ordering::SeqCst) {
        receiver.held.fetch_add(1, Ordering::SeqCst);
        // Longer than the attempt timeout: the answer never reaches the killed service.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_survive_service_crashes_mid_delivery() {
    let cluster = Cluster::start("webhook-crash");
    let mut service = Service::start_with(
        &cluster.url("partner_catalog"),
        cluster.dir(),
        &[
            ("WEBHOOK_ALLOW_PRIVATE", "127.0.0.0/8"),
            ("WEBHOOK_RETRY_SCHEDULE", "200ms,400ms,800ms,1s,1s,1s,1s,1s"),
            ("WEBHOOK_TIMEOUT_SECS", "1"),
            ("WEBHOOK_POLL_MS", "50"),
        ],
    )
    .await;
    let shop = seed(&service, 8).await;
    let pool = PgPool::connect(&cluster.url("partner_catalog"))
        .await
        .expect("connect to the private cluster");

    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let admin = service.token("global_admin", Some(shop.partner));
    let registered: Value = http_client()
        .post(format!("{}/v1/webhook-endpoints", service.base))
        .bearer_auth(&admin)
        .json(&json!({"url": url, "event_types": ["subscription.created"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    *receiver.secret.lock().unwrap() = registered["secret"].as_str().unwrap().to_owned();

    let load = Load::start(&shop, 4, "webhook-crash");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        receiver.held.store(0, Ordering::SeqCst);
        receiver.hold.store(true, Ordering::SeqCst);
        let holding = Instant::now() + Duration::from_secs(30);
        while receiver.held.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < holding,
                "no delivery arrived in 30 s under load"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        service.kill();
        receiver.hold.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        service.restart().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.finish().await;

    // Every committed purchase's event arrives: wait for the dispatcher and the expired leases.
    let committed: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
        "select id, chain_id, chain_seq from events
         where partner_id = $1 and event_type = 'subscription_created' order by chain_id, chain_seq",
    )
    .bind(shop.partner)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(committed.len() > 10, "only {} purchases", committed.len());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let arrived: BTreeSet<String> = receiver
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.0.clone())
            .collect();
        let pending: i64 = sqlx::query_scalar(
            "select count(*) from webhook_deliveries where state <> 'delivered'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let missing = committed
            .iter()
            .filter(|(id, _, _)| !arrived.contains(&id.to_string()))
            .count();
        if missing == 0 && pending == 0 {
            break;
        }
        if Instant::now() >= deadline {
            // The first unsettled delivery of each customer: stuck, or just slow?
            let heads: Vec<String> = sqlx::query_scalar(
                "select distinct on (chain_id)
                        format('%s #%s: %s, %s attempts, lease until %s',
                               chain_id, chain_seq, state, attempts, lease_until)
                 from webhook_deliveries where state <> 'delivered'
                 order by chain_id, chain_seq",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            panic!(
                "{missing} of {} committed events never arrived, {pending} deliveries unsettled; \
                 each customer's first: {heads:#?}\n{}",
                committed.len(),
                service.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let log = receiver.log.lock().unwrap().clone();
    assert!(log.iter().all(|r| r.1), "a signature did not verify");
    // Per customer in order: the first arrivals of each chain follow chain_seq.
    let place: BTreeMap<String, (Uuid, i64)> = committed
        .iter()
        .map(|(id, chain, seq)| (id.to_string(), (*chain, *seq)))
        .collect();
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<Uuid, i64> = BTreeMap::new();
    for (id, _) in &log {
        if !seen.insert(id.clone()) {
            continue;
        }
        let (chain, seq) = place[id];
        let before = last.insert(chain, seq).unwrap_or(0);
        assert!(
            seq > before,
            "customer {chain}: event {seq} arrived after {before}"
        );
    }
    let repeats = log.len() - seen.len();
    eprintln!(
        "webhook crashes: {} events, {} requests, {repeats} sent again",
        committed.len(),
        log.len()
    );
    // Each kill left at least one held delivery unanswered, which must have been sent again.
    assert!(
        repeats >= 3,
        "only {repeats} deliveries sent again after 3 kills that each cut one off"
    );
    pool.close().await;
}
