//! The offer catalog: the list, filtered by segment, and for operators the form that creates an
//! offer, whose R1 refusal shows next to the product kind.

use askama::Template;
use axum::{
    Router,
    extract::{RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use serde::Deserialize;

use super::{
    ConsoleError, Posted, Staff,
    partners::{Choice, after_id, choices, more, optional, read_query},
    render, render_status,
    view::{self, Chrome, product_kind_text, segment_text},
};
use crate::{
    app,
    db::{Keyset, offers::Offer},
    domain::{Action, DisplayName, OfferId, OfferTerms, ProductKind, Segment},
    http::AppState,
};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/offers", get(list).post(create))
}

/// Offers per page.
const PAGE: i64 = 50;

struct OfferRow {
    name: String,
    segment: &'static str,
    product_kind: &'static str,
    created: String,
}

/// The create form, as typed, with its messages.
struct OfferForm {
    name: String,
    name_error: Option<String>,
    segments: Vec<Choice>,
    segment_error: Option<String>,
    product_kinds: Vec<Choice>,
    product_kind_error: Option<String>,
}

impl OfferForm {
    fn empty() -> Self {
        Self {
            name: String::new(),
            name_error: None,
            segments: choices(Segment::ALL, segment_text, None),
            segment_error: None,
            product_kinds: choices(ProductKind::ALL, product_kind_text, None),
            product_kind_error: None,
        }
    }
}

#[derive(Template)]
#[template(path = "offers_list.html")]
struct OffersPage {
    chrome: Chrome,
    notice: Option<String>,
    segments: Vec<Choice>,
    filtered: bool,
    rows: Vec<OfferRow>,
    next: Option<String>,
    form: Option<OfferForm>,
}

#[derive(Deserialize)]
struct ListQuery {
    segment: Option<String>,
    after: Option<String>,
    created: Option<String>,
}

/// The catalog page (first page, no filter when `query` is `None`), with `form` for operators.
async fn offers_page(
    state: &AppState,
    staff: &Staff,
    query: Option<ListQuery>,
    form: Option<OfferForm>,
) -> Result<OffersPage, ConsoleError> {
    let query = query.unwrap_or(ListQuery {
        segment: None,
        after: None,
        created: None,
    });
    let segment = optional::<Segment>(query.segment.as_deref())?;
    let page = Keyset {
        after: after_id(query.after.as_deref())?,
        limit: PAGE + 1,
    };
    let mut offers = app::offers::list(&state.pool, &staff.ctx, segment, None, page).await?;
    let next = more(&mut offers, PAGE).then(|| {
        let last = offers.last().map(|o| o.id.to_string()).unwrap_or_default();
        format!(
            "/offers?segment={}&after={last}",
            segment.map_or("", Segment::as_str)
        )
    });
    // The notice after a create; a bookmarked or mistyped one shows no notice, not an error.
    let notice = match query.created.as_deref().map(str::parse::<uuid::Uuid>) {
        Some(Ok(id)) => match app::offers::get(&state.pool, &staff.ctx, OfferId(id)).await {
            Ok(offer) => Some(format!("Offer “{}” created.", offer.name)),
            Err(app::Error::OfferNotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    let may_create = staff.may(Action::ManageOffers);
    Ok(OffersPage {
        chrome: staff.chrome("/offers"),
        notice,
        segments: choices(Segment::ALL, segment_text, segment),
        filtered: segment.is_some(),
        rows: offers.into_iter().map(offer_row).collect(),
        next,
        form: may_create.then(|| form.unwrap_or_else(OfferForm::empty)),
    })
}

fn offer_row(o: Offer) -> OfferRow {
    OfferRow {
        name: o.name,
        segment: segment_text(o.segment).1,
        product_kind: product_kind_text(o.product_kind).1,
        created: view::when(&o.created_at),
    }
}

async fn list(
    State(state): State<AppState>,
    staff: Staff,
    RawQuery(raw): RawQuery,
) -> Result<Response, ConsoleError> {
    let query: ListQuery = read_query(raw.as_deref())?;
    render(&offers_page(&state, &staff, Some(query), None).await?)
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    product_kind: String,
}

async fn create(
    State(state): State<AppState>,
    posted: Posted<CreateForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    // Permission before the form is judged: a role that may not create sees 403, not messages.
    staff.ctx.require(Action::ManageOffers)?;
    let name = DisplayName::parse(&form.name);
    let segment = form.segment.parse::<Segment>();
    let product_kind = form.product_kind.parse::<ProductKind>();
    let mut shown = OfferForm {
        name: form.name.clone(),
        name_error: None,
        segments: choices(Segment::ALL, segment_text, segment.as_ref().ok().copied()),
        segment_error: None,
        product_kinds: choices(
            ProductKind::ALL,
            product_kind_text,
            product_kind.as_ref().ok().copied(),
        ),
        product_kind_error: None,
    };
    let (Ok(name), Ok(&segment), Ok(&product_kind)) =
        (&name, segment.as_ref(), product_kind.as_ref())
    else {
        shown.name_error = name
            .as_ref()
            .err()
            .map(|e| view::sentence(&format!("the name {e}")));
        shown.segment_error = segment
            .is_err()
            .then(|| "Choose the segment the offer is priced for.".to_owned());
        shown.product_kind_error = product_kind
            .is_err()
            .then(|| "Choose the kind of product.".to_owned());
        return again(&state, &staff, shown).await;
    };
    let terms = OfferTerms {
        segment,
        product_kind,
    };
    match app::offers::create(&state.pool, &staff.ctx, name, terms).await {
        Ok(offer) => Ok(Redirect::to(&format!("/offers?created={}", offer.id)).into_response()),
        Err(e @ app::Error::OfferNotLicenseBased { .. }) => {
            shown.product_kind_error = Some(view::sentence(&format!("R1: {e}")));
            again(&state, &staff, shown).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The catalog again with the form as typed and its messages (422).
async fn again(state: &AppState, staff: &Staff, form: OfferForm) -> Result<Response, ConsoleError> {
    let page = offers_page(state, staff, None, Some(form)).await?;
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
}
