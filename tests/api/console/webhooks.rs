//! Webhooks in the console: operators and global admins register endpoints (the secret shown
//! once), disable, enable, rotate, test, and send notices again; nobody else sees them.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use partner_catalog::domain::{PartnerId, Role};
use reqwest::StatusCode;
use uuid::Uuid;

use super::{Console, Page, signed_in};
use crate::helpers::{TestApp, spawn_app};

/// A receiver on 127.0.0.1 answering 200 with a short body; the `webhook-id`s it got, in order.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route(
                "/hook",
                post(|State(r): State<Receiver>, headers: HeaderMap| async move {
                    let id = headers["webhook-id"].to_str().unwrap().to_owned();
                    r.got.lock().unwrap().push(id);
                    "thanks from the receiver"
                }),
            )
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

/// A URL on 127.0.0.1 where nothing listens.
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// The secret a page shows in `<code id="secret">`.
fn secret_of(page: &Page) -> String {
    let start = page
        .html
        .find("<code id=\"secret\">")
        .unwrap_or_else(|| panic!("no secret on the page:\n{}", page.html))
        + "<code id=\"secret\">".len();
    let rest = &page.html[start..];
    rest[..rest.find('<').unwrap()].to_owned()
}

/// The id of the endpoint whose page the secret page links to.
fn endpoint_of(page: &Page) -> Uuid {
    let start = page.html.find("href=\"/webhooks/").unwrap() + "href=\"/webhooks/".len();
    let rest = &page.html[start..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

/// Registers an endpoint through the form; its id and secret.
async fn register(console: &Console, fields: &[(&str, &str)]) -> (Uuid, String) {
    let page = console.post("/webhooks", fields).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    (endpoint_of(&page), secret_of(&page))
}

async fn stored_secret(app: &TestApp, endpoint: Uuid) -> String {
    sqlx::query_scalar("select secret from webhook_endpoints where id = $1")
        .bind(endpoint)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The state and attempts of the endpoint's delivery of `event`.
async fn delivery(app: &TestApp, endpoint: Uuid, event: Uuid) -> Option<(String, i32)> {
    sqlx::query_as(
        "select state, attempts from webhook_deliveries where endpoint_id = $1 and event_id = $2",
    )
    .bind(endpoint)
    .bind(event)
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

/// Waits until the endpoint's delivery of `event` is delivered after `attempts` attempts.
async fn delivered(app: &TestApp, endpoint: Uuid, event: Uuid, attempts: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = delivery(app, endpoint, event).await;
        if now == Some(("delivered".into(), attempts)) {
            return;
        }
        assert!(Instant::now() < deadline, "{event}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The latest `customer_partner_linked` event of `customer`.
async fn link_event(app: &TestApp, customer: Uuid) -> Uuid {
    sqlx::query_scalar(
        "select id from events where customer_id = $1 and event_type = 'customer_partner_linked'
         order by occurred_at desc limit 1",
    )
    .bind(customer)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn operators_and_global_admins_register_endpoints_and_see_the_secret_only_once() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let url = closed_url().await;

    let operator = signed_in(&app, Role::Operator, None).await;
    operator
        .get("/")
        .await
        .assert_contains("href=\"/webhooks\"");
    let form = operator.get("/webhooks/new").await;
    assert_eq!(form.status, StatusCode::OK);
    form.assert_contains("value=\"customer.linked\"")
        .assert_contains("value=\"offer.created\"")
        .assert_contains("id=\"partner\"");
    let created = operator
        .post(
            "/webhooks",
            &[
                ("url", &url),
                ("event_type", "customer.linked"),
                ("event_type", "subscription.created"),
                ("description", "Order system"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    created
        .assert_contains("Endpoint registered")
        .assert_contains("Copy it now")
        .assert_contains("it is not shown again")
        .assert_contains("standardwebhooks");
    let (platform, secret) = (endpoint_of(&created), secret_of(&created));
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        format!("whsec_{}", stored_secret(&app, platform).await),
        secret
    );
    let (partner, types): (Option<Uuid>, Vec<String>) =
        sqlx::query_as("select partner_id, event_types from webhook_endpoints where id = $1")
            .bind(platform)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(partner, None);
    assert_eq!(types, ["customer.linked", "subscription.created"]);
    // Listed and shown from now on, never with the secret.
    let list = operator.get("/webhooks").await;
    list.assert_contains(&format!("href=\"/webhooks/{platform}\""))
        .assert_contains(&url)
        .assert_contains("Order system")
        .assert_contains("customer.linked, subscription.created")
        .assert_contains("enabled");
    let shown = operator.get(&format!("/webhooks/{platform}")).await;
    assert_eq!(shown.status, StatusCode::OK);
    shown.assert_contains(&url);
    for page in [&list, &shown] {
        assert!(!page.html.contains(&secret), "the secret was shown again");
    }

    // An operator may register one for a partner; it is listed under that partner.
    let (for_b, _) = register(&operator, &[("url", &url), ("partner", &b.to_string())]).await;
    let owner: Option<Uuid> =
        sqlx::query_scalar("select partner_id from webhook_endpoints where id = $1")
            .bind(for_b)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(owner, Some(b));
    assert!(
        !operator
            .get("/webhooks")
            .await
            .html
            .contains(&for_b.to_string())
    );
    operator
        .get(&format!("/webhooks?partner={b}"))
        .await
        .assert_contains(&format!("href=\"/webhooks/{for_b}\""));

    // A global admin registers for its own partner, whatever the form says.
    let admin = signed_in(&app, Role::GlobalAdmin, Some(PartnerId(a))).await;
    admin.get("/").await.assert_contains("href=\"/webhooks\"");
    assert!(
        !admin
            .get("/webhooks/new")
            .await
            .html
            .contains("id=\"partner\"")
    );
    let (own, own_secret) = register(&admin, &[("url", &url), ("partner", &b.to_string())]).await;
    let owner: Option<Uuid> =
        sqlx::query_scalar("select partner_id from webhook_endpoints where id = $1")
            .bind(own)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(owner, Some(a));
    assert_ne!(own_secret, secret);
    let list = admin.get("/webhooks").await;
    list.assert_contains(&format!("href=\"/webhooks/{own}\""));
    assert!(!list.html.contains(&platform.to_string()) && !list.html.contains(&own_secret));
    // Registering is audited with the user as actor.
    let actors: Vec<String> = sqlx::query_scalar(
        "select actor from events where event_type = 'webhook_endpoint_created' order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        actors,
        [
            operator.user_id.to_string(),
            operator.user_id.to_string(),
            admin.user_id.to_string()
        ]
    );
}

#[tokio::test]
async fn a_bad_url_or_description_is_named_next_to_its_field_and_what_was_typed_is_kept() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let admin = signed_in(&app, Role::GlobalAdmin, Some(PartnerId(a))).await;
    let internal = admin
        .post(
            "/webhooks",
            &[
                ("url", "https://10.0.0.1/hook"),
                ("event_type", "customer.linked"),
                ("description", "Billing"),
            ],
        )
        .await;
    assert_eq!(
        internal.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        internal.html
    );
    internal
        .assert_contains("id=\"url-error\"")
        .assert_contains("The host resolves to 10.0.0.1, an internal address.")
        .assert_contains("value=\"https://10.0.0.1/hook\"")
        .assert_contains("value=\"Billing\"")
        .assert_contains("value=\"customer.linked\" checked");
    assert!(
        !internal
            .html
            .contains("value=\"subscription.created\" checked")
    );

    let bad = admin
        .post(
            "/webhooks",
            &[
                ("url", "not a url"),
                ("description", "tab\there"),
                ("event_type", "everything.happened"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    bad.assert_contains("id=\"description-error\"")
        .assert_contains("id=\"event_types-error\"")
        .assert_contains("value=\"not a url\"");
    let unnamed = admin.post("/webhooks", &[("url", "not a url")]).await;
    unnamed
        .assert_contains("id=\"url-error\"")
        .assert_contains("Not an absolute URL.");
    assert_eq!(app.count("webhook_endpoints").await, 0);
}

#[tokio::test]
async fn a_partners_admin_cannot_reach_another_partners_endpoint_and_sales_agents_have_no_webhooks()
{
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let admin_a = signed_in(&app, Role::GlobalAdmin, Some(PartnerId(a))).await;
    let url = closed_url().await;
    let (endpoint, _) = register(&admin_a, &[("url", &url)]).await;
    let path = format!("/webhooks/{endpoint}");

    let admin_b = signed_in(&app, Role::GlobalAdmin, Some(PartnerId(b))).await;
    let theirs = admin_b.get(&path).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    theirs.assert_contains("Not found.");
    assert!(!theirs.html.contains(&url));
    assert!(!admin_b.get("/webhooks").await.html.contains(&url));
    let listed_a = admin_b.get(&format!("/webhooks?partner={a}")).await;
    assert_eq!(listed_a.status, StatusCode::NOT_FOUND);
    for action in ["disable", "rotate-secret", "test"] {
        let refused = admin_b.post(&format!("{path}/{action}"), &[]).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{action}");
    }
    let refused = admin_b
        .post(
            &format!("{path}/redeliver"),
            &[("since", "2026-01-01T00:00")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);

    let sales = signed_in(&app, Role::SalesAgent, Some(PartnerId(a))).await;
    assert!(!sales.get("/").await.html.contains("href=\"/webhooks\""));
    for page in ["/webhooks", "/webhooks/new", path.as_str()] {
        let refused = sales.get(page).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{page}");
        refused.assert_contains("may not do this");
    }
    let refused = sales.post(&format!("{path}/disable"), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let back_office = signed_in(&app, Role::BackOffice, None).await;
    assert_eq!(
        back_office.post("/webhooks", &[("url", &url)]).await.status,
        StatusCode::FORBIDDEN
    );
    let disabled: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select disabled_at from webhook_endpoints where id = $1")
            .bind(endpoint)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(disabled.is_none(), "nothing was changed");
    assert_eq!(app.count("webhook_endpoints").await, 1);
}

#[tokio::test]
async fn disabling_enabling_and_rotating_are_reflected_on_the_endpoint_page() {
    let app = spawn_app().await;
    let operator = signed_in(&app, Role::Operator, None).await;
    let (endpoint, first) = register(&operator, &[("url", &closed_url().await)]).await;
    let path = format!("/webhooks/{endpoint}");
    operator
        .get(&path)
        .await
        .assert_contains("action=\"/webhooks/")
        .assert_contains("id=\"disable\"");

    // Without the form token nothing changes.
    let forged = operator.post_raw(&format!("{path}/disable"), &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let disabled = operator.post(&format!("{path}/disable"), &[]).await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER);
    assert_eq!(
        disabled.location.as_deref(),
        Some(format!("{path}?done=disabled").as_str())
    );
    let page = operator.get(&format!("{path}?done=disabled")).await;
    page.assert_contains("The endpoint is disabled")
        .assert_contains("disabled</span> since ")
        .assert_contains("disabled by its owner")
        .assert_contains("id=\"enable\"");
    assert!(!page.html.contains("id=\"disable\""));
    operator
        .get("/webhooks")
        .await
        .assert_contains("disabled</span>")
        .assert_contains("disabled by its owner");

    let enabled = operator.post(&format!("{path}/enable"), &[]).await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER);
    let page = operator.get(&path).await;
    page.assert_contains("enabled</span>")
        .assert_contains("id=\"disable\"");
    assert!(!page.html.contains("disabled by its owner"));

    let rotated = operator.post(&format!("{path}/rotate-secret"), &[]).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.html);
    rotated
        .assert_contains("New signing secret")
        .assert_contains("it is not shown again")
        .assert_contains("The previous secret keeps signing for 24 more hours");
    let second = secret_of(&rotated);
    assert!(second.starts_with("whsec_") && second != first);
    assert_eq!(
        format!("whsec_{}", stored_secret(&app, endpoint).await),
        second
    );
    let page = operator.get(&path).await;
    page.assert_contains("id=\"previous-secret\"");
    assert!(!page.html.contains(&second) && !page.html.contains(&first));
    let audited: Vec<String> = sqlx::query_scalar(
        "select event_type from events where event_type like 'webhook_%' order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        audited,
        [
            "webhook_endpoint_created",
            "webhook_endpoint_disabled",
            "webhook_endpoint_enabled",
            "webhook_secret_rotated"
        ]
    );
}

#[tokio::test]
async fn a_test_notice_shows_how_the_receiver_answered_or_why_it_did_not() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let admin = signed_in(&app, Role::GlobalAdmin, Some(PartnerId(a))).await;
    let (receiver, url) = Receiver::start().await;
    let (endpoint, _) = register(&admin, &[("url", &url)]).await;
    let answered = admin.post(&format!("/webhooks/{endpoint}/test"), &[]).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.html);
    answered
        .assert_contains("id=\"test-outcome\"")
        .assert_contains("Test notice: answered")
        .assert_contains("<dt>Status</dt><dd>200</dd>")
        .assert_contains(" ms</dd>")
        .assert_contains("thanks from the receiver");
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    answered.assert_contains(&got[0]);
    assert_eq!(
        app.count("webhook_deliveries").await,
        0,
        "a test is not queued"
    );

    let (closed, _) = register(&admin, &[("url", &closed_url().await)]).await;
    let failed = admin.post(&format!("/webhooks/{closed}/test"), &[]).await;
    assert_eq!(failed.status, StatusCode::OK);
    failed
        .assert_contains("Test notice: not accepted")
        .assert_contains("<dt>Status</dt><dd>no answer</dd>")
        .assert_contains("<dt>Error</dt>");
}

#[tokio::test]
async fn one_event_or_a_time_range_is_sent_again_and_shown_with_its_attempts() {
    let app = spawn_app().await;
    let started = chrono::Utc::now() - chrono::Duration::minutes(1);
    let a = app.create_qualified_partner().await;
    let admin = signed_in(&app, Role::GlobalAdmin, Some(PartnerId(a))).await;
    let (receiver, url) = Receiver::start().await;
    let (endpoint, _) = register(&admin, &[("url", &url), ("event_type", "customer.linked")]).await;
    let path = format!("/webhooks/{endpoint}");
    let first = app.create_customer(&[]).await;
    app.link(first, a).await;
    let second = app.create_customer(&[]).await;
    app.link(second, a).await;
    let (e1, e2) = (
        link_event(&app, first).await,
        link_event(&app, second).await,
    );
    delivered(&app, endpoint, e1, 1).await;
    delivered(&app, endpoint, e2, 1).await;

    // The page: newest first, each with its attempts and a button to send it again.
    let page = admin.get(&path).await;
    let (at1, at2) = (
        page.html.find(&e1.to_string()).unwrap(),
        page.html.find(&e2.to_string()).unwrap(),
    );
    assert!(at2 < at1, "newest first");
    page.assert_contains("customer.linked")
        .assert_contains("<td class=\"delivery-state\">delivered</td>")
        .assert_contains("<span class=\"attempt-status\">200</span>")
        .assert_contains("thanks from the receiver")
        .assert_contains(&format!("name=\"event_id\" value=\"{e1}\""));

    let again = admin
        .post(
            &format!("{path}/redeliver"),
            &[("event_id", &e1.to_string())],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.html);
    again.assert_contains("1 notice queued");
    assert!(!again.html.contains("id=\"continue\""));
    delivered(&app, endpoint, e1, 2).await;
    assert_eq!(
        receiver
            .got()
            .iter()
            .filter(|id| **id == e1.to_string())
            .count(),
        2
    );

    // The range: what the form sends is a datetime-local value, read as UTC.
    let since = started.format("%Y-%m-%dT%H:%M").to_string();
    let range = admin
        .post(
            &format!("{path}/redeliver"),
            &[("since", &since), ("until", "")],
        )
        .await;
    assert_eq!(range.status, StatusCode::OK, "{}", range.html);
    range
        .assert_contains("2 notices queued")
        .assert_contains(&format!("value=\"{since}\""));
    delivered(&app, endpoint, e1, 3).await;
    delivered(&app, endpoint, e2, 2).await;
    let requested: i64 = sqlx::query_scalar(
        "select count(*) from events where event_type = 'webhook_redelivery_requested' and actor = $1",
    )
    .bind(admin.user_id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(requested, 2);

    // A range that ends before it starts, and an event that made no notice for it.
    let backwards = admin
        .post(
            &format!("{path}/redeliver"),
            &[("since", "2026-11-27T10:00"), ("until", "2026-11-27T09:00")],
        )
        .await;
    assert_eq!(backwards.status, StatusCode::UNPROCESSABLE_ENTITY);
    backwards
        .assert_contains("id=\"until-error\"")
        .assert_contains("The end must be after the start.")
        .assert_contains("value=\"2026-11-27T10:00\"")
        .assert_contains("value=\"2026-11-27T09:00\"");
    let empty = admin
        .post(&format!("{path}/redeliver"), &[("since", "")])
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    empty.assert_contains("id=\"since-error\"");
    let unknown = Uuid::now_v7();
    let missing = admin
        .post(
            &format!("{path}/redeliver"),
            &[("event_id", &unknown.to_string())],
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    missing.assert_contains(&format!(
        "Event {unknown} made no notice for this webhook endpoint."
    ));
    let rows: i64 =
        sqlx::query_scalar("select count(*) from webhook_deliveries where endpoint_id = $1")
            .bind(endpoint)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows, 2, "one delivery per event, sent again");
}
