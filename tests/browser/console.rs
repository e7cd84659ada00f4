//! The console in a real browser: what back-office staff, partner users and auditors do, as they
//! do it, with the screenshots of the README.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use fantoccini::{Locator, elements::Element};
use partner_catalog::{
    app::{
        self, RequestContext,
        customers::QualificationChange,
        partners::ResellerQualificationChange,
        purchases::{IdempotencyKey, PurchaseRequest},
        users,
    },
    domain::{
        CustomerId, CustomerQualification, DisplayName, NewPassword, OfferTerms, PartnerId,
        PartnerKind, Principal, ProductKind, Quantity, Reason, ResellerQualification, Role,
        Segment, SpecialQualification, Username,
    },
};
use sqlx::PgPool;

use crate::{
    browser::{Browser, WAIT},
    common::{TestService, spawn_service},
};

const PASSWORD: &str = "correct horse battery staple";

/// The service with a little of everything: partners, offers, customers.
struct World {
    service: TestService,
    pool: PgPool,
    partner: PartnerId,
    other_partner: PartnerId,
}

fn system() -> RequestContext {
    RequestContext::system()
}

async fn world() -> World {
    let service = spawn_service().await;
    let pool = PgPool::connect(&service.database.url).await.unwrap();
    let partner = create_partner(&pool, "Contoso Reseller").await;
    let other_partner = create_partner(&pool, "Litware Partner").await;
    for (name, segment) in [
        ("Microsoft 365 A3", Segment::Education),
        ("Microsoft 365 E3", Segment::Commercial),
        ("Microsoft 365 G3", Segment::Gcc),
        (
            "Microsoft 365 Business Premium (nonprofit)",
            Segment::Nonprofit,
        ),
    ] {
        app::offers::create(
            &pool,
            &system(),
            &DisplayName::parse(name).unwrap(),
            OfferTerms {
                segment,
                product_kind: ProductKind::LicenseBased,
            },
        )
        .await
        .unwrap();
    }
    World {
        service,
        pool,
        partner,
        other_partner,
    }
}

async fn create_partner(pool: &PgPool, name: &str) -> PartnerId {
    let qualifications = ResellerQualification::ALL.iter().copied().collect();
    let evidence = ResellerQualification::ALL
        .iter()
        .map(|q| (*q, format!("{q}-evidence")))
        .collect();
    app::partners::create(
        pool,
        &system(),
        &DisplayName::parse(name).unwrap(),
        PartnerKind::DirectBillPartner,
        &ResellerQualificationChange {
            qualifications,
            evidence,
            reason: Reason::parse(Some("onboarding")).unwrap(),
        },
    )
    .await
    .unwrap()
    .id
}

impl World {
    async fn customer(
        &self,
        name: &str,
        qualifications: &[SpecialQualification],
        partner: Option<PartnerId>,
    ) -> CustomerId {
        let evidence: BTreeMap<_, _> = qualifications
            .iter()
            .map(|q| (*q, format!("{q}-ref")))
            .collect();
        let customer = app::customers::create(
            &self.pool,
            &system(),
            app::customers::CustomerDraft {
                name: DisplayName::parse(name).unwrap(),
                change: QualificationChange {
                    qualifications: qualifications.iter().copied().collect(),
                    evidence,
                    reason: Reason::parse(Some("onboarding")).unwrap(),
                },
                external_reference: None,
            },
        )
        .await
        .unwrap();
        if let Some(partner) = partner {
            app::customers::link_partner(&self.pool, &system(), customer.id, partner)
                .await
                .unwrap();
        }
        customer.id
    }

    async fn user(&self, username: &str, display: &str, role: Role, partner: Option<PartnerId>) {
        users::create(
            &self.pool,
            &system(),
            &users::NewAccount {
                username: Username::parse(username).unwrap(),
                display_name: Some(DisplayName::parse(display).unwrap()),
                password: NewPassword::parse(PASSWORD).unwrap(),
                role,
                partner,
            },
        )
        .await
        .unwrap();
    }

