//! Policy versions: every published version (which one is in force, which are scheduled), one
//! version's rules, and for operators the next version's draft: checked, previewed (what it would
//! change, nothing written) and published. Every button is a use case of [`app::policies`],
//! authorized and audited as through the API.

use askama::Template;
use axum::{
    Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    ConsoleError, Posted, Staff, actor_name, actor_names, render, render_status,
    view::{self, Chrome, product_kind_text, segment_text},
};
use crate::{
    app::{
        self,
        policies::{Preview, PreviewPages, Publication, PublishedPolicy},
    },
    domain::{Action, PolicyDocument, Reason, Segment, SpecialQualification, listing},
    http::AppState,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/policies", get(list).post(draft))
        .route("/policies/{version}", get(show))
}

/// Items shown of each list of a preview (the API pages through all of them).
const PREVIEW_ITEMS: usize = 20;

/// Where a version stands now, by the clock of this instance: a label, not a decision (every
/// decision reads the version in force from the database).
fn standing(versions: &[PublishedPolicy], index: usize, now: DateTime<Utc>) -> &'static str {
    let started = |v: &PublishedPolicy| v.effective_from.is_none_or(|at| at <= now);
    if !started(&versions[index]) {
        "scheduled"
    } else if versions[index + 1..].iter().any(started) {
        "superseded"
    } else {
        "in force"
    }
}

struct VersionRow {
    version: u32,
    effective: String,
    standing: &'static str,
    reason: String,
    published_by: String,
    published_at: String,
}

/// The draft form, as typed, with its messages.
struct DraftForm {
    document: String,
    document_errors: Vec<String>,
    effective_from: String,
    effective_from_error: Option<String>,
    reason: String,
    reason_error: Option<String>,
}

/// What a draft would change: counts, and the first items of each list.
struct PreviewView {
    limit: usize,
    current: u32,
    draft: u32,
    customer_count: i64,
    customer_items: Vec<String>,
    subscription_count: i64,
    subscription_items: Vec<String>,
    pair_count: i64,
    pair_items: Vec<String>,
}

#[derive(Template)]
#[template(path = "policies_list.html")]
struct PoliciesPage {
    chrome: Chrome,
    notice: Option<String>,
    rows: Vec<VersionRow>,
    form: Option<DraftForm>,
    preview: Option<PreviewView>,
}

#[derive(Deserialize)]
struct ListQuery {
    /// The version just published.
    published: Option<String>,
}

fn effective(version: &PublishedPolicy) -> String {
    version
        .effective_from
        .map_or_else(|| "always (the rule book)".to_owned(), |at| view::when(&at))
}

/// The versions page, with `form` (and `preview`) for operators, and a notice when `published`
/// is a version that exists (a mistyped one shows none, not an error).
async fn policies_page(
    state: &AppState,
    staff: &Staff,
    published: Option<u32>,
    form: Option<DraftForm>,
    preview: Option<PreviewView>,
) -> Result<PoliciesPage, ConsoleError> {
    let versions = app::policies::list(&state.pool, &staff.ctx).await?;
    let names = actor_names(
        state,
        staff,
        versions.iter().map(|v| v.published_by.as_str()),
    )
    .await?;
    let now = Utc::now();
    let rows = versions
        .iter()
        .enumerate()
        .map(|(i, v)| VersionRow {
            version: v.policy.version().get(),
            effective: effective(v),
            standing: standing(&versions, i, now),
            reason: v.reason.clone(),
            published_by: actor_name(&names, &v.published_by),
            published_at: view::when(&v.published_at),
        })
        .collect();
    // The draft starts as the latest version, renumbered: an edit, not a blank page.
    let form = match form {
        Some(form) => Some(form),
        None if staff.may(Action::PublishPolicies) => versions.last().map(|latest| {
            let mut document = PolicyDocument::from(&latest.policy);
            document.version += 1;
            DraftForm {
                document: serde_json::to_string_pretty(&document).unwrap_or_default(),
                document_errors: Vec::new(),
                effective_from: String::new(),
                effective_from_error: None,
                reason: String::new(),
                reason_error: None,
            }
        }),
        None => None,
    };
    let notice = published
        .filter(|&p| versions.iter().any(|v| v.policy.version().get() == p))
        .map(|p| format!("Version {p} published."));
    Ok(PoliciesPage {
        chrome: staff.chrome("/policies"),
        notice,
        rows,
        form,
        preview,
    })
}

async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let published = query.published.and_then(|v| v.parse::<u32>().ok());
    render(&policies_page(&state, &staff, published, None, None).await?)
}

/// The draft form's buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DraftAction {
    /// Check it and show what it would change.
    Preview,
    /// Store it for good.
    Publish,
}

