//! The `partner-catalog` binary: reads `.env`, parses the command line, runs it.

use clap::Parser;
use partner_catalog::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is fine: real environment variables and defaults still apply.
    let _ = dotenvy::dotenv();
    Cli::parse().run().await
}
