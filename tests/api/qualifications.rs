//! Back-office qualification management: evidence, optimistic concurrency, temporal history.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

fn qualifications_path(customer: Uuid) -> String {
    format!("/v1/customers/{customer}/qualifications")
}

fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[tokio::test]
async fn every_added_qualification_needs_its_evidence_and_a_bad_change_changes_nothing() {
    let app = spawn_app().await;
    let customer = app.create_customer(&["education"]).await;
    let path = qualifications_path(customer);
    // (new set, evidence, field named in the 422)
    let cases: [(&[&str], Value, &str); 6] = [
        (&["gcc"], json!({}), "evidence.gcc"),
        (&["gcc"], json!({ "gcc": "   " }), "evidence.gcc"),
        (
            &["nonprofit"],
            json!({ "nonprofit": "" }),
            "evidence.nonprofit",
        ),
        (
            &["education", "state_owned_entity"],
            json!({}),
            "evidence.state_owned_entity",
        ),
        (
            &["gcc"],
            json!({ "gcc": "G", "nonprofit": "N" }),
            "evidence.nonprofit",
        ),
        (&["gcc"], json!({ "gcc": "x".repeat(201) }), "evidence.gcc"),
    ];
    for (set, evidence, field) in cases {
        let reply = app
            .put_if_match(
                &path,
                "\"1\"",
                json!({ "special_qualifications": set, "evidence": evidence, "reason": "r" }),
            )
            .await;
        reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert_eq!(reply.body["field"], field, "{set:?}");
    }
    for reason in [json!(null), json!(""), json!("  ")] {
        let reply = app
            .put_if_match(
                &path,
                "\"1\"",
                json!({ "special_qualifications": ["education"], "reason": reason }),
            )
            .await;
        assert_eq!(reply.body["field"], "reason");
    }
    let current = app.get(&path).await;
    assert_eq!(current.body["version"], 1);
    assert_eq!(current.body["special_qualifications"], json!(["education"]));
    assert_eq!(app.count("customer_qualification_history").await, 1);
    assert_eq!(
        app.count("events where event_type = 'customer_qualifications_set'")
            .await,
        0
    );

    // Kept qualifications keep their evidence; only the added one needs new evidence.
    let reply = app
        .put_if_match(
            &path,
            "\"1\"",
            json!({
                "special_qualifications": ["education", "state_owned_entity"],
                "evidence": { "state_owned_entity": "SOE-ATTEST-9" },
                "reason": "eligibility criteria met",
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    assert_eq!(
        reply.body["evidence"],
        json!({ "education": "EV-education", "state_owned_entity": "SOE-ATTEST-9" })
    );
}

#[tokio::test]
async fn creating_a_customer_with_qualifications_needs_their_evidence() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/v1/customers",
            json!({ "name": "x", "special_qualifications": ["nonprofit"] }),
        )
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(reply.body["field"], "evidence.nonprofit");
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("nonprofit program registration id")
    );
    assert_eq!(app.count("customers").await, 0);
}

#[tokio::test]
async fn the_second_of_two_concurrent_editors_gets_412_with_the_current_state() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    let path = qualifications_path(customer);
    let read_by_alice = app.etag(&path).await;
    let read_by_bob = app.etag(&path).await;
    assert_eq!(read_by_alice, "\"1\"");

    let alice = app
        .put_if_match(
            &path,
            &read_by_alice,
            json!({ "special_qualifications": ["nonprofit"], "evidence": { "nonprofit": "NP-1" }, "reason": "registered" }),
        )
        .await;
    assert_eq!(alice.status, StatusCode::OK);
    let bob = app
        .put_if_match(
            &path,
            &read_by_bob,
            json!({ "special_qualifications": ["education"], "evidence": { "education": "QEU-1" }, "reason": "school" }),
        )
        .await;
    bob.assert_problem(StatusCode::PRECONDITION_FAILED, "version_mismatch");
    assert_eq!(bob.headers["etag"], "\"2\"");
    assert_eq!(
        bob.body["current"]["special_qualifications"],
        json!(["nonprofit"])
    );
    assert_eq!(bob.body["current"]["version"], 2);

    // Alice's change was not lost.
    let now = app.get(&path).await;
    assert_eq!(now.body["special_qualifications"], json!(["nonprofit"]));
    assert_eq!(now.headers["etag"], "\"2\"");

    app.put(
        &path,
        json!({ "special_qualifications": [], "reason": "r" }),
    )
    .await
    .assert_problem(StatusCode::PRECONDITION_REQUIRED, "if_match_required");
    app.put_if_match(
        &path,
        "version-two",
        json!({ "special_qualifications": [], "reason": "r" }),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid_if_match");
    assert_eq!(app.get(&path).await.body["version"], 2);
}

