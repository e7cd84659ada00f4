//! Partner scoping: a partner role sees its own partner and the customers related to it, and
//! another partner's ids are answered exactly as ids that do not exist, with nothing written.

use std::collections::BTreeSet;

use partner_catalog::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Reply, TestApp, issue_token, spawn_app};

/// Operations whose ids name nothing a partner owns: the offer catalog and the published policy
/// versions are the same for everyone.
const GLOBAL: &[(&str, &str)] = &[
    ("GET", "/v1/offers/{offer_id}"),
    ("GET", "/v1/policies/{version}"),
];

/// One request of the table: the documented operation, then the concrete call.
struct Call {
    method: Method,
    operation: &'static str,
    path: String,
    body: Option<Value>,
}

/// The ids a call is built from: partner A's own, and the foreign ones under test.
struct Ids {
    /// The caller's partner, and a customer related to it.
    own_partner: Uuid,
    own_customer: Uuid,
    /// Another partner's partner, customer, subscription and sales-agent token; or fresh ids.
    partner: Uuid,
    customer: Uuid,
    subscription: Uuid,
    token: Uuid,
    offer: Uuid,
    /// Another partner's webhook endpoint.
    endpoint: Uuid,
}

/// Every operation that takes an id, called with foreign ids.
fn calls(ids: &Ids) -> Vec<Call> {
    let Ids {
        own_partner: a,
        own_customer: ca,
        partner: b,
        customer: cb,
        subscription: sb,
        token: tb,
        offer,
        endpoint: eb,
    } = *ids;
    let call = |method: Method, operation: &'static str, path: String, body: Option<Value>| Call {
        method,
        operation,
        path,
        body,
    };
    let qualified = json!({"special_qualifications": [], "reason": "probe"});
    let partner_quals = json!({"reseller_qualifications": [], "reason": "probe"});
    let buy = |partner: Uuid| json!({"partner_id": partner, "offer_id": offer, "quantity": 1});
    let decide = |customer: Uuid, partner: Uuid| json!({"customer_id": customer, "partner_id": partner, "offer_id": offer});
    use Method as M;
    vec![
        call(
            M::GET,
            "/v1/partners/{partner_id}",
            format!("/v1/partners/{b}"),
            None,
        ),
        call(
            M::GET,
            "/v1/partners/{partner_id}/profile",
            format!("/v1/partners/{b}/profile"),
            None,
        ),
        call(
            M::GET,
            "/v1/partners/{partner_id}/profile/history",
            format!("/v1/partners/{b}/profile/history"),
            None,
        ),
        call(
            M::PUT,
            "/v1/partners/{partner_id}/reseller-qualifications",
            format!("/v1/partners/{b}/reseller-qualifications"),
            Some(partner_quals),
        ),
        call(
            M::PUT,
            "/v1/partners/{partner_id}/indirect-providers",
            format!("/v1/partners/{b}/indirect-providers"),
            Some(json!({"provider_ids": [], "reason": "probe"})),
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}",
            format!("/v1/customers/{cb}"),
            None,
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}/qualifications",
            format!("/v1/customers/{cb}/qualifications"),
            None,
        ),
        call(
            M::PUT,
            "/v1/customers/{customer_id}/qualifications",
            format!("/v1/customers/{cb}/qualifications"),
            Some(qualified),
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}/qualifications/history",
            format!("/v1/customers/{cb}/qualifications/history"),
            None,
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}/partners",
            format!("/v1/customers/{cb}/partners"),
            None,
        ),
        // The hole this test was written for: claiming another partner's customer for oneself.
        call(
            M::PUT,
            "/v1/customers/{customer_id}/partners/{partner_id}",
            format!("/v1/customers/{cb}/partners/{a}"),
            None,
        ),
        call(
            M::PUT,
            "/v1/customers/{customer_id}/partners/{partner_id}",
            format!("/v1/customers/{ca}/partners/{b}"),
            None,
        ),
        call(
            M::POST,
            "/v1/customers/{customer_id}/subscriptions",
            format!("/v1/customers/{cb}/subscriptions"),
            Some(buy(a)),
        ),
        call(
            M::POST,
            "/v1/customers/{customer_id}/subscriptions",
            format!("/v1/customers/{ca}/subscriptions"),
            Some(buy(b)),
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}/subscriptions",
            format!("/v1/customers/{cb}/subscriptions"),
            None,
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}/subscriptions/{subscription_id}",
            format!("/v1/customers/{cb}/subscriptions/{sb}"),
            None,
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}/subscriptions/{subscription_id}",
            format!("/v1/customers/{ca}/subscriptions/{sb}"),
            None,
        ),
        call(
            M::PUT,
            "/v1/customers/{customer_id}/subscriptions/{subscription_id}/status",
            format!("/v1/customers/{cb}/subscriptions/{sb}/status"),
            Some(json!({"status": "cancelled", "reason": "probe"})),
        ),
        call(
            M::PUT,
            "/v1/customers/{customer_id}/subscriptions/{subscription_id}/status",
            format!("/v1/customers/{ca}/subscriptions/{sb}/status"),
            Some(json!({"status": "cancelled", "reason": "probe"})),
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}/eligible-offers",
            format!("/v1/customers/{cb}/eligible-offers?partner_id={a}"),
            None,
        ),
        call(
            M::GET,
            "/v1/customers/{customer_id}/eligible-offers",
            format!("/v1/customers/{ca}/eligible-offers?partner_id={b}"),
            None,
        ),
        call(
            M::POST,
            "/v1/purchase-decisions",
            "/v1/purchase-decisions".into(),
            Some(decide(cb, a)),
        ),
        call(
            M::POST,
            "/v1/purchase-decisions",
            "/v1/purchase-decisions".into(),
            Some(decide(ca, b)),
        ),
        call(
            M::GET,
            "/v1/audit/events",
            format!("/v1/audit/events?customer_id={cb}"),
            None,
        ),
        call(
            M::GET,
            "/v1/audit/events",
            format!("/v1/audit/events?partner_id={b}"),
            None,
        ),
        call(
            M::GET,
            "/v1/audit/verify",
            format!("/v1/audit/verify?customer_id={cb}"),
            None,
        ),
        call(
            M::GET,
            "/v1/audit/verify",
            format!("/v1/audit/verify?partner_id={b}"),
            None,
        ),
        call(
            M::POST,
            "/v1/tokens",
            "/v1/tokens".into(),
            Some(json!({"role": "sales_agent", "partner_id": b, "label": "probe"})),
        ),
        call(
            M::DELETE,
            "/v1/tokens/{token_id}",
            format!("/v1/tokens/{tb}"),
            None,
        ),
        call(
            M::POST,
            "/v1/webhook-endpoints",
            "/v1/webhook-endpoints".into(),
            Some(json!({"url": "http://127.0.0.1:9/hook", "partner_id": b})),
        ),
        call(
            M::GET,
            "/v1/webhook-endpoints/{endpoint_id}",
            format!("/v1/webhook-endpoints/{eb}"),
            None,
        ),
        call(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/disable",
            format!("/v1/webhook-endpoints/{eb}/disable"),
            None,
        ),
        call(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/enable",
            format!("/v1/webhook-endpoints/{eb}/enable"),
            None,
        ),
        call(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/redeliver",
            format!("/v1/webhook-endpoints/{eb}/redeliver"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        call(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
            format!("/v1/webhook-endpoints/{eb}/rotate-secret"),
            None,
        ),
        call(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/test",
            format!("/v1/webhook-endpoints/{eb}/test"),
            None,
        ),
        call(
            M::GET,
            "/v1/webhook-endpoints/{endpoint_id}/deliveries",
            format!("/v1/webhook-endpoints/{eb}/deliveries"),
            None,
        ),
    ]
}

