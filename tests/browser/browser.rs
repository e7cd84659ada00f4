//! One chromedriver per test process, a fresh headless Chromium session per test, and what the
//! tests ask of a page: the requests it made, its console errors, a screenshot.

use std::{
    collections::HashMap,
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    ops::Deref,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::http::Method;
use fantoccini::{Client, ClientBuilder, wd::WebDriverCompatibleCommand};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::Url;
use serde_json::{Value, json};

/// What to install when a browser binary is missing.
const INSTALL: &str =
    "install chromium and chromium-driver: apt-get install chromium chromium-driver";

/// Longest chromedriver may take to listen, and a page to show what a test waits for.
const STARTUP: Duration = Duration::from_secs(30);
/// Longest a test waits for an element to appear.
pub const WAIT: Duration = Duration::from_secs(30);

/// Chromium's flags: headless, no sandbox (tests run as root in CI), a fixed window for
/// screenshots, and a host resolver that resolves nothing but 127.0.0.1, so any request for the
/// internet fails at once instead of leaving the machine: a page that renders here needs nothing
/// but the service.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
];

/// A binary named by an environment variable, or its Debian path; panics when it is not there.
fn binary(variable: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var_os(variable).unwrap_or_else(|| default.into()));
    assert!(
        path.is_file(),
        "{} not found ({variable}, default {default}): {INSTALL}",
        path.display()
    );
    path
}

/// The chromedriver of this test process, started on first use.
struct Driver {
    /// Its base URL, e.g. `http://127.0.0.1:41234/`.
    url: String,
    /// Where its output goes.
    log: PathBuf,
    /// Kept so the process is not forgotten; it is ended by the watcher of
    /// [`kill_when_this_process_ends`].
    _process: Mutex<Child>,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

fn driver() -> &'static Driver {
    DRIVER.get_or_init(start_driver)
}

/// Starts chromedriver on a free port. Between finding the port free and chromedriver binding it,
/// another process may take it; chromedriver then exits, and it is started again on another.
fn start_driver() -> Driver {
    let program = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
    let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromedriver-{}.log", std::process::id()));
    for _ in 0..3 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let output = File::create(&log).expect("create the chromedriver log");
        let mut process = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("the chromedriver log"))
            .stderr(output)
            // A group of its own, with the browsers it starts, so all of them can be ended at once.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", program.display()));
        kill_when_this_process_ends(process.id());
        let started = Instant::now();
        while started.elapsed() < STARTUP {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Driver {
                    url: format!("http://127.0.0.1:{port}/"),
                    log,
                    _process: Mutex::new(process),
                };
            }
            if process.try_wait().expect("chromedriver's status").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = process.kill();
        let _ = process.wait();
    }
    panic!(
        "chromedriver ({}) did not start; its output: {}\n{}",
        program.display(),
        log.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Ends chromedriver and every browser it started once this test process has ended, however it
/// ends (a static is never dropped, and a killed run drops nothing): a detached shell, deaf to
/// the terminal's signals, waits for this process to go, then signals the driver's process group.
#[allow(clippy::zombie_processes)] // it outlives us on purpose; init reaps it
fn kill_when_this_process_ends(group: u32) {
    let script = format!(
        "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         kill -TERM -{group} 2>/dev/null; sleep 2; kill -KILL -{group} 2>/dev/null",
        pid = std::process::id()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot watch chromedriver: sh is missing");
}

/// A headless Chromium session of one test, closed when dropped. Derefs to the fantoccini
/// [`Client`] for everything else.
pub struct Browser {
    client: Client,
    session: String,
}

impl Browser {
    /// Opens a fresh session: a new browser with an empty profile.
    pub async fn new() -> Self {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let driver = driver();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": CHROMIUM_ARGS },
            // Every request of the page (performance log) and its console.
            "goog:loggingPrefs": { "performance": "ALL", "browser": "ALL" },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no browser session from chromedriver at {}: {e}; its log: {}",
                    driver.url,
                    driver.log.display()
                )
            });
        let session = client
            .session_id()
            .await
            .expect("the session id")
            .expect("a session was created");
        // `Drop` ends the session itself, without needing the test's runtime.
        client.persist().await.expect("persist");
        Self { client, session }
    }

    /// The URLs the page requested so far (and not yet returned by this method), in order.
    pub async fn requests(&self) -> Vec<String> {
        self.log("performance")
            .await
            .iter()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|event| event["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|event| {
                Some(
                    event["message"]["params"]["request"]["url"]
                        .as_str()?
                        .to_owned(),
                )
            })
            .collect()
    }

    /// Asserts that every request of the page so far went to `origin` (e.g. the service's
    /// `http://127.0.0.1:PORT`) or needed no network (`data:`, `blob:`), and that there was one;
    /// returns the URLs.
    pub async fn assert_requests_stay_on(&self, origin: &str) -> Vec<String> {
        let origin = Url::parse(origin).expect("an origin URL").origin();
        let requests = self.requests().await;
        assert!(!requests.is_empty(), "the browser reported no request");
        for url in &requests {
            let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            let local = parsed.origin() == origin || matches!(parsed.scheme(), "data" | "blob");
            assert!(
                local,
                "the page requested {url}, outside {}",
                origin.ascii_serialization()
            );
        }
        requests
    }

    /// The page's console messages of level SEVERE so far: script errors, failed loads.
    pub async fn console_errors(&self) -> Vec<String> {
        self.log("browser")
            .await
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Takes a PNG of the window and checks that it shows something; with `UPDATE_SCREENSHOTS=1`,
    /// writes it to `docs/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert_shows_something(name, &png);
        let update = std::env::var("UPDATE_SCREENSHOTS").unwrap_or_default();
        match update.as_str() {
            "1" => {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
                std::fs::create_dir_all(&dir).expect("create docs/screenshots");
                let path = dir.join(format!("{name}.png"));
                std::fs::write(&path, &png)
                    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            }
            "" | "0" => {}
            other => panic!("UPDATE_SCREENSHOTS is 1 (write them) or unset, not {other:?}"),
        }
        png
    }

    /// Entries of one of chromedriver's logs (`performance`, `browser`) since the last read.
    async fn log(&self, kind: &'static str) -> Vec<Value> {
        let entries = self
            .client
            .issue_cmd(GetLog(kind))
            .await
            .unwrap_or_else(|e| panic!("read the {kind} log: {e}"));
        entries
            .as_array()
            .unwrap_or_else(|| panic!("the {kind} log is not a list: {entries}"))
            .clone()
    }
}

