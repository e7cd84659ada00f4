use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, purchase_at, spawn_app};

const SEGMENTS: [&str; 4] = ["commercial", "education", "nonprofit", "gcc"];

/// R3 as the rule book writes it: customer set → segments it may buy.
const MATRIX: [(&[&str], &[&str]); 7] = [
    (&[], &["commercial"]),
    (&["nonprofit"], &["commercial", "nonprofit"]),
    (&["education"], &["commercial", "education"]),
    (&["gcc"], &["gcc"]),
    (&["state_owned_entity"], &["commercial"]),
    (
        &["education", "state_owned_entity"],
        &["commercial", "education"],
    ),
    (&["gcc", "state_owned_entity"], &["gcc"]),
];

/// One license-based offer per segment, in `SEGMENTS` order.
async fn one_offer_per_segment(app: &TestApp) -> Vec<Uuid> {
    let mut offers = Vec::new();
    for segment in SEGMENTS {
        offers.push(app.create_offer(segment, "license_based").await);
    }
    offers
}

#[tokio::test]
async fn the_purchase_matrix_holds_over_http() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let offers = one_offer_per_segment(&app).await;
    let mut allowed = 0;
    for (set, may_buy) in MATRIX {
        // Fresh customers per segment, so no purchase is influenced by an earlier GCC one (R4).
        for (segment, offer) in SEGMENTS.iter().zip(&offers) {
            let customer = app.create_customer(set).await;
            app.link(customer, partner).await;
            let reply = app
                .purchase(customer, partner, *offer, &format!("{customer}-{segment}"))
                .await;
            if may_buy.contains(segment) {
                assert_eq!(
                    reply.status,
                    StatusCode::CREATED,
                    "{set:?} buying {segment}: {:#}",
                    reply.body
                );
                assert_eq!(reply.body["segment"], *segment);
                assert_eq!(reply.body["status"], "active");
                allowed += 1;
            } else {
                reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "purchase_denied");
                assert!(
                    reply
                        .violation_codes()
                        .contains(&"segment_not_allowed".to_owned()),
                    "{set:?} buying {segment}: {:#}",
                    reply.body
                );
            }
        }
    }
    assert_eq!(app.count("subscriptions").await, allowed);
    assert_eq!(
        app.count("events where event_type = 'subscription_created'")
            .await,
        allowed
    );
    assert_eq!(
        app.count("events where event_type = 'purchase_denied'")
            .await,
        28 - allowed
    );
}

#[tokio::test]
async fn a_gcc_subscription_locks_the_customer_out_of_other_segments_for_every_partner() {
    let app = spawn_app().await;
    let seller = app.create_qualified_partner().await;
    let other = app.create_qualified_partner().await;
    let offers = one_offer_per_segment(&app).await;
    let customer = app.create_customer(&["gcc"]).await;
    app.link(customer, seller).await;
    app.link(customer, other).await;

    assert_eq!(
        app.purchase(customer, seller, offers[3], "gcc-1")
            .await
            .status,
        StatusCode::CREATED
    );
    // Removing the gcc qualification does not lift the lockout: history decides (R4).
    assert_eq!(
        app.set_qualifications(customer, &["education"])
            .await
            .status,
        StatusCode::OK
    );

    for (i, segment) in ["commercial", "education", "nonprofit"].iter().enumerate() {
        let reply = app
            .purchase(customer, other, offers[i], &format!("after-gcc-{segment}"))
            .await;
        reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "purchase_denied");
        assert!(
            reply.violation_codes().contains(&"gcc_lockout".to_owned()),
            "{:#}",
            reply.body
        );
        assert!(
            !reply.body.to_string().contains(&seller.to_string()),
            "the denial must not reveal the seller"
        );
    }
    // Still locked out once the subscription is cancelled: "has" means any status.
    sqlx::query("update subscriptions set status = 'cancelled' where customer_id = $1")
        .bind(customer)
        .execute(&app.pool)
        .await
        .unwrap();
    let reply = app
        .purchase(customer, other, offers[1], "after-cancel")
        .await;
    assert_eq!(reply.violation_codes(), ["gcc_lockout"]);
    assert_eq!(app.count("subscriptions").await, 1);
}

