//! Who may do what: every endpoint with every kind of caller, tokens' lifecycle, partner scoping.

use std::time::{Duration, Instant};

use partner_catalog::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use uuid::Uuid;

use crate::helpers::{TestApp, issue_token, spawn_app};

/// What a caller with a valid token should get: 2xx, 403 or 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Forbidden,
    NotFound,
}

impl Expect {
    fn matches(self, status: StatusCode) -> bool {
        match self {
            Self::Ok => status.is_success(),
            Self::Forbidden => status == StatusCode::FORBIDDEN,
            Self::NotFound => status == StatusCode::NOT_FOUND,
        }
    }
}

/// `ok`, `403` or `404` for each letter of "O B A G M S": operator, back office, auditor, and the
/// global admin, admin agent and sales agent of partner A.
fn expectations(row: &str) -> Vec<Expect> {
    row.split_whitespace()
        .map(|e| match e {
            "ok" => Expect::Ok,
            "403" => Expect::Forbidden,
            "404" => Expect::NotFound,
            other => panic!("bad expectation {other}"),
        })
        .collect()
}

/// A token stored directly, with a past expiry.
async fn expired_token(app: &TestApp) -> String {
    let secret = format!("pct_{}", "ab".repeat(32));
    let hash = sha2::Sha256::digest(secret.as_bytes()).to_vec();
    sqlx::query(
        "insert into api_tokens (id, secret_hash, role, label, created_by, created_at, expires_at)
         values ($1, $2, 'back_office', 'old', 'test', now() - interval '2 days', now() - interval '1 day')",
    )
    .bind(Uuid::now_v7())
    .bind(hash)
    .execute(&app.pool)
    .await
    .unwrap();
    secret
}

