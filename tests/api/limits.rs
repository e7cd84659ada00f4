//! Time limits and the connection pool: a request that cannot finish in time answers 503 with
//! `Retry-After` and changes nothing; it never hangs.

use std::time::{Duration, Instant};

use partner_catalog::{dev::SeedOptions, domain::Role, startup::Application};
use reqwest::StatusCode;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpSocket, TcpStream},
};
use uuid::Uuid;

use crate::helpers::{Reply, TestApp, issue_token, purchase_at, spawn_app, test_config};

/// A related customer, partner and offer, and the partner's sales token.
struct Sale {
    customer: Uuid,
    partner: Uuid,
    offer: Uuid,
    token: String,
}

async fn sale(app: &TestApp) -> Sale {
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    Sale {
        customer,
        partner,
        offer: app.create_offer("commercial", "license_based").await,
        token: app.sales_token(partner).await,
    }
}

impl Sale {
    async fn buy(&self, client: &reqwest::Client, base: &str, key: &str) -> Reply {
        purchase_at(
            client,
            base,
            &self.token,
            self.customer,
            self.partner,
            self.offer,
            key,
        )
        .await
    }
}

/// Holds the customer's row lock, as a long back-office change would, so purchases wait.
async fn lock_customer(pool: &PgPool, customer: Uuid) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("select 1 from customers where id = $1 for update")
        .bind(customer)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

fn assert_retry_after(reply: &Reply) {
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn every_connection_carries_the_configured_time_limits() {
    let app = spawn_app().await;
    let mut config = test_config(&app.database_url);
    config.statement_timeout_ms = 1234;
    config.idle_in_transaction_timeout_ms = 4321;
    let service = Application::build(&config).await.unwrap();
    for (setting, expected) in [
        ("statement_timeout", "1234ms"),
        ("idle_in_transaction_session_timeout", "4321ms"),
    ] {
        let value: String = sqlx::query_scalar(&format!("show {setting}"))
            .fetch_one(service.pool())
            .await
            .unwrap();
        assert_eq!(value, expected, "{setting}");
    }
}

#[tokio::test]
async fn a_statement_past_its_time_limit_answers_503_and_buys_nothing() {
    let app = spawn_app().await;
    let sale = sale(&app).await;
    let base = app
        .spawn_instance_with(|c| c.statement_timeout_ms = 300)
        .await;
    let lock = lock_customer(&app.pool, sale.customer).await;

    let reply = sale.buy(&app.client, &base, "slow-1").await;
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "request_timeout");
    assert_retry_after(&reply);
    lock.rollback().await.unwrap();
    assert_eq!(app.count("subscriptions").await, 0);
    assert_eq!(app.count("idempotency_keys").await, 0);

    let retry = sale.buy(&app.client, &base, "slow-1").await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:#}", retry.body);
    assert!(retry.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn a_request_past_the_request_timeout_answers_503_and_buys_nothing() {
    let app = spawn_app().await;
    let sale = sale(&app).await;
    let base = app
        .spawn_instance_with(|c| {
            c.request_timeout_secs = 1;
            c.statement_timeout_ms = 20_000;
        })
        .await;
    let lock = lock_customer(&app.pool, sale.customer).await;

    let started = Instant::now();
    let reply = sale.buy(&app.client, &base, "slow-2").await;
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "request_timeout");
    assert_retry_after(&reply);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The abandoned purchase was waiting for the lock; once it is free, nothing may commit.
    lock.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count("subscriptions").await, 0);
    assert_eq!(app.count("idempotency_keys").await, 0);

    let retry = sale.buy(&app.client, &base, "slow-2").await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:#}", retry.body);
}

