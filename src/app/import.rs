//! Bulk onboarding of customers: files read line by line ([`file`]), written in one transaction
//! by the API ([`import_customers`]) or in batches by a background job of the console ([`jobs`]).
//!
//! A customer whose external reference is already held is not imported again: its line is
//! reported as already imported, with the customer that has it. A line without a reference
//! cannot be recognised that way, so importing it twice creates two customers.

pub mod file;
pub mod jobs;

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;
use sqlx::PgPool;

use super::{RequestContext, Result, customers::insert_new};
use crate::{
    db::{
        self,
        customers::{NewCustomer, ReferenceHolder},
    },
    domain::{Action, CustomerId, Policy},
};

/// Rows per INSERT statement: large enough to amortize round trips, small enough for bind limits.
const BATCH: usize = 5_000;

/// What happens to the valid lines when some lines are bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Import nothing unless every line is valid (the default).
    #[default]
    AllOrNothing,
    /// Import the valid lines and report the bad ones.
    Partial,
}

/// The problem codes a line can fail with: a subset of the API's (`http::Code`; a test holds
/// them to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineCode {
    /// Not JSON.
    MalformedJson,
    /// JSON of the wrong shape, or a CSV line that is not a row of the table.
    InvalidBody,
    /// A field whose value is not acceptable (the line error names it).
    InvalidField,
    /// Not one of the qualification sets of the policy version in force (R3).
    InvalidQualificationSet,
}

impl LineCode {
    /// Every code.
    pub const ALL: [LineCode; 4] = [
        Self::MalformedJson,
        Self::InvalidBody,
        Self::InvalidField,
        Self::InvalidQualificationSet,
    ];

    /// The code as the API spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidBody => "invalid_body",
            Self::InvalidField => "invalid_field",
            Self::InvalidQualificationSet => "invalid_qualification_set",
        }
    }
}

/// One bad line of an import.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// Stable code, as in the API's problem responses.
    pub code: &'static str,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Human sentence.
    pub message: String,
}

/// A line that passed every check: the customer it creates.
#[derive(Debug)]
pub struct ImportLine {
    /// 1-based line number.
    pub line: usize,
    /// The customer, with a new id.
    pub customer: NewCustomer,
}

pub use crate::db::import_jobs::AlreadyImported;

fn skipped_line(line: usize, holder: ReferenceHolder) -> AlreadyImported {
    AlreadyImported {
        line,
        external_reference: holder.external_reference,
        customer_id: holder.customer_id,
    }
}

/// The outcome of an import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Customers created.
    pub imported: usize,
    /// Lines refused.
    pub rejected: usize,
    /// Lines skipped because their external reference is held already.
    pub skipped: usize,
    /// Every refused line.
    pub errors: Vec<LineError>,
    /// Every skipped line, with the customer that has its reference.
    pub already_imported: Vec<AlreadyImported>,
    /// The created customers' ids, in line order.
    pub customer_ids: Vec<CustomerId>,
}

/// An import's time budget and how far it got, shared with whoever answers when the budget runs
/// out.
#[derive(Debug)]
pub struct ImportProgress {
    budget: Duration,
    lines: AtomicUsize,
    valid: AtomicUsize,
}

impl ImportProgress {
    /// Nothing read yet, `budget` to finish.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            lines: AtomicUsize::new(0),
            valid: AtomicUsize::new(0),
        }
    }

    /// Lines read (parsed or not), and how many of them passed every check so far.
    pub fn lines(&self) -> (usize, usize) {
        (
            self.lines.load(Ordering::Relaxed),
            self.valid.load(Ordering::Relaxed),
        )
    }

    fn record(&self, lines: usize, valid: usize) {
        self.lines.store(lines, Ordering::Relaxed);
        self.valid.store(valid, Ordering::Relaxed);
    }
}

/// Bad lines found while reading a file: the first ones kept, and how many there were.
#[derive(Debug, Default)]
pub struct LineErrors {
    /// The first errors, in line order.
    pub kept: Vec<LineError>,
    /// Every error, kept or not.
    pub total: usize,
}

