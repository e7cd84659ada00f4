//! The contract: `/openapi.json` describes every route the service serves, and `/docs` renders it.

use std::collections::BTreeSet;

use partner_catalog::http::{AppState, router};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

/// The methods a route could be registered for.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

async fn contract(address: &str) -> Value {
    let response = reqwest::get(format!("{address}/openapi.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The paths the router serves, read from its debug form (axum lists every registered path
/// there), so a route added without an OpenAPI operation is caught.
fn served_paths(app_router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{app_router:?}");
    let listing = debug
        .split_once("paths: {")
        .expect("the router's debug form lists its paths")
        .1;
    // `{RouteId(0): "/v1/offers", ...}`: the quoted strings up to the closing brace.
    let mut paths = BTreeSet::new();
    let mut quoted: Option<String> = None;
    for c in listing.chars() {
        match (&mut quoted, c) {
            (None, '}') => break,
            (None, '"') => quoted = Some(String::new()),
            (Some(path), '"') => {
                paths.insert(std::mem::take(path));
                quoted = None;
            }
            (Some(path), c) => path.push(c),
            (None, _) => {}
        }
    }
    paths
}

#[tokio::test]
async fn the_contract_lists_every_route_the_router_serves() {
    let app = spawn_app().await;
    let spec = contract(&app.address).await;
    let documented: BTreeSet<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let state = AppState {
        pool: app.pool.clone(),
        tokens: Default::default(),
        exports: partner_catalog::app::audit::Exports::new(
            app.database_url.parse().unwrap(),
            1,
            std::time::Duration::from_secs(5),
        ),
        limits: partner_catalog::http::Limits {
            request_timeout: std::time::Duration::from_secs(5),
            body_bytes: 1024,
            import_body_bytes: 1024,
            import_timeout: std::time::Duration::from_secs(5),
        },
        console: partner_catalog::http::console::Settings {
            sessions: partner_catalog::app::users::SessionLimits {
                idle: std::time::Duration::from_secs(60),
                absolute: std::time::Duration::from_secs(600),
            },
            secure_cookies: partner_catalog::config::SecureCookies::Never,
        },
        webhooks: Default::default(),
        feed_bell: Default::default(),
    };
    let served = served_paths(&router(state.clone()));
    assert!(served.len() > 20, "paths read from the router: {served:?}");
    // The console's HTML pages (its file upload has a router of its own, with the import's limits)
    // and Swagger UI's files (parts of the `/docs` page) are not operations: the only routes
    // allowed outside the contract, and all of them served.
    let mut console =
        served_paths(&partner_catalog::http::console::router().with_state(state.clone()));
    console.extend(served_paths(
        &partner_catalog::http::console::upload_router(state.limits).with_state(state),
    ));
    assert!(console.contains("/sign-in"), "console paths: {console:?}");
    assert!(console.is_disjoint(&documented), "{console:?}");
    let ui_files = served_paths(&partner_catalog::http::openapi::ui_files::<()>());
    assert_eq!(
        ui_files,
        BTreeSet::from(["/docs/".to_owned(), "/docs/{file}".to_owned()])
    );
    assert!(ui_files.is_subset(&served), "{served:?}");
    let operations: BTreeSet<String> = served
        .difference(&ui_files)
        .filter(|path| !console.contains(*path))
        .cloned()
        .collect();
    assert_eq!(operations, documented, "routes served vs documented");
}

/// What clients see, committed in `tests/api/snapshots/`: a change to the contract fails this test
/// until the new snapshot is accepted (`cargo insta review`), so it shows in review as a diff.
/// Nothing is masked: every part of the contract is stable.
#[tokio::test]
async fn the_contract_is_the_one_committed() {
    let app = spawn_app().await;
    insta::assert_json_snapshot!("openapi", contract(&app.address).await);
}

#[tokio::test]
async fn every_method_a_documented_path_accepts_is_documented() {
    let app = spawn_app().await;
    let spec = contract(&app.address).await;
    for (path, item) in spec["paths"].as_object().unwrap() {
        // Any well-formed id: the route matches before the handler looks anything up.
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c8d"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let documented = item.get(method.as_str().to_lowercase()).is_some();
            let response = app
                .client
                .request(method.clone(), format!("{}{concrete}", app.address))
                .send()
                .await
                .unwrap();
            let routed = response.status() != StatusCode::METHOD_NOT_ALLOWED;
            assert_eq!(
                routed,
                documented,
                "{method} {path}: answered {}, documented: {documented}",
                response.status()
            );
        }
    }
}

#[tokio::test]
async fn every_operation_is_named_and_documents_its_answers() {
    let app = spawn_app().await;
    let spec = contract(&app.address).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut operation_ids = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                operation_ids.insert(id.to_owned()),
                "{method} {path}: operationId `{id}` not unique"
            );
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} documents no success"
            );
            let public = operation["security"] == serde_json::json!([{}]);
            for (status, response) in responses {
                if !status.starts_with('2') {
                    let examples = &response["content"]["application/problem+json"]["examples"];
                    assert!(
                        examples.as_object().is_some_and(|e| !e.is_empty()),
                        "{method} {path} {status}: no problem examples"
                    );
                }
            }
            if !public {
                assert!(
                    responses.contains_key("401") && responses.contains_key("503"),
                    "{method} {path}: authenticated operation without 401/503"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_contract_states_the_length_limits_the_service_enforces() {
    use partner_catalog::domain::{DisplayName, Reason};
    let app = spawn_app().await;
    let spec = contract(&app.address).await;
    let mut checked = 0;
    for (schema_name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        // Only request bodies: they are the schemas that deny unknown members.
        if schema["additionalProperties"] != false {
            continue;
        }
        for (name, property) in properties {
            let limit = match name.as_str() {
                "name" | "label" => DisplayName::MAX_CHARS,
                "reason" => Reason::MAX_CHARS,
                _ => continue,
            };
            assert_eq!(
                property["maxLength"].as_u64(),
                Some(limit as u64),
                "{schema_name}.{name}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} text members found");
}

#[tokio::test]
async fn the_docs_page_renders_the_contract() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/docs", app.address)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.text().await.unwrap().contains("/openapi.json"));
}

/// Everything the page loads comes from the service itself, and is there: `/docs` works offline.
#[tokio::test]
async fn the_docs_page_loads_only_files_the_service_serves() {
    let app = spawn_app().await;
    for page in ["/docs", "/docs/"] {
        let html = app
            .client
            .get(format!("{}{page}", app.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let references: Vec<&str> = html
            .split(['"', '\''])
            .skip(1)
            .step_by(2)
            .filter(|v| v.starts_with('/') || v.contains("//"))
            .collect();
        assert!(references.len() >= 5, "{page}: {references:?}");
        for reference in references {
            assert!(
                reference.starts_with('/') && !reference.starts_with("//"),
                "{page} loads {reference}"
            );
            let response = app
                .client
                .get(format!("{}{reference}", app.address))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{page} loads {reference}"
            );
        }
    }
    let initializer = app
        .client
        .get(format!("{}/docs/swagger-initializer.js", app.address))
        .send()
        .await
        .unwrap();
    assert!(
        initializer.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let initializer = initializer.text().await.unwrap();
    assert!(
        initializer.contains("\"url\": \"/openapi.json\""),
        "{initializer}"
    );
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );
}

#[tokio::test]
async fn a_file_the_docs_do_not_have_is_route_not_found() {
    let app = spawn_app().await;
    for path in ["/docs/no-such-file.js", "/docs/nested/swagger-ui.css"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        crate::helpers::Reply::from(response)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "route_not_found");
    }
}

/// The README's error table: each code with the statuses of its row.
fn readme_error_table() -> Vec<(String, Vec<u16>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Error codes")
        .nth(1)
        .expect("the README has an error code table");
    let mut rows = Vec::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let statuses: Vec<u16> = cells[1]
            .split(", ")
            .filter_map(|s| s.parse().ok())
            .collect();
        if statuses.is_empty() {
            continue; // the header and its rule
        }
        for code in cells[2].split('`').skip(1).step_by(2) {
            rows.push((code.to_owned(), statuses.clone()));
        }
    }
    rows
}

#[test]
fn the_readme_error_table_lists_every_code_with_its_status() {
    use partner_catalog::http::Code;
    let rows = readme_error_table();
    for (code, statuses) in &rows {
        let known =
            Code::parse(code).unwrap_or_else(|| panic!("README lists `{code}`, which is no code"));
        assert!(
            statuses.contains(&known.status().as_u16()),
            "README gives `{code}` status {statuses:?}, the service answers {}",
            known.status()
        );
    }
    for code in Code::ALL {
        assert!(
            rows.iter().any(|(c, _)| c == code.as_str()),
            "`{code}` is missing from the README's error table"
        );
    }
}

#[test]
fn every_problem_code_is_asserted_by_name_in_an_http_test() {
    use partner_catalog::http::Code;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut sources = String::new();
    for suite in std::fs::read_dir(dir).unwrap() {
        for file in std::fs::read_dir(suite.unwrap().path())
            .into_iter()
            .flatten()
        {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let unasserted: Vec<_> = Code::ALL
        .iter()
        .filter(|c| !sources.contains(&format!("\"{c}\"")))
        .collect();
    assert!(unasserted.is_empty(), "codes no test names: {unasserted:?}");
}
