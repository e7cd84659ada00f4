//! What the binary writes to its log when nobody watches it in a terminal.

use std::process::{Command, Stdio};

use crate::helpers::spawn_app;

#[tokio::test]
async fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let app = spawn_app().await;
    // `migrate` on the (already migrated) test database logs one line and exits.
    let output = Command::new(env!("CARGO_BIN_EXE_partner-catalog"))
        .arg("migrate")
        .env("DATABASE_URL", &app.database_url)
        .env("LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run partner-catalog migrate");
    assert!(output.status.success(), "{output:?}");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("database is up to date"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in {log:?}");
}