#[tokio::test]
async fn every_broken_rule_is_reported_and_the_denial_is_recorded() {
    let app = spawn_app().await;
    let lonely_reseller = app.create_partner("indirect_reseller", &[]).await;
    let customer = app.create_customer(&["gcc"]).await;
    let education = app.create_offer("education", "license_based").await;

    // Asked by an auditor before any relationship exists, every rule is reported, including that one.
    let decision = app
        .post(
            "/v1/purchase-decisions",
            json!({ "customer_id": customer, "partner_id": lonely_reseller, "offer_id": education }),
        )
        .await;
    let codes: Vec<_> = decision.body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["code"].clone())
        .collect();
    assert_eq!(codes.len(), 5);
    assert_eq!(codes[0], "no_customer_relationship");
    // To the partner itself an unrelated customer does not exist.
    app.purchase(customer, lonely_reseller, education, "unrelated")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "customer_not_found");

    app.link(customer, lonely_reseller).await;
    let reply = app
        .purchase(customer, lonely_reseller, education, "deny-all")
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "purchase_denied");
    assert_eq!(
        reply.violation_codes(),
        [
            "reseller_not_qualified",
            "indirect_reseller_without_provider",
            "customer_not_qualified",
            "segment_not_allowed"
        ]
    );
    for violation in reply.body["violations"].as_array().unwrap() {
        assert!(!violation["message"].as_str().unwrap().is_empty());
    }

    let (partner_id, payload): (Uuid, serde_json::Value) =
        sqlx::query_as("select partner_id, payload from events where event_type = 'purchase_denied' and customer_id = $1")
            .bind(customer)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(partner_id, lonely_reseller);
    let codes: Vec<_> = payload["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["code"].clone())
        .collect();
    assert_eq!(codes.len(), 4);
    assert_eq!(app.count("subscriptions").await, 0);
}

#[tokio::test]
async fn an_indirect_reseller_sells_education_once_connected_to_a_provider() {
    let app = spawn_app().await;
    let reseller = app
        .create_partner("indirect_reseller", &["education"])
        .await;
    let provider = app.create_partner("indirect_provider", &[]).await;
    let customer = app.create_customer(&["education"]).await;
    app.link(customer, reseller).await;
    let offer = app.create_offer("education", "license_based").await;

    let denied = app.purchase(customer, reseller, offer, "edu-1").await;
    assert_eq!(
        denied.violation_codes(),
        ["indirect_reseller_without_provider"]
    );

    let reply = app.set_providers(reseller, &[provider]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        app.purchase(customer, reseller, offer, "edu-2")
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_original_response_and_buys_once() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "azure").await;

    let first = app.purchase(customer, partner, offer, "order-42").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let retry = app.purchase(customer, partner, offer, "order-42").await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.headers["location"], first.headers["location"]);
    assert_eq!(app.count("subscriptions").await, 1);

    // The same key with another body is refused and changes nothing.
    let other_offer = app.create_offer("commercial", "license_based").await;
    app.purchase(customer, partner, other_offer, "order-42")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    assert_eq!(app.count("subscriptions").await, 1);
    assert_eq!(app.count("idempotency_keys").await, 1);

    // Keys are scoped per customer (README, "Scaling out: Citus": a purchase stays on its
    // customer's shard), and the URL names the customer: the same key for another customer is
    // another request, bought on its own.
    let other_customer = app.create_customer(&[]).await;
    app.link(other_customer, partner).await;
    let other = app
        .purchase(other_customer, partner, offer, "order-42")
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert!(other.headers.get("idempotent-replayed").is_none());
    assert_ne!(other.headers["location"], first.headers["location"]);
    assert_eq!(app.count("subscriptions").await, 2);
    assert_eq!(app.count("idempotency_keys").await, 2);
}

#[tokio::test]
async fn a_denial_is_replayed_for_its_key_even_after_the_customer_qualifies() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("nonprofit", "license_based").await;

    let denied = app.purchase(customer, partner, offer, "np-1").await;
    denied.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "purchase_denied");
    app.set_qualifications(customer, &["nonprofit"]).await;
    let replay = app.purchase(customer, partner, offer, "np-1").await;
    assert_eq!(replay.body, denied.body);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    // A new attempt takes a new key.
    assert_eq!(
        app.purchase(customer, partner, offer, "np-2").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_subscription() {
    let app = spawn_app().await;
    let second = app.spawn_instance().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "license_based").await;

    let token = app.sales_token(partner).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (client, token) = (app.client.clone(), token.clone());
        let base = if i % 2 == 0 {
            app.address.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            purchase_at(&client, &base, &token, customer, partner, offer, "same-key").await
        }));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
        ids.insert(reply.id());
    }
    assert_eq!(ids.len(), 1, "every retry sees the one subscription");
    assert_eq!(app.count("subscriptions").await, 1);
    assert_eq!(
        app.count("events where event_type = 'subscription_created'")
            .await,
        1
    );
}

