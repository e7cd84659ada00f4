use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_seven_qualification_sets_are_accepted_and_nothing_else() {
    let app = spawn_app().await;
    let valid: [&[&str]; 7] = [
        &[],
        &["nonprofit"],
        &["education"],
        &["gcc"],
        &["state_owned_entity"],
        &["state_owned_entity", "education"],
        &["gcc", "state_owned_entity"],
    ];
    for set in valid {
        let id = app.create_customer(set).await;
        let fetched = app.get(&format!("/v1/customers/{id}")).await;
        let mut sorted = set.to_vec();
        sorted.sort();
        assert_eq!(fetched.body["special_qualifications"], json!(sorted));
    }
    let invalid: [&[&str]; 4] = [
        &["education", "gcc"],
        &["nonprofit", "education"],
        &["nonprofit", "state_owned_entity"],
        &["gcc", "nonprofit"],
    ];
    for set in invalid {
        app.post(
            "/v1/customers",
            json!({ "name": "x", "special_qualifications": set }),
        )
        .await
        .assert_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_qualification_set",
        );
    }
    assert_eq!(app.count("customers").await, 7);
}

#[tokio::test]
async fn changing_qualifications_bumps_the_version_and_logs_before_and_after() {
    let app = spawn_app().await;
    let id = app.create_customer(&["education"]).await;
    let reply = app
        .put_if_match(
            &format!("/v1/customers/{id}/qualifications"),
            "\"1\"",
            json!({ "special_qualifications": ["gcc"], "evidence": { "gcc": "GCV-1" }, "reason": "validated" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    assert_eq!(reply.headers["etag"], "\"2\"");
    assert_eq!(reply.body["evidence"], json!({ "gcc": "GCV-1" }));
    assert_eq!(reply.body["special_qualifications"], json!(["gcc"]));
    assert_eq!(reply.body["version"], 2);

    app.set_qualifications(id, &["gcc", "education"])
        .await
        .assert_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_qualification_set",
        );
    let unchanged = app.get(&format!("/v1/customers/{id}")).await;
    assert_eq!(unchanged.body["special_qualifications"], json!(["gcc"]));
    assert_eq!(unchanged.body["version"], 2);

    let payload: serde_json::Value =
        sqlx::query_scalar("select payload from events where customer_id = $1 and event_type = 'customer_qualifications_set'")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        payload,
        json!({
            "before": ["education"],
            "after": ["gcc"],
            "evidence": { "gcc": "GCV-1" },
            "reason": "validated",
            "version": 2,
            "policy_version": 1,
        })
    );

    app.put_if_match(
        &format!("/v1/customers/{}/qualifications", uuid::Uuid::now_v7()),
        "*",
        json!({ "special_qualifications": [], "reason": "r" }),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "customer_not_found");
}

#[tokio::test]
async fn linking_a_partner_is_idempotent() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    let partner = app.create_qualified_partner().await;
    let path = format!("/v1/customers/{customer}/partners/{partner}");
    assert_eq!(
        app.put(&path, json!(null)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.put(&path, json!(null)).await.status, StatusCode::OK);
    let partners = app.get(&format!("/v1/customers/{customer}/partners")).await;
    assert_eq!(partners.body["partner_ids"], json!([partner]));
    assert_eq!(
        app.count("events where event_type = 'customer_partner_linked'")
            .await,
        1
    );

    let unknown = uuid::Uuid::now_v7();
    app.put(
        &format!("/v1/customers/{customer}/partners/{unknown}"),
        json!(null),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "partner_not_found");
    app.put(
        &format!("/v1/customers/{unknown}/partners/{partner}"),
        json!(null),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "customer_not_found");
}

#[tokio::test]
async fn customers_are_listed_oldest_first() {
    let app = spawn_app().await;
    let a = app.create_customer(&[]).await;
    let b = app.create_customer(&["gcc"]).await;
    let page = app.get("/v1/customers").await;
    let ids: Vec<_> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, [json!(a), json!(b)]);
    assert!(page.body["next_cursor"].is_null());
}

