//! The real service as a child process (the binary cargo built), its command line, and the seed
//! data the purchase load needs.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cluster::{free_port, tail};

/// The binary under test.
const BINARY: &str = env!("CARGO_BIN_EXE_partner-catalog");
/// Longest a (re)start may take until `/healthz` answers, migrations included.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Every client of the tests: loopback only, and no request may hang.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(crate::CLIENT_TIMEOUT)
        .build()
        .expect("build the HTTP client")
}

/// A `partner-catalog serve` child process on a fixed loopback port (so a restart keeps its address).
/// Killed on drop; its output goes to `service.log` in the test's directory, whose tail is printed
/// when the test fails.
pub struct Service {
    child: Option<Child>,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    port: u16,
    database_url: String,
    dir: PathBuf,
    log: PathBuf,
    /// Settings on top of the fault tests' own.
    settings: Vec<(String, String)>,
}

impl Service {
    /// Starts the service over `database_url` (it creates and migrates the database) and waits
    /// until it answers.
    pub async fn start(database_url: &str, dir: &Path) -> Self {
        Self::start_with(database_url, dir, &[]).await
    }

    /// Starts the service with these environment variables on top of the usual ones.
    pub async fn start_with(database_url: &str, dir: &Path, settings: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut service = Self {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            port,
            database_url: database_url.to_owned(),
            dir: dir.to_owned(),
            log: dir.join("service.log"),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        service.restart().await;
        service
    }

    /// Starts the process (again) on the same port and waits until `/healthz` answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the service is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the service log");
        let child = self
            .command()
            .arg("serve")
            .env("BIND", format!("127.0.0.1:{}", self.port))
            // Small, so that a database outage is answered within about a second.
            .env("DATABASE_ACQUIRE_TIMEOUT_SECS", "1")
            .env("DATABASE_MAX_CONNECTIONS", "8")
            .env("REQUEST_TIMEOUT_SECS", "5")
            .env("STATEMENT_TIMEOUT_MS", "3000")
            .envs(self.settings.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().expect("clone the log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn partner-catalog serve");
        self.child = Some(child);
        let client = http_client();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                self.is_running(),
                "the service exited while starting:\n{}",
                self.log_tail(40)
            );
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the service did not answer within {START_TIMEOUT:?}:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no rollback, no flushing; whatever was in flight is cut off.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as an orchestrator stops the service.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("the service is running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits up to `bound` for the process to exit; its status, or `None` if it is still running.
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < bound {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Whether the process is still running (it has not exited or been killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The end of the service's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Counts the lines of the service's log that contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The binary with this service's database and nothing from the repository's `.env` (it runs
    /// in the temp directory, where no `.env` is found).
    fn command(&self) -> Command {
        let mut command = Command::new(BINARY);
        command
            .current_dir(&self.dir)
            .env("DATABASE_URL", &self.database_url)
            .env("RUST_LOG", "info,sqlx=warn,tower_http=warn")
            .env("NO_COLOR", "1")
            // Tests run side by side: no fixed metrics port.
            .env("METRICS_BIND", "off")
            .stdin(Stdio::null());
        command
    }

    /// `partner-catalog token create`: a token's secret, issued on the command line.
    pub fn token(&self, role: &str, partner: Option<Uuid>) -> String {
        let mut command = self.command();
        command.args(["token", "create", "--role", role, "--label", "fault tests"]);
        if let Some(partner) = partner {
            command.args(["--partner", &partner.to_string()]);
        }
        let output = command.output().expect("run partner-catalog token create");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "token create failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("secret:"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| panic!("no secret in the output of token create: {stdout}"))
    }

    /// `partner-catalog audit verify`: whether every hash chain of the event log verifies.
    pub fn audit_verifies(&self) -> (bool, String) {
        let output = self
            .command()
            .args(["audit", "verify"])
            .output()
            .expect("run partner-catalog audit verify");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let internal: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("internal error"))
                .take(10)
                .collect();
            eprintln!(
                "--- service log ({:?}): internal errors ---\n{}\n--- last lines ---\n{}",
                self.log,
                internal.join("\n"),
                self.log_tail(40)
            );
        }
        self.kill();
    }
}

/// What the purchase load buys with: one partner and its sales agent's token, one education offer,
/// education customers linked to the partner. Every purchase of it is allowed by the rules.
#[derive(Debug, Clone)]
pub struct Shop {
    /// The service's base URL.
    pub base: String,
    /// The partner buying.
    pub partner: Uuid,
    /// The partner's sales agent.
    pub sales_token: String,
    /// The offer bought.
    pub offer: Uuid,
    /// The customers bought for.
    pub customers: Vec<Uuid>,
}

/// Creates the shop through the API, as back office and operator would.
pub async fn seed(service: &Service, customers: usize) -> Shop {
    let client = http_client();
    let back_office = service.token("back_office", None);
    let operator = service.token("operator", None);
    let call = |method: reqwest::Method, path: &str, token: &str, body: Value| {
        let request = client
            .request(method, format!("{}{path}", service.base))
            .bearer_auth(token)
            .json(&body);
        async move {
            let response = request.send().await.expect("seed request");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "seeding failed: {status} {body:#}");
            body
        }
    };
    let id = |body: Value| -> Uuid {
        body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no id in {body:#}"))
    };
    let partner = id(call(
        reqwest::Method::POST,
        "/v1/partners",
        &back_office,
        json!({
            "name": "Fault Reseller",
            "kind": "direct_bill_partner",
            "reseller_qualifications": ["education"],
            "evidence": { "education": "EV-education" },
        }),
    )
    .await);
    let offer = id(call(
        reqwest::Method::POST,
        "/v1/offers",
        &operator,
        json!({ "name": "Education seats", "segment": "education", "product_kind": "license_based" }),
    )
    .await);
    let mut customer_ids = Vec::new();
    for n in 0..customers {
        let customer = id(call(
            reqwest::Method::POST,
            "/v1/customers",
            &back_office,
            json!({
                "name": format!("Fault School {n}"),
                "special_qualifications": ["education"],
                "evidence": { "education": "EV-education" },
            }),
        )
        .await);
        call(
            reqwest::Method::PUT,
            &format!("/v1/customers/{customer}/partners/{partner}"),
            &back_office,
            Value::Null,
        )
        .await;
        customer_ids.push(customer);
    }
    Shop {
        base: service.base.clone(),
        partner,
        sales_token: service.token("sales_agent", Some(partner)),
        offer,
        customers: customer_ids,
    }
}
