//! What every suite that runs the real service needs: a PostgreSQL server, a fresh database per
//! test (dropped when it ends) and the service started on random ports over it. Included by
//! `tests/api` and `tests/browser` with `#[path = "../common/mod.rs"] mod common;`.

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use partner_catalog::{
    config::{Config, LogFormat, MetricsBind},
    startup::Application,
};
use reqwest::Url;
use sqlx::{Connection, Executor, PgConnection};
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
pub struct Server {
    /// URL of its maintenance database.
    pub admin_url: Url,
    /// Keeps a testcontainers server alive for the whole test run.
    _container: Option<Container<Postgres>>,
}

/// `DATABASE_URL` (or `.env`) when a server answers there; otherwise a container, if Docker runs.
pub fn server() -> &'static Server {
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
pub enum Probe {
    /// A server accepted the login.
    Answered,
    /// Nothing answered there (refused, unreachable, no answer in time): a container may stand in.
    NothingListens(String),
}

/// Connects once. `Err` is a server (or the URL) refusing us: a wrong password, an unknown role,
/// TLS required. A container would only hide that, so it is not a reason to start one.
pub async fn probe(url: &str) -> Result<Probe, String> {
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
pub fn classify(error: sqlx::Error) -> Result<Probe, String> {
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

/// A database of one test's own on [`server`], dropped with this value. Only its name is chosen
/// here: the service creates it (and migrates it) when it starts.
pub struct TestDatabase {
    /// Its URL, for the service's configuration and the test's own pool.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// A new database name, `pc_test_<unix seconds>_<random>`, on the tests' server.
    pub fn fresh() -> Self {
        let name = format!("pc_test_{}_{}", now_secs(), Uuid::new_v4().simple());
        let mut url = server().admin_url.clone();
        url.set_path(&format!("/{name}"));
        Self {
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = server().admin_url.clone();
        let name = self.name.clone();
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
        // Test receivers listen on the loopback.
        webhook_allow_private: "127.0.0.0/8".parse().unwrap(),
        webhook_retry_schedule: "200ms,400ms,800ms".into(),
        webhook_timeout_secs: 2,
        webhook_poll_ms: 50,
        webhook_delivery: true,
    }
}

/// Starts a service instance with these settings; returns its base URL.
pub async fn spawn_configured(config: Config) -> String {
    spawn_listeners(config).await.0
}

/// Starts a service instance with these settings in this test's runtime; returns the base URLs
/// of its API and of its metrics listener.
pub async fn spawn_listeners(config: Config) -> (String, Option<String>) {
    let app = Application::build(&config)
        .await
        .expect("build the application");
    let address = format!("http://{}", app.local_addr());
    let metrics = app.metrics_addr().map(|a| format!("http://{a}"));
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (address, metrics)
}

/// The service over a fresh database of its own, which is dropped with this value.
pub struct TestService {
    /// Base URL of the API, e.g. `http://127.0.0.1:40123`.
    pub address: String,
    /// Base URL of its metrics listener.
    pub metrics_address: String,
    /// Its database.
    pub database: TestDatabase,
}

/// Starts the service, with [`test_config`], over a fresh database.
pub async fn spawn_service() -> TestService {
    spawn_service_with(|_| {}).await
}

/// Starts the service, with [`test_config`] as `change` leaves it, over a fresh database.
pub async fn spawn_service_with(change: impl FnOnce(&mut Config)) -> TestService {
    let database = TestDatabase::fresh();
    let mut config = test_config(&database.url);
    change(&mut config);
    let (address, metrics_address) = spawn_listeners(config).await;
    TestService {
        address,
        metrics_address: metrics_address.expect("test instances serve metrics"),
        database,
    }
}
