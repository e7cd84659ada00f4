//! Customer import: upload an NDJSON or CSV file, see every bad line before anything is written,
//! then import exactly that file as a background job whose page shows its progress (a
//! `<progress>` bar and a meta refresh, no JavaScript). Back office only (`ManageCustomers`).

use askama::Template;
use axum::{
    Router,
    extract::{DefaultBodyLimit, Multipart, Path, Request, State, multipart::MultipartError},
    http::{StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::{
    ConsoleError, NoFields, Posted, Staff, parse_id, render, render_status,
    view::{self, Chrome},
};
use crate::{
    app::{
        self,
        import::{
            file::CSV_COLUMNS,
            jobs::{SHOWN, Validation},
        },
    },
    db::import_jobs::Job,
    domain::{Action, ImportJobId, ImportJobStatus, percent_done},
    http::{AppState, Limits},
};

/// The example files of `docs/examples`, offered for download.
const EXAMPLE_CSV: &str = include_str!("../../../docs/examples/customers.csv");
const EXAMPLE_NDJSON: &str = include_str!("../../../docs/examples/customers.ndjson");

/// Jobs listed on the import page.
const RECENT_JOBS: i64 = 20;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/import", get(index))
        .route("/import/example.csv", get(example_csv))
        .route("/import/example.ndjson", get(example_ndjson))
        .route("/import/{job}", get(job))
        .route("/import/{job}/start", post(start))
}

/// The upload, apart from the console's other routes: it takes files up to
/// `IMPORT_BODY_LIMIT_BYTES` and has `IMPORT_TIMEOUT_SECS` to read and check one, instead of the
/// console's body limit and request timeout.
pub fn upload_router(limits: Limits) -> Router<AppState> {
    Router::new()
        .route("/import/validate", post(validate))
        .layer(axum::middleware::from_fn_with_state(limits, upload_limits))
        .layer(DefaultBodyLimit::max(limits.import_body_bytes))
        .layer(axum::middleware::from_fn(super::same_origin_writes))
}

/// Refuses a file declared larger than the limit before reading it, and stops reading and
/// checking one after the import's time budget.
async fn upload_limits(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.import_body_bytes as u64) {
        return too_large(limits.import_body_bytes);
    }
    match tokio::time::timeout(limits.import_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => message_page(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Reading and checking the file took longer than {} s, so it was stopped; nothing \
                 was stored. Split the file, or ask for a larger IMPORT_TIMEOUT_SECS.",
                limits.import_timeout.as_secs()
            ),
        ),
    }
}

/// The error page with `status` and `message`.
fn message_page(status: StatusCode, message: String) -> Response {
    let page = view::ErrorPage {
        title: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => status.into_response(),
    }
}

fn too_large(limit: usize) -> Response {
    message_page(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "The file is larger than the limit of {}; nothing was stored. Split it into smaller \
             files.",
            size(limit)
        ),
    )
}

/// Bytes as shown: MiB above one, else KiB.
fn size(bytes: usize) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

/// A bad line as listed.
struct ErrorRow {
    line: usize,
    field: String,
    code: &'static str,
    message: String,
}

/// What validation found, as shown.
struct Report {
    file_name: String,
    format: &'static str,
    file_error: Option<String>,
    lines: usize,
    valid: usize,
    found_imported: usize,
    errors_total: usize,
    errors: Vec<ErrorRow>,
    errors_not_shown: usize,
}

impl Report {
    fn new(v: Validation) -> Self {
        Self {
            format: v.format.as_str(),
            file_error: v.file_error.map(|e| view::sentence(&e.to_string())),
            lines: v.lines,
            valid: v.valid,
            found_imported: v.found_imported,
            errors_total: v.errors.total,
            errors_not_shown: v.errors.total - v.errors.kept.len(),
            errors: v
                .errors
                .kept
                .into_iter()
                .map(|e| ErrorRow {
                    line: e.line,
                    field: e.field.unwrap_or_default(),
                    code: e.code,
                    message: e.message,
                })
                .collect(),
            file_name: v.file_name,
        }
    }
}

/// A job as listed.
struct JobRow {
    href: String,
    file_name: String,
    status: &'static str,
    lines: i32,
    percent: u64,
    created: i32,
    skipped: i32,
    by: String,
    when: String,
}

