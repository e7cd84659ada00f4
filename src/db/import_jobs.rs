//! Console import jobs: a validated customer file, who started it, and how far it got. A job is
//! leased by one instance at a time (until `lease_expires_at`); its progress is committed with
//! each batch of customers, in the batch's transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, types::Json};
use uuid::Uuid;

use super::{Context, Result};
use crate::domain::{CustomerId, FileFormat, ImportJobId, ImportJobStatus};

/// A line not imported because its external reference is held already.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AlreadyImported {
    /// 1-based line number.
    pub line: usize,
    /// The line's external reference.
    pub external_reference: String,
    /// The customer that has it.
    pub customer_id: CustomerId,
}

/// A job as stored, without its file.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id.
    pub id: ImportJobId,
    /// The uploaded file's name.
    pub file_name: String,
    /// How the file is written.
    pub format: FileFormat,
    /// SHA-256 of the file.
    pub file_sha256: Vec<u8>,
    /// Customer lines in the file.
    pub total_lines: i32,
    /// Who uploaded and validated it.
    pub validated_by: Uuid,
    /// Their username.
    pub validated_by_name: String,
    /// When.
    pub validated_at: DateTime<Utc>,
    /// Lines whose reference was held already at validation.
    pub found_imported: i32,
    /// Lines without an external reference.
    pub without_reference: i32,
    /// The first of the lines found already imported.
    pub found_imported_sample: Json<Vec<AlreadyImported>>,
    /// Where it is.
    pub status: ImportJobStatus,
    /// Who started the import.
    pub started_by: Option<Uuid>,
    /// Their username.
    pub started_by_name: Option<String>,
    /// When.
    pub started_at: Option<DateTime<Utc>>,
    /// The request that started it, recorded on every event of the import.
    pub request_id: Option<String>,
    /// Lines written (created or skipped), committed with their batch.
    pub lines_done: i32,
    /// Customers created.
    pub created: i32,
    /// Lines skipped as already imported.
    pub skipped: i32,
    /// The instance holding the lease.
    pub leased_by: Option<Uuid>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub failure: Option<String>,
}

/// `query_as!` of a [`Job`]: the one select list of `customer_import_jobs j`, then `$rest`.
macro_rules! select_jobs {
    ($rest:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Job,
            r#"select j.id as "id: ImportJobId", j.file_name, j.format as "format: FileFormat",
                      j.file_sha256, j.total_lines, j.validated_by, v.username as validated_by_name,
                      j.validated_at, j.found_imported, j.without_reference,
                      j.found_imported_sample as "found_imported_sample: Json<Vec<AlreadyImported>>",
                      j.status as "status: ImportJobStatus", j.started_by,
                      s.username as "started_by_name?", j.started_at, j.request_id, j.lines_done,
                      j.created, j.skipped, j.leased_by, j.lease_expires_at, j.finished_at,
                      j.failure
               from customer_import_jobs j join users v on v.id = j.validated_by
                    left join users s on s.id = j.started_by "# + $rest,
            $($arg),*
        )
    };
}

/// A validated file to store.
#[derive(Debug)]
pub struct NewJob<'a> {
    /// Its id.
    pub id: ImportJobId,
    /// The uploaded file's name.
    pub file_name: &'a str,
    /// How it is written.
    pub format: FileFormat,
    /// The file.
    pub file: &'a [u8],
    /// SHA-256 of the file.
    pub file_sha256: &'a [u8],
    /// Customer lines.
    pub total_lines: i32,
    /// Who validated it.
    pub validated_by: Uuid,
    /// Lines whose reference is held already.
    pub found_imported: i32,
    /// Lines without a reference.
    pub without_reference: i32,
    /// The first of the lines already imported.
    pub found_imported_sample: &'a [AlreadyImported],
}

/// Stores a validated file as a job that nobody has started.
pub async fn insert(db: impl PgExecutor<'_>, new: &NewJob<'_>) -> Result<()> {
    sqlx::query!(
        "insert into customer_import_jobs (id, file_name, format, file, file_sha256, total_lines,
           validated_by, found_imported, without_reference, found_imported_sample)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        new.id.0,
        new.file_name,
        new.format.as_str(),
        new.file,
        new.file_sha256,
        new.total_lines,
        new.validated_by,
        new.found_imported,
        new.without_reference,
        Json(new.found_imported_sample) as _,
    )
    .execute(db)
    .await
    .context("import_jobs::insert")?;
    Ok(())
}

/// Deletes validated files that nobody started within `kept`; returns how many.
pub async fn delete_unstarted(db: impl PgExecutor<'_>, kept: Duration) -> Result<u64> {
    let deleted = sqlx::query!(
        "delete from customer_import_jobs
         where status = 'validated' and validated_at < now() - make_interval(secs => $1)",
        kept.as_secs_f64()
    )
    .execute(db)
    .await
    .context("import_jobs::delete_unstarted")?;
    Ok(deleted.rows_affected())
}

/// One job.
pub async fn get(db: impl PgExecutor<'_>, id: ImportJobId) -> Result<Option<Job>> {
    select_jobs!("where j.id = $1", id.0)
        .fetch_optional(db)
        .await
        .context("import_jobs::get")
}