#[tokio::test]
async fn history_keeps_every_set_with_its_validity_actor_and_reason() {
    let app = spawn_app().await;
    let customer = app.create_customer(&["education"]).await;
    let t1 = Utc::now();
    assert_eq!(
        app.set_qualifications(customer, &["gcc"]).await.status,
        StatusCode::OK
    );
    let t2 = Utc::now();
    assert_eq!(
        app.set_qualifications(customer, &["gcc", "state_owned_entity"])
            .await
            .status,
        StatusCode::OK
    );

    let history = app
        .get(&format!("{}/history", qualifications_path(customer)))
        .await;
    let items = history.body["items"].as_array().unwrap();
    let sets: Vec<_> = items
        .iter()
        .map(|i| i["special_qualifications"].clone())
        .collect();
    assert_eq!(
        sets,
        [
            json!(["education"]),
            json!(["gcc"]),
            json!(["gcc", "state_owned_entity"])
        ]
    );
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["version"], i + 1);
        assert_eq!(
            item["actor"],
            app.principal_id(&app.back_office).await.to_string()
        );
        assert!(item["request_id"].is_string());
        if i + 1 < items.len() {
            assert_eq!(item["valid_to"], items[i + 1]["valid_from"]);
        }
    }
    assert!(items[2]["valid_to"].is_null());
    assert_eq!(items[0]["reason"], "customer created");
    assert_eq!(items[1]["evidence"], json!({ "gcc": "EV-gcc" }));

    let page = app
        .get(&format!(
            "{}/history?limit=2",
            qualifications_path(customer)
        ))
        .await;
    assert_eq!(page.body["next_cursor"], 2);
    let rest = app
        .get(&format!(
            "{}/history?limit=2&after=2",
            qualifications_path(customer)
        ))
        .await;
    assert_eq!(rest.body["items"][0]["version"], 3);

    let as_of =
        |t: DateTime<Utc>| format!("{}?as_of={}", qualifications_path(customer), instant(t));
    assert_eq!(
        app.get(&as_of(t1)).await.body["special_qualifications"],
        json!(["education"])
    );
    assert_eq!(
        app.get(&as_of(t2)).await.body["special_qualifications"],
        json!(["gcc"])
    );
    assert_eq!(app.get(&as_of(Utc::now())).await.body["version"], 3);
    app.get(&as_of(t1 - chrono::Duration::hours(1)))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_recorded_at");
    app.get(&format!(
        "{}?as_of=yesterday",
        qualifications_path(customer)
    ))
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
    app.get(&format!("{}/history", qualifications_path(Uuid::now_v7())))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "customer_not_found");

    // History rows are never rewritten.
    let err = sqlx::query("update customer_qualification_history set reason = 'x'")
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("it is history"), "{err}");
}

async fn eligible(
    app: &TestApp,
    customer: Uuid,
    partner: Uuid,
    at: Option<DateTime<Utc>>,
) -> BTreeSet<String> {
    let mut path = format!("/v1/customers/{customer}/eligible-offers?partner_id={partner}");
    if let Some(at) = at {
        path.push_str(&format!("&as_of={}", instant(at)));
    }
    let reply = app.get(&path).await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["segment"].as_str().unwrap().to_owned())
        .collect()
}

