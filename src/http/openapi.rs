//! The API contract: OpenAPI 3.1 generated from the handlers' `#[utoipa::path]` annotations,
//! served at `/openapi.json` and rendered at `/docs`. Every problem+json answer an operation can
//! give is declared next to its handler with [`problems!`], from the one catalog below.

use std::collections::BTreeMap;

use axum::{
    Extension,
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response as HttpResponse},
};
use bytes::Bytes;
use serde_json::json;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder,
        example::ExampleBuilder,
        header::HeaderBuilder,
        response::Response,
        schema::{AllOfBuilder, Schema, Type},
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

use super::{ApiError, Code, PROBLEM_JSON};

/// The status the service answers a problem code with; `None` for a code outside the catalog.
pub fn status_of(code: &str) -> Option<StatusCode> {
    Code::parse(code).map(Code::status)
}

/// What any authenticated operation can answer: a bad token, a role without the permission, and
/// the server-side failures.
pub const AUTHENTICATED: &[Code] = &[
    Code::DuplicateAuthorization,
    Code::Unauthenticated,
    Code::InvalidToken,
    Code::Forbidden,
    Code::InternalError,
    Code::DatabaseUnavailable,
    Code::RequestTimeout,
];
/// What an operation with a JSON body can answer about the body.
pub const JSON_BODY: &[Code] = &[
    Code::MalformedJson,
    Code::UnreadableBody,
    Code::InvalidBody,
    Code::UnsupportedMediaType,
    Code::PayloadTooLarge,
];
/// What an operation with path parameters can answer about them.
pub const PATH: &[Code] = &[Code::InvalidPathParameter];
/// What an operation with query parameters can answer about them.
pub const QUERY: &[Code] = &[Code::InvalidQueryParameter];
/// What a conditional write (`If-Match`) can answer about its precondition.
pub const IF_MATCH: &[Code] = &[
    Code::IfMatchRequired,
    Code::InvalidIfMatch,
    Code::VersionMismatch,
];

/// Declares a type whose `IntoResponses` are the problem+json answers of the listed code groups
/// (slices of codes), for a handler's `responses(...)`.
macro_rules! problems {
    ($(#[$meta:meta])* $name:ident = [$($group:expr),+ $(,)?]) => {
        $(#[$meta])*
        pub(super) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::http::openapi::problem_responses(&[$($group),+])
            }
        }
    };
}
pub(super) use problems;

/// One response per status, each listing its codes (as an enum on `code`) with an example each.
/// Panics on a code outside the catalog: the spec is built by a test, which then fails.
pub fn problem_responses(groups: &[&[Code]]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for &code in groups.iter().flat_map(|g| g.iter()) {
        let codes = by_status.entry(code.status().as_u16()).or_default();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    by_status
        .into_iter()
        .map(|(status, problems)| (status.to_string(), problem_response(&problems).into()))
        .collect()
}

fn problem_response(problems: &[Code]) -> Response {
    let status = problems[0].status();
    let description = problems
        .iter()
        .map(|p| format!("`{p}`: {}", p.when()))
        .collect::<Vec<_>>()
        .join(" ");
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("Problem"))
        .item(
            ObjectBuilder::new().property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(problems.iter().map(|p| p.as_str()))),
            ),
        );
    let examples = problems.iter().map(|p| {
        let example = json!({
            "type": format!("urn:partner-catalog:problem:{p}"),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": p.as_str(),
            "detail": p.when(),
        });
        (
            p.as_str(),
            ExampleBuilder::new().value(Some(example)).build(),
        )
    });
    let mut response = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(schema))
            .examples_from_iter(examples)
            .build(),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        );
    }
    if status == StatusCode::UNAUTHORIZED {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some("`Bearer`."))
                .build(),
        );
    }
    response.build()
}

/// One broken rule in a decision or a `purchase_denied` problem (a schema only).
pub enum Violation {}

impl utoipa::PartialSchema for Violation {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(crate::domain::RuleViolation::CODES))
                    .description(Some("The rule's stable code.")),
            )
            .required("code")
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .required("message")
            .property("segment", Ref::from_schema_name("Segment"))
            .property("product_kind", Ref::from_schema_name("ProductKind"))
            .property(
                "required",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("The qualification the partner or customer lacks.")),
            )
            .property(
                "customer_qualifications",
                Ref::from_schema_name("CustomerQualification"),
            )
            .examples([json!({"code": "gcc_lockout", "segment": "education",
                "message": "The customer has a GCC subscription, so it may not buy education subscriptions."})])
            .into()
    }
}