#[derive(Deserialize)]
struct DraftFields {
    #[serde(default)]
    document: String,
    #[serde(default)]
    effective_from: String,
    #[serde(default)]
    reason: String,
    action: DraftAction,
}

/// Checks, previews or publishes the posted draft; the form comes back as typed, with the
/// messages next to their fields, whenever nothing was published.
async fn draft(
    State(state): State<AppState>,
    Posted { staff, form }: Posted<DraftFields>,
) -> Result<Response, ConsoleError> {
    staff.ctx.require(Action::PublishPolicies)?;
    let mut shown = DraftForm {
        document: form.document,
        document_errors: Vec::new(),
        effective_from: form.effective_from,
        effective_from_error: None,
        reason: form.reason,
        reason_error: None,
    };
    // A publication's own fields first, so that every message shows at once.
    let publication = (form.action == DraftAction::Publish)
        .then(|| publication_fields(&mut shown))
        .flatten();
    let document = match serde_json::from_str::<PolicyDocument>(&shown.document) {
        Ok(document) => document,
        Err(e) => {
            shown.document_errors = vec![format!("This is not a policy document: {e}.")];
            return again(&state, &staff, shown, None).await;
        }
    };
    let outcome = match (form.action, publication) {
        (DraftAction::Preview, _) => app::policies::preview(
            &state.pool,
            &staff.ctx,
            document,
            PreviewPages {
                limit: PREVIEW_ITEMS,
                customers_after: None,
                subscriptions_after: None,
                pairs_after: None,
            },
        )
        .await
        .map(|preview| Some(preview_view(&preview))),
        (DraftAction::Publish, Some((reason, effective_from))) => {
            let publication = Publication {
                document,
                effective_from,
                reason,
            };
            match app::policies::publish(&state.pool, &staff.ctx, publication).await {
                Ok(published) => {
                    let version = published.policy.version();
                    let to = format!("/policies?published={version}");
                    return Ok(Redirect::to(&to).into_response());
                }
                Err(e) => Err(e),
            }
        }
        // The document is checked too, so that its messages show with the fields'.
        (DraftAction::Publish, None) => app::policies::check(&staff.ctx, document).map(|_| None),
    };
    match outcome {
        Ok(preview) => again(&state, &staff, shown, preview).await,
        Err(app::Error::InvalidPolicy(invalid)) => {
            shown.document_errors = invalid
                .0
                .iter()
                .map(|p| view::sentence(&p.to_string()))
                .collect();
            again(&state, &staff, shown, None).await
        }
        Err(e @ app::Error::PolicyVersionNotNext { .. }) => {
            shown.document_errors = vec![view::sentence(&e.to_string())];
            again(&state, &staff, shown, None).await
        }
        Err(app::Error::PolicyEffectiveTooEarly { earliest }) => {
            shown.effective_from_error = Some(format!(
                "Too early: a version takes effect after the latest one and never in the past, \
                 so not before {}.",
                view::when(&earliest)
            ));
            again(&state, &staff, shown, None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The reason and the effective instant (`None`: now) of a publication, or `None` with their
/// messages put next to their fields.
fn publication_fields(shown: &mut DraftForm) -> Option<(Reason, Option<DateTime<Utc>>)> {
    let reason = Reason::parse(Some(&shown.reason));
    let effective_from = match shown.effective_from.trim() {
        "" => Some(None),
        raw => view::instant(raw).map(Some),
    };
    if let Err(e) = &reason {
        shown.reason_error = Some(view::sentence(&e.to_string()));
    }
    if effective_from.is_none() {
        shown.effective_from_error =
            Some("Enter a date and time (UTC), or leave it empty for now.".to_owned());
    }
    Some((reason.ok()?, effective_from?))
}

/// A qualification set in words: its qualifications, or that it has none.
fn qualification_set_text(qualifications: &[SpecialQualification]) -> String {
    if qualifications.is_empty() {
        "None (commercial)".to_owned()
    } else {
        listing(qualifications.iter().map(|q| q.as_str()), "and")
    }
}

fn preview_view(preview: &Preview) -> PreviewView {
    let terms = |t: &[crate::domain::OfferTerms]| {
        listing(
            t.iter().map(|t| {
                format!(
                    "{} {}",
                    segment_text(t.segment).1,
                    product_kind_text(t.product_kind).1.to_lowercase()
                )
            }),
            "and",
        )
    };
    PreviewView {
        limit: PREVIEW_ITEMS,
        current: preview.current.get(),
        draft: preview.draft.version().get(),
        customer_count: preview.customers.count,
        customer_items: preview
            .customers
            .items
            .iter()
            .map(|c| {
                let set = qualification_set_text(&c.set.qualifications());
                format!("{} ({}): {set}", c.name, c.id)
            })
            .collect(),
        subscription_count: preview.subscriptions.count,
        subscription_items: preview
            .subscriptions
            .items
            .iter()
            .map(|s| {
                let broken: Vec<String> = s.violations.iter().map(ToString::to_string).collect();
                format!(
                    "{} of customer {}: {}",
                    s.subscription.id,
                    s.subscription.customer_id,
                    broken.join(" ")
                )
            })
            .collect(),
        pair_count: preview.pairs.count,
        pair_items: preview
            .pairs
            .items
            .iter()
            .map(|p| {
                let mut change = Vec::new();
                if !p.change.gained.is_empty() {
                    change.push(format!("gains {}", terms(&p.change.gained)));
                }
                if !p.change.lost.is_empty() {
                    change.push(format!("loses {}", terms(&p.change.lost)));
                }
                format!(
                    "partner {} with customer {}: {}",
                    p.partner_id,
                    p.customer_id,
                    change.join("; ")
                )
            })
            .collect(),
    }
}

/// The versions page again with the form as typed (422 when it has messages).
async fn again(
    state: &AppState,
    staff: &Staff,
    form: DraftForm,
    preview: Option<PreviewView>,
) -> Result<Response, ConsoleError> {
    let status = if form.document_errors.is_empty()
        && form.effective_from_error.is_none()
        && form.reason_error.is_none()
    {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = policies_page(state, staff, None, Some(form), preview).await?;
    render_status(status, &page)
}

struct SetRow {
    qualifications: String,
    may_buy: String,
}

struct SegmentRow {
    segment: &'static str,
    reseller_qualification: &'static str,
    provider: &'static str,
    product_kinds: String,
}

#[derive(Template)]
#[template(path = "policies_show.html")]
struct PolicyPage {
    chrome: Chrome,
    version: u32,
    effective: String,
    standing: &'static str,
    reason: String,
    published_at: String,
    published_by: String,
    sets: Vec<SetRow>,
    segments: Vec<SegmentRow>,
    lockout: String,
    document: String,
}

async fn show(
    State(state): State<AppState>,
    staff: Staff,
    Path(version): Path<String>,
) -> Result<Response, ConsoleError> {
    let version: u32 = version.parse().map_err(|_| ConsoleError::NotFound)?;
    let versions = app::policies::list(&state.pool, &staff.ctx).await?;
    let index = versions
        .iter()
        .position(|v| v.policy.version().get() == version)
        .ok_or(ConsoleError::NotFound)?;
    let published = &versions[index];
    let names = actor_names(&state, &staff, [published.published_by.as_str()]).await?;
    let document = PolicyDocument::from(&published.policy);
    let segments_text = |s: &[Segment]| listing(s.iter().map(|s| segment_text(*s).1), "and");
    render(&PolicyPage {
        chrome: staff.chrome("/policies"),
        version: document.version,
        effective: effective(published),
        standing: standing(&versions, index, Utc::now()),
        reason: published.reason.clone(),
        published_at: view::when(&published.published_at),
        published_by: actor_name(&names, &published.published_by),
        sets: document
            .qualification_sets
            .iter()
            .map(|set| SetRow {
                qualifications: qualification_set_text(&set.qualifications),
                may_buy: segments_text(&set.may_buy),
            })
            .collect(),
        segments: document
            .special_segments
            .iter()
            .map(|s| SegmentRow {
                segment: segment_text(s.segment).1,
                reseller_qualification: if s.reseller_qualification_required {
                    "required"
                } else {
                    "not required"
                },
                provider: if s.indirect_reseller_needs_provider {
                    "required"
                } else {
                    "not required"
                },
                product_kinds: listing(
                    s.product_kinds.iter().map(|k| product_kind_text(*k).1),
                    "and",
                ),
            })
            .collect(),
        lockout: segments_text(&document.gcc_lockout_forbids),
        document: serde_json::to_string_pretty(&document).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::standing;
    use crate::{app::policies::PublishedPolicy, domain::Policy};

    fn version(effective_from: Option<chrono::DateTime<Utc>>) -> PublishedPolicy {
        PublishedPolicy {
            policy: Policy::rule_book(),
            effective_from,
            reason: String::new(),
            published_by: String::new(),
            published_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_version_is_in_force_from_its_start_until_a_later_one_starts() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let versions = [
            version(None),
            version(Some(now - Duration::hours(1))),
            version(Some(now)),
            version(Some(now + Duration::seconds(1))),
        ];
        let standings: Vec<_> = (0..versions.len())
            .map(|i| standing(&versions, i, now))
            .collect();
        assert_eq!(
            standings,
            ["superseded", "superseded", "in force", "scheduled"]
        );
        assert_eq!(standing(&versions[..1], 0, now), "in force");
    }
}