/// Reads every customer line of `file`, giving each valid one to `accept`; returns the first
/// `keep` bad lines and how many there were. A line with an external reference that an earlier
/// line has is bad: each customer has its own.
pub fn read_all(
    file: &file::CustomerFile<'_>,
    policy: &Policy,
    keep: usize,
    mut accept: impl FnMut(ImportLine),
) -> LineErrors {
    let mut errors = LineErrors::default();
    let mut references: HashMap<String, usize> = HashMap::new();
    for raw in file.lines() {
        let read = file.read(raw, policy).and_then(|line| {
            let Some(reference) = &line.customer.external_reference else {
                return Ok(line);
            };
            match references.get(reference.as_str()) {
                Some(first) => Err(LineError {
                    line: line.line,
                    code: LineCode::InvalidField.as_str(),
                    field: Some("external_reference".into()),
                    message: format!(
                        "external_reference: `{}` is also on line {first}; each customer has its own",
                        reference.as_str()
                    ),
                }),
                None => {
                    references.insert(reference.as_str().to_owned(), line.line);
                    Ok(line)
                }
            }
        });
        match read {
            Ok(line) => accept(line),
            Err(e) => {
                errors.total += 1;
                if errors.kept.len() < keep {
                    errors.kept.push(e);
                }
            }
        }
    }
    errors
}

/// Creates all valid customers (unless refused), their first history versions and
/// `customer_created` events in one transaction; lines whose external reference is held already
/// are skipped and reported. `errors` holds the lines that failed their checks.
pub async fn import_customers(
    pool: &PgPool,
    ctx: &RequestContext,
    lines: Vec<ImportLine>,
    errors: Vec<LineError>,
    mode: ImportMode,
    progress: &ImportProgress,
) -> Result<ImportReport> {
    ctx.require(Action::ManageCustomers)?;
    let started = Instant::now();
    let total = lines.len() + errors.len();
    progress.record(total, lines.len());
    if !errors.is_empty() && mode == ImportMode::AllOrNothing {
        tracing::warn!(
            lines = total,
            rejected = errors.len(),
            "customer import refused: bad lines"
        );
        crate::monitoring::import_finished(0, errors.len(), 0);
        return Ok(ImportReport {
            imported: 0,
            rejected: errors.len(),
            skipped: 0,
            errors,
            already_imported: Vec::new(),
            customer_ids: Vec::new(),
        });
    }

    let (numbers, customers): (Vec<usize>, Vec<NewCustomer>) =
        lines.into_iter().map(|l| (l.line, l.customer)).unzip();
    let mut already_imported = Vec::new();
    let mut tx = pool.begin().await?;
    // The import's own budget bounds it (the caller drops it then), not the per-statement limit
    // meant for requests: a batch may wait for locks, or simply be large.
    db::set_local_statement_timeout(&mut tx, progress.budget).await?;
    let in_force = super::policies::for_write(&mut tx).await?;
    for (i, batch) in customers.chunks(BATCH).enumerate() {
        for (at, holder) in insert_new(&mut tx, ctx, &in_force, batch).await? {
            already_imported.push(skipped_line(numbers[i * BATCH + at], holder));
        }
        tracing::info!(
            written = i * BATCH + batch.len(),
            of = customers.len(),
            "customer import progress"
        );
    }
    tx.commit().await?;
    let skipped: std::collections::HashSet<usize> =
        already_imported.iter().map(|a| a.line).collect();
    let customer_ids: Vec<CustomerId> = numbers
        .iter()
        .zip(&customers)
        .filter(|(line, _)| !skipped.contains(line))
        .map(|(_, c)| c.id)
        .collect();
    crate::monitoring::import_finished(customer_ids.len(), errors.len(), skipped.len());
    tracing::info!(
        lines = total,
        imported = customer_ids.len(),
        rejected = errors.len(),
        skipped = skipped.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "customer import finished"
    );
    Ok(ImportReport {
        imported: customer_ids.len(),
        rejected: errors.len(),
        skipped: already_imported.len(),
        errors,
        already_imported,
        customer_ids,
    })
}
