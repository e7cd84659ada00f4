//! Customers: search, the customer page (qualifications, history, subscriptions, partners,
//! eligibility, GCC lockout), and the back-office forms that change them.

use std::collections::BTreeMap;

use askama::Template;
use axum::{
    Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::{
    ConsoleError, Posted, Staff, actor_name, actor_names, parse_id, render, render_status, view,
};
use crate::{
    app::{
        self, Precondition,
        customers::{QualificationChange, QualificationUpdate},
    },
    db::{
        Keyset,
        customers::{Customer, CustomerEvidence, CustomerFilter, QualificationRecord},
    },
    domain::{
        Action, CustomerId, CustomerQualification, DisplayName, Evidenced, ExternalReference,
        PartnerId, Policy, PurchaseDecision, Reason, SpecialQualification, SubscriptionId,
        SubscriptionStatus,
    },
    http::AppState,
};

/// Rows per page of search results.
const PAGE: i64 = 50;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/customers", get(search))
        .route("/customers/new", get(new_customer).post(create_customer))
        .route("/customers/{id}", get(customer))
        .route(
            "/customers/{id}/qualifications",
            post(change_qualifications),
        )
        .route("/customers/{id}/partners", post(link_partner))
        .route(
            "/customers/{id}/subscriptions/{subscription}/status",
            post(change_status),
        )
}

/// A customer as listed.
struct CustomerRow {
    id: String,
    name: String,
    qualifications: Vec<&'static str>,
    external_reference: String,
    created: String,
}

impl From<Customer> for CustomerRow {
    fn from(c: Customer) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name,
            qualifications: qualification_names(c.special_qualifications),
            external_reference: c.external_reference.unwrap_or_default(),
            created: view::when(&c.created_at),
        }
    }
}

fn qualification_names(set: CustomerQualification) -> Vec<&'static str> {
    set.iter().map(SpecialQualification::as_str).collect()
}

/// The qualification filter's choices: any, none (commercial), or one qualification.
fn qualification_filter(raw: &str) -> Option<Option<Option<SpecialQualification>>> {
    match raw {
        "" => Some(None),
        "none" => Some(Some(None)),
        other => other.parse().ok().map(|q| Some(Some(q))),
    }
}

#[derive(Deserialize, Default)]
struct SearchParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    qualification: String,
    #[serde(default)]
    reference: String,
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "customers_search.html")]
struct SearchPage {
    chrome: view::Chrome,
    q: String,
    qualification: String,
    reference: String,
    qualifications: &'static [SpecialQualification],
    rows: Vec<CustomerRow>,
    searched: bool,
    next: Option<String>,
    may_create: bool,
    error: Option<String>,
}

