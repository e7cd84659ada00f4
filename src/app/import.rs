//! Bulk onboarding of customers: validated line by line, written in one transaction.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;
use sqlx::PgPool;

use super::{
    Error, RequestContext, Result,
    customers::{QualificationChange, initial_evidence, insert_new},
};
use crate::{
    db::{self, customers::NewCustomer},
    domain::{Action, CustomerId, DisplayName},
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

/// A line that parsed, before its evidence is checked.
#[derive(Debug)]
pub struct ImportLine {
    /// 1-based line number.
    pub line: usize,
    /// The customer's name.
    pub name: DisplayName,
    /// Its first qualification set.
    pub change: QualificationChange,
}

/// The outcome of an import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Customers created.
    pub imported: usize,
    /// Lines refused.
    pub rejected: usize,
    /// Every refused line.
    pub errors: Vec<LineError>,
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

/// Checks every line's evidence, then (unless refused) creates all valid customers, their first
/// history versions and `customer_created` events in one transaction. `errors` holds the lines
/// that already failed to parse.
pub async fn import_customers(
    pool: &PgPool,
    ctx: &RequestContext,
    lines: Vec<ImportLine>,
    mut errors: Vec<LineError>,
    mode: ImportMode,
    progress: &ImportProgress,
) -> Result<ImportReport> {
    ctx.require(Action::ManageCustomers)?;
    let started = Instant::now();
    let total = lines.len() + errors.len();
    progress.record(total, lines.len());
    let mut customers = Vec::with_capacity(lines.len());
    for line in lines {
        match initial_evidence(&line.change) {
            Ok(evidence) => customers.push(NewCustomer {
                id: CustomerId::new(),
                name: line.name,
                qualifications: line.change.qualifications,
                evidence,
                reason: line.change.reason,
            }),
            Err(Error::Evidence(e)) => errors.push(LineError {
                line: line.line,
                code: "invalid_field",
                field: Some(e.field()),
                message: e.to_string(),
            }),
            Err(other) => return Err(other),
        }
    }
    progress.record(total, customers.len());
    errors.sort_by_key(|e| e.line);
    if !errors.is_empty() && mode == ImportMode::AllOrNothing {
        tracing::warn!(
            lines = total,
            rejected = errors.len(),
            "customer import refused: bad lines"
        );
        crate::monitoring::import_finished(0, errors.len());
        return Ok(ImportReport {
            imported: 0,
            rejected: errors.len(),
            errors,
            customer_ids: Vec::new(),
        });
    }

    let mut tx = pool.begin().await?;
    // The import's own budget bounds it (the caller drops it then), not the per-statement limit
    // meant for requests: a batch may wait for locks, or simply be large.
    db::set_local_statement_timeout(&mut tx, progress.budget).await?;
    for (i, batch) in customers.chunks(BATCH).enumerate() {
        insert_new(&mut tx, ctx, batch).await?;
        tracing::info!(
            written = i * BATCH + batch.len(),
            of = customers.len(),
            "customer import progress"
        );
    }
    tx.commit().await?;
    crate::monitoring::import_finished(customers.len(), errors.len());
    tracing::info!(
        lines = total,
        imported = customers.len(),
        rejected = errors.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "customer import finished"
    );
    Ok(ImportReport {
        imported: customers.len(),
        rejected: errors.len(),
        errors,
        customer_ids: customers.iter().map(|c| c.id).collect(),
    })
}
