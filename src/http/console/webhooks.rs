//! Webhooks: the endpoints of a partner (or of the platform), registering one (its signing secret
//! shown once), and an endpoint's page: disable or enable it, rotate its secret, send a test,
//! its recent deliveries with every attempt, and sending notices again (one event's, or a time
//! range's). For the roles that manage webhooks: operators (the platform's endpoints, or a named
//! partner's) and global admins (their partner's). Every button is a use case of
//! [`app::webhooks`], authorized and audited as through the API.

use std::collections::BTreeMap;

use askama::Template;
use axum::{
    Router,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    ConsoleError, NoFields, Posted, Staff, actor_name, actor_names, parse_id,
    partners::{after_id, more},
    render, render_status,
    view::{self, Chrome},
};
use crate::{
    app::{
        self,
        webhooks::{
            EndpointWithSecret, MAX_DESCRIPTION_CHARS, MAX_URL_CHARS, REDELIVERY_LIMIT,
            ROTATION_OVERLAP,
        },
    },
    db::{
        Keyset,
        webhooks::{Delivery, Endpoint, Redelivery},
    },
    delivery::TestOutcome,
    domain::{
        Action, PartnerId, checked_text,
        webhook::{WebhookEventType, delivers},
    },
    http::AppState,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list).post(create))
        .route("/webhooks/new", get(new_endpoint))
        .route("/webhooks/{id}", get(show))
        .route("/webhooks/{id}/disable", post(disable))
        .route("/webhooks/{id}/enable", post(enable))
        .route("/webhooks/{id}/rotate-secret", post(rotate))
        .route("/webhooks/{id}/test", post(send_test))
        .route("/webhooks/{id}/redeliver", post(redeliver))
}

/// Messages by form field, shown next to each.
type FieldErrors = BTreeMap<&'static str, String>;

/// Endpoints per page: a partner has a handful.
const PAGE: i64 = 100;
/// Partners an operator chooses from (as on the Access page).
const PARTNER_CHOICES: i64 = 500;
/// Recent deliveries shown on an endpoint's page.
const RECENT_DELIVERIES: i64 = 50;

fn endpoint_href(id: Uuid) -> String {
    format!("/webhooks/{id}")
}

/// The endpoints list of `partner` (the platform's for `None`).
fn list_href(partner: Option<PartnerId>) -> String {
    match partner {
        Some(p) => format!("/webhooks?partner={p}"),
        None => "/webhooks".to_owned(),
    }
}

/// The notice types an endpoint gets: "all" when it named none.
fn types_text(types: &[String]) -> String {
    if types.is_empty() {
        "all".to_owned()
    } else {
        types.join(", ")
    }
}

/// One partner an operator may choose.
struct PartnerChoice {
    value: String,
    label: String,
    selected: bool,
}

/// The partners an operator chooses from (empty for partner users: theirs is implied).
async fn partner_choices(
    state: &AppState,
    staff: &Staff,
    selected: &str,
) -> Result<Vec<PartnerChoice>, ConsoleError> {
    if staff.partner().is_some() {
        return Ok(Vec::new());
    }
    let page = Keyset {
        after: None,
        limit: PARTNER_CHOICES,
    };
    Ok(app::partners::list(&state.pool, &staff.ctx, page)
        .await?
        .into_iter()
        .map(|p| PartnerChoice {
            selected: p.id.to_string() == selected,
            value: p.id.to_string(),
            label: p.name,
        })
        .collect())
}

/// Whose endpoints these are, as shown: the partner's name, or the platform.
async fn owner_name(
    state: &AppState,
    staff: &Staff,
    partner: Option<PartnerId>,
) -> Result<String, ConsoleError> {
    Ok(match partner {
        Some(p) => app::partners::get(&state.pool, &staff.ctx, p).await?.name,
        None => "the platform".to_owned(),
    })
}

/// A partner id from a form or query: empty is none, anything else must be an id.
fn partner_field(raw: &str) -> Result<Option<PartnerId>, ()> {
    match raw.trim() {
        "" => Ok(None),
        raw => raw.parse().map(|id| Some(PartnerId(id))).map_err(|_| ()),
    }
}

// ---------------------------------------------------------------------------------------------
// The list

struct EndpointRow {
    href: String,
    url: String,
    description: String,
    event_types: String,
    enabled: bool,
    disabled: String,
}

