//! The policy pages: every version and its rules for every role, and the operator's draft of the
//! next version, previewed (nothing written) and published, with each refusal next to its field.

use partner_catalog::domain::{PartnerId, Role};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::signed_in;
use crate::helpers::spawn_app;

const V2_EDUCATION_NONPROFIT: &str =
    include_str!("../../../policies/2024-01-education-nonprofit.json");

#[tokio::test]
async fn every_role_reads_the_versions_and_the_rules_of_each() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    for (role, scope) in [
        (Role::Auditor, None),
        (Role::BackOffice, None),
        (Role::SalesAgent, Some(PartnerId(partner))),
    ] {
        let user = signed_in(&app, role, scope).await;
        let page = user.get("/policies").await;
        assert_eq!(page.status, StatusCode::OK, "{role:?}");
        page.assert_contains("<a href=\"/policies\" aria-current=\"page\">Policies</a>")
            .assert_contains("<td><a href=\"/policies/1\">Version 1</a></td><td>always (the rule book)</td><td><span class=\"allowed\">in force</span></td>");
        // Only operators draft versions.
        assert!(
            !page.html.contains("id=\"draft\""),
            "{role:?} sees the draft"
        );
    }

    let auditor = signed_in(&app, Role::Auditor, None).await;
    auditor
        .get("/policies/1")
        .await
        .assert_contains(
            "<tr><td>education and state_owned_entity</td><td>Commercial and Education</td></tr>",
        )
        .assert_contains("<tr><td>None (commercial)</td><td>Commercial</td></tr>")
        .assert_contains(
            "<tr><td>GCC</td><td>required</td><td>not required</td><td>License based</td></tr>",
        )
        .assert_contains("may no longer buy Commercial, Education and Nonprofit offers.");
    for missing in ["/policies/2", "/policies/0", "/policies/x"] {
        assert_eq!(
            auditor.get(missing).await.status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
    // A draft from someone who may not publish is refused, previewed or published, and nothing
    // is written.
    let back_office = signed_in(&app, Role::BackOffice, None).await;
    let preview = back_office
        .post(
            "/policies",
            &[("document", V2_EDUCATION_NONPROFIT), ("action", "preview")],
        )
        .await;
    assert_eq!(preview.status, StatusCode::FORBIDDEN);
    let refused = auditor
        .post(
            "/policies",
            &[
                ("document", V2_EDUCATION_NONPROFIT),
                ("reason", "no"),
                ("action", "publish"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("policy_versions").await, 1);
}

#[tokio::test]
async fn an_operator_previews_a_draft_then_publishes_it_and_each_refusal_shows_at_its_field() {
    let app = spawn_app().await;
    let nonprofit = app.create_customer(&["nonprofit"]).await;
    let operator = signed_in(&app, Role::Operator, None).await;

    // The draft starts as the latest version, renumbered.
    operator
        .get("/policies")
        .await
        .assert_contains("<h2 id=\"draft\">Next version</h2>")
        .assert_contains("&#34;version&#34;: 2,");

    // A draft where a nonprofit alone is no longer a valid set: the preview names the customer.
    let mut draft: Value = serde_json::from_str(V2_EDUCATION_NONPROFIT).unwrap();
    draft["qualification_sets"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["qualifications"] != json!(["nonprofit"]));
    let draft = serde_json::to_string_pretty(&draft).unwrap();
    let previewed = operator
        .post("/policies", &[("document", &draft), ("action", "preview")])
        .await;
    assert_eq!(previewed.status, StatusCode::OK, "{}", previewed.html);
    previewed
        .assert_contains("Version 2 against version 1, in force now")
        .assert_contains("<span id=\"customer-count\">1</span>")
        .assert_contains(&format!("<li>Customer ({nonprofit}): nonprofit</li>"))
        // The form comes back as typed.
        .assert_contains("&#34;may_buy&#34;");
    assert_eq!(app.count("policy_versions").await, 1, "a preview wrote");

    // Not JSON, not a valid policy: the message is next to the document.
    let garbled = operator
        .post(
            "/policies",
            &[
                ("document", "{\"version\": 2,"),
                ("reason", "r"),
                ("action", "publish"),
            ],
        )
        .await;
    assert_eq!(garbled.status, StatusCode::UNPROCESSABLE_ENTITY);
    garbled.assert_contains(
        "<span class=\"field-error\" id=\"document-error\">This is not a policy document:",
    );
    let mut invalid: Value = serde_json::from_str(V2_EDUCATION_NONPROFIT).unwrap();
    let first = invalid["qualification_sets"][0].clone();
    invalid["qualification_sets"]
        .as_array_mut()
        .unwrap()
        .push(first);
    let invalid = operator
        .post(
            "/policies",
            &[
                ("document", &invalid.to_string()),
                ("reason", "r"),
                ("action", "publish"),
            ],
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        invalid.html.contains("id=\"document-error\">"),
        "{}",
        invalid.html
    );
    // No reason, an instant that is none, and one in the past: each at its field.
    let unreasoned = operator
        .post(
            "/policies",
            &[
                ("document", V2_EDUCATION_NONPROFIT),
                ("effective_from", "soon"),
                ("action", "publish"),
            ],
        )
        .await;
    assert_eq!(unreasoned.status, StatusCode::UNPROCESSABLE_ENTITY);
    unreasoned
        .assert_contains("id=\"reason-error\">A reason of 1 to 1000 characters")
        .assert_contains(
            "id=\"effective_from-error\">Enter a date and time (UTC), or leave it empty for now.",
        )
        .assert_contains("value=\"soon\"");
    let past = operator
        .post(
            "/policies",
            &[
                ("document", V2_EDUCATION_NONPROFIT),
                ("effective_from", "2024-01-01T00:00"),
                ("reason", "January 2024"),
                ("action", "publish"),
            ],
        )
        .await;
    assert_eq!(past.status, StatusCode::UNPROCESSABLE_ENTITY);
    past.assert_contains("id=\"effective_from-error\">Too early: a version takes effect after the latest one and never in the past, so not before 20");
    assert_eq!(app.count("policy_versions").await, 1, "a refusal wrote");

    // Published, now: version 2 is in force, and publishing is audited as the operator. Its
    // reason is shown as text.
    let published = operator
        .post(
            "/policies",
            &[
                ("document", V2_EDUCATION_NONPROFIT),
                (
                    "reason",
                    "January 2024: education and nonprofit together <script>alert(1)</script>",
                ),
                ("action", "publish"),
            ],
        )
        .await;
    assert_eq!(
        published.status,
        StatusCode::SEE_OTHER,
        "{}",
        published.html
    );
    assert_eq!(published.location.as_deref(), Some("/policies?published=2"));
    operator
        .get("/policies?published=2")
        .await
        .assert_contains("Version 2 published.")
        .assert_contains("<td><a href=\"/policies/1\">Version 1</a></td><td>always (the rule book)</td><td>superseded</td>")
        .assert_contains("<span class=\"allowed\">in force</span></td><td>January 2024: education and nonprofit together &#60;script&#62;alert(1)&#60;/script&#62;</td>");
    // A notice only for a version that exists.
    let bogus = operator.get("/policies?published=9").await;
    assert_eq!(bogus.status, StatusCode::OK);
    assert!(!bogus.html.contains("published."), "{}", bogus.html);
    let actor: String =
        sqlx::query_scalar("select actor from events where event_type = 'policy_published'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(actor, operator.user_id.to_string());
    operator.get("/policies/2").await.assert_contains(
        "<tr><td>education and nonprofit</td><td>Commercial, Education and Nonprofit</td></tr>",
    );

    // The same document again is not the next version.
    let again = operator
        .post(
            "/policies",
            &[
                ("document", V2_EDUCATION_NONPROFIT),
                ("reason", "again"),
                ("action", "publish"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    again.assert_contains(
        "id=\"document-error\">The document is version 2, but the next version to publish is 3.",
    );
}