impl utoipa::ToSchema for Violation {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        use crate::domain::{CustomerQualification, ProductKind, Segment};
        use utoipa::PartialSchema;
        schemas.push((Segment::name().into(), Segment::schema()));
        schemas.push((ProductKind::name().into(), ProductKind::schema()));
        schemas.push((
            CustomerQualification::name().into(),
            CustomerQualification::schema(),
        ));
        CustomerQualification::schemas(schemas);
    }
}

/// The RFC 9457 problem shape every error body has.
fn problem_schema() -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new()
        .description(Some(
            "An RFC 9457 problem. `code` is stable and machine-readable; some codes add members \
             (`field`, `violations`, `policy_version`, `current`, `errors`, `rejected`).",
        ))
        .property(
            "type",
            string().description(Some("`urn:partner-catalog:problem:<code>`")),
        )
        .required("type")
        .property("title", string())
        .required("title")
        .property("status", ObjectBuilder::new().schema_type(Type::Integer))
        .required("status")
        .property("code", string())
        .required("code")
        .property("detail", string())
        .required("detail")
        .property(
            "field",
            string().description(Some("`invalid_field`: the field at fault.")),
        )
        .property(
            "violations",
            utoipa::openapi::ArrayBuilder::new()
                .items(Ref::from_schema_name("Violation"))
                .description(Some("`purchase_denied`: every broken rule.")),
        )
        .property(
            "policy_version",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some(
                    "`purchase_denied`: the policy version that denied it.",
                )),
        )
        .into()
}

/// The whole contract.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "partner-catalog",
        description = "The system of record for special-segment sales: which partners may sell which \
                       specially priced offers to which customers. Errors are RFC 9457 \
                       `application/problem+json` with a stable `code`.",
    ),
    modifiers(&Contract),
    // Referenced from query parameters and generic pages, which do not register them themselves.
    components(schemas(
        super::pagination::IdCursor,
        crate::app::import::ImportMode,
        crate::domain::EventType,
    )),
    tags(
        (name = "partners", description = "Partners and their profiles (back office)."),
        (name = "customers", description = "Customers, qualification sets and relationships (back office)."),
        (name = "offers", description = "The catalog."),
        (name = "subscriptions", description = "Buying, and the subscription history (ordering systems)."),
        (name = "decisions", description = "Decisions without side effects."),
        (name = "tokens", description = "Bearer tokens."),
        (name = "principals", description = "Who can act: console users and tokens (auditors, access managers)."),
        (name = "audit", description = "The event log (auditors)."),
        (name = "policies", description = "The rules as published versions, each in force from its instant (operators publish)."),
        (name = "operations", description = "Health, readiness and this contract."),
    ),
)]
pub struct ApiDoc;

/// Adds what the annotations cannot say: the bearer scheme, required by default, and the problem
/// schema.
pub(super) struct Contract;

impl Modify for Contract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components
            .schemas
            .insert("Problem".into(), problem_schema().into());
        // utoipa copies Cargo.toml's license, which this crate does not declare.
        openapi.info.license = None;
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The contract, serialized once when the router is built.
#[derive(Debug, Clone)]
pub(super) struct Served(Bytes);

impl Contract {
    /// Serializes the contract for `/openapi.json`, with what utoipa cannot derive for generic
    /// pages and links.
    pub(super) fn serve(openapi: &utoipa::openapi::OpenApi) -> Served {
        let mut document = serde_json::to_value(openapi).expect("the contract is JSON");
        nullable_cursors(&mut document);
        add_links(&mut document);
        let json = serde_json::to_vec_pretty(&document).expect("JSON serializes");
        Served(Bytes::from(json))
    }
}

/// A page's `next_cursor` is `null` on the last page; utoipa drops the `Option` of a generic
/// field, so every `next_cursor` property is made nullable here.
fn nullable_cursors(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(cursor) = map
                .get_mut("properties")
                .and_then(|p| p.get_mut("next_cursor"))
            {
                let schema = cursor.take();
                *cursor = json!({ "anyOf": [schema, { "type": "null" }] });
            }
            map.values_mut().for_each(nullable_cursors);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(nullable_cursors),
        _ => {}
    }
}

/// What a created resource leads to, so the stateful phase of a contract test can walk from
/// creation to use.
struct Links {
    /// The creating operation.
    from: &'static str,
    /// Its success status.
    status: &'static str,
    /// The operations the created resource can be used with.
    to: &'static [&'static str],
    /// Their parameters, taken from the response.
    parameters: &'static [(&'static str, &'static str)],
}