/// The newest jobs, newest first.
pub async fn recent(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Job>> {
    select_jobs!("order by j.validated_at desc, j.id desc limit $1", limit)
        .fetch_all(db)
        .await
        .context("import_jobs::recent")
}

/// The newest job other than `except` that started importing a file with this hash.
pub async fn started_with_file(
    db: impl PgExecutor<'_>,
    sha256: &[u8],
    except: ImportJobId,
) -> Result<Option<Job>> {
    select_jobs!(
        "where j.file_sha256 = $1 and j.id <> $2 and j.status <> 'validated'
         order by j.started_at desc limit 1",
        sha256,
        except.0
    )
    .fetch_optional(db)
    .await
    .context("import_jobs::started_with_file")
}

/// Starts a validated job (queues it for a worker); `false` if it was not waiting to start.
pub async fn start(
    db: impl PgExecutor<'_>,
    id: ImportJobId,
    by: Uuid,
    request_id: Option<&str>,
) -> Result<bool> {
    let started = sqlx::query!(
        "update customer_import_jobs
         set status = 'queued', started_by = $2, started_at = now(), request_id = $3
         where id = $1 and status = 'validated'",
        id.0,
        by,
        request_id
    )
    .execute(db)
    .await
    .context("import_jobs::start")?;
    Ok(started.rows_affected() == 1)
}

/// Leases the oldest started job that no live lease holds to `instance` for `lease`. Jobs locked
/// by a batch in progress are skipped, not waited for.
pub async fn claim(
    db: impl PgExecutor<'_>,
    instance: Uuid,
    lease: Duration,
) -> Result<Option<ImportJobId>> {
    sqlx::query_scalar!(
        r#"update customer_import_jobs
           set status = 'running', leased_by = $1,
               lease_expires_at = now() + make_interval(secs => $2)
           where id = (select id from customer_import_jobs
                       where status in ('queued', 'running')
                         and (lease_expires_at is null or lease_expires_at < now())
                       order by started_at, id limit 1
                       for update skip locked)
           returning id as "id: ImportJobId""#,
        instance,
        lease.as_secs_f64()
    )
    .fetch_optional(db)
    .await
    .context("import_jobs::claim")
}

/// The job's file, while the job has one.
pub async fn file(db: impl PgExecutor<'_>, id: ImportJobId) -> Result<Option<Vec<u8>>> {
    let file = sqlx::query_scalar!("select file from customer_import_jobs where id = $1", id.0)
        .fetch_optional(db)
        .await
        .context("import_jobs::file")?;
    Ok(file.flatten())
}

/// Extends `instance`'s lease of a running job by `lease`, locking the job's row for the rest of
/// the transaction; the lines done so far, or `None` if the lease is no longer `instance`'s.
pub async fn renew(
    db: impl PgExecutor<'_>,
    id: ImportJobId,
    instance: Uuid,
    lease: Duration,
) -> Result<Option<i32>> {
    sqlx::query_scalar!(
        "update customer_import_jobs
         set lease_expires_at = now() + make_interval(secs => $3)
         where id = $1 and leased_by = $2 and status = 'running'
         returning lines_done",
        id.0,
        instance,
        lease.as_secs_f64()
    )
    .fetch_optional(db)
    .await
    .context("import_jobs::renew")
}

/// Records a batch: `lines_done` lines are now written, `created` and `skipped` more of them.
pub async fn record_batch(
    db: impl PgExecutor<'_>,
    id: ImportJobId,
    lines_done: i32,
    created: i32,
    skipped: i32,
) -> Result<()> {
    sqlx::query!(
        "update customer_import_jobs
         set lines_done = $2, created = created + $3, skipped = skipped + $4
         where id = $1",
        id.0,
        lines_done,
        created,
        skipped
    )
    .execute(db)
    .await
    .context("import_jobs::record_batch")?;
    Ok(())
}

/// Ends a job `instance` holds as done, or failed with `failure`, and drops its file; `false` if
/// the lease is no longer `instance`'s.
pub async fn finish(
    db: impl PgExecutor<'_>,
    id: ImportJobId,
    instance: Uuid,
    failure: Option<&str>,
) -> Result<bool> {
    let status = if failure.is_some() {
        ImportJobStatus::Failed
    } else {
        ImportJobStatus::Done
    };
    let finished = sqlx::query!(
        "update customer_import_jobs
         set status = $3, failure = $4, finished_at = now(), file = null,
             leased_by = null, lease_expires_at = null
         where id = $1 and leased_by = $2 and status = 'running'",
        id.0,
        instance,
        status.as_str(),
        failure
    )
    .execute(db)
    .await
    .context("import_jobs::finish")?;
    Ok(finished.rows_affected() == 1)
}

/// Gives up `instance`'s lease, so that another instance may resume the job at once.
pub async fn release(db: impl PgExecutor<'_>, id: ImportJobId, instance: Uuid) -> Result<()> {
    sqlx::query!(
        "update customer_import_jobs set leased_by = null, lease_expires_at = null
         where id = $1 and leased_by = $2 and status = 'running'",
        id.0,
        instance
    )
    .execute(db)
    .await
    .context("import_jobs::release")?;
    Ok(())
}
