//! Policy versions (issue 14): publishing, deciding under the version in force, as-of answers,
//! the database's own checks, and an exact switch-over under racing writers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, evidence_for, spawn_app};

/// The worked example of the README: January 2024, education and nonprofit together.
const V2_EDUCATION_NONPROFIT: &str =
    include_str!("../../policies/2024-01-education-nonprofit.json");

fn v2() -> Value {
    serde_json::from_str(V2_EDUCATION_NONPROFIT).unwrap()
}

/// Publishes `document` from `effective_from` (now if `None`).
async fn publish(app: &TestApp, document: Value, effective_from: Option<DateTime<Utc>>) -> Value {
    let mut body = json!({ "document": document, "reason": "the program changed" });
    if let Some(at) = effective_from {
        body["effective_from"] = json!(at);
    }
    let reply = app.post("/v1/policies", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    reply.body
}

async fn create_customer_reply(app: &TestApp, quals: &[&str]) -> crate::helpers::Reply {
    app.post(
        "/v1/customers",
        json!({ "name": "Both", "special_qualifications": quals, "evidence": evidence_for(quals) }),
    )
    .await
}

#[tokio::test]
async fn version_1_is_the_rule_book_in_force_since_always() {
    let app = spawn_app().await;
    let list = app.get("/v1/policies").await;
    assert_eq!(list.status, StatusCode::OK, "{:#}", list.body);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["version"], 1);
    assert_eq!(items[0]["effective_from"], Value::Null);
    let file: Value =
        serde_json::from_str(include_str!("../../policies/v1-rule-book.json")).unwrap();
    assert_eq!(
        items[0]["document"]["qualification_sets"],
        file["qualification_sets"]
    );
    app.get("/v1/policies/2")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "policy_version_not_found");
}

#[tokio::test]
async fn the_2024_version_lets_a_customer_be_education_and_nonprofit_and_buy_both() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let education = app.create_offer("education", "license_based").await;
    let nonprofit = app.create_offer("nonprofit", "license_based").await;

    create_customer_reply(&app, &["education", "nonprofit"])
        .await
        .assert_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_qualification_set",
        );
    let published = publish(&app, v2(), None).await;
    assert_eq!(published["version"], 2);

    let reply = create_customer_reply(&app, &["education", "nonprofit"]).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    let customer = reply.id();
    app.link(customer, partner).await;
    for (offer, key) in [(education, "e"), (nonprofit, "n")] {
        let bought = app.purchase(customer, partner, offer, key).await;
        assert_eq!(bought.status, StatusCode::CREATED, "{:#}", bought.body);
        assert_eq!(bought.body["policy_version"], 2);
    }
    let decision = app
        .post(
            "/v1/purchase-decisions",
            json!({ "customer_id": customer, "partner_id": partner, "offer_id": education }),
        )
        .await;
    assert_eq!(decision.body["allowed"], true, "{:#}", decision.body);
    assert_eq!(decision.body["policy_version"], 2);

    // Publishing is audited on the policy chain, and decisions can be found by version.
    let (chain, payload): (Uuid, Value) = sqlx::query_as(
        "select chain_id, payload from events where event_type = 'policy_published'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(chain, Uuid::from_u128(1));
    assert_eq!(payload["policy_version"], 2);
    let app_ref = &app;
    let named = |version: &str| {
        let path = format!("/v1/audit/events?policy_version={version}");
        async move {
            let found = app_ref.get(&path).await;
            assert_eq!(found.status, StatusCode::OK, "{:#}", found.body);
            found.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    let under_2 = named("2").await;
    let count = |types: &[String], t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!(count(&under_2, "subscription_created"), 2, "{under_2:?}");
    assert_eq!(count(&under_2, "policy_published"), 1, "{under_2:?}");
    assert!(
        !under_2.contains(&"customer_partner_linked".to_owned()),
        "{under_2:?}"
    );
    let under_1 = named("1").await;
    assert_eq!(count(&under_1, "subscription_created"), 0, "{under_1:?}");
    app.get("/v1/audit/events?policy_version=0")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
}

#[tokio::test]
async fn a_version_is_in_force_from_its_instant_and_as_of_answers_use_the_one_then() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    app.create_offer("education", "license_based").await;
    let customer = app.create_customer(&["education"]).await;
    app.link(customer, partner).await;

    let before: DateTime<Utc> = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let switch = before + chrono::Duration::milliseconds(1500);
    publish(&app, v2(), Some(switch)).await;

    // Not yet in force: the set of version 2 is refused, decisions say version 1.
    app.set_qualifications(customer, &["education", "nonprofit"])
        .await
        .assert_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_qualification_set",
        );
    let path = format!("/v1/customers/{customer}/eligible-offers?partner_id={partner}");
    assert_eq!(app.get(&path).await.body["policy_version"], 1);

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let changed = app
        .set_qualifications(customer, &["education", "nonprofit"])
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:#}", changed.body);
    assert_eq!(app.get(&path).await.body["policy_version"], 2);
    let as_of = |at: DateTime<Utc>| {
        format!(
            "{path}&as_of={}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .replace('+', "%2B")
        )
    };
    let then = app.get(&as_of(before)).await;
    assert_eq!(then.status, StatusCode::OK, "{:#}", then.body);
    assert_eq!(then.body["policy_version"], 1);
    assert_eq!(
        app.get(&as_of(switch)).await.body["policy_version"],
        2,
        "the version is in force from its instant on"
    );
}