const LINKS: &[Links] = &[
    Links {
        from: "create_partner",
        status: "201",
        to: &[
            "get_partner",
            "get_partner_profile",
            "get_partner_profile_history",
            "set_partner_reseller_qualifications",
            "set_partner_indirect_providers",
        ],
        parameters: &[("partner_id", "$response.body#/id")],
    },
    Links {
        from: "create_customer",
        status: "201",
        to: &[
            "get_customer",
            "get_customer_qualifications",
            "get_customer_qualification_history",
            "set_customer_qualifications",
            "list_customer_partners",
            "list_subscriptions",
        ],
        parameters: &[("customer_id", "$response.body#/id")],
    },
    Links {
        from: "create_offer",
        status: "201",
        to: &["get_offer"],
        parameters: &[("offer_id", "$response.body#/id")],
    },
    Links {
        from: "purchase_subscription",
        status: "201",
        to: &["get_subscription", "set_subscription_status"],
        parameters: &[
            ("customer_id", "$response.body#/customer_id"),
            ("subscription_id", "$response.body#/id"),
        ],
    },
    Links {
        from: "create_token",
        status: "201",
        to: &["revoke_token"],
        parameters: &[("token_id", "$response.body#/id")],
    },
];

fn add_links(document: &mut serde_json::Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for operation in paths.values_mut().filter_map(|item| item.as_object_mut()) {
        for operation in operation.values_mut() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for Links {
                from,
                status,
                to,
                parameters,
            } in LINKS
            {
                if *from != id {
                    continue;
                }
                let parameters: serde_json::Map<_, _> = parameters
                    .iter()
                    .map(|(name, source)| ((*name).to_owned(), json!(source)))
                    .collect();
                let links: serde_json::Map<_, _> = to
                    .iter()
                    .map(|target| {
                        let link = json!({ "operationId": target, "parameters": parameters });
                        ((*target).to_owned(), link)
                    })
                    .collect();
                operation["responses"][*status]["links"] = serde_json::Value::Object(links);
            }
        }
    }
}

/// The contract as JSON.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document.", body = Object, content_type = "application/json")),
)]
pub(super) async fn openapi_json(Extension(Served(json)): Extension<Served>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json)
}

// The doc comment is the operation's summary in the contract. Swagger UI's files are compiled
// into the binary (`utoipa-swagger-ui`) and served by `ui_files`: the page needs nothing else.
/// The contract, rendered for people by Swagger UI, served by this service alone (no CDN).
#[utoipa::path(
    get, path = "/docs", tag = "operations", security(()),
    responses((status = 200, description = "An HTML page rendering `/openapi.json` with Swagger UI.", content_type = "text/html")),
)]
pub(super) async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

/// Swagger UI's own `index.html`, with the files named from `/docs/` rather than relative to the
/// page, so the same page works at `/docs` and `/docs/`.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>partner-catalog API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="stylesheet" href="/docs/index.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<noscript>The API contract is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-ui-standalone-preset.js"></script>
<script src="/docs/swagger-initializer.js"></script>
</body>
</html>
"#;

/// Swagger UI's files (scripts, styles, icons) under `/docs/`, and `/docs/` itself. They are the
/// page's parts, not operations of the API, so the contract does not list them; the route test
/// reads them from here.
pub fn ui_files<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/docs/", axum::routing::get(docs))
        .route("/docs/{file}", axum::routing::get(ui_file))
}

/// How Swagger UI is set up: the contract at `/openapi.json`; no online validator, which would
/// send the contract's URL to a third party and load its badge from there.
fn ui_config() -> std::sync::Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<utoipa_swagger_ui::Config<'static>>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            std::sync::Arc::new(
                utoipa_swagger_ui::Config::new(["/openapi.json"])
                    .use_base_layout()
                    .validator_url("none"),
            )
        })
        .clone()
}

/// One file of Swagger UI; its `swagger-initializer.js` carries [`ui_config`].
async fn ui_file(super::extract::Path(file): super::extract::Path<String>) -> HttpResponse {
    match utoipa_swagger_ui::serve(&file, ui_config()) {
        Ok(Some(found)) => {
            // The files are compiled in: borrowed, except the initializer made for this config.
            let body = match found.bytes {
                std::borrow::Cow::Borrowed(bytes) => Bytes::from_static(bytes),
                std::borrow::Cow::Owned(bytes) => Bytes::from(bytes),
            };
            let mut response = ([(header::CONTENT_TYPE, found.content_type)], body).into_response();
            if found.gzpipped {
                response.headers_mut().insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static("gzip"),
                );
            }
            response
        }
        Ok(None) => {
            ApiError::new(Code::RouteNotFound, "No such file of the API docs.").into_response()
        }
        Err(error) => {
            tracing::error!(%error, file, "cannot render a Swagger UI file");
            ApiError::new(Code::InternalError, "The API docs cannot be served.").into_response()
        }
    }
}
