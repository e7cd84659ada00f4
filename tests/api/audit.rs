//! The auditor's history: every change and decision as an event, searchable, exportable, and
//! hash-chained so that a rewrite is caught.

use std::collections::BTreeSet;

use chrono::Utc;
use partner_catalog::{app, dev};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, purchase_at, spawn_app};

/// GET with query parameters and optional headers; the status, content type and raw body text.
async fn get_raw(
    app: &TestApp,
    path: &str,
    query: &[(&str, String)],
    accept: Option<&str>,
) -> (StatusCode, String, String) {
    let url = reqwest::Url::parse_with_params(&format!("{}{path}", app.address), query).unwrap();
    let mut request = app.client.get(url).bearer_auth(&app.auditor);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

/// A JSON page of `/v1/audit/events`.
async fn events(app: &TestApp, query: &[(&str, String)]) -> (StatusCode, Value) {
    let (status, _, body) = get_raw(app, "/v1/audit/events", query, None).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// Every event matching `query`, following the cursor page by page (`limit` per page).
async fn all_events(app: &TestApp, query: &[(&str, String)], limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = query.to_vec();
        q.push(("limit", limit.to_string()));
        if let Some(cursor) = &after {
            q.push(("after", cursor.clone()));
        }
        let (status, page) = events(app, &q).await;
        assert_eq!(status, StatusCode::OK, "{page:#}");
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= limit as usize);
        items.extend(page_items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => after = Some(cursor.to_owned()),
            None => return items,
        }
    }
}

