//! The impact preview of a policy draft (issue 14, item 3): its counts and lists checked against
//! a brute force that decides every customer, linked pair and subscription one by one, the
//! version in force through the service's own `/v1/purchase-decisions`, the draft with
//! `partner_catalog::domain::decide` on facts read row by row.

use std::collections::{BTreeMap, BTreeSet};

use partner_catalog::domain::{
    CustomerQualification, OfferTerms, PartnerKind, PartnerProfile, Policy, PolicyDocument,
    PurchaseContext, PurchaseDecision, ResellerQualification, SpecialQualification, decide,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Reply, TestApp, spawn_app};

const V2_EDUCATION_NONPROFIT: &str =
    include_str!("../../policies/2024-01-education-nonprofit.json");

/// Version 3, drafted on version 2: education + state-owned entity is no longer a set, indirect
/// resellers need a provider for nonprofit offers (both take something away), gcc offers need no
/// reseller qualification and the lockout no longer forbids nonprofit (both give something).
fn draft() -> Value {
    let mut doc: Value = serde_json::from_str(V2_EDUCATION_NONPROFIT).unwrap();
    doc["version"] = json!(3);
    doc["qualification_sets"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["qualifications"] != json!(["education", "state_owned_entity"]));
    for segment in doc["special_segments"].as_array_mut().unwrap() {
        match segment["segment"].as_str().unwrap() {
            "nonprofit" => segment["indirect_reseller_needs_provider"] = json!(true),
            "gcc" => segment["reseller_qualification_required"] = json!(false),
            _ => {}
        }
    }
    doc["gcc_lockout_forbids"] = json!(["commercial", "education"]);
    doc
}

fn policy(document: &Value) -> Policy {
    let document: PolicyDocument = serde_json::from_value(document.clone()).unwrap();
    Policy::try_from(document).unwrap()
}

fn set_of(names: Vec<String>) -> CustomerQualification {
    names
        .iter()
        .map(|n| n.parse::<SpecialQualification>().unwrap())
        .collect()
}

/// The customer's set and GCC history now, read directly.
async fn customer_facts(app: &TestApp, customer: Uuid) -> (CustomerQualification, bool) {
    let (set, gcc): (Vec<String>, bool) = sqlx::query_as(
        "select special_qualifications,
                exists(select 1 from subscriptions where customer_id = $1 and segment = 'gcc')
         from customers where id = $1",
    )
    .bind(customer)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (set_of(set), gcc)
}

/// The partner's profile now, read directly.
async fn partner_profile(app: &TestApp, partner: Uuid) -> PartnerProfile {
    let (kind, quals, provider): (String, Vec<String>, bool) = sqlx::query_as(
        "select kind, reseller_qualifications,
                exists(select 1 from indirect_reseller_providers where reseller_id = $1)
         from partners where id = $1",
    )
    .bind(partner)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    PartnerProfile {
        kind: kind.parse::<PartnerKind>().unwrap(),
        reseller_qualifications: quals
            .iter()
            .map(|q| q.parse::<ResellerQualification>().unwrap())
            .collect(),
        has_indirect_provider: provider,
    }
}

