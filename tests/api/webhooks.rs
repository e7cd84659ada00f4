//! Webhooks: signed notices of committed events, delivered at least once, per customer in order,
//! only to the partner they concern; retries, `410 Gone`, leases of crashed instances; the feed.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
};
use partner_catalog::{
    db::{self, webhooks::Handover},
    delivery::{Look, dispatch_round},
    domain::Role,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, issue_token, spawn_app, spawn_app_with};

/// How a test receiver answers its n-th request (from 0).
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200 at once.
    Ok,
    /// 500 for the first `n` requests, then 200.
    FailFirst(usize),
    /// 410 Gone.
    Gone,
    /// Sleeps past the service's attempt timeout (2 s in tests) for the first `n`, then 200.
    SlowFirst(usize),
    /// 503 with `Retry-After: 1` for the first `n`, then 200.
    BusyFirst(usize),
    /// 500 for the first `n`, the last of them after 1.5 s (within the 2 s timeout), then 200.
    FailFirstLastSlowly(usize),
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    at: Instant,
    verified: bool,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    behaviour: Behaviour,
    secret: Arc<Mutex<Option<String>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1; returns it and its URL.
    async fn start(behaviour: Behaviour) -> (Self, String) {
        let receiver = Self {
            behaviour,
            secret: Arc::default(),
            got: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn set_secret(&self, secret: &str) {
        *self.secret.lock().unwrap() = Some(secret.to_owned());
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    // An independent implementation checks the signature: the `standardwebhooks` crate.
    let verified = receiver
        .secret
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|secret| {
            standardwebhooks::Webhook::new(secret)
                .unwrap()
                .verify(&body, &headers)
                .is_ok()
        });
    let n = {
        let mut got = receiver.got.lock().unwrap();
        got.push(Received {
            id: headers["webhook-id"].to_str().unwrap().to_owned(),
            at: Instant::now(),
            verified,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        got.len() - 1
    };
    match receiver.behaviour {
        Behaviour::Ok => StatusCode::OK.into_response(),
        Behaviour::FailFirst(k) if n < k => {
            (StatusCode::INTERNAL_SERVER_ERROR, "boom".repeat(200)).into_response()
        }
        Behaviour::FailFirst(_) => StatusCode::NO_CONTENT.into_response(),
        Behaviour::Gone => StatusCode::GONE.into_response(),
        Behaviour::SlowFirst(k) => {
            if n < k {
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
            StatusCode::OK.into_response()
        }
        Behaviour::BusyFirst(k) if n < k => {
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response()
        }
        Behaviour::BusyFirst(_) => StatusCode::OK.into_response(),
        Behaviour::FailFirstLastSlowly(k) if n < k => {
            if n + 1 == k {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Behaviour::FailFirstLastSlowly(_) => StatusCode::OK.into_response(),
    }
}

/// A request as `token` (not the helpers' default token).
fn as_token(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    app.client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token)
}

/// Asks, as `token`, for the notice of `event` to be sent to `endpoint` again.
async fn redeliver_event(
    app: &TestApp,
    token: &str,
    endpoint: Uuid,
    event: Uuid,
) -> reqwest::Response {
    as_token(
        app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{endpoint}/redeliver"),
        token,
    )
    .json(&json!({"event_id": event}))
    .send()
    .await
    .unwrap()
}

/// Registers an endpoint as `token`; returns its id and sets the receiver's secret.
async fn register(
    app: &TestApp,
    token: &str,
    receiver: &Receiver,
    url: &str,
    types: &[&str],
) -> Uuid {
    let reply = as_token(app, reqwest::Method::POST, "/v1/webhook-endpoints", token)
        .json(&json!({"url": url, "event_types": types}))
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let body: Value = reply.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{body}");
    receiver.set_secret(secret);
    body["id"].as_str().unwrap().parse().unwrap()
}

/// Waits until every queued delivery is settled and every chain is dispatched.
async fn settled(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (pending, behind): (i64, i64) = sqlx::query_as(
            "select (select count(*) from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id
                     where d.state = 'pending' and e.disabled_at is null),
                    (select count(*) from event_chain_heads h left join webhook_chain_marks m using (chain_id)
                     where h.seq > coalesce(m.seq, 0))",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if pending == 0 && behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} deliveries still pending, {behind} chains behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first arrival of each event id, in arrival order.
fn first_arrivals(got: &[Received]) -> Vec<Received> {
    let mut seen = BTreeSet::new();
    got.iter()
        .filter(|r| seen.insert(r.id.clone()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_committed_event_reaches_every_matching_endpoint_once_in_order_signed_and_scoped() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let admin_a = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let admin_b = issue_token(&app.pool, Role::GlobalAdmin, Some(b)).await;
    let (ra, url_a) = Receiver::start(Behaviour::Ok).await;
    let (rb, url_b) = Receiver::start(Behaviour::FailFirst(2)).await;
    let (rp, url_p) = Receiver::start(Behaviour::Ok).await;
    let ea = register(&app, &admin_a, &ra, &url_a, &[]).await;
    let eb = register(&app, &admin_b, &rb, &url_b, &[]).await;
    let ep = register(&app, &app.operator, &rp, &url_p, &[]).await;
    // A second instance delivers too: the leases keep them from sending the same attempt twice.
    app.spawn_instance().await;

    // Customers of a, of b, and one of both where b's GCC purchase locks a out.
    let ca = app.create_customer(&[]).await;
    let cb = app.create_customer(&[]).await;
    let cab = app.create_customer(&["gcc"]).await;
    app.link(ca, a).await;
    app.link(cb, b).await;
    app.link(cab, a).await;
    app.link(cab, b).await;
    let commercial = app.create_offer("commercial", "license_based").await;
    let gcc = app.create_offer("gcc", "license_based").await;
    let mut subs_a = Vec::new();
    for i in 0..5 {
        subs_a.push(
            app.purchase(ca, a, commercial, &format!("a-{i}"))
                .await
                .id(),
        );
    }
    let sb = app.purchase(cb, b, commercial, "b-1").await.id();
    let gcc_b = app.purchase(cab, b, gcc, "b-gcc").await.id();
    app.set_qualifications(ca, &["education"]).await;
    let reply = app
        .put_if_match(
            &format!("/v1/customers/{ca}/subscriptions/{}/status", subs_a[0]),
            "*",
            json!({"status": "suspended", "reason": "unpaid"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    settled(&app).await;

    // Every delivery queued for an endpoint arrived there, signed.
    for (endpoint, receiver) in [(ea, &ra), (eb, &rb), (ep, &rp)] {
        let queued: Vec<Uuid> =
            sqlx::query_scalar("select event_id from webhook_deliveries where endpoint_id = $1")
                .bind(endpoint)
                .fetch_all(&app.pool)
                .await
                .unwrap();
        let got = receiver.got();
        let arrived: BTreeSet<String> = got.iter().map(|r| r.id.clone()).collect();
        assert!(!queued.is_empty());
        for id in &queued {
            assert!(arrived.contains(&id.to_string()), "{id} never arrived");
        }
        assert!(got.iter().all(|r| r.verified), "a signature did not verify");
    }

    // Every committed event that concerns a partner reached it.
    let about_a: Vec<Uuid> = sqlx::query_scalar(
        "select id from events where partner_id = $1
           and event_type in ('subscription_created', 'subscription_status_changed', 'customer_partner_linked')",
    )
    .bind(a)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let got_a: BTreeMap<String, Value> = ra
        .got()
        .into_iter()
        .map(|r| (r.id.clone(), r.body))
        .collect();
    assert_eq!(
        about_a.len(),
        5 + 2 + 1,
        "5 purchases, 2 links, 1 status change"
    );
    for id in &about_a {
        assert!(got_a.contains_key(&id.to_string()), "{id} missed");
    }
    let types_a: BTreeSet<&str> = got_a
        .values()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    for wanted in [
        "subscription.created",
        "subscription.status_changed",
        "customer.qualifications_changed",
        "customer.linked",
        "customer.lockout_applies",
    ] {
        assert!(types_a.contains(wanted), "{wanted} not in {types_a:?}");
    }
    // The lockout says it applies, not who caused it; a never sees any of b's ids.
    let lockout = got_a
        .values()
        .find(|b| b["type"] == "customer.lockout_applies")
        .unwrap();
    assert_eq!(lockout["data"], json!({"customer_id": cab}));
    assert_eq!(lockout["version"], 1);
    let all_a = serde_json::to_string(&got_a).unwrap();
    let all_b =
        serde_json::to_string(&rb.got().into_iter().map(|r| r.body).collect::<Vec<_>>()).unwrap();
    for foreign in [
        b.to_string(),
        cb.to_string(),
        sb.to_string(),
        gcc_b.to_string(),
    ] {
        assert!(!all_a.contains(&foreign), "a learnt {foreign}");
    }
    for foreign in [a.to_string(), ca.to_string()]
        .into_iter()
        .chain(subs_a.iter().map(Uuid::to_string))
    {
        assert!(!all_b.contains(&foreign), "b learnt {foreign}");
    }
    // b's endpoint failed twice first: those deliveries were retried (with the same webhook-id)
    // until 204, and every attempt is recorded, with a small prefix of the answer only.
    let attempts: Vec<(Uuid, Option<i32>, Option<String>)> = sqlx::query_as(
        "select d.event_id, a.status, a.body_prefix
         from webhook_attempt_log a join webhook_deliveries d using (chain_id, endpoint_id, chain_seq)
         where d.endpoint_id = $1 order by d.event_id, a.attempt",
    )
    .bind(eb)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let failed: Vec<_> = attempts.iter().filter(|a| a.1 == Some(500)).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|a| a.2.as_ref().unwrap().len() == 256));
    for (event, _, _) in &failed {
        let last = attempts.iter().rfind(|a| a.0 == *event).unwrap();
        assert_eq!(last.1, Some(204));
        let sent = rb
            .got()
            .iter()
            .filter(|r| r.id == event.to_string())
            .count();
        assert!(sent >= 2, "{event} retried under its own id");
    }
    let queued_b: i64 =
        sqlx::query_scalar("select count(*) from webhook_deliveries where endpoint_id = $1")
            .bind(eb)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(attempts.len() as i64, queued_b + 2);

    // Per customer in order: each endpoint got each customer's events in chain order.
    for receiver in [&ra, &rb, &rp] {
        let order: Vec<(Uuid, i64)> = {
            let ids: Vec<Uuid> = first_arrivals(&receiver.got())
                .iter()
                .map(|r| r.id.parse().unwrap())
                .collect();
            let mut out = Vec::new();
            for id in ids {
                let row: (Uuid, i64) =
                    sqlx::query_as("select chain_id, chain_seq from events where id = $1")
                        .bind(id)
                        .fetch_one(&app.pool)
                        .await
                        .unwrap();
                out.push(row);
            }
            out
        };
        let mut last: BTreeMap<Uuid, i64> = BTreeMap::new();
        for (chain, seq) in order {
            let before = last.insert(chain, seq).unwrap_or(0);
            assert!(seq > before, "chain {chain}: {seq} arrived after {before}");
        }
    }

    // The platform endpoint hears of everything, with every id.
    let got_p: BTreeSet<String> = rp.got().into_iter().map(|r| r.id).collect();
    for id in &about_a {
        assert!(got_p.contains(&id.to_string()));
    }

    // The pull feed has the same notices as a's webhooks, in pages.
    let sales_a = app.sales_token(a).await;
    let mut feed = BTreeMap::new();
    let mut after = 0;
    loop {
        let page: Value = as_token(
            &app,
            reqwest::Method::GET,
            &format!("/v1/partner-events?limit=3&after={after}"),
            &sales_a,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        for item in page["items"].as_array().unwrap() {
            feed.insert(
                item["id"].as_str().unwrap().to_owned(),
                item["type"].clone(),
            );
            after = item["seq"].as_i64().unwrap();
        }
        if page["next_cursor"].is_null() {
            break;
        }
    }
    let webhooks: BTreeMap<String, Value> = got_a
        .iter()
        .map(|(id, body)| (id.clone(), body["type"].clone()))
        .collect();
    assert_eq!(feed, webhooks);

    // Deliveries and attempts are visible to the endpoint's owner, and to no other partner.
    let deliveries = as_token(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{eb}/deliveries"),
        &admin_b,
    )
    .send()
    .await
    .unwrap();
    let deliveries: Value = deliveries.json().await.unwrap();
    assert!(
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "delivered" && !d["attempt_log"].as_array().unwrap().is_empty())
    );
    let foreign = as_token(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{eb}/deliveries"),
        &admin_a,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(foreign.status(), 404);
    let body: Value = foreign.json().await.unwrap();
    assert_eq!(body["code"], "webhook_endpoint_not_found");
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_slow_or_busy_receivers_are_retried_after_backing_off() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (gone, url_gone) = Receiver::start(Behaviour::Gone).await;
    let (slow, url_slow) = Receiver::start(Behaviour::SlowFirst(1)).await;
    let (busy, url_busy) = Receiver::start(Behaviour::BusyFirst(1)).await;
    let eg = register(&app, &admin, &gone, &url_gone, &["customer.linked"]).await;
    register(&app, &admin, &slow, &url_slow, &["customer.linked"]).await;
    register(&app, &admin, &busy, &url_busy, &["customer.linked"]).await;
    let c = app.create_customer(&[]).await;
    app.link(c, a).await;
    settled(&app).await;

    let endpoint: Value = as_token(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{eg}"),
        &admin,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        endpoint["disabled_reason"], "the endpoint answered 410 Gone",
        "{endpoint}"
    );
    assert_eq!(gone.got().len(), 1, "nothing more is sent after 410");

    // The slow receiver's first attempt timed out (recorded), the retry arrived.
    let got = slow.got();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, got[1].id);
    let error: Option<String> = sqlx::query_scalar(
        "select a.error from webhook_attempt_log a join webhook_deliveries d using (chain_id, endpoint_id, chain_seq)
         join webhook_endpoints e on e.id = d.endpoint_id where e.url like $1 and a.attempt = 1",
    )
    .bind(format!("{url_slow}%"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(error.unwrap().contains("no answer within"));

    // Retry-After: 1 is honoured although the schedule says 200 ms.
    let got = busy.got();
    assert_eq!(got.len(), 2);
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

#[tokio::test]
async fn an_instance_without_delivery_queues_nothing_and_one_with_it_then_delivers_what_waited() {
    let app = spawn_app_with(|config| config.webhook_delivery = false).await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (receiver, url) = Receiver::start(Behaviour::Ok).await;
    register(&app, &admin, &receiver, &url, &["customer.linked"]).await;
    let c = app.create_customer(&[]).await;
    app.link(c, a).await;
    // Ten poll intervals of a delivering instance (50 ms in tests).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count("webhook_deliveries").await, 0);
    assert_eq!(app.count("partner_feed").await, 0);
    assert!(receiver.got().is_empty());

    // An instance that delivers reads the chain from its mark: the notice waited, it was not lost.
    app.spawn_instance().await;
    settled(&app).await;
    let got = receiver.got();
    let linked = latest_event(&app, c, "customer_partner_linked").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].id, linked.to_string());
    assert!(got[0].verified);
}

#[tokio::test]
async fn a_quick_look_takes_recent_events_and_the_full_sweep_those_committed_after_it_passed() {
    let app = spawn_app_with(|config| config.webhook_delivery = false).await;
    let c = app.create_customer(&[]).await;
    let first = dispatch_round(&app.pool, Look::Full, None).await.unwrap();
    assert!(first.events > 0 && first.drained, "{first:?}");
    let write = |n: i32| {
        sqlx::query(
            "insert into events (chain_id, customer_id, event_type, payload)
             select $1, $1, 'customer_qualifications_set', '{}' from generate_series(1, $2)",
        )
        .bind(c)
        .bind(n)
    };
    let behind = || async {
        sqlx::query_scalar::<_, i64>(
            "select h.seq - m.seq from event_chain_heads h join webhook_chain_marks m using (chain_id)
             where chain_id = $1",
        )
        .bind(c)
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    let quick = |from| dispatch_round(&app.pool, Look::Recent { from }, None);

    // The looks' window is on the database's clock, which stamps the ids: a fresh event is in it.
    write(1).execute(&app.pool).await.unwrap();
    let look = quick(None).await.unwrap();
    assert_eq!((look.events, look.drained, behind().await), (1, true, 0));

    // An event whose transaction commits well after writing it (as an import's batch may), after
    // a look has passed it: the next look starts after it, and the full sweep takes it.
    let mut tx = app.pool.begin().await.unwrap();
    write(1).execute(&mut *tx).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let during = quick(Some(look.looked_at)).await.unwrap();
    assert_eq!((during.events, during.drained), (0, true));
    tx.commit().await.unwrap();
    let after = quick(Some(during.looked_at)).await.unwrap();
    assert_eq!((after.events, behind().await), (0, 1), "waiting, not lost");
    let sweep = dispatch_round(&app.pool, Look::Full, None).await.unwrap();
    assert_eq!((sweep.events, behind().await), (1, 0), "{sweep:?}");
    let again = dispatch_round(&app.pool, Look::Full, None).await.unwrap();
    assert_eq!(again.events, 0, "dispatched once");

    // A chain over a round's limit (100 events) is taken over two rounds, and the first says it
    // left some behind, so the quick looks do not move past them.
    write(150).execute(&app.pool).await.unwrap();
    let partly = quick(None).await.unwrap();
    assert_eq!(
        (partly.events, partly.drained, behind().await),
        (100, false, 50)
    );
    let rest = quick(None).await.unwrap();
    assert_eq!((rest.events, rest.drained, behind().await), (50, true, 0));
}

#[tokio::test]
async fn a_dispatch_round_hands_over_leased_just_what_the_lease_would_take_at_once() {
    let app = spawn_app_with(|config| config.webhook_delivery = false).await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (receiver, url) = Receiver::start(Behaviour::Ok).await;
    let types = ["customer.qualifications_changed"];
    let first = register(&app, &admin, &receiver, &url, &types).await;
    let second = register(&app, &admin, &receiver, &url, &types).await;
    let (c, d) = (
        app.create_customer(&[]).await,
        app.create_customer(&[]).await,
    );
    app.link(c, a).await;
    app.link(d, a).await;
    dispatch_round(&app.pool, Look::Full, None).await.unwrap();
    let pool = &app.pool;
    let changes = |customer: Uuid, n: i32| async move {
        sqlx::query(
            "insert into events (chain_id, customer_id, event_type, payload)
             select $1, $1, 'customer_qualifications_set', '{\"after\": []}'
             from generate_series(1, $2)",
        )
        .bind(customer)
        .bind(n)
        .execute(pool)
        .await
        .unwrap();
    };
    let owner = Uuid::now_v7();
    let handover = |limit| {
        Some(Handover {
            owner,
            lease_secs: 60.0,
            limit,
        })
    };
    let leased = |customer: Uuid| async move {
        sqlx::query_as::<_, (Uuid, i64, i32, bool)>(
            "select endpoint_id, chain_seq, attempts, lease_owner is not distinct from $2
             from webhook_deliveries where chain_id = $1 and state = 'pending'
             order by endpoint_id, chain_seq",
        )
        .bind(customer)
        .bind(owner)
        .fetch_all(pool)
        .await
        .unwrap()
    };

    // Three changes of one customer to two endpoints: the first to each is handed over, leased,
    // and the two after it wait for it, unleased.
    changes(c, 3).await;
    let round = dispatch_round(&app.pool, Look::Full, handover(256))
        .await
        .unwrap();
    let mut handed: Vec<(Uuid, Uuid, i64, i32, &str)> = round
        .handed
        .iter()
        .map(|d| {
            (
                d.chain_id,
                d.endpoint_id,
                d.chain_seq,
                d.attempts,
                d.url.as_str(),
            )
        })
        .collect();
    handed.sort_unstable();
    let rows = leased(c).await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    let heads: Vec<(Uuid, i64)> = rows
        .iter()
        .filter(|(_, _, attempts, ours)| *ours && *attempts == 1)
        .map(|(endpoint, seq, _, _)| (*endpoint, *seq))
        .collect();
    let seq = rows[0].1;
    let mut expected = vec![
        (c, first, seq, 1, url.as_str()),
        (c, second, seq, 1, url.as_str()),
    ];
    expected.sort_unstable();
    assert_eq!(handed, expected);
    assert_eq!(heads.len(), 2, "{rows:?}");
    assert!(heads.iter().all(|(_, s)| *s == seq), "{rows:?}");
    assert!(
        rows.iter()
            .filter(|r| r.1 != seq)
            .all(|r| (r.2, r.3) == (0, false)),
        "{rows:?}"
    );
    // The lease of any instance finds nothing: the heads are leased, the rest wait for them.
    let other = db::webhooks::lease(&app.pool, Uuid::now_v7(), 60.0, 256)
        .await
        .unwrap();
    assert!(other.is_empty(), "{other:?}");

    // A later change of the same customer waits for the pending ones: nothing is handed over.
    changes(c, 1).await;
    let round = dispatch_round(&app.pool, Look::Full, handover(256))
        .await
        .unwrap();
    assert_eq!((round.events, round.handed.len()), (1, 0));
    assert_eq!(leased(c).await.len(), 8);

    // No more than the limit, in key order; without a handover nothing is leased.
    changes(d, 1).await;
    let round = dispatch_round(&app.pool, Look::Full, handover(1))
        .await
        .unwrap();
    let taken: Vec<Uuid> = round.handed.iter().map(|h| h.endpoint_id).collect();
    assert_eq!(taken, vec![first.min(second)]);
    changes(d, 1).await;
    dispatch_round(&app.pool, Look::Full, None).await.unwrap();
    let rows = leased(d).await;
    assert_eq!(
        rows.iter().filter(|r| r.3).count(),
        1,
        "only the one handed over: {rows:?}"
    );

    // What is handed over is not due again before its lease runs out: the lease's walk of due
    // deliveries does not pass them while they wait to be sent.
    let in_flight: Vec<(bool, bool)> = sqlx::query_as(
        "select next_attempt_at = lease_until, lease_until > now() + interval '50 seconds'
         from webhook_deliveries where lease_owner = $1",
    )
    .bind(owner)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(in_flight, vec![(true, true); 3]);

    // A delivery already there (a mark moved back by hand) is skipped: the round goes through
    // and queues no delivery twice (the feed gets the event again: a mark moved back announces
    // again).
    let before = leased(d).await;
    sqlx::query("update webhook_chain_marks set seq = seq - 1 where chain_id = $1")
        .bind(d)
        .execute(pool)
        .await
        .unwrap();
    let round = dispatch_round(&app.pool, Look::Full, handover(256))
        .await
        .unwrap();
    assert_eq!((round.events, round.handed.len()), (1, 0));
    assert_eq!(leased(d).await, before);
}

#[tokio::test]
async fn a_notice_the_feed_holds_twice_is_redelivered_once() {
    let app = spawn_app_with(|config| config.webhook_delivery = false).await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (receiver, url) = Receiver::start(Behaviour::Ok).await;
    let endpoint = register(&app, &admin, &receiver, &url, &["customer.linked"]).await;
    let c = app.create_customer(&[]).await;
    app.link(c, a).await;
    let event = latest_event(&app, c, "customer_partner_linked").await;
    dispatch_round(&app.pool, Look::Full, None).await.unwrap();
    // A mark moved back by hand: the next round appends the event to the feed again.
    sqlx::query("update webhook_chain_marks set seq = seq - 1 where chain_id = $1")
        .bind(c)
        .execute(&app.pool)
        .await
        .unwrap();
    dispatch_round(&app.pool, Look::Full, None).await.unwrap();
    let in_feed: i64 = sqlx::query_scalar(
        "select count(*) from partner_feed where partner_id = $1 and event_id = $2",
    )
    .bind(a)
    .bind(event)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(in_feed, 2);

    let reply = redeliver_event(&app, &admin, endpoint, event).await;
    assert_eq!(reply.status(), 202);
    assert_eq!(reply.json::<Value>().await.unwrap()["queued"], 1);
    let deliveries: i64 = sqlx::query_scalar(
        "select count(*) from webhook_deliveries where endpoint_id = $1 and event_id = $2 and state = 'pending'",
    )
    .bind(endpoint)
    .bind(event)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(deliveries, 1);
}

#[tokio::test]
async fn a_crashed_instances_lease_is_taken_over_and_its_delivery_sent() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (receiver, url) = Receiver::start(Behaviour::Ok).await;
    let endpoint = register(&app, &admin, &receiver, &url, &["customer.linked"]).await;
    let c = app.create_customer(&[]).await;
    app.link(c, a).await;
    settled(&app).await;
    assert_eq!(receiver.got().len(), 1);
    // As if an instance had leased the delivery and died before sending: it is pending, leased
    // to a process that is gone, and its lease has run out.
    let event: Uuid = sqlx::query_scalar(
        "update webhook_deliveries set state = 'pending', attempts = 1, lease_owner = gen_random_uuid(),
                lease_until = now() - interval '1 second', delivered_at = null
         where endpoint_id = $1 returning event_id",
    )
    .bind(endpoint)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    settled(&app).await;
    let got = receiver.got();
    assert_eq!(got.len(), 2, "sent again, at least once");
    assert_eq!(got[1].id, event.to_string());
    assert!(got.iter().all(|r| r.verified));
}

#[tokio::test]
async fn a_rotated_secret_and_the_previous_one_both_verify_during_the_overlap() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (old, url) = Receiver::start(Behaviour::Ok).await;
    let endpoint = register(&app, &admin, &old, &url, &["customer.linked"]).await;
    let old_secret = old.secret.lock().unwrap().clone().unwrap();
    let rotated: Value = as_token(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{endpoint}/rotate-secret"),
        &admin,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(rotated["previous_secret_until"].is_string());
    let rotations: i64 = sqlx::query_scalar(
        "select count(*) from events where event_type = 'webhook_secret_rotated' and payload->>'endpoint_id' = $1",
    )
    .bind(endpoint.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(rotations, 1, "a rotation is audited");
    // A test notice is signed with both secrets too.
    let tested: Value = as_token(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{endpoint}/test"),
        &admin,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(tested["status"], 200, "{tested}");
    let test = old.got().pop().unwrap();
    assert!(test.verified);
    assert_eq!(test.body["type"], "webhook.test");
    assert_eq!(test.id, tested["id"].as_str().unwrap());
    old.got.lock().unwrap().clear();
    let c = app.create_customer(&[]).await;
    app.link(c, a).await;
    settled(&app).await;
    // The receiver verifies with the old secret; check the new one too.
    assert!(old.got().iter().all(|r| r.verified) && !old.got().is_empty());
    old.set_secret(&new_secret);
    app.link(app.create_customer(&[]).await, a).await;
    settled(&app).await;
    assert!(old.got().iter().all(|r| r.verified) && old.got().len() == 2);
}

#[tokio::test]
async fn endpoints_resolving_to_internal_addresses_are_refused_unless_allowed() {
    let app = spawn_app().await;
    let strict = app
        .spawn_instance_with(|c| c.webhook_allow_private = Default::default())
        .await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let try_url = |base: String, url: &'static str| {
        let client = app.client.clone();
        let admin = admin.clone();
        async move {
            let reply = client
                .post(format!("{base}/v1/webhook-endpoints"))
                .bearer_auth(admin)
                .json(&json!({"url": url}))
                .send()
                .await
                .unwrap();
            let status = reply.status();
            let body: Value = reply.json().await.unwrap();
            (status, body["code"].as_str().unwrap_or_default().to_owned())
        }
    };
    for url in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://localhost/hook",
        "ftp://127.0.0.1/hook",
        "not a url",
    ] {
        let (status, code) = try_url(strict.clone(), url).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (422, "invalid_webhook_url"),
            "{url}"
        );
    }
    // The test instance allows 127.0.0.0/8, and http:// only there.
    let (status, _) = try_url(app.address.clone(), "http://127.0.0.1:9/hook").await;
    assert_eq!(status, 201);
    for url in [
        "https://10.0.0.1/hook",
        "http://169.254.169.254/",
        "https://user:pw@127.0.0.1/hook",
    ] {
        let (status, code) = try_url(app.address.clone(), url).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (422, "invalid_webhook_url"),
            "{url}"
        );
    }
    assert_eq!(app.count("webhook_endpoints").await, 1);
}

#[tokio::test]
async fn only_global_admins_and_operators_manage_endpoints_and_partners_see_only_their_own() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let admin_a = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let admin_b = issue_token(&app.pool, Role::GlobalAdmin, Some(b)).await;
    let (receiver, url) = Receiver::start(Behaviour::Ok).await;
    let ea = register(&app, &admin_a, &receiver, &url, &[]).await;
    let sales = app.sales_token(a).await;
    let call = |method: reqwest::Method, path: String, token: String, body: Option<Value>| {
        let mut request = as_token(&app, method, &path, &token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let reply = request.send().await.unwrap();
            let status = reply.status().as_u16();
            let body: Value = reply.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let (status, body) = call(
        reqwest::Method::POST,
        "/v1/webhook-endpoints".into(),
        sales.clone(),
        Some(json!({"url": url})),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (403, json!("forbidden")));
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/webhook-endpoints/{ea}")),
        (
            reqwest::Method::POST,
            format!("/v1/webhook-endpoints/{ea}/disable"),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/webhook-endpoints/{ea}/rotate-secret"),
        ),
    ] {
        let (status, body) = call(method, path, admin_b.clone(), None).await;
        assert_eq!(
            (status, body["code"].clone()),
            (404, json!("webhook_endpoint_not_found"))
        );
    }
    let (status, body) = call(
        reqwest::Method::POST,
        "/v1/webhook-endpoints".into(),
        admin_b.clone(),
        Some(json!({"url": url, "partner_id": a})),
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("partner_not_found"))
    );
    let (_, listed) = call(
        reqwest::Method::GET,
        "/v1/webhook-endpoints".into(),
        admin_b.clone(),
        None,
    )
    .await;
    assert_eq!(listed["items"], json!([]));
    let (status, disabled) = call(
        reqwest::Method::POST,
        format!("/v1/webhook-endpoints/{ea}/disable"),
        admin_a.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(disabled["disabled_reason"], "disabled by its owner");
    assert!(disabled.get("secret").is_none());
}

/// The state and attempt count of `endpoint`'s delivery of `event`.
async fn delivery_of(app: &TestApp, endpoint: Uuid, event: Uuid) -> (String, i32) {
    sqlx::query_as(
        "select state, attempts from webhook_deliveries where endpoint_id = $1 and event_id = $2",
    )
    .bind(endpoint)
    .bind(event)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// The id of the latest event of `event_type` about `customer`.
async fn latest_event(app: &TestApp, customer: Uuid, event_type: &str) -> Uuid {
    sqlx::query_scalar(
        "select id from events where customer_id = $1 and event_type = $2 order by id desc limit 1",
    )
    .bind(customer)
    .bind(event_type)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_failed_endpoint_is_enabled_and_redelivered_what_it_missed_with_a_fresh_schedule() {
    let app = spawn_app().await;
    let started = chrono::Utc::now();
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let admin_b = issue_token(&app.pool, Role::GlobalAdmin, Some(b)).await;
    // Fails its first 6 requests: the whole schedule (4 attempts in tests), then 2 more.
    let (receiver, url) = Receiver::start(Behaviour::FailFirst(6)).await;
    let endpoint = register(&app, &admin, &receiver, &url, &["customer.linked"]).await;
    let post = |path: String, token: String, body: Value| {
        let request = as_token(&app, reqwest::Method::POST, &path, &token).json(&body);
        async move {
            let reply = request.send().await.unwrap();
            let status = reply.status().as_u16();
            (status, reply.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let redeliver = format!("/v1/webhook-endpoints/{endpoint}/redeliver");

    let first = app.create_customer(&[]).await;
    app.link(first, a).await;
    let e1 = latest_event(&app, first, "customer_partner_linked").await;
    settled(&app).await;
    assert_eq!(delivery_of(&app, endpoint, e1).await, ("failed".into(), 4));
    let reason: Option<String> =
        sqlx::query_scalar("select disabled_reason from webhook_endpoints where id = $1")
            .bind(endpoint)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        reason.as_deref(),
        Some("deliveries kept failing for the whole retry schedule")
    );

    // While it is disabled, a's second customer is linked (not queued for it), and b's customer
    // (never a's business).
    let second = app.create_customer(&[]).await;
    app.link(second, a).await;
    let e2 = latest_event(&app, second, "customer_partner_linked").await;
    let theirs = app.create_customer(&[]).await;
    app.link(theirs, b).await;
    let foreign = latest_event(&app, theirs, "customer_partner_linked").await;
    settled(&app).await;
    assert_eq!(receiver.got().len(), 4);

    // Enabling sends nothing by itself: the failed delivery stays failed.
    let (status, enabled) = post(
        format!("/v1/webhook-endpoints/{endpoint}/enable"),
        admin.clone(),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{enabled}");
    assert!(enabled["disabled_at"].is_null() && enabled["disabled_reason"].is_null());
    settled(&app).await;
    assert_eq!(receiver.got().len(), 4);

    // The failed event again: its schedule starts over, so two more failures are retried (with
    // the attempts counted since the start, it would fail at once) and the third try arrives.
    let (status, done) = post(redeliver.clone(), admin.clone(), json!({"event_id": e1})).await;
    assert_eq!((status, &done["queued"]), (202, &json!(1)), "{done}");
    assert!(done["next_since"].is_null());
    settled(&app).await;
    assert_eq!(
        delivery_of(&app, endpoint, e1).await,
        ("delivered".into(), 7)
    );
    let got = receiver.got();
    assert_eq!(got.len(), 7);
    assert!(got.iter().all(|r| r.id == e1.to_string() && r.verified));

    // The range since the start: both of a's events (the one missed while disabled is queued now),
    // never b's, and the redelivered one under its own id again.
    let (status, done) = post(redeliver.clone(), admin.clone(), json!({"since": started})).await;
    assert_eq!((status, &done["queued"]), (202, &json!(2)), "{done}");
    settled(&app).await;
    let got = receiver.got();
    let ids: BTreeSet<String> = got[7..].iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, BTreeSet::from([e1.to_string(), e2.to_string()]));
    assert!(
        got.iter()
            .all(|r| r.verified && r.id != foreign.to_string())
    );
    assert_eq!(delivery_of(&app, endpoint, e2).await.0, "delivered");
    // Delivered twice, at its 7th and 8th attempts: the first delivering attempt, kept in the
    // delivery's row until then, stays on record beside the second.
    let deliveries: Value = as_token(
        &app,
        reqwest::Method::GET,
        &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
        &admin,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let log = deliveries
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["event_id"] == json!(e1))
        .map(|d| d["attempt_log"].as_array().unwrap().clone())
        .unwrap();
    let attempts: Vec<(i64, i64)> = log
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["status"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(i64, i64)> = (1..=6)
        .map(|n| (n, 500))
        .chain([(7, 204), (8, 204)])
        .collect();
    assert_eq!(attempts, expected);

    // Another partner's event is no notice of this endpoint; another partner's admin does not
    // see the endpoint; a request naming both an event and a range, or neither, is refused.
    for (token, body, expected) in [
        (
            admin.clone(),
            json!({"event_id": foreign}),
            (404, "webhook_event_not_found"),
        ),
        (
            admin_b.clone(),
            json!({"event_id": e1}),
            (404, "webhook_endpoint_not_found"),
        ),
        (
            admin.clone(),
            json!({"event_id": e1, "since": started}),
            (422, "invalid_field"),
        ),
        (admin.clone(), json!({}), (422, "invalid_field")),
        (
            admin.clone(),
            json!({"since": chrono::Utc::now(), "until": started}),
            (422, "invalid_field"),
        ),
    ] {
        let (status, reply) = post(redeliver.clone(), token, body.clone()).await;
        assert_eq!(
            (status, reply["code"].as_str().unwrap()),
            expected,
            "{body}"
        );
    }

    // Enabling and each redelivery are on the audit record, by whom.
    let audited: Vec<(String, String)> = sqlx::query_as(
        "select event_type, actor from events
         where event_type in ('webhook_endpoint_enabled', 'webhook_redelivery_requested')
         order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let types: Vec<&str> = audited.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "webhook_endpoint_enabled",
            "webhook_redelivery_requested",
            "webhook_redelivery_requested"
        ]
    );
}

#[tokio::test]
async fn a_long_poll_of_the_feed_answers_when_its_partner_hears_news_and_not_for_anothers() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let sales_a = app.sales_token(a).await;
    let sales_b = app.sales_token(b).await;
    let poll = |token: String, query: &'static str| {
        let request = as_token(
            &app,
            reqwest::Method::GET,
            &format!("/v1/partner-events?{query}"),
            &token,
        );
        async move {
            let started = Instant::now();
            let reply = request.send().await.unwrap();
            let status = reply.status().as_u16();
            (
                status,
                reply.json::<Value>().await.unwrap(),
                started.elapsed(),
            )
        }
    };
    // Nothing yet: without `wait` the answer is an empty page at once.
    let (status, page, _) = poll(sales_a.clone(), "after=0").await;
    assert_eq!((status, &page["items"]), (200, &json!([])));
    let (status, page, _) = poll(sales_a.clone(), "wait=26").await;
    assert_eq!(
        (status, page["code"].as_str()),
        (400, Some("invalid_query_parameter"))
    );

    // Both wait; a customer is linked to a. a's request answers with the notice well before the
    // readers' 5 s re-check (it is rung), b's waits its 2 s out and answers empty.
    let waiting_a = tokio::spawn(poll(sales_a.clone(), "after=0&wait=20"));
    let waiting_b = tokio::spawn(poll(sales_b.clone(), "after=0&wait=2"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, a).await;
    let (status, page, took) = waiting_a.await.unwrap();
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["type"], "customer.linked");
    assert_eq!(items[0]["data"]["customer_id"], json!(customer));
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let (status, page, took) = waiting_b.await.unwrap();
    assert_eq!((status, &page["items"]), (200, &json!([])));
    assert!(took >= Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn an_attempt_whose_delivery_was_redelivered_meanwhile_neither_settles_it_nor_disables_the_endpoint()
 {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    // The schedule's 4 attempts fail, the last one slowly; whatever comes after succeeds.
    let (receiver, url) = Receiver::start(Behaviour::FailFirstLastSlowly(4)).await;
    let endpoint = register(&app, &admin, &receiver, &url, &["customer.linked"]).await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, a).await;
    let event = latest_event(&app, customer, "customer_partner_linked").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.got().len() < 4 {
        assert!(Instant::now() < deadline, "the last attempt never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The schedule's last attempt is in flight: redeliver the event now.
    let reply = redeliver_event(&app, &admin, endpoint, event).await;
    assert_eq!(reply.status(), 202);
    // That attempt's failure settles nothing: the endpoint stays enabled, and the redelivery is
    // sent once the attempt is over (not beside it), and arrives.
    settled(&app).await;
    let disabled: Option<String> =
        sqlx::query_scalar("select disabled_reason from webhook_endpoints where id = $1")
            .bind(endpoint)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(disabled, None);
    assert_eq!(
        delivery_of(&app, endpoint, event).await,
        ("delivered".into(), 5)
    );
    let got = receiver.got();
    assert_eq!(got.len(), 5);
    assert!(
        got[4].at - got[3].at >= Duration::from_millis(1500),
        "sent beside the slow attempt"
    );
}

/// Whether the rows `select … for update nowait` names could be locked now, none held by another
/// transaction (the lock is released at once).
async fn lockable(app: &TestApp, select_for_update_nowait: &str, id: Uuid) -> bool {
    let mut probe = app.pool.begin().await.unwrap();
    match sqlx::query(select_for_update_nowait)
        .bind(id)
        .fetch_all(&mut *probe)
        .await
    {
        Ok(_) => true,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => false,
        Err(e) => panic!("{select_for_update_nowait}: {e}"),
    }
}

#[tokio::test]
async fn a_redelivery_locks_its_deliveries_in_key_order_not_in_the_order_they_happened() {
    let app = spawn_app().await;
    let started = chrono::Utc::now();
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (receiver, url) = Receiver::start(Behaviour::Ok).await;
    let endpoint = register(&app, &admin, &receiver, &url, &["customer.linked"]).await;
    let (one, two) = (
        app.create_customer(&[]).await,
        app.create_customer(&[]).await,
    );
    let (first_key, second_key) = (one.min(two), one.max(two));
    // The second in key order happens first.
    app.link(second_key, a).await;
    app.link(first_key, a).await;
    settled(&app).await;

    // Another transaction holds the first delivery in key order; the range's redelivery waits.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from webhook_deliveries where chain_id = $1 for update")
        .bind(first_key)
        .fetch_all(&mut *holder)
        .await
        .unwrap();
    let redelivery = as_token(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{endpoint}/redeliver"),
        &admin,
    )
    .json(&json!({"since": started}))
    .send();
    let redelivery = tokio::spawn(redelivery);
    app.waits_for_a_lock("%insert into webhook_deliveries%")
        .await;
    // It waits before locking the other one: a transaction locking both in key order (a sender
    // settling its round) cannot deadlock with it.
    assert!(
        lockable(
            &app,
            "select 1 from webhook_deliveries where chain_id = $1 for update nowait",
            second_key
        )
        .await,
        "the redelivery locked the later key first"
    );
    holder.rollback().await.unwrap();
    let reply = redelivery.await.unwrap().unwrap();
    assert_eq!(reply.status(), 202);
    settled(&app).await;
    assert_eq!(receiver.got().len(), 4);
}

#[tokio::test]
async fn enabling_an_endpoint_locks_its_deliveries_before_the_endpoint() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (receiver, url) = Receiver::start(Behaviour::Ok).await;
    let endpoint = register(&app, &admin, &receiver, &url, &["customer.linked"]).await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, a).await;
    let event = latest_event(&app, customer, "customer_partner_linked").await;
    settled(&app).await;
    let post = |path: String, body: Value| {
        as_token(&app, reqwest::Method::POST, &path, &admin)
            .json(&body)
            .send()
    };
    let disabled = post(
        format!("/v1/webhook-endpoints/{endpoint}/disable"),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(disabled.status(), 200);
    // Queued again while disabled: pending, and sent once enabled.
    let queued = post(
        format!("/v1/webhook-endpoints/{endpoint}/redeliver"),
        json!({"event_id": event}),
    )
    .await
    .unwrap();
    assert_eq!(queued.status(), 202);

    // Another transaction holds the pending delivery; enabling waits for it.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from webhook_deliveries where endpoint_id = $1 for update")
        .bind(endpoint)
        .fetch_all(&mut *holder)
        .await
        .unwrap();
    let enabling = tokio::spawn(post(
        format!("/v1/webhook-endpoints/{endpoint}/enable"),
        json!({}),
    ));
    app.waits_for_a_lock("%webhook_deliveries%").await;
    // Without the endpoint's row: a sender that settles that delivery and then disables the
    // endpoint cannot deadlock with it.
    assert!(
        lockable(
            &app,
            "select 1 from webhook_endpoints where id = $1 for update nowait",
            endpoint
        )
        .await,
        "enabling locked the endpoint before its deliveries"
    );
    holder.rollback().await.unwrap();
    let enabled = enabling.await.unwrap().unwrap();
    assert_eq!(enabled.status(), 200);
    settled(&app).await;
    assert_eq!(delivery_of(&app, endpoint, event).await.0, "delivered");
    assert_eq!(receiver.got().len(), 2);
}

#[tokio::test]
async fn a_delivering_attempt_whose_lease_was_lost_settles_nothing_but_is_on_record_once() {
    let app = spawn_app_with(|config| config.webhook_delivery = false).await;
    let a = app.create_qualified_partner().await;
    let admin = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let (receiver, url) = Receiver::start(Behaviour::Ok).await;
    let endpoint = register(&app, &admin, &receiver, &url, &["customer.linked"]).await;
    let c = app.create_customer(&[]).await;
    app.link(c, a).await;
    dispatch_round(&app.pool, Look::Full, None).await.unwrap();
    let ours = Uuid::now_v7();
    let leased = db::webhooks::lease(&app.pool, ours, 60.0, 10)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    // Its lease ran out and another instance took the delivery over while this one sent it.
    let theirs = Uuid::now_v7();
    sqlx::query("update webhook_deliveries set lease_owner = $1 where endpoint_id = $2")
        .bind(theirs)
        .bind(endpoint)
        .execute(&app.pool)
        .await
        .unwrap();
    let attempt = db::webhooks::Attempt {
        started_at: chrono::Utc::now(),
        latency_ms: 3,
        status: Some(204),
        error: None,
        body_prefix: None,
    };
    db::webhooks::settle_delivered(&app.pool, &[(&leased[0], attempt)], ours)
        .await
        .unwrap();
    let row: (String, Option<Uuid>, Option<i32>) = sqlx::query_as(
        "select state, lease_owner, delivered_attempt from webhook_deliveries where endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(row, ("pending".into(), Some(theirs), None));
    let log: Vec<(i32, Option<i32>)> =
        sqlx::query_as("select attempt, status from webhook_attempt_log where endpoint_id = $1")
            .bind(endpoint)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(log, vec![(1, Some(204))]);
}