fn segments(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn eligible_offers_as_of_apply_the_rules_to_what_was_true_then() {
    let app = spawn_app().await;
    let before_anything = Utc::now();
    let partner = app.create_qualified_partner().await;
    let mut offers = std::collections::BTreeMap::new();
    for segment in ["commercial", "education", "nonprofit", "gcc"] {
        offers.insert(segment, app.create_offer(segment, "license_based").await);
    }
    let customer = app.create_customer(&["education"]).await;
    app.link(customer, partner).await;
    assert_eq!(
        app.purchase(customer, partner, offers["education"], "edu")
            .await
            .status,
        StatusCode::CREATED
    );
    let while_education = Utc::now();
    app.set_qualifications(customer, &["gcc"]).await;
    let gcc_before_purchase = Utc::now();
    assert_eq!(
        app.purchase(customer, partner, offers["gcc"], "gcc")
            .await
            .status,
        StatusCode::CREATED
    );
    let gcc_after_purchase = Utc::now();
    let reply = app.set_qualifications(customer, &["education"]).await;
    assert_eq!(reply.status, StatusCode::OK);

    assert_eq!(
        eligible(&app, customer, partner, Some(while_education)).await,
        segments(&["commercial", "education"])
    );
    assert_eq!(
        eligible(&app, customer, partner, Some(gcc_before_purchase)).await,
        segments(&["gcc"])
    );
    assert_eq!(
        eligible(&app, customer, partner, Some(gcc_after_purchase)).await,
        segments(&["gcc"])
    );
    // Now: education again, but the GCC history locks it out of everything (R4), and it is no
    // longer qualified for GCC.
    assert_eq!(eligible(&app, customer, partner, None).await, segments(&[]));
    // Before the customer existed, nothing could be sold to it.
    assert_eq!(
        eligible(&app, customer, partner, Some(before_anything)).await,
        segments(&[])
    );
}

#[tokio::test]
async fn removing_gcc_from_a_customer_with_gcc_history_warns_that_the_lockout_stays() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let gcc_offer = app.create_offer("gcc", "license_based").await;
    let with_history = app.create_customer(&["gcc"]).await;
    let without_history = app.create_customer(&["gcc"]).await;
    app.link(with_history, partner).await;
    assert_eq!(
        app.purchase(with_history, partner, gcc_offer, "g")
            .await
            .status,
        StatusCode::CREATED
    );

    let reply = app.set_qualifications(with_history, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    assert_eq!(reply.body["special_qualifications"], json!([]));
    assert_eq!(
        reply.body["warnings"][0]["code"],
        "gcc_lockout_still_applies"
    );

    let reply = app.set_qualifications(without_history, &[]).await;
    assert_eq!(reply.body["warnings"], json!([]));
}

fn ndjson(lines: &[Value]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn an_import_with_bad_lines_imports_nothing_and_reports_every_bad_line() {
    let app = spawn_app().await;
    let mut body = ndjson(&[
        json!({ "name": "Good School", "special_qualifications": ["education"], "evidence": { "education": "QEU-1" } }),
        json!({ "name": "No Evidence", "special_qualifications": ["gcc"] }),
        json!({ "name": "Bad Set", "special_qualifications": ["gcc", "education"], "evidence": { "gcc": "g", "education": "e" } }),
    ]);
    body.extend_from_slice(b"{\"name\": \n\n");
    body.extend_from_slice(&ndjson(&[
        json!({ "name": "  " }),
        json!({ "name": "Typo", "qualifications": [] }),
    ]));

    let reply = app
        .send_raw(
            reqwest::Method::POST,
            "/v1/customers:import",
            Some("application/x-ndjson"),
            body.clone(),
        )
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "import_rejected");
    let errors: Vec<(u64, String)> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (2, "invalid_field".to_owned()),
            (3, "invalid_qualification_set".to_owned()),
            (4, "malformed_json".to_owned()),
            (6, "invalid_field".to_owned()),
            (7, "invalid_body".to_owned()),
        ]
    );
    assert_eq!(reply.body["errors"][0]["field"], "evidence.gcc");
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("events where customer_id is not null").await, 0);

    // In partial mode the good line is imported and the bad ones reported.
    let reply = app
        .send_raw(
            reqwest::Method::POST,
            "/v1/customers:import?mode=partial",
            Some("application/x-ndjson"),
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    assert_eq!(reply.body["imported"], 1);
    assert_eq!(reply.body["rejected"], 5);
    assert_eq!(app.count("customers").await, 1);
}

