//! Webhook endpoints (register, list, read, disable, rotate the secret, see deliveries) and the
//! pull feed. Delivery itself runs in the background: [`crate::delivery`].

use std::{net::IpAddr, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgExecutor, PgPool};
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use super::{Error, RequestContext, Result};
use crate::{
    db::{
        self, Keyset,
        events::NewEvent,
        webhooks::{Delivery, Endpoint, FeedEntry, NewEndpoint, Redelivery},
    },
    domain::{
        Action, EventType, PartnerId,
        webhook::{self, AllowList, SECRET_PREFIX, WebhookEventType},
    },
};

/// Longest URL an endpoint may have, in characters (as the database holds it).
pub const MAX_URL_CHARS: usize = 2000;
/// Longest description of an endpoint, in characters (as the database holds it).
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// How long the previous secret still signs after a rotation.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// What the webhook use cases need from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Internal networks endpoints may resolve to.
    pub allow_private: AllowList,
    /// Longest one attempt may take.
    pub timeout: Duration,
}

/// A registered endpoint with its signing secret, shown this once.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_` and the base64 key: verify `webhook-signature` with it.
    pub secret: String,
}

fn new_secret() -> Result<(String, String)> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness for a secret: {e}")))?;
    let stored = STANDARD.encode(key);
    Ok((format!("{SECRET_PREFIX}{stored}"), stored))
}

/// Checks a webhook URL: `https` (or `http` to an allow-listed address), a host, and every address
/// it resolves to public or allow-listed. Delivery checks the addresses again when it connects.
pub async fn check_url(raw: &str, allow: &AllowList) -> Result<url::Url> {
    let bad = |why: &str| Error::InvalidWebhookUrl(why.to_owned());
    let url = url::Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the URL are not accepted"));
    }
    let host = url.host_str().ok_or_else(|| bad("the URL has no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| bad("the scheme must be https"))?;
    let addresses = resolve(host, port)
        .await
        .map_err(|_| bad("the host does not resolve"))?;
    if addresses.is_empty() {
        return Err(bad("the host does not resolve"));
    }
    if let Some(ip) = addresses.iter().find(|ip| !allow.permits(**ip)) {
        return Err(Error::InvalidWebhookUrl(format!(
            "the host resolves to {ip}, an internal address"
        )));
    }
    match url.scheme() {
        "https" => {}
        "http" if addresses.iter().all(|ip| allow.allows(*ip)) => {}
        _ => return Err(bad("the scheme must be https")),
    }
    Ok(url)
}

/// The addresses of `host` (an IP literal is its own).
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    Ok(tokio::net::lookup_host((host, port))
        .await?
        .map(|a| a.ip())
        .collect())
}