#[tokio::test]
async fn no_free_connection_in_time_answers_503_with_retry_after_never_a_hang() {
    let app = spawn_app().await;
    let sale = sale(&app).await;
    let base = app
        .spawn_instance_with(|c| {
            c.database_max_connections = 1;
            c.database_acquire_timeout_secs = 1;
        })
        .await;
    let lock = lock_customer(&app.pool, sale.customer).await;

    // This purchase takes the instance's only connection and waits for the customer's lock.
    let waiting = {
        let (client, base) = (app.client.clone(), base.clone());
        let sale = Sale {
            token: sale.token.clone(),
            ..sale
        };
        tokio::spawn(async move { sale.buy(&client, &base, "waits").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let reply = Reply::from(
        app.client
            .get(format!("{base}/v1/offers"))
            .bearer_auth(&app.operator)
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable");
    assert_retry_after(&reply);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    lock.rollback().await.unwrap();
    let bought = waiting.await.unwrap();
    assert_eq!(bought.status, StatusCode::CREATED, "{:#}", bought.body);
}

#[tokio::test]
async fn bodies_over_the_configured_limits_answer_413_and_change_nothing() {
    let app = spawn_app().await;
    let base = app
        .spawn_instance_with(|c| {
            c.body_limit_bytes = 1024;
            c.import_body_limit_bytes = 2048;
        })
        .await;
    let name = "n".repeat(1500);
    let offer =
        serde_json::json!({"name": name, "segment": "commercial", "product_kind": "license_based"});
    let reply = Reply::from(
        app.client
            .post(format!("{base}/v1/offers"))
            .bearer_auth(&app.operator)
            .json(&offer)
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // The import has a limit of its own: 1,500 bytes pass it, 3,000 do not.
    let line = format!("{{\"name\":\"{}\"}}\n", "c".repeat(140));
    let import = |lines: usize| {
        app.client
            .post(format!("{base}/v1/customers:import"))
            .bearer_auth(&app.back_office)
            .header("content-type", "application/x-ndjson")
            .body(line.repeat(lines))
            .send()
    };
    let small = Reply::from(import(10).await.unwrap()).await;
    assert_eq!(small.status, StatusCode::CREATED, "{:#}", small.body);
    let large = Reply::from(import(20).await.unwrap()).await;
    large.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(app.count("customers").await, 10);
    assert_eq!(app.count("offers").await, 0);
}

/// Enough events that a CSV export of them (about 18 MB) cannot fit in the socket buffers of a
/// client that does not read it.
async fn seed_events(app: &TestApp) {
    let options = SeedOptions {
        events: 40_000,
        customers: 20,
        partners: 2,
        days: 1,
    };
    partner_catalog::dev::seed(&app.pool, &options, chrono::Utc::now())
        .await
        .expect("seed events");
}

/// Asks for a CSV export of every event and never reads the answer; the small receive buffer
/// makes the server's writes stall soon.
async fn stalled_export(base: &str, token: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(base.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let head = format!(
        "GET /v1/audit/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/csv\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Database sessions running an export's query.
async fn export_queries(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid()
           and state = 'active' and query like '%from events%order by id desc%'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn stalled_exports_as_many_as_the_pool_never_keep_a_purchase_from_succeeding() {
    let app = spawn_app().await;
    let sale = sale(&app).await;
    seed_events(&app).await;
    let pool_size = test_config(&app.database_url).database_max_connections;
    let mut stalled = Vec::new();
    for _ in 0..pool_size {
        let auditor = issue_token(&app.pool, Role::Auditor, None).await;
        stalled.push(stalled_export(&app.address, &auditor).await);
    }
    // Until the admitted exports are streaming (and stalled).
    let started = Instant::now();
    while export_queries(&app.pool).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no export started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        sale.buy(&app.client, &app.address, "while-exports-stall"),
    )
    .await
    .expect("the purchase got no answer");
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    drop(stalled);
}

#[tokio::test]
async fn exports_beyond_the_limit_answer_503_export_busy() {
    let app = spawn_app().await;
    seed_events(&app).await;
    let base = app
        .spawn_instance_with(|c| c.export_max_concurrent = 1)
        .await;
    let _stalled = stalled_export(&base, &app.auditor).await;
    let started = Instant::now();
    while export_queries(&app.pool).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no export started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let export = |token: String| {
        app.client
            // Small, should it be served.
            .get(format!("{base}/v1/audit/events?type=offer_created"))
            .header("accept", "application/x-ndjson")
            .bearer_auth(token)
            .send()
    };
    // The same auditor, and another one: the instance's only slot is taken.
    let same = Reply::from(export(app.auditor.clone()).await.unwrap()).await;
    same.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "export_busy");
    assert_retry_after(&same);
    let other = issue_token(&app.pool, Role::Auditor, None).await;
    let other = Reply::from(export(other).await.unwrap()).await;
    other.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "export_busy");
    // Pages are not exports: they are served.
    assert_eq!(
        app.get("/v1/audit/events?limit=1").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_export_the_client_stops_reading_is_cut_after_the_send_timeout() {
    let app = spawn_app().await;
    seed_events(&app).await;
    let base = app.spawn_instance_with(|c| c.send_timeout_secs = 1).await;
    let _stalled = stalled_export(&base, &app.auditor).await;
    let started = Instant::now();
    while export_queries(&app.pool).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no export started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client still holds its end; the service must give the database connection back.
    let started = Instant::now();
    while export_queries(&app.pool).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a stalled export still holds its database connection"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And its slot, which the export's task gives back as it ends, just after the connection:
    // the same auditor can export again.
    let started = Instant::now();
    loop {
        let reply = app
            .client
            .get(format!("{base}/v1/audit/events?type=offer_created"))
            .header("accept", "application/x-ndjson")
            .bearer_auth(&app.auditor)
            .send()
            .await
            .unwrap();
        if reply.status() == StatusCode::SERVICE_UNAVAILABLE
            && started.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(reply.status(), StatusCode::OK);
        break;
    }
}

/// Holds `lock table customers in share mode`, so an import's inserts wait for it.
async fn lock_customers_table(pool: &PgPool) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("lock table customers in share mode")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

fn import_body(lines: usize) -> String {
    (0..lines)
        .map(|n| format!("{{\"name\":\"Imported {n}\"}}\n"))
        .collect()
}

async fn import(app: &TestApp, base: &str, body: String) -> Reply {
    let response = app
        .client
        .post(format!("{base}/v1/customers:import"))
        .bearer_auth(&app.back_office)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

#[tokio::test]
async fn an_import_longer_than_the_request_and_statement_timeouts_still_finishes() {
    let app = spawn_app().await;
    let base = app
        .spawn_instance_with(|c| {
            c.request_timeout_secs = 1;
            c.statement_timeout_ms = 300;
        })
        .await;
    let lock = lock_customers_table(&app.pool).await;
    let importing = {
        let body = import_body(100);
        let (app_client, token, url) = (
            app.client.clone(),
            app.back_office.clone(),
            format!("{base}/v1/customers:import"),
        );
        tokio::spawn(async move {
            let response = app_client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            Reply::from(response).await
        })
    };
    // Longer than both timeouts; the import waits for the lock all along.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    lock.rollback().await.unwrap();
    let reply = importing.await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    assert_eq!(reply.body["imported"], 100);
    assert_eq!(app.count("customers").await, 100);
}

#[tokio::test]
async fn an_import_past_its_own_budget_answers_503_import_timeout_and_writes_nothing() {
    let app = spawn_app().await;
    let base = app.spawn_instance_with(|c| c.import_timeout_secs = 1).await;
    let lock = lock_customers_table(&app.pool).await;
    let reply = import(&app, &base, import_body(100)).await;
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "import_timeout");
    assert_eq!(reply.body["imported"], 0, "{:#}", reply.body);
    assert_eq!(reply.body["lines_read"], 100, "{:#}", reply.body);
    assert_eq!(reply.body["lines_valid"], 100, "{:#}", reply.body);
    lock.rollback().await.unwrap();
    // The abandoned insert was waiting for the lock; once it is free, nothing may commit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(
        app.count("events where event_type = 'customer_created'")
            .await,
        0
    );
}