impl JobRow {
    fn new(job: &Job) -> Self {
        Self {
            href: format!("/import/{}", job.id),
            file_name: job.file_name.clone(),
            status: status_label(job.status),
            lines: job.total_lines,
            percent: percent(job),
            created: job.created,
            skipped: job.skipped,
            by: job
                .started_by_name
                .clone()
                .unwrap_or_else(|| job.validated_by_name.clone()),
            when: view::when(&job.started_at.unwrap_or(job.validated_at)),
        }
    }
}

/// An instant that may not have come yet, `—` then.
fn when_opt(at: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.as_ref().map_or_else(|| "—".to_owned(), view::when)
}

fn status_label(status: ImportJobStatus) -> &'static str {
    match status {
        ImportJobStatus::Validated => "validated, not started",
        ImportJobStatus::Queued => "waiting to start",
        ImportJobStatus::Running => "importing",
        ImportJobStatus::Done => "done",
        ImportJobStatus::Failed => "failed",
    }
}

fn percent(job: &Job) -> u64 {
    let count = |n: i32| u64::try_from(n).unwrap_or(0);
    percent_done(count(job.lines_done), count(job.total_lines))
}

#[derive(Template)]
#[template(path = "import_index.html")]
struct IndexPage {
    chrome: Chrome,
    limit: String,
    header: String,
    shown: usize,
    report: Option<Report>,
    jobs: Vec<JobRow>,
}

async fn index_page(
    state: &AppState,
    staff: &Staff,
    report: Option<Report>,
) -> Result<IndexPage, ConsoleError> {
    let jobs = app::import::jobs::recent(&state.pool, &staff.ctx, RECENT_JOBS).await?;
    Ok(IndexPage {
        chrome: staff.chrome("/import"),
        limit: size(state.limits.import_body_bytes),
        header: CSV_COLUMNS.join(","),
        shown: SHOWN,
        report,
        jobs: jobs.iter().map(JobRow::new).collect(),
    })
}

async fn index(State(state): State<AppState>, staff: Staff) -> Result<Response, ConsoleError> {
    render(&index_page(&state, &staff, None).await?)
}

async fn example_csv(staff: Staff) -> Result<Response, ConsoleError> {
    example(
        &staff,
        "customers.csv",
        "text/csv; charset=utf-8",
        EXAMPLE_CSV,
    )
}

async fn example_ndjson(staff: Staff) -> Result<Response, ConsoleError> {
    example(
        &staff,
        "customers.ndjson",
        "application/x-ndjson; charset=utf-8",
        EXAMPLE_NDJSON,
    )
}

fn example(
    staff: &Staff,
    name: &str,
    content_type: &'static str,
    text: &'static str,
) -> Result<Response, ConsoleError> {
    staff.ctx.require(Action::ManageCustomers)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        text,
    )
        .into_response())
}

/// The form's file, its CSRF token checked before the file is read.
struct Upload {
    file_name: String,
    bytes: Vec<u8>,
}

/// Why an upload was not read.
enum Refused {
    /// Larger than the limit.
    TooLarge,
    /// A form we do not read (no token, a broken body).
    Form(ConsoleError),
}

impl From<MultipartError> for Refused {
    fn from(error: MultipartError) -> Self {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge
        } else {
            Self::Form(ConsoleError::BadForm(error.body_text()))
        }
    }
}

impl From<ConsoleError> for Refused {
    fn from(error: ConsoleError) -> Self {
        Self::Form(error)
    }
}

async fn read_upload(staff: &Staff, mut multipart: Multipart) -> Result<Upload, Refused> {
    let mut csrf_checked = false;
    let mut upload = None;
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("csrf") => {
                staff.check_csrf(&field.text().await?)?;
                csrf_checked = true;
            }
            // The form sends its token first: a file before it is not read.
            Some("file") if !csrf_checked => return Err(ConsoleError::CsrfToken.into()),
            Some("file") => {
                upload = Some(Upload {
                    file_name: field.file_name().unwrap_or_default().to_owned(),
                    bytes: field.bytes().await?.into(),
                });
            }
            _ => {}
        }
    }
    if !csrf_checked {
        return Err(ConsoleError::CsrfToken.into());
    }
    upload.ok_or_else(|| ConsoleError::BadForm("no file was sent".into()).into())
}