#[tokio::test]
async fn every_endpoint_answers_every_kind_of_caller_as_the_matrix_says() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let reseller = app.create_partner("indirect_reseller", &[]).await;
    let provider = app.create_partner("indirect_provider", &[]).await;
    let ca = app.create_customer(&[]).await;
    let cb = app.create_customer(&[]).await;
    let cn = app.create_customer(&[]).await;
    app.link(ca, a).await;
    app.link(cb, b).await;
    let offer = app.create_offer("commercial", "license_based").await;
    let sub = app.purchase(ca, a, offer, "fixture").await.id();
    let b_endpoint: Uuid = sqlx::query_scalar(
        "insert into webhook_endpoints (id, partner_id, url, secret, created_by)
         values (gen_random_uuid(), $1, 'http://127.0.0.1:9/hook', 'c2VjcmV0', 'test') returning id",
    )
    .bind(b)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let b_token_id = {
        let secret = issue_token(&app.pool, Role::SalesAgent, Some(b)).await;
        app.principal_id(&secret).await
    };

    let callers = [
        app.operator.clone(),
        app.back_office.clone(),
        app.auditor.clone(),
        issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await,
        issue_token(&app.pool, Role::AdminAgent, Some(a)).await,
        issue_token(&app.pool, Role::SalesAgent, Some(a)).await,
    ];
    let revoked = issue_token(&app.pool, Role::Operator, None).await;
    sqlx::query("update api_tokens set revoked_at = now() where secret_hash = $1")
        .bind(sha2::Sha256::digest(revoked.as_bytes()).to_vec())
        .execute(&app.pool)
        .await
        .unwrap();
    let strangers: [(&str, Option<String>); 4] = [
        ("no token", None),
        ("expired", Some(expired_token(&app).await)),
        ("revoked", Some(revoked)),
        ("malformed", Some("not-a-token".into())),
    ];

    let purchase =
        |partner: Uuid| json!({ "partner_id": partner, "offer_id": offer, "quantity": 1 });
    let decision =
        |customer: Uuid| json!({ "customer_id": customer, "partner_id": a, "offer_id": offer });
    let ndjson = json!({ "name": "Imported" }).to_string();
    // A partner role gets 404 for another partner's ids before any 403 (visibility before
    // permission), and no partner role may link customers (back office's decision).
    //                 method       path                                                 body            expectations O B A G M S
    let table: Vec<(Method, String, Option<Value>, &str)> = vec![
        (
            Method::GET,
            "/v1/partners".into(),
            None,
            "ok ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/partners/{a}"),
            None,
            "ok ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/partners/{b}"),
            None,
            "ok ok ok 404 404 404",
        ),
        (
            Method::GET,
            format!("/v1/partners/{a}/profile"),
            None,
            "ok ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/partners/{b}/profile/history"),
            None,
            "ok ok ok 404 404 404",
        ),
        (
            Method::POST,
            "/v1/partners".into(),
            Some(json!({ "name": "P", "kind": "direct_bill_partner" })),
            "403 ok 403 403 403 403",
        ),
        (
            Method::PUT,
            format!("/v1/partners/{b}/reseller-qualifications"),
            Some(json!({ "reseller_qualifications": [], "reason": "r" })),
            "403 ok 403 404 404 404",
        ),
        (
            Method::PUT,
            format!("/v1/partners/{reseller}/indirect-providers"),
            Some(json!({ "provider_ids": [provider], "reason": "r" })),
            "403 ok 403 404 404 404",
        ),
        (Method::GET, "/v1/offers".into(), None, "ok ok ok ok ok ok"),
        (
            Method::GET,
            format!("/v1/offers/{offer}"),
            None,
            "ok ok ok ok ok ok",
        ),
        (
            Method::POST,
            "/v1/offers".into(),
            Some(json!({ "name": "O", "segment": "commercial", "product_kind": "azure" })),
            "ok 403 403 403 403 403",
        ),
        (
            Method::GET,
            "/v1/customers".into(),
            None,
            "403 ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/customers/{ca}"),
            None,
            "403 ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/customers/{cb}"),
            None,
            "403 ok ok 404 404 404",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            Some(json!({ "name": "C" })),
            "403 ok 403 403 403 403",
        ),
        (
            Method::POST,
            "/v1/customers:import".into(),
            Some(Value::String(ndjson)),
            "403 ok 403 403 403 403",
        ),
        (
            Method::GET,
            format!("/v1/customers/{ca}/qualifications"),
            None,
            "403 ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/customers/{cb}/qualifications"),
            None,
            "403 ok ok 404 404 404",
        ),
        (
            Method::PUT,
            format!("/v1/customers/{ca}/qualifications"),
            Some(json!({ "special_qualifications": [], "reason": "r" })),
            "403 ok 403 403 403 403",
        ),
        (
            Method::GET,
            format!("/v1/customers/{ca}/qualifications/history"),
            None,
            "403 ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/customers/{cb}/qualifications/history"),
            None,
            "403 ok ok 404 404 404",
        ),
        (
            Method::GET,
            format!("/v1/customers/{ca}/partners"),
            None,
            "403 ok ok ok ok ok",
        ),
        (
            Method::PUT,
            format!("/v1/customers/{cn}/partners/{a}"),
            None,
            "403 ok 403 403 403 403",
        ),
        (
            Method::PUT,
            format!("/v1/customers/{cn}/partners/{b}"),
            None,
            "403 ok 403 404 404 404",
        ),
        (
            Method::GET,
            format!("/v1/customers/{ca}/subscriptions"),
            None,
            "403 ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/customers/{cb}/subscriptions"),
            None,
            "403 ok ok 404 404 404",
        ),
        (
            Method::POST,
            format!("/v1/customers/{ca}/subscriptions"),
            Some(purchase(a)),
            "403 403 403 ok ok ok",
        ),
        (
            Method::POST,
            format!("/v1/customers/{cb}/subscriptions"),
            Some(purchase(a)),
            "403 403 403 404 404 404",
        ),
        (
            Method::POST,
            format!("/v1/customers/{ca}/subscriptions"),
            Some(purchase(b)),
            "403 403 403 404 404 404",
        ),
        (
            Method::POST,
            "/v1/purchase-decisions".into(),
            Some(decision(ca)),
            "403 ok ok ok ok ok",
        ),
        (
            Method::POST,
            "/v1/purchase-decisions".into(),
            Some(decision(cb)),
            "403 ok ok 404 404 404",
        ),
        (
            Method::GET,
            format!("/v1/customers/{ca}/eligible-offers?partner_id={a}"),
            None,
            "403 ok ok ok ok ok",
        ),
        (
            Method::GET,
            format!("/v1/customers/{ca}/eligible-offers?partner_id={b}"),
            None,
            "403 ok ok 404 404 404",
        ),
        (
            Method::GET,
            "/v1/tokens".into(),
            None,
            "ok 403 403 ok 403 403",
        ),
        (
            Method::POST,
            "/v1/tokens".into(),
            Some(json!({ "role": "sales_agent", "partner_id": a, "label": "x" })),
            "ok 403 403 ok 403 403",
        ),
        (
            Method::POST,
            "/v1/tokens".into(),
            Some(json!({ "role": "sales_agent", "partner_id": b, "label": "x" })),
            "ok 403 403 404 404 404",
        ),
        (
            Method::POST,
            "/v1/tokens".into(),
            Some(json!({ "role": "back_office", "label": "x" })),
            "ok 403 403 403 403 403",
        ),
        (
            Method::DELETE,
            format!("/v1/tokens/{b_token_id}"),
            None,
            "ok 403 403 404 404 404",
        ),
        (
            Method::GET,
            "/v1/webhook-endpoints".into(),
            None,
            "ok 403 403 ok 403 403",
        ),
        (
            Method::POST,
            "/v1/webhook-endpoints".into(),
            Some(json!({ "url": "http://127.0.0.1:9/hook" })),
            "ok 403 403 ok 403 403",
        ),
        (
            Method::GET,
            format!("/v1/webhook-endpoints/{b_endpoint}"),
            None,
            "ok 403 403 404 404 404",
        ),
        (
            Method::GET,
            "/v1/partner-events".into(),
            None,
            "ok 403 403 ok ok ok",
        ),
        (
            Method::PUT,
            format!("/v1/customers/{ca}/subscriptions/{sub}/status"),
            Some(json!({ "status": "active", "reason": "r" })),
            "403 ok 403 403 403 403",
        ),
        (
            Method::GET,
            "/v1/principals".into(),
            None,
            "ok 403 ok ok 403 403",
        ),
        (
            Method::GET,
            "/v1/audit/events".into(),
            None,
            "403 403 ok 403 403 403",
        ),
        (
            Method::GET,
            format!("/v1/audit/verify?customer_id={ca}"),
            None,
            "403 403 ok 403 403 403",
        ),
    ];

    let mut failures = Vec::new();
    let mut key = 0;
    for (method, path, body, row) in &table {
        let mut send = |token: Option<&str>| {
            key += 1;
            let mut request = app
                .client
                .request(method.clone(), format!("{}{path}", app.address))
                .header("if-match", "*")
                .header("idempotency-key", format!("k{key}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            match body {
                Some(Value::String(ndjson)) => request
                    .header("content-type", "application/x-ndjson")
                    .body(ndjson.clone()),
                Some(json) => request.json(json),
                None => request,
            }
        };
        let expected = expectations(row);
        for (caller, expect) in callers.iter().zip(&expected) {
            let status = send(Some(caller)).send().await.unwrap().status();
            if !expect.matches(status) {
                failures.push(format!(
                    "{method} {path} as {}: {status}, expected {expect:?}",
                    role_of(&callers, caller)
                ));
            }
        }
        for (name, token) in &strangers {
            let response = send(token.as_deref()).send().await.unwrap();
            if response.status() != StatusCode::UNAUTHORIZED {
                failures.push(format!(
                    "{method} {path} with {name}: {}",
                    response.status()
                ));
            } else if name == &"no token" {
                assert_eq!(response.headers()["www-authenticate"], "Bearer");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn role_of(callers: &[String], caller: &str) -> &'static str {
    let names = [
        "operator",
        "back_office",
        "auditor",
        "global_admin",
        "admin_agent",
        "sales_agent",
    ];
    names[callers.iter().position(|c| c == caller).unwrap()]
}

#[tokio::test]
async fn health_needs_no_token_and_the_api_names_why_it_refuses() {
    let app = spawn_app().await;
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let reply = app
        .client
        .get(format!("{}/v1/offers", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.json::<Value>().await.unwrap()["code"],
        "unauthenticated"
    );
    let reply = app
        .client
        .get(format!("{}/v1/offers", app.address))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.json::<Value>().await.unwrap()["code"],
        "invalid_token"
    );
    let reply = app
        .client
        .post(format!("{}/v1/offers", app.address))
        .bearer_auth(&app.auditor)
        .json(&json!({ "name": "O", "segment": "commercial", "product_kind": "azure" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    assert_eq!(reply.json::<Value>().await.unwrap()["code"], "forbidden");
}

#[tokio::test]
async fn token_requests_that_cannot_be_granted_are_refused_and_unknown_tokens_are_not_found() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let before = app.snapshot().await;
    for body in [
        json!({ "role": "sales_agent", "label": "no partner" }),
        json!({ "role": "back_office", "partner_id": partner, "label": "platform role with a partner" }),
        json!({ "role": "auditor", "label": "past", "expires_at": "2001-01-01T00:00:00Z" }),
    ] {
        app.post("/v1/tokens", body)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_token_request");
    }
    let reply = app
        .client
        .delete(format!("{}/v1/tokens/{}", app.address, Uuid::now_v7()))
        .bearer_auth(&app.operator)
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(reply)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "token_not_found");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_only_one_authorization_header_counts() {
    let app = spawn_app().await;
    let get = |values: &[String]| {
        let mut request = app.client.get(format!("{}/v1/partners", app.address));
        for value in values {
            request = request.header("authorization", value);
        }
        request.send()
    };
    let token = &app.auditor;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let reply = get(&[format!("{scheme} {token}")]).await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{scheme}");
    }
    // Two headers, even two valid ones, are refused: which one a proxy and this service would
    // each read is a guess.
    for pair in [
        [format!("Bearer {token}"), format!("Bearer {token}")],
        [format!("Bearer {token}"), "Bearer pct_forged".into()],
    ] {
        let reply = get(&pair).await.unwrap();
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
        let body = reply.json::<Value>().await.unwrap();
        assert_eq!(body["code"], "duplicate_authorization", "{body:#}");
        assert_eq!(
            partner_catalog::http::openapi::status_of("duplicate_authorization"),
            Some(StatusCode::BAD_REQUEST)
        );
    }
    for bad in [
        format!("Basic {token}"),
        format!("Bearer{token}"),
        "Bearer ".into(),
    ] {
        let reply = get(std::slice::from_ref(&bad)).await.unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
}

#[tokio::test]
async fn a_token_is_shown_once_and_stops_working_within_five_seconds_of_revocation() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/tokens",
            json!({ "role": "auditor", "label": "Jane, external audit" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pct_") && secret.len() == 68);
    let id = created.id();

    let listed = app.get("/v1/tokens").await;
    assert!(listed.body.to_string().contains(&id.to_string()));
    assert!(
        !listed.body.to_string().contains(&secret),
        "secrets are never listed"
    );
    let stored: Vec<u8> = sqlx::query_scalar("select secret_hash from api_tokens where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        sha2::Sha256::digest(secret.as_bytes()).to_vec(),
        "only the hash is stored"
    );

    let use_it = || {
        app.client
            .get(format!("{}/v1/offers", app.address))
            .bearer_auth(&secret)
            .send()
    };
    assert_eq!(use_it().await.unwrap().status(), StatusCode::OK);

    let revoked_at = Instant::now();
    let reply = app
        .client
        .delete(format!("{}/v1/tokens/{id}", app.address))
        .bearer_auth(&app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    loop {
        if use_it().await.unwrap().status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_millis(5500),
            "revocation took effect too late"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.count("events where event_type in ('token_created', 'token_revoked')")
            .await,
        3 + 2
    );
}

#[tokio::test]
async fn the_command_line_issues_the_first_operator_token() {
    let app = spawn_app().await;
    let url: String = {
        let name: String = sqlx::query_scalar("select current_database()")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let options = app.pool.connect_options();
        format!(
            "postgres://postgres@{}:{}/{name}",
            options.get_host(),
            options.get_port()
        )
    };
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_partner-catalog"))
        .args([
            "token",
            "create",
            "--role",
            "operator",
            "--label",
            "bootstrap",
            "--expires",
            "1d",
        ])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run partner-catalog token create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret:"))
        .map(str::trim)
        .expect("the secret is printed");
    let reply = app
        .client
        .get(format!("{}/v1/tokens", app.address))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_partner_sees_only_its_own_and_the_lockout_does_not_reveal_who_sold_gcc() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let shared = app.create_customer(&["gcc"]).await;
    let only_b = app.create_customer(&[]).await;
    app.link(shared, a).await;
    app.link(shared, b).await;
    app.link(only_b, b).await;
    let gcc = app.create_offer("gcc", "license_based").await;
    let commercial = app.create_offer("commercial", "license_based").await;

    let sold_by_b = app.purchase(shared, b, gcc, "b-gcc").await;
    assert_eq!(sold_by_b.status, StatusCode::CREATED);
    app.set_qualifications(shared, &[]).await;

    let a_token = app.sales_token(a).await;
    let as_a = |path: String| {
        app.client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&a_token)
            .send()
    };
    let subscriptions: Value = as_a(format!("/v1/customers/{shared}/subscriptions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        subscriptions["items"],
        json!([]),
        "B's subscriptions are not listed to A"
    );
    let customers: Value = as_a("/v1/customers".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = customers["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, [json!(shared)]);
    let partners: Value = as_a("/v1/partners".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(partners["items"].as_array().unwrap().len(), 1);
    let links: Value = as_a(format!("/v1/customers/{shared}/partners"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(links["partner_ids"], json!([a]));
    let hidden = as_a(format!(
        "/v1/customers/{shared}/subscriptions/{}",
        sold_by_b.id()
    ))
    .await
    .unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);

    // The lockout still applies to A, and its denial names neither B nor B's subscription.
    let denied = app.purchase(shared, a, commercial, "a-commercial").await;
    assert_eq!(denied.violation_codes(), ["gcc_lockout"]);
    let text = denied.body.to_string();
    assert!(
        !text.contains(&b.to_string()) && !text.contains(&sold_by_b.id().to_string()),
        "{text}"
    );

    // The events say who acted, in which role, for which partner, through which request.
    let (actor, role, partner, request_id): (String, String, Uuid, Option<String>) = sqlx::query_as(
        "select actor, actor_role, actor_partner_id, request_id from events where event_type = 'purchase_denied'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(actor, app.principal_id(&a_token).await.to_string());
    assert_eq!((role.as_str(), partner), ("sales_agent", a));
    assert!(request_id.is_some());
}

/// A token's `last_used_at`.
async fn last_used(app: &TestApp, id: Uuid) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("select last_used_at from api_tokens where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_stamps_its_last_use_when_verified_at_most_once_a_minute() {
    let app = spawn_app().await;
    let token = issue_token(&app.pool, Role::BackOffice, None).await;
    let id = app.principal_id(&token).await;
    assert_eq!(last_used(&app, id).await, None);
    // Each call goes to a new instance, whose verification cache is empty, so each verifies
    // against the database.
    let call = |base: String| {
        let (client, token) = (app.client.clone(), token.clone());
        async move {
            let status = client
                .get(format!("{base}/v1/partners"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::OK);
        }
    };
    call(app.address.clone()).await;
    let first = last_used(&app, id).await.expect("stamped on first use");

    // Within a minute of the stamp: not written again.
    sqlx::query(
        "update api_tokens set last_used_at = last_used_at - interval '30 seconds' where id = $1",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();
    let half_a_minute_ago = last_used(&app, id).await.unwrap();
    call(app.spawn_instance().await).await;
    assert_eq!(last_used(&app, id).await, Some(half_a_minute_ago));

    // A minute or more after it: stamped anew.
    sqlx::query(
        "update api_tokens set last_used_at = last_used_at - interval '1 minute' where id = $1",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();
    call(app.spawn_instance().await).await;
    let again = last_used(&app, id).await.unwrap();
    assert!(again >= first, "{again} after {first}");

    // A revoked token is not stamped (nor accepted).
    sqlx::query("update api_tokens set revoked_at = now(), last_used_at = null where id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let refused = app
        .client
        .get(format!("{}/v1/partners", app.spawn_instance().await))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(last_used(&app, id).await, None);
}
