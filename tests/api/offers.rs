use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn special_offers_must_be_license_based() {
    let app = spawn_app().await;
    for segment in ["education", "nonprofit", "gcc"] {
        for kind in ["software_subscription", "perpetual_software", "azure"] {
            app.post(
                "/v1/offers",
                json!({ "name": "x", "segment": segment, "product_kind": kind }),
            )
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "offer_not_license_based");
        }
        app.create_offer(segment, "license_based").await;
    }
    for kind in [
        "license_based",
        "software_subscription",
        "perpetual_software",
        "azure",
    ] {
        app.create_offer("commercial", kind).await;
    }
    assert_eq!(app.count("offers").await, 7);
    assert_eq!(
        app.count("events where event_type = 'offer_created'").await,
        7
    );
}

#[tokio::test]
async fn offers_are_read_back_and_filtered() {
    let app = spawn_app().await;
    let gcc = app.create_offer("gcc", "license_based").await;
    let azure = app.create_offer("commercial", "azure").await;
    let fetched = app.get(&format!("/v1/offers/{gcc}")).await;
    assert_eq!(fetched.body["segment"], "gcc");
    assert_eq!(fetched.body["product_kind"], "license_based");

    let only_gcc = app.get("/v1/offers?segment=gcc").await;
    assert_eq!(only_gcc.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(only_gcc.body["items"][0]["id"], gcc.to_string());
    let only_azure = app.get("/v1/offers?product_kind=azure").await;
    assert_eq!(only_azure.body["items"][0]["id"], azure.to_string());
    let all = app.get("/v1/offers").await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);

    app.get("/v1/offers?segment=retail")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
    app.get(&format!("/v1/offers/{}", uuid::Uuid::now_v7()))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "offer_not_found");
}
