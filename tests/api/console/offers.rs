//! The offer catalog page and its create form.

use partner_catalog::domain::Role;
use reqwest::StatusCode;

use super::signed_in;
use crate::helpers::spawn_app;

#[tokio::test]
async fn an_operator_creates_offers_and_an_r1_refusal_shows_next_to_the_product_kind() {
    let app = spawn_app().await;
    let operator = signed_in(&app, Role::Operator, None).await;
    let empty = operator.get("/offers").await;
    assert_eq!(empty.status, StatusCode::OK);
    empty
        .assert_contains("The catalog is empty.")
        .assert_contains("<h2 id=\"create\">Create offer</h2>");

    let created = operator
        .post(
            "/offers",
            &[
                ("name", "Microsoft 365 A3"),
                ("segment", "education"),
                ("product_kind", "license_based"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let (id, segment, kind): (uuid::Uuid, String, String) =
        sqlx::query_as("select id, segment, product_kind from offers")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (segment.as_str(), kind.as_str()),
        ("education", "license_based")
    );
    assert_eq!(
        created.location.as_deref(),
        Some(format!("/offers?created={id}").as_str())
    );
    let actor: String =
        sqlx::query_scalar("select actor from events where event_type = 'offer_created'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(actor, operator.user_id.to_string());
    operator
        .get(created.location.as_deref().unwrap())
        .await
        .assert_contains("Offer “Microsoft 365 A3” created.")
        .assert_contains("<tr><td>Microsoft 365 A3</td><td>Education</td><td>License based</td>");

    // R1: a special offer that is not license based is refused at the product kind, as typed.
    let refused = operator
        .post(
            "/offers",
            &[
                ("name", "Azure Gov"),
                ("segment", "gcc"),
                ("product_kind", "azure"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    refused
        .assert_contains("id=\"product_kind-error\">R1: the policy in force does not sell gcc offers as azure: special prices are only for the product kinds it lists.</span>")
        .assert_contains("name=\"name\" value=\"Azure Gov\"")
        .assert_contains("value=\"gcc\" selected")
        .assert_contains("value=\"azure\" selected");
    let blank = operator
        .post(
            "/offers",
            &[("name", ""), ("segment", ""), ("product_kind", "azure")],
        )
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    blank
        .assert_contains("id=\"name-error\">The name must have 1 to 200 characters")
        .assert_contains("id=\"segment-error\">Choose the segment");
    assert_eq!(app.count("offers").await, 1);

    assert_eq!(
        operator
            .get(&format!("/offers?created={}", uuid::Uuid::now_v7()))
            .await
            .status,
        StatusCode::OK
    );

    // The catalog by segment.
    operator
        .post(
            "/offers",
            &[
                ("name", "Azure plan"),
                ("segment", "commercial"),
                ("product_kind", "azure"),
            ],
        )
        .await;
    let education = operator.get("/offers?segment=education").await;
    education.assert_contains("Microsoft 365 A3");
    assert!(!education.html.contains("Azure plan"));
    operator.get("/offers").await.assert_contains("Azure plan");
    assert!(
        operator
            .get("/offers?segment=nonprofit")
            .await
            .html
            .contains("No offer in this segment.")
    );
}

#[tokio::test]
async fn a_back_office_user_reads_the_catalog_but_cannot_create_offers() {
    let app = spawn_app().await;
    app.create_offer("education", "license_based").await;
    let back_office = signed_in(&app, Role::BackOffice, None).await;
    let page = back_office.get("/offers").await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("education offer");
    assert!(!page.html.contains("Create offer"));

    let refused = back_office
        .post(
            "/offers",
            &[
                ("name", "Sneaky"),
                ("segment", "commercial"),
                ("product_kind", "azure"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    refused.assert_contains("may not do this");
    assert_eq!(app.count("offers").await, 1);
}
