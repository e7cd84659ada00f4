//! The auditors' pages: search the event log with every filter of `/v1/audit/events`, read one
//! event with its before and after, download what a search finds (CSV or NDJSON, through the same
//! export as the API), and verify the hash chains. Only roles that may read the audit log see
//! them; every read goes through `app::audit`.

use askama::Template;
use axum::{
    Router,
    extract::{Path, RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    ConsoleError, Posted, Staff, parse_id, render, render_status,
    view::{self, Chrome},
};
use crate::{
    app::{
        self,
        audit::{AuditedEvent, EventQuery, Verification},
        principals::ActorName,
    },
    domain::{
        Action, CustomerId, EventType, PartnerId, PrincipalKind,
        audit::{CATALOG_CHAIN, ChainReport, Problem},
        checked_text,
    },
    http::{AppState, audit::ExportFormat},
};

/// Events on one page of results.
const PAGE_SIZE: usize = 50;

/// Longest actor filter, as in the API.
const MAX_ACTOR_CHARS: usize = 200;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/audit", get(search))
        .route("/audit/events/{id}", get(event))
        .route("/audit/export", get(export))
        .route("/audit/verify", post(verify))
}

/// 403 before anything else: a role without the audit log gets the same answer whatever it asks.
fn require_audit(staff: &Staff) -> Result<(), ConsoleError> {
    Ok(staff.ctx.require(Action::ReadAudit)?)
}

/// The query string as sent (the first value of each name); a query that cannot be decoded at
/// all is a bad request.
#[derive(Debug, Default)]
struct RawFilters {
    customer_id: String,
    partner_id: String,
    actor: String,
    event_type: String,
    policy_version: String,
    from: String,
    to: String,
    after: String,
    format: String,
}

impl RawFilters {
    fn parse(query: Option<&str>) -> Result<Self, ConsoleError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
            .map_err(|e| ConsoleError::BadForm(e.to_string()))?;
        let mut raw = Self::default();
        let mut seen = std::collections::HashSet::new();
        for (name, value) in pairs {
            // Other parameters (a browser's, a bookmark's) are ignored: this is a page, and the
            // filters it applies are shown in the form.
            let slot = match name.as_str() {
                "customer_id" => &mut raw.customer_id,
                "partner_id" => &mut raw.partner_id,
                "actor" => &mut raw.actor,
                "type" => &mut raw.event_type,
                "policy_version" => &mut raw.policy_version,
                "from" => &mut raw.from,
                "to" => &mut raw.to,
                "after" => &mut raw.after,
                "format" => &mut raw.format,
                _ => continue,
            };
            if seen.insert(name) {
                *slot = value;
            }
        }
        Ok(raw)
    }
}

/// A filter field as typed, and what is wrong with it.
#[derive(Debug, Default, Clone)]
struct Field {
    value: String,
    error: Option<String>,
}

impl Field {
    fn new(value: &str) -> Self {
        Self {
            value: value.trim().to_owned(),
            error: None,
        }
    }

    fn fail(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }
}

/// The search form, filled in.
#[derive(Debug, Default, Clone)]
struct Filters {
    customer_id: Field,
    partner_id: Field,
    actor: Field,
    event_type: Field,
    policy_version: Field,
    from: Field,
    to: Field,
    /// A problem with the page link itself (the cursor), shown above the results.
    cursor_error: Option<String>,
}

impl Filters {
    fn has_errors(&self) -> bool {
        [
            &self.customer_id,
            &self.partner_id,
            &self.actor,
            &self.event_type,
            &self.policy_version,
            &self.from,
            &self.to,
        ]
        .iter()
        .any(|f| f.error.is_some())
            || self.cursor_error.is_some()
    }
}