    /// A purchase by a sales agent of `partner`.
    async fn buy(&self, customer: CustomerId, partner: PartnerId, segment: Segment) {
        let offer = app::offers::list(
            &self.pool,
            &system(),
            Some(segment),
            None,
            partner_catalog::db::Keyset {
                after: None,
                limit: 1,
            },
        )
        .await
        .unwrap()
        .remove(0);
        let agent = RequestContext::new(
            Some(Principal {
                id: uuid::Uuid::now_v7(),
                role: Role::SalesAgent,
                partner_id: Some(partner),
            }),
            None,
        );
        let purchase = app::purchases::purchase(
            &self.pool,
            &agent,
            &IdempotencyKey::parse(&uuid::Uuid::now_v7().to_string()).unwrap(),
            PurchaseRequest {
                customer_id: customer,
                partner_id: partner,
                offer_id: offer.id,
                quantity: Quantity::new(10).unwrap(),
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(
                purchase.outcome,
                app::purchases::PurchaseOutcome::Created { .. }
            ),
            "the setup purchase was denied"
        );
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.service.address)
    }
}

/// Waits for an element.
async fn find(browser: &Browser, css: &str) -> Element {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

async fn text(browser: &Browser, css: &str) -> String {
    find(browser, css).await.text().await.unwrap()
}

async fn fill(browser: &Browser, css: &str, value: &str) {
    let input = find(browser, css).await;
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

/// Clicks something that stays on the page (a checkbox).
async fn click(browser: &Browser, css: &str) {
    find(browser, css).await.click().await.unwrap();
}

/// Clicks a link or a submit button and waits until the next page replaced this one, so that
/// what is read next is never an element of the page being left.
async fn follow(browser: &Browser, css: &str) {
    let leaving = find(browser, "html").await;
    click(browser, css).await;
    let deadline = std::time::Instant::now() + WAIT;
    while leaving.tag_name().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "no new page after clicking {css}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn sign_in(browser: &Browser, world: &World, username: &str) {
    browser.goto(&world.url("/")).await.unwrap();
    fill(browser, "#username", username).await;
    fill(browser, "#password", PASSWORD).await;
    follow(browser, "form[action='/sign-in'] button").await;
    let welcome = text(browser, "h1").await;
    assert!(welcome.starts_with("Welcome"), "{welcome}");
}

#[tokio::test]
async fn back_office_finds_a_customer_changes_its_qualifications_and_meets_a_conflict() {
    let world = world().await;
    let customer = world
        .customer("Fabrikam University", &[], Some(world.partner))
        .await;
    world.customer("Northwind Traders", &[], None).await;
    world.user("jdoe", "Jane Doe", Role::BackOffice, None).await;
    let browser = Browser::new().await;
    browser.goto(&world.url("/")).await.unwrap();
    find(&browser, "#username").await;
    browser.screenshot("sign-in").await;
    sign_in(&browser, &world, "jdoe").await;
    browser.screenshot("home-back-office").await;

    follow(&browser, "nav a[href='/customers']").await;
    fill(&browser, "#q", "fabrikam").await;
    follow(&browser, "form[role=search] button").await;
    let result = text(&browser, "tbody tr td a").await;
    assert_eq!(result, "Fabrikam University");
    assert!(!browser.source().await.unwrap().contains("Northwind"));
    browser.screenshot("customers-search").await;
    follow(&browser, "tbody tr td a").await;

    // Education needs evidence: first without it, then with it.
    click(&browser, "#q-education").await;
    fill(&browser, "#reason", "attestation received").await;
    follow(&browser, "form[action$='/qualifications'] button").await;
    let message = text(&browser, "#evidence-education-error").await;
    assert!(message.contains("requires evidence"), "{message}");
    fill(&browser, "#evidence-education", "QEU-2026-118").await;
    follow(&browser, "form[action$='/qualifications'] button").await;
    let notice = text(&browser, ".notice").await;
    assert_eq!(notice, "The qualifications were changed.");
    let history = text(&browser, "#history").await;
    assert!(
        history.contains("attestation received") && history.contains("by Jane Doe (back_office)"),
        "{history}"
    );
    browser.screenshot("customer").await;

    // A colleague saves version 3 while this form still holds version 2.
    app::customers::set_qualifications(
        &world.pool,
        &system(),
        customer,
        app::Precondition::Any,
        &QualificationChange {
            qualifications: CustomerQualification::of(&[SpecialQualification::Nonprofit]),
            evidence: BTreeMap::from([(SpecialQualification::Nonprofit, "NP-9".to_owned())]),
            reason: Reason::parse(Some("registry says nonprofit")).unwrap(),
        },
    )
    .await
    .unwrap();
    fill(&browser, "#reason", "my late edit").await;
    follow(&browser, "form[action$='/qualifications'] button").await;
    let heading = text(&browser, "h1").await;
    assert_eq!(
        heading,
        "Fabrikam University was changed while you were editing"
    );
    let body = text(&browser, "main").await;
    assert!(
        body.contains("You edited version 2, but version 3 is now on record"),
        "{body}"
    );
    assert!(
        body.contains("registry says nonprofit") && body.contains("my late edit"),
        "{body}"
    );
    browser.screenshot("conflict").await;
    follow(&browser, "main a[href$='#change']").await;
    assert_eq!(
        find(&browser, "input[name=version]")
            .await
            .attr("value")
            .await
            .unwrap()
            .as_deref(),
        Some("3")
    );
    browser
        .assert_requests_stay_on(&world.service.address)
        .await;
}

#[tokio::test]
async fn the_gcc_lockout_and_the_reasons_of_every_denial_are_shown() {
    let world = world().await;
    let customer = world
        .customer(
            "Tailspin County",
            &[SpecialQualification::Gcc],
            Some(world.partner),
        )
        .await;
    app::customers::link_partner(&world.pool, &system(), customer, world.other_partner)
        .await
        .unwrap();
    world.buy(customer, world.other_partner, Segment::Gcc).await;
    world
        .user("agent", "Sam Seller", Role::SalesAgent, Some(world.partner))
        .await;
    let browser = Browser::new().await;
    sign_in(&browser, &world, "agent").await;
    browser
        .goto(&world.url(&format!("/customers/{customer}")))
        .await
        .unwrap();
    let lockout = text(&browser, "#gcc-lockout").await;
    assert!(lockout.starts_with("GCC lockout"), "{lockout}");
    // A partner user checks only for its own partner: it is the one choice.
    find(&browser, "#partner")
        .await
        .select_by_index(1)
        .await
        .unwrap();
    follow(&browser, "form[action$='#eligibility'] button").await;
    let table = text(&browser, "#eligibility-table").await;
    assert!(
        table.contains("Microsoft 365 G3") && table.contains("allowed"),
        "{table}"
    );
    assert!(
        table.contains(
            "The customer has a GCC subscription, so it may not buy commercial subscriptions."
        ),
        "{table}"
    );
    browser.screenshot("eligibility").await;
}

#[tokio::test]
async fn a_partner_user_cannot_open_another_partners_customer() {
    let world = world().await;
    let theirs = world
        .customer("Litware Customer", &[], Some(world.other_partner))
        .await;
    world
        .customer("Contoso Customer", &[], Some(world.partner))
        .await;
    world
        .user("agent", "Sam Seller", Role::SalesAgent, Some(world.partner))
        .await;
    let browser = Browser::new().await;
    sign_in(&browser, &world, "agent").await;
    browser
        .goto(&world.url("/customers?q=customer"))
        .await
        .unwrap();
    let list = text(&browser, "main").await;
    assert!(
        list.contains("Contoso Customer") && !list.contains("Litware Customer"),
        "{list}"
    );
    browser
        .goto(&world.url(&format!("/customers/{theirs}")))
        .await
        .unwrap();
    assert_eq!(text(&browser, "h1").await, "Not Found");
    assert!(!browser.source().await.unwrap().contains("Litware Customer"));
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused_and_changes_nothing() {
    let world = world().await;
    let customer = world.customer("Fabrikam University", &[], None).await;
    world.user("jdoe", "Jane Doe", Role::BackOffice, None).await;
    // The attacker's page: another origin (another port) with a form aimed at the console.
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let attacker_url = format!("http://{}", attacker.local_addr().unwrap());
    let target = world.url(&format!("/customers/{customer}/qualifications"));
    let page = format!(
        r#"<!doctype html><title>win a prize</title><form method="post" action="{target}">
<input type="hidden" name="version" value="1"><input type="hidden" name="qualification" value="gcc">
<input type="hidden" name="evidence_gcc" value="forged"><input type="hidden" name="reason" value="forged">
<button id="go">Claim</button></form>"#
    );
    let site = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    tokio::spawn(async move { axum::serve(attacker, site).await });

    let browser = Browser::new().await;
    sign_in(&browser, &world, "jdoe").await;
    browser.goto(&attacker_url).await.unwrap();
    follow(&browser, "#go").await;
    let message = text(&browser, ".error").await;
    assert!(message.contains("sent from another site"), "{message}");
    let current = app::customers::qualifications(&world.pool, &system(), customer, None)
        .await
        .unwrap();
    assert_eq!(current.version, 1, "nothing was changed");
}

#[tokio::test]
async fn a_customer_named_like_a_script_is_shown_as_text() {
    let world = world().await;
    let name = "<script>alert(1)</script>";
    let customer = world.customer(name, &[], None).await;
    world.user("jdoe", "Jane Doe", Role::BackOffice, None).await;
    let browser = Browser::new().await;
    sign_in(&browser, &world, "jdoe").await;
    browser
        .goto(&world.url(&format!("/customers/{customer}")))
        .await
        .unwrap();
    assert_eq!(text(&browser, "h1").await, name);
    assert!(
        browser.get_alert_text().await.is_err(),
        "no script ran, so no alert is open"
    );
    browser
        .goto(&world.url("/customers?q=script"))
        .await
        .unwrap();
    assert_eq!(text(&browser, "tbody tr td a").await, name);
    assert!(browser.get_alert_text().await.is_err());
}

/// Inputs of the page without a label: every visible input, select and textarea must have one.
async fn unlabelled_inputs(browser: &Browser) -> Vec<String> {
    let found = browser
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                .filter(e => e.labels.length === 0).map(e => e.outerHTML);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// Whether the page is wider than the window (a phone would scroll sideways).
async fn overflows(browser: &Browser) -> bool {
    let wider = browser
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    wider.as_bool().unwrap()
}

#[tokio::test]
async fn every_input_has_a_label_and_pages_fit_a_phone() {
    let world = world().await;
    let customer = world
        .customer(
            "Fabrikam University",
            &[SpecialQualification::Education],
            Some(world.partner),
        )
        .await;
    world.user("jdoe", "Jane Doe", Role::BackOffice, None).await;
    world
        .user("ops", "Olga Operator", Role::Operator, None)
        .await;
    world
        .user("audrey", "Audrey Auditor", Role::Auditor, None)
        .await;
    let endpoint = app::webhooks::create(
        &world.pool,
        &system(),
        &webhook_settings(),
        None,
        "http://127.0.0.1:9/hooks/a-rather-long-path-that-should-wrap-on-a-phone",
        &[],
        "Back-office integration",
    )
    .await
    .unwrap()
    .endpoint
    .id;
    let pages = [
        ("jdoe", "/".to_owned()),
        ("jdoe", "/customers?q=fab".to_owned()),
        (
            "jdoe",
            format!("/customers/{customer}?partner={}", world.partner),
        ),
        ("jdoe", "/customers/new".to_owned()),
        ("jdoe", "/partners?q=contoso".to_owned()),
        ("jdoe", format!("/partners/{}", world.partner)),
        ("jdoe", "/account".to_owned()),
        ("jdoe", "/import".to_owned()),
        ("ops", "/offers".to_owned()),
        ("ops", "/policies".to_owned()),
        ("ops", "/policies/1".to_owned()),
        ("ops", "/access".to_owned()),
        ("ops", "/webhooks".to_owned()),
        ("ops", "/webhooks/new".to_owned()),
        ("ops", format!("/webhooks/{endpoint}")),
        ("audrey", format!("/audit?customer_id={customer}")),
        ("audrey", "/access".to_owned()),
    ];
    let mut failures = Vec::new();
    for user in ["jdoe", "ops", "audrey"] {
        let browser = Browser::new().await;
        sign_in(&browser, &world, user).await;
        for (_, path) in pages.iter().filter(|(u, _)| *u == user) {
            for (width, height) in [(1280, 900), (390, 844)] {
                browser.set_window_size(width, height).await.unwrap();
                browser.goto(&world.url(path)).await.unwrap();
                find(&browser, "main").await;
                for input in unlabelled_inputs(&browser).await {
                    failures.push(format!("{path}: no label for {input}"));
                }
                if overflows(&browser).await {
                    failures.push(format!("{path}: wider than a {width} px window"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn an_auditor_searches_the_log_opens_an_event_exports_and_verifies() {
    let world = world().await;
    world.customer("Fabrikam University", &[], None).await;
    let watched = world
        .customer("Northwind School", &[SpecialQualification::Education], None)
        .await;
    world
        .user("audrey", "Audrey Auditor", Role::Auditor, None)
        .await;
    let browser = Browser::new().await;
    sign_in(&browser, &world, "audrey").await;
    follow(&browser, "nav a[href='/audit']").await;
    fill(&browser, "#customer_id", &watched.to_string()).await;
    follow(&browser, "form.audit-filters button").await;
    let rows = browser
        .find_all(Locator::Css("table.audit-events tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the watched customer's creation");
    let row = rows[0].text().await.unwrap();
    assert!(row.contains("customer_created"), "{row}");
    browser.screenshot("audit").await;

    // The export link carries the search; the browser downloads it with its session.
    let csv = browser
        .execute(
            "const a = document.querySelector('a[download][href*=\"format=csv\"]');
             return fetch(a.href).then(r => r.text());",
            vec![],
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap().to_owned();
    assert_eq!(csv.lines().count(), 2, "a header and one event: {csv}");
    assert!(
        csv.contains(&watched.to_string()) && csv.contains("customer_created"),
        "{csv}"
    );

    follow(&browser, "table.audit-events tbody tr td a").await;
    let detail = text(&browser, "main").await;
    assert!(
        detail.contains("customer_created") && detail.contains("Northwind School"),
        "{detail}"
    );
    browser.screenshot("audit-event").await;

    browser.back().await.unwrap();
    follow(&browser, "form[action='/audit/verify'] button").await;
    let verdict = text(&browser, "main").await;
    assert!(verdict.contains("Intact"), "{verdict}");
}

/// Uploads `content` as a file named `name` through the import form.
async fn upload(browser: &Browser, world: &World, name: &str, content: &str) {
    let dir = std::env::temp_dir().join(format!("pc-upload-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    browser.goto(&world.url("/import")).await.unwrap();
    find(browser, "#file")
        .await
        .send_keys(path.to_str().unwrap())
        .await
        .unwrap();
    follow(browser, "form[action='/import/validate'] button").await;
}

#[tokio::test]
async fn back_office_imports_a_file_after_fixing_its_bad_line() {
    let world = world().await;
    world.user("jdoe", "Jane Doe", Role::BackOffice, None).await;
    let browser = Browser::new().await;
    sign_in(&browser, &world, "jdoe").await;
    let header = "name,special_qualifications,evidence,reason,external_reference";
    let bad = format!(
        "{header}\nNorthwind School,education,education=QEU-1,,CRM-1\nHelping Hands,nonprofit,,,CRM-2\n"
    );
    upload(&browser, &world, "customers.csv", &bad).await;
    let report = text(&browser, "main").await;
    assert!(report.contains("customers.csv: not imported"), "{report}");
    assert!(report.contains("Nothing was stored"), "{report}");
    let row = text(&browser, "main table tbody tr").await;
    assert!(
        row.starts_with('3') && row.contains("evidence"),
        "line 3 named: {row}"
    );
    browser.screenshot("import-errors").await;
    let stored: i64 = sqlx::query_scalar("select count(*) from customers")
        .fetch_one(&world.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    let good = bad.replace("nonprofit,,,CRM-2", "nonprofit,nonprofit=NP-7,,CRM-2");
    upload(&browser, &world, "customers.csv", &good).await;
    follow(&browser, "form[action$='/start'] button").await;
    // The progress page refreshes itself until the job is done.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = text(&browser, "dl.facts dd strong").await;
        if status == "done" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        browser.refresh().await.unwrap();
    }
    let progress = find(&browser, "#progress").await;
    assert_eq!(progress.attr("value").await.unwrap().as_deref(), Some("2"));
    browser.screenshot("import-done").await;
    let references: Vec<String> =
        sqlx::query_scalar("select external_reference from customers order by 1")
            .fetch_all(&world.pool)
            .await
            .unwrap();
    assert_eq!(references, ["CRM-1", "CRM-2"]);
}

/// Webhook settings as the test service has them: receivers on 127.0.0.1 allowed.
fn webhook_settings() -> app::webhooks::Settings {
    app::webhooks::Settings {
        allow_private: "127.0.0.0/8".parse().unwrap(),
        timeout: std::time::Duration::from_secs(2),
    }
}

/// What a test receiver got: each request's `webhook-id` and whether its signature verified with
/// the secret it was given.
#[derive(Clone, Default)]
struct Receiver {
    secret: Arc<Mutex<Option<String>>>,
    got: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Receiver {
    /// Starts a receiver answering 200 on 127.0.0.1; returns it and its URL.
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/catalog", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route(
                "/hooks/catalog",
                axum::routing::post(
                    |axum::extract::State(r): axum::extract::State<Receiver>,
                     headers: axum::http::HeaderMap,
                     body: axum::body::Bytes| async move {
                        let verified = r.secret.lock().unwrap().as_deref().is_some_and(|s| {
                            standardwebhooks::Webhook::new(s)
                                .unwrap()
                                .verify(&body, &headers)
                                .is_ok()
                        });
                        let id = headers["webhook-id"].to_str().unwrap().to_owned();
                        r.got.lock().unwrap().push((id, verified));
                        "received"
                    },
                ),
            )
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn got(&self) -> Vec<(String, bool)> {
        self.got.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_global_admin_registers_a_webhook_sees_it_delivered_and_sends_it_again() {
    let world = world().await;
    world
        .user("gina", "Gina Admin", Role::GlobalAdmin, Some(world.partner))
        .await;
    let (receiver, url) = Receiver::start().await;
    let browser = Browser::new().await;
    sign_in(&browser, &world, "gina").await;
    follow(&browser, "nav a[href='/webhooks']").await;
    follow(&browser, "#register").await;
    fill(&browser, "#url", &url).await;
    click(&browser, "input[name=event_type][value='customer.linked']").await;
    fill(&browser, "#description", "Contoso order system").await;
    follow(&browser, "form[action='/webhooks'] button").await;

    // The secret, once: the receiver keeps it, the console never shows it again.
    let secret = text(&browser, "#secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let notice = text(&browser, "#issued-secret").await;
    assert!(notice.contains("it is not shown again"), "{notice}");
    *receiver.secret.lock().unwrap() = Some(secret.clone());
    follow(&browser, "main p a").await;
    assert_eq!(text(&browser, "h1").await, "Webhook endpoint");
    assert!(!browser.source().await.unwrap().contains(&secret));

    // A change the endpoint hears of: a customer linked to the partner.
    let customer = world
        .customer("Fabrikam University", &[], Some(world.partner))
        .await;
    let event: uuid::Uuid = sqlx::query_scalar(
        "select id from events where customer_id = $1 and event_type = 'customer_partner_linked'",
    )
    .bind(customer.0)
    .fetch_one(&world.pool)
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        browser.refresh().await.unwrap();
        let states = browser
            .find_all(Locator::Css("tr.delivery td.delivery-state"))
            .await
            .unwrap();
        if let Some(state) = states.first()
            && state.text().await.unwrap() == "delivered"
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let row = text(&browser, "tr.delivery").await;
    assert!(
        row.contains(&event.to_string()) && row.contains("customer.linked"),
        "{row}"
    );
    click(&browser, "tr.delivery details summary").await;
    assert_eq!(text(&browser, "tr.delivery .attempt-status").await, "200");
    browser.screenshot("webhook-endpoint").await;
    assert_eq!(receiver.got(), [(event.to_string(), true)]);

    // Send again: queued at once, and the receiver gets it again under the same id.
    follow(&browser, "tr.delivery form.send-again button").await;
    let queued = text(&browser, "#redelivered").await;
    assert!(queued.contains("1 notice queued"), "{queued}");
    let deadline = std::time::Instant::now() + WAIT;
    while receiver.got().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "not sent again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.got(), vec![(event.to_string(), true); 2]);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (state, attempts): (String, i32) =
            sqlx::query_as("select state, attempts from webhook_deliveries where event_id = $1")
                .bind(event)
                .fetch_one(&world.pool)
                .await
                .unwrap();
        if (state.as_str(), attempts) == ("delivered", 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{state} {attempts}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The page with its deliveries open fits a phone, every input labelled.
    browser.refresh().await.unwrap();
    browser.set_window_size(390, 844).await.unwrap();
    click(&browser, "tr.delivery details summary").await;
    assert!(!overflows(&browser).await, "wider than a phone");
    assert_eq!(unlabelled_inputs(&browser).await, Vec::<String>::new());
    browser
        .assert_requests_stay_on(&world.service.address)
        .await;
}
