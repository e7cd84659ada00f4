use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_created_partner_can_be_read_back_and_is_recorded_as_an_event() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/v1/partners",
            json!({ "name": "  Contoso  ", "kind": "indirect_reseller", "reseller_qualifications": ["nonprofit", "education", "education"] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let id = reply.id();
    assert_eq!(reply.headers["location"], format!("/v1/partners/{id}"));

    let fetched = app.get(&format!("/v1/partners/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["name"], "Contoso");
    assert_eq!(fetched.body["kind"], "indirect_reseller");
    assert_eq!(
        fetched.body["reseller_qualifications"],
        json!(["education", "nonprofit"])
    );
    assert_eq!(fetched.body["indirect_providers"], json!([]));

    let events: Vec<(String, Option<String>)> =
        sqlx::query_as("select event_type, request_id from events where partner_id = $1")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "partner_created");
    assert!(events[0].1.is_some(), "events carry the request id");
}

#[tokio::test]
async fn partners_are_listed_with_keyset_pagination() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.create_qualified_partner().await);
    }
    let first = app.get("/v1/partners?limit=2").await;
    assert_eq!(first.status, StatusCode::OK);
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&first.body),
        [created[0].to_string(), created[1].to_string()]
    );
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();

    let second = app
        .get(&format!("/v1/partners?limit=2&after={cursor}"))
        .await;
    assert_eq!(
        ids(&second.body),
        [created[2].to_string(), created[3].to_string()]
    );
    let cursor = second.body["next_cursor"].as_str().unwrap().to_owned();

    let last = app
        .get(&format!("/v1/partners?limit=2&after={cursor}"))
        .await;
    assert_eq!(ids(&last.body), [created[4].to_string()]);
    assert!(last.body["next_cursor"].is_null());

    app.get("/v1/partners?limit=0")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
    app.get("/v1/partners?limit=201")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
}

#[tokio::test]
async fn reseller_qualifications_are_replaced_with_before_and_after_in_the_log() {
    let app = spawn_app().await;
    let id = app
        .create_partner("direct_bill_partner", &["education"])
        .await;
    let reply = app
        .put(
            &format!("/v1/partners/{id}/reseller-qualifications"),
            json!({ "reseller_qualifications": ["gcc", "nonprofit"], "reason": "program enrollment" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    assert_eq!(
        reply.body["reseller_qualifications"],
        json!(["gcc", "nonprofit"])
    );

    let payload: serde_json::Value = sqlx::query_scalar(
        "select payload from events where partner_id = $1 and event_type = 'partner_qualifications_set'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        payload,
        json!({ "before": ["education"], "after": ["gcc", "nonprofit"], "reason": "program enrollment" })
    );

    let unknown = uuid::Uuid::now_v7();
    app.put(
        &format!("/v1/partners/{unknown}/reseller-qualifications"),
        json!({ "reseller_qualifications": [] }),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "partner_not_found");
    app.put(
        &format!("/v1/partners/{id}/reseller-qualifications"),
        json!({ "reseller_qualifications": ["state_owned_entity"] }),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
}

#[tokio::test]
async fn only_indirect_resellers_link_and_only_to_indirect_providers() {
    let app = spawn_app().await;
    let reseller = app.create_partner("indirect_reseller", &[]).await;
    let provider = app.create_partner("indirect_provider", &[]).await;
    let direct = app.create_partner("direct_bill_partner", &[]).await;
    let path = format!("/v1/partners/{reseller}/indirect-providers");

    let reply = app.put(&path, json!({ "provider_ids": [provider] })).await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    assert_eq!(reply.body["indirect_providers"], json!([provider]));

    app.put(&path, json!({ "provider_ids": [direct] }))
        .await
        .assert_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "provider_not_indirect_provider",
        );
    app.put(&path, json!({ "provider_ids": [uuid::Uuid::now_v7()] }))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "provider_not_found");
    app.put(
        &format!("/v1/partners/{direct}/indirect-providers"),
        json!({ "provider_ids": [provider] }),
    )
    .await
    .assert_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "partner_not_indirect_reseller",
    );

    // The failed attempts changed nothing.
    let fetched = app.get(&format!("/v1/partners/{reseller}")).await;
    assert_eq!(fetched.body["indirect_providers"], json!([provider]));
    assert_eq!(app.count("indirect_reseller_providers").await, 1);

    let cleared = app.put(&path, json!({ "provider_ids": [] })).await;
    assert_eq!(cleared.body["indirect_providers"], json!([]));
}
