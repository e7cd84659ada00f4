//! Customer imports from the console, for files of any size the upload limit allows.
//!
//! 1. [`validate`] reads every line and writes nothing, except, for a file without errors, the
//!    job that holds it (so that what is imported is exactly what was validated).
//! 2. [`start`] queues the job. An instance's [`work`] loop leases it ([`claim`]) and writes it
//!    [`BATCH_LINES`] lines per transaction ([`Lease::step`]), through the same write path as
//!    `POST /v1/customers`, with the user who started it as the actor. Each batch commits the
//!    job's progress with its customers, so a crash loses at most the batch in flight; a lease
//!    not renewed for [`LEASE`] lets any instance resume the job after its last committed batch.
//!    Resuming never writes a line twice: the committed progress says where to resume, and a
//!    reference claimed already is skipped as already imported in any case.

use std::{collections::HashMap, future::Future, time::Duration};

use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    AlreadyImported, ImportLine, LineErrors,
    file::{CustomerFile, FileError, Position},
    read_all, skipped_line,
};
use crate::{
    app::{Error, RequestContext, Result, customers::insert_new},
    db::{
        self,
        customers::NewCustomer,
        import_jobs::{Job, NewJob},
    },
    domain::{Action, FileFormat, ImportJobId, Principal},
};

/// Errors, and lines found already imported, kept for showing: the first this many of each.
pub const SHOWN: usize = 1_000;
/// Customers per transaction of an import job.
pub const BATCH_LINES: usize = 1_000;
/// How long a lease lasts without a batch renewing it: after that another instance may take over.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often an idle instance looks for a job to take.
const POLL: Duration = Duration::from_secs(1);
/// How long a validated file waits to be started before it is deleted.
const UNSTARTED_KEPT: Duration = Duration::from_secs(24 * 3600);
/// References looked up per statement when validating.
const LOOKUP_CHUNK: usize = 10_000;
/// Longest file name kept, in characters.
const MAX_FILE_NAME_CHARS: usize = 255;

/// What validating a file found.
#[derive(Debug)]
pub struct Validation {
    /// The file's name, as kept.
    pub file_name: String,
    /// How it is written.
    pub format: FileFormat,
    /// What is wrong with the file as a whole, if anything.
    pub file_error: Option<FileError>,
    /// Customer lines.
    pub lines: usize,
    /// Lines that passed every check.
    pub valid: usize,
    /// Valid lines whose external reference another customer holds: skipped on import.
    pub found_imported: usize,
    /// The first [`SHOWN`] of them.
    pub found_imported_sample: Vec<AlreadyImported>,
    /// Valid lines without an external reference: importing them again would create them again.
    pub without_reference: usize,
    /// The bad lines (the first [`SHOWN`]).
    pub errors: LineErrors,
    /// The job holding the file, when it has no errors.
    pub job: Option<ImportJobId>,
}

impl Validation {
    /// Whether the file may be imported.
    pub fn importable(&self) -> bool {
        self.file_error.is_none() && self.errors.total == 0
    }
}

/// The user a console use case acts for.
fn console_user(ctx: &RequestContext) -> Result<Uuid> {
    ctx.principal.as_ref().map(|p| p.id).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "customer import jobs are run for console users"
        ))
    })
}

/// `raw` as a file name to show: its last path segment (some browsers send the whole path),
/// printable, at most [`MAX_FILE_NAME_CHARS`].
fn file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let shown: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILE_NAME_CHARS)
        .collect();
    match shown.trim() {
        "" => "upload".to_owned(),
        name => name.to_owned(),
    }
}