/// Checks every filter, as the API does, and says next to each field what is wrong with it.
/// `None` when any is wrong: a filter that cannot be applied is never ignored.
fn check(raw: &RawFilters) -> (Filters, Option<EventQuery>) {
    let mut filters = Filters {
        customer_id: Field::new(&raw.customer_id),
        partner_id: Field::new(&raw.partner_id),
        actor: Field::new(&raw.actor),
        event_type: Field::new(&raw.event_type),
        policy_version: Field::new(&raw.policy_version),
        from: Field::new(&raw.from),
        to: Field::new(&raw.to),
        cursor_error: None,
    };
    let mut query = EventQuery::default();
    let id = |field: &mut Field, what: &str| -> Option<Uuid> {
        if field.value.is_empty() {
            return None;
        }
        let parsed = Uuid::parse_str(&field.value).ok();
        if parsed.is_none() {
            field.fail(format!(
                "Not a {what} id: an id looks like 0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c8d."
            ));
        }
        parsed
    };
    query.customer_id = id(&mut filters.customer_id, "customer").map(CustomerId);
    query.partner_id = id(&mut filters.partner_id, "partner").map(PartnerId);
    if !filters.actor.value.is_empty() {
        if checked_text(&filters.actor.value, MAX_ACTOR_CHARS).is_some() {
            query.actor = Some(filters.actor.value.clone());
        } else {
            filters.actor.fail(format!(
                "An actor is a principal id or system: 1 to {MAX_ACTOR_CHARS} printable characters."
            ));
        }
    }
    if !filters.event_type.value.is_empty() {
        match filters.event_type.value.parse::<EventType>() {
            Ok(t) => query.event_type = Some(t),
            Err(_) => filters
                .event_type
                .fail("Not an event type: choose one from the list."),
        }
    }
    if !filters.policy_version.value.is_empty() {
        match filters
            .policy_version
            .value
            .parse()
            .ok()
            .and_then(app::audit::policy_version_filter)
        {
            Some(v) => query.policy_version = Some(v),
            None => filters
                .policy_version
                .fail("Not a policy version: a whole number, from 1."),
        }
    }
    query.from = instant(&mut filters.from);
    query.to = instant(&mut filters.to);
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from > to
    {
        filters.to.fail("Must not be before From.");
    }
    if !raw.after.trim().is_empty() {
        match Uuid::parse_str(raw.after.trim()) {
            Ok(id) => query.before = Some(id),
            Err(_) => {
                filters.cursor_error = Some(
                    "This page link is not one the console made; search again from the first page."
                        .into(),
                )
            }
        }
    }
    if filters.has_errors() {
        (filters, None)
    } else {
        (filters, Some(query))
    }
}

/// An instant typed in a field: a date-time input's value (`2026-11-24T10:00`, seconds and a
/// fraction optional), read as UTC, or RFC 3339 with its offset. Shown again in the input's
/// format, in UTC.
fn instant(field: &mut Field) -> Option<DateTime<Utc>> {
    if field.value.is_empty() {
        return None;
    }
    let text = field.value.replace(' ', "T");
    let parsed = DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(&text, f).ok())
                .map(|naive| naive.and_utc())
        })
        // The years the API accepts; beyond them an instant is no event's.
        .filter(|t| (1..=9999).contains(&chrono::Datelike::year(t)));
    match parsed {
        Some(at) => {
            field.value = local_input(&at);
            Some(at)
        }
        None => {
            // A date-time input cannot show what it cannot parse: say what was typed.
            let typed = field.value.clone();
            field.fail(format!(
                "“{typed}” is not a date and time: enter one in UTC, such as 2026-11-24T10:00."
            ));
            None
        }
    }
}