/// The operations of the contract that take an id: in the path, as a `…_id` query parameter, or
/// as a `…_id` member of the JSON body.
fn operations_taking_ids(contract: &Value) -> BTreeSet<(String, String)> {
    let schema_of = |reference: &str| {
        let name = reference.trim_start_matches("#/components/schemas/");
        contract["components"]["schemas"][name].clone()
    };
    let mut found = BTreeSet::new();
    for (path, item) in contract["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let by_parameter = operation["parameters"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["in"] == "path"
                        || (p["in"] == "query" && p["name"].as_str().unwrap().ends_with("_id"))
                })
            });
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            let body = body["$ref"]
                .as_str()
                .map_or_else(|| body.clone(), schema_of);
            let by_body = body["properties"]
                .as_object()
                .is_some_and(|ps| ps.keys().any(|k| k.ends_with("_id")));
            if by_parameter || by_body {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

/// Sends a call as `token`, with the headers each kind of call needs to get past its checks.
async fn send(app: &TestApp, token: &str, call: &Call) -> Reply {
    let mut request = app
        .client
        .request(call.method.clone(), format!("{}{}", app.address, call.path))
        .bearer_auth(token)
        .header("if-match", "*")
        .header("idempotency-key", format!("probe-{}", Uuid::now_v7()));
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    Reply::from(request.send().await.unwrap()).await
}

#[tokio::test]
async fn no_partner_role_can_see_or_touch_another_partners_ids() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let ca = app.create_customer(&[]).await;
    let cb = app.create_customer(&[]).await;
    app.link(ca, a).await;
    app.link(cb, b).await;
    let offer = app.create_offer("commercial", "license_based").await;
    let sb = app.purchase(cb, b, offer, "b-1").await.id();
    let tb = app.principal_id(&app.sales_token(b).await).await;
    let eb: Uuid = sqlx::query_scalar(
        "insert into webhook_endpoints (id, partner_id, url, secret, created_by)
         values (gen_random_uuid(), $1, 'http://127.0.0.1:9/hook', 'c2VjcmV0', 'test') returning id",
    )
    .bind(b)
    .fetch_one(&app.pool)
    .await
    .unwrap();

    let foreign = Ids {
        own_partner: a,
        own_customer: ca,
        partner: b,
        customer: cb,
        subscription: sb,
        token: tb,
        offer,
        endpoint: eb,
    };
    let absent = Ids {
        partner: Uuid::now_v7(),
        customer: Uuid::now_v7(),
        subscription: Uuid::now_v7(),
        token: Uuid::now_v7(),
        endpoint: Uuid::now_v7(),
        ..foreign
    };

    // Every operation that takes an id is probed, so a new route fails here until it is listed.
    let probed: BTreeSet<_> = calls(&foreign)
        .iter()
        .map(|c| (c.method.to_string(), c.operation.to_owned()))
        .chain(GLOBAL.iter().map(|(m, p)| (m.to_string(), p.to_string())))
        .collect();
    let taking_ids = operations_taking_ids(&app.contract().await);
    let missing: Vec<_> = taking_ids.difference(&probed).collect();
    assert!(
        missing.is_empty(),
        "operations taking ids that this test does not probe: {missing:?}"
    );

    for role in [Role::GlobalAdmin, Role::AdminAgent, Role::SalesAgent] {
        let token = issue_token(&app.pool, role, Some(a)).await;
        for (call, twin) in calls(&foreign).iter().zip(calls(&absent).iter()) {
            let before = app.snapshot().await;
            let reply = send(&app, &token, call).await;
            let what = format!("{role} {} {}", call.method, call.path);
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{what}: {:#}",
                reply.body
            );
            let code = reply.body["code"].as_str().unwrap_or_default().to_owned();
            assert!(code.ends_with("_not_found"), "{what}: {code}");
            reply.assert_problem(StatusCode::NOT_FOUND, &code);
            assert_eq!(app.snapshot().await, before, "{what} wrote something");

            // Another partner's ids are answered exactly as ids that do not exist.
            let reply = send(&app, &token, twin).await;
            assert_eq!(
                (
                    reply.status,
                    reply.body["code"].as_str().unwrap_or_default()
                ),
                (StatusCode::NOT_FOUND, code.as_str()),
                "{role} {} {} (absent ids) answers unlike {what}",
                twin.method,
                twin.path
            );
        }
    }
    // The relationship was never made: partner A still cannot see B's customer.
    let reply = app
        .client
        .get(format!("{}/v1/customers/{cb}/partners", app.address))
        .bearer_auth(&app.back_office)
        .send()
        .await
        .unwrap();
    let partners = Reply::from(reply).await.body["partner_ids"].clone();
    assert_eq!(partners, json!([b]));
}

#[tokio::test]
async fn only_back_office_links_a_customer_to_a_partner() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, a).await;
    let other = app.create_customer(&[]).await;
    for role in [Role::GlobalAdmin, Role::AdminAgent] {
        let token = issue_token(&app.pool, role, Some(a)).await;
        // Even a customer the partner already sees cannot be linked by it: 403, nothing written.
        let before = app.snapshot().await;
        let link = |c: Uuid| {
            app.client
                .put(format!("{}/v1/customers/{c}/partners/{a}", app.address))
                .bearer_auth(&token)
                .send()
        };
        Reply::from(link(customer).await.unwrap())
            .await
            .assert_problem(StatusCode::FORBIDDEN, "forbidden");
        Reply::from(link(other).await.unwrap())
            .await
            .assert_problem(StatusCode::NOT_FOUND, "customer_not_found");
        assert_eq!(app.snapshot().await, before);
    }
    let reply = app
        .put(&format!("/v1/customers/{other}/partners/{a}"), json!(null))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
}
