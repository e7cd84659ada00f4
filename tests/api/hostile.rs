//! Hostile input: every field of every route (path, query, body member, header) is sent values
//! meant to break it. Nothing may answer 5xx, and a refused request must write nothing.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Reply, TestApp, spawn_app};

/// Stands for the hostile value in a JSON body, which is then spliced in as raw text (so that
/// invalid JSON, like a lone surrogate, can be sent too).
const SLOT: &str = "\u{1}HOSTILE\u{1}";

/// One well-formed call per operation of the contract, which the test then spoils field by field.
struct Baseline {
    method: Method,
    /// The operation's path in the contract, with `{name}` parameters.
    template: &'static str,
    /// Path parameters, by name.
    path: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    /// A token whose role may call the operation, so that the input reaches its checks.
    token: Option<String>,
}

/// A request to send: a baseline with one part replaced.
#[derive(Clone)]
struct Probe {
    what: String,
    path: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
    /// Raw body text.
    body: Option<String>,
    headers: Vec<(&'static str, Vec<u8>)>,
}

/// Strings for path segments, query parameters and JSON strings.
fn hostile_strings(id: Uuid) -> Vec<String> {
    let id = id.to_string();
    let mut values: Vec<String> = [
        "",
        "\0",
        "a\0b",
        "\u{7}",
        "\u{1b}[31mred",
        "line\nbreak",
        "\u{202e}gpj.exe",
        "\u{feff}x",
        "\u{10ffff}",
        "=1+1",
        "@SUM(A1)",
        "' or '1'='1",
        "../../etc/passwd",
        "%",
        "%00",
        "null",
        "-4714-01-01T00:00:00Z",
        "+275760-09-13T00:00:00Z",
        "99999-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "9223372036854775808",
        "-1",
        "0",
        "NaN",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "01a21c7a-7560-75cc-818c-df9930a72e9g",
    ]
    .map(String::from)
    .into();
    values.extend([
        id.to_uppercase(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.replace('-', ""),
        "x".repeat(8_000),
    ]);
    values
}

/// Raw JSON texts for body members: every string above, and what only JSON can carry.
fn hostile_json(id: Uuid) -> Vec<String> {
    let mut values: Vec<String> = hostile_strings(id)
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    values.extend(
        [
            r#""\ud800""#,
            r#""x\udc00y""#,
            "1e309",
            "-1e309",
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "-1",
            "0",
            "1.5",
            "true",
            "null",
            "[]",
            "{}",
            r#"[null]"#,
            r#"{"a":1}"#,
        ]
        .map(String::from),
    );
    values.push(format!("\"{}\"", "x".repeat(1_000_000)));
    values.push(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
    values
}

/// Header values: what an HTTP client lets through.
fn hostile_headers(id: Uuid) -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = hostile_strings(id)
        .into_iter()
        .filter(|s| reqwest::header::HeaderValue::from_str(s).is_ok())
        .map(String::into_bytes)
        .collect();
    values.extend([
        b"\t x \t".to_vec(),
        b"\xff\xfe".to_vec(),
        "caf\u{e9}".as_bytes().to_vec(),
    ]);
    values
}

/// Percent-encodes everything but unreserved characters.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Baseline {
    fn probe(&self, what: String) -> Probe {
        Probe {
            what,
            path: self.path.clone(),
            query: self.query.clone(),
            body: self.body.as_ref().map(Value::to_string),
            headers: Vec::new(),
        }
    }

    /// The operation in the contract.
    fn operation<'c>(&self, contract: &'c Value) -> &'c Value {
        &contract["paths"][self.template][self.method.as_str().to_lowercase()]
    }

    /// Every spoiled request for this operation.
    fn probes(&self, contract: &Value, id: Uuid) -> Vec<Probe> {
        let operation = self.operation(contract);
        let mut probes = Vec::new();
        for (name, _) in &self.path {
            for value in hostile_strings(id) {
                let mut probe = self.probe(format!("path {name}={value:.40?}"));
                probe.path.iter_mut().find(|(n, _)| n == name).unwrap().1 = value;
                probes.push(probe);
            }
        }
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for parameter in &parameters {
            let name = parameter["name"].as_str().unwrap().to_owned();
            match parameter["in"].as_str().unwrap() {
                "query" => {
                    for value in hostile_strings(id) {
                        let mut probe = self.probe(format!("query {name}={value:.40?}"));
                        probe.query.retain(|(n, _)| *n != name);
                        probe.query.push((leak(&name), value));
                        probes.push(probe);
                    }
                }
                "header" => {
                    for value in hostile_headers(id) {
                        let mut probe = self.probe(format!(
                            "header {name}={:.40?}",
                            String::from_utf8_lossy(&value)
                        ));
                        probe.headers.push((leak(&name.to_lowercase()), value));
                        probes.push(probe);
                    }
                }
                _ => {}
            }
        }
        for value in hostile_headers(id) {
            let mut probe = self.probe(format!(
                "header x-request-id={:.40?}",
                String::from_utf8_lossy(&value)
            ));
            probe.headers.push(("x-request-id", value));
            probes.push(probe);
        }
        let mut twice = self.probe("x-request-id twice".into());
        twice.headers = vec![
            ("x-request-id", b"one".to_vec()),
            ("x-request-id", b"two".to_vec()),
        ];
        probes.push(twice);
        if let Some(body) = &self.body {
            for member in body_members(contract, operation) {
                for value in hostile_json(id) {
                    let mut spoiled = body.clone();
                    spoiled[&member] = json!(SLOT);
                    let text = spoiled
                        .to_string()
                        .replace(&json!(SLOT).to_string(), &value);
                    let mut probe = self.probe(format!("body {member}={value:.40}"));
                    probe.body = Some(text);
                    probes.push(probe);
                }
            }
            for (what, text) in [
                (
                    "nested body",
                    format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
                ),
                (
                    "nested member",
                    body.to_string().replacen(
                        '{',
                        &format!("{{\"deep\":{}1{},", "[".repeat(5_000), "]".repeat(5_000)),
                        1,
                    ),
                ),
                ("not JSON", "\u{0}\u{1}binary".into()),
                ("empty body", String::new()),
            ] {
                let mut probe = self.probe(what.into());
                probe.body = Some(text);
                probes.push(probe);
            }
        }
        probes
    }
}