/// Step 1: reads and checks every line, and writes nothing but, for a file without errors, the
/// job holding it; then shows its page (with the button of step 2), or the errors.
async fn validate(
    State(state): State<AppState>,
    staff: Staff,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ConsoleError> {
    // Refused before the file is read.
    staff.ctx.require(Action::ManageCustomers)?;
    let multipart = multipart.map_err(|e| ConsoleError::BadForm(e.body_text()))?;
    let upload = match read_upload(&staff, multipart).await {
        Ok(upload) => upload,
        Err(Refused::TooLarge) => return Ok(too_large(state.limits.import_body_bytes)),
        Err(Refused::Form(e)) => return Err(e),
    };
    let validation = app::import::jobs::validate(
        &state.pool,
        &staff.ctx,
        &upload.file_name,
        &upload.bytes,
        state.limits.import_timeout,
    )
    .await?;
    drop(upload);
    if let Some(job) = validation.job {
        return Ok(Redirect::to(&format!("/import/{job}")).into_response());
    }
    let page = index_page(&state, &staff, Some(Report::new(validation))).await?;
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

/// A line found already imported, as listed.
struct SampleRow {
    line: usize,
    reference: String,
    customer_href: String,
    customer_id: String,
}

#[derive(Template)]
#[template(path = "import_job.html")]
struct JobPage {
    chrome: Chrome,
    id: String,
    file_name: String,
    format: &'static str,
    status: &'static str,
    validated: bool,
    in_progress: bool,
    done: bool,
    failure: Option<String>,
    total: i32,
    lines_done: i32,
    percent: u64,
    created: i32,
    skipped: i32,
    found_imported: i32,
    to_create: i32,
    without_reference: i32,
    validated_by: String,
    validated_at: String,
    started_by: String,
    started_at: String,
    finished_at: String,
    same_file: Option<(String, String)>,
    sample: Vec<SampleRow>,
    sample_not_shown: i32,
}

async fn job(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    staff.ctx.require(Action::ManageCustomers)?;
    let id = ImportJobId(parse_id(&id)?);
    let job = app::import::jobs::get(&state.pool, &staff.ctx, id)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let same_file = app::import::jobs::same_file_started(&state.pool, &staff.ctx, &job)
        .await?
        .map(|other| (format!("/import/{}", other.id), when_opt(&other.started_at)));
    let sample: Vec<SampleRow> = job
        .found_imported_sample
        .0
        .iter()
        .map(|a| SampleRow {
            line: a.line,
            reference: a.external_reference.clone(),
            customer_href: format!("/customers/{}", a.customer_id),
            customer_id: a.customer_id.to_string(),
        })
        .collect();
    let shown = i32::try_from(sample.len()).unwrap_or(i32::MAX);
    render(&JobPage {
        chrome: staff.chrome("/import"),
        id: job.id.to_string(),
        file_name: job.file_name.clone(),
        format: job.format.as_str(),
        status: status_label(job.status),
        validated: job.status == ImportJobStatus::Validated,
        in_progress: job.status.in_progress(),
        done: job.status == ImportJobStatus::Done,
        failure: job.failure.clone(),
        total: job.total_lines,
        lines_done: job.lines_done,
        percent: percent(&job),
        created: job.created,
        skipped: job.skipped,
        found_imported: job.found_imported,
        to_create: job.total_lines - job.found_imported,
        without_reference: job.without_reference,
        validated_by: job.validated_by_name.clone(),
        validated_at: view::when(&job.validated_at),
        started_by: job.started_by_name.clone().unwrap_or_default(),
        started_at: when_opt(&job.started_at),
        finished_at: when_opt(&job.finished_at),
        same_file,
        sample_not_shown: job.found_imported - shown,
        sample,
    })
}

/// Step 2: starts importing the validated file, then shows its progress.
async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let staff = posted.staff;
    staff.ctx.require(Action::ManageCustomers)?;
    let id = ImportJobId(parse_id(&id)?);
    app::import::jobs::start(&state.pool, &staff.ctx, id)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    Ok(Redirect::to(&format!("/import/{id}")).into_response())
}