/// Reads every line of `file` and looks its references up; writes nothing unless the file has no
/// errors, and then only the job holding it, to be started with [`start`]. Storing the file may
/// take up to `budget` (the import's, not a request's statement limit).
pub async fn validate(
    pool: &PgPool,
    ctx: &RequestContext,
    raw_file_name: &str,
    file: &[u8],
    budget: Duration,
) -> Result<Validation> {
    ctx.require(Action::ManageCustomers)?;
    let user = console_user(ctx)?;
    let format = FileFormat::of(file);
    let mut validation = Validation {
        file_name: file_name(raw_file_name),
        format,
        file_error: None,
        lines: 0,
        valid: 0,
        found_imported: 0,
        found_imported_sample: Vec::new(),
        without_reference: 0,
        errors: LineErrors::default(),
        job: None,
    };
    let customers = match CustomerFile::open(format, file) {
        Ok(customers) => customers,
        Err(e) => {
            validation.file_error = Some(e);
            return Ok(validation);
        }
    };
    let policy = super::super::policies::current(pool).await?;
    let mut references: Vec<(usize, String)> = Vec::new();
    validation.errors = read_all(&customers, &policy, SHOWN, |line: ImportLine| {
        validation.valid += 1;
        match line.customer.external_reference {
            Some(reference) => references.push((line.line, reference.as_str().to_owned())),
            None => validation.without_reference += 1,
        }
    });
    validation.lines = validation.valid + validation.errors.total;
    if validation.lines == 0 {
        validation.file_error = Some(FileError::Empty);
        return Ok(validation);
    }

    let mut holders = HashMap::new();
    for chunk in references.chunks(LOOKUP_CHUNK) {
        let chunk: Vec<&str> = chunk.iter().map(|(_, r)| r.as_str()).collect();
        for holder in db::customers::reference_holders(pool, &chunk).await? {
            holders.insert(holder.external_reference.clone(), holder);
        }
    }
    for (line, reference) in &references {
        if let Some(holder) = holders.get(reference) {
            validation.found_imported += 1;
            if validation.found_imported_sample.len() < SHOWN {
                validation
                    .found_imported_sample
                    .push(skipped_line(*line, holder.clone()));
            }
        }
    }
    if !validation.importable() {
        return Ok(validation);
    }

    let id = ImportJobId::new();
    let counted = |n: usize| i32::try_from(n).map_err(|e| Error::Internal(e.into()));
    let mut tx = pool.begin().await?;
    // Storing a file of up to the upload limit may take longer than a request's statement.
    db::set_local_statement_timeout(&mut tx, budget).await?;
    db::import_jobs::delete_unstarted(&mut *tx, UNSTARTED_KEPT).await?;
    db::import_jobs::insert(
        &mut *tx,
        &NewJob {
            id,
            file_name: &validation.file_name,
            format,
            file,
            file_sha256: &Sha256::digest(file),
            total_lines: counted(validation.lines)?,
            validated_by: user,
            found_imported: counted(validation.found_imported)?,
            without_reference: counted(validation.without_reference)?,
            found_imported_sample: &validation.found_imported_sample,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(job = %id, lines = validation.lines, found_imported = validation.found_imported,
        without_reference = validation.without_reference, "customer import validated");
    validation.job = Some(id);
    Ok(validation)
}

/// One job, if it exists.
pub async fn get(pool: &PgPool, ctx: &RequestContext, id: ImportJobId) -> Result<Option<Job>> {
    ctx.require(Action::ManageCustomers)?;
    Ok(db::import_jobs::get(pool, id).await?)
}

/// The newest jobs, newest first.
pub async fn recent(pool: &PgPool, ctx: &RequestContext, limit: i64) -> Result<Vec<Job>> {
    ctx.require(Action::ManageCustomers)?;
    Ok(db::import_jobs::recent(pool, limit).await?)
}

/// Another job that started importing the same file (same SHA-256), newest first: importing it
/// again creates its lines without an external reference again.
pub async fn same_file_started(
    pool: &PgPool,
    ctx: &RequestContext,
    job: &Job,
) -> Result<Option<Job>> {
    ctx.require(Action::ManageCustomers)?;
    Ok(db::import_jobs::started_with_file(pool, &job.file_sha256, job.id).await?)
}

/// Starts importing a validated file, as the caller (the actor of every customer it creates,
/// through this request); starting a job that has started already changes nothing. `None` if
/// there is no such job.
pub async fn start(pool: &PgPool, ctx: &RequestContext, id: ImportJobId) -> Result<Option<Job>> {
    ctx.require(Action::ManageCustomers)?;
    let user = console_user(ctx)?;
    if db::import_jobs::start(pool, id, user, ctx.actor.request_id()).await? {
        tracing::info!(job = %id, "customer import started");
    }
    Ok(db::import_jobs::get(pool, id).await?)
}

/// Runs import jobs on this instance until `shutdown` resolves: takes the oldest job no live
/// lease holds, writes it batch by batch, and looks again every [`POLL`] when there is none. On
/// shutdown it ends after the batch in flight and gives up its lease, so that another instance
/// (or this one, restarted) resumes the job at once.
pub async fn work(pool: PgPool, shutdown: impl Future<Output = ()>) {
    let instance = Uuid::now_v7();
    let shutdown = shutdown.fuse();
    futures_util::pin_mut!(shutdown);
    loop {
        match claim(&pool, instance).await {
            Ok(Some(mut lease)) => loop {
                match lease.step(&pool).await {
                    Ok(Step::More) => {}
                    Ok(Step::Finished | Step::Lost) => break,
                    Err(e) => {
                        lease.stopped_by(&pool, e).await;
                        break;
                    }
                }
                if (&mut shutdown).now_or_never().is_some() {
                    lease.release(&pool).await;
                    return;
                }
            },
            Ok(None) => {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = ?e, "could not look for customer import jobs");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
        if (&mut shutdown).now_or_never().is_some() {
            return;
        }
    }
}

/// Leases the oldest started job no live lease holds to `instance`, ready to resume.
pub async fn claim(pool: &PgPool, instance: Uuid) -> Result<Option<Lease>> {
    match db::import_jobs::claim(pool, instance, LEASE).await? {
        Some(id) => Lease::take(pool, id, instance).await,
        None => Ok(None),
    }
}

/// What one step of a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A batch is written; more lines remain.
    More,
    /// The last batch is written: the job is done (or it failed for good).
    Finished,
    /// Another instance holds the job now (this one's lease ran out): nothing was written.
    Lost,
}

/// A job this instance holds, with its file, positioned after the last committed batch.
#[derive(Debug)]
pub struct Lease {
    id: ImportJobId,
    instance: Uuid,
    format: FileFormat,
    file: Vec<u8>,
    total: usize,
    lines_done: usize,
    position: Position,
    started_by: Uuid,
    request_id: Option<String>,
}

impl Lease {
    /// The job `id` as leased by `instance`, ready to resume; `None` unless `instance` holds it.
    pub async fn take(pool: &PgPool, id: ImportJobId, instance: Uuid) -> Result<Option<Self>> {
        let Some(job) = db::import_jobs::get(pool, id).await? else {
            return Ok(None);
        };
        if job.leased_by != Some(instance) {
            return Ok(None);
        }
        let mut lease = Self {
            id,
            instance,
            format: job.format,
            file: Vec::new(),
            total: usize::try_from(job.total_lines).unwrap_or(0),
            lines_done: usize::try_from(job.lines_done).unwrap_or(0),
            position: Position::default(),
            started_by: job.started_by.unwrap_or(job.validated_by),
            request_id: job.request_id,
        };
        let Some(file) = db::import_jobs::file(pool, id).await? else {
            lease.fail(pool, "the job's file is gone").await?;
            return Ok(None);
        };
        lease.file = file;
        let customers = match CustomerFile::open(lease.format, &lease.file) {
            Ok(customers) => customers,
            Err(e) => {
                lease.fail(pool, &e.to_string()).await?;
                return Ok(None);
            }
        };
        let mut lines = customers.lines();
        lines.by_ref().take(lease.lines_done).for_each(drop);
        lease.position = lines.position();
        tracing::info!(job = %id, lines_done = lease.lines_done, of = lease.total,
            "customer import job taken");
        Ok(Some(lease))
    }

    /// The job's id.
    pub fn id(&self) -> ImportJobId {
        self.id
    }

    /// Writes the next batch of lines and the job's progress in one transaction, as the user who
    /// started the job, if that user still may; [`Step::Lost`] (nothing written) if the lease is
    /// no longer this instance's.
    pub async fn step(&mut self, pool: &PgPool) -> Result<Step> {
        let customers = CustomerFile::open(self.format, &self.file)
            .map_err(|e| Error::Internal(anyhow::anyhow!("the job's file no longer reads: {e}")))?;
        let policy = super::super::policies::current(pool).await?;
        let mut lines = customers.lines_from(self.position);
        let mut batch: Vec<(usize, NewCustomer)> = Vec::with_capacity(BATCH_LINES);
        for raw in lines.by_ref().take(BATCH_LINES) {
            match customers.read(raw, &policy) {
                Ok(line) => batch.push((line.line, line.customer)),
                Err(e) => {
                    // Validated before it was stored: only a change of the rules gets here.
                    self.fail(pool, &format!("line {}: {}", e.line, e.message))
                        .await?;
                    return Ok(Step::Finished);
                }
            }
        }
        let done = self.lines_done + batch.len();
        if batch.is_empty() || done > self.total {
            self.fail(pool, "the file has other lines than were validated")
                .await?;
            return Ok(Step::Finished);
        }

        let mut tx = pool.begin().await?;
        // First, so the job's row stays locked until this batch commits: no other instance can
        // take the job meanwhile, and one that took it before finds this lease gone here.
        match db::import_jobs::renew(&mut *tx, self.id, self.instance, LEASE).await? {
            Some(committed) if usize::try_from(committed) == Ok(self.lines_done) => {}
            _ => {
                tracing::warn!(job = %self.id, "customer import job lease lost to another instance");
                return Ok(Step::Lost);
            }
        }
        let ctx = match self.actor(&mut tx).await? {
            Ok(ctx) => ctx,
            Err(why) => {
                drop(tx);
                self.fail(pool, &why).await?;
                return Ok(Step::Finished);
            }
        };
        let (numbers, customers): (Vec<usize>, Vec<NewCustomer>) = batch.into_iter().unzip();
        let in_force = super::super::policies::for_write(&mut tx).await?;
        let skipped = insert_new(&mut tx, &ctx, &in_force, &customers).await?;
        let created = customers.len() - skipped.len();
        let counted = |n: usize| i32::try_from(n).map_err(|e| Error::Internal(e.into()));
        db::import_jobs::record_batch(
            &mut *tx,
            self.id,
            counted(done)?,
            counted(created)?,
            counted(skipped.len())?,
        )
        .await?;
        let finished = done == self.total;
        if finished {
            db::import_jobs::finish(&mut *tx, self.id, self.instance, None).await?;
        }
        tx.commit().await?;

        self.lines_done = done;
        self.position = lines.position();
        crate::monitoring::import_job_batch(created, skipped.len());
        tracing::info!(job = %self.id, lines_done = done, of = self.total, created,
            skipped = skipped.len(), first_line = numbers.first(), "customer import job progress");
        if finished {
            tracing::info!(job = %self.id, "customer import job done");
            return Ok(Step::Finished);
        }
        Ok(Step::More)
    }

    /// The context of the user who started the job, if that user may still import customers;
    /// else why not.
    async fn actor(
        &self,
        db: &mut sqlx::PgConnection,
    ) -> Result<std::result::Result<RequestContext, String>> {
        let Some(user) = db::users::get(&mut *db, self.started_by).await? else {
            return Ok(Err("the user who started it no longer exists".into()));
        };
        if user.disabled_at.is_some() {
            return Ok(Err(format!(
                "{} was disabled, so the import stopped",
                user.username
            )));
        }
        let principal = Principal {
            id: user.id,
            role: user.role,
            partner_id: user.partner_id,
        };
        let ctx = RequestContext::new(Some(principal), self.request_id.clone());
        if ctx.require(Action::ManageCustomers).is_err() {
            return Ok(Err(format!(
                "{} may no longer import customers (role {}), so the import stopped",
                user.username, user.role
            )));
        }
        Ok(Ok(ctx))
    }

    /// Ends the job as failed; the batches written stay written.
    async fn fail(&self, pool: &PgPool, why: &str) -> Result<()> {
        tracing::warn!(job = %self.id, lines_done = self.lines_done, why, "customer import job failed");
        db::import_jobs::finish(pool, self.id, self.instance, Some(why)).await?;
        Ok(())
    }

    /// After a step failed: a database that is away is waited out (the job is resumed once it is
    /// back, by whichever instance then takes it); anything else ends the job as failed.
    async fn stopped_by(&self, pool: &PgPool, error: Error) {
        match error {
            Error::DatabaseUnavailable(_) | Error::RequestTimeout(_) => {
                tracing::warn!(job = %self.id, error = ?error, "customer import job paused");
                self.release(pool).await;
            }
            other => {
                tracing::error!(job = %self.id, error = ?other, "customer import job stopped");
                let why = format!(
                    "an internal error stopped it after {} line(s); see the service's log",
                    self.lines_done
                );
                if let Err(e) = self.fail(pool, &why).await {
                    tracing::warn!(job = %self.id, error = ?e, "could not record the failure");
                }
            }
        }
    }

    /// Gives the job up, for another instance to resume at once.
    pub async fn release(&self, pool: &PgPool) {
        if let Err(e) = db::import_jobs::release(pool, self.id, self.instance).await {
            // The lease then runs out by itself.
            tracing::warn!(job = %self.id, error = ?e, "could not release an import job");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn file_names_are_the_last_segment_and_printable() {
        assert_eq!(file_name("customers.csv"), "customers.csv");
        assert_eq!(file_name(r"C:\Users\jd\customers.csv"), "customers.csv");
        assert_eq!(file_name("a/b/c.ndjson"), "c.ndjson");
        assert_eq!(file_name("bad\u{7}name\n.csv"), "badname.csv");
        assert_eq!(file_name(""), "upload");
        assert_eq!(file_name(&"x".repeat(300)).len(), 255);
    }
}