impl Deref for Browser {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Browser {
    /// Ends the session, and with it the browser, whether the test passed or panicked: a plain
    /// blocking request, as the test's runtime may be gone.
    fn drop(&mut self) {
        let address = driver()
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session
        );
        // chromedriver answers once the browser has quit; its status line is all we need.
        let ended = TcpStream::connect(address).and_then(|mut stream| {
            stream.set_read_timeout(Some(STARTUP))?;
            stream.write_all(request.as_bytes())?;
            let mut status = [0; 12];
            stream.read_exact(&mut status)?;
            Ok(status)
        });
        match ended {
            Ok(status) if status.ends_with(b"200") => {}
            other => eprintln!(
                "could not end browser session {} ({other:?}); the browser ends with the tests",
                self.session
            ),
        }
    }
}

/// chromedriver's log command (not in the W3C protocol, so not in fantoccini).
#[derive(Debug)]
struct GetLog(&'static str);

impl WebDriverCompatibleCommand for GetLog {
    fn endpoint(&self, base: &Url, session: Option<&str>) -> Result<Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        (Method::POST, Some(json!({ "type": self.0 }).to_string()))
    }
}

/// Panics unless `png` decodes to a window-sized picture with more on it than one colour.
fn assert_shows_something(name: &str, png: &[u8]) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("screenshot {name}: not a PNG: {e}"));
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG of sane size")];
    let frame = reader
        .next_frame(&mut pixels)
        .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    assert!(
        frame.width >= 640 && frame.height >= 400,
        "screenshot {name} is {}x{}",
        frame.width,
        frame.height
    );
    // A blank page is one colour; a rendered one has text, lines and backgrounds (a sign-in form
    // alone covers about 1 % of the window).
    let bytes_per_pixel = frame.line_size / frame.width as usize;
    let mut colours: HashMap<&[u8], usize> = HashMap::new();
    for pixel in pixels[..frame.buffer_size()].chunks_exact(bytes_per_pixel) {
        *colours.entry(pixel).or_default() += 1;
    }
    let total = (frame.width * frame.height) as usize;
    let background = colours.values().max().copied().unwrap_or(0);
    assert!(
        colours.len() >= 16 && total - background >= total / 400,
        "screenshot {name} is nearly blank: {} colours, {} of {total} pixels off the background",
        colours.len(),
        total - background
    );
}
