//! TLS to PostgreSQL, as `DATABASE_URL`'s `sslmode` asks. The shared test server may or may not
//! have `ssl = on`; each test checks what that server allows and expects the matching outcome.

use partner_catalog::startup::Application;
use sqlx::{Connection, PgConnection};

use crate::helpers::{spawn_app, test_config};

/// `url` with `sslmode` (and more) added to its query.
fn with(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// Whether the test server accepts TLS connections.
async fn server_has_tls(pool: &sqlx::PgPool) -> bool {
    let ssl: String = sqlx::query_scalar("show ssl")
        .fetch_one(pool)
        .await
        .unwrap();
    ssl == "on"
}

/// The error chain of a service that cannot start with this URL (it must not panic).
async fn refusal(database_url: &str) -> String {
    match Application::build(&test_config(database_url)).await {
        Ok(_) => panic!("the service started with {database_url}"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn sslmode_require_connects_over_tls_or_fails_with_a_clear_error() {
    let app = spawn_app().await;
    let require = with(&app.database_url, "sslmode=require");
    if server_has_tls(&app.pool).await {
        let base = app
            .spawn_instance_with(|c| c.database_url = require.clone())
            .await;
        let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert_eq!(ready.status(), reqwest::StatusCode::OK);
        let mut connection = PgConnection::connect(&require).await.unwrap();
        let encrypted: bool =
            sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
                .fetch_one(&mut connection)
                .await
                .unwrap();
        assert!(encrypted, "sslmode=require connected without TLS");
    } else {
        let error = refusal(&require).await;
        assert!(error.contains("does not support TLS"), "{error}");
    }
}

#[tokio::test]
async fn sslmode_prefer_connects_whether_or_not_the_server_has_tls() {
    let app = spawn_app().await;
    let prefer = with(&app.database_url, "sslmode=prefer");
    let base = app
        .spawn_instance_with(|c| c.database_url = prefer.clone())
        .await;
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn sslmode_verify_full_refuses_a_server_whose_certificate_it_cannot_verify() {
    let app = spawn_app().await;
    // The test server's certificate, if any, is self-signed (Debian's "snakeoil") or at least not
    // issued for 127.0.0.1 by a root in the system store.
    let verify = with(&app.database_url, "sslmode=verify-full");
    let error = refusal(&verify).await;
    if server_has_tls(&app.pool).await {
        assert!(error.contains("certificate"), "{error}");
    } else {
        assert!(error.contains("does not support TLS"), "{error}");
    }
    let missing = with(
        &app.database_url,
        "sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
    );
    let error = refusal(&missing).await;
    assert!(
        error.contains("root.crt") || error.contains("No such file"),
        "{error}"
    );
}
