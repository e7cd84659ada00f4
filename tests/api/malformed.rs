use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

/// Method, path, content type, body, expected status, expected code.
type Case<'a> = (
    Method,
    String,
    Option<&'a str>,
    Vec<u8>,
    StatusCode,
    &'a str,
);

#[tokio::test]
async fn bad_input_of_any_kind_is_a_problem_and_changes_nothing() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    let partner = app.create_qualified_partner().await;
    let before = (
        app.count("events").await,
        app.count("customers").await,
        app.count("partners").await,
    );
    let json_ct = Some("application/json");
    let oversize = format!(r#"{{"name":"{}"}}"#, "x".repeat(100 * 1024)).into_bytes();

    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            b"{\"name\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            b"{\"name\": 7}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            b"[]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            b"{}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            br#"{"name":"a","special_qualifications":["royalty"]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            br#"{"name":"a","nickname":"b"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            br#"{"name":"   "}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            Some("text/plain"),
            br#"{"name":"a"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            None,
            br#"{"name":"a"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/v1/customers".into(),
            json_ct,
            oversize,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/v1/partners".into(),
            json_ct,
            br#"{"name":"a","kind":"distributor"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/offers".into(),
            json_ct,
            br#"{"name":"a","segment":"retail","product_kind":"azure"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::GET,
            "/v1/customers/not-a-uuid".into(),
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_path_parameter",
        ),
        (
            Method::GET,
            "/v1/customers?after=nope".into(),
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_query_parameter",
        ),
        (
            Method::GET,
            "/v1/customers?limit=-1".into(),
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid_query_parameter",
        ),
        (
            Method::GET,
            "/v1/nothing-here".into(),
            None,
            vec![],
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
        (
            Method::DELETE,
            format!("/v1/customers/{customer}"),
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            format!("/v1/customers/{customer}/qualifications"),
            json_ct,
            br#"{"special_qualifications":["gcc"],"reason":"r"}"#.to_vec(),
            StatusCode::PRECONDITION_REQUIRED,
            "if_match_required",
        ),
        (
            Method::PUT,
            format!("/v1/partners/{partner}/indirect-providers"),
            json_ct,
            br#"{"provider_ids":[],"reason":"r"}"#.to_vec(),
            StatusCode::PRECONDITION_REQUIRED,
            "if_match_required",
        ),
        (
            Method::POST,
            "/v1/purchase-decisions".into(),
            json_ct,
            json!({ "customer_id": customer, "partner_id": partner })
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    for (method, path, content_type, body, status, code) in cases {
        let reply = app
            .send_raw(method.clone(), &path, content_type, body)
            .await;
        assert_eq!(reply.status, status, "{method} {path}: {:#}", reply.body);
        reply.assert_problem(status, code);
        assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            reply.body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with(code))
        );
        assert!(reply.headers.contains_key("x-request-id"));
    }
    let after = (
        app.count("events").await,
        app.count("customers").await,
        app.count("partners").await,
    );
    assert_eq!(before, after, "bad input changed nothing");
}

#[tokio::test]
async fn purchase_bodies_of_the_wrong_shape_are_rejected_before_anything_is_written() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    let token = app.sales_token(app.create_qualified_partner().await).await;
    let bodies = [
        json!({ "partner_id": "nope", "offer_id": uuid::Uuid::now_v7(), "quantity": 1 }),
        json!({ "partner_id": uuid::Uuid::now_v7(), "offer_id": uuid::Uuid::now_v7(), "quantity": "1" }),
        json!({ "partner_id": uuid::Uuid::now_v7(), "offer_id": uuid::Uuid::now_v7(), "quantity": 1.5 }),
        json!({ "partner_id": uuid::Uuid::now_v7(), "offer_id": uuid::Uuid::now_v7() }),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let reply = app
            .client
            .post(format!(
                "{}/v1/customers/{customer}/subscriptions",
                app.address
            ))
            .bearer_auth(&token)
            .header("idempotency-key", format!("shape-{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            reply.json::<serde_json::Value>().await.unwrap()["code"],
            "invalid_body"
        );
    }
    assert_eq!(app.count("idempotency_keys").await, 0);
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let reply = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.headers()["x-request-id"],
        "abc-123",
        "a caller's request id is kept"
    );
}

#[tokio::test]
async fn not_ready_while_the_database_lacks_a_migration_this_build_needs() {
    let app = spawn_app().await;
    sqlx::query(
        "delete from _sqlx_migrations where version = (select max(version) from _sqlx_migrations)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    app.get("/readyz")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "migrations_pending");
}

#[tokio::test]
async fn a_failure_that_is_a_bug_answers_500_internal_error_and_reveals_nothing() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "license_based").await;
    app.purchase(customer, partner, offer, "k-1").await;
    // A stored outcome no release wrote: the service cannot tell what it answered, so it must not
    // guess, and must not show what it read.
    sqlx::query("update idempotency_keys set outcome = '{\"result\": \"SECRET-garbage\"}' where key = 'k-1'")
        .execute(&app.pool)
        .await
        .unwrap();
    let reply = app.purchase(customer, partner, offer, "k-1").await;
    reply.assert_problem(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert!(
        !reply.body.to_string().contains("SECRET"),
        "{:#}",
        reply.body
    );
    assert_eq!(reply.body["detail"], "An internal error occurred.");
}

#[tokio::test]
async fn instants_outside_the_years_0001_to_9999_are_bad_input_everywhere() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    let partner = app.create_qualified_partner().await;
    let before = app.snapshot().await;
    for at in [
        "-4714-01-01T00:00:00Z",
        "0000-12-31T23:59:59Z",
        "+10000-01-01T00:00:00Z",
        "+275760-09-13T00:00:00Z",
    ] {
        let at = at.replace('+', "%2B");
        for path in [
            format!("/v1/customers/{customer}/qualifications?as_of={at}"),
            format!("/v1/partners/{partner}/profile?as_of={at}"),
            format!("/v1/customers/{customer}/eligible-offers?partner_id={partner}&as_of={at}"),
            format!("/v1/audit/events?from={at}"),
            format!("/v1/audit/events?to={at}"),
        ] {
            let reply = app.get(&path).await;
            reply.assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
        }
    }
    let reply = app
        .post(
            "/v1/tokens",
            json!({"role": "auditor", "label": "l", "expires_at": "+275760-09-13T00:00:00Z"}),
        )
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert_eq!(app.snapshot().await, before);
    // The edges of the range are fine.
    let reply = app
        .get(&format!(
            "/v1/customers/{customer}/eligible-offers?partner_id={partner}&as_of=0001-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
}
