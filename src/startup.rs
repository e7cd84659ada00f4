//! Building and running the service: database, pool, listener, router, graceful shutdown.

use std::{future::Future, net::SocketAddr, str::FromStr, time::Duration};

use anyhow::Context;
use futures_util::FutureExt;
use sqlx::{
    Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::net::TcpListener;

use crate::{
    app::{self, audit::Exports},
    config::{Config, MetricsBind},
    db, delivery, domain, http, monitoring, server,
};

/// A pooled connection idle at least this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// A bound, ready-to-serve instance of the service.
pub struct Application {
    listener: TcpListener,
    /// Where `/metrics` is served, unless metrics are off.
    metrics_listener: Option<TcpListener>,
    pool: PgPool,
    exports: Exports,
    limits: http::Limits,
    console: http::console::Settings,
    connections: server::ConnectionLimits,
    webhooks: delivery::Settings,
    /// Whether this instance runs the webhook dispatcher and sender (`WEBHOOK_DELIVERY`).
    deliver_webhooks: bool,
}

impl Application {
    /// Creates the database if needed, applies migrations, opens the pool and binds the listener.
    /// Binding port 0 picks a free port (tests do this); see [`Application::local_addr`].
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        db::prepare_database(&config.database_url).await?;
        let options = PgConnectOptions::from_str(&config.database_url)
            .context("DATABASE_URL is not a PostgreSQL URL")?
            .options([
                ("statement_timeout", config.statement_timeout_ms.to_string()),
                (
                    "idle_in_transaction_session_timeout",
                    config.idle_in_transaction_timeout_ms.to_string(),
                ),
            ]);
        // Waiting longer than this for a connection is answered with 503, never a hang.
        let acquire_timeout = Duration::from_secs(config.database_acquire_timeout_secs);
        let pool = PgPoolOptions::new()
            .max_connections(config.database_max_connections)
            .acquire_timeout(acquire_timeout)
            // sqlx pings every connection it hands out, a round trip per request, and again
            // each one returned. One returned a moment ago was checked then: ping only those idle
            // for a while, which a restarted database may have cut (BENCHMARKS.md, "Purchases per
            // second").
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await
            .context("cannot connect to the database")?;
        let exports = Exports::new(options, config.export_max_concurrent, acquire_timeout);
        let webhooks = delivery::Settings {
            allow_private: config.webhook_allow_private.clone(),
            retry_schedule: domain::webhook::parse_schedule(&config.webhook_retry_schedule)
                .map_err(anyhow::Error::msg)
                .context("WEBHOOK_RETRY_SCHEDULE")?,
            timeout: Duration::from_secs(config.webhook_timeout_secs),
            poll: Duration::from_millis(config.webhook_poll_ms),
        };
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let metrics_listener = match config.metrics_bind {
            MetricsBind::Off => None,
            MetricsBind::On(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (METRICS_BIND)"))?,
            ),
        };
        Ok(Self {
            listener,
            metrics_listener,
            pool,
            exports,
            limits: http::Limits {
                request_timeout: Duration::from_secs(config.request_timeout_secs),
                body_bytes: config.body_limit_bytes,
                import_body_bytes: config.import_body_limit_bytes,
                import_timeout: Duration::from_secs(config.import_timeout_secs),
            },
            console: http::console::Settings {
                sessions: app::users::SessionLimits {
                    idle: Duration::from_secs(config.session_idle_minutes * 60),
                    absolute: Duration::from_secs(config.session_max_hours * 3600),
                },
                secure_cookies: config.secure_cookies,
            },
            connections: server::ConnectionLimits {
                max_connections: config.max_connections,
                header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
                send_timeout: Duration::from_secs(config.send_timeout_secs),
                shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            },
            webhooks,
            deliver_webhooks: config.webhook_delivery,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address `/metrics` is served on, unless metrics are off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    /// The service's connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests (within the grace
    /// period) and closes the pools.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.local_addr(), "partner-catalog listening");
        let feed_bell = app::webhooks::FeedBell::default();
        let router = http::router(http::AppState {
            pool: self.pool.clone(),
            tokens: Default::default(),
            exports: self.exports.clone(),
            limits: self.limits,
            console: self.console,
            webhooks: std::sync::Arc::new(app::webhooks::Settings {
                allow_private: self.webhooks.allow_private.clone(),
                timeout: self.webhooks.timeout,
            }),
            feed_bell: feed_bell.clone(),
        });
        // Both listeners, the import worker and the webhook delivery stop on the same signal.
        let shutdown = shutdown.shared();
        let imports = tokio::spawn(app::import::jobs::work(self.pool.clone(), shutdown.clone()));
        let feed_listener = tokio::spawn(feed_bell.listen(self.pool.clone(), shutdown.clone()));
        // Without it the API still answers and events still commit; another instance (or this one
        // restarted with it on) dispatches them later from each chain's mark.
        let deliveries = if self.deliver_webhooks {
            Some(tokio::spawn(delivery::run(
                self.pool.clone(),
                self.webhooks,
                shutdown.clone(),
            )))
        } else {
            tracing::info!("webhook delivery is off on this instance (WEBHOOK_DELIVERY=false)");
            None
        };
        let api = server::serve(
            "api",
            self.listener,
            router,
            self.connections,
            shutdown.clone(),
        );
        match self.metrics_listener {
            None => api.await,
            Some(listener) => {
                tracing::info!(address = %listener.local_addr()?, "metrics listening");
                let metrics = monitoring::router(monitoring::Scrape {
                    pool: self.pool.clone(),
                    export_pool: self.exports.pool().clone(),
                });
                let metrics =
                    server::serve("metrics", listener, metrics, self.connections, shutdown);
                tokio::select! {
                    ((), ()) = async { tokio::join!(api, metrics) } => {}
                    () = monitoring::upkeep() => {}
                }
            }
        }
        // It ends after the batch in flight (committed) and gives its job up for another instance.
        if let Err(e) = imports.await {
            tracing::error!(error = %e, "the customer import worker panicked");
        }
        if let Err(error) = feed_listener.await {
            tracing::error!(?error, "the feed listener ended abnormally");
        }
        if let Some(deliveries) = deliveries
            && let Err(error) = deliveries.await
        {
            tracing::error!(?error, "webhook delivery ended abnormally");
        }
        self.exports.close().await;
        self.pool.close().await;
        tracing::info!("partner-catalog stopped");
        Ok(())
    }
}
