//! Partner pages: search, a partner's profile, history and customers, and the back-office forms
//! that change the profile under its version.

use partner_catalog::domain::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::signed_in;
use crate::helpers::{TestApp, evidence_for, spawn_app};

/// Creates a partner through the API (back office), with evidence `EV-<q>` for each qualification.
async fn partner(app: &TestApp, name: &str, kind: &str, quals: &[&str]) -> Uuid {
    let reply = app
        .post(
            "/v1/partners",
            json!({ "name": name, "kind": kind, "reseller_qualifications": quals,
                    "evidence": evidence_for(quals) }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
    reply.id()
}

/// Partner links in a result table (not the navigation's `/partners`).
fn listed(html: &str) -> usize {
    html.matches("<td><a href=\"/partners/").count()
}

async fn version(app: &TestApp, id: Uuid) -> i64 {
    sqlx::query_scalar("select version from partners where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn events_of(app: &TestApp, partner: Uuid, event_type: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select actor from events where partner_id = $1 and event_type = $2 order by occurred_at",
    )
    .bind(partner)
    .bind(event_type)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn search_finds_names_by_substring_ignoring_case_and_pages() {
    let app = spawn_app().await;
    let contoso = partner(
        &app,
        "Contoso Reseller",
        "direct_bill_partner",
        &["education"],
    )
    .await;
    let east = partner(&app, "West contoso east", "indirect_reseller", &[]).await;
    partner(&app, "Fabrikam", "direct_bill_partner", &["gcc"]).await;
    let percent = partner(&app, "100% Cloud", "indirect_provider", &[]).await;
    partner(&app, "1000 Cloud", "indirect_provider", &[]).await;
    let console = signed_in(&app, Role::Auditor, None).await;

    let found = console.get("/partners?q=ONTOSO").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(listed(&found.html), 2, "{}", found.html);
    found
        .assert_contains(&format!(
            "href=\"/partners/{contoso}\">Contoso Reseller</a>"
        ))
        .assert_contains(&format!("href=\"/partners/{east}\">West contoso east</a>"))
        .assert_contains("value=\"ONTOSO\"");
    assert!(!found.html.contains("Fabrikam"));

    // `%` and `_` are matched literally, not as wildcards.
    let literal = console.get("/partners?q=0%25").await;
    assert_eq!(listed(&literal.html), 1, "{}", literal.html);
    literal.assert_contains(&format!("/partners/{percent}"));
    assert_eq!(listed(&console.get("/partners?q=_").await.html), 0);

    // Filters: kind and reseller qualification (or none).
    let resellers = console.get("/partners?kind=indirect_reseller").await;
    assert_eq!(listed(&resellers.html), 1);
    resellers.assert_contains("West contoso east");
    let education = console.get("/partners?q=&qualification=education").await;
    assert_eq!(listed(&education.html), 1);
    education.assert_contains("Contoso Reseller");
    let none = console.get("/partners?qualification=none&kind=").await;
    assert_eq!(listed(&none.html), 3, "{}", none.html);
    assert_eq!(
        console.get("/partners?kind=reseller").await.status,
        StatusCode::BAD_REQUEST
    );

    // Keyset pages of 50: "Next page" leads to the rest, and the last page has no next.
    for n in 0..52 {
        partner(
            &app,
            &format!("Paging partner {n}"),
            "direct_bill_partner",
            &[],
        )
        .await;
    }
    let first = console.get("/partners?q=paging").await;
    assert_eq!(listed(&first.html), 50);
    let at = first.html.find("rel=\"next\"").expect("a next page");
    let href_start = first.html[..at].rfind("href=\"").unwrap() + "href=\"".len();
    let href = first.html[href_start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&");
    assert!(href.contains("q=paging"), "{href}");
    let second = console.get(&href).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(listed(&second.html), 2, "{}", second.html);
    assert!(!second.html.contains("rel=\"next\""));
}

#[tokio::test]
async fn a_partner_page_shows_qualifications_providers_history_and_customers() {
    let app = spawn_app().await;
    let provider = partner(&app, "Northwind Distribution", "indirect_provider", &[]).await;
    let reseller = partner(
        &app,
        "Contoso Reseller",
        "indirect_reseller",
        &["education"],
    )
    .await;
    let reply = app.set_providers(reseller, &[provider]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
    let related = app.create_customer(&["education"]).await;
    app.link(related, reseller).await;
    let unrelated = app.create_customer(&[]).await;

    let auditor = signed_in(&app, Role::Auditor, None).await;
    let page = auditor.get(&format!("/partners/{reseller}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    page.assert_contains("<h1>Contoso Reseller</h1>")
        .assert_contains("Indirect reseller")
        .assert_contains("<dt>Version</dt><dd>2</dd>")
        // The qualification with its evidence.
        .assert_contains("<tr><td>Education</td><td class=\"mono\">EV-education</td></tr>")
        // The provider, linked to its page.
        .assert_contains(&format!(
            "<a href=\"/partners/{provider}\">Northwind Distribution</a>"
        ))
        // Both versions of the history, with their reasons; the API's token is the actor.
        .assert_contains("partner created")
        .assert_contains("<td>test</td>")
        .assert_contains("<span class=\"tag\">current</span>")
        .assert_contains("token “test” (back_office)")
        // Its customers, and only those.
        .assert_contains(&format!("href=\"/customers/{related}\""));
    assert!(!page.html.contains(&unrelated.to_string()));
    assert_eq!(page.html.matches("<td>1<").count(), 1, "version 1 row");
    // An auditor reads; only back office gets the forms.
    assert!(!page.html.contains("Change reseller qualifications"));
    assert!(!page.html.contains("Change indirect providers"));

    let back_office = signed_in(&app, Role::BackOffice, None).await;
    let page = back_office.get(&format!("/partners/{reseller}")).await;
    page.assert_contains("Change reseller qualifications")
        .assert_contains("Change indirect providers")
        .assert_contains("name=\"version\" value=\"2\"")
        .assert_contains(&format!("name=\"provider\" value=\"{provider}\" checked"));

    // An operator reads partners but not customers: the page, without the customers.
    let operator = signed_in(&app, Role::Operator, None).await;
    let page = operator.get(&format!("/partners/{reseller}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.html.contains("id=\"customers\""));

    let missing = auditor.get(&format!("/partners/{}", Uuid::now_v7())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        auditor.get("/partners/not-an-id").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn back_office_creates_a_partner_and_other_roles_cannot() {
    let app = spawn_app().await;
    let back_office = signed_in(&app, Role::BackOffice, None).await;
    let form = back_office.get("/partners/new").await;
    assert_eq!(form.status, StatusCode::OK);
    form.assert_contains("<label for=\"name\">");

    let blank = back_office
        .post(
            "/partners",
            &[("name", "  "), ("kind", "indirect_reseller")],
        )
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    blank
        .assert_contains("id=\"name-error\">The name must have 1 to 200 characters")
        .assert_contains("value=\"indirect_reseller\" selected");
    assert_eq!(app.count("partners").await, 0);

    let created = back_office
        .post(
            "/partners",
            &[("name", "Contoso"), ("kind", "indirect_reseller")],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let id: Uuid = sqlx::query_scalar("select id from partners where name = 'Contoso'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        created.location.as_deref(),
        Some(format!("/partners/{id}?done=created").as_str())
    );
    assert_eq!(
        events_of(&app, id, "partner_created").await,
        [back_office.user_id.to_string()]
    );

    let auditor = signed_in(&app, Role::Auditor, None).await;
    assert_eq!(
        auditor.get("/partners/new").await.status,
        StatusCode::FORBIDDEN
    );
    let refused = auditor
        .post(
            "/partners",
            &[("name", "Fabrikam"), ("kind", "indirect_reseller")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        !auditor
            .get("/partners")
            .await
            .html
            .contains("Create partner")
    );
    assert_eq!(app.count("partners").await, 1);
}

#[tokio::test]
async fn changing_reseller_qualifications_records_a_version_and_an_event_by_the_console_user() {
    let app = spawn_app().await;
    let id = partner(&app, "Contoso", "direct_bill_partner", &["education"]).await;
    let console = signed_in(&app, Role::BackOffice, None).await;

    let saved = console
        .post(
            &format!("/partners/{id}/reseller-qualifications"),
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("qualification", "gcc"),
                ("evidence.education", ""),
                ("evidence.gcc", " GCV-ENROLL-7 "),
                ("evidence.nonprofit", ""),
                ("reason", "enrolled in GCC"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    assert_eq!(
        saved.location.as_deref(),
        Some(format!("/partners/{id}?done=qualifications").as_str())
    );

    let (quals, stored_version): (Vec<String>, i64) =
        sqlx::query_as("select reseller_qualifications, version from partners where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (quals, stored_version),
        (vec!["education".into(), "gcc".into()], 2)
    );
    let (evidence, reason, actor): (serde_json::Value, String, String) = sqlx::query_as(
        "select evidence, reason, actor from partner_profile_history
         where partner_id = $1 and version = 2",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // The kept qualification keeps its evidence; the added one has the trimmed new reference.
    assert_eq!(
        evidence,
        json!({"education": "EV-education", "gcc": "GCV-ENROLL-7"})
    );
    assert_eq!(reason, "enrolled in GCC");
    assert_eq!(actor, console.user_id.to_string());
    assert_eq!(
        events_of(&app, id, "partner_qualifications_set").await,
        [console.user_id.to_string()]
    );

    let page = console.get(saved.location.as_deref().unwrap()).await;
    page.assert_contains("Reseller qualifications saved as version 2.")
        .assert_contains("<tr><td>GCC</td><td class=\"mono\">GCV-ENROLL-7</td></tr>")
        .assert_contains("enrolled in GCC")
        .assert_contains("(back_office)<br>");
}

#[tokio::test]
async fn missing_evidence_or_reason_shows_the_form_again_with_messages_and_writes_nothing() {
    let app = spawn_app().await;
    let id = partner(&app, "Contoso", "direct_bill_partner", &["education"]).await;
    let console = signed_in(&app, Role::BackOffice, None).await;
    let path = format!("/partners/{id}/reseller-qualifications");
    let before = app.snapshot().await;

    // No evidence for an added qualification, and no reason: both messages at once.
    let page = console
        .post(
            &path,
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("qualification", "gcc"),
                ("qualification", "nonprofit"),
                ("evidence.nonprofit", "NP-REG-3"),
                ("evidence.gcc", "   "),
                ("reason", ""),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.html
    );
    page.assert_contains(
        "id=\"evidence-gcc-error\">Adding gcc requires evidence: the government cloud validation enrollment reference.</span>",
    )
    .assert_contains("id=\"q-reason-error\">A reason of 1 to 1000 characters")
    // What was typed is kept.
    .assert_contains("value=\"gcc\" checked")
    .assert_contains("value=\"nonprofit\" checked")
    .assert_contains("name=\"evidence.nonprofit\" value=\"NP-REG-3\"")
    .assert_contains("name=\"version\" value=\"1\"");

    // With a reason, the use case itself refuses the missing evidence.
    let page = console
        .post(
            &path,
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("qualification", "gcc"),
                ("reason", "enrolled"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_contains("id=\"evidence-gcc-error\">Adding gcc requires evidence")
        .assert_contains(">enrolled</textarea>");
    assert!(!page.html.contains("id=\"q-reason-error\""));

    assert_eq!(app.snapshot().await, before);
    assert_eq!(version(&app, id).await, 1);
}

#[tokio::test]
async fn an_edit_that_raced_a_colleague_shows_both_versions_and_writes_nothing() {
    let app = spawn_app().await;
    let id = partner(&app, "Contoso", "direct_bill_partner", &["education"]).await;
    let colleague = signed_in(&app, Role::BackOffice, None).await;
    let me = signed_in(&app, Role::BackOffice, None).await;
    let path = format!("/partners/{id}/reseller-qualifications");

    // Both opened the form at version 1; the colleague saved first.
    let theirs = colleague
        .post(
            &path,
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("qualification", "gcc"),
                ("evidence.gcc", "GCV-1"),
                ("reason", "colleague enrolled GCC"),
            ],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::SEE_OTHER, "{}", theirs.html);
    let before = app.snapshot().await;

    let mine = me
        .post(
            &path,
            &[
                ("version", "1"),
                ("qualification", "education"),
                ("qualification", "nonprofit"),
                ("evidence.nonprofit", "NP-REG-9"),
                ("reason", "my nonprofit change"),
            ],
        )
        .await;
    assert_eq!(mine.status, StatusCode::CONFLICT, "{}", mine.html);
    mine.assert_contains("<strong>not saved</strong>")
        .assert_contains("What you submitted (on version 1)")
        .assert_contains("What is stored now (version 2)")
        // Side by side: mine, then what is stored.
        .assert_contains(
            "<tr class=\"differs\"><th scope=\"row\">Reseller qualifications</th><td>Education, Nonprofit</td><td>Education, GCC</td></tr>",
        )
        .assert_contains("<td>Education: EV-education, Nonprofit: NP-REG-9</td><td>Education: EV-education, GCC: GCV-1</td>")
        .assert_contains("<td>my nonprofit change</td><td>colleague enrolled GCC</td>")
        // Who changed it, and when.
        .assert_contains(&colleague.user_id.to_string())
        .assert_contains("(back_office)<br>")
        .assert_contains(&format!("href=\"/partners/{id}#qualifications\">Start over from version 2</a>"));

    assert_eq!(app.snapshot().await, before);
    assert_eq!(version(&app, id).await, 2);
    assert_eq!(
        events_of(&app, id, "partner_qualifications_set").await,
        [colleague.user_id.to_string()]
    );
    // Starting over: the form is at version 2 again.
    me.get(&format!("/partners/{id}"))
        .await
        .assert_contains("name=\"version\" value=\"2\"");
}

#[tokio::test]
async fn indirect_providers_change_through_the_form_and_a_wrong_provider_is_shown_at_the_field() {
    let app = spawn_app().await;
    let provider = partner(&app, "Northwind Distribution", "indirect_provider", &[]).await;
    let direct = partner(&app, "Fabrikam Direct", "direct_bill_partner", &[]).await;
    let reseller = partner(&app, "Contoso Reseller", "indirect_reseller", &[]).await;
    let console = signed_in(&app, Role::BackOffice, None).await;
    let path = format!("/partners/{reseller}/indirect-providers");
    let direct_id = direct.to_string();

    let refused = console
        .post(
            &path,
            &[
                ("version", "1"),
                ("other", direct_id.as_str()),
                ("reason", "connect"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    refused
        .assert_contains(&format!(
            "id=\"providers-error\">Partner {direct} is not an indirect provider.</span>"
        ))
        .assert_contains(&format!("value=\"{direct}\""));
    assert_eq!(app.count("indirect_reseller_providers").await, 0);

    let provider_id = provider.to_string();
    let saved = console
        .post(
            &path,
            &[
                ("version", "1"),
                ("provider", provider_id.as_str()),
                ("reason", "contract signed"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    let linked: Vec<Uuid> = sqlx::query_scalar(
        "select provider_id from indirect_reseller_providers where reseller_id = $1",
    )
    .bind(reseller)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(linked, [provider]);
    assert_eq!(
        events_of(&app, reseller, "partner_providers_set").await,
        [console.user_id.to_string()]
    );

    // A form read before that save is refused with both versions, and writes nothing.
    let stale = console
        .post(&path, &[("version", "1"), ("reason", "disconnect")])
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.html);
    stale
        .assert_contains(
            "<th scope=\"row\">Indirect providers</th><td>none</td><td>Northwind Distribution</td>",
        )
        .assert_contains(&format!(
            "href=\"/partners/{reseller}#providers\">Start over from version 2</a>"
        ));
    assert_eq!(app.count("indirect_reseller_providers").await, 1);

    // Only an indirect reseller has the form, and posting it for another partner is refused.
    let wrong = console
        .post(
            &format!("/partners/{direct}/indirect-providers"),
            &[("version", "1"), ("reason", "connect")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    wrong.assert_contains("is not an indirect reseller");
    let page = console.get(&format!("/partners/{direct}")).await;
    assert!(!page.html.contains("Change indirect providers"));
}

#[tokio::test]
async fn a_sales_agent_sees_its_own_partner_and_another_partner_is_a_not_found_page() {
    let app = spawn_app().await;
    let own = partner(&app, "Contoso Own", "direct_bill_partner", &["education"]).await;
    let other = partner(&app, "Fabrikam Other", "direct_bill_partner", &[]).await;
    let mine = app.create_customer(&[]).await;
    app.link(mine, own).await;
    let theirs = app.create_customer(&[]).await;
    app.link(theirs, other).await;
    let agent = signed_in(
        &app,
        Role::SalesAgent,
        Some(partner_catalog::domain::PartnerId(own)),
    )
    .await;

    let page = agent.get(&format!("/partners/{own}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    page.assert_contains("<h1>Contoso Own</h1>")
        .assert_contains("EV-education")
        .assert_contains(&format!("href=\"/customers/{mine}\""));
    assert!(!page.html.contains(&theirs.to_string()));
    assert!(!page.html.contains("Change reseller qualifications"));

    let another = agent.get(&format!("/partners/{other}")).await;
    let missing = agent.get(&format!("/partners/{}", Uuid::now_v7())).await;
    assert_eq!(another.status, StatusCode::NOT_FOUND);
    assert_eq!(
        another.html, missing.html,
        "the same page as for no partner"
    );
    assert!(!another.html.contains("Fabrikam"));
    let posted = agent
        .post(
            &format!("/partners/{other}/reseller-qualifications"),
            &[("version", "1"), ("reason", "x")],
        )
        .await;
    assert_eq!(posted.status, StatusCode::NOT_FOUND);
    let own_post = agent
        .post(
            &format!("/partners/{own}/reseller-qualifications"),
            &[("version", "1"), ("reason", "x")],
        )
        .await;
    assert_eq!(own_post.status, StatusCode::FORBIDDEN);

    // The search finds its own partner only.
    let search = agent.get("/partners").await;
    assert_eq!(listed(&search.html), 1);
    search.assert_contains("Contoso Own");
    assert_eq!(listed(&agent.get("/partners?q=fabrikam").await.html), 0);
    assert_eq!(version(&app, own).await, 1);
}