impl From<Endpoint> for EndpointRow {
    fn from(e: Endpoint) -> Self {
        let disabled = match (&e.disabled_at, &e.disabled_reason) {
            (Some(at), reason) => format!(
                "since {}{}",
                view::when(at),
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            (None, _) => String::new(),
        };
        Self {
            href: endpoint_href(e.id),
            event_types: types_text(&e.event_types),
            enabled: e.disabled_at.is_none(),
            url: e.url,
            description: e.description,
            disabled,
        }
    }
}

#[derive(Template)]
#[template(path = "webhooks_list.html")]
struct ListPage {
    chrome: Chrome,
    owner: String,
    partners: Vec<PartnerChoice>,
    rows: Vec<EndpointRow>,
    next: Option<String>,
    new_href: String,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    partner: String,
    after: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    staff.ctx.require(Action::ManageWebhooks)?;
    let partner = partner_field(&query.partner).map_err(|_| ConsoleError::NotFound)?;
    let page = Keyset {
        after: after_id(query.after.as_deref())?,
        limit: PAGE + 1,
    };
    let mut endpoints = app::webhooks::list_of(&state.pool, &staff.ctx, partner, page).await?;
    let owner = staff.partner().or(partner);
    let next = more(&mut endpoints, PAGE).then(|| {
        let last = endpoints.last().map(|e| e.id).unwrap_or_default();
        match owner {
            Some(p) => format!("/webhooks?partner={p}&after={last}"),
            None => format!("/webhooks?after={last}"),
        }
    });
    render(&ListPage {
        owner: owner_name(&state, &staff, owner).await?,
        partners: partner_choices(&state, &staff, &query.partner).await?,
        rows: endpoints.into_iter().map(EndpointRow::from).collect(),
        next,
        new_href: match partner {
            Some(p) if staff.partner().is_none() => format!("/webhooks/new?partner={p}"),
            _ => "/webhooks/new".to_owned(),
        },
        chrome: staff.chrome("/webhooks"),
    })
}

// ---------------------------------------------------------------------------------------------
// Register

/// The register form as typed.
#[derive(Default)]
struct EndpointForm {
    url: String,
    description: String,
    partner: String,
    types: Vec<String>,
}

impl EndpointForm {
    /// Reads `url`, `description`, `partner` and the repeated `event_type` checkboxes.
    fn from_fields(fields: &[(String, String)]) -> Self {
        let mut form = Self::default();
        for (key, value) in fields {
            match key.as_str() {
                "url" => form.url = value.clone(),
                "description" => form.description = value.clone(),
                "partner" => form.partner = value.clone(),
                "event_type" => form.types.push(value.clone()),
                _ => {}
            }
        }
        form
    }
}

/// One checkbox of the notice types.
struct TypeChoice {
    value: &'static str,
    checked: bool,
}

#[derive(Template)]
#[template(path = "webhooks_new.html")]
struct NewPage {
    chrome: Chrome,
    form: EndpointForm,
    types: Vec<TypeChoice>,
    partners: Vec<PartnerChoice>,
    errors: FieldErrors,
}

impl NewPage {
    async fn load(
        state: &AppState,
        staff: &Staff,
        form: EndpointForm,
        errors: FieldErrors,
    ) -> Result<Self, ConsoleError> {
        Ok(Self {
            chrome: staff.chrome("/webhooks"),
            types: WebhookEventType::ALL
                .iter()
                .map(|t| TypeChoice {
                    value: t.as_str(),
                    checked: form.types.iter().any(|c| c == t.as_str()),
                })
                .collect(),
            partners: partner_choices(state, staff, &form.partner).await?,
            form,
            errors,
        })
    }
}

#[derive(Deserialize)]
struct NewQuery {
    #[serde(default)]
    partner: String,
}

async fn new_endpoint(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<NewQuery>,
) -> Result<Response, ConsoleError> {
    staff.ctx.require(Action::ManageWebhooks)?;
    let form = EndpointForm {
        partner: query.partner,
        ..EndpointForm::default()
    };
    render(&NewPage::load(&state, &staff, form, BTreeMap::new()).await?)
}

/// The form's fields in order: checkboxes repeat, so a map would lose them.
type Fields = Vec<(String, String)>;

async fn create(
    State(state): State<AppState>,
    posted: Posted<Fields>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    staff.ctx.require(Action::ManageWebhooks)?;
    let form = EndpointForm::from_fields(&form);
    let mut errors = BTreeMap::new();
    let url = form.url.trim();
    if url.is_empty() {
        errors.insert("url", "Enter the URL to send notices to.".to_owned());
    } else if url.chars().count() > MAX_URL_CHARS {
        errors.insert(
            "url",
            format!("A URL has at most {MAX_URL_CHARS} characters."),
        );
    }
    let description = match form.description.trim() {
        "" => Some(String::new()),
        raw => checked_text(raw, MAX_DESCRIPTION_CHARS)
            .map(str::to_owned)
            .or_else(|| {
                errors.insert(
                    "description",
                    format!(
                        "A description has at most {MAX_DESCRIPTION_CHARS} characters, and no \
                         control or bidirectional-override characters."
                    ),
                );
                None
            }),
    };
    let types: Result<Vec<WebhookEventType>, _> = form.types.iter().map(|t| t.parse()).collect();
    let types = types
        .map_err(|_| errors.insert("event_types", "Choose notice types from the list.".into()))
        .ok();
    // Partner users register for their own partner: the field is not theirs to set.
    let partner = if staff.partner().is_some() {
        Some(None)
    } else {
        partner_field(&form.partner)
            .map_err(|_| errors.insert("partner", "Choose a partner from the list.".into()))
            .ok()
    };
    let (Some(description), Some(types), Some(partner), true) =
        (description, types, partner, errors.is_empty())
    else {
        return show_again(&state, &staff, form, errors).await;
    };
    let created = app::webhooks::create(
        &state.pool,
        &staff.ctx,
        &state.webhooks,
        partner,
        url,
        &types,
        &description,
    )
    .await;
    match created {
        Ok(created) => secret_page(&staff, created, false),
        Err(app::Error::InvalidWebhookUrl(why)) => {
            errors.insert("url", view::sentence(&why));
            show_again(&state, &staff, form, errors).await
        }
        Err(app::Error::PartnerNotFound(_)) if staff.partner().is_none() => {
            errors.insert("partner", "No such partner.".into());
            show_again(&state, &staff, form, errors).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The register form again with what was typed and the messages (422).
async fn show_again(
    state: &AppState,
    staff: &Staff,
    form: EndpointForm,
    errors: FieldErrors,
) -> Result<Response, ConsoleError> {
    let page = NewPage::load(state, staff, form, errors).await?;
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

// ---------------------------------------------------------------------------------------------
// The secret, shown once

#[derive(Template)]
#[template(path = "webhooks_secret.html")]
struct SecretPage {
    chrome: Chrome,
    rotated: bool,
    href: String,
    url: String,
    secret: String,
    overlap_hours: u64,
    previous_until: String,
}

/// The page showing a new secret: on this answer only, and never kept by the browser's cache.
fn secret_page(
    staff: &Staff,
    issued: EndpointWithSecret,
    rotated: bool,
) -> Result<Response, ConsoleError> {
    let EndpointWithSecret { endpoint, secret } = issued;
    let page = SecretPage {
        chrome: staff.chrome("/webhooks"),
        rotated,
        href: endpoint_href(endpoint.id),
        url: endpoint.url,
        secret,
        overlap_hours: ROTATION_OVERLAP.as_secs() / 3600,
        previous_until: endpoint
            .previous_secret_until
            .as_ref()
            .map(view::when)
            .unwrap_or_default(),
    };
    let mut response = render(&page)?;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// An endpoint's page

struct AttemptRow {
    attempt: String,
    started: String,
    status: String,
    latency: String,
    error: String,
    body_prefix: String,
}

impl AttemptRow {
    /// One entry of a delivery's attempt log (`{attempt, started_at, latency_ms, status, error,
    /// body_prefix}`).
    fn from_log(entry: &Value) -> Self {
        let text = |key: &str| match &entry[key] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let started = entry["started_at"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| view::when(&t.with_timezone(&Utc)))
            .unwrap_or_else(|| text("started_at"));
        Self {
            attempt: text("attempt"),
            started,
            status: match text("status") {
                s if s.is_empty() => "no answer".to_owned(),
                s => s,
            },
            latency: text("latency_ms"),
            error: text("error"),
            body_prefix: text("body_prefix"),
        }
    }
}

struct DeliveryRow {
    event_id: String,
    event_type: String,
    state: String,
    attempts: i32,
    queued: String,
    next_attempt: String,
    delivered: String,
    log: Vec<AttemptRow>,
}

impl From<Delivery> for DeliveryRow {
    fn from(d: Delivery) -> Self {
        let log = d
            .attempt_log
            .as_array()
            .map(|entries| entries.iter().map(AttemptRow::from_log).collect())
            .unwrap_or_default();
        Self {
            event_id: d.event_id.to_string(),
            event_type: d.event_type,
            next_attempt: if d.state == "pending" {
                view::when(&d.next_attempt_at)
            } else {
                String::new()
            },
            state: d.state,
            attempts: d.attempts,
            queued: view::when(&d.created_at),
            delivered: d.delivered_at.as_ref().map(view::when).unwrap_or_default(),
            log,
        }
    }
}

/// How a test notice went.
struct TestView {
    id: String,
    ok: bool,
    status: String,
    latency_ms: u64,
    error: String,
    body_prefix: String,
}

impl From<TestOutcome> for TestView {
    fn from(t: TestOutcome) -> Self {
        Self {
            id: t.id.to_string(),
            ok: t.status.is_some_and(delivers),
            status: t
                .status
                .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
            latency_ms: t.latency_ms,
            error: t.error.unwrap_or_default(),
            body_prefix: t.body_prefix.unwrap_or_default(),
        }
    }
}

/// What a redelivery queued, and where a range too long for one call goes on.
struct RedeliveredView {
    queued: String,
    /// The rest of the range: `since` (exact, RFC 3339), as shown, and the same `until`.
    next: Option<(String, String, String)>,
}

/// The range form as typed.
#[derive(Default)]
struct RangeForm {
    since: String,
    until: String,
}

#[derive(Template)]
#[template(path = "webhooks_show.html")]
struct EndpointPage {
    chrome: Chrome,
    id: String,
    href: String,
    back: String,
    owner: String,
    url: String,
    description: String,
    event_types: String,
    created: String,
    created_by: String,
    disabled: Option<(String, String)>,
    previous_until: String,
    notice: Option<String>,
    test: Option<TestView>,
    redelivered: Option<RedeliveredView>,
    deliveries: Vec<DeliveryRow>,
    range: RangeForm,
    errors: FieldErrors,
    limit: i64,
    recent: i64,
}

impl EndpointPage {
    async fn load(state: &AppState, staff: &Staff, id: Uuid) -> Result<Self, ConsoleError> {
        let endpoint = app::webhooks::get(&state.pool, &staff.ctx, id).await?;
        let deliveries =
            app::webhooks::deliveries(&state.pool, &staff.ctx, id, RECENT_DELIVERIES).await?;
        let names = actor_names(state, staff, [endpoint.created_by.as_str()]).await?;
        let now = Utc::now();
        Ok(Self {
            chrome: staff.chrome("/webhooks"),
            id: endpoint.id.to_string(),
            href: endpoint_href(endpoint.id),
            back: list_href(endpoint.partner_id),
            owner: owner_name(state, staff, endpoint.partner_id).await?,
            created_by: actor_name(&names, &endpoint.created_by),
            url: endpoint.url,
            description: endpoint.description,
            event_types: types_text(&endpoint.event_types),
            created: view::when(&endpoint.created_at),
            disabled: endpoint.disabled_at.as_ref().map(|at| {
                (
                    view::when(at),
                    endpoint.disabled_reason.clone().unwrap_or_default(),
                )
            }),
            previous_until: endpoint
                .previous_secret_until
                .filter(|until| *until > now)
                .as_ref()
                .map(view::when)
                .unwrap_or_default(),
            notice: None,
            test: None,
            redelivered: None,
            deliveries: deliveries.into_iter().map(DeliveryRow::from).collect(),
            range: RangeForm::default(),
            errors: BTreeMap::new(),
            limit: REDELIVERY_LIMIT,
            recent: RECENT_DELIVERIES,
        })
    }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let mut page = EndpointPage::load(&state, &staff, parse_id(&id)?).await?;
    page.notice = done.done.map(|done| {
        match done.as_str() {
        "disabled" => "The endpoint is disabled: nothing more is queued for it or sent to it.",
        "enabled" => {
            "The endpoint is enabled: its pending deliveries are sent again. What happened while \
             it was disabled was not queued for it: redeliver that time range below."
        }
        _ => "Done.",
    }
    .to_owned()
    });
    render(&page)
}

async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let id = parse_id(&id)?;
    app::webhooks::disable(&state.pool, &posted.staff.ctx, id).await?;
    Ok(Redirect::to(&format!("{}?done=disabled", endpoint_href(id))).into_response())
}

async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let id = parse_id(&id)?;
    app::webhooks::enable(&state.pool, &posted.staff.ctx, id).await?;
    Ok(Redirect::to(&format!("{}?done=enabled", endpoint_href(id))).into_response())
}

async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let staff = posted.staff;
    let rotated = app::webhooks::rotate(&state.pool, &staff.ctx, parse_id(&id)?).await?;
    secret_page(&staff, rotated, true)
}

async fn send_test(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let staff = posted.staff;
    let id = parse_id(&id)?;
    let outcome = app::webhooks::send_test(&state.pool, &staff.ctx, &state.webhooks, id).await?;
    let mut page = EndpointPage::load(&state, &staff, id).await?;
    page.test = Some(outcome.into());
    render(&page)
}

/// The redelivery form: one event (the "Send again" button of a delivery) or a time range.
#[derive(Deserialize)]
struct RedeliverForm {
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// The range asked for (`until` defaults to `now`), or the messages for its fields.
fn range(
    form: &RedeliverForm,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), FieldErrors> {
    const INSTANT: &str = "Enter a date and time (UTC).";
    let mut errors = BTreeMap::new();
    let since = match form.since.trim() {
        "" => {
            errors.insert("since", "Enter where the range starts.".to_owned());
            None
        }
        raw => view::instant(raw).or_else(|| {
            errors.insert("since", INSTANT.to_owned());
            None
        }),
    };
    let until = match form.until.trim() {
        "" => Some(now),
        raw => view::instant(raw).or_else(|| {
            errors.insert("until", INSTANT.to_owned());
            None
        }),
    };
    match (since, until) {
        (Some(since), Some(until)) if until > since => Ok((since, until)),
        (Some(_), Some(_)) => {
            errors.insert("until", "The end must be after the start.".to_owned());
            Err(errors)
        }
        _ => Err(errors),
    }
}

fn notices(n: u64) -> String {
    match n {
        1 => "1 notice queued".to_owned(),
        n => format!("{n} notices queued"),
    }
}

async fn redeliver(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<RedeliverForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let id = parse_id(&id)?;
    let which = if form.event_id.trim().is_empty() {
        match range(&form, Utc::now()) {
            Ok((since, until)) => Redelivery::Range { since, until },
            Err(errors) => {
                let mut page = EndpointPage::load(&state, &staff, id).await?;
                page.errors = errors;
                page.range = RangeForm {
                    since: form.since,
                    until: form.until,
                };
                return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
            }
        }
    } else {
        Redelivery::Event(
            form.event_id
                .trim()
                .parse()
                .map_err(|_| ConsoleError::BadForm("the event id is not an id".into()))?,
        )
    };
    let done = match app::webhooks::redeliver(&state.pool, &staff.ctx, id, which).await {
        Ok(done) => done,
        Err(e @ app::Error::WebhookEventNotFound(_)) => {
            let mut page = EndpointPage::load(&state, &staff, id).await?;
            page.errors
                .insert("event_id", view::sentence(&e.to_string()));
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
        Err(e) => return Err(e.into()),
    };
    let mut page = EndpointPage::load(&state, &staff, id).await?;
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    page.redelivered = Some(RedeliveredView {
        queued: notices(done.queued),
        next: match (done.next_since, which) {
            (Some(next), Redelivery::Range { until, .. }) => {
                Some((rfc3339(next), view::when(&next), rfc3339(until)))
            }
            _ => None,
        },
    });
    if let Redelivery::Range { .. } = which {
        page.range = RangeForm {
            since: form.since,
            until: form.until,
        };
    }
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().into()
    }

    #[test]
    fn a_range_needs_a_start_before_its_end_which_defaults_to_now() {
        let now = at("2026-11-27T12:00:00Z");
        let form = |since: &str, until: &str| RedeliverForm {
            event_id: String::new(),
            since: since.into(),
            until: until.into(),
        };
        assert_eq!(
            range(&form("2026-11-27T10:00", ""), now),
            Ok((at("2026-11-27T10:00:00Z"), now))
        );
        assert_eq!(
            range(&form("2026-11-27T10:00", "2026-11-27T11:00"), now),
            Ok((at("2026-11-27T10:00:00Z"), at("2026-11-27T11:00:00Z")))
        );
        for (since, until, field) in [
            ("", "", "since"),
            ("soon", "", "since"),
            ("2026-11-27T10:00", "later", "until"),
            ("2026-11-27T10:00", "2026-11-27T09:00", "until"),
            ("2026-11-27T10:00", "2026-11-27T10:00", "until"),
            ("2026-11-27T13:00", "", "until"),
        ] {
            let errors = range(&form(since, until), now).unwrap_err();
            assert!(
                errors.contains_key(field),
                "{since:?} {until:?}: {errors:?}"
            );
        }
    }
}
