use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_created_partner_can_be_read_back_and_is_recorded_as_an_event() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/v1/partners",
            json!({
                "name": "  Contoso  ",
                "kind": "indirect_reseller",
                "reseller_qualifications": ["nonprofit", "education", "education"],
                "evidence": { "nonprofit": "NPA-7", "education": "EPA-3" },
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let id = reply.id();
    assert_eq!(reply.headers["location"], format!("/v1/partners/{id}"));
    assert_eq!(reply.headers["etag"], "\"1\"");

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
async fn a_partner_is_created_only_with_evidence_for_its_reseller_qualifications() {
    let app = spawn_app().await;
    let reply = app
        .post("/v1/partners", json!({ "name": "P", "kind": "direct_bill_partner", "reseller_qualifications": ["gcc"] }))
        .await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(reply.body["field"], "evidence.gcc");
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("government cloud validation enrollment")
    );
    assert_eq!(app.count("partners").await, 0);
}

#[tokio::test]
async fn reseller_qualifications_change_with_evidence_reason_and_if_match() {
    let app = spawn_app().await;
    let id = app
        .create_partner("direct_bill_partner", &["education"])
        .await;
    let path = format!("/v1/partners/{id}/reseller-qualifications");
    let change = json!({
        "reseller_qualifications": ["gcc", "nonprofit"],
        "evidence": { "gcc": "GCV-ENROLL-1", "nonprofit": "NPA-1" },
        "reason": "program enrollment",
    });

    app.put(&path, change.clone())
        .await
        .assert_problem(StatusCode::PRECONDITION_REQUIRED, "if_match_required");
    let stale = app.put_if_match(&path, "\"7\"", change.clone()).await;
    stale.assert_problem(StatusCode::PRECONDITION_FAILED, "version_mismatch");
    assert_eq!(stale.headers["etag"], "\"1\"");
    assert_eq!(
        stale.body["current"]["reseller_qualifications"],
        json!(["education"])
    );

    let without_reason = json!({ "reseller_qualifications": ["gcc"], "evidence": { "gcc": "G" } });
    let reply = app.put_if_match(&path, "\"1\"", without_reason).await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(reply.body["field"], "reason");
    let without_evidence =
        json!({ "reseller_qualifications": ["education", "gcc"], "reason": "r" });
    let reply = app.put_if_match(&path, "\"1\"", without_evidence).await;
    assert_eq!(reply.body["field"], "evidence.gcc");

    let reply = app.put_if_match(&path, "\"1\"", change).await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    assert_eq!(
        reply.body["reseller_qualifications"],
        json!(["gcc", "nonprofit"])
    );
    assert_eq!(reply.headers["etag"], "\"2\"");

    let payload: serde_json::Value = sqlx::query_scalar(
        "select payload from events where partner_id = $1 and event_type = 'partner_qualifications_set'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(payload["before"], json!(["education"]));
    assert_eq!(payload["after"], json!(["gcc", "nonprofit"]));
    assert_eq!(
        payload["evidence"],
        json!({ "gcc": "GCV-ENROLL-1", "nonprofit": "NPA-1" })
    );
    assert_eq!(payload["reason"], "program enrollment");

    let unknown = uuid::Uuid::now_v7();
    app.put_if_match(
        &format!("/v1/partners/{unknown}/reseller-qualifications"),
        "*",
        json!({ "reseller_qualifications": [], "reason": "r" }),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "partner_not_found");
    app.put_if_match(
        &path,
        "*",
        json!({ "reseller_qualifications": ["state_owned_entity"], "reason": "r" }),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
}

#[tokio::test]
async fn the_partner_profile_history_answers_what_was_true_when() {
    let app = spawn_app().await;
    let reseller = app
        .create_partner("indirect_reseller", &["education"])
        .await;
    let provider = app.create_partner("indirect_provider", &[]).await;
    let created = chrono::Utc::now();
    assert_eq!(
        app.set_providers(reseller, &[provider]).await.status,
        StatusCode::OK
    );
    let linked = chrono::Utc::now();
    let etag = app.etag(&format!("/v1/partners/{reseller}")).await;
    let reply = app
        .put_if_match(
            &format!("/v1/partners/{reseller}/reseller-qualifications"),
            &etag,
            json!({ "reseller_qualifications": [], "reason": "authorization lapsed" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let history = app
        .get(&format!("/v1/partners/{reseller}/profile/history"))
        .await;
    let items = history.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["version"], 1);
    assert_eq!(items[0]["evidence"], json!({ "education": "EV-education" }));
    assert_eq!(items[1]["indirect_providers"], json!([provider]));
    assert_eq!(
        items[1]["evidence"],
        json!({ "education": "EV-education" }),
        "kept qualifications keep evidence"
    );
    assert_eq!(items[2]["reseller_qualifications"], json!([]));
    assert_eq!(items[2]["reason"], "authorization lapsed");
    assert_eq!(items[0]["valid_to"], items[1]["valid_from"]);
    assert_eq!(items[1]["valid_to"], items[2]["valid_from"]);
    assert!(items[2]["valid_to"].is_null());
    assert_eq!(
        items[2]["actor"],
        app.principal_id(&app.back_office).await.to_string()
    );

    let at = |t: chrono::DateTime<chrono::Utc>| {
        format!(
            "/v1/partners/{reseller}/profile?as_of={}",
            t.format("%Y-%m-%dT%H:%M:%S%.6fZ")
        )
    };
    let then = app.get(&at(created)).await;
    assert_eq!(then.body["version"], 1);
    assert_eq!(then.body["indirect_providers"], json!([]));
    assert_eq!(app.get(&at(linked)).await.body["version"], 2);
    assert_eq!(
        app.get(&format!("/v1/partners/{reseller}/profile"))
            .await
            .body["version"],
        3
    );
    app.get(&at(created - chrono::Duration::days(1)))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_recorded_at");
}

#[tokio::test]
async fn only_indirect_resellers_link_and_only_to_indirect_providers() {
    let app = spawn_app().await;
    let reseller = app.create_partner("indirect_reseller", &[]).await;
    let provider = app.create_partner("indirect_provider", &[]).await;
    let direct = app.create_partner("direct_bill_partner", &[]).await;

    let reply = app.set_providers(reseller, &[provider]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    assert_eq!(reply.body["indirect_providers"], json!([provider]));

    app.set_providers(reseller, &[direct]).await.assert_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "provider_not_indirect_provider",
    );
    app.set_providers(reseller, &[uuid::Uuid::now_v7()])
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "provider_not_found");
    app.set_providers(direct, &[provider]).await.assert_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "partner_not_indirect_reseller",
    );

    // The failed attempts changed nothing.
    let fetched = app.get(&format!("/v1/partners/{reseller}")).await;
    assert_eq!(fetched.body["indirect_providers"], json!([provider]));
    assert_eq!(fetched.body["version"], 2);
    assert_eq!(app.count("indirect_reseller_providers").await, 1);
    assert_eq!(app.count("partner_profile_history").await, 4);

    let cleared = app.set_providers(reseller, &[]).await;
    assert_eq!(cleared.body["indirect_providers"], json!([]));
}
