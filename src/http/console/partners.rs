//! Partners: search, a partner's page (profile, provider links, profile history, customers), and
//! for back office the forms that create partners and change their profile. A profile change is
//! conditional on the version the form was read at, so an edit that raced a colleague's shows both
//! versions side by side instead of overwriting.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use askama::Template;
use axum::{
    Router,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::{Deserialize, de::DeserializeOwned};
use uuid::Uuid;

use super::{
    ConsoleError, Posted, Staff, actor_names, parse_id, render, render_status,
    view::{self, Chrome},
};
use crate::{
    app::{self, Precondition, partners::ResellerQualificationChange},
    db::{
        Keyset,
        customers::Customer,
        partners::{Partner, PartnerEvidence, PartnerFilter, PartnerName, ProfileRecord},
    },
    domain::{
        Action, DisplayName, Evidenced, PartnerId, PartnerKind, Reason, ResellerQualification,
        SpecialQualification, checked_text, evidence_after_change,
    },
    http::AppState,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/partners", get(list).post(create))
        .route("/partners/new", get(new_partner))
        .route("/partners/{id}", get(show))
        .route(
            "/partners/{id}/reseller-qualifications",
            post(set_qualifications),
        )
        .route("/partners/{id}/indirect-providers", post(set_providers))
}

/// Partners per page of the search.
const PAGE: i64 = 50;
/// Customers per page of a partner's page.
const CUSTOMERS_PAGE: i64 = 25;
/// Profile versions per page of a partner's page.
const HISTORY_PAGE: i64 = 50;
/// Indirect providers offered as checkboxes; more are linked by id.
const PROVIDER_CHOICES: i64 = 200;
/// Longest search term: the longest name.
const MAX_SEARCH_CHARS: usize = DisplayName::MAX_CHARS;

// ---------------------------------------------------------------------------------------------
// Shared helpers (also used by the offers pages)

/// One option of a `<select>`.
pub(super) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// The options for every value of `all`, `selected` marked; `(value, label)` of each.
pub(super) fn choices<T: Copy + PartialEq>(
    all: &[T],
    text: fn(T) -> (&'static str, &'static str),
    selected: Option<T>,
) -> Vec<Choice> {
    all.iter()
        .map(|&v| {
            let (value, label) = text(v);
            Choice {
                value,
                label,
                selected: selected == Some(v),
            }
        })
        .collect()
}

/// A page's query string read into `T`; an unreadable one is a bad request, not a 500.
pub(super) fn read_query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ConsoleError> {
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| ConsoleError::BadForm(e.to_string()))
}

/// An optional enum from a query or form value; empty means "none chosen".
pub(super) fn optional<T: std::str::FromStr>(raw: Option<&str>) -> Result<Option<T>, ConsoleError>
where
    T::Err: std::fmt::Display,
{
    match raw.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|e: T::Err| ConsoleError::BadForm(e.to_string())),
    }
}

/// The id a keyset page resumes after.
pub(super) fn after_id(raw: Option<&str>) -> Result<Option<Uuid>, ConsoleError> {
    raw.filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| ConsoleError::BadForm("the page cursor is not an id".into()))
        })
        .transpose()
}

/// Keeps the first `size` rows; whether there were more (rows are fetched with one extra).
pub(super) fn more<T>(rows: &mut Vec<T>, size: i64) -> bool {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    more
}

fn kind_text(kind: PartnerKind) -> (&'static str, &'static str) {
    let label = match kind {
        PartnerKind::DirectBillPartner => "Direct-bill partner",
        PartnerKind::IndirectProvider => "Indirect provider",
        PartnerKind::IndirectReseller => "Indirect reseller",
    };
    (kind.as_str(), label)
}

fn qualification_text(q: ResellerQualification) -> (&'static str, &'static str) {
    let label = match q {
        ResellerQualification::Education => "Education",
        ResellerQualification::Gcc => "GCC",
        ResellerQualification::Nonprofit => "Nonprofit",
    };
    (q.as_str(), label)
}

fn qualification_label(q: ResellerQualification) -> &'static str {
    qualification_text(q).1
}

