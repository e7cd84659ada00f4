//! `spawn_app()`: a fresh database, the real service on a random port, and one method per call.

use std::{
    str::FromStr,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use std::{collections::HashMap, sync::Mutex};

use partner_catalog::{
    app::{RequestContext, tokens},
    config::{Config, LogFormat, MetricsBind},
    domain::{DisplayName, PartnerId, Role},
    startup::Application,
};
use reqwest::{Method, Response, StatusCode, Url};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use testcontainers_modules::{
    postgres::Postgres,
    testcontainers::{Container, ImageExt, runners::SyncRunner},
};
use uuid::Uuid;

/// PostgreSQL image for the Docker fallback; the module's default tag is too old for us.
const POSTGRES_TAG: &str = "16-alpine";
/// Test databases are named `pc_test_<unix seconds>_<random>`; ones older than this are leftovers.
const STALE_AFTER_SECS: u64 = 3600;

static SERVER: OnceLock<Server> = OnceLock::new();

/// The PostgreSQL server the tests use.
struct Server {
    /// URL of its maintenance database.
    admin_url: Url,
    /// Keeps a testcontainers server alive for the whole test run.
    _container: Option<Container<Postgres>>,
}

/// `DATABASE_URL` (or `.env`) when a server answers there; otherwise a container, if Docker runs.
fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        // A thread of its own: this may block, and the sync runner must not run inside a runtime.
        std::thread::spawn(|| {
            let _ = dotenvy::dotenv();
            let configured = std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let mut admin_url = Url::parse(&configured).expect("DATABASE_URL is not a URL");
            admin_url.set_path("/postgres");
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let probe = runtime.block_on(probe(admin_url.as_str())).unwrap_or_else(|refusal| {
                panic!("PostgreSQL at {admin_url} refused the tests: {refusal}")
            });
            let server = if let Probe::Answered = probe {
                Server { admin_url, _container: None }
            } else {
                let container = Postgres::default().with_tag(POSTGRES_TAG).start().unwrap_or_else(|e| {
                    panic!("no PostgreSQL answers at {admin_url} ({probe:?}) and no container could be started: {e}")
                });
                remove_when_this_process_ends(container.id());
                let host = container.get_host().expect("container host");
                let port = container.get_host_port_ipv4(5432).expect("container port");
                let admin_url = Url::parse(&format!("postgres://postgres:postgres@{host}:{port}/postgres")).unwrap();
                Server { admin_url, _container: Some(container) }
            };
            runtime.block_on(drop_stale_databases(&server.admin_url));
            server
        })
        .join()
        .expect("test database server setup failed")
    })
}

/// Longest the tests wait for `DATABASE_URL` to answer before looking for Docker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a first connection to `DATABASE_URL` found.
#[derive(Debug, PartialEq)]
enum Probe {
    /// A server accepted the login.
    Answered,
    /// Nothing answered there (refused, unreachable, no answer in time): a container may stand in.
    NothingListens(String),
}

/// Connects once. `Err` is a server (or the URL) refusing us: a wrong password, an unknown role,
/// TLS required. A container would only hide that, so it is not a reason to start one.
async fn probe(url: &str) -> Result<Probe, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect(url)).await {
        Err(_) => Ok(Probe::NothingListens(format!(
            "no answer within {PROBE_TIMEOUT:?}"
        ))),
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(Probe::Answered)
        }
        Ok(Err(error)) => classify(error),
    }
}

/// A failed first connection: only a failure of the connection itself means that nothing
/// listens; anything else was said by a server, or is a bad URL.
fn classify(error: sqlx::Error) -> Result<Probe, String> {
    match error {
        sqlx::Error::Io(error) => Ok(Probe::NothingListens(error.to_string())),
        other => Err(other.to_string()),
    }
}

/// Removes the container once this test process has ended, however it ends: a static is never
/// dropped, and a killed run drops nothing. A detached shell, deaf to the terminal's signals,
/// waits for this process to go and then removes the container.
#[allow(clippy::zombie_processes)] // it outlives us on purpose; init reaps it
fn remove_when_this_process_ends(container: &str) {
    let script = format!(
        "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         docker rm --force --volumes {container} >/dev/null 2>&1",
        pid = std::process::id()
    );
    let watcher = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(error) = watcher {
        eprintln!(
            "cannot watch the test container ({error}); remove it with `docker rm -f {container}`"
        );
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Drops test databases left behind by killed test runs.
async fn drop_stale_databases(admin_url: &Url) {
    let mut conn = PgConnection::connect(admin_url.as_str())
        .await
        .expect("connect to PostgreSQL");
    let names: Vec<String> =
        sqlx::query_scalar("select datname from pg_database where datname like 'pc_test_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if created + STALE_AFTER_SECS < now_secs() {
            let _ = conn
                .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
                .await;
        }
    }
}

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
    database_name: String,
}

/// Creates a fresh database and starts the service on it (the service creates and migrates it).
pub async fn spawn_app() -> TestApp {
    let server = server();
    let database_name = format!("pc_test_{}_{}", now_secs(), Uuid::new_v4().simple());
    let mut url = server.admin_url.clone();
    url.set_path(&format!("/{database_name}"));
    let database_url = url.to_string();
    let (address, metrics_address) = spawn_listeners(test_config(&database_url)).await;
    let metrics_address = metrics_address.expect("test instances serve metrics");
    let pool = PgPool::connect(&database_url)
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
        database_url,
        database_name,
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

/// The settings of a test instance: small pool, production time limits.
pub fn test_config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        bind: "127.0.0.1:0".parse().unwrap(),
        database_max_connections: 5,
        database_acquire_timeout_secs: 5,
        statement_timeout_ms: 5_000,
        idle_in_transaction_timeout_ms: 10_000,
        request_timeout_secs: 30,
        body_limit_bytes: 64 * 1024,
        import_body_limit_bytes: 256 * 1024 * 1024,
        import_timeout_secs: 300,
        max_connections: 1024,
        header_read_timeout_secs: 10,
        send_timeout_secs: 30,
        shutdown_grace_secs: 20,
        export_max_concurrent: 2,
        metrics_bind: MetricsBind::On("127.0.0.1:0".parse().unwrap()),
        session_idle_minutes: 30,
        session_max_hours: 12,
        secure_cookies: partner_catalog::config::SecureCookies::Auto,
        log_format: LogFormat::Text,
    }
}

/// Starts a service instance with these settings; returns its base URL.
async fn spawn_configured(config: Config) -> String {
    spawn_listeners(config).await.0
}

/// Starts a service instance with these settings; returns the base URLs of its API and of its
/// metrics listener.
async fn spawn_listeners(config: Config) -> (String, Option<String>) {
    let app = Application::build(&config)
        .await
        .expect("build the application");
    let address = format!("http://{}", app.local_addr());
    let metrics = app.metrics_addr().map(|a| format!("http://{a}"));
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (address, metrics)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let admin_url = server().admin_url.clone();
        let name = self.database_name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; use a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(admin_url.as_str()).await {
                    let _ = conn
                        .execute(
                            format!(r#"drop database if exists "{name}" with (force)"#).as_str(),
                        )
                        .await;
                }
            });
        })
        .join();
    }
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
            || (path.starts_with("/v1/offers") && method == Method::POST)
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
        let tables: Vec<String> = sqlx::query_scalar(
            "select tablename::text from pg_tables where schemaname = 'public' order by 1",
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
    use super::{Probe, classify, probe, server};

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