async fn search(
    State(state): State<AppState>,
    staff: Staff,
    Query(params): Query<SearchParams>,
) -> Result<Response, ConsoleError> {
    let mut page = SearchPage {
        chrome: staff.chrome("/customers"),
        q: params.q.clone(),
        qualification: params.qualification.clone(),
        reference: params.reference.clone(),
        qualifications: SpecialQualification::ALL,
        rows: Vec::new(),
        searched: false,
        next: None,
        may_create: staff.may(Action::ManageCustomers),
        error: None,
    };
    let Some(qualification) = qualification_filter(&params.qualification) else {
        page.error = Some("Choose a qualification from the list.".into());
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let after = match params.after.as_deref().map(str::parse).transpose() {
        Ok(after) => after,
        Err(_) => return Err(ConsoleError::NotFound),
    };
    let trimmed = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
    let (name, reference) = (trimmed(&params.q), trimmed(&params.reference));
    let filter = CustomerFilter {
        name_contains: name.as_deref(),
        qualification,
        external_reference: reference.as_deref(),
    };
    let found = app::customers::search(
        &state.pool,
        &staff.ctx,
        &filter,
        Keyset {
            after,
            limit: PAGE + 1,
        },
    )
    .await?;
    page.searched = true;
    let more = found.len() as i64 > PAGE;
    page.rows = found
        .into_iter()
        .take(PAGE as usize)
        .map(CustomerRow::from)
        .collect();
    if more && let Some(last) = page.rows.last() {
        page.next = Some(format!(
            "/customers?q={}&qualification={}&reference={}&after={}",
            view::url_encode(&params.q),
            view::url_encode(&params.qualification),
            view::url_encode(&params.reference),
            last.id
        ));
    }
    render(&page)
}

/// One qualification in a change form: whether it is chosen, its evidence, and any message.
struct QualificationInput {
    name: &'static str,
    evidence_name: &'static str,
    checked: bool,
    evidence: String,
    error: Option<String>,
}

/// What the qualification form holds, as submitted or as stored.
#[derive(Debug, Default, Clone)]
struct QualificationForm {
    chosen: Vec<SpecialQualification>,
    evidence: BTreeMap<SpecialQualification, String>,
    reason: String,
}

impl QualificationForm {
    fn from_record(record: &QualificationRecord) -> Self {
        Self {
            chosen: record.special_qualifications.qualifications(),
            evidence: record.evidence.0.clone(),
            reason: String::new(),
        }
    }

    /// Reads `qualification=<name>` checkboxes, `evidence_<name>` inputs and `reason`.
    fn from_fields(fields: &[(String, String)]) -> Self {
        let mut form = Self::default();
        for (key, value) in fields {
            if key == "qualification" {
                if let Ok(q) = value.parse() {
                    form.chosen.push(q);
                }
            } else if let Some(q) = key.strip_prefix("evidence_") {
                if let Ok(q) = q.parse::<SpecialQualification>()
                    && !value.trim().is_empty()
                {
                    form.evidence.insert(q, value.clone());
                }
            } else if key == "reason" {
                form.reason = value.clone();
            }
        }
        form
    }

    fn inputs(&self, errors: &BTreeMap<String, String>) -> Vec<QualificationInput> {
        SpecialQualification::ALL
            .iter()
            .map(|&q| QualificationInput {
                name: q.as_str(),
                evidence_name: q.evidence_name(),
                checked: self.chosen.contains(&q),
                evidence: self.evidence.get(&q).cloned().unwrap_or_default(),
                error: errors.get(&format!("evidence.{}", q.as_str())).cloned(),
            })
            .collect()
    }
}

/// The change form as the page shows it.
struct ChangeForm {
    version: i64,
    inputs: Vec<QualificationInput>,
    reason: String,
    reason_error: Option<String>,
    set_error: Option<String>,
}

/// A version of the qualification history, as shown.
struct HistoryRow {
    version: i64,
    qualifications: Vec<&'static str>,
    evidence: Vec<(String, String)>,
    reason: String,
    actor: String,
    valid_from: String,
    valid_to: String,
}

struct SubscriptionRow {
    id: String,
    offer: String,
    partner: String,
    segment: &'static str,
    quantity: i32,
    status: &'static str,
    created: String,
    next_statuses: Vec<&'static str>,
}

struct PartnerLink {
    id: String,
    name: String,
}

/// One offer in the eligibility panel.
struct EligibilityRow {
    offer: String,
    segment: &'static str,
    product_kind: &'static str,
    allowed: bool,
    reasons: Vec<String>,
}

struct Eligibility {
    partner: String,
    as_of: String,
    rows: Option<Vec<EligibilityRow>>,
    /// The policy version the rows were decided under.
    policy_version: Option<i32>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "customers_page.html")]
