//! The `partner-catalog` command line.

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use clap::{Parser, Subcommand};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    app::{self, RequestContext, tokens, users},
    config::Config,
    db::{self, Keyset},
    dev::{self, SeedOptions},
    domain::{CustomerId, DisplayName, NewPassword, PartnerId, Role, Username},
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
    /// Manage bearer tokens directly in the database (e.g. the first operator token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage console users directly in the database (e.g. the first operator).
    #[command(subcommand)]
    User(UserCommand),
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
enum TokenCommand {
    /// Create a token and print its secret (shown this once).
    Create {
        /// The role: global_admin, admin_agent, sales_agent, back_office, auditor or operator.
        #[arg(long)]
        role: Role,
        /// The partner a partner role acts for.
        #[arg(long)]
        partner: Option<Uuid>,
        /// Lifetime (`90d`, `12h`) or expiry instant (RFC 3339).
        #[arg(long, default_value = "90d")]
        expires: String,
        /// Who holds the token.
        #[arg(long, default_value = "created on the command line")]
        label: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token; it stops working within 5 seconds.
    Revoke {
        /// The token's id.
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a console user. Without --password-stdin a strong password is generated and printed
    /// once; the user can change it under "Your account".
    Create {
        /// Sign-in name: 1 to 64 of a-z 0-9 . _ - (lower-cased).
        #[arg(long)]
        username: String,
        /// The role: global_admin, admin_agent, sales_agent, back_office, auditor or operator.
        #[arg(long)]
        role: Role,
        /// The partner a partner role acts for.
        #[arg(long)]
        partner: Option<Uuid>,
        /// Name shown to colleagues and auditors, e.g. "Jane Doe".
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of standard input instead.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List console users (never their passwords).
    List,
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
            Command::Token(command) => {
                db::prepare_database(&self.config.database_url).await?;
                let pool = PgPool::connect(&self.config.database_url)
                    .await
                    .context("cannot connect to the database")?;
                run_token_command(&pool, command).await
            }
            Command::User(command) => {
                db::prepare_database(&self.config.database_url).await?;
                let pool = connect(&self.config.database_url).await?;
                run_user_command(&pool, command).await
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

async fn run_token_command(pool: &PgPool, command: TokenCommand) -> anyhow::Result<()> {
    let ctx = RequestContext::system();
    match command {
        TokenCommand::Create {
            role,
            partner,
            expires,
            label,
        } => {
            let expires_at = parse_expiry(&expires, Utc::now())?;
            let label = DisplayName::parse(&label).map_err(|e| anyhow::anyhow!("--label {e}"))?;
            let issued =
                tokens::issue(pool, &ctx, role, partner.map(PartnerId), expires_at, &label).await?;
            println!("token id:   {}", issued.token.id);
            println!("role:       {}", issued.token.role);
            println!("expires at: {}", issued.token.expires_at.to_rfc3339());
            println!("secret:     {}", issued.secret);
            println!("Keep the secret now: it is stored only as a hash and cannot be shown again.");
        }
        TokenCommand::List => {
            let mut after = None;
            loop {
                let page = tokens::list(pool, &ctx, Keyset { after, limit: 500 }).await?;
                for t in &page {
                    let state = if t.revoked_at.is_some() {
                        "revoked"
                    } else if t.expires_at <= Utc::now() {
                        "expired"
                    } else {
                        "active"
                    };
                    let partner = t
                        .partner_id
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{}  {:<12} {:<7} partner={} expires={} {}",
                        t.id,
                        t.role.as_str(),
                        state,
                        partner,
                        t.expires_at.to_rfc3339(),
                        t.label
                    );
                }
                match page.last() {
                    Some(last) if page.len() == 500 => after = Some(last.id),
                    _ => break,
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let token = tokens::revoke(pool, &ctx, id).await?;
            println!(
                "revoked token {} ({}, {})",
                token.id, token.role, token.label
            );
        }
    }
    Ok(())
}

async fn run_user_command(pool: &PgPool, command: UserCommand) -> anyhow::Result<()> {
    let ctx = RequestContext::system();
    match command {
        UserCommand::Create {
            username,
            role,
            partner,
            display_name,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("cannot read the password from standard input")?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                let mut random = [0u8; 18];
                getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                use base64::Engine;
                (
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random),
                    true,
                )
            };
            let account = users::NewAccount {
                username: Username::parse(&username)
                    .map_err(|e| anyhow::anyhow!("--username: {e}"))?,
                display_name: display_name
                    .map(|n| DisplayName::parse(&n))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--display-name {e}"))?,
                password: NewPassword::parse(&password)
                    .map_err(|e| anyhow::anyhow!("password: {e}"))?,
                role,
                partner: partner.map(PartnerId),
            };
            let user = users::create(pool, &ctx, &account).await?;
            println!("user id:  {}", user.id);
            println!("username: {}", user.username);
            println!("role:     {}", user.role);
            if generated {
                println!("password: {password}");
                println!(
                    "Keep the password now: it is stored only as a hash. Change it after signing in (Your account)."
                );
            }
        }
        UserCommand::List => {
            let mut after = None;
            loop {
                let page = users::list(pool, &ctx, Keyset { after, limit: 500 }).await?;
                for u in &page {
                    let state = if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    };
                    let partner = u
                        .partner_id
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{}  {:<20} {:<12} {:<8} partner={} {}",
                        u.id,
                        u.username,
                        u.role.as_str(),
                        state,
                        partner,
                        u.display_name.as_deref().unwrap_or("")
                    );
                }
                match page.last() {
                    Some(last) if page.len() == 500 => after = Some(last.id),
                    _ => break,
                }
            }
        }
    }
    Ok(())
}

/// `90d`, `12h`, `30m` from `now`, or an RFC 3339 instant.
fn parse_expiry(raw: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let amount: i64 = number
        .parse()
        .with_context(|| format!("cannot read --expires {raw:?}"))?;
    let lifetime = match unit {
        "d" => Duration::days(amount),
        "h" => Duration::hours(amount),
        "m" => Duration::minutes(amount),
        _ => {
            anyhow::bail!("--expires takes e.g. 90d, 12h, 30m or an RFC 3339 instant, not {raw:?}")
        }
    };
    Ok(now + lifetime)
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
        (Some(id), _) => {
            one(
                app::audit::verify_customer(pool, &RequestContext::system(), CustomerId(id))
                    .await?,
            )
        }
        (_, Some(id)) => {
            one(app::audit::verify_partner(pool, &RequestContext::system(), PartnerId(id)).await?)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        // clap checks flag names, env names, conflicts and defaults only when asked to.
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn expiries_are_durations_or_instants() {
        let now = Utc::now();
        assert_eq!(parse_expiry("90d", now).unwrap(), now + Duration::days(90));
        assert_eq!(parse_expiry("12h", now).unwrap(), now + Duration::hours(12));
        assert_eq!(
            parse_expiry("2030-01-01T00:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2030-01-01T00:00:00+00:00"
        );
        assert!(parse_expiry("soon", now).is_err());
        assert!(parse_expiry("5y", now).is_err());
    }
}
