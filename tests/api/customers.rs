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