#[tokio::test]
async fn purchases_need_a_valid_idempotency_key_and_existing_parties() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "license_based").await;
    let path = format!("{}/v1/customers/{customer}/subscriptions", app.address);
    let body = json!({ "partner_id": partner, "offer_id": offer, "quantity": 1 });
    let token = app.sales_token(partner).await;

    let missing = app
        .client
        .post(&path)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json::<serde_json::Value>().await.unwrap()["code"],
        "missing_idempotency_key"
    );
    for bad in ["", &"k".repeat(256), "with space"] {
        let reply = app
            .client
            .post(&path)
            .bearer_auth(&token)
            .header("idempotency-key", bad)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.json::<serde_json::Value>().await.unwrap()["code"],
            "invalid_idempotency_key",
            "{bad:?}"
        );
    }

    let unknown = Uuid::now_v7();
    app.purchase(unknown, partner, offer, "u1")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "customer_not_found");
    // Acting for another (here: no) partner than the token's is answered as if it did not exist.
    purchase_at(
        &app.client,
        &app.address,
        &token,
        customer,
        unknown,
        offer,
        "u2",
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "partner_not_found");
    app.purchase(customer, partner, unknown, "u3")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "offer_not_found");
    for quantity in [0, -3, 1_000_001] {
        let reply = app
            .client
            .post(&path)
            .bearer_auth(&token)
            .header("idempotency-key", format!("q{quantity}"))
            .json(&json!({ "partner_id": partner, "offer_id": offer, "quantity": quantity }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.json::<serde_json::Value>().await.unwrap()["code"],
            "invalid_field"
        );
    }
    assert_eq!(app.count("subscriptions").await, 0);
    assert_eq!(app.count("idempotency_keys").await, 0);
    assert_eq!(
        app.count("events where event_type in ('subscription_created', 'purchase_denied')")
            .await,
        0
    );
}

#[tokio::test]
async fn a_decision_request_answers_like_a_purchase_and_writes_nothing() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let offers = one_offer_per_segment(&app).await;
    let customer = app.create_customer(&["nonprofit"]).await;
    app.link(customer, partner).await;
    let events_before = app.count("events").await;

    for (segment, offer) in SEGMENTS.iter().zip(&offers) {
        let decision = app
            .post(
                "/v1/purchase-decisions",
                json!({ "customer_id": customer, "partner_id": partner, "offer_id": offer }),
            )
            .await;
        assert_eq!(decision.status, StatusCode::OK, "{:#}", decision.body);
        let expected = matches!(*segment, "commercial" | "nonprofit");
        assert_eq!(decision.body["allowed"], expected, "{segment}");
        assert_eq!(
            decision.body["violations"].as_array().unwrap().is_empty(),
            expected
        );
    }
    assert_eq!(app.count("events").await, events_before);
    assert_eq!(app.count("subscriptions").await, 0);

    // The same answer as the purchase itself, codes included.
    let dry = app
        .post("/v1/purchase-decisions", json!({ "customer_id": customer, "partner_id": partner, "offer_id": offers[3], "quantity": 2 }))
        .await;
    let real = app.purchase(customer, partner, offers[3], "gcc-try").await;
    assert_eq!(dry.body["violations"], real.body["violations"]);

    app.post(
        "/v1/purchase-decisions",
        json!({ "customer_id": Uuid::now_v7(), "partner_id": partner, "offer_id": offers[0] }),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "customer_not_found");
}

#[tokio::test]
async fn eligible_offers_are_exactly_the_ones_the_rules_allow() {
    let app = spawn_app().await;
    let partner = app
        .create_partner("direct_bill_partner", &["education"])
        .await;
    let mut by_segment = std::collections::BTreeMap::new();
    for segment in SEGMENTS {
        by_segment.insert(segment, app.create_offer(segment, "license_based").await);
    }
    let azure = app.create_offer("commercial", "azure").await;
    let customer = app
        .create_customer(&["education", "state_owned_entity"])
        .await;
    app.link(customer, partner).await;

    let path = format!("/v1/customers/{customer}/eligible-offers?partner_id={partner}");
    let listed: BTreeSet<String> = app.get(&path).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = [by_segment["commercial"], by_segment["education"], azure]
        .iter()
        .map(Uuid::to_string)
        .collect();
    assert_eq!(listed, expected);

    // Every listed offer can really be bought, and an unlisted one cannot.
    for (i, offer) in listed.iter().enumerate() {
        let reply = app
            .purchase(
                customer,
                partner,
                offer.parse().unwrap(),
                &format!("eligible-{i}"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    }
    let nonprofit = app
        .purchase(customer, partner, by_segment["nonprofit"], "not-eligible")
        .await;
    assert_eq!(nonprofit.status, StatusCode::UNPROCESSABLE_ENTITY);

    // An unrelated partner may sell nothing.
    let stranger = app.create_qualified_partner().await;
    let none = app
        .get(&format!(
            "/v1/customers/{customer}/eligible-offers?partner_id={stranger}"
        ))
        .await;
    assert_eq!(none.body["items"], json!([]));
    app.get(&format!("/v1/customers/{customer}/eligible-offers"))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
}

#[tokio::test]
async fn a_customers_subscriptions_are_listed_and_readable() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "license_based").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            app.purchase(customer, partner, offer, &format!("list-{i}"))
                .await
                .id(),
        );
    }
    let page = app
        .get(&format!("/v1/customers/{customer}/subscriptions?limit=2"))
        .await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    let next = page.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!(
            "/v1/customers/{customer}/subscriptions?limit=2&after={next}"
        ))
        .await;
    assert_eq!(rest.body["items"][0]["id"], ids[2].to_string());

    let one = app
        .get(&format!(
            "/v1/customers/{customer}/subscriptions/{}",
            ids[0]
        ))
        .await;
    assert_eq!(one.body["quantity"], 1);
    app.get(&format!("/v1/customers/{}/subscriptions", Uuid::now_v7()))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "customer_not_found");
}

