//! The database stops (immediately, then fast) and starts again under purchase load.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::{
    cluster::Cluster,
    load::{self, Answer, Load},
    service::{Service, Shop, http_client, seed},
};

/// How long each outage lasts, by `pg_ctl stop` mode.
const OUTAGES: [(&str, Duration); 2] = [
    ("immediate", Duration::from_secs(3)),
    ("fast", Duration::from_secs(2)),
];
/// Longest the service may take to serve again once the database is back.
const RECOVERY: Duration = Duration::from_secs(5);

/// A problem answer's status, `code` and `Retry-After`, and how long it took.
async fn probe(request: reqwest::RequestBuilder) -> (StatusCode, String, Option<String>, Duration) {
    let sent = Instant::now();
    let response = request
        .send()
        .await
        .expect("the service answers during the outage");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    (status, code, retry_after, sent.elapsed())
}

/// While the database is down: readiness says so, liveness does not, and a purchase with a token
/// the service has not seen yet (so it must ask the database) is 503, not 401 or 500.
async fn check_outage_answers(service: &Service, shop: &Shop, unseen_token: &str) {
    let client = http_client();
    let ready = probe(client.get(format!("{}/readyz", service.base))).await;
    assert_eq!(
        (ready.0, ready.1.as_str(), ready.2.as_deref()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            Some("1")
        ),
        "/readyz during the outage"
    );
    let live = client
        .get(format!("{}/healthz", service.base))
        .send()
        .await
        .expect("/healthz answers during the outage");
    assert_eq!(live.status(), StatusCode::OK, "/healthz during the outage");
    let customer = shop.customers[0];
    let purchase = probe(
        client
            .post(format!("{}/v1/customers/{customer}/subscriptions", shop.base))
            .bearer_auth(unseen_token)
            .header("idempotency-key", "outage-probe")
            .json(&serde_json::json!({ "partner_id": shop.partner, "offer_id": shop.offer, "quantity": 1 })),
    )
    .await;
    assert_eq!(
        (purchase.0, purchase.1.as_str(), purchase.2.as_deref()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            Some("1")
        ),
        "a purchase with a token not yet verified, during the outage"
    );
    for (what, took) in [("/readyz", ready.3), ("the purchase", purchase.3)] {
        assert!(
            took < Duration::from_secs(3),
            "{what} took {took:?} during the outage"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_survive_database_restarts() {
    let cluster = Cluster::start("restart");
    let mut service = Service::start(&cluster.url("partner_catalog"), cluster.dir()).await;
    let shop = seed(&service, 3).await;
    let unseen_tokens: Vec<String> = OUTAGES
        .iter()
        .map(|_| service.token("sales_agent", Some(shop.partner)))
        .collect();
    let client = http_client();
    let mut probes = Vec::new();

    let load = Load::start(&shop, 6, "restart");
    for (round, (mode, outage)) in OUTAGES.into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::task::block_in_place(|| cluster.stop(mode));
        let down = Instant::now();
        check_outage_answers(&service, &shop, &unseen_tokens[round]).await;
        tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
        tokio::task::block_in_place(|| cluster.start_again());

        // Back by itself: ready, and a purchase with the token first seen during the outage succeeds.
        let up = Instant::now();
        while !matches!(
            client.get(format!("{}/readyz", service.base)).send().await,
            Ok(r) if r.status() == StatusCode::OK
        ) {
            assert!(
                up.elapsed() < RECOVERY,
                "not ready {RECOVERY:?} after the {mode} restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let purchase = load::buy_until_created(
            &client,
            &shop,
            &unseen_tokens[round],
            shop.customers[round % shop.customers.len()],
            format!("restart-probe-{round}"),
        )
        .await;
        assert!(
            purchase.created().is_some() && up.elapsed() < RECOVERY,
            "no purchase within {RECOVERY:?} after the {mode} restart: {:?}",
            purchase.answers
        );
        eprintln!(
            "{mode} stop: {outage:?} down, serving again {:?} after the start",
            up.elapsed()
        );
        probes.push(purchase);
        assert!(
            service.is_running(),
            "the service exited during the {mode} restart"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut histories = load.finish().await;
    histories.extend(probes);

    let tally = load::tally(&histories);
    eprintln!("database restarts: {tally}");
    assert!(service.is_running(), "the service exited");
    tally.assert_sound(&service);
    // The service stays up the whole time, so every request must be answered.
    let unanswered: Vec<_> = histories
        .iter()
        .flat_map(|h| &h.answers)
        .filter_map(|(a, _)| match a {
            Answer::Unanswered(e) => Some(e),
            _ => None,
        })
        .collect();
    assert!(
        unanswered.is_empty(),
        "{tally}\nrequests without an answer: {unanswered:#?}"
    );
    assert!(
        tally.unavailable.values().sum::<usize>() > 0,
        "the buyers never saw an outage, so this test tested nothing: {tally}"
    );

    let pool = PgPool::connect(&cluster.url("partner_catalog"))
        .await
        .expect("connect to the private cluster");
    let mut problems = load::check_one_subscription_per_key(&pool, &shop, &histories).await;
    problems.extend(load::check_purchases_whole(&pool).await);
    pool.close().await;
    assert!(problems.is_empty(), "{tally}\n{problems:#?}");
}
