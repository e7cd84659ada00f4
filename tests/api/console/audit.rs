//! The auditors' pages: search with every filter, readable actors, paging, one event with its
//! before and after, downloads, chain verification, and who may see them.

use partner_catalog::domain::Role;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Console, PASSWORD, signed_in};
use crate::helpers::{TestApp, purchase_at, spawn_app};

/// A customer bought for by a partner through a token labelled for people, a back-office user who
/// acted in the console, and an unrelated customer.
struct Scene {
    partner: Uuid,
    partner_name: String,
    customer: Uuid,
    other_customer: Uuid,
    subscription: Uuid,
    user: Console,
    user_name: String,
}

async fn scene(app: &TestApp) -> Scene {
    let partner = app.create_qualified_partner().await;
    let partner_name = app.get(&format!("/v1/partners/{partner}")).await.body["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = app.create_customer(&["education"]).await;
    let other_customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("education", "license_based").await;
    let issued = app
        .post(
            "/v1/tokens",
            json!({"role": "sales_agent", "partner_id": partner, "label": "Contoso ordering system"}),
        )
        .await;
    let secret = issued.body["secret"].as_str().unwrap();
    let bought = purchase_at(
        &app.client,
        &app.address,
        secret,
        customer,
        partner,
        offer,
        "o-1",
    )
    .await;
    assert_eq!(bought.status, StatusCode::CREATED);
    // A back-office user changes their password in the console: an event with the user as actor.
    let user = signed_in(app, Role::BackOffice, None).await;
    let changed = user
        .post(
            "/account/password",
            &[("current", PASSWORD), ("new", "another long passphrase")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.html);
    let username: String = sqlx::query_scalar("select username from users where id = $1")
        .bind(user.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    Scene {
        partner,
        partner_name,
        customer,
        other_customer,
        subscription: bought.id(),
        user_name: format!("{username} (test)"),
        user,
    }
}

/// How many events a results page lists.
fn rows(html: &str) -> usize {
    html.matches("<td><a href=\"/audit/events/").count()
}

/// The event ids of `filter` as the API lists them (newest first).
async fn event_ids(app: &TestApp, filter: &str) -> Vec<String> {
    let reply = app
        .get(&format!("/v1/audit/events?limit=200&{filter}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn auditors_search_with_every_filter_and_read_who_acted_in_words() {
    let app = spawn_app().await;
    let s = scene(&app).await;
    let auditor = signed_in(&app, Role::Auditor, None).await;

    let page = auditor.get("/audit").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(rows(&page.html), event_ids(&app, "").await.len());
    // Every event type can be chosen.
    for t in [
        "customer_created",
        "purchase_denied",
        "user_password_changed",
    ] {
        page.assert_contains(&format!("<option value=\"{t}\""));
    }

    // By customer: its events only, the purchase by the token's label with role and partner.
    let mine = auditor
        .get(&format!("/audit?customer_id={}", s.customer))
        .await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(
        rows(&mine.html),
        event_ids(&app, &format!("customer_id={}", s.customer))
            .await
            .len()
    );
    mine.assert_contains("subscription_created")
        .assert_contains("Contoso ordering system")
        .assert_contains("API token")
        .assert_contains("<span class=\"tag\">sales_agent</span>")
        .assert_contains(&format!(
            "<a href=\"/partners/{}\">{}</a>",
            s.partner, s.partner_name
        ))
        .assert_contains(&format!("href=\"/customers/{}\"", s.customer))
        .assert_contains(&format!("value=\"{}\"", s.customer));
    assert!(!mine.html.contains(&s.other_customer.to_string()));
    for id in event_ids(&app, &format!("customer_id={}", s.customer)).await {
        mine.assert_contains(&format!("/audit/events/{id}"));
    }

    // By actor: the console user's change, under the user's display name.
    let by_user = auditor
        .get(&format!("/audit?actor={}", s.user.user_id))
        .await;
    assert_eq!(rows(&by_user.html), 1);
    by_user
        .assert_contains("user_password_changed")
        .assert_contains(&s.user_name)
        .assert_contains("<span class=\"tag\">back_office</span>");

    // By partner, by type, and by time (date-time inputs, UTC).
    let by_partner = auditor
        .get(&format!("/audit?partner_id={}", s.partner))
        .await;
    assert_eq!(
        rows(&by_partner.html),
        event_ids(&app, &format!("partner_id={}", s.partner))
            .await
            .len()
    );
    let created = auditor.get("/audit?type=customer_created").await;
    assert_eq!(rows(&created.html), 2);
    created.assert_contains("<option value=\"customer_created\" selected>");
    let none = auditor.get("/audit?type=purchase_denied").await;
    assert_eq!(rows(&none.html), 0);
    none.assert_contains("No events match");
    let today = chrono::Utc::now();
    let window = format!(
        "/audit?from={}&to={}",
        (today - chrono::TimeDelta::hours(1)).format("%Y-%m-%dT%H:%M"),
        (today + chrono::TimeDelta::hours(1)).format("%Y-%m-%dT%H:%M")
    );
    assert_eq!(rows(&auditor.get(&window).await.html), rows(&page.html));
    let future = auditor.get("/audit?from=2999-01-01T00:00").await;
    assert_eq!(future.status, StatusCode::OK);
    assert_eq!(rows(&future.html), 0);
    future.assert_contains("value=\"2999-01-01T00:00:00\"");
    // By policy version: what was decided under it, as the API finds it.
    let under_1 = auditor.get("/audit?policy_version=1").await;
    assert_eq!(
        rows(&under_1.html),
        event_ids(&app, "policy_version=1").await.len()
    );
    assert!(rows(&under_1.html) >= 2, "{}", under_1.html);
    assert_eq!(rows(&auditor.get("/audit?policy_version=2").await.html), 0);
    // Filters combine.
    let both = auditor
        .get(&format!(
            "/audit?customer_id={}&type=subscription_created",
            s.customer
        ))
        .await;
    assert_eq!(rows(&both.html), 1);
}

#[tokio::test]
async fn bad_filter_values_are_shown_next_to_their_fields_and_nothing_is_searched() {
    let app = spawn_app().await;
    let auditor = signed_in(&app, Role::Auditor, None).await;
    let page = auditor
        .get("/audit?customer_id=42&partner_id=x&type=purchase_made&policy_version=0&from=yesterday&to=2026-13-40T00:00&actor=")
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.html
    );
    for field in [
        "customer_id",
        "partner_id",
        "type",
        "policy_version",
        "from",
        "to",
    ] {
        page.assert_contains(&format!(
            "<span class=\"field-error\" id=\"{field}-error\">"
        ));
        page.assert_contains(&format!("aria-describedby=\"{field}-error\""));
    }
    page.assert_contains("Not a customer id")
        .assert_contains("Not an event type")
        .assert_contains("Not a policy version")
        .assert_contains("value=\"42\"")
        .assert_contains("“yesterday” is not a date and time")
        .assert_contains(
            "<option value=\"purchase_made\" selected>purchase_made (unknown)</option>",
        );
    assert!(!page.html.contains("id=\"actor-error\""));
    assert_eq!(rows(&page.html), 0);

    let reversed = auditor
        .get("/audit?from=2026-02-01T00:00&to=2026-01-01T00:00")
        .await;
    assert_eq!(reversed.status, StatusCode::UNPROCESSABLE_ENTITY);
    reversed.assert_contains("Must not be before From.");
    let cursor = auditor.get("/audit?after=not-a-cursor").await;
    assert_eq!(cursor.status, StatusCode::UNPROCESSABLE_ENTITY);
    cursor.assert_contains("This page link is not one the console made");
    // Nothing crashes on text a page would not send.
    let odd = auditor.get("/audit?actor=%00&from=%FF").await;
    assert!(odd.status.is_client_error(), "{}", odd.status);
}

#[tokio::test]
async fn older_events_page_through_every_match_once() {
    let app = spawn_app().await;
    for _ in 0..57 {
        app.create_customer(&[]).await;
    }
    let auditor = signed_in(&app, Role::Auditor, None).await;
    let expected = event_ids(&app, "type=customer_created").await;
    assert_eq!(expected.len(), 57);

    let first = auditor.get("/audit?type=customer_created").await;
    assert_eq!(rows(&first.html), 50);
    let at = first
        .html
        .find("rel=\"next\"")
        .expect("an Older events link");
    let start = first.html[..at].rfind("href=\"").unwrap() + "href=\"".len();
    let href = first.html[start..at]
        .trim_end_matches("\" ")
        .replace("&#38;", "&");
    assert!(href.contains("type=customer_created"), "{href}");
    let second = auditor.get(&href).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(rows(&second.html), 7);
    assert!(!second.html.contains("rel=\"next\""));
    second.assert_contains("Back to the newest");
    let listed: Vec<&String> = expected
        .iter()
        .filter(|id| first.html.contains(id.as_str()) || second.html.contains(id.as_str()))
        .collect();
    assert_eq!(listed.len(), 57);
    // The newest 50 on the first page, the 7 oldest on the second.
    assert!(first.html.contains(&expected[49]) && !first.html.contains(&expected[50]));
    assert!(second.html.contains(&expected[56]));
}

#[tokio::test]
async fn an_event_shows_every_field_and_what_changed_before_and_after() {
    let app = spawn_app().await;
    let s = scene(&app).await;
    let r = app
        .client
        .put(format!(
            "{}/v1/customers/{}/qualifications",
            app.address, s.customer
        ))
        .bearer_auth(&app.back_office)
        .header("if-match", "*")
        .header("x-request-id", "ticket-4711")
        .json(&json!({
            "special_qualifications": ["education", "state_owned_entity"],
            "evidence": {"state_owned_entity": "SOE-ATTEST-1"},
            "reason": "ministry letter",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let events = app
        .get(&format!(
            "/v1/audit/events?customer_id={}&type=customer_qualifications_set",
            s.customer
        ))
        .await;
    let event = &events.body["items"][0];
    let auditor = signed_in(&app, Role::Auditor, None).await;

    let page = auditor
        .get(&format!("/audit/events/{}", event["id"].as_str().unwrap()))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    for field in ["id", "actor", "request_id", "chain_id", "prev_hash", "hash"] {
        page.assert_contains(event[field].as_str().unwrap());
    }
    page.assert_contains("ticket-4711")
        .assert_contains("ministry letter")
        .assert_contains("SOE-ATTEST-1")
        .assert_contains("<span class=\"tag\">education</span>")
        .assert_contains("<ins class=\"tag\">state_owned_entity</ins>")
        .assert_contains("Before and after")
        .assert_contains(&format!("<dd class=\"mono\">{}</dd>", event["chain_seq"]))
        .assert_contains(&format!("href=\"/customers/{}\"", s.customer))
        .assert_contains(&format!("name=\"customer_id\" value=\"{}\"", s.customer))
        .assert_contains("Verify this chain");
    // The stored text, exactly as hashed.
    let stored: String = sqlx::query_scalar("select payload::text from events where id = $1::uuid")
        .bind(event["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    page.assert_contains(&stored.replace('"', "&#34;"));

    // A status change: the old and the new status.
    let r = app
        .put(
            &format!(
                "/v1/customers/{}/subscriptions/{}/status",
                s.customer, s.subscription
            ),
            json!({"status": "suspended", "reason": "unpaid invoice"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let id = &event_ids(&app, "type=subscription_status_changed").await[0];
    let status = auditor.get(&format!("/audit/events/{id}")).await;
    status
        .assert_contains("<th scope=\"row\">Status</th>")
        .assert_contains("<span class=\"tag\">active</span>")
        .assert_contains("<span class=\"tag\">suspended</span>")
        .assert_contains("unpaid invoice");

    // The console user's own event, by name.
    let id = &event_ids(&app, &format!("actor={}", s.user.user_id)).await[0];
    auditor
        .get(&format!("/audit/events/{id}"))
        .await
        .assert_contains(&s.user_name);

    for missing in [Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        let page = auditor.get(&format!("/audit/events/{missing}")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn downloads_are_the_api_export_of_the_search_as_an_attachment() {
    let app = spawn_app().await;
    let s = scene(&app).await;
    let auditor = signed_in(&app, Role::Auditor, None).await;
    let mine = event_ids(&app, &format!("customer_id={}", s.customer)).await;

    let page = auditor
        .get(&format!("/audit?customer_id={}", s.customer))
        .await;
    page.assert_contains(&format!(
        "href=\"/audit/export?customer_id={}&#38;format=csv\"",
        s.customer
    ));

    let csv = auditor
        .request(
            reqwest::Method::GET,
            &format!("/audit/export?customer_id={}&format=csv", s.customer),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(
        csv.headers()[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    let disposition = csv.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"audit-events-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let body = csv.text().await.unwrap();
    let mut lines = body.lines();
    assert!(lines.next().unwrap().starts_with("id,occurred_at,actor,"));
    let ids: Vec<&str> = lines.map(|l| &l[..36]).collect();
    assert_eq!(ids, mine);
    assert!(body.contains("Contoso ordering system"));

    let ndjson = auditor
        .request(
            reqwest::Method::GET,
            &format!(
                "/audit/export?format=ndjson&customer_id={}&type=subscription_created",
                s.customer
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.status(), StatusCode::OK);
    assert_eq!(
        ndjson.headers()[header::CONTENT_TYPE],
        "application/x-ndjson"
    );
    assert!(
        ndjson.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .ends_with(".ndjson\"")
    );
    let lines: Vec<Value> = ndjson
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "subscription_created");
    assert_eq!(lines[0]["actor_name"]["name"], "Contoso ordering system");

    // A bad filter or no format: the search page with the message, nothing downloaded.
    let bad = auditor.get("/audit/export?format=csv&customer_id=42").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    bad.assert_contains("id=\"customer_id-error\"");
    let no_format = auditor.get("/audit/export?format=xlsx").await;
    assert_eq!(no_format.status, StatusCode::UNPROCESSABLE_ENTITY);
    no_format.assert_contains("Choose a file format");
}

#[tokio::test]
async fn verifying_a_chain_shows_it_intact_then_its_first_broken_link_after_tampering() {
    let app = spawn_app().await;
    let s = scene(&app).await;
    let auditor = signed_in(&app, Role::Auditor, None).await;
    let customer = s.customer.to_string();

    let intact = auditor
        .post("/audit/verify", &[("customer_id", &customer)])
        .await;
    assert_eq!(intact.status, StatusCode::OK, "{}", intact.html);
    let ids = event_ids(&app, &format!("customer_id={customer}")).await;
    intact
        .assert_contains("Intact: every link holds.")
        .assert_contains(&format!("customer {customer}"))
        .assert_contains(&format!("<dt>Events recomputed</dt><dd>{}</dd>", ids.len()));
    let partner = auditor
        .post("/audit/verify", &[("partner_id", &s.partner.to_string())])
        .await;
    partner.assert_contains("Intact: every link holds.");
    let every = auditor.post("/audit/verify", &[]).await;
    every.assert_contains("Every chain is intact.");

    // The second newest event of the chain: its place is the length less one.
    let victim: Uuid = ids[1].parse().unwrap();
    let seq = ids.len() - 1;
    crate::audit::tamper(
        &app,
        r#"update events set payload = payload || '{"quantity": 1000}' where id = $1"#,
        victim,
    )
    .await;
    let broken = auditor
        .post("/audit/verify", &[("customer_id", &customer)])
        .await;
    assert_eq!(broken.status, StatusCode::OK);
    broken
        .assert_contains("Broken.")
        .assert_contains("<code>hash_mismatch</code>")
        .assert_contains(&format!("<a href=\"/audit/events/{victim}\">seq {seq}</a>"));
    let every = auditor.post("/audit/verify", &[]).await;
    every
        .assert_contains("1 broken:")
        .assert_contains(&format!("/audit/events/{victim}"));

    let both = auditor
        .post(
            "/audit/verify",
            &[("customer_id", &customer), ("partner_id", &customer)],
        )
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = auditor
        .post(
            "/audit/verify",
            &[("customer_id", &Uuid::now_v7().to_string())],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Without the form token nothing is verified.
    let forged = auditor
        .post_raw("/audit/verify", &[("customer_id", &customer)])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn only_roles_that_read_the_audit_log_get_these_pages() {
    let app = spawn_app().await;
    let s = scene(&app).await;
    let id = &event_ids(&app, "").await[0];
    for (role, partner) in [
        (Role::BackOffice, None),
        (Role::Operator, None),
        (
            Role::GlobalAdmin,
            Some(partner_catalog::domain::PartnerId(s.partner)),
        ),
        (
            Role::SalesAgent,
            Some(partner_catalog::domain::PartnerId(s.partner)),
        ),
    ] {
        let console = signed_in(&app, role, partner).await;
        for path in [
            "/audit".to_owned(),
            "/audit?customer_id=42".to_owned(),
            format!("/audit/events/{id}"),
            format!("/audit/export?format=csv&customer_id={}", s.customer),
        ] {
            let page = console.get(&path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{role} {path}");
            page.assert_contains("may not do this");
        }
        let verify = console
            .post("/audit/verify", &[("customer_id", &s.customer.to_string())])
            .await;
        assert_eq!(verify.status, StatusCode::FORBIDDEN, "{role}");
        assert!(!console.get("/").await.html.contains("href=\"/audit\""));
    }
    let auditor = signed_in(&app, Role::Auditor, None).await;
    auditor.get("/").await.assert_contains("href=\"/audit\"");
}