#[tokio::test]
async fn a_valid_import_creates_customers_with_history_and_events() {
    let app = spawn_app().await;
    let sets: [&[&str]; 7] = [
        &[],
        &["nonprofit"],
        &["education"],
        &["gcc"],
        &["state_owned_entity"],
        &["education", "state_owned_entity"],
        &["gcc", "state_owned_entity"],
    ];
    let lines: Vec<Value> = (0..700)
        .map(|i| {
            let set = sets[i % sets.len()];
            json!({ "name": format!("Customer {i}"), "special_qualifications": set, "evidence": crate::helpers::evidence_for(set) })
        })
        .collect();
    let reply = app
        .send_raw(
            reqwest::Method::POST,
            "/v1/customers:import",
            Some("application/x-ndjson"),
            ndjson(&lines),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    assert_eq!(reply.body["imported"], 700);
    let ids = reply.body["customer_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 700);
    assert_eq!(app.count("customers").await, 700);
    assert_eq!(app.count("customer_qualification_history").await, 700);
    assert_eq!(
        app.count("events where event_type = 'customer_created'")
            .await,
        700
    );

    // Line order is kept: the 4th line was a GCC customer with its evidence.
    let fourth = app
        .get(&format!(
            "/v1/customers/{}/qualifications",
            ids[3].as_str().unwrap()
        ))
        .await;
    assert_eq!(fourth.body["special_qualifications"], json!(["gcc"]));
    assert_eq!(fourth.body["evidence"], json!({ "gcc": "EV-gcc" }));

    app.send_raw(
        reqwest::Method::POST,
        "/v1/customers:import",
        Some("application/json"),
        ndjson(&lines),
    )
    .await
    .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
}

#[tokio::test]
async fn the_use_case_itself_refuses_a_set_outside_the_policy_in_force_whoever_builds_the_change() {
    use std::collections::BTreeMap;

    use partner_catalog::{
        app::{self, Precondition, RequestContext, customers::QualificationChange},
        domain::{CustomerId, CustomerQualification, Reason, SpecialQualification::*},
    };

    let app = spawn_app().await;
    let customer = app.create_customer(&["education"]).await;
    // Built in code, not parsed from a request: only the use case's own check stands in the way.
    let change = QualificationChange {
        qualifications: CustomerQualification::of(&[Education, Gcc]),
        evidence: BTreeMap::from([(Gcc, "GCC-1".to_owned())]),
        reason: Reason::parse(Some("both")).unwrap(),
    };
    let result = app::customers::set_qualifications(
        &app.pool,
        &RequestContext::system(),
        CustomerId(customer),
        Precondition::Any,
        &change,
    )
    .await;
    match result {
        Err(app::Error::InvalidQualificationSet(e)) => assert!(
            e.to_string()
                .starts_with("{education, gcc} is not a valid qualification set"),
            "{e}"
        ),
        other => panic!("expected invalid_qualification_set, got {other:?}"),
    }
    let current = app.get(&qualifications_path(customer)).await;
    assert_eq!(current.body["version"], 1);
    assert_eq!(current.body["special_qualifications"], json!(["education"]));
}
