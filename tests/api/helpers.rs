//! `spawn_app()`: a fresh database, the real service on a random port, and one method per call.

use std::{collections::HashMap, str::FromStr, sync::Mutex, time::Duration};

use partner_catalog::{
    app::{RequestContext, tokens},
    config::Config,
    domain::{DisplayName, PartnerId, Role},
};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub use crate::common::test_config;
use crate::common::{TestDatabase, TestService, spawn_configured, spawn_service_with};

/// A running service over its own database, dropped with it.
pub struct TestApp {
    /// Base URL of the first service instance.
    pub address: String,
    /// Base URL of its metrics listener.
    pub metrics_address: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// A pool on the test database, for assertions on what was stored.
    pub pool: PgPool,
    /// Secrets of platform tokens, one per platform role.
    pub operator: String,
    pub back_office: String,
    pub auditor: String,
    /// Sales-agent secrets by partner, made on first use.
    sales: Mutex<HashMap<Uuid, String>>,
    pub database_url: String,
    /// Dropped last, after the pool: the database goes with the test.
    _database: TestDatabase,
}

/// Creates a fresh database and starts the service on it (the service creates and migrates it).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`], its first instance with the settings `change` leaves.
pub async fn spawn_app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    let TestService {
        address,
        metrics_address,
        database,
    } = spawn_service_with(change).await;
    let pool = PgPool::connect(&database.url)
        .await
        .expect("connect to the test database");
    TestApp {
        address,
        metrics_address,
        // Idle connections are dropped before the service's idle limit (`header_read_timeout_secs`)
        // closes them, as every client of a keep-alive server must, or a request sent on a
        // connection the server is closing fails (hyper's IncompleteMessage).
        client: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client"),
        operator: issue_token(&pool, Role::Operator, None).await,
        back_office: issue_token(&pool, Role::BackOffice, None).await,
        auditor: issue_token(&pool, Role::Auditor, None).await,
        sales: Mutex::new(HashMap::new()),
        pool,
        database_url: database.url.clone(),
        _database: database,
    }
}

/// Issues a token as the command line does, valid for a day; returns its secret.
pub async fn issue_token(pool: &PgPool, role: Role, partner: Option<Uuid>) -> String {
    let expires_at = chrono::Utc::now() + chrono::Duration::days(1);
    let partner = partner.map(PartnerId);
    tokens::issue(
        pool,
        &RequestContext::system(),
        role,
        partner,
        expires_at,
        &DisplayName::parse("test").expect("a valid label"),
    )
    .await
    .expect("issue a token")
    .secret
}

/// Starts one more service instance (its own pool) over `database_url`; returns its base URL.
async fn spawn_instance(database_url: &str) -> String {
    spawn_configured(test_config(database_url)).await
}