fn types(items: &[Value]) -> Vec<&str> {
    items.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn q(pairs: &[(&'static str, &dyn ToString)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

async fn verify(app: &TestApp, key: &'static str, id: Uuid) -> (StatusCode, Value) {
    let (status, _, body) = get_raw(app, "/v1/audit/verify", &q(&[(key, &id)]), None).await;
    (status, serde_json::from_str(&body).unwrap())
}

async fn set_status(
    app: &TestApp,
    customer: Uuid,
    subscription: &Value,
    body: Value,
) -> crate::helpers::Reply {
    app.put(
        &format!(
            "/v1/customers/{customer}/subscriptions/{}/status",
            subscription["id"].as_str().unwrap()
        ),
        body,
    )
    .await
}

/// Rewrites history the way only a superuser can: with the append-only trigger off.
pub async fn tamper(app: &TestApp, sql: &str, id: Uuid) {
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("alter table events disable trigger events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    let done = sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap();
    assert_eq!(done.rows_affected(), 1);
    sqlx::query("alter table events enable trigger events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// A customer with a partner, an education qualification, and a few purchases behind it.
struct History {
    customer: Uuid,
    partner: Uuid,
}

async fn history(app: &TestApp) -> History {
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&["education"]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("education", "license_based").await;
    for n in 1..=3 {
        let key = format!("{customer}-{n}");
        assert_eq!(
            app.purchase(customer, partner, offer, &key).await.status,
            StatusCode::CREATED
        );
    }
    History { customer, partner }
}

#[tokio::test]
async fn every_change_and_decision_is_an_event_with_who_when_and_why() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&["education"]).await;
    app.link(customer, partner).await;
    let edu = app.create_offer("education", "license_based").await;
    let gcc = app.create_offer("gcc", "license_based").await;

    let bought = app.purchase(customer, partner, edu, "order-1").await;
    assert_eq!(bought.status, StatusCode::CREATED);
    let replay = app.purchase(customer, partner, edu, "order-1").await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    app.purchase(customer, partner, gcc, "order-2")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "purchase_denied");
    let suspended = app
        .client
        .put(format!(
            "{}/v1/customers/{customer}/subscriptions/{}/status",
            app.address,
            bought.body["id"].as_str().unwrap()
        ))
        .bearer_auth(&app.back_office)
        .header("x-request-id", "ticket-7781")
        .json(&json!({ "status": "suspended", "reason": "unpaid invoice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(suspended.status(), StatusCode::OK);
    let r = app
        .put_if_match(
            &format!("/v1/customers/{customer}/qualifications"),
            "*",
            json!({
                "special_qualifications": ["education", "state_owned_entity"],
                "evidence": { "state_owned_entity": "SOE-ATTEST-1" },
                "reason": "ministry letter",
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);

    let items = all_events(&app, &q(&[("customer_id", &customer)]), 50).await;
    assert_eq!(
        types(&items),
        [
            "customer_qualifications_set",
            "subscription_status_changed",
            "purchase_denied",
            "idempotent_replay_served",
            "subscription_created",
            "customer_partner_linked",
            "customer_created",
        ]
    );
    // Each event names its principal and role: back office, or the partner's sales agent.
    let back_office = app.principal_id(&app.back_office).await.to_string();
    let sales_agent = app
        .principal_id(&app.sales_token(partner).await)
        .await
        .to_string();
    for event in &items {
        let by_partner = [
            "subscription_created",
            "purchase_denied",
            "idempotent_replay_served",
        ]
        .contains(&event["type"].as_str().unwrap());
        let (actor, role) = if by_partner {
            (&sales_agent, "sales_agent")
        } else {
            (&back_office, "back_office")
        };
        assert_eq!(event["actor"], *actor, "{event:#}");
        assert_eq!(event["actor_role"], role, "{event:#}");
        assert_eq!(event["customer_id"], customer.to_string());
        assert!(event["request_id"].is_string(), "{event:#}");
        assert!(event["occurred_at"].is_string());
    }
    let [qualifications, status, denied, replayed, created, linked, _] = &items[..] else {
        panic!("seven events expected");
    };
    assert_eq!(
        qualifications["payload"],
        json!({
            "before": ["education"],
            "after": ["education", "state_owned_entity"],
            "evidence": { "education": "EV-education", "state_owned_entity": "SOE-ATTEST-1" },
            "reason": "ministry letter",
            "version": 2,
            "policy_version": 1,
        })
    );
    assert_eq!(status["request_id"], "ticket-7781");
    assert_eq!(status["partner_id"], partner.to_string());
    assert_eq!(
        status["payload"],
        json!({ "subscription_id": bought.body["id"], "before": "active", "after": "suspended", "reason": "unpaid invoice" })
    );
    let codes: BTreeSet<_> = denied["payload"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains("customer_not_qualified"), "{denied:#}");
    assert_eq!(denied["payload"]["idempotency_key"], "order-2");
    assert_eq!(
        replayed["payload"],
        json!({ "idempotency_key": "order-1", "result": "created", "subscription_id": bought.body["id"] })
    );
    assert_eq!(created["payload"]["subscription_id"], bought.body["id"]);
    assert_eq!(created["partner_id"], partner.to_string());
    assert_eq!(linked["partner_id"], partner.to_string());

    // Events about the partner alone, and the catalog's.
    let partner_events = all_events(&app, &q(&[("partner_id", &partner)]), 50).await;
    assert!(types(&partner_events).contains(&"partner_created"));
    let offers = all_events(&app, &q(&[("type", &"offer_created")]), 50).await;
    assert_eq!(offers.len(), 2);
    assert!(
        offers
            .iter()
            .all(|e| e["chain_id"] == Uuid::nil().to_string())
    );
}

#[tokio::test]
async fn a_subscription_status_changes_under_the_rules_and_is_never_lost() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "azure").await;
    let sub = app.purchase(customer, partner, offer, "s-1").await.body;

    // Every change has a reason (R5): without one, or with a blank or unprintable one, nothing
    // changes.
    let before = app.snapshot().await;
    for body in [
        json!({ "status": "suspended" }),
        json!({ "status": "suspended", "reason": " " }),
        json!({ "status": "suspended", "reason": "unpaid\u{0}" }),
        json!({ "status": "suspended", "reason": "x".repeat(1001) }),
    ] {
        let r = set_status(&app, customer, &sub, body).await;
        r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert_eq!(r.body["field"], "reason");
    }
    assert_eq!(app.snapshot().await, before);

    for status in ["suspended", "active", "cancelled"] {
        let body = json!({ "status": status, "reason": format!("now {status}") });
        let r = set_status(&app, customer, &sub, body).await;
        assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
        assert_eq!(r.body["status"], status);
    }
    // Unchanged: answered, nothing recorded. Cancelled is final.
    let r = set_status(
        &app,
        customer,
        &sub,
        json!({ "status": "cancelled", "reason": "again" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    set_status(
        &app,
        customer,
        &sub,
        json!({ "status": "active", "reason": "revive" }),
    )
    .await
    .assert_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_status_transition",
    );
    set_status(
        &app,
        customer,
        &sub,
        json!({ "status": "gone", "reason": "r" }),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    app.put(
        &format!(
            "/v1/customers/{customer}/subscriptions/{}/status",
            Uuid::now_v7()
        ),
        json!({ "status": "active", "reason": "r" }),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "subscription_not_found");

    let changes = all_events(&app, &q(&[("type", &"subscription_status_changed")]), 50).await;
    let transitions: Vec<_> = changes
        .iter()
        .rev()
        .map(|e| {
            (
                e["payload"]["before"].as_str().unwrap(),
                e["payload"]["after"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [
            ("active", "suspended"),
            ("suspended", "active"),
            ("active", "cancelled")
        ]
    );
    let reasons: Vec<_> = changes
        .iter()
        .rev()
        .map(|e| e["payload"]["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        [
            json!("now suspended"),
            json!("now active"),
            json!("now cancelled")
        ]
    );
    let stored = app
        .get(&format!(
            "/v1/customers/{customer}/subscriptions/{}",
            sub["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(stored.body["status"], "cancelled");
}

#[tokio::test]
async fn filters_and_the_cursor_page_newest_first_through_exactly_the_matching_events() {
    let app = spawn_app().await;
    let h = history(&app).await;
    let other = history(&app).await;

    let everything = all_events(&app, &[], 200).await;
    assert_eq!(everything.len() as i64, app.count("events").await);
    let ids: Vec<Uuid> = everything
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    // Small pages walk the same sequence.
    let paged = all_events(&app, &[], 3).await;
    assert_eq!(paged, everything);

    let mine = all_events(&app, &q(&[("customer_id", &h.customer)]), 2).await;
    assert_eq!(
        mine.len(),
        5,
        "created, linked, three purchases: {:#?}",
        types(&mine)
    );
    assert!(
        mine.iter()
            .all(|e| e["customer_id"] == h.customer.to_string())
    );
    let mine_bought = all_events(
        &app,
        &q(&[
            ("customer_id", &h.customer),
            ("type", &"subscription_created"),
        ]),
        2,
    )
    .await;
    assert_eq!(mine_bought.len(), 3);
    let by_partner = all_events(&app, &q(&[("partner_id", &other.partner)]), 50).await;
    assert_eq!(by_partner.len(), 6, "{:#?}", types(&by_partner));
    // Tokens issued on the command line are by `system`; everything else by the back office here.
    let back_office = app.principal_id(&app.back_office).await.to_string();
    let by_back_office = all_events(&app, &q(&[("actor", &back_office)]), 200).await;
    assert!(!by_back_office.is_empty());
    assert_eq!(
        by_back_office,
        everything
            .iter()
            .filter(|e| e["actor"] == back_office.as_str())
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(
        all_events(&app, &q(&[("actor", &"mallory")]), 50)
            .await
            .is_empty()
    );

    // The time range is exact at microsecond precision: from includes, to excludes.
    let pivot = &everything[everything.len() / 2];
    let at = pivot["occurred_at"].as_str().unwrap();
    let from = all_events(&app, &q(&[("from", &at)]), 200).await;
    let to = all_events(&app, &q(&[("to", &at)]), 200).await;
    assert_eq!(from.last().unwrap()["id"], pivot["id"]);
    assert_eq!(from.len() + to.len(), everything.len());
    assert_eq!(
        all_events(&app, &q(&[("from", &at), ("to", &at)]), 50).await,
        Vec::<Value>::new()
    );
    let one = all_events(
        &app,
        &q(&[
            ("from", &at),
            (
                "to",
                &(at.parse::<chrono::DateTime<Utc>>().unwrap()
                    + chrono::TimeDelta::microseconds(1))
                .to_rfc3339(),
            ),
        ]),
        50,
    )
    .await;
    assert_eq!(one, vec![pivot.clone()]);

    // Malformed filters are refused, never ignored.
    for bad in [
        q(&[("customer_id", &"42")]),
        q(&[("type", &"purchase_made")]),
        q(&[("from", &"yesterday")]),
        q(&[
            ("from", &"2026-02-01T00:00:00Z"),
            ("to", &"2026-01-01T00:00:00Z"),
        ]),
        q(&[("after", &"not-a-cursor")]),
        q(&[("limit", &0)]),
        q(&[("limit", &201)]),
        q(&[("actor", &"")]),
        q(&[("customer", &h.customer)]),
    ] {
        let (status, body) = events(&app, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body:#}");
        assert_eq!(body["code"], "invalid_query_parameter", "{bad:?}");
    }
}

#[tokio::test]
async fn csv_and_ndjson_export_every_matching_event_in_page_order() {
    let app = spawn_app().await;
    let h = history(&app).await;
    history(&app).await;
    let everything = all_events(&app, &[], 200).await;

    let (status, content_type, body) =
        get_raw(&app, "/v1/audit/events", &[], Some("application/x-ndjson")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/x-ndjson");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, everything);

    let (status, content_type, body) = get_raw(
        &app,
        "/v1/audit/events",
        &q(&[("customer_id", &h.customer)]),
        Some("text/csv"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let mine = all_events(&app, &q(&[("customer_id", &h.customer)]), 50).await;
    let mut rows = body.lines();
    assert_eq!(
        rows.next().unwrap(),
        "id,occurred_at,actor,actor_role,actor_partner_id,request_id,customer_id,partner_id,type,payload,chain_id,chain_seq,prev_hash,hash,actor_kind,actor_name,actor_username,actor_partner_name"
    );
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), mine.len());
    for (row, event) in rows.iter().zip(&mine) {
        assert!(
            row.starts_with(&format!("{},", event["id"].as_str().unwrap())),
            "{row}"
        );
        // The stored columns, then the actor in words: every actor here is a token labelled
        // `test` (back office's, or the partner's sales agent's).
        let partner_name = event["actor_name"]["partner_name"].as_str().unwrap_or("");
        assert!(
            row.ends_with(&format!(
                ",{},token,test,,{partner_name}",
                event["hash"].as_str().unwrap()
            )),
            "{row}"
        );
        assert!(row.contains(&format!(",{},", event["type"].as_str().unwrap())));
    }
    // The payload is one quoted field, quotes doubled.
    assert!(
        rows.last()
            .unwrap()
            .contains(r#","{""name"": ""Customer"", "#),
        "{}",
        rows.last().unwrap()
    );

    let (status, _, body) = get_raw(&app, "/v1/audit/events", &[], Some("application/xml")).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert!(body.contains("not_acceptable"));
}

#[tokio::test]
async fn an_untampered_history_verifies() {
    let app = spawn_app().await;
    let h = history(&app).await;

    let (status, report) = verify(&app, "customer_id", h.customer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["events"], 5);
    assert_eq!(report["head"]["seq"], 5);
    assert_eq!(report["first_broken"], Value::Null);
    let (_, report) = verify(&app, "partner_id", h.partner).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        report["events"], 2,
        "partner_created and its sales agent's token_created: purchases are on the customer's chain"
    );

    let all = app::audit::verify_all(&app.pool).await.unwrap();
    assert!(all.broken.is_empty(), "{:#?}", all.broken);
    assert_eq!(all.chains, 3, "customer, partner, catalog");
    assert_eq!(all.events as i64, app.count("events").await);

    let (status, body) = verify(&app, "customer_id", Uuid::now_v7()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("customer_not_found"))
    );
    let (status, _, body) = get_raw(&app, "/v1/audit/verify", &[], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_rewritten_event_is_caught_at_exactly_that_event() {
    let app = spawn_app().await;
    let h = history(&app).await;
    let untouched = history(&app).await;
    let mine = all_events(&app, &q(&[("customer_id", &h.customer)]), 50).await;
    let victim = &mine[2]; // the first purchase: seq 3 of 5
    let victim_id: Uuid = victim["id"].as_str().unwrap().parse().unwrap();

    tamper(
        &app,
        r#"update events set payload = payload || '{"quantity": 1000}' where id = $1"#,
        victim_id,
    )
    .await;

    let (_, report) = verify(&app, "customer_id", h.customer).await;
    assert_eq!(report["ok"], false);
    let broken = &report["first_broken"];
    assert_eq!(broken["event_id"], victim["id"]);
    assert_eq!(broken["seq"], 3);
    assert_eq!(broken["problem"], "hash_mismatch");
    assert_eq!(broken["stored"], victim["hash"]);
    assert_ne!(broken["expected"], victim["hash"]);
    // Other chains are unaffected, and the full verification names only the broken one.
    let (_, report) = verify(&app, "customer_id", untouched.customer).await;
    assert_eq!(report["ok"], true);
    let all = app::audit::verify_all(&app.pool).await.unwrap();
    assert_eq!(all.broken.len(), 1);
    assert_eq!(all.broken[0].chain_id, h.customer);
}

#[tokio::test]
async fn a_removed_event_is_caught_in_the_middle_and_at_the_end_of_a_chain() {
    let app = spawn_app().await;
    let h = history(&app).await;
    let mine = all_events(&app, &q(&[("customer_id", &h.customer)]), 50).await;
    let middle: Uuid = mine[2]["id"].as_str().unwrap().parse().unwrap();
    tamper(&app, "delete from events where id = $1", middle).await;
    let (_, report) = verify(&app, "customer_id", h.customer).await;
    assert_eq!(
        report["first_broken"]["problem"], "sequence_gap",
        "{report:#}"
    );
    assert_eq!(report["first_broken"]["event_id"], mine[1]["id"]);
    assert_eq!(
        (
            report["first_broken"]["expected"].as_str(),
            report["first_broken"]["stored"].as_str()
        ),
        (Some("3"), Some("4"))
    );

    let other = history(&app).await;
    let theirs = all_events(&app, &q(&[("customer_id", &other.customer)]), 50).await;
    let newest: Uuid = theirs[0]["id"].as_str().unwrap().parse().unwrap();
    tamper(&app, "delete from events where id = $1", newest).await;
    let (_, report) = verify(&app, "customer_id", other.customer).await;
    assert_eq!(
        report["first_broken"]["problem"], "head_mismatch",
        "{report:#}"
    );
    assert_eq!(report["first_broken"]["event_id"], theirs[1]["id"]);
}

#[tokio::test]
async fn chains_are_per_customer_and_partner_and_never_fork_under_concurrency() {
    let app = spawn_app().await;
    let second = app.spawn_instance().await;
    let partner = app.create_qualified_partner().await;
    let customers = [
        app.create_customer(&[]).await,
        app.create_customer(&[]).await,
    ];
    for customer in customers {
        app.link(customer, partner).await;
    }
    let offer = app.create_offer("commercial", "license_based").await;
    let token = app.sales_token(partner).await;
    let partner_head = verify(&app, "partner_id", partner).await.1["head"].clone();

    // Purchases for two customers through one partner, and partner-only changes, all at once,
    // on two service instances.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (client, token) = (app.client.clone(), token.clone());
        let base = if i % 2 == 0 {
            app.address.clone()
        } else {
            second.clone()
        };
        let customer = customers[i % 2];
        tasks.push(tokio::spawn(async move {
            purchase_at(
                &client,
                &base,
                &token,
                customer,
                partner,
                offer,
                &format!("c-{i}"),
            )
            .await
            .status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
    // The purchases named the partner but did not touch its chain.
    assert_eq!(
        verify(&app, "partner_id", partner).await.1["head"],
        partner_head
    );
    let r = app
        .put_if_match(
            &format!("/v1/partners/{partner}/reseller-qualifications"),
            "*",
            json!({ "reseller_qualifications": ["gcc"], "evidence": { "gcc": "GCV-9" }, "reason": "re-enrolled" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    // partner_created, its sales agent's token_created, and this change.
    let (_, report) = verify(&app, "partner_id", partner).await;
    assert_eq!(
        (report["ok"].as_bool(), report["events"].as_u64()),
        (Some(true), Some(3))
    );

    for customer in customers {
        let (_, report) = verify(&app, "customer_id", customer).await;
        assert_eq!(report["ok"], true, "{report:#}");
        assert_eq!(report["events"], 14, "created, linked, 12 purchases");
        let chain = all_events(&app, &q(&[("customer_id", &customer)]), 50).await;
        assert!(chain.iter().all(|e| e["chain_id"] == customer.to_string()));
        let mut seqs: Vec<i64> = chain
            .iter()
            .map(|e| e["chain_seq"].as_i64().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=14).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn an_event_written_around_the_service_is_chained_and_stamped_too() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    sqlx::query(
        "insert into events (customer_id, event_type, payload, chain_seq, hash)
         values ($1, 'customer_qualifications_set', '{\"by\": \"hand\"}', 99, '\\x00')",
    )
    .bind(customer)
    .execute(&app.pool)
    .await
    .unwrap();
    let (_, report) = verify(&app, "customer_id", customer).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["head"]["seq"], 2);

    // An id that does not encode the event's time is refused.
    let err = sqlx::query(
        "insert into events (id, customer_id, event_type, payload) values ($1, $2, 'customer_created', '{}')",
    )
    .bind(Uuid::now_v7())
    .bind(customer)
    .execute(&app.pool)
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("events_id_encodes_occurred_at"),
        "{err}"
    );
}

#[tokio::test]
async fn seeded_history_is_chained_and_searchable() {
    let app = spawn_app().await;
    app.create_offer("commercial", "azure").await;
    let options = dev::SeedOptions {
        events: 3000,
        customers: 40,
        partners: 3,
        days: 30,
    };
    let report = dev::seed(&app.pool, &options, Utc::now()).await.unwrap();
    assert_eq!(report.events, 3000);

    let all = app::audit::verify_all(&app.pool).await.unwrap();
    assert!(all.broken.is_empty(), "{:#?}", all.broken);
    assert_eq!(all.events as i64, app.count("events").await);
    let (_, busiest) = verify(&app, "customer_id", report.busiest_customer).await;
    assert_eq!(busiest["ok"], true);
    assert_eq!(busiest["events"], report.busiest_customer_events);

    // A time range through the API matches the database's own count.
    let from = report.first_at + chrono::TimeDelta::days(10);
    let to = from + chrono::TimeDelta::days(3);
    let expected: i64 = sqlx::query_scalar(
        "select count(*) from events where occurred_at >= $1 and occurred_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(expected > 100);
    let (_, _, body) = get_raw(
        &app,
        "/v1/audit/events",
        &q(&[("from", &from.to_rfc3339()), ("to", &to.to_rfc3339())]),
        Some("application/x-ndjson"),
    )
    .await;
    assert_eq!(body.lines().count() as i64, expected);
}

/// The cells of one CSV record (RFC 4180: quoted cells, quotes doubled), of a record that holds
/// no line break.
fn csv_cells(record: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let (mut quoted, mut chars) = (false, record.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

#[tokio::test]
async fn a_csv_export_is_safe_in_a_spreadsheet_and_its_hashes_can_be_recomputed_from_it() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    // Text a spreadsheet would run as formulas, stored by a writer that did not screen its request
    // id (as this service did before) and in a payload.
    let legacy =
        partner_catalog::domain::Actor::new(None, Some("=HYPERLINK(\"http://evil\",\"x\")".into()));
    partner_catalog::db::events::append(
        &app.pool,
        &legacy,
        partner_catalog::db::events::NewEvent {
            event_type: partner_catalog::domain::EventType::CustomerPartnerLinked,
            customer_id: Some(partner_catalog::domain::CustomerId(customer)),
            partner_id: None,
            payload: json!({"note": "@SUM(1+1)"}),
        },
    )
    .await
    .unwrap();

    let (status, _, body) = get_raw(
        &app,
        "/v1/audit/events",
        &[("customer_id", customer.to_string())],
        Some("text/csv"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<Vec<String>> = body.lines().skip(1).map(csv_cells).collect();
    assert_eq!(rows.len(), 2, "{body}");
    for row in &rows {
        assert_eq!(row.len(), 18, "{row:?}");
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell}"
            );
        }
        // What the README tells auditors: drop one leading `'`, then hash the canonical form.
        let text = |i: usize| row[i].strip_prefix('\'').unwrap_or(&row[i]).to_owned();
        let id = |i: usize| (!row[i].is_empty()).then(|| row[i].parse::<Uuid>().unwrap());
        let (actor, role, request_id, kind, payload) =
            (text(2), text(3), text(5), text(8), text(9));
        let prev_hash = hex::decode(&row[12]).unwrap();
        let event = partner_catalog::domain::audit::ChainedEvent {
            id: row[0].parse().unwrap(),
            occurred_at: row[1].parse().unwrap(),
            actor: &actor,
            actor_role: (!role.is_empty()).then_some(role.as_str()),
            actor_partner_id: id(4),
            request_id: (!request_id.is_empty()).then_some(request_id.as_str()),
            customer_id: id(6),
            partner_id: id(7),
            event_type: &kind,
            payload: &payload,
            chain_id: row[10].parse().unwrap(),
            chain_seq: row[11].parse().unwrap(),
            prev_hash: &prev_hash,
            stored_hash: &[],
        };
        assert_eq!(hex::encode(event.hash()), row[13], "{row:?}");
    }
    let legacy_row = &rows[0];
    assert_eq!(legacy_row[5], "'=HYPERLINK(\"http://evil\",\"x\")");
}

#[tokio::test]
async fn a_callers_request_id_is_stored_only_when_plain_and_the_answer_says_when_it_was_replaced() {
    let app = spawn_app().await;
    let create = |request_id: &'static [u8], twice: bool| {
        let mut request = app
            .request(reqwest::Method::POST, "/v1/customers")
            .json(&json!({"name": "Fabrikam"}))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(request_id).unwrap(),
            );
        if twice {
            request = request.header("x-request-id", "second");
        }
        request.send()
    };
    let stored = |customer: String| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "select request_id from events where customer_id = $1::uuid",
            )
            .bind(customer)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    let kept = create(b"order-1001:retry.2", false).await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "order-1001:retry.2");
    assert!(kept.headers().get("x-request-id-replaced").is_none());
    let id = kept.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(stored(id).await.as_deref(), Some("order-1001:retry.2"));

    let long: &'static [u8] = "x".repeat(8 * 1024).leak().as_bytes();
    for (sent, twice) in [
        (&b"=HYPERLINK(\"http://evil\")"[..], false),
        (long, false),
        (b"caf\xc3\xa9", false),
        (b"first", true),
    ] {
        let reply = create(sent, twice).await.unwrap();
        assert_eq!(reply.status(), StatusCode::CREATED);
        assert!(reply.headers().contains_key("x-request-id-replaced"));
        let replacement = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(Uuid::parse_str(&replacement).is_ok(), "{replacement}");
        let id = reply.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(stored(id).await, Some(replacement));
    }
}

#[tokio::test]
async fn every_audit_answer_names_its_actor_in_words_beside_the_hashed_id() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&["education"]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("education", "license_based").await;
    // A token with a label of its own (one a spreadsheet would run), issued over the API.
    let issued = app
        .post(
            "/v1/tokens",
            json!({"role": "sales_agent", "partner_id": partner, "label": "=Contoso ordering system"}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{:#}", issued.body);
    let ordering = issued.body["secret"].as_str().unwrap().to_owned();
    let bought = purchase_at(
        &app.client,
        &app.address,
        &ordering,
        customer,
        partner,
        offer,
        "o-1",
    )
    .await;
    assert_eq!(bought.status, StatusCode::CREATED);
    // A console user acting: a password change, through the console.
    let user =
        crate::console::signed_in(&app, partner_catalog::domain::Role::BackOffice, None).await;
    let changed = user
        .post(
            "/account/password",
            &[
                ("current", crate::console::PASSWORD),
                ("new", "another long passphrase"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.html);
    // An event written around the service, by an actor that is no principal.
    sqlx::query(
        "insert into events (chain_id, customer_id, actor, event_type, payload)
         values ($1, $1, 'legacy-import', 'customer_partner_linked', '{}')",
    )
    .bind(customer)
    .execute(&app.pool)
    .await
    .unwrap();

    let partner_name = app.get(&format!("/v1/partners/{partner}")).await.body["name"].clone();
    let back_office = app.principal_id(&app.back_office).await;
    let items = all_events(&app, &q(&[("customer_id", &customer)]), 2).await;
    let by_type = |t: &str| {
        items
            .iter()
            .find(|e| e["type"] == t)
            .unwrap_or_else(|| panic!("no {t}"))
    };
    assert_eq!(
        by_type("subscription_created")["actor_name"],
        json!({"kind": "token", "name": "=Contoso ordering system", "username": null,
               "role": "sales_agent", "partner_id": partner, "partner_name": partner_name.clone()})
    );
    let created = by_type("customer_created");
    assert_eq!(created["actor"], back_office.to_string());
    assert_eq!(
        created["actor_name"],
        json!({"kind": "token", "name": "test", "username": null, "role": "back_office",
               "partner_id": null, "partner_name": null})
    );
    let legacy = items
        .iter()
        .find(|e| e["actor"] == "legacy-import")
        .unwrap();
    assert_eq!(legacy["actor_name"], Value::Null);

    let (_, page) = events(&app, &q(&[("actor", &user.user_id)])).await;
    let by_user = &page["items"][0];
    assert_eq!(by_user["type"], "user_password_changed");
    let username = by_user["payload"]["username"].as_str().unwrap();
    assert_eq!(
        by_user["actor_name"],
        json!({"kind": "user", "name": format!("{username} (test)"), "username": username,
               "role": "back_office", "partner_id": null, "partner_name": null})
    );
    // The command line is `system`.
    let (_, page) = events(&app, &q(&[("type", &"user_created")])).await;
    assert_eq!(
        page["items"][0]["actor_name"],
        json!({"kind": "system", "name": "system", "username": null, "role": null,
               "partner_id": null, "partner_name": null})
    );

    // Exports carry the same names: NDJSON as in the pages, CSV in columns after the stored ones,
    // with the formula guard; the stored columns still hash as before.
    let query = q(&[("customer_id", &customer)]);
    let (_, _, ndjson) = get_raw(
        &app,
        "/v1/audit/events",
        &query,
        Some("application/x-ndjson"),
    )
    .await;
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, items);
    let (_, _, csv) = get_raw(&app, "/v1/audit/events", &query, Some("text/csv")).await;
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(csv_cells).collect();
    assert_eq!(rows.len(), items.len());
    let bought_row = rows
        .iter()
        .find(|r| r[8] == "subscription_created")
        .unwrap();
    assert_eq!(
        bought_row[14..],
        [
            "token".to_owned(),
            "'=Contoso ordering system".to_owned(),
            String::new(),
            partner_name.as_str().unwrap().to_owned()
        ]
    );
    let legacy_row = rows.iter().find(|r| r[2] == "legacy-import").unwrap();
    assert_eq!(legacy_row[14..], ["", "", "", ""]);
    let (_, report) = verify(&app, "customer_id", customer).await;
    assert_eq!(report["ok"], true, "{report:#}");

    // Histories name their actors too; a partner role sees names of its own partner's principals
    // only, not the reseller's staff and tokens.
    let history = app
        .get(&format!("/v1/customers/{customer}/qualifications/history"))
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(history.body["items"][0]["actor"], back_office.to_string());
    assert_eq!(history.body["items"][0]["actor_name"]["name"], "test");
    assert_eq!(history.body["items"][0]["version"], 1);
    let as_partner = app
        .client
        .get(format!(
            "{}/v1/customers/{customer}/qualifications/history",
            app.address
        ))
        .bearer_auth(&ordering)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(as_partner["items"][0]["actor"], back_office.to_string());
    assert_eq!(as_partner["items"][0]["actor_name"], Value::Null);
    let profile = app
        .get(&format!("/v1/partners/{partner}/profile/history"))
        .await;
    assert_eq!(
        profile.body["items"][0]["actor_name"]["role"],
        "back_office"
    );
}