#[tokio::test]
async fn publishing_refuses_what_cannot_be_published_and_writes_nothing() {
    let app = spawn_app().await;
    let mut wrong_number = v2();
    wrong_number["version"] = json!(3);
    let reply = app
        .post(
            "/v1/policies",
            json!({ "document": wrong_number, "reason": "r" }),
        )
        .await;
    reply.assert_problem(StatusCode::CONFLICT, "policy_version_not_next");
    assert_eq!(reply.body["next"], 2);

    let reply = app
        .post(
            "/v1/policies",
            json!({ "document": v2(), "reason": "r", "effective_from": "2020-01-01T00:00:00Z" }),
        )
        .await;
    reply.assert_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_effective_too_early",
    );

    let mut invalid = v2();
    invalid["gcc_lockout_forbids"] = json!(["gcc"]);
    invalid["qualification_sets"][0]["may_buy"] = json!([]);
    let reply = app
        .post(
            "/v1/policies",
            json!({ "document": invalid.clone(), "reason": "r" }),
        )
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    assert_eq!(
        reply.body["problems"].as_array().unwrap().len(),
        2,
        "{:#}",
        reply.body
    );
    app.post("/v1/policy-checks", invalid)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    let checked = app.post("/v1/policy-checks", v2()).await;
    assert_eq!(checked.status, StatusCode::OK, "{:#}", checked.body);
    assert_eq!(checked.body["valid"], true);

    // Back office may read the rules, not publish them.
    let reply = app
        .client
        .post(format!("{}/v1/policies", app.address))
        .bearer_auth(&app.back_office)
        .json(&json!({ "document": v2(), "reason": "r" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("policy_versions").await, 1);
}

/// Rust's rules and the database's copy of them (the triggers' columns) agree on every set and
/// every offer kind, for both versions of the repository.
#[tokio::test]
async fn the_database_reads_each_version_as_the_service_does() {
    use partner_catalog::domain::{
        CustomerQualification, OfferTerms, Policy, PolicyDocument, SpecialQualification,
    };
    let app = spawn_app().await;
    publish(&app, v2(), None).await;
    for (version, text) in [
        (1, include_str!("../../policies/v1-rule-book.json")),
        (2, V2_EDUCATION_NONPROFIT),
    ] {
        let policy =
            Policy::try_from(serde_json::from_str::<PolicyDocument>(text).unwrap()).unwrap();
        for bits in 0u8..16 {
            let set: CustomerQualification = SpecialQualification::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, q)| *q)
                .collect();
            let texts: Vec<&str> = set.qualifications().iter().map(|q| q.as_str()).collect();
            let accepted: bool = sqlx::query_scalar("select policy_accepts_set($1, $2)")
                .bind(version)
                .bind(&texts)
                .fetch_one(&app.pool)
                .await
                .unwrap();
            assert_eq!(
                accepted,
                policy.accepts(set),
                "version {version}, {texts:?}"
            );
        }
        let (sellable, lockout): (Vec<String>, Vec<String>) = sqlx::query_as(
            "select sellable, gcc_lockout_forbids from policy_versions where version = $1",
        )
        .bind(version)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        for terms in OfferTerms::all() {
            let key = format!("{}:{}", terms.segment.as_str(), terms.product_kind.as_str());
            assert_eq!(
                !terms.segment.is_special() || sellable.contains(&key),
                policy.is_sellable(terms),
                "version {version}, {key}"
            );
        }
        let forbids: Vec<&str> = policy
            .gcc_lockout_segments()
            .iter()
            .map(|s| s.as_str())
            .collect();
        let mut stored: Vec<&str> = lockout.iter().map(String::as_str).collect();
        stored.sort_unstable();
        assert_eq!(stored, forbids, "version {version}");
    }
}