/// A response's status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    /// The `id` of the created resource.
    pub fn id(&self) -> Uuid {
        Uuid::from_str(
            self.body["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id in {self:?}")),
        )
        .unwrap()
    }

    /// Asserts a problem+json answer with this status and code.
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(self.body["code"], code, "{:#}", self.body);
        assert_eq!(self.body["status"], status.as_u16());
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        // The contract documents every code with the status it is answered with.
        assert_eq!(
            partner_catalog::http::openapi::status_of(code),
            Some(status),
            "`{code}` is not in the contract's problem catalog with status {status}"
        );
    }

    /// The rule codes of a denial.
    pub fn violation_codes(&self) -> Vec<String> {
        self.body["violations"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|v| v["code"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    /// Starts another service instance over the same database.
    pub async fn spawn_instance(&self) -> String {
        spawn_instance(&self.database_url).await
    }

    /// Starts another service instance over the same database, with changed settings.
    pub async fn spawn_instance_with(&self, change: impl FnOnce(&mut Config)) -> String {
        let mut config = test_config(&self.database_url);
        change(&mut config);
        spawn_configured(config).await
    }

    /// The platform token the tests use by default for a call: the operator for offers and
    /// tokens, the auditor for reads, back office for every other change.
    pub fn default_token(&self, method: &Method, path: &str) -> &str {
        if path.starts_with("/v1/tokens")
            || path.starts_with("/v1/policy-checks")
            || path.starts_with("/v1/policy-previews")
            || ((path.starts_with("/v1/offers") || path.starts_with("/v1/policies"))
                && method == Method::POST)
        {
            &self.operator
        } else if method == Method::GET || path.starts_with("/v1/purchase-decisions") {
            &self.auditor
        } else {
            &self.back_office
        }
    }

    /// A request with the default token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let token = self.default_token(&method, path).to_owned();
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token)
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::from(self.request(Method::GET, path).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        Reply::from(
            self.request(Method::POST, path)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        Reply::from(
            self.request(Method::PUT, path)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A PUT with `If-Match`.
    pub async fn put_if_match(&self, path: &str, if_match: &str, body: Value) -> Reply {
        let request = self
            .request(Method::PUT, path)
            .header("if-match", if_match)
            .json(&body);
        Reply::from(request.send().await.unwrap()).await
    }

    /// The `ETag` of a resource.
    pub async fn etag(&self, path: &str) -> String {
        let reply = self.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        reply.headers["etag"].to_str().unwrap().to_owned()
    }

    /// Sends a raw body with the given content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self.request(method, path).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    /// The served OpenAPI contract.
    pub async fn contract(&self) -> Value {
        let reply = Reply::from(
            self.client
                .get(format!("{}/openapi.json", self.address))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.body
    }

    /// What a request could have written: the row count of every table, and how many tokens are
    /// revoked (the one change that is an update). Every write also appends an event, so two equal
    /// snapshots mean nothing was written in between.
    pub async fn snapshot(&self) -> Vec<(String, i64)> {
        // Webhook deliveries and the partner feed are derived from committed events by the
        // service in the background, never written by a request itself.
        let tables: Vec<String> = sqlx::query_scalar(
            "select tablename::text from pg_tables where schemaname = 'public'
               and tablename not in ('webhook_chain_marks', 'webhook_deliveries', 'webhook_attempts',
                                     'partner_feed', 'partner_feed_heads')
             order by 1",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        // One statement, so that a test can take thousands of snapshots.
        let counts: Vec<String> = tables
            .iter()
            .map(|t| format!("(select count(*) from {t})::text"))
            .chain(["(select count(*) from api_tokens where revoked_at is not null)::text".into()])
            .collect();
        let row: Vec<String> = sqlx::query_scalar(&format!("select array[{}]", counts.join(", ")))
            .fetch_one(&self.pool)
            .await
            .unwrap();
        tables
            .into_iter()
            .chain(["revoked tokens".into()])
            .zip(row.iter().map(|n| n.parse().unwrap()))
            .collect()
    }

    /// The principal (token) id of a secret, as events record it.
    pub async fn principal_id(&self, secret: &str) -> Uuid {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(secret.as_bytes()).to_vec();
        sqlx::query_scalar("select id from api_tokens where secret_hash = $1")
            .bind(hash)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// A sales agent's token for `partner`.
    pub async fn sales_token(&self, partner: Uuid) -> String {
        if let Some(token) = self.sales.lock().unwrap().get(&partner) {
            return token.clone();
        }
        let token = issue_token(&self.pool, Role::SalesAgent, Some(partner)).await;
        self.sales.lock().unwrap().insert(partner, token.clone());
        token
    }

    pub async fn create_partner(&self, kind: &str, quals: &[&str]) -> Uuid {
        let body = json!({
            "name": format!("{kind} partner"),
            "kind": kind,
            "reseller_qualifications": quals,
            "evidence": evidence_for(quals),
        });
        let reply = self.post("/v1/partners", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
        reply.id()
    }

    /// A direct-bill partner authorized for every special program.
    pub async fn create_qualified_partner(&self) -> Uuid {
        self.create_partner("direct_bill_partner", &["education", "gcc", "nonprofit"])
            .await
    }

    pub async fn create_customer(&self, quals: &[&str]) -> Uuid {
        let body = json!({
            "name": "Customer",
            "special_qualifications": quals,
            "evidence": evidence_for(quals),
        });
        let reply = self.post("/v1/customers", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
        reply.id()
    }

    pub async fn create_offer(&self, segment: &str, product_kind: &str) -> Uuid {
        let reply = self
            .post("/v1/offers", json!({ "name": format!("{segment} offer"), "segment": segment, "product_kind": product_kind }))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
        reply.id()
    }

    pub async fn link(&self, customer: Uuid, partner: Uuid) {
        let reply = self
            .put(
                &format!("/v1/customers/{customer}/partners/{partner}"),
                json!(null),
            )
            .await;
        assert!(reply.status.is_success(), "{:#}", reply.body);
    }

    /// Reads the customer's version, then replaces its set (with evidence for every qualification).
    pub async fn set_qualifications(&self, customer: Uuid, quals: &[&str]) -> Reply {
        let path = format!("/v1/customers/{customer}/qualifications");
        let etag = self.etag(&path).await;
        let body = json!({
            "special_qualifications": quals,
            "evidence": evidence_for(quals),
            "reason": "test",
        });
        self.put_if_match(&path, &etag, body).await
    }

    /// Reads the partner's version, then replaces its indirect providers.
    pub async fn set_providers(&self, reseller: Uuid, providers: &[Uuid]) -> Reply {
        let etag = self.etag(&format!("/v1/partners/{reseller}")).await;
        let body = json!({ "provider_ids": providers, "reason": "test" });
        let path = format!("/v1/partners/{reseller}/indirect-providers");
        self.put_if_match(&path, &etag, body).await
    }

    /// Buys `offer` for `customer` through `partner`, with this idempotency key.
    /// Buys as a sales agent of `partner`.
    pub async fn purchase(&self, customer: Uuid, partner: Uuid, offer: Uuid, key: &str) -> Reply {
        let token = self.sales_token(partner).await;
        purchase_at(
            &self.client,
            &self.address,
            &token,
            customer,
            partner,
            offer,
            key,
        )
        .await
    }

    /// Returns once a statement `like` this waits for a lock, held by another transaction of the
    /// test; fails after 10 s.
    pub async fn waits_for_a_lock(&self, like: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waiting: bool = sqlx::query_scalar(
                "select exists (select 1 from pg_stat_activity
                                where datname = current_database() and wait_event_type = 'Lock'
                                  and query like $1)",
            )
            .bind(like)
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if waiting {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no statement like `{like}` came to wait for a lock"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// An evidence reference for each qualification, e.g. `{"gcc": "EV-gcc"}`.
pub fn evidence_for(quals: &[&str]) -> Value {
    quals
        .iter()
        .map(|q| (q.to_string(), json!(format!("EV-{q}"))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A purchase against any instance's base URL.
pub async fn purchase_at(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    customer: Uuid,
    partner: Uuid,
    offer: Uuid,
    key: &str,
) -> Reply {
    let response = client
        .post(format!("{base}/v1/customers/{customer}/subscriptions"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({ "partner_id": partner, "offer_id": offer, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

#[cfg(test)]
mod tests {
    use crate::common::{Probe, classify, probe, server};

    #[test]
    fn a_failed_connection_means_nothing_listens_and_a_server_error_does_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            classify(sqlx::Error::Io(refused)),
            Ok(Probe::NothingListens(_))
        ));
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(matches!(
            classify(sqlx::Error::Io(timed_out)),
            Ok(Probe::NothingListens(_))
        ));
        assert!(classify(sqlx::Error::Tls("certificate unknown".into())).is_err());
        assert!(classify(sqlx::Error::Configuration("bad URL".into())).is_err());
    }

    #[tokio::test]
    async fn a_server_that_refuses_the_login_is_reported_with_its_own_words() {
        let mut url = server().admin_url.clone();
        url.set_username("no_such_role_for_tests").unwrap();
        let refusal = probe(url.as_str()).await.unwrap_err();
        assert!(refusal.contains("no_such_role_for_tests"), "{refusal}");
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_nothing_listening() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let found = probe(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await;
        assert!(matches!(found, Ok(Probe::NothingListens(_))), "{found:?}");
    }
}
