//! Customers in the console: search, the customer page, changing qualifications (with evidence
//! and conflicts), eligibility, the GCC lockout, and partner users' scoping.

use partner_catalog::domain::{PartnerId, Role};
use reqwest::StatusCode;
use serde_json::json;

use super::signed_in;
use crate::helpers::spawn_app;

#[tokio::test]
async fn search_finds_names_by_case_insensitive_substring_and_by_qualification() {
    let app = spawn_app().await;
    for (name, quals) in [
        ("Fabrikam University", vec!["education"]),
        ("fabrikam 100% Foundation", vec!["nonprofit"]),
        ("Contoso Ltd", vec![]),
    ] {
        let reply = app
            .post("/v1/customers", json!({"name": name, "special_qualifications": quals, "evidence": crate::helpers::evidence_for(&quals)}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let staff = signed_in(&app, Role::BackOffice, None).await;
    let page = staff.get("/customers?q=FABRIKAM").await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("Fabrikam University")
        .assert_contains("fabrikam 100% Foundation");
    assert!(!page.html.contains("Contoso"));
    // `%` is a character like any other, not a wildcard.
    let page = staff.get("/customers?q=100%25").await;
    page.assert_contains("fabrikam 100% Foundation");
    assert!(!page.html.contains("Fabrikam University"));
    let page = staff.get("/customers?q=m&qualification=none").await;
    assert!(!page.html.contains("Fabrikam University"));
    let page = staff.get("/customers?qualification=education").await;
    page.assert_contains("Fabrikam University");
    assert!(!page.html.contains("Foundation"));
    let bad = staff.get("/customers?qualification=royalty").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    bad.assert_contains("Choose a qualification from the list.");
}

#[tokio::test]
async fn search_pages_through_many_customers() {
    let app = spawn_app().await;
    for _ in 0..51 {
        app.create_customer(&[]).await;
    }
    let staff = signed_in(&app, Role::Auditor, None).await;
    let first = staff.get("/customers?q=customer").await;
    assert_eq!(
        first.html.matches("<tr><td><a href=\"/customers/").count(),
        50
    );
    let at = first.html.find("rel=\"next\"").expect("a next page link");
    let href_start = first.html[..at].rfind("href=\"").unwrap() + 6;
    let href = first.html[href_start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&");
    let second = staff.get(&href).await;
    assert_eq!(
        second.html.matches("<tr><td><a href=\"/customers/").count(),
        1
    );
    assert!(!second.html.contains("rel=\"next\""));
}

#[tokio::test]
async fn back_office_changes_qualifications_with_evidence_and_the_user_is_the_actor() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    let staff = signed_in(&app, Role::BackOffice, None).await;
    let page = staff.get(&format!("/customers/{customer}")).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("name=\"version\" value=\"1\"");
    let path = format!("/customers/{customer}/qualifications");

    let missing = staff
        .post(
            &path,
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("reason", "verified"),
            ],
        )
        .await;
    assert_eq!(
        missing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        missing.html
    );
    missing.assert_contains("id=\"evidence-education-error\"");
    missing.assert_contains("requires evidence");
    let no_reason = staff
        .post(
            &path,
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("evidence_education", "EDU-1"),
                ("reason", " "),
            ],
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    no_reason.assert_contains("id=\"reason-error\"");
    no_reason.assert_contains("value=\"EDU-1\"");
    let invalid = staff
        .post(
            &path,
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("qualification", "gcc"),
                ("evidence_education", "E"),
                ("evidence_gcc", "G"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    invalid.assert_contains("id=\"qualifications-error\"");
    assert_eq!(
        app.count("customer_qualification_history").await,
        1,
        "nothing written"
    );

    let done = staff
        .post(
            &path,
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("evidence_education", "EDU-1"),
                ("reason", "verified by phone"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let page = staff.get(&done.location.unwrap()).await;
    page.assert_contains("The qualifications were changed.")
        .assert_contains("verified by phone")
        .assert_contains("EDU-1")
        .assert_contains("name=\"version\" value=\"2\"");
    let display: String = sqlx::query_scalar("select display_name from users where id = $1")
        .bind(staff.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    page.assert_contains(&format!("by {display} (back_office)"));
    let actor: String = sqlx::query_scalar(
        "select actor from events where event_type = 'customer_qualifications_set' and customer_id = $1",
    )
    .bind(customer)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(actor, staff.user_id.to_string());
}

#[tokio::test]
async fn an_edit_that_raced_a_colleague_shows_both_versions_and_writes_nothing() {
    let app = spawn_app().await;
    let customer = app.create_customer(&[]).await;
    let staff = signed_in(&app, Role::BackOffice, None).await;
    // A colleague saves version 2 through the API while our form still says version 1.
    assert!(
        app.set_qualifications(customer, &["nonprofit"])
            .await
            .status
            .is_success()
    );
    let conflict = staff
        .post(
            &format!("/customers/{customer}/qualifications"),
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("evidence_education", "EDU-1"),
                ("reason", "mine"),
            ],
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.html);
    conflict
        .assert_contains("was changed while you were editing")
        .assert_contains("You edited version 1, but version 2 is now on record")
        .assert_contains("<span class=\"tag\">education</span>")
        .assert_contains("<span class=\"tag\">nonprofit</span>")
        .assert_contains("Start over from version 2");
    assert_eq!(app.count("customer_qualification_history").await, 2);
}

#[tokio::test]
async fn the_customer_page_shows_the_gcc_lockout_and_explains_eligibility() {
    let app = spawn_app().await;
    let customer = app.create_customer(&["gcc"]).await;
    let partner = app.create_qualified_partner().await;
    app.link(customer, partner).await;
    let gcc = app.create_offer("gcc", "license_based").await;
    app.create_offer("commercial", "license_based").await;
    assert!(
        app.purchase(customer, partner, gcc, "k1")
            .await
            .status
            .is_success()
    );

    let staff = signed_in(&app, Role::BackOffice, None).await;
    let page = staff
        .get(&format!(
            "/customers/{customer}?partner={partner}#eligibility"
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("id=\"gcc-lockout\"")
        .assert_contains("<span class=\"denied\">denied</span>")
        .assert_contains(
            "The customer has a GCC subscription, so it may not buy commercial subscriptions.",
        )
        .assert_contains("<span class=\"allowed\">allowed</span>");
    // As of a day before anything existed, nothing could have been sold.
    let before = staff
        .get(&format!(
            "/customers/{customer}?partner={partner}&as_of=2001-01-01"
        ))
        .await;
    before.assert_contains("did not exist yet on that date");
    let bad = staff
        .get(&format!(
            "/customers/{customer}?partner={partner}&as_of=yesterday"
        ))
        .await;
    bad.assert_contains("Enter a date as YYYY-MM-DD");
}

#[tokio::test]
async fn partner_users_see_only_their_customers_and_get_the_same_not_found_for_others() {
    let app = spawn_app().await;
    let mine = app.create_qualified_partner().await;
    let theirs = app.create_qualified_partner().await;
    let my_customer = app.create_customer(&[]).await;
    let their_customer = app.create_customer(&[]).await;
    app.link(my_customer, mine).await;
    app.link(their_customer, theirs).await;
    let agent = signed_in(&app, Role::SalesAgent, Some(PartnerId(mine))).await;

    let list = agent.get("/customers?q=customer").await;
    list.assert_contains(&my_customer.to_string());
    assert!(!list.html.contains(&their_customer.to_string()));
    assert_eq!(
        agent.get(&format!("/customers/{my_customer}")).await.status,
        StatusCode::OK
    );
    let other = agent.get(&format!("/customers/{their_customer}")).await;
    let absent = agent
        .get(&format!("/customers/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(
        other.html, absent.html,
        "another partner's customer looks like no customer"
    );
    // No change form for a sales agent, and posting one anyway is refused.
    let page = agent.get(&format!("/customers/{my_customer}")).await;
    assert!(!page.html.contains("Change qualifications"));
    let refused = agent
        .post(
            &format!("/customers/{my_customer}/qualifications"),
            &[("version", "1"), ("reason", "x")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn names_are_shown_as_text_never_as_markup() {
    let app = spawn_app().await;
    let reply = app
        .post("/v1/customers", json!({"name": "<script>alert(1)</script>", "special_qualifications": [], "evidence": {}}))
        .await;
    let id = reply.id();
    let staff = signed_in(&app, Role::BackOffice, None).await;
    for page in [
        staff.get(&format!("/customers/{id}")).await,
        staff.get("/customers?q=script").await,
    ] {
        assert!(
            !page.html.contains("<script>alert(1)</script>"),
            "{}",
            page.html
        );
        page.assert_contains("&#60;script&#62;alert(1)");
    }
}

#[tokio::test]
async fn back_office_creates_customers_links_partners_and_changes_subscription_status() {
    let app = spawn_app().await;
    let staff = signed_in(&app, Role::BackOffice, None).await;
    let bad = staff
        .post(
            "/customers/new",
            &[
                ("name", ""),
                ("qualification", "nonprofit"),
                ("reason", "new"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    bad.assert_contains("id=\"name-error\"")
        .assert_contains("id=\"evidence-nonprofit-error\"");
    let created = staff
        .post(
            "/customers/new",
            &[
                ("name", "Northwind Charity"),
                ("qualification", "nonprofit"),
                ("evidence_nonprofit", "NP-7"),
                ("reason", "new"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let location = created.location.unwrap();
    let with_reference = &[
        ("name", "Contoso Academy"),
        ("external_reference", "CRM-42"),
        ("reason", "new"),
    ];
    let first = staff.post("/customers/new", with_reference).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.html);
    let again = staff.post("/customers/new", with_reference).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    again
        .assert_contains("id=\"external_reference-error\"")
        .assert_contains("already has the external reference CRM-42");
    let holders: i64 =
        sqlx::query_scalar("select count(*) from customers where external_reference = 'CRM-42'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(holders, 1);
    let customer: uuid::Uuid = location.trim_start_matches("/customers/").parse().unwrap();

    let partner = app.create_qualified_partner().await;
    let linked = staff
        .post(
            &format!("/customers/{customer}/partners"),
            &[("partner", &partner.to_string())],
        )
        .await;
    assert_eq!(linked.status, StatusCode::SEE_OTHER);
    let offer = app.create_offer("nonprofit", "license_based").await;
    let bought = app.purchase(customer, partner, offer, "k").await;
    assert!(bought.status.is_success(), "{:#}", bought.body);
    let subscription = bought.id();
    let changed = staff
        .post(
            &format!("/customers/{customer}/subscriptions/{subscription}/status"),
            &[("status", "suspended"), ("reason", "unpaid invoice")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.html);
    let status: String = sqlx::query_scalar("select status from subscriptions where id = $1")
        .bind(subscription)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "suspended");
    let page = staff.get(&location).await;
    page.assert_contains("Northwind Charity")
        .assert_contains("suspended")
        .assert_contains("direct_bill_partner partner");
}

#[tokio::test]
async fn partner_users_see_staff_by_role_not_by_name() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let staff = signed_in(&app, Role::BackOffice, None).await;
    let changed = staff
        .post(
            &format!("/customers/{customer}/qualifications"),
            &[
                ("version", "1"),
                ("qualification", "nonprofit"),
                ("evidence_nonprofit", "NP-1"),
                ("reason", "registry"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER);
    let agent = signed_in(&app, Role::SalesAgent, Some(PartnerId(partner))).await;
    let page = agent.get(&format!("/customers/{customer}")).await;
    page.assert_contains("by back_office staff");
    let display: String = sqlx::query_scalar("select display_name from users where id = $1")
        .bind(staff.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        !page.html.contains(&display),
        "no staff display name: {}",
        page.html
    );
    staff
        .get(&format!("/customers/{customer}"))
        .await
        .assert_contains("(test) (back_office)");
}
