//! A private PostgreSQL cluster per test: its own temp directory, data directory, port and server
//! process, made with the installed `initdb` and `pg_ctl`. The tests stop and restart it at will;
//! the shared server on 5432 is never touched.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Longest `pg_ctl` waits for the server to start or stop, in seconds.
const PG_CTL_WAIT_SECS: &str = "30";

/// A directory under the system temp dir, removed with everything in it on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name says which test made it.
    pub fn new(purpose: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "pc-faults-{purpose}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir(&path).expect("create a temp dir");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port, as the kernel picks it. Another process could take it before we bind it;
/// on loopback in a test run that race is theoretical.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// The last `lines` lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {path:?}: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where the PostgreSQL server programs are: `PG_BINDIR`, else `pg_config --bindir`, else the
/// newest `/usr/lib/postgresql/*/bin`.
fn bindir() -> PathBuf {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BINDIR").map(PathBuf::from) {
        assert!(
            has_tools(&dir),
            "PG_BINDIR={dir:?} has no initdb and pg_ctl"
        );
        return dir;
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_tools(d)) {
        return dir;
    }
    // Debian's pg_config may belong to the client package only; the server lives per version.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .expect("no PostgreSQL server programs (initdb, pg_ctl): set PG_BINDIR")
}

/// `initdb` and `postgres` refuse to run as root; as root we run them as `postgres`.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// One PostgreSQL server in a temp directory: stopped and removed on drop.
pub struct Cluster {
    bindir: PathBuf,
    as_postgres: bool,
    /// Owned by the server's user; holds `data/` and `postgres.log` (and the tests' other logs).
    dir: TempDir,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Cluster {
    /// Creates and starts a cluster on a free port, trusting local connections as `postgres`.
    pub fn start(purpose: &str) -> Self {
        Self::start_with(purpose, "")
    }

    /// As [`Cluster::start`], with `settings` added to `postgresql.conf` (e.g. preloaded libraries).
    pub fn start_with(purpose: &str, settings: &str) -> Self {
        let extra = settings;
        let as_postgres = running_as_root();
        let dir = TempDir::new(purpose);
        if as_postgres {
            let chown = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(chown.success(), "cannot give {:?} to postgres", dir.path());
        }
        let cluster = Self {
            bindir: bindir(),
            as_postgres,
            dir,
            port: free_port(),
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        // TCP on loopback only, no Unix socket (nothing to clash with the shared server's), and no
        // fsync: an immediate stop loses nothing the OS already has, and the tests never crash the OS.
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\n\
             fsync = off\nmax_connections = 50\nshared_buffers = 16MB\n{extra}",
            cluster.port
        );
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        fs::write(&conf, text).expect("write postgresql.conf");
        cluster.start_again();
        cluster
    }

    /// The temp directory of this test (logs go here too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir().join("postgres.log")
    }

    /// URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let (data, log) = (self.data(), self.log());
        self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                PG_CTL_WAIT_SECS.as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
            ],
        );
    }

    /// Stops the server: `immediate` (every backend killed, crash recovery on the next start),
    /// `fast` (sessions terminated, transactions rolled back) or `smart`.
    pub fn stop(&self, mode: &str) {
        self.run("pg_ctl", &self.stop_args(mode));
    }

    fn stop_args(&self, mode: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> =
            ["stop", "-w", "-t", PG_CTL_WAIT_SECS, "-m", mode, "-D"]
                .into_iter()
                .map(Into::into)
                .collect();
        args.push(self.data().into_os_string());
        args
    }

    /// The end of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Runs a PostgreSQL program, as `postgres` when we are root; panics with its output on failure.
    fn run<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
        &self,
        program: &str,
        args: &[S],
    ) -> Output {
        let output = self.command(program, args).output();
        let output = output.unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}):\n{}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail(30)
        );
        output
    }

    fn command<S: AsRef<std::ffi::OsStr>>(&self, program: &str, args: &[S]) -> Command {
        let path = self.bindir.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.args(args).current_dir(self.dir());
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- private PostgreSQL log ({:?}), last lines ---\n{}",
                self.log(),
                self.log_tail(40)
            );
        }
        // Immediate: nothing in it is worth a checkpoint; the directory goes next.
        let _ = self
            .command("pg_ctl", &self.stop_args("immediate"))
            .output();
    }
}
