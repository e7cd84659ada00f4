//! Customer import in the console: check a file, import it as a background job, watch it.

use std::time::{Duration, Instant};

use partner_catalog::{
    app::import::jobs::{Lease, Step},
    domain::{ImportJobId, Role},
};
use reqwest::{Method, StatusCode, header};
use uuid::Uuid;

use super::{Console, Page, signed_in};
use crate::helpers::{TestApp, spawn_app};

const CSV_HEADER: &str = "name,special_qualifications,evidence,reason,external_reference";

/// POSTs `file` to the upload form as a browser does (multipart, the token first).
async fn upload(console: &Console, file_name: &str, file: &[u8]) -> Page {
    let csrf = console.get("/import").await.csrf();
    upload_with(
        console,
        &[
            ("csrf", None, csrf.as_bytes()),
            ("file", Some(file_name), file),
        ],
    )
    .await
}

/// POSTs these multipart fields (name, file name, content) to the upload form.
async fn upload_with(console: &Console, fields: &[(&str, Option<&str>, &[u8])]) -> Page {
    let boundary = format!("pc-test-{}", Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (name, file_name, content) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file_name {
            Some(file_name) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let response = console
        .request(Method::POST, "/import/validate")
        .header("sec-fetch-site", "same-origin")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    Page {
        status,
        location,
        html: response.text().await.unwrap(),
    }
}

/// The job a successful check redirected to.
fn job_of(page: &Page) -> ImportJobId {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let location = page.location.as_deref().unwrap();
    let id = location.strip_prefix("/import/").unwrap();
    ImportJobId(id.parse().unwrap())
}

/// Starts a checked job with its button, then reloads its page until it is done or failed.
async fn import(console: &Console, job: ImportJobId) -> Page {
    let started = console.post(&format!("/import/{job}/start"), &[]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.html);
    assert_eq!(
        started.location.as_deref(),
        Some(&*format!("/import/{job}"))
    );
    wait_for(console, job).await
}

/// Reloads a job's page until it is done or failed, as its meta refresh would.
async fn wait_for(console: &Console, job: ImportJobId) -> Page {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = console.get(&format!("/import/{job}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        if !page.html.contains("http-equiv=\"refresh\"") {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end:\n{}",
            page.html
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` education customers as CSV lines, numbered from `from`; every `unreferenced`-th without an
/// external reference.
fn csv_lines(from: usize, n: usize, unreferenced: Option<usize>) -> String {
    let mut file = format!("{CSV_HEADER}\n");
    for i in from..from + n {
        let reference = match unreferenced {
            Some(every) if i % every == 0 => String::new(),
            _ => format!("CRM-{i:06}"),
        };
        file.push_str(&format!(
            "\"Customer {i}, Ltd\",education,education=QEU-{i},,{reference}\n"
        ));
    }
    file
}

fn ndjson_lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"name\":\"School {i}\",\"special_qualifications\":[\"education\"],\
                 \"evidence\":{{\"education\":\"QEU-{i}\"}},\"external_reference\":\"NDJ-{i}\"}}\n"
            )
        })
        .collect()
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn a_file_with_a_bad_line_shows_its_line_number_and_message_and_writes_nothing() {
    let app = spawn_app().await;
    let console = signed_in(&app, Role::BackOffice, None).await;

    let csv = format!(
        "{CSV_HEADER}\n\
         Good School,education,education=QEU-1,,CRM-1\n\
         No Evidence,gcc,,,CRM-2\n\
         \n\
         Twice,,,,CRM-1\n\
         Unknown,teaching,,,CRM-4\n"
    );
    let page = upload(&console, "customers.csv", csv.as_bytes()).await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.html
    );
    page.assert_contains("3 line(s) have errors")
        .assert_contains("<dt>Lines</dt><dd>4</dd>")
        .assert_contains("<dt>Valid</dt><dd>1</dd>")
        .assert_contains("<tr><td>3</td><td><code>evidence.gcc</code></td><td>adding gcc requires evidence")
        .assert_contains("<tr><td>5</td><td><code>external_reference</code></td><td>external_reference: `CRM-1` is also on line 2")
        .assert_contains("<tr><td>6</td><td><code>special_qualifications</code></td>")
        // The form is there again, to upload the corrected file.
        .assert_contains("action=\"/import/validate\"");

    let ndjson = "{\"name\":\"Fine\"}\n{\"name\": \"Broken\"\n";
    let page = upload(&console, "customers.ndjson", ndjson.as_bytes()).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_contains("<tr><td>2</td><td><code></code></td>")
        .assert_contains("<code>malformed_json</code>");

    let page = upload(&console, "header.csv", b"name,nickname\nA,B\n").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_contains("`nickname` is not a column");

    for table in [
        "customers",
        "customer_external_references",
        "events where customer_id is not null",
        "customer_import_jobs",
    ] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn more_errors_than_shown_are_counted() {
    let app = spawn_app().await;
    let console = signed_in(&app, Role::BackOffice, None).await;
    let file = format!("{CSV_HEADER}\n{}", " ,,,,\n".repeat(1_200));
    let page = upload(&console, "blank-names.csv", file.as_bytes()).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_contains("1200 line(s) have errors")
        .assert_contains("The first 1000 errors; 200 more are not shown.");
    assert_eq!(page.html.matches("<tr><td>").count(), 1_000);
}

#[tokio::test]
async fn a_valid_csv_file_imports_every_line_as_the_user_and_its_progress_ends_at_100_percent() {
    let app = spawn_app().await;
    let console = signed_in(&app, Role::BackOffice, None).await;
    // Two and a half batches; every 10th line without a reference.
    let file = csv_lines(0, 2_500, Some(10));

    let checked = upload(&console, "customers.csv", file.as_bytes()).await;
    let job = job_of(&checked);
    let page = console.get(&format!("/import/{job}")).await;
    page.assert_contains("<dt>Lines</dt><dd>2500</dd>")
        .assert_contains("<dt>Already imported</dt><dd>0 (will be skipped)</dd>")
        .assert_contains("<dt>Errors</dt><dd>0</dd>")
        .assert_contains("<strong>Warning:</strong> 250 line(s) have no external reference")
        .assert_contains("Import these 2500 lines");
    // Checking wrote the job that holds the file, and nothing else.
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("customer_import_jobs").await, 1);

    let done = import(&console, job).await;
    done.assert_contains("<progress id=\"progress\" value=\"2500\" max=\"2500\">100 %</progress>")
        .assert_contains("2500 of 2500 lines (100 %)")
        .assert_contains("Done: 2500 customer(s) created, 0 line(s) skipped as already imported.");

    assert_eq!(app.count("customers").await, 2_500);
    assert_eq!(app.count("customer_external_references").await, 2_250);
    assert_eq!(
        app.count("customers where external_reference is not null")
            .await,
        2_250
    );
    assert_eq!(app.count("customer_qualification_history").await, 2_500);
    // Every customer_created event names the user who started it, and the request that did.
    let actor = console.user_id.to_string();
    assert_eq!(
        app.count(&format!(
            "events where event_type = 'customer_created' and actor = '{actor}' \
             and actor_role = 'back_office' and request_id is not null"
        ))
        .await,
        2_500
    );
    let (name, reference): (String, String) = sqlx::query_as(
        "select name, external_reference from customers where external_reference = 'CRM-000007'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (name.as_str(), reference.as_str()),
        ("Customer 7, Ltd", "CRM-000007")
    );
    // The file is dropped once it is imported; its count and hash stay.
    assert_eq!(
        app.count("customer_import_jobs where file is null and status = 'done'")
            .await,
        1
    );
    console
        .get("/import")
        .await
        .assert_contains("customers.csv</a></td><td>done</td><td>2500</td><td>100 %</td>");
}

#[tokio::test]
async fn importing_the_same_ndjson_file_again_creates_nothing_and_reports_every_line_as_already_imported()
 {
    let app = spawn_app().await;
    let console = signed_in(&app, Role::BackOffice, None).await;
    let file = ndjson_lines(30);
    let first = import(
        &console,
        job_of(&upload(&console, "schools.ndjson", file.as_bytes()).await),
    )
    .await;
    first.assert_contains("Done: 30 customer(s) created, 0 line(s) skipped");
    let rows = || async {
        let mut rows = app.snapshot().await;
        rows.retain(|(table, _)| table != "customer_import_jobs");
        rows
    };
    let before = rows().await;

    let again = job_of(&upload(&console, "schools.ndjson", file.as_bytes()).await);
    let page = console.get(&format!("/import/{again}")).await;
    page.assert_contains("<dt>Already imported</dt><dd>30 (will be skipped)</dd>")
        .assert_contains("<dt>To create</dt><dd>0</dd>")
        .assert_contains("this exact file was <a href=\"/import/")
        .assert_contains("<tr><td>1</td><td><code>NDJ-0</code></td>");
    let holder: Uuid = sqlx::query_scalar(
        "select customer_id from customer_external_references where external_reference = 'NDJ-0'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    page.assert_contains(&format!("href=\"/customers/{holder}\""));

    let second = import(&console, again).await;
    second.assert_contains("Done: 0 customer(s) created, 30 line(s) skipped as already imported.");
    assert_eq!(app.count("customers").await, 30);
    assert_eq!(
        app.count("events where event_type = 'customer_created'")
            .await,
        30
    );
    // Only the import jobs changed.
    assert_eq!(rows().await, before);
}

#[tokio::test]
async fn a_job_interrupted_mid_way_is_resumed_by_another_instance_without_duplicates() {
    let app = spawn_app().await;
    let console = signed_in(&app, Role::BackOffice, None).await;
    // Every 4th line has no reference: only the job's committed progress keeps those single.
    let file = csv_lines(0, 2_500, Some(4));
    let job = job_of(&upload(&console, "big.csv", file.as_bytes()).await);

    // An instance starts the job, writes one batch, and dies holding the lease.
    let dead = Uuid::now_v7();
    sqlx::query(
        "update customer_import_jobs
         set status = 'running', started_by = validated_by, started_at = now(),
             request_id = 'started-before-the-crash', leased_by = $2,
             lease_expires_at = now() + interval '1 hour'
         where id = $1",
    )
    .bind(job.0)
    .bind(dead)
    .execute(&app.pool)
    .await
    .unwrap();
    let mut lease = Lease::take(&app.pool, job, dead).await.unwrap().unwrap();
    assert_eq!(lease.step(&app.pool).await.unwrap(), Step::More);
    assert_eq!(app.count("customers").await, 1_000);
    // While its lease lasts, nobody else touches the job.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(app.count("customers").await, 1_000);
    console
        .get(&format!("/import/{job}"))
        .await
        .assert_contains("1000 of 2500 lines (40 %)")
        .assert_contains("<meta http-equiv=\"refresh\" content=\"2\">");

    // The lease runs out: the running instance resumes after the last committed batch.
    sqlx::query(
        "update customer_import_jobs set lease_expires_at = now() - interval '1 second'
         where id = $1",
    )
    .bind(job.0)
    .execute(&app.pool)
    .await
    .unwrap();
    let done = wait_for(&console, job).await;
    done.assert_contains("Done: 2500 customer(s) created, 0 line(s) skipped");

    assert_eq!(app.count("customers").await, 2_500);
    assert_eq!(
        scalar(&app, "select count(distinct name) from customers").await,
        2_500
    );
    assert_eq!(
        app.count("customers where external_reference is null")
            .await,
        625
    );
    assert_eq!(
        app.count("events where event_type = 'customer_created' and request_id = 'started-before-the-crash'")
            .await,
        2_500
    );

    // The dead instance comes back: its lease is gone, and it writes nothing.
    assert_eq!(lease.step(&app.pool).await.unwrap(), Step::Lost);
    assert_eq!(app.count("customers").await, 2_500);
}

#[tokio::test]
async fn only_back_office_may_import() {
    let app = spawn_app().await;
    let back_office = signed_in(&app, Role::BackOffice, None).await;
    let job = job_of(&upload(&back_office, "c.csv", csv_lines(0, 3, None).as_bytes()).await);
    back_office
        .get("/")
        .await
        .assert_contains("href=\"/import\"");

    let partner = app.create_partner("direct_bill_partner", &[]).await;
    let others = [
        signed_in(&app, Role::Auditor, None).await,
        signed_in(&app, Role::Operator, None).await,
        signed_in(
            &app,
            Role::SalesAgent,
            Some(partner_catalog::domain::PartnerId(partner)),
        )
        .await,
        signed_in(
            &app,
            Role::GlobalAdmin,
            Some(partner_catalog::domain::PartnerId(partner)),
        )
        .await,
    ];
    for console in &others {
        assert!(!console.get("/").await.html.contains("href=\"/import\""));
        for path in [
            "/import".to_owned(),
            format!("/import/{job}"),
            format!("/import/{}", Uuid::now_v7()),
            "/import/example.csv".to_owned(),
        ] {
            assert_eq!(
                console.get(&path).await.status,
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
        let refused = upload_with(
            console,
            &[
                (
                    "csrf",
                    None,
                    console.get("/account").await.csrf().as_bytes(),
                ),
                ("file", Some("c.csv"), csv_lines(10, 3, None).as_bytes()),
            ],
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let start = console.post(&format!("/import/{job}/start"), &[]).await;
        assert_eq!(start.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(
        app.count("customer_import_jobs where status = 'validated'")
            .await,
        1
    );
    assert_eq!(app.count("customers").await, 0);
}

#[tokio::test]
async fn an_upload_needs_the_form_token_and_fits_the_import_limit() {
    let app = spawn_app().await;
    let console = signed_in(&app, Role::BackOffice, None).await;
    let file = csv_lines(0, 2, None);
    let without = upload_with(&console, &[("file", Some("c.csv"), file.as_bytes())]).await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    let wrong = upload_with(
        &console,
        &[
            ("csrf", None, b"not-the-token"),
            ("file", Some("c.csv"), file.as_bytes()),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("customer_import_jobs").await, 0);

    // Larger than the console's 64 KiB form limit: the upload has the import's.
    let large = csv_lines(0, 3_000, None);
    assert!(large.len() > 64 * 1024);
    job_of(&upload(&console, "large.csv", large.as_bytes()).await);

    let small = app
        .spawn_instance_with(|config| config.import_body_limit_bytes = 1024)
        .await;
    // Sessions live in the database: the same browser, on the other instance.
    let mut console = console;
    console.base = small;
    let refused = upload(&console, "large.csv", large.as_bytes()).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    refused.assert_contains("larger than the limit of 1 KiB");
    assert_eq!(app.count("customer_import_jobs").await, 1);
}

#[tokio::test]
async fn the_example_files_import_as_documented() {
    let app = spawn_app().await;
    let console = signed_in(&app, Role::BackOffice, None).await;
    for (name, path) in [
        ("customers.csv", "/import/example.csv"),
        ("customers.ndjson", "/import/example.ndjson"),
    ] {
        let example = console.get(path).await;
        assert_eq!(example.status, StatusCode::OK);
        let page = import(
            &console,
            job_of(&upload(&console, name, example.html.as_bytes()).await),
        )
        .await;
        if name.ends_with(".csv") {
            page.assert_contains("Done: 5 customer(s) created");
        } else {
            // The same customers, by their references.
            page.assert_contains("Done: 0 customer(s) created, 5 line(s) skipped");
        }
    }
    let sets: Vec<(String, Vec<String>)> = sqlx::query_as(
        "select name, special_qualifications from customers order by external_reference",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(sets[1].0, "Fabrikam, Inc.");
    assert_eq!(sets[4].1, ["gcc", "state_owned_entity"]);
}
