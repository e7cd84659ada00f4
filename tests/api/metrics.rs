//! `/metrics`: on its own listener, in Prometheus text, with what operators watch.

use reqwest::StatusCode;

use crate::helpers::{TestApp, spawn_app};

/// The metrics page, checked to be Prometheus text.
async fn scrape(app: &TestApp) -> String {
    let response = reqwest::get(format!("{}/metrics", app.metrics_address))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of the sample `name{labels}` (labels exactly as rendered, in order), if present.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_count_purchases_by_outcome_and_broken_rule_and_time_each_route() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&["education"]).await;
    app.link(customer, partner).await;
    let education = app.create_offer("education", "license_based").await;
    let gcc = app.create_offer("gcc", "license_based").await;
    // Other tests in this process record into the same recorder: compare before and after.
    let before = scrape(&app).await;

    let bought = app.purchase(customer, partner, education, "m-1").await;
    assert_eq!(bought.status, StatusCode::CREATED, "{:#}", bought.body);
    let denied = app.purchase(customer, partner, gcc, "m-2").await;
    denied.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "purchase_denied");
    let denied_codes = denied.violation_codes();
    assert!(!denied_codes.is_empty());

    let after = scrape(&app).await;
    let grew = |series: &str| {
        sample(&after, series).unwrap_or(0.0) - sample(&before, series).unwrap_or(0.0)
    };
    assert!(
        grew(r#"purchases_total{outcome="allowed"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        grew(r#"purchases_total{outcome="denied"}"#) >= 1.0,
        "{after}"
    );
    for code in &denied_codes {
        let series = format!(r#"purchase_rule_violations_total{{code="{code}"}}"#);
        assert!(grew(&series) >= 1.0, "{series} in {after}");
    }
    // The route's template, never the raw path with its ids; one series per status.
    let route = r#"route="/v1/customers/{customer_id}/subscriptions""#;
    for status in ["201", "422"] {
        let count = format!(
            r#"http_server_request_duration_seconds_count{{method="POST",{route},status="{status}"}}"#
        );
        assert!(grew(&count) >= 1.0, "{count} in {after}");
        let bucket = format!(
            r#"http_server_request_duration_seconds_bucket{{method="POST",{route},status="{status}",le="+Inf"}}"#
        );
        assert!(sample(&after, &bucket).is_some(), "{bucket} in {after}");
    }
    assert!(
        !after.contains(&customer.to_string()),
        "an id became a label"
    );
    for series in [
        r#"db_pool_connections{pool="requests",state="in_use"}"#,
        r#"db_pool_connections{pool="requests",state="idle"}"#,
        r#"db_pool_max_connections{pool="requests"}"#,
        r#"db_pool_max_connections{pool="exports"}"#,
        "audit_exports_in_flight",
        r#"http_connections_open{listener="metrics"}"#,
    ] {
        assert!(sample(&after, series).is_some(), "{series} in {after}");
    }
}

#[tokio::test]
async fn an_unknown_path_is_one_series_whatever_the_path() {
    let app = spawn_app().await;
    let reply = app
        .get(&format!("/v1/nothing/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let page = scrape(&app).await;
    assert!(page.contains(r#"route="unmatched",status="404""#), "{page}");
    assert!(!page.contains("/v1/nothing"), "{page}");
}

#[tokio::test]
async fn metrics_are_not_served_on_the_api_listener() {
    let app = spawn_app().await;
    let reply = app.get("/metrics").await;
    reply.assert_problem(StatusCode::NOT_FOUND, "route_not_found");
}
