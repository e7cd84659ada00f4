//! The `partner-catalog` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    app,
    config::Config,
    db,
    dev::{self, SeedOptions},
    domain::{CustomerId, PartnerId},
    startup::Application,
    telemetry,
};

/// partner-catalog: which partners may sell which specially priced offers to which customers.
#[derive(Debug, Parser)]
#[command(name = "partner-catalog", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database if needed, apply migrations, and serve HTTP (the default).
    Serve,
    /// Create the database if needed and apply migrations, then exit.
    Migrate,
    /// Tools for auditors.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Tools for developers.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chains of the event log and report the first broken link of each
    /// broken chain: one customer's, one partner's, or (without options) every chain. Exits with
    /// status 1 when a chain is broken.
    Verify {
        /// Verify this customer's chain only.
        #[arg(long, conflicts_with = "partner_id")]
        customer_id: Option<Uuid>,
        /// Verify this partner's chain only.
        #[arg(long)]
        partner_id: Option<Uuid>,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Append synthetic, correctly chained events about new customers and partners, for
    /// benchmarks. Needs the right to disable the table's trigger (the table owner).
    Seed {
        /// Number of events.
        #[arg(long)]
        events: u64,
        /// Number of customers [default: events / 100].
        #[arg(long)]
        customers: Option<u64>,
        /// Number of partners [default: customers / 20].
        #[arg(long)]
        partners: Option<u64>,
        /// Spread the events over this many days, up to now.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

impl Cli {
    /// Runs the chosen subcommand to completion.
    pub async fn run(self) -> anyhow::Result<()> {
        telemetry::init(self.config.log_format);
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = Application::build(&self.config).await?;
                app.run_until_stopped(shutdown_signal())
                    .await
                    .context("server failed")
            }
            Command::Migrate => {
                db::prepare_database(&self.config.database_url).await?;
                tracing::info!("database is up to date");
                Ok(())
            }
            Command::Audit {
                command:
                    AuditCommand::Verify {
                        customer_id,
                        partner_id,
                    },
            } => {
                let pool = connect(&self.config.database_url).await?;
                verify(&pool, customer_id, partner_id).await
            }
            Command::Dev {
                command:
                    DevCommand::Seed {
                        events,
                        customers,
                        partners,
                        days,
                    },
            } => {
                db::prepare_database(&self.config.database_url).await?;
                let pool = connect(&self.config.database_url).await?;
                let customers = customers.unwrap_or(events / 100).max(1);
                let options = SeedOptions {
                    events,
                    customers,
                    partners: partners.unwrap_or(customers / 20).max(1),
                    days,
                };
                let started = std::time::Instant::now();
                let report = dev::seed(&pool, &options, chrono::Utc::now()).await?;
                println!(
                    "seeded {} events about {} customers and {} partners, {} .. {}, in {:.1?}; \
                     busiest customer {} ({} events)",
                    report.events,
                    options.customers,
                    options.partners,
                    report.first_at,
                    report.last_at,
                    started.elapsed(),
                    report.busiest_customer,
                    report.busiest_customer_events
                );
                Ok(())
            }
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<PgPool> {
    PgPool::connect(url)
        .await
        .context("cannot connect to the database")
}

/// `audit verify`: prints each broken chain's report as a JSON line, then a summary.
async fn verify(
    pool: &PgPool,
    customer: Option<Uuid>,
    partner: Option<Uuid>,
) -> anyhow::Result<()> {
    let verification = match (customer, partner) {
        (Some(id), _) => one(app::audit::verify_customer(pool, CustomerId(id)).await?),
        (_, Some(id)) => one(app::audit::verify_partner(pool, PartnerId(id)).await?),
        (None, None) => app::audit::verify_all(pool).await?,
    };
    for report in &verification.broken {
        println!("{}", serde_json::to_string(report)?);
    }
    println!(
        "verified {} chains, {} events: {} broken",
        verification.chains,
        verification.events,
        verification.broken.len()
    );
    anyhow::ensure!(
        verification.broken.is_empty(),
        "the event log does not verify"
    );
    Ok(())
}

fn one(report: crate::domain::audit::ChainReport) -> app::audit::Verification {
    app::audit::Verification {
        chains: 1,
        events: report.events,
        broken: if report.ok { vec![] } else { vec![report] },
    }
}

/// Resolves on Ctrl-C or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
