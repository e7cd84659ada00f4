//! The `partner-catalog` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{config::Config, db, startup::Application, telemetry};

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
        }
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