/// Leaks a parameter name: the test makes a few dozen.
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}

/// The members of an operation's JSON body, from the contract.
fn body_members(contract: &Value, operation: &Value) -> Vec<String> {
    let content = &operation["requestBody"]["content"];
    let schema = content
        .as_object()
        .and_then(|c| c.values().next())
        .map(|c| c["schema"].clone())
        .unwrap_or_default();
    let schema = match schema["$ref"].as_str() {
        Some(reference) => contract["components"]["schemas"]
            [reference.trim_start_matches("#/components/schemas/")]
        .clone(),
        None => schema,
    };
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

async fn send(app: &TestApp, baseline: &Baseline, probe: &Probe) -> Reply {
    let mut url = baseline.template.to_owned();
    for (name, value) in &probe.path {
        url = url.replace(&format!("{{{name}}}"), &encode(value));
    }
    if !probe.query.is_empty() {
        let pairs: Vec<_> = probe
            .query
            .iter()
            .map(|(n, v)| format!("{n}={}", encode(v)))
            .collect();
        url = format!("{url}?{}", pairs.join("&"));
    }
    let mut request = app
        .client
        .request(baseline.method.clone(), format!("{}{url}", app.address));
    if let Some(token) = &baseline.token {
        request = request.bearer_auth(token);
    }
    let import = baseline.template.ends_with(":import");
    if let Some(body) = &probe.body {
        let content_type = if import {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        request = request
            .header("content-type", content_type)
            .body(body.clone());
    }
    // Fresh defaults for the headers a write needs, unless the probe spoils them.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "idempotency-key",
        format!("k-{}", Uuid::now_v7()).parse().unwrap(),
    );
    headers.insert("if-match", "*".parse().unwrap());
    for (name, _) in &probe.headers {
        headers.remove(*name);
    }
    for (name, value) in &probe.headers {
        let value = reqwest::header::HeaderValue::from_bytes(value).unwrap();
        headers.append(reqwest::header::HeaderName::from_static(name), value);
    }
    let response = request.headers(headers).send().await;
    match response {
        Ok(response) => Reply::from(response).await,
        Err(e) => panic!("{} {url}: {}: no answer: {e}", baseline.method, probe.what),
    }
}

#[tokio::test]
async fn no_hostile_value_in_any_field_answers_5xx_or_writes_on_refusal() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let reseller = app.create_partner("indirect_reseller", &[]).await;
    let provider = app.create_partner("indirect_provider", &[]).await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "license_based").await;
    let subscription = app.purchase(customer, partner, offer, "fixture").await.id();
    let sales = app.sales_token(partner).await;
    let token = app.principal_id(&sales).await;
    let (bo, au, op) = (
        Some(app.back_office.clone()),
        Some(app.auditor.clone()),
        Some(app.operator.clone()),
    );

    let endpoint: Uuid = sqlx::query_scalar(
        "insert into webhook_endpoints (id, url, secret, created_by)
         values (gen_random_uuid(), 'http://127.0.0.1:9/hook', 'c2VjcmV0', 'test') returning id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let w = endpoint.to_string();
    let (p, r, c, o, s, t) = (
        partner.to_string(),
        reseller.to_string(),
        customer.to_string(),
        offer.to_string(),
        subscription.to_string(),
        token.to_string(),
    );
    let base = |method: Method,
                template: &'static str,
                path: &[(&'static str, &String)],
                query: &[(&'static str, &String)],
                body: Option<Value>,
                token: &Option<String>| Baseline {
        method,
        template,
        path: path.iter().map(|(n, v)| (*n, (*v).clone())).collect(),
        query: query.iter().map(|(n, v)| (*n, (*v).clone())).collect(),
        body,
        token: token.clone(),
    };
    let none = None;
    use Method as M;
    let policy_2024: Value = serde_json::from_str(include_str!(
        "../../policies/2024-01-education-nonprofit.json"
    ))
    .unwrap();
    let baselines = vec![
        base(M::GET, "/healthz", &[], &[], None, &none),
        base(M::GET, "/readyz", &[], &[], None, &none),
        base(M::GET, "/openapi.json", &[], &[], None, &none),
        base(M::GET, "/docs", &[], &[], None, &none),
        base(
            M::POST,
            "/v1/partners",
            &[],
            &[],
            Some(
                json!({"name": "P", "kind": "direct_bill_partner", "reseller_qualifications": ["gcc"], "evidence": {"gcc": "E-1"}, "reason": "r"}),
            ),
            &bo,
        ),
        base(M::GET, "/v1/partners", &[], &[], None, &au),
        base(
            M::GET,
            "/v1/partners/{partner_id}",
            &[("partner_id", &p)],
            &[],
            None,
            &au,
        ),
        base(
            M::GET,
            "/v1/partners/{partner_id}/profile",
            &[("partner_id", &p)],
            &[],
            None,
            &au,
        ),
        base(
            M::GET,
            "/v1/partners/{partner_id}/profile/history",
            &[("partner_id", &p)],
            &[],
            None,
            &au,
        ),
        base(
            M::PUT,
            "/v1/partners/{partner_id}/reseller-qualifications",
            &[("partner_id", &p)],
            &[],
            Some(
                json!({"reseller_qualifications": ["gcc", "education", "nonprofit"], "evidence": {}, "reason": "r"}),
            ),
            &bo,
        ),
        base(
            M::PUT,
            "/v1/partners/{partner_id}/indirect-providers",
            &[("partner_id", &r)],
            &[],
            Some(json!({"provider_ids": [provider], "reason": "r"})),
            &bo,
        ),
        base(
            M::POST,
            "/v1/customers",
            &[],
            &[],
            Some(
                json!({"name": "C", "special_qualifications": ["education"], "evidence": {"education": "E-1"}, "reason": "r"}),
            ),
            &bo,
        ),
        base(M::GET, "/v1/customers", &[], &[], None, &au),
        base(
            M::POST,
            "/v1/customers:import",
            &[],
            &[],
            Some(
                json!({"name": "I", "special_qualifications": ["education"], "evidence": {"education": "E-1"}, "reason": "r"}),
            ),
            &bo,
        ),
        base(
            M::GET,
            "/v1/customers/{customer_id}",
            &[("customer_id", &c)],
            &[],
            None,
            &au,
        ),
        base(
            M::GET,
            "/v1/customers/{customer_id}/qualifications",
            &[("customer_id", &c)],
            &[],
            None,
            &au,
        ),
        base(
            M::PUT,
            "/v1/customers/{customer_id}/qualifications",
            &[("customer_id", &c)],
            &[],
            Some(json!({"special_qualifications": [], "evidence": {}, "reason": "r"})),
            &bo,
        ),
        base(
            M::GET,
            "/v1/customers/{customer_id}/qualifications/history",
            &[("customer_id", &c)],
            &[],
            None,
            &au,
        ),
        base(
            M::GET,
            "/v1/customers/{customer_id}/partners",
            &[("customer_id", &c)],
            &[],
            None,
            &au,
        ),
        base(
            M::PUT,
            "/v1/customers/{customer_id}/partners/{partner_id}",
            &[("customer_id", &c), ("partner_id", &p)],
            &[],
            None,
            &bo,
        ),
        base(
            M::POST,
            "/v1/offers",
            &[],
            &[],
            Some(json!({"name": "O", "segment": "commercial", "product_kind": "azure"})),
            &op,
        ),
        base(M::GET, "/v1/offers", &[], &[], None, &au),
        base(
            M::GET,
            "/v1/offers/{offer_id}",
            &[("offer_id", &o)],
            &[],
            None,
            &au,
        ),
        base(
            M::POST,
            "/v1/customers/{customer_id}/subscriptions",
            &[("customer_id", &c)],
            &[],
            Some(json!({"partner_id": partner, "offer_id": offer, "quantity": 1})),
            &Some(sales.clone()),
        ),
        base(
            M::GET,
            "/v1/customers/{customer_id}/subscriptions",
            &[("customer_id", &c)],
            &[],
            None,
            &au,
        ),
        base(
            M::GET,
            "/v1/customers/{customer_id}/subscriptions/{subscription_id}",
            &[("customer_id", &c), ("subscription_id", &s)],
            &[],
            None,
            &au,
        ),
        base(
            M::PUT,
            "/v1/customers/{customer_id}/subscriptions/{subscription_id}/status",
            &[("customer_id", &c), ("subscription_id", &s)],
            &[],
            Some(json!({"status": "active", "reason": "r"})),
            &bo,
        ),
        base(
            M::POST,
            "/v1/purchase-decisions",
            &[],
            &[],
            Some(
                json!({"customer_id": customer, "partner_id": partner, "offer_id": offer, "quantity": 1}),
            ),
            &au,
        ),
        base(
            M::GET,
            "/v1/customers/{customer_id}/eligible-offers",
            &[("customer_id", &c)],
            &[("partner_id", &p)],
            None,
            &au,
        ),
        base(
            M::POST,
            "/v1/tokens",
            &[],
            &[],
            Some(json!({"role": "auditor", "label": "l"})),
            &op,
        ),
        base(M::GET, "/v1/tokens", &[], &[], None, &op),
        base(M::GET, "/v1/principals", &[], &[], None, &au),
        base(
            M::DELETE,
            "/v1/tokens/{token_id}",
            &[("token_id", &t)],
            &[],
            None,
            &op,
        ),
        base(
            M::POST,
            "/v1/webhook-endpoints",
            &[],
            &[],
            Some(
                json!({"url": "http://127.0.0.1:9/hook", "event_types": ["subscription.created"], "description": "d"}),
            ),
            &op,
        ),
        base(M::GET, "/v1/webhook-endpoints", &[], &[], None, &op),
        base(
            M::GET,
            "/v1/webhook-endpoints/{endpoint_id}",
            &[("endpoint_id", &w)],
            &[],
            None,
            &op,
        ),
        base(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/disable",
            &[("endpoint_id", &w)],
            &[],
            None,
            &op,
        ),
        base(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/enable",
            &[("endpoint_id", &w)],
            &[],
            None,
            &op,
        ),
        base(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/redeliver",
            &[("endpoint_id", &w)],
            &[],
            Some(json!({"since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"})),
            &op,
        ),
        base(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
            &[("endpoint_id", &w)],
            &[],
            None,
            &op,
        ),
        base(
            M::POST,
            "/v1/webhook-endpoints/{endpoint_id}/test",
            &[("endpoint_id", &w)],
            &[],
            None,
            &op,
        ),
        base(
            M::GET,
            "/v1/webhook-endpoints/{endpoint_id}/deliveries",
            &[("endpoint_id", &w)],
            &[("limit", &"10".to_owned())],
            None,
            &op,
        ),
        base(
            M::GET,
            "/v1/partner-events",
            &[],
            &[("after", &"0".to_owned())],
            None,
            &op,
        ),
        base(M::GET, "/v1/policies", &[], &[], None, &au),
        base(
            M::GET,
            "/v1/policies/{version}",
            &[("version", &"1".to_owned())],
            &[],
            None,
            &au,
        ),
        base(
            M::POST,
            "/v1/policy-checks",
            &[],
            &[],
            Some(policy_2024.clone()),
            &op,
        ),
        base(
            M::POST,
            "/v1/policy-previews",
            &[],
            &[],
            Some(json!({"document": policy_2024.clone(), "limit": 3})),
            &op,
        ),
        base(
            M::POST,
            "/v1/policies",
            &[],
            &[],
            Some(
                json!({"document": policy_2024, "reason": "program change", "effective_from": "9000-01-01T00:00:00Z"}),
            ),
            &op,
        ),
        base(
            M::GET,
            "/v1/audit/events",
            &[],
            &[("customer_id", &c)],
            None,
            &au,
        ),
        base(
            M::GET,
            "/v1/audit/verify",
            &[],
            &[("customer_id", &c)],
            None,
            &au,
        ),
    ];

    let contract = app.contract().await;
    let mut documented = BTreeSet::new();
    for (path, item) in contract["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let covered: BTreeSet<_> = baselines
        .iter()
        .map(|b| (b.method.to_string(), b.template.to_owned()))
        .collect();
    assert_eq!(
        documented, covered,
        "every operation of the contract has a baseline here"
    );

    let mut sent = 0;
    for baseline in &baselines {
        let reply = send(&app, baseline, &baseline.probe("baseline".into())).await;
        assert!(
            reply.status.is_success(),
            "{} {} baseline: {:#}",
            baseline.method,
            baseline.template,
            reply.body
        );
        let mut before = app.snapshot().await;
        for probe in baseline.probes(&contract, customer) {
            let reply = send(&app, baseline, &probe).await;
            sent += 1;
            let what = format!(
                "{} {} with {}",
                baseline.method, baseline.template, probe.what
            );
            assert!(
                !reply.status.is_server_error(),
                "{what}: {} {:#}",
                reply.status,
                reply.body
            );
            let after = app.snapshot().await;
            // A denied purchase is a decision, recorded by design (R5); every other refusal
            // writes nothing.
            if reply.status.is_client_error() && reply.body["code"] != "purchase_denied" {
                assert_eq!(after, before, "{what} answered {} but wrote", reply.status);
                assert!(
                    reply.body["code"].is_string(),
                    "{what}: {} {:#}",
                    reply.status,
                    reply.body
                );
                // The contract lists every problem the operation answers (the router's own
                // 404 and 405 aside: a spoiled path may match no operation).
                let code = reply.body["code"].as_str().unwrap_or_default();
                if !matches!(code, "route_not_found" | "method_not_allowed") {
                    let documented = &baseline.operation(&contract)["responses"]
                        [reply.status.as_str()]["content"]["application/problem+json"]["schema"]["allOf"]
                        [1]["properties"]["code"]["enum"];
                    assert!(
                        documented
                            .as_array()
                            .is_some_and(|codes| codes.contains(&json!(code))),
                        "{what}: {} {code} is not in the contract's answers of the operation",
                        reply.status
                    );
                }
            }
            before = after;
        }
    }
    assert!(sent > 3_000, "only {sent} probes");
}
