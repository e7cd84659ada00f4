//! Time limits and the connection pool: a request that cannot finish in time answers 503 with
//! `Retry-After` and changes nothing; it never hangs.

use std::time::{Duration, Instant};

use partner_catalog::startup::Application;
use reqwest::StatusCode;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::helpers::{Reply, TestApp, purchase_at, spawn_app, test_config};

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