fn labels(qualifications: &[ResellerQualification]) -> Vec<&'static str> {
    qualifications
        .iter()
        .map(|&q| qualification_label(q))
        .collect()
}

/// Text of a list, or "none".
fn listed(items: &[impl AsRef<str>]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn partner_href(id: PartnerId) -> String {
    format!("/partners/{id}")
}

// ---------------------------------------------------------------------------------------------
// Search

struct PartnerRow {
    href: String,
    name: String,
    kind: &'static str,
    qualifications: Vec<&'static str>,
    version: i64,
    created: String,
}

#[derive(Template)]
#[template(path = "partners_list.html")]
struct ListPage {
    chrome: Chrome,
    q: String,
    kinds: Vec<Choice>,
    qualifications: Vec<Choice>,
    holds_none: bool,
    rows: Vec<PartnerRow>,
    next: Option<String>,
    may_create: bool,
    filtered: bool,
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    kind: Option<String>,
    qualification: Option<String>,
    after: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    staff: Staff,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let query: ListQuery = read_query(raw.as_deref())?;
    let q = query.q.as_deref().unwrap_or("").trim();
    let name_contains = if q.is_empty() {
        None
    } else {
        // Also keeps NUL and other control characters away from PostgreSQL.
        Some(checked_text(q, MAX_SEARCH_CHARS).ok_or_else(|| {
            ConsoleError::BadForm(format!(
                "a search term has at most {MAX_SEARCH_CHARS} characters and no control characters"
            ))
        })?)
    };
    let kind = optional::<PartnerKind>(query.kind.as_deref())?;
    let qualification = match query.qualification.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("none") => Some(None),
        Some(q) => Some(optional::<ResellerQualification>(Some(q))?),
    };
    let filter = PartnerFilter {
        name_contains,
        kind,
        qualification,
    };
    let page = Keyset {
        after: after_id(query.after.as_deref())?,
        limit: PAGE + 1,
    };
    let mut partners = app::partners::search(&state.pool, &staff.ctx, &filter, page).await?;
    let next = more(&mut partners, PAGE).then(|| {
        let last = partners
            .last()
            .map(|p| p.id.to_string())
            .unwrap_or_default();
        let qualification = match qualification {
            None => "",
            Some(None) => "none",
            Some(Some(q)) => q.as_str(),
        };
        // The same search, resuming after the last partner shown.
        let mut href = String::from("/partners?");
        for (name, value) in [
            ("q", q),
            ("kind", kind.map_or("", PartnerKind::as_str)),
            ("qualification", qualification),
        ] {
            if !value.is_empty() {
                href.push_str(&format!("{name}={}&", view::url_encode(value)));
            }
        }
        href + "after=" + &last
    });
    render(&ListPage {
        chrome: staff.chrome("/partners"),
        q: q.to_owned(),
        kinds: choices(PartnerKind::ALL, kind_text, kind),
        qualifications: choices(
            ResellerQualification::ALL,
            qualification_text,
            qualification.flatten(),
        ),
        holds_none: qualification == Some(None),
        rows: partners
            .into_iter()
            .map(|p| PartnerRow {
                href: partner_href(p.id),
                name: p.name,
                kind: kind_text(p.kind).1,
                qualifications: labels(&p.reseller_qualifications),
                version: p.version,
                created: view::when(&p.created_at),
            })
            .collect(),
        next,
        may_create: staff.may(Action::ManagePartners),
        filtered: filter.name_contains.is_some() || kind.is_some() || qualification.is_some(),
    })
}

// ---------------------------------------------------------------------------------------------
// Create

#[derive(Template)]
#[template(path = "partners_new.html")]
struct NewPage {
    chrome: Chrome,
    name: String,
    name_error: Option<String>,
    kinds: Vec<Choice>,
    kind_error: Option<String>,
}

async fn new_partner(staff: Staff) -> Result<Response, ConsoleError> {
    staff.ctx.require(Action::ManagePartners)?;
    render(&NewPage {
        chrome: staff.chrome("/partners"),
        name: String::new(),
        name_error: None,
        kinds: choices(PartnerKind::ALL, kind_text, None),
        kind_error: None,
    })
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
}