/// Registers an endpoint: a global admin's for its partner, an operator's for the platform (or
/// for a named partner).
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    settings: &Settings,
    partner: Option<PartnerId>,
    url: &str,
    event_types: &[WebhookEventType],
    description: &str,
) -> Result<EndpointWithSecret> {
    if let Some(partner) = partner {
        ctx.check_partner(partner)?;
    }
    ctx.require(Action::ManageWebhooks)?;
    let partner = partner.or(ctx.partner_scope());
    let url = check_url(url, &settings.allow_private).await?;
    let (shown, stored) = new_secret()?;
    let mut types: Vec<String> = event_types.iter().map(|t| t.as_str().to_owned()).collect();
    types.sort();
    types.dedup();
    let mut tx = pool.begin().await?;
    db::webhooks::lock_endpoints(&mut *tx).await?;
    if let Some(partner) = partner
        && db::partners::get(&mut *tx, partner).await?.is_none()
    {
        return Err(Error::PartnerNotFound(partner));
    }
    let endpoint = db::webhooks::insert_endpoint(
        &mut *tx,
        &NewEndpoint {
            id: Uuid::now_v7(),
            partner_id: partner,
            url: url.as_str(),
            event_types: &types,
            description,
            secret: &stored,
            created_by: ctx.actor.id(),
        },
    )
    .await?;
    db::events::append(
        &mut *tx,
        &ctx.actor,
        NewEvent {
            event_type: EventType::WebhookEndpointCreated,
            customer_id: None,
            partner_id: partner,
            payload: json!({"endpoint_id": endpoint.id, "url": endpoint.url, "event_types": endpoint.event_types}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(EndpointWithSecret {
        endpoint,
        secret: shown,
    })
}

/// The endpoint, if the caller may see it: its partner's, or any for operators.
async fn visible(db: impl PgExecutor<'_>, ctx: &RequestContext, id: Uuid) -> Result<Endpoint> {
    let endpoint = db::webhooks::get_endpoint(db, id)
        .await?
        .ok_or(Error::WebhookEndpointNotFound(id))?;
    if ctx.partner_scope().is_some() && ctx.partner_scope() != endpoint.partner_id {
        return Err(Error::WebhookEndpointNotFound(id));
    }
    ctx.require(Action::ManageWebhooks)?;
    Ok(endpoint)
}

/// A page of endpoints: the partner's for partner roles, the platform's for operators.
pub async fn list(pool: &PgPool, ctx: &RequestContext, page: Keyset) -> Result<Vec<Endpoint>> {
    list_of(pool, ctx, None, page).await
}

/// A page of the endpoints of `partner` (operators may name any; partner roles only their own,
/// another is 404), or without one those of [`list`].
pub async fn list_of(
    pool: &PgPool,
    ctx: &RequestContext,
    partner: Option<PartnerId>,
    page: Keyset,
) -> Result<Vec<Endpoint>> {
    if let Some(partner) = partner {
        ctx.check_partner(partner)?;
    }
    ctx.require(Action::ManageWebhooks)?;
    let owner = ctx.partner_scope().or(partner);
    Ok(db::webhooks::list_endpoints(pool, owner, page).await?)
}

/// One endpoint.
pub async fn get(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> Result<Endpoint> {
    visible(pool, ctx, id).await
}

/// Disables an endpoint (idempotent): nothing more is sent to it.
pub async fn disable(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> Result<Endpoint> {
    switch(pool, ctx, id, false).await
}

/// Enables a disabled endpoint (idempotent): its pending deliveries are sent again. Notices of
/// what happened while it was disabled were not queued for it: [`redeliver`] the range.
pub async fn enable(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> Result<Endpoint> {
    switch(pool, ctx, id, true).await
}

/// Enables or disables an endpoint, audited when that changes anything.
async fn switch(pool: &PgPool, ctx: &RequestContext, id: Uuid, enable: bool) -> Result<Endpoint> {
    let mut tx = pool.begin().await?;
    let endpoint = visible(&mut *tx, ctx, id).await?;
    let (changed, event_type) = if enable {
        db::webhooks::lock_endpoints(&mut *tx).await?;
        let changed = db::webhooks::enable_endpoint(&mut tx, id).await?;
        (changed, EventType::WebhookEndpointEnabled)
    } else {
        let changed = db::webhooks::disable_endpoint(&mut *tx, id, "disabled by its owner").await?;
        (changed, EventType::WebhookEndpointDisabled)
    };
    if changed {
        audit(
            &mut tx,
            ctx,
            &endpoint,
            event_type,
            json!({"endpoint_id": id}),
        )
        .await?;
    }
    let endpoint = visible(&mut *tx, ctx, id).await?;
    tx.commit().await?;
    Ok(endpoint)
}

/// A new secret, shown once; the old one keeps signing for [`ROTATION_OVERLAP`].
pub async fn rotate(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> Result<EndpointWithSecret> {
    let mut tx = pool.begin().await?;
    let endpoint = visible(&mut *tx, ctx, id).await?;
    let (shown, stored) = new_secret()?;
    let until: DateTime<Utc> =
        Utc::now() + chrono::Duration::from_std(ROTATION_OVERLAP).expect("the overlap is a day");
    db::webhooks::rotate_secret(&mut *tx, id, &stored, until).await?;
    audit(
        &mut tx,
        ctx,
        &endpoint,
        EventType::WebhookSecretRotated,
        json!({"endpoint_id": id}),
    )
    .await?;
    let endpoint = visible(&mut *tx, ctx, id).await?;
    tx.commit().await?;
    Ok(EndpointWithSecret {
        endpoint,
        secret: shown,
    })
}

/// Most notices one redelivery queues; a longer range is taken in several calls.
pub const REDELIVERY_LIMIT: i64 = 1000;

/// What a redelivery queued.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Redelivered {
    /// Notices queued, due now.
    pub queued: u64,
    /// Set when the range held more notices than one call takes (1,000): ask again with this as
    /// `since` for the rest.
    pub next_since: Option<DateTime<Utc>>,
}

/// Sends the endpoint its notices again: of one event, or of the events that happened in a range
/// (at most [`REDELIVERY_LIMIT`] a call). Notices come from its audience's feed, so this also
/// reaches events that were never queued for it (it was disabled, or registered later), and
/// only ever its own partner's. Each is due now, with a fresh retry schedule.
pub async fn redeliver(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    which: Redelivery,
) -> Result<Redelivered> {
    let mut tx = pool.begin().await?;
    let endpoint = visible(&mut *tx, ctx, id).await?;
    let audience = endpoint.partner_id.map_or(Uuid::nil(), |p| p.0);
    let mut notices = db::webhooks::notices_to_redeliver(
        &mut *tx,
        audience,
        &endpoint.event_types,
        which,
        REDELIVERY_LIMIT + 1,
    )
    .await?;
    if let Redelivery::Event(event) = which
        && notices.is_empty()
    {
        return Err(Error::WebhookEventNotFound(event));
    }
    let next_since = (notices.len() as i64 > REDELIVERY_LIMIT)
        .then(|| notices.pop().map(|n| n.occurred_at))
        .flatten();
    let bodies: Vec<String> = notices
        .iter()
        .map(|n| {
            let event_type = n
                .event_type
                .parse::<WebhookEventType>()
                .map_err(|e| Error::Internal(anyhow::anyhow!("feed entry {}: {e}", n.event_id)))?;
            Ok(webhook::body(
                n.event_id,
                n.occurred_at,
                event_type,
                &n.data,
            ))
        })
        .collect::<Result<_>>()?;
    let queued = db::webhooks::requeue(&mut *tx, id, &notices, &bodies).await?;
    let scope = match which {
        Redelivery::Event(event) => json!({"event_id": event}),
        Redelivery::Range { since, until } => json!({"since": since, "until": until}),
    };
    audit(
        &mut tx,
        ctx,
        &endpoint,
        EventType::WebhookRedeliveryRequested,
        json!({"endpoint_id": id, "which": scope, "queued": queued}),
    )
    .await?;
    tx.commit().await?;
    Ok(Redelivered { queued, next_since })
}

/// Records a change to an endpoint on its partner's chain (the catalog chain for the platform's).
async fn audit(
    tx: &mut sqlx::PgConnection,
    ctx: &RequestContext,
    endpoint: &Endpoint,
    event_type: EventType,
    payload: serde_json::Value,
) -> Result<()> {
    db::events::append(
        tx,
        &ctx.actor,
        NewEvent {
            event_type,
            customer_id: None,
            partner_id: endpoint.partner_id,
            payload,
        },
    )
    .await?;
    Ok(())
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_private: AllowList::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends the endpoint a signed `webhook.test` notice now and says how it went.
pub async fn send_test(
    pool: &PgPool,
    ctx: &RequestContext,
    settings: &Settings,
    id: Uuid,
) -> Result<crate::delivery::TestOutcome> {
    visible(pool, ctx, id).await?;
    let (url, secret, previous) = db::webhooks::signing(pool, id)
        .await?
        .ok_or(Error::WebhookEndpointNotFound(id))?;
    crate::delivery::send_test(
        &settings.allow_private,
        settings.timeout,
        url,
        secret,
        previous,
    )
    .await
    .map_err(Error::Internal)
}

/// The endpoint's latest deliveries with their attempts, newest first.
pub async fn deliveries(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    limit: i64,
) -> Result<Vec<Delivery>> {
    visible(pool, ctx, id).await?;
    Ok(db::webhooks::recent_deliveries(pool, id, limit).await?)
}

/// The caller's feed after `after`: its partner's for partner roles, the platform's for operators.
/// While nothing is new it waits up to `wait` for the next dispatch that adds to it (long-poll),
/// holding no database connection meanwhile.
pub async fn feed(
    pool: &PgPool,
    ctx: &RequestContext,
    bell: &FeedBell,
    after: i64,
    limit: i64,
    wait: Duration,
) -> Result<Vec<FeedEntry>> {
    ctx.require(Action::ReadEventFeed)?;
    let audience = ctx.partner_scope().map_or(Uuid::nil(), |p| p.0);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first read: a dispatch committing after that read rings this waiter.
    let mut rings = bell.0.subscribe();
    loop {
        let page = db::webhooks::feed_page(pool, audience, after, limit).await?;
        if !page.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(page);
        }
        // Read again when the audience's feed grows, when rings were missed, and in any case
        // every few seconds (should the listener be reconnecting).
        let recheck = deadline.min(tokio::time::Instant::now() + FEED_RECHECK);
        loop {
            match tokio::time::timeout_at(recheck, rings.recv()).await {
                Ok(Ok(Ring::Grew(grown))) if grown != audience => continue,
                Ok(Ok(Ring::Closing) | Err(RecvError::Closed)) => return Ok(page),
                Ok(Ok(Ring::Grew(_) | Ring::Missed) | Err(RecvError::Lagged(_))) | Err(_) => break,
            }
        }
    }
}

/// How often a long-polling reader reads its feed again without being rung.
const FEED_RECHECK: Duration = Duration::from_secs(5);

/// What the bell says.
#[derive(Debug, Clone, Copy)]
enum Ring {
    /// This audience's feed grew (a partner's id, or the nil id for the platform's).
    Grew(Uuid),
    /// Announcements may have been missed (the listener reconnected): every waiter reads again.
    Missed,
    /// The instance is stopping: waiters answer now.
    Closing,
}

/// Rings long-polling readers of the feed when it grows. Every dispatch announces the audiences
/// whose feeds it added to (`NOTIFY` at its commit), and each instance listens, so a reader
/// wakes whichever instance dispatched.
#[derive(Debug, Clone)]
pub struct FeedBell(broadcast::Sender<Ring>);

impl Default for FeedBell {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

impl FeedBell {
    /// Listens to the dispatchers' announcements until `shutdown`, then rings `Closing`. After a
    /// lost connection it listens again; meanwhile readers fall back to reading every few seconds.
    pub async fn listen(self, pool: PgPool, shutdown: impl std::future::Future<Output = ()>) {
        let listening = async {
            loop {
                let mut listener = match db::webhooks::feed_listener(&pool).await {
                    // Whatever was announced before this listener was connected is unheard.
                    Ok(listener) => {
                        let _ = self.0.send(Ring::Missed);
                        listener
                    }
                    Err(error) => {
                        tracing::warn!(?error, "cannot listen for feed announcements; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                loop {
                    match listener.try_recv().await {
                        Ok(Some(note)) => {
                            if let Ok(audience) = note.payload().parse() {
                                let _ = self.0.send(Ring::Grew(audience));
                            }
                        }
                        // The connection was lost: announcements may have been missed.
                        Ok(None) => {
                            let _ = self.0.send(Ring::Missed);
                        }
                        Err(error) => {
                            tracing::warn!(
                                ?error,
                                "feed announcements interrupted; listening again"
                            );
                            break;
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = listening => {}
            () = shutdown => {}
        }
        let _ = self.0.send(Ring::Closing);
    }
}