struct CustomerPage {
    chrome: view::Chrome,
    id: String,
    name: String,
    external_reference: String,
    version: i64,
    qualifications: Vec<(&'static str, String)>,
    locked_out: bool,
    change: Option<ChangeForm>,
    history: Vec<HistoryRow>,
    subscriptions: Vec<SubscriptionRow>,
    may_change_status: bool,
    partners: Vec<PartnerLink>,
    link_choices: Option<Vec<PartnerLink>>,
    eligibility: Option<Eligibility>,
    partner_choices: Vec<PartnerLink>,
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
struct CustomerParams {
    partner: Option<String>,
    as_of: Option<String>,
    done: Option<String>,
}

/// Offers and partners are reference data: few enough to list in one page of choices.
const CHOICES: i64 = 500;

async fn partner_names(
    state: &AppState,
    staff: &Staff,
) -> Result<BTreeMap<PartnerId, String>, ConsoleError> {
    let partners = app::partners::list(
        &state.pool,
        &staff.ctx,
        Keyset {
            after: None,
            limit: CHOICES,
        },
    )
    .await?;
    Ok(partners.into_iter().map(|p| (p.id, p.name)).collect())
}

/// The `as_of` date of the eligibility panel: the end of that day (UTC), so the panel answers
/// with what held at the close of the chosen day.
fn end_of_day(raw: &str) -> Option<DateTime<Utc>> {
    let day = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
    Some(day.and_hms_micro_opt(23, 59, 59, 999_999)?.and_utc())
}

/// Everything the customer page shows; `change` is the form as it should appear.
async fn customer_page(
    state: &AppState,
    staff: &Staff,
    id: CustomerId,
    params: &CustomerParams,
    change: Option<(QualificationForm, BTreeMap<String, String>)>,
) -> Result<CustomerPage, ConsoleError> {
    let pool = &state.pool;
    let ctx = &staff.ctx;
    let customer = app::customers::get(pool, ctx, id).await?;
    let current = app::customers::qualifications(pool, ctx, id, None).await?;
    let locked_out = app::customers::gcc_lockout(pool, ctx, id).await?;
    let history = app::customers::qualification_history(pool, ctx, id, 0, 1000).await?;
    let subscriptions = app::customers::subscriptions(
        pool,
        ctx,
        id,
        Keyset {
            after: None,
            limit: 200,
        },
    )
    .await?;
    let linked = app::customers::partners(pool, ctx, id).await?;
    let partner_names = partner_names(state, staff).await?;
    let offers = app::offers::list(
        pool,
        ctx,
        None,
        None,
        Keyset {
            after: None,
            limit: CHOICES,
        },
    )
    .await?
    .into_iter()
    .map(|o| (o.id, o.name))
    .collect::<BTreeMap<_, _>>();
    let actors: Vec<String> = history.iter().map(|h| h.actor.clone()).collect();
    let names = actor_names(state, staff, actors.iter().map(String::as_str)).await?;
    let name_of = |p: PartnerId| {
        partner_names
            .get(&p)
            .cloned()
            .unwrap_or_else(|| p.to_string())
    };

    let change = staff.may(Action::ManageCustomers).then(|| {
        let (form, errors) =
            change.unwrap_or_else(|| (QualificationForm::from_record(&current), BTreeMap::new()));
        ChangeForm {
            version: current.version,
            inputs: form.inputs(&errors),
            reason: form.reason.clone(),
            reason_error: errors.get("reason").cloned(),
            set_error: errors.get("qualifications").cloned(),
        }
    });
    let eligibility = match &params.partner {
        Some(raw) if !raw.is_empty() => Some(eligibility(state, staff, id, raw, params).await?),
        _ => None,
    };
    let may_link = staff.may(Action::ManageRelationships);
    Ok(CustomerPage {
        chrome: staff.chrome("/customers"),
        id: id.to_string(),
        name: customer.name,
        external_reference: customer.external_reference.unwrap_or_default(),
        version: current.version,
        qualifications: current
            .special_qualifications
            .iter()
            .map(|q| {
                let evidence = current.evidence.0.get(&q).cloned().unwrap_or_default();
                (q.as_str(), evidence)
            })
            .collect(),
        locked_out,
        change,
        history: history
            .into_iter()
            .rev()
            .map(|h| HistoryRow {
                version: h.version,
                qualifications: qualification_names(h.special_qualifications),
                evidence: h
                    .evidence
                    .0
                    .iter()
                    .map(|(q, e)| (q.as_str().to_owned(), e.clone()))
                    .collect(),
                actor: actor_name(&names, &h.actor),
                reason: h.reason,
                valid_from: view::when(&h.valid_from),
                valid_to: h.valid_to.as_ref().map_or_else(|| "now".into(), view::when),
            })
            .collect(),
        subscriptions: subscriptions
            .into_iter()
            .map(|s| SubscriptionRow {
                id: s.id.to_string(),
                offer: offers
                    .get(&s.offer_id)
                    .cloned()
                    .unwrap_or_else(|| s.offer_id.to_string()),
                partner: name_of(s.partner_id),
                segment: s.segment.as_str(),
                quantity: s.quantity,
                status: s.status.as_str(),
                created: view::when(&s.created_at),
                next_statuses: SubscriptionStatus::ALL
                    .iter()
                    .filter(|&&next| next != s.status && s.status.may_become(next))
                    .map(|n| n.as_str())
                    .collect(),
            })
            .collect(),
        may_change_status: staff.may(Action::ManageSubscriptions),
        partners: linked
            .iter()
            .map(|&p| PartnerLink {
                id: p.to_string(),
                name: name_of(p),
            })
            .collect(),
        link_choices: may_link.then(|| {
            partner_names
                .iter()
                .filter(|(p, _)| !linked.contains(p))
                .map(|(p, n)| PartnerLink {
                    id: p.to_string(),
                    name: n.clone(),
                })
                .collect()
        }),
        eligibility,
        partner_choices: partner_names
            .iter()
            .map(|(p, n)| PartnerLink {
                id: p.to_string(),
                name: n.clone(),
            })
            .collect(),
        notice: params.done.as_deref().map(|done| match done {
            "qualifications" => "The qualifications were changed.".to_owned(),
            "partner" => "The partner was linked.".to_owned(),
            "status" => "The subscription's status was changed.".to_owned(),
            _ => "Done.".to_owned(),
        }),
    })
}

/// The eligibility panel for the chosen partner and date.
async fn eligibility(
    state: &AppState,
    staff: &Staff,
    customer: CustomerId,
    raw_partner: &str,
    params: &CustomerParams,
) -> Result<Eligibility, ConsoleError> {
    let as_of_raw = params.as_of.clone().unwrap_or_default();
    let mut panel = Eligibility {
        partner: raw_partner.to_owned(),
        as_of: as_of_raw.clone(),
        rows: None,
        policy_version: None,
        error: None,
    };
    let at = match as_of_raw.trim() {
        "" => None,
        raw => match end_of_day(raw) {
            Some(at) => Some(at),
            None => {
                panel.error = Some("Enter a date as YYYY-MM-DD, or leave it empty for now.".into());
                return Ok(panel);
            }
        },
    };
    let partner = PartnerId(parse_id(raw_partner)?);
    let decisions =
        app::purchases::eligibility(&state.pool, &staff.ctx, customer, partner, at, CHOICES)
            .await?;
    match decisions {
        None => {
            panel.error = Some(
                "The customer or the partner did not exist yet on that date: nothing could be sold."
                    .into(),
            );
        }
        Some(decisions) => {
            panel.policy_version = Some(decisions.policy_version);
            panel.rows = Some(
                decisions
                    .answer
                    .into_iter()
                    .map(|(offer, decision)| EligibilityRow {
                        offer: offer.name,
                        segment: offer.segment.as_str(),
                        product_kind: offer.product_kind.as_str(),
                        allowed: decision.is_allowed(),
                        reasons: match decision {
                            PurchaseDecision::Allowed => Vec::new(),
                            PurchaseDecision::Denied(broken) => {
                                broken.iter().map(ToString::to_string).collect()
                            }
                        },
                    })
                    .collect(),
            );
        }
    }
    Ok(panel)
}

async fn customer(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Query(params): Query<CustomerParams>,
) -> Result<Response, ConsoleError> {
    let id = CustomerId(parse_id(&id)?);
    render(&customer_page(&state, &staff, id, &params, None).await?)
}

/// The form's fields in order: checkboxes repeat, so a map would lose them.
type Fields = Vec<(String, String)>;

/// The set, evidence and reason of a submitted form, or the messages for its fields. The set is
/// checked under `policy`, the one in force now, so that one answer names every field to fix;
/// the use case checks it again under the version in force when it is recorded.
fn qualification_change(
    form: &QualificationForm,
    policy: &Policy,
) -> Result<QualificationChange, BTreeMap<String, String>> {
    let mut errors = BTreeMap::new();
    let qualifications = policy
        .qualification_set(form.chosen.iter().copied())
        .map_err(|e| errors.insert("qualifications".to_owned(), view::sentence(&e.to_string())));
    let reason = Reason::parse(Some(&form.reason))
        .map_err(|e| errors.insert("reason".to_owned(), view::sentence(&e.to_string())));
    match (qualifications, reason) {
        (Ok(qualifications), Ok(reason)) => {
            let evidence: CustomerEvidence = form
                .evidence
                .iter()
                .filter(|(q, _)| form.chosen.contains(q))
                .map(|(q, e)| (*q, e.clone()))
                .collect();
            Ok(QualificationChange {
                qualifications,
                evidence,
                reason,
            })
        }
        _ => Err(errors),
    }
}

#[derive(Template)]
#[template(path = "customers_conflict.html")]
struct ConflictPage {
    chrome: view::Chrome,
    id: String,
    name: String,
    submitted: Vec<&'static str>,
    submitted_reason: String,
    read_version: i64,
    current: HistoryRow,
}

async fn change_qualifications(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Fields>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let id = CustomerId(parse_id(&id)?);
    let read_version = form
        .iter()
        .find(|(k, _)| k == "version")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .ok_or_else(|| ConsoleError::BadForm("the form lacks the version it was read at".into()))?;
    let submitted = QualificationForm::from_fields(&form);
    let policy = app::policies::current(&state.pool).await?;
    let change = match qualification_change(&submitted, &policy) {
        Ok(change) => change,
        Err(errors) => return show_again(&state, &staff, id, submitted, errors).await,
    };
    let result = app::customers::set_qualifications(
        &state.pool,
        &staff.ctx,
        id,
        Precondition::Version(read_version),
        &change,
    )
    .await;
    match result {
        Ok(QualificationUpdate { .. }) => {
            Ok(Redirect::to(&format!("/customers/{id}?done=qualifications")).into_response())
        }
        Err(app::Error::Evidence(e)) => {
            let errors = BTreeMap::from([(e.field(), view::sentence(&e.to_string()))]);
            show_again(&state, &staff, id, submitted, errors).await
        }
        Err(app::Error::InvalidQualificationSet(e)) => {
            let errors =
                BTreeMap::from([("qualifications".to_owned(), view::sentence(&e.to_string()))]);
            show_again(&state, &staff, id, submitted, errors).await
        }
        Err(app::Error::CustomerVersionMismatch(current)) => {
            let customer = app::customers::get(&state.pool, &staff.ctx, id).await?;
            let names = actor_names(&state, &staff, [current.actor.as_str()]).await?;
            let page = ConflictPage {
                chrome: staff.chrome("/customers"),
                id: id.to_string(),
                name: customer.name,
                submitted: submitted.chosen.iter().map(|q| q.as_str()).collect(),
                submitted_reason: submitted.reason,
                read_version,
                current: HistoryRow {
                    version: current.version,
                    qualifications: qualification_names(current.special_qualifications),
                    evidence: current
                        .evidence
                        .0
                        .iter()
                        .map(|(q, e)| (q.as_str().to_owned(), e.clone()))
                        .collect(),
                    actor: actor_name(&names, &current.actor),
                    reason: current.reason,
                    valid_from: view::when(&current.valid_from),
                    valid_to: "now".into(),
                },
            };
            render_status(StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// The customer page again, with the submitted form and its messages (422).
async fn show_again(
    state: &AppState,
    staff: &Staff,
    id: CustomerId,
    submitted: QualificationForm,
    errors: BTreeMap<String, String>,
) -> Result<Response, ConsoleError> {
    let page = customer_page(
        state,
        staff,
        id,
        &CustomerParams::default(),
        Some((submitted, errors)),
    )
    .await?;
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    partner: String,
}

async fn link_partner(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<LinkForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let id = CustomerId(parse_id(&id)?);
    let partner = form
        .partner
        .parse()
        .map(PartnerId)
        .map_err(|_| ConsoleError::BadForm("choose a partner from the list".into()))?;
    app::customers::link_partner(&state.pool, &staff.ctx, id, partner).await?;
    Ok(Redirect::to(&format!("/customers/{id}?done=partner")).into_response())
}

#[derive(Deserialize)]
struct StatusForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
}

async fn change_status(
    State(state): State<AppState>,
    Path((id, subscription)): Path<(String, String)>,
    posted: Posted<StatusForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let id = CustomerId(parse_id(&id)?);
    let subscription = SubscriptionId(parse_id(&subscription)?);
    let status: SubscriptionStatus = form
        .status
        .parse()
        .map_err(|_| ConsoleError::BadForm("choose a status from the list".into()))?;
    let reason =
        Reason::parse(Some(&form.reason)).map_err(|e| ConsoleError::BadForm(e.to_string()))?;
    app::subscriptions::set_status(&state.pool, &staff.ctx, id, subscription, status, &reason)
        .await?;
    Ok(Redirect::to(&format!("/customers/{id}?done=status")).into_response())
}

#[derive(Template)]
#[template(path = "customers_new.html")]
struct NewCustomerPage {
    chrome: view::Chrome,
    name: String,
    name_error: Option<String>,
    external_reference: String,
    reference_error: Option<String>,
    inputs: Vec<QualificationInput>,
    reason: String,
    reason_error: Option<String>,
    set_error: Option<String>,
}

impl NewCustomerPage {
    fn new(
        staff: &Staff,
        (name, external_reference): (String, String),
        form: &QualificationForm,
        errors: &BTreeMap<String, String>,
    ) -> Self {
        Self {
            chrome: staff.chrome("/customers"),
            name,
            name_error: errors.get("name").cloned(),
            external_reference,
            reference_error: errors.get("external_reference").cloned(),
            inputs: form.inputs(errors),
            reason: form.reason.clone(),
            reason_error: errors.get("reason").cloned(),
            set_error: errors.get("qualifications").cloned(),
        }
    }
}

async fn new_customer(staff: Staff) -> Result<Response, ConsoleError> {
    staff.ctx.require(Action::ManageCustomers)?;
    render(&NewCustomerPage::new(
        &staff,
        (String::new(), String::new()),
        &QualificationForm::default(),
        &BTreeMap::new(),
    ))
}

async fn create_customer(
    State(state): State<AppState>,
    posted: Posted<Fields>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let field = |key: &str| {
        form.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let typed = (field("name"), field("external_reference"));
    let submitted = QualificationForm::from_fields(&form);
    let name = DisplayName::parse(&typed.0);
    let reference = match typed.1.trim() {
        "" => Ok(None),
        raw => ExternalReference::parse(raw).map(Some),
    };
    // Evidence is checked with the rest, so one answer names every field to fix.
    let policy = app::policies::current(&state.pool).await?;
    let change = qualification_change(&submitted, &policy).and_then(|change| {
        app::customers::initial_evidence(&change)
            .map(|_| change)
            .map_err(|e| match e {
                app::Error::Evidence(e) => {
                    BTreeMap::from([(e.field(), view::sentence(&e.to_string()))])
                }
                other => BTreeMap::from([("qualifications".to_owned(), other.to_string())]),
            })
    });
    let (name, change, external_reference) = match (name, change, reference) {
        (Ok(name), Ok(change), Ok(reference)) => (name, change, reference),
        (name, change, reference) => {
            let mut errors = change.err().unwrap_or_default();
            if let Err(e) = name {
                errors.insert("name".into(), format!("The name {e}."));
            }
            if let Err(e) = reference {
                errors.insert("external_reference".into(), view::sentence(&e.to_string()));
            }
            let page = NewCustomerPage::new(&staff, typed, &submitted, &errors);
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let draft = app::customers::CustomerDraft {
        name,
        change,
        external_reference,
    };
    let customer = match app::customers::create(&state.pool, &staff.ctx, draft).await {
        Ok(customer) => customer,
        Err(app::Error::ExternalReferenceTaken {
            reference,
            customer,
        }) => {
            let errors = BTreeMap::from([(
                "external_reference".to_owned(),
                format!("Customer {customer} already has the external reference {reference}."),
            )]);
            let page = NewCustomerPage::new(&staff, typed, &submitted, &errors);
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Redirect::to(&format!("/customers/{}", customer.id)).into_response())
}