async fn create(
    State(state): State<AppState>,
    posted: Posted<CreateForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    staff.ctx.require(Action::ManagePartners)?;
    let name = DisplayName::parse(&form.name);
    let kind = form.kind.parse::<PartnerKind>();
    let (name, kind) = match (name, kind) {
        (Ok(name), Ok(kind)) => (name, kind),
        (name, kind) => {
            let page = NewPage {
                chrome: staff.chrome("/partners"),
                name_error: name.err().map(|e| view::sentence(&format!("the name {e}"))),
                kind_error: kind
                    .is_err()
                    .then(|| "Choose the partner's kind.".to_owned()),
                kinds: choices(PartnerKind::ALL, kind_text, kind.ok()),
                name: form.name,
            };
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    // Reseller qualifications need evidence each: they are added on the partner's page.
    let change = ResellerQualificationChange {
        qualifications: BTreeSet::new(),
        evidence: PartnerEvidence::new(),
        reason: Reason::parse(Some("partner created"))
            .map_err(|e| ConsoleError::App(app::Error::Internal(e.into())))?,
    };
    let partner = app::partners::create(&state.pool, &staff.ctx, &name, kind, &change).await?;
    Ok(Redirect::to(&format!("{}?done=created", partner_href(partner.id))).into_response())
}

// ---------------------------------------------------------------------------------------------
// A partner's page

/// Who recorded something: a readable name where the viewer may see it, and the id.
struct ActorView {
    id: String,
    name: Option<String>,
}

struct Linked {
    name: String,
    href: Option<String>,
}

struct VersionRow {
    version: i64,
    current: bool,
    valid_from: String,
    valid_to: String,
    qualifications: Vec<&'static str>,
    evidence: Vec<(&'static str, String)>,
    providers: Vec<Linked>,
    reason: String,
    actor: ActorView,
}

struct CustomerRow {
    href: String,
    name: String,
    qualifications: Vec<&'static str>,
    external_reference: String,
    created: String,
}

/// One checkbox of the reseller qualification form, with its evidence input.
struct QualificationInput {
    value: &'static str,
    label: &'static str,
    checked: bool,
    evidence: String,
    recorded: Option<String>,
    evidence_name: &'static str,
    error: Option<String>,
}

struct QualificationForm {
    action: String,
    version: i64,
    inputs: Vec<QualificationInput>,
    reason: String,
    reason_error: Option<String>,
}

struct ProviderChoice {
    id: String,
    name: String,
    checked: bool,
}

struct ProviderForm {
    action: String,
    version: i64,
    choices: Vec<ProviderChoice>,
    other: String,
    providers_error: Option<String>,
    reason: String,
    reason_error: Option<String>,
}

#[derive(Template)]
#[template(path = "partners_show.html")]
struct PartnerPage {
    chrome: Chrome,
    notice: Option<String>,
    id: String,
    name: String,
    kind: &'static str,
    version: i64,
    created: String,
    is_indirect_reseller: bool,
    qualifications: Vec<(&'static str, String)>,
    providers: Vec<Linked>,
    history: Vec<VersionRow>,
    history_next: Option<String>,
    customers: Option<Vec<CustomerRow>>,
    customers_next: Option<String>,
    qualification_form: Option<QualificationForm>,
    provider_form: Option<ProviderForm>,
}

#[derive(Deserialize)]
struct ShowQuery {
    customers_after: Option<String>,
    versions_after: Option<String>,
    done: Option<String>,
}

/// A reseller qualification form as submitted (or as it starts: the partner's current set).
#[derive(Debug, Clone)]
struct QualificationSubmission {
    version: i64,
    checked: BTreeSet<ResellerQualification>,
    /// What was typed into each evidence input, blank ones included.
    typed: BTreeMap<ResellerQualification, String>,
    reason: String,
}

impl QualificationSubmission {
    fn current(partner: &Partner) -> Self {
        Self {
            version: partner.version,
            checked: partner.reseller_qualifications.iter().copied().collect(),
            typed: BTreeMap::new(),
            reason: String::new(),
        }
    }

    /// Reads the posted fields: `qualification` (repeated), `evidence.<qualification>`,
    /// `reason` and the hidden `version`.
    fn read(fields: &[(String, String)]) -> Result<Self, ConsoleError> {
        let mut form = Self {
            version: hidden_version(fields)?,
            checked: BTreeSet::new(),
            typed: BTreeMap::new(),
            reason: String::new(),
        };
        for (name, value) in fields {
            if name == "qualification" {
                form.checked.insert(parse_field(value)?);
            } else if let Some(q) = name.strip_prefix("evidence.") {
                form.typed.insert(parse_field(q)?, value.clone());
            } else if name == "reason" {
                form.reason.clone_from(value);
            }
        }
        Ok(form)
    }

    /// Evidence to record: what was typed, blank inputs left out (a held qualification keeps its
    /// recorded evidence).
    fn evidence(&self) -> PartnerEvidence {
        self.typed
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(q, v)| (*q, v.clone()))
            .collect()
    }

    fn form(
        &self,
        partner: PartnerId,
        recorded: &PartnerEvidence,
        errors: &FormErrors,
    ) -> QualificationForm {
        QualificationForm {
            action: format!("{}/reseller-qualifications", partner_href(partner)),
            version: self.version,
            inputs: ResellerQualification::ALL
                .iter()
                .map(|&q| QualificationInput {
                    value: q.as_str(),
                    label: qualification_label(q),
                    checked: self.checked.contains(&q),
                    evidence: self.typed.get(&q).cloned().unwrap_or_default(),
                    recorded: recorded.get(&q).cloned(),
                    evidence_name: q.evidence_name(),
                    error: errors.evidence.get(&q).cloned(),
                })
                .collect(),
            reason: self.reason.clone(),
            reason_error: errors.reason.clone(),
        }
    }
}

/// An indirect provider form as submitted (or as it starts: the current links).
#[derive(Debug, Clone)]
struct ProviderSubmission {
    version: i64,
    checked: BTreeSet<PartnerId>,
    other: String,
    reason: String,
}

impl ProviderSubmission {
    fn current(partner: &Partner) -> Self {
        Self {
            version: partner.version,
            checked: partner.indirect_providers.iter().copied().collect(),
            other: String::new(),
            reason: String::new(),
        }
    }

    /// Reads `provider` (repeated checkboxes), `other` (an id typed in), `reason`, `version`.
    fn read(fields: &[(String, String)]) -> Result<Self, ConsoleError> {
        let mut form = Self {
            version: hidden_version(fields)?,
            checked: BTreeSet::new(),
            other: String::new(),
            reason: String::new(),
        };
        for (name, value) in fields {
            match name.as_str() {
                "provider" => {
                    form.checked.insert(PartnerId(
                        value
                            .parse()
                            .map_err(|_| ConsoleError::BadForm("a provider is not an id".into()))?,
                    ));
                }
                "other" => form.other.clone_from(value),
                "reason" => form.reason.clone_from(value),
                _ => {}
            }
        }
        Ok(form)
    }

    /// The providers chosen: the checked ones and the id typed in, if it is one.
    fn providers(&self) -> Result<BTreeSet<PartnerId>, String> {
        let mut all = self.checked.clone();
        let other = self.other.trim();
        if !other.is_empty() {
            let id = other
                .parse()
                .map_err(|_| format!("“{other}” is not a partner id."))?;
            all.insert(PartnerId(id));
        }
        Ok(all)
    }

    fn form(
        &self,
        partner: PartnerId,
        candidates: &[PartnerName],
        errors: &FormErrors,
    ) -> ProviderForm {
        ProviderForm {
            action: format!("{}/indirect-providers", partner_href(partner)),
            version: self.version,
            choices: candidates
                .iter()
                .map(|p| ProviderChoice {
                    id: p.id.to_string(),
                    name: p.name.clone(),
                    checked: self.checked.contains(&p.id),
                })
                .collect(),
            other: self.other.clone(),
            providers_error: errors.providers.clone(),
            reason: self.reason.clone(),
            reason_error: errors.reason.clone(),
        }
    }
}

fn parse_field<T: std::str::FromStr>(raw: &str) -> Result<T, ConsoleError>
where
    T::Err: std::fmt::Display,
{
    raw.parse()
        .map_err(|e: T::Err| ConsoleError::BadForm(e.to_string()))
}

/// The version the form was read at (its If-Match); a form without one was not ours.
fn hidden_version(fields: &[(String, String)]) -> Result<i64, ConsoleError> {
    fields
        .iter()
        .find(|(name, _)| name == "version")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| ConsoleError::BadForm("the form has no version".into()))
}

/// Messages shown next to the fields of a profile form.
#[derive(Debug, Default)]
struct FormErrors {
    evidence: BTreeMap<ResellerQualification, String>,
    providers: Option<String>,
    reason: Option<String>,
}

/// Which profile form is shown again, as submitted and with its errors.
enum Retry {
    Qualifications(QualificationSubmission, FormErrors),
    Providers(ProviderSubmission, FormErrors),
}

fn actor(id: &str, names: &HashMap<String, String>) -> ActorView {
    ActorView {
        id: id.to_owned(),
        name: names.get(id).cloned(),
    }
}

/// Links to partners by id: named when known, linked when the viewer may open them.
fn linked(ids: &[PartnerId], names: &[PartnerName], staff: &Staff) -> Vec<Linked> {
    ids.iter()
        .map(|id| Linked {
            name: names
                .iter()
                .find(|n| n.id == *id)
                .map_or_else(|| id.to_string(), |n| n.name.clone()),
            // A partner user may not open another partner's page.
            href: (staff.partner().is_none() || staff.partner() == Some(*id))
                .then(|| partner_href(*id)),
        })
        .collect()
}

fn evidence_list(evidence: &PartnerEvidence) -> Vec<(&'static str, String)> {
    evidence
        .iter()
        .map(|(q, e)| (qualification_label(*q), e.clone()))
        .collect()
}

fn version_rows(
    records: &[ProfileRecord],
    current: i64,
    providers: &[PartnerName],
    names: &HashMap<String, String>,
    staff: &Staff,
) -> Vec<VersionRow> {
    records
        .iter()
        .map(|r| VersionRow {
            version: r.version,
            current: r.version == current,
            valid_from: view::when(&r.valid_from),
            valid_to: r
                .valid_to
                .as_ref()
                .map_or_else(|| "now".to_owned(), view::when),
            qualifications: labels(&r.reseller_qualifications),
            evidence: evidence_list(&r.evidence),
            providers: linked(&r.indirect_providers, providers, staff),
            reason: r.reason.clone(),
            actor: actor(&r.actor, names),
        })
        .collect()
}

fn customer_row(c: Customer) -> CustomerRow {
    CustomerRow {
        href: format!("/customers/{}", c.id),
        name: c.name,
        qualifications: c
            .special_qualifications
            .iter()
            .map(SpecialQualification::as_str)
            .collect(),
        external_reference: c.external_reference.unwrap_or_default(),
        created: view::when(&c.created_at),
    }
}

async fn partner_page(
    state: &AppState,
    staff: &Staff,
    id: PartnerId,
    query: &ShowQuery,
    retry: Option<Retry>,
) -> Result<PartnerPage, ConsoleError> {
    let (pool, ctx) = (&state.pool, &staff.ctx);
    let partner = app::partners::get(pool, ctx, id).await?;
    let record = app::partners::profile(pool, ctx, id, None).await?;
    let versions_after = match query.versions_after.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse()
            .map_err(|_| ConsoleError::BadForm("the version cursor is not a number".into()))?,
        None => 0,
    };
    let mut history =
        app::partners::profile_history(pool, ctx, id, versions_after, HISTORY_PAGE + 1).await?;
    let history_next = more(&mut history, HISTORY_PAGE).then(|| {
        let last = history.last().map_or(0, |r| r.version);
        format!("{}?versions_after={last}#history", partner_href(id))
    });
    let is_indirect_reseller = partner.kind == PartnerKind::IndirectReseller;
    let ever_linked =
        is_indirect_reseller || history.iter().any(|r| !r.indirect_providers.is_empty());
    let provider_names = if ever_linked {
        app::partners::provider_names(pool, ctx, id).await?
    } else {
        Vec::new()
    };
    let (customers, customers_next) = if staff.may(Action::ReadCustomers) {
        let page = Keyset {
            after: after_id(query.customers_after.as_deref())?,
            limit: CUSTOMERS_PAGE + 1,
        };
        let mut rows = app::partners::customers(pool, ctx, id, page).await?;
        let next = more(&mut rows, CUSTOMERS_PAGE).then(|| {
            let last = rows.last().map(|c| c.id.to_string()).unwrap_or_default();
            format!("{}?customers_after={last}#customers", partner_href(id))
        });
        (Some(rows.into_iter().map(customer_row).collect()), next)
    } else {
        (None, None)
    };
    let names = actor_names(state, staff, history.iter().map(|r| r.actor.as_str())).await?;

    let manage = staff.may(Action::ManagePartners);
    let (mut qualification_form, mut provider_form) = (None, None);
    if manage {
        let (quals, quals_errors, providers, provider_errors) = match retry {
            Some(Retry::Qualifications(submitted, errors)) => (
                submitted,
                errors,
                ProviderSubmission::current(&partner),
                FormErrors::default(),
            ),
            Some(Retry::Providers(submitted, errors)) => (
                QualificationSubmission::current(&partner),
                FormErrors::default(),
                submitted,
                errors,
            ),
            None => (
                QualificationSubmission::current(&partner),
                FormErrors::default(),
                ProviderSubmission::current(&partner),
                FormErrors::default(),
            ),
        };
        qualification_form = Some(quals.form(id, &record.evidence, &quals_errors));
        if is_indirect_reseller {
            let candidates = provider_candidates(state, staff, &provider_names).await?;
            provider_form = Some(providers.form(id, &candidates, &provider_errors));
        }
    }

    let notice = match query.done.as_deref() {
        Some("created") => Some(
            "Partner created. Add its reseller qualifications below, each with its evidence."
                .to_owned(),
        ),
        Some("qualifications") => Some(format!(
            "Reseller qualifications saved as version {}.",
            partner.version
        )),
        Some("providers") => Some(format!(
            "Indirect providers saved as version {}.",
            partner.version
        )),
        _ => None,
    };
    Ok(PartnerPage {
        chrome: staff.chrome("/partners"),
        notice,
        id: id.to_string(),
        name: partner.name.clone(),
        kind: kind_text(partner.kind).1,
        version: partner.version,
        created: view::when(&partner.created_at),
        is_indirect_reseller,
        qualifications: partner
            .reseller_qualifications
            .iter()
            .map(|q| {
                let evidence = record.evidence.get(q).cloned().unwrap_or_default();
                (qualification_label(*q), evidence)
            })
            .collect(),
        providers: linked(&partner.indirect_providers, &provider_names, staff),
        history: version_rows(&history, partner.version, &provider_names, &names, staff),
        history_next,
        customers,
        customers_next,
        qualification_form,
        provider_form,
    })
}

/// The indirect providers offered as checkboxes: the first ones by id, and those ever linked.
async fn provider_candidates(
    state: &AppState,
    staff: &Staff,
    linked: &[PartnerName],
) -> Result<Vec<PartnerName>, ConsoleError> {
    let filter = PartnerFilter {
        kind: Some(PartnerKind::IndirectProvider),
        ..PartnerFilter::default()
    };
    let page = Keyset {
        after: None,
        limit: PROVIDER_CHOICES,
    };
    let mut all: Vec<PartnerName> = app::partners::search(&state.pool, &staff.ctx, &filter, page)
        .await?
        .into_iter()
        .map(|p| PartnerName {
            id: p.id,
            name: p.name,
        })
        .collect();
    for p in linked {
        if !all.iter().any(|c| c.id == p.id) {
            all.push(p.clone());
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(all)
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    staff: Staff,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let id = PartnerId(parse_id(&id)?);
    let query: ShowQuery = read_query(raw.as_deref())?;
    render(&partner_page(&state, &staff, id, &query, None).await?)
}

const NO_QUERY: ShowQuery = ShowQuery {
    customers_after: None,
    versions_after: None,
    done: None,
};

/// Visibility (404) before permission (403), as in the use cases, before the form is judged.
async fn may_manage(state: &AppState, staff: &Staff, id: PartnerId) -> Result<(), ConsoleError> {
    app::partners::get(&state.pool, &staff.ctx, id).await?;
    Ok(staff.ctx.require(Action::ManagePartners)?)
}

async fn set_qualifications(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let id = PartnerId(parse_id(&id)?);
    may_manage(&state, &staff, id).await?;
    let submitted = QualificationSubmission::read(&form)?;
    let mut errors = FormErrors::default();
    let reason = match Reason::parse(Some(&submitted.reason)) {
        Ok(reason) => reason,
        Err(e) => {
            errors.reason = Some(view::sentence(&e.to_string()));
            // Judge the evidence too, against the profile now, so every message shows at once.
            let partner = app::partners::get(&state.pool, &staff.ctx, id).await?;
            let record = app::partners::profile(&state.pool, &staff.ctx, id, None).await?;
            let after: Vec<_> = submitted.checked.iter().copied().collect();
            if let Err(e) = evidence_after_change(
                &partner.reseller_qualifications,
                &record.evidence,
                &after,
                &submitted.evidence(),
            ) {
                note_evidence_error(&mut errors, &e);
            }
            return retry(&state, &staff, id, Retry::Qualifications(submitted, errors)).await;
        }
    };
    let change = ResellerQualificationChange {
        qualifications: submitted.checked.clone(),
        evidence: submitted.evidence(),
        reason,
    };
    let precondition = Precondition::Version(submitted.version);
    match app::partners::set_reseller_qualifications(
        &state.pool,
        &staff.ctx,
        id,
        precondition,
        &change,
    )
    .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("{}?done=qualifications", partner_href(id))).into_response())
        }
        Err(app::Error::Evidence(e)) => {
            note_evidence_error(&mut errors, &e);
            retry(&state, &staff, id, Retry::Qualifications(submitted, errors)).await
        }
        Err(app::Error::PartnerVersionMismatch(current)) => {
            conflict(
                &state,
                &staff,
                *current,
                Submitted::Qualifications(submitted),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

fn note_evidence_error(errors: &mut FormErrors, e: &crate::domain::EvidenceError) {
    let field = e.field();
    match field
        .strip_prefix("evidence.")
        .and_then(|q| q.parse::<ResellerQualification>().ok())
    {
        Some(q) => {
            errors.evidence.insert(q, view::sentence(&e.to_string()));
        }
        None => errors.reason = Some(view::sentence(&e.to_string())),
    }
}

async fn set_providers(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let id = PartnerId(parse_id(&id)?);
    may_manage(&state, &staff, id).await?;
    let submitted = ProviderSubmission::read(&form)?;
    let mut errors = FormErrors::default();
    let providers = submitted
        .providers()
        .map_err(|e| errors.providers = Some(e));
    let reason = Reason::parse(Some(&submitted.reason))
        .map_err(|e| errors.reason = Some(view::sentence(&e.to_string())));
    let (Ok(providers), Ok(reason)) = (providers, reason) else {
        return retry(&state, &staff, id, Retry::Providers(submitted, errors)).await;
    };
    let precondition = Precondition::Version(submitted.version);
    match app::partners::set_indirect_providers(
        &state.pool,
        &staff.ctx,
        id,
        precondition,
        &providers,
        &reason,
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("{}?done=providers", partner_href(id))).into_response()),
        // (Only an indirect reseller's page has this form: posted for another partner, the
        // refusal is a page of its own.)
        Err(e @ (app::Error::ProviderNotFound(_) | app::Error::ProviderNotIndirectProvider(_))) => {
            errors.providers = Some(view::sentence(&e.to_string()));
            retry(&state, &staff, id, Retry::Providers(submitted, errors)).await
        }
        Err(app::Error::PartnerVersionMismatch(current)) => {
            conflict(
                &state,
                &staff,
                *current,
                Submitted::Providers(providers, submitted),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// The partner's page again, the form as it was sent and its errors next to the fields (422).
async fn retry(
    state: &AppState,
    staff: &Staff,
    id: PartnerId,
    retry: Retry,
) -> Result<Response, ConsoleError> {
    let page = partner_page(state, staff, id, &NO_QUERY, Some(retry)).await?;
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

// ---------------------------------------------------------------------------------------------
// Conflict: the profile moved on since the form was read

struct ConflictRow {
    field: &'static str,
    submitted: String,
    stored: String,
    differs: bool,
}

#[derive(Template)]
#[template(path = "partners_conflict.html")]
struct ConflictPage {
    chrome: Chrome,
    partner_href: String,
    start_over: String,
    name: String,
    what: &'static str,
    your_version: i64,
    current_version: i64,
    rows: Vec<ConflictRow>,
    /// The versions recorded since the one the form was read at.
    history: Vec<VersionRow>,
}

/// What a raced form held.
enum Submitted {
    Qualifications(QualificationSubmission),
    Providers(BTreeSet<PartnerId>, ProviderSubmission),
}

async fn conflict(
    state: &AppState,
    staff: &Staff,
    current: Partner,
    submitted: Submitted,
) -> Result<Response, ConsoleError> {
    let (pool, ctx) = (&state.pool, &staff.ctx);
    let id = current.id;
    let record = app::partners::profile(pool, ctx, id, None).await?;
    let your_version = match &submitted {
        Submitted::Qualifications(s) => s.version,
        Submitted::Providers(_, s) => s.version,
    };
    let changes = app::partners::profile_history(pool, ctx, id, your_version, HISTORY_PAGE).await?;
    let providers = app::partners::provider_names(pool, ctx, id).await?;
    let names = actor_names(
        state,
        staff,
        changes
            .iter()
            .map(|r| r.actor.as_str())
            .chain([record.actor.as_str()]),
    )
    .await?;
    let provider_text = |ids: &[PartnerId]| {
        let shown: Vec<String> = linked(ids, &providers, staff)
            .into_iter()
            .map(|l| l.name)
            .collect();
        listed(&shown)
    };
    let evidence_text = |evidence: &PartnerEvidence| {
        let shown: Vec<String> = evidence
            .iter()
            .map(|(q, e)| format!("{}: {e}", qualification_label(*q)))
            .collect();
        listed(&shown)
    };
    let row = |field, submitted: String, stored: String| ConflictRow {
        field,
        differs: submitted != stored,
        submitted,
        stored,
    };
    let (what, anchor, mut rows) = match &submitted {
        Submitted::Qualifications(s) => {
            let after: Vec<_> = s.checked.iter().copied().collect();
            // The evidence the change would have recorded on the version it was made on: what
            // was typed, and the kept qualifications' evidence of that version.
            let base =
                app::partners::profile_history(pool, ctx, id, your_version.saturating_sub(1), 1)
                    .await?;
            let would_record = base
                .first()
                .filter(|b| b.version == your_version)
                .and_then(|b| {
                    evidence_after_change(
                        &b.reseller_qualifications,
                        &b.evidence,
                        &after,
                        &s.evidence(),
                    )
                    .ok()
                })
                .unwrap_or_else(|| s.evidence());
            (
                "reseller qualifications",
                "qualifications",
                vec![
                    row(
                        "Reseller qualifications",
                        listed(&labels(&after)),
                        listed(&labels(&current.reseller_qualifications)),
                    ),
                    row(
                        "Evidence",
                        evidence_text(&would_record),
                        evidence_text(&record.evidence),
                    ),
                ],
            )
        }
        Submitted::Providers(chosen, _) => {
            let chosen: Vec<_> = chosen.iter().copied().collect();
            (
                "indirect providers",
                "providers",
                vec![row(
                    "Indirect providers",
                    provider_text(&chosen),
                    provider_text(&current.indirect_providers),
                )],
            )
        }
    };
    let reason = match &submitted {
        Submitted::Qualifications(s) => s.reason.trim().to_owned(),
        Submitted::Providers(_, s) => s.reason.trim().to_owned(),
    };
    rows.push(row("Reason", reason, record.reason.clone()));
    let page = ConflictPage {
        chrome: staff.chrome("/partners"),
        partner_href: partner_href(id),
        start_over: format!("{}#{anchor}", partner_href(id)),
        name: current.name.clone(),
        what,
        your_version,
        current_version: current.version,
        rows,
        history: version_rows(&changes, current.version, &providers, &names, staff),
    };
    render_status(StatusCode::CONFLICT, &page)
}