/// An instant as a `datetime-local` input shows it (UTC; the fraction only when there is one).
fn local_input(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

/// The query string of a search (without a cursor), for links to its next page and downloads.
fn query_string(query: &EventQuery) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(c) = query.customer_id {
        pairs.push(("customer_id", c.0.to_string()));
    }
    if let Some(p) = query.partner_id {
        pairs.push(("partner_id", p.0.to_string()));
    }
    if let Some(a) = &query.actor {
        pairs.push(("actor", a.clone()));
    }
    if let Some(t) = query.event_type {
        pairs.push(("type", t.as_str().to_owned()));
    }
    if let Some(v) = query.policy_version {
        pairs.push(("policy_version", v.to_string()));
    }
    let exact = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    if let Some(from) = query.from {
        pairs.push(("from", exact(from)));
    }
    if let Some(to) = query.to {
        pairs.push(("to", exact(to)));
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// An actor as shown: its name, kind, role and partner, or the recorded id when it is not a
/// known principal.
struct ActorView {
    /// The recorded actor (an id, `system`, ...).
    id: String,
    /// The search for this actor's events.
    href: String,
    name: Option<String>,
    /// `user jdoe`, `token`, `command line`.
    kind: String,
    role: Option<&'static str>,
    partner: Option<Link>,
}

impl ActorView {
    fn new(actor: &str, name: Option<&ActorName>, role: Option<&str>) -> Self {
        let kind = match name {
            Some(n) => match (n.kind, &n.username) {
                (PrincipalKind::User, Some(username)) => format!("user {username}"),
                (PrincipalKind::User, None) => "user".to_owned(),
                (PrincipalKind::Token, _) => "API token".to_owned(),
                (PrincipalKind::System, _) => "command line".to_owned(),
            },
            None => String::new(),
        };
        Self {
            id: actor.to_owned(),
            href: format!("/audit?actor={}", view::url_encode(actor)),
            name: name.map(|n| n.name.clone()),
            kind,
            // The role recorded with the event (the principal's then, and hashed).
            role: role
                .and_then(|r| r.parse::<crate::domain::Role>().ok())
                .map(|r| r.as_str())
                .or_else(|| name.and_then(|n| n.role).map(|r| r.as_str())),
            partner: name.and_then(|n| {
                n.partner_id.map(|p| Link {
                    href: format!("/partners/{}", p.0),
                    text: n.partner_name.clone().unwrap_or_else(|| p.0.to_string()),
                })
            }),
        }
    }
}

/// A link.
struct Link {
    href: String,
    text: String,
}

/// What an event is about, as links to the customer's and partner's pages.
fn subjects(customer: Option<Uuid>, partner: Option<Uuid>) -> Vec<Link> {
    // The random end of a UUIDv7: its start is the creation time, the same for ids made together.
    let short = |id: &Uuid| {
        let text = id.to_string();
        format!("…{}", &text[text.len() - 12..])
    };
    let mut links = Vec::new();
    if let Some(c) = customer {
        links.push(Link {
            href: format!("/customers/{c}"),
            text: format!("customer {}", short(&c)),
        });
    }
    if let Some(p) = partner {
        links.push(Link {
            href: format!("/partners/{p}"),
            text: format!("partner {}", short(&p)),
        });
    }
    links
}

/// One row of the results.
struct EventLine {
    href: String,
    when: String,
    event_type: String,
    subjects: Vec<Link>,
    actor: ActorView,
    request_id: String,
}

impl EventLine {
    fn new(audited: &AuditedEvent) -> Self {
        let e = &audited.event;
        Self {
            href: format!("/audit/events/{}", e.id),
            when: view::when(&e.occurred_at),
            event_type: e.event_type.clone(),
            subjects: subjects(e.customer_id, e.partner_id),
            actor: ActorView::new(
                &e.actor,
                audited.actor_name.as_ref(),
                e.actor_role.as_deref(),
            ),
            request_id: e.request_id.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "audit_search.html")]
struct SearchPage {
    chrome: Chrome,
    filters: Filters,
    types: &'static [EventType],
    /// `None` when the filters could not be applied.
    results: Option<Vec<EventLine>>,
    /// Whether this is a later page.
    paged: bool,
    /// The first page of this search.
    first_href: String,
    older_href: Option<String>,
    csv_href: String,
    ndjson_href: String,
    /// The chain the filters name, to verify from here.
    chain: Option<(&'static str, Uuid)>,
    export_error: Option<String>,
}

impl SearchPage {
    fn new(staff: &Staff, filters: Filters) -> Self {
        Self {
            chrome: staff.chrome("/audit"),
            filters,
            types: EventType::ALL,
            results: None,
            paged: false,
            first_href: "/audit".into(),
            older_href: None,
            csv_href: String::new(),
            ndjson_href: String::new(),
            chain: None,
            export_error: None,
        }
    }

    /// The page shown when filters cannot be applied: every message next to its field.
    fn refused(staff: &Staff, filters: Filters) -> Result<Response, ConsoleError> {
        render_status(StatusCode::UNPROCESSABLE_ENTITY, &Self::new(staff, filters))
    }
}

async fn search(
    State(state): State<AppState>,
    staff: Staff,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    require_audit(&staff)?;
    let raw = RawFilters::parse(raw.as_deref())?;
    let (filters, query) = check(&raw);
    let Some(query) = query else {
        return SearchPage::refused(&staff, filters);
    };
    let mut found =
        app::audit::events(&state.pool, &staff.ctx, &query, PAGE_SIZE as i64 + 1).await?;
    let more = found.len() > PAGE_SIZE;
    found.truncate(PAGE_SIZE);
    let filter_query = query_string(&query);
    let with = |base: &str, extra: &str| {
        let joined = [filter_query.as_str(), extra]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        if joined.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{joined}")
        }
    };
    let older_href = found
        .last()
        .filter(|_| more)
        .map(|last| with("/audit", &format!("after={}", last.event.id)));
    let chain = match (query.customer_id, query.partner_id) {
        (Some(c), _) => Some(("customer", c.0)),
        (None, Some(p)) => Some(("partner", p.0)),
        (None, None) => None,
    };
    let mut page = SearchPage::new(&staff, filters);
    page.results = Some(found.iter().map(EventLine::new).collect());
    page.paged = query.before.is_some();
    page.first_href = with("/audit", "");
    page.older_href = older_href;
    page.csv_href = with("/audit/export", "format=csv");
    page.ndjson_href = with("/audit/export", "format=ndjson");
    page.chain = chain;
    render(&page)
}

/// Downloads every event a search finds, through the API's export: the same slots, the same
/// files (CSV with its formula guard, or NDJSON), as an attachment.
async fn export(
    State(state): State<AppState>,
    staff: Staff,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    require_audit(&staff)?;
    let raw = RawFilters::parse(raw.as_deref())?;
    let (filters, query) = check(&raw);
    let format = match raw.format.trim() {
        "csv" => Some(ExportFormat::Csv),
        "ndjson" => Some(ExportFormat::Ndjson),
        _ => None,
    };
    let (Some(query), Some(format)) = (query, format) else {
        let mut page = SearchPage::new(&staff, filters);
        if format.is_none() {
            page.export_error = Some("Choose a file format: CSV or NDJSON.".into());
        }
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let batches = app::audit::export(&state.pool, &state.exports, &staff.ctx, &query).await?;
    let file_name = format!(
        "audit-events-{}.{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .map_err(|e| ConsoleError::App(app::Error::Internal(e.into())))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        crate::http::audit::export_body(batches, format),
    )
        .into_response())
}

/// A list of values of a payload, before or after a change.
struct Values {
    items: Vec<Link>,
}

/// What a change changed, from its event's payload: the whole set (or value) before and after,
/// and for sets what was added and removed.
struct Change {
    /// What changed, e.g. "Special qualifications".
    what: &'static str,
    /// `None` when there was nothing before (a creation).
    before: Option<Values>,
    after: Values,
    /// For sets: what is new, and what is gone.
    added: Vec<Link>,
    removed: Vec<Link>,
    is_set: bool,
}

/// A value of a payload as a link (partner ids) or as text.
fn value_link(value: &Value, partner_ids: bool) -> Link {
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    let href = if partner_ids && Uuid::parse_str(&text).is_ok() {
        format!("/partners/{text}")
    } else {
        String::new()
    };
    Link { href, text }
}

/// The before and after of a change event, as its payload records them (see the README's event
/// table); `None` for events that change no set or status.
fn change_of(event_type: &str, payload: &Value) -> Option<Change> {
    let event_type: EventType = event_type.parse().ok()?;
    let (what, before_key, after_key, is_set, partner_ids) = match event_type {
        EventType::CustomerQualificationsSet => (
            "Special qualifications",
            Some("before"),
            "after",
            true,
            false,
        ),
        EventType::PartnerQualificationsSet => (
            "Reseller qualifications",
            Some("before"),
            "after",
            true,
            false,
        ),
        EventType::PartnerProvidersSet => {
            ("Indirect providers", Some("before"), "after", true, true)
        }
        EventType::SubscriptionStatusChanged => ("Status", Some("before"), "after", false, false),
        EventType::CustomerCreated => (
            "Special qualifications",
            None,
            "special_qualifications",
            true,
            false,
        ),
        EventType::PartnerCreated => (
            "Reseller qualifications",
            None,
            "reseller_qualifications",
            true,
            false,
        ),
        _ => return None,
    };
    let values = |v: &Value| -> Vec<Value> {
        match v {
            Value::Array(items) => items.clone(),
            Value::Null => Vec::new(),
            other => vec![other.clone()],
        }
    };
    let after = values(payload.get(after_key)?);
    let before = match before_key {
        Some(key) => Some(values(payload.get(key)?)),
        None => None,
    };
    let (added, removed) = match (&before, is_set) {
        (Some(before), true) => (
            after
                .iter()
                .filter(|v| !before.contains(v))
                .cloned()
                .collect(),
            before
                .iter()
                .filter(|v| !after.contains(v))
                .cloned()
                .collect(),
        ),
        (None, true) => (after.clone(), Vec::new()),
        _ => (Vec::new(), Vec::new()),
    };
    let links = |vs: &[Value]| {
        vs.iter()
            .map(|v| value_link(v, partner_ids))
            .collect::<Vec<_>>()
    };
    Some(Change {
        what,
        before: before.as_deref().map(|b| Values { items: links(b) }),
        after: Values {
            items: links(&after),
        },
        added: links(&added),
        removed: links(&removed),
        is_set,
    })
}

#[derive(Template)]
#[template(path = "audit_event.html")]
struct EventPage {
    chrome: Chrome,
    id: Uuid,
    occurred_at: String,
    occurred_at_exact: String,
    event_type: String,
    actor: ActorView,
    actor_role: String,
    actor_partner: Option<Link>,
    request_id: String,
    customer: Option<Link>,
    partner: Option<Link>,
    reason: Option<String>,
    change: Option<Change>,
    payload_pretty: String,
    payload_stored: String,
    chain_id: Uuid,
    chain_seq: i64,
    prev_hash: String,
    hash: String,
    /// What "Verify this chain" sends: `customer_id` or `partner_id`, and the id.
    verify: Option<(&'static str, Uuid)>,
    chain_events_href: String,
}

async fn event(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    require_audit(&staff)?;
    let id = parse_id(&id)?;
    let audited = app::audit::event(&state.pool, &staff.ctx, id)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let e = &audited.event;
    let payload: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
    let payload_pretty =
        serde_json::to_string_pretty(&payload).unwrap_or_else(|_| e.payload.clone());
    let link = |kind: &str, id: Uuid| Link {
        href: format!("/{kind}s/{id}"),
        text: id.to_string(),
    };
    let verify = match (e.customer_id, e.partner_id) {
        (Some(c), _) => Some(("customer_id", c)),
        (None, Some(p)) => Some(("partner_id", p)),
        (None, None) => None,
    };
    let chain_events_href = match verify {
        Some((key, id)) => format!("/audit?{key}={id}"),
        None => "/audit".to_owned(),
    };
    let page = EventPage {
        chrome: staff.chrome("/audit"),
        id: e.id,
        occurred_at: view::when(&e.occurred_at),
        occurred_at_exact: e.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        event_type: e.event_type.clone(),
        actor: ActorView::new(
            &e.actor,
            audited.actor_name.as_ref(),
            e.actor_role.as_deref(),
        ),
        actor_role: e.actor_role.clone().unwrap_or_else(|| "—".into()),
        actor_partner: e.actor_partner_id.map(|p| link("partner", p)),
        request_id: e.request_id.clone().unwrap_or_else(|| "—".into()),
        customer: e.customer_id.map(|c| link("customer", c)),
        partner: e.partner_id.map(|p| link("partner", p)),
        reason: payload
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_owned),
        change: change_of(&e.event_type, &payload),
        payload_pretty,
        payload_stored: e.payload.clone(),
        chain_id: e.chain_id,
        chain_seq: e.chain_seq,
        prev_hash: hex::encode(&e.prev_hash),
        hash: hex::encode(&e.hash),
        verify,
        chain_events_href,
    };
    render(&page)
}

/// A verified chain as shown.
struct ChainView {
    /// What the chain is of: a customer's, a partner's, the catalog's, or its id.
    subject: Option<Link>,
    chain_id: Uuid,
    ok: bool,
    events: u64,
    head: Option<(i64, String)>,
    broken: Option<BrokenView>,
}

/// The first broken link of a chain, as shown.
struct BrokenView {
    event_href: Option<String>,
    seq: i64,
    problem: &'static str,
    meaning: &'static str,
    expected: String,
    stored: String,
}

impl ChainView {
    fn new(report: ChainReport, subject: Option<Link>) -> Self {
        let subject = subject.or_else(|| {
            (report.chain_id == CATALOG_CHAIN).then(|| Link {
                href: String::new(),
                text: "the catalog chain (offers, and platform users and tokens)".into(),
            })
        });
        Self {
            subject,
            chain_id: report.chain_id,
            ok: report.ok,
            events: report.events,
            head: report.head.map(|h| (h.seq, h.hash)),
            broken: report.first_broken.map(|b| {
                let (problem, meaning) = problem_text(b.problem);
                BrokenView {
                    event_href: b.event_id.map(|id| format!("/audit/events/{id}")),
                    seq: b.seq,
                    problem,
                    meaning,
                    expected: b.expected,
                    stored: b.stored,
                }
            }),
        }
    }
}

/// A problem's code and what it means (the README's table).
fn problem_text(problem: Problem) -> (&'static str, &'static str) {
    match problem {
        Problem::HashMismatch => (
            "hash_mismatch",
            "The event's content is not what was hashed: it was altered.",
        ),
        Problem::PreviousHashMismatch => (
            "previous_hash_mismatch",
            "Its previous hash is not the previous event's hash: an event was inserted or replaced.",
        ),
        Problem::SequenceGap => (
            "sequence_gap",
            "The sequence skips a number: an event was removed.",
        ),
        Problem::HeadMismatch => (
            "head_mismatch",
            "The chain's recorded head is not its last event: events were removed from the end.",
        ),
    }
}

#[derive(Template)]
#[template(path = "audit_verify.html")]
struct VerifyPage {
    chrome: Chrome,
    /// What was verified, in words.
    scope: String,
    /// For every chain: how many chains and events.
    totals: Option<(u64, u64)>,
    /// The chain verified, or the broken ones of every chain.
    chains: Vec<ChainView>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct VerifyForm {
    #[serde(default)]
    customer_id: String,
    #[serde(default)]
    partner_id: String,
}

/// Recomputes one chain (a customer's or a partner's) or every chain, and shows whether it holds
/// or where it first breaks.
async fn verify(
    State(state): State<AppState>,
    posted: Posted<VerifyForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    require_audit(&staff)?;
    let mut page = VerifyPage {
        chrome: staff.chrome("/audit"),
        scope: String::new(),
        totals: None,
        chains: Vec::new(),
        error: None,
    };
    let id = |raw: &str| -> Result<Option<Uuid>, ()> {
        let raw = raw.trim();
        if raw.is_empty() {
            Ok(None)
        } else {
            Uuid::parse_str(raw).map(Some).map_err(|_| ())
        }
    };
    match (id(&form.customer_id), id(&form.partner_id)) {
        (Ok(Some(c)), Ok(None)) => {
            let report =
                app::audit::verify_customer(&state.pool, &staff.ctx, CustomerId(c)).await?;
            page.scope = format!("the chain of customer {c}");
            let subject = Link {
                href: format!("/customers/{c}"),
                text: format!("customer {c}"),
            };
            page.chains.push(ChainView::new(report, Some(subject)));
        }
        (Ok(None), Ok(Some(p))) => {
            let report = app::audit::verify_partner(&state.pool, &staff.ctx, PartnerId(p)).await?;
            page.scope = format!("the chain of partner {p}");
            let subject = Link {
                href: format!("/partners/{p}"),
                text: format!("partner {p}"),
            };
            page.chains.push(ChainView::new(report, Some(subject)));
        }
        (Ok(None), Ok(None)) => {
            let Verification {
                chains,
                events,
                broken,
            } = app::audit::verify_every_chain(&state.pool, &staff.ctx).await?;
            page.scope = "every chain".into();
            page.totals = Some((chains, events));
            page.chains = broken
                .into_iter()
                .map(|r| ChainView::new(r, None))
                .collect();
        }
        _ => {
            page.error = Some(
                "Give one customer id or one partner id (each a UUID), or neither to verify every chain."
                    .into(),
            );
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    }
    render(&page)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawFilters {
        RawFilters::parse(Some(&serde_urlencoded::to_string(pairs).unwrap())).unwrap()
    }

    #[test]
    fn every_bad_filter_is_named_next_to_its_field_and_nothing_is_searched() {
        let (filters, query) = check(&raw(&[
            ("customer_id", "42"),
            ("partner_id", "x"),
            ("actor", "a\u{0}b"),
            ("type", "purchase_made"),
            ("from", "yesterday"),
            ("to", "2026-13-01T00:00"),
        ]));
        assert!(query.is_none());
        for field in [
            &filters.customer_id,
            &filters.partner_id,
            &filters.actor,
            &filters.event_type,
            &filters.from,
            &filters.to,
        ] {
            assert!(field.error.is_some(), "{field:?}");
        }
        let (filters, query) = check(&raw(&[
            ("from", "2026-02-01T00:00"),
            ("to", "2026-01-01T00:00"),
        ]));
        assert!(query.is_none());
        assert!(filters.from.error.is_none());
        assert_eq!(
            filters.to.error.as_deref(),
            Some("Must not be before From.")
        );
        let (filters, query) = check(&raw(&[("after", "not-a-cursor")]));
        assert!(query.is_none() && filters.cursor_error.is_some());
    }

    #[test]
    fn date_time_inputs_are_utc_and_rfc_3339_keeps_its_offset() {
        let (filters, query) = check(&raw(&[
            ("from", "2026-11-24T10:00"),
            ("to", "2026-11-24T12:30:15+02:00"),
            ("type", "purchase_denied"),
            ("customer_id", " 0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c8d "),
        ]));
        let query = query.expect("valid filters");
        assert_eq!(
            query.from.unwrap().to_rfc3339(),
            "2026-11-24T10:00:00+00:00"
        );
        assert_eq!(query.to.unwrap().to_rfc3339(), "2026-11-24T10:30:15+00:00");
        assert_eq!(filters.to.value, "2026-11-24T10:30:15");
        assert_eq!(query.event_type, Some(EventType::PurchaseDenied));
        assert_eq!(
            query_string(&query),
            "customer_id=0193a0c4-4f6e-7c1a-9d2b-3e4f5a6b7c8d&type=purchase_denied\
             &from=2026-11-24T10%3A00%3A00Z&to=2026-11-24T10%3A30%3A15Z"
        );
        let (_, query) = check(&raw(&[("from", "2026-11-24 10:00:00.123456")]));
        assert_eq!(
            query.unwrap().from.unwrap().timestamp_subsec_micros(),
            123_456
        );
    }

    #[test]
    fn a_qualification_change_shows_the_sets_and_what_was_added_and_removed() {
        let payload = json!({"before": ["education"], "after": ["education", "state_owned_entity"],
            "evidence": {}, "reason": "r", "version": 2});
        let change = change_of("customer_qualifications_set", &payload).unwrap();
        let texts = |links: &[Link]| links.iter().map(|l| l.text.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&change.before.unwrap().items), ["education"]);
        assert_eq!(
            texts(&change.after.items),
            ["education", "state_owned_entity"]
        );
        assert_eq!(texts(&change.added), ["state_owned_entity"]);
        assert!(change.removed.is_empty());

        let status = change_of(
            "subscription_status_changed",
            &json!({"before": "active", "after": "suspended", "reason": "r"}),
        )
        .unwrap();
        assert!(!status.is_set);
        assert_eq!(texts(&status.before.unwrap().items), ["active"]);
        assert_eq!(texts(&status.after.items), ["suspended"]);

        let created = change_of(
            "customer_created",
            &json!({"name": "C", "special_qualifications": ["gcc"]}),
        )
        .unwrap();
        assert!(created.before.is_none());
        assert_eq!(texts(&created.added), ["gcc"]);

        let provider = Uuid::now_v7();
        let providers = change_of(
            "partner_providers_set",
            &json!({"before": [provider], "after": []}),
        )
        .unwrap();
        assert_eq!(providers.removed[0].href, format!("/partners/{provider}"));
        assert!(change_of("offer_created", &json!({})).is_none());
        assert!(change_of("customer_qualifications_set", &json!({"after": []})).is_none());
    }
}