/// Whether the service allows the purchase now, under the version in force.
async fn allowed_now(app: &TestApp, customer: Uuid, partner: Uuid, offer: Uuid) -> bool {
    let reply = app
        .post(
            "/v1/purchase-decisions",
            json!({ "customer_id": customer, "partner_id": partner, "offer_id": offer }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    reply.body["allowed"].as_bool().unwrap()
}

/// What the draft decides, from the facts read one by one.
async fn draft_decides(
    app: &TestApp,
    draft: &Policy,
    (customer, partner): (Uuid, Uuid),
    offer: OfferTerms,
) -> Vec<String> {
    let (set, gcc_history) = customer_facts(app, customer).await;
    let profile = partner_profile(app, partner).await;
    let related: bool = sqlx::query_scalar(
        "select exists(select 1 from customer_partners where customer_id = $1 and partner_id = $2)",
    )
    .bind(customer)
    .bind(partner)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let decision = decide(
        draft,
        &PurchaseContext {
            partner: &profile,
            customer_related_to_partner: related,
            customer: set,
            customer_has_gcc_history: gcc_history,
            offer,
        },
    );
    match decision {
        PurchaseDecision::Allowed => vec![],
        PurchaseDecision::Denied(v) => v.iter().map(|v| v.code().to_owned()).collect(),
    }
}

/// Every page of the preview's `list`, following its cursor, `limit` items at a time.
async fn every_page(app: &TestApp, document: &Value, list: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = Value::Null;
    loop {
        let mut body = json!({ "document": document, "limit": limit });
        if !after.is_null() {
            body[format!("{list}_after")] = after;
        }
        let reply = app.post("/v1/policy-previews", body).await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        let page = reply.body[list]["items"].as_array().unwrap().clone();
        assert!(page.len() <= limit as usize);
        items.extend(page);
        after = reply.body[list]["next_cursor"].clone();
        if after.is_null() {
            return items;
        }
    }
}

fn terms_json(terms: &BTreeSet<(String, String)>) -> Vec<Value> {
    terms
        .iter()
        .map(|(segment, kind)| json!({ "segment": segment, "product_kind": kind }))
        .collect()
}

#[tokio::test]
async fn a_preview_counts_and_lists_what_a_brute_force_finds_and_writes_nothing() {
    let app = spawn_app().await;
    let v2: Value = serde_json::from_str(V2_EDUCATION_NONPROFIT).unwrap();
    let reply = app
        .post(
            "/v1/policies",
            json!({ "document": v2, "reason": "program change of January 2024" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    let (current, draft_doc) = (policy(&v2), draft());
    let draft = policy(&draft_doc);

    // Partners of each kind, with and without qualifications and providers.
    let provider = app
        .create_partner("indirect_provider", &["nonprofit"])
        .await;
    let connected = app
        .create_partner("indirect_reseller", &["education", "gcc", "nonprofit"])
        .await;
    assert!(
        app.set_providers(connected, &[provider])
            .await
            .status
            .is_success()
    );
    let partners = [
        app.create_qualified_partner().await,
        app.create_partner("direct_bill_partner", &[]).await,
        app.create_partner("indirect_reseller", &["education", "nonprofit"])
            .await,
        connected,
        provider,
    ];
    // Two offers of the same terms: a pair gains or loses terms, each once.
    let mut offers: Vec<(Uuid, OfferTerms)> = Vec::new();
    for (segment, kind) in [
        ("commercial", "license_based"),
        ("commercial", "azure"),
        ("education", "license_based"),
        ("nonprofit", "license_based"),
        ("gcc", "license_based"),
        ("gcc", "license_based"),
    ] {
        let terms = OfferTerms {
            segment: segment.parse().unwrap(),
            product_kind: kind.parse().unwrap(),
        };
        offers.push((app.create_offer(segment, kind).await, terms));
    }
    let sets: &[&[&str]] = &[
        &[],
        &["nonprofit"],
        &["nonprofit"],
        &["education"],
        &["gcc"],
        &["gcc"],
        &["state_owned_entity"],
        &["education", "state_owned_entity"],
        &["education", "state_owned_entity"],
        &["gcc", "state_owned_entity"],
        &["education", "nonprofit"],
    ];
    let mut customers = Vec::new();
    for set in sets {
        customers.push(app.create_customer(set).await);
    }
    // Some pairs linked, some not; every purchase tried, whatever it is allowed.
    let mut linked = BTreeSet::new();
    for (i, &customer) in customers.iter().enumerate() {
        for (j, &partner) in partners.iter().enumerate() {
            if (i + j) % 4 != 0 {
                app.link(customer, partner).await;
                linked.insert((customer, partner));
            }
        }
    }
    for &(customer, partner) in &linked {
        for (k, &(offer, _)) in offers.iter().enumerate() {
            app.purchase(
                customer,
                partner,
                offer,
                &format!("{customer}-{partner}-{k}"),
            )
            .await;
        }
    }
    // A GCC customer that became nonprofit keeps its GCC history; one education + state-owned
    // customer's subscriptions are cancelled, and a cancelled one counts for nothing.
    let reply = app.set_qualifications(customers[5], &["nonprofit"]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    let cancelled: Vec<(Uuid,)> =
        sqlx::query_as("select id from subscriptions where customer_id = $1")
            .bind(customers[8])
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(!cancelled.is_empty());
    for (subscription,) in &cancelled {
        let reply = app
            .put(
                &format!(
                    "/v1/customers/{}/subscriptions/{subscription}/status",
                    customers[8]
                ),
                json!({ "status": "cancelled", "reason": "test" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    }

    // The brute force: customers.
    let mut invalidated = BTreeSet::new();
    for &customer in &customers {
        let (set, _) = customer_facts(&app, customer).await;
        if current.accepts(set) && !draft.accepts(set) {
            invalidated.insert(customer);
        }
    }
    // Subscriptions: allowed by the service now, denied by the draft; live ones only.
    let live: Vec<(Uuid, Uuid, Uuid, Uuid, String)> = sqlx::query_as(
        "select id, customer_id, partner_id, offer_id, status from subscriptions
         where status <> 'cancelled'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut lost_subscriptions = BTreeMap::new();
    for (id, customer, partner, offer, status) in &live {
        let terms = offers.iter().find(|(o, _)| o == offer).unwrap().1;
        let violations = draft_decides(&app, &draft, (*customer, *partner), terms).await;
        if allowed_now(&app, *customer, *partner, *offer).await && !violations.is_empty() {
            lost_subscriptions.insert(
                *id,
                (*customer, *partner, *offer, status.clone(), violations),
            );
        }
    }
    // Pairs: every linked pair against every offer of the catalog.
    let mut changed_pairs = BTreeMap::new();
    for &(customer, partner) in &linked {
        let (mut gained, mut lost) = (BTreeSet::new(), BTreeSet::new());
        for &(offer, terms) in &offers {
            let now = allowed_now(&app, customer, partner, offer).await;
            let then = draft_decides(&app, &draft, (customer, partner), terms)
                .await
                .is_empty();
            let key = (
                terms.segment.as_str().to_owned(),
                terms.product_kind.as_str().to_owned(),
            );
            match (now, then) {
                (false, true) => gained.insert(key),
                (true, false) => lost.insert(key),
                _ => false,
            };
        }
        if !gained.is_empty() || !lost.is_empty() {
            changed_pairs.insert((customer, partner), (gained, lost));
        }
    }
    // The dataset shows every kind of change.
    assert!(!invalidated.is_empty());
    assert!(!lost_subscriptions.is_empty());
    assert!(changed_pairs.values().any(|(g, _)| !g.is_empty()));
    assert!(changed_pairs.values().any(|(_, l)| !l.is_empty()));

    let before = app.snapshot().await;
    let reply = app
        .post("/v1/policy-previews", json!({ "document": draft_doc }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    let preview = reply.body;
    assert_eq!(preview["current_version"], 2);
    assert_eq!(preview["draft_version"], 3);

    assert_eq!(preview["customers"]["count"], invalidated.len());
    let listed: Vec<Value> = every_page(&app, &draft_doc, "customers", 1).await;
    let expected: Vec<Value> = invalidated.iter().map(|c| json!(c)).collect();
    assert_eq!(
        listed
            .iter()
            .map(|c| c["customer_id"].clone())
            .collect::<Vec<_>>(),
        expected
    );
    for item in &listed {
        assert_eq!(
            item["special_qualifications"],
            json!(["education", "state_owned_entity"])
        );
    }

    assert_eq!(preview["subscriptions"]["count"], lost_subscriptions.len());
    let listed = every_page(&app, &draft_doc, "subscriptions", 2).await;
    let expected: Vec<Value> = lost_subscriptions
        .iter()
        .map(|(id, (customer, partner, offer, status, violations))| {
            json!({ "subscription_id": id, "customer_id": customer, "partner_id": partner,
                    "offer_id": offer, "status": status, "violations": violations })
        })
        .collect();
    let listed: Vec<Value> = listed
        .into_iter()
        .map(|mut s| {
            let codes: Vec<Value> = s["violations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["code"].clone())
                .collect();
            s["violations"] = json!(codes);
            s
        })
        .collect();
    assert_eq!(listed, expected);

    let gaining = changed_pairs
        .values()
        .filter(|(g, _)| !g.is_empty())
        .count();
    let losing = changed_pairs
        .values()
        .filter(|(_, l)| !l.is_empty())
        .count();
    assert_eq!(preview["pairs"]["count"], changed_pairs.len());
    assert_eq!(preview["pairs"]["gaining"], gaining);
    assert_eq!(preview["pairs"]["losing"], losing);
    let listed = every_page(&app, &draft_doc, "pairs", 3).await;
    let expected: Vec<Value> = changed_pairs
        .iter()
        .map(|((customer, partner), (gained, lost))| {
            json!({ "customer_id": customer, "partner_id": partner,
                    "gained": terms_json(gained), "lost": terms_json(lost) })
        })
        .collect();
    assert_eq!(listed, expected);

    assert_eq!(app.snapshot().await, before, "a preview wrote something");
}

#[tokio::test]
async fn a_preview_is_for_operators_and_refuses_what_it_cannot_measure() {
    let app = spawn_app().await;
    let reply = app
        .client
        .post(format!("{}/v1/policy-previews", app.address))
        .bearer_auth(&app.back_office)
        .json(&json!({ "document": draft() }))
        .send()
        .await
        .unwrap();
    Reply::from(reply)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");

    let mut invalid = draft();
    invalid["gcc_lockout_forbids"] = json!(["gcc"]);
    let reply = app
        .post("/v1/policy-previews", json!({ "document": invalid }))
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");

    let reply = app
        .post(
            "/v1/policy-previews",
            json!({ "document": draft(), "limit": 0 }),
        )
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(reply.body["field"], "limit");

    // Against the rule book, on an empty database: nothing to change.
    let reply = app
        .post("/v1/policy-previews", json!({ "document": draft() }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    assert_eq!(reply.body["current_version"], 1);
    for list in ["customers", "subscriptions", "pairs"] {
        assert_eq!(reply.body[list]["count"], 0);
        assert_eq!(reply.body[list]["items"], json!([]));
        assert_eq!(reply.body[list]["next_cursor"], Value::Null);
    }
}