/// Stores an idempotency key with an outcome in exactly the text a release stored, as a golden
/// sample of that format.
async fn store_golden(
    app: &TestApp,
    owner: String,
    key: &str,
    request: serde_json::Value,
    outcome: &str,
    subscription: Option<Uuid>,
) {
    let customer: Uuid = request["customer_id"].as_str().unwrap().parse().unwrap();
    sqlx::query(
        "insert into idempotency_keys (owner, key, customer_id, request, outcome, subscription_id)
         values ($1, $2, $3, $4, $5::jsonb, $6)",
    )
    .bind(owner)
    .bind(key)
    .bind(customer)
    .bind(request)
    .bind(outcome)
    .bind(subscription)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn outcomes_stored_in_format_1_are_replayed_exactly_as_they_were_answered() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "license_based").await;
    let gcc = app.create_offer("gcc", "license_based").await;
    let bought = app.purchase(customer, partner, offer, "real").await.id();
    let owner = format!("partner:{partner}");
    let request = |offer: Uuid| json!({"customer_id": customer, "partner_id": partner, "offer_id": offer, "quantity": 25});

    // Format 1 as the first releases wrote it (no `format` member), whatever today's code writes.
    let created = format!(
        r#"{{"result": "created", "subscription": {{"id": "{bought}", "customer_id": "{customer}",
            "partner_id": "{partner}", "offer_id": "{offer}", "segment": "commercial", "quantity": 25,
            "status": "active", "created_at": "2026-11-24T10:00:00.123456Z"}}}}"#
    );
    store_golden(
        &app,
        owner.clone(),
        "golden-created",
        request(offer),
        &created,
        Some(bought),
    )
    .await;
    let denied = r#"{"result": "denied", "violations": [{"code": "customer_not_qualified",
        "required": "gcc"}, {"code": "segment_not_allowed", "segment": "gcc",
        "customer_qualifications": []}]}"#;
    store_golden(&app, owner, "golden-denied", request(gcc), denied, None).await;

    let token = app.sales_token(partner).await;
    let replay = |key: &'static str, offer: Uuid| {
        let client = app.client.clone();
        let url = format!("{}/v1/customers/{customer}/subscriptions", app.address);
        let token = token.clone();
        async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&json!({"partner_id": partner, "offer_id": offer, "quantity": 25}))
                .send()
                .await
                .unwrap();
            crate::helpers::Reply::from(response).await
        }
    };
    let reply = replay("golden-created", offer).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    assert_eq!(reply.headers["idempotent-replayed"], "true");
    // As answered then, with the policy version every answer has since gained: an outcome stored
    // without one was decided under version 1, the only one there was.
    assert_eq!(
        reply.body,
        json!({"id": bought, "customer_id": customer, "partner_id": partner, "offer_id": offer,
               "segment": "commercial", "quantity": 25, "status": "active",
               "created_at": "2026-11-24T10:00:00.123456Z", "policy_version": 1})
    );
    let reply = replay("golden-denied", gcc).await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "purchase_denied");
    assert_eq!(reply.headers["idempotent-replayed"], "true");
    assert_eq!(
        reply.violation_codes(),
        ["customer_not_qualified", "segment_not_allowed"]
    );
    assert_eq!(reply.body["violations"][0]["required"], "gcc");
    assert_eq!(reply.body["policy_version"], 1);
}