#[tokio::test]
async fn the_database_refuses_a_subscription_decided_under_a_version_not_in_force() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    let offer = app.create_offer("commercial", "license_based").await;
    publish(&app, v2(), None).await;
    let insert = "insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity, policy_version)
                  values ($1, $2, $3, $4, 'commercial', 1, $5)";
    let err = sqlx::query(insert)
        .bind(Uuid::now_v7())
        .bind(customer)
        .bind(partner)
        .bind(offer)
        .bind(1)
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("when version 2 was in force"),
        "{err}"
    );
    // A writer that names no version gets the one in force.
    sqlx::query(
        insert
            .replace(", policy_version)", ")")
            .replace(", $5)", ")")
            .as_str(),
    )
    .bind(Uuid::now_v7())
    .bind(customer)
    .bind(partner)
    .bind(offer)
    .execute(&app.pool)
    .await
    .unwrap();
    let version: i32 = sqlx::query_scalar("select policy_version from subscriptions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(version, 2);
}

#[tokio::test]
async fn the_database_refuses_a_special_subscription_whose_offer_the_version_in_force_does_not_sell()
 {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&["education"]).await;
    // Version 2 also sells education as perpetual software; version 3 no longer does.
    let mut v2 = v2();
    v2["special_segments"][0]["product_kinds"] = json!(["license_based", "perpetual_software"]);
    publish(&app, v2.clone(), None).await;
    let perpetual = app.create_offer("education", "perpetual_software").await;
    let licensed = app.create_offer("education", "license_based").await;
    let mut v3 = v2;
    v3["version"] = json!(3);
    v3["special_segments"][0]["product_kinds"] = json!(["license_based"]);
    publish(&app, v3, None).await;

    let insert =
        "insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity)
                  values ($1, $2, $3, $4, 'education', 1)";
    let raw = |offer: Uuid| {
        sqlx::query(insert)
            .bind(Uuid::now_v7())
            .bind(customer)
            .bind(partner)
            .bind(offer)
    };
    let err = raw(perpetual).execute(&app.pool).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("subscriptions_product_kind_sellable"),
        "{err}"
    );
    raw(licensed).execute(&app.pool).await.unwrap();
}

/// Purchases race two switch-overs on two instances: one scheduled ahead, one effective at once
/// (its publication waits for the decisions in flight). Every decision is made under the version in
/// force at the instant it records, however the requests interleave with the publications.
#[tokio::test]
async fn decisions_racing_a_switch_over_follow_the_version_in_force_at_their_instant() {
    let app = spawn_app().await;
    let second = app.spawn_instance().await;
    // A direct-bill partner without the nonprofit reseller qualification: versions 1 and 3 deny it
    // nonprofit offers (R2); version 2 lets any partner sell them.
    let partner = app
        .create_partner("direct_bill_partner", &["education"])
        .await;
    let offer = app.create_offer("nonprofit", "license_based").await;
    let mut customers = Vec::new();
    for _ in 0..8 {
        let customer = app.create_customer(&["nonprofit"]).await;
        app.link(customer, partner).await;
        customers.push(customer);
    }
    let mut open = v2();
    open["special_segments"][1]["reseller_qualification_required"] = json!(false);
    let mut closed = v2();
    closed["version"] = json!(3);

    let token = app.sales_token(partner).await;
    let buyers: Vec<_> = customers
        .iter()
        .enumerate()
        .map(|(i, &customer)| {
            let client = app.client.clone();
            let base = if i % 2 == 0 {
                app.address.clone()
            } else {
                second.clone()
            };
            let token = token.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0..120 {
                    let reply = crate::helpers::purchase_at(
                        &client,
                        &base,
                        &token,
                        customer,
                        partner,
                        offer,
                        &format!("race-{n}"),
                    )
                    .await;
                    outcomes.push(reply.status);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now: DateTime<Utc> = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    publish(&app, open, Some(now + chrono::Duration::milliseconds(1000))).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    publish(&app, closed, None).await;
    let mut statuses = Vec::new();
    for buyer in buyers {
        statuses.extend(buyer.await.unwrap());
    }
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::UNPROCESSABLE_ENTITY),
        "{statuses:?}"
    );

    // Each decision against the version in force at the instant it recorded.
    let decisions: Vec<(String, i32, i32)> = sqlx::query_as(
        "select event_type, (payload ->> 'policy_version')::integer,
                policy_version_at((payload ->> 'decided_at')::timestamptz)
         from events where event_type in ('subscription_created', 'purchase_denied')
         order by (payload ->> 'decided_at')::timestamptz",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let versions: Vec<i32> = decisions.iter().map(|d| d.1).collect();
    for version in 1..=3 {
        assert!(
            versions.contains(&version),
            "the race did not straddle both switch-overs: {versions:?}"
        );
    }
    for (kind, recorded, in_force) in &decisions {
        assert_eq!(recorded, in_force, "{kind}: {versions:?}");
        assert_eq!(
            kind == "subscription_created",
            *recorded == 2,
            "{kind} under {recorded}"
        );
    }
    let stray: i64 = sqlx::query_scalar(
        "select count(*) from subscriptions where policy_version <> policy_version_at(created_at)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stray, 0);
}