#[tokio::test]
async fn an_external_reference_belongs_to_one_customer() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/customers",
            json!({ "name": "Northwind", "external_reference": " CRM-1 " }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    assert_eq!(created.body["external_reference"], "CRM-1");
    let first = created.id();
    let event: serde_json::Value = sqlx::query_scalar(
        "select payload from events where event_type = 'customer_created' and customer_id = $1",
    )
    .bind(first)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(event["external_reference"], "CRM-1");

    let before = app.snapshot().await;
    let taken = app
        .post(
            "/v1/customers",
            json!({ "name": "Someone else", "external_reference": "CRM-1" }),
        )
        .await;
    taken.assert_problem(StatusCode::CONFLICT, "external_reference_taken");
    assert_eq!(taken.body["customer_id"], json!(first));
    assert_eq!(taken.body["external_reference"], "CRM-1");
    assert_eq!(app.snapshot().await, before, "a refusal writes nothing");

    for bad in [
        json!(""),
        json!("   "),
        json!("a\u{0}b"),
        json!("x".repeat(201)),
    ] {
        let reply = app
            .post(
                "/v1/customers",
                json!({ "name": "Bad reference", "external_reference": bad }),
            )
            .await;
        reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert_eq!(reply.body["field"], "external_reference");
    }
    // The console's search finds a customer by its reference.
    let found = partner_catalog::db::customers::search(
        &app.pool,
        None,
        &partner_catalog::db::customers::CustomerFilter {
            external_reference: Some("CRM-1"),
            ..Default::default()
        },
        partner_catalog::db::Keyset {
            after: None,
            limit: 10,
        },
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id.0, first);
}

#[tokio::test]
async fn racing_creations_with_one_reference_make_one_customer() {
    let app = spawn_app().await;
    let attempts = (0..8).map(|i| {
        app.post(
            "/v1/customers",
            json!({ "name": format!("Racer {i}"), "external_reference": "CRM-RACE" }),
        )
    });
    let replies = futures_util::future::join_all(attempts).await;
    let created: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 1, "{replies:#?}");
    for refused in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        refused.assert_problem(StatusCode::CONFLICT, "external_reference_taken");
        assert_eq!(refused.body["customer_id"], json!(created[0].id()));
    }
    assert_eq!(app.count("customers").await, 1);
}

fn ndjson(lines: &[serde_json::Value]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn importing_a_file_twice_creates_its_referenced_customers_once() {
    let app = spawn_app().await;
    let file = ndjson(&[
        json!({ "name": "Northwind School", "special_qualifications": ["education"],
                "evidence": { "education": "QEU-1" }, "external_reference": "CRM-1" }),
        json!({ "name": "No reference" }),
        json!({ "name": "Helping Hands", "special_qualifications": ["nonprofit"],
                "evidence": { "nonprofit": "NP-7" }, "external_reference": "CRM-2" }),
    ]);
    let import = || {
        app.send_raw(
            reqwest::Method::POST,
            "/v1/customers:import",
            Some("application/x-ndjson"),
            file.clone(),
        )
    };
    let first = import().await;
    assert_eq!(first.status, StatusCode::CREATED, "{:#}", first.body);
    assert_eq!(first.body["imported"], 3);
    assert_eq!(first.body["skipped"], 0);
    let ids = first.body["customer_ids"].as_array().unwrap().clone();

    let second = import().await;
    assert_eq!(second.status, StatusCode::CREATED, "{:#}", second.body);
    // The line without a reference cannot be recognised: it is created again.
    assert_eq!(second.body["imported"], 1);
    assert_eq!(second.body["skipped"], 2);
    assert_eq!(
        second.body["already_imported"],
        json!([
            { "line": 1, "external_reference": "CRM-1", "customer_id": ids[0] },
            { "line": 3, "external_reference": "CRM-2", "customer_id": ids[2] },
        ])
    );
    assert_eq!(app.count("customers").await, 4);
    assert_eq!(app.count("customer_external_references").await, 2);
    assert_eq!(
        app.count("events where event_type = 'customer_created'")
            .await,
        4
    );

    // Two lines of one file with the same reference: the second is a bad line.
    let twice = ndjson(&[
        json!({ "name": "A", "external_reference": "CRM-9" }),
        json!({ "name": "B", "external_reference": "CRM-9" }),
    ]);
    let reply = app
        .send_raw(
            reqwest::Method::POST,
            "/v1/customers:import",
            Some("application/x-ndjson"),
            twice,
        )
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "import_rejected");
    assert_eq!(reply.body["errors"][0]["line"], 2);
    assert_eq!(reply.body["errors"][0]["field"], "external_reference");
    assert_eq!(app.count("customers").await, 4);
}
