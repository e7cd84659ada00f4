//! `/v1/customers`: customers, their qualification sets (with evidence, versions and history) and
//! partner relationships.

use std::collections::BTreeSet;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::{get, post, put},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    ApiError, AppState, etag,
    extract::{AsOf, IfMatch, Json, Path, Query},
    pagination::{Page, PageParams, VersionPageParams},
};
use crate::{
    app::{
        self, RequestContext, Warning,
        customers::QualificationChange,
        import::{ImportLine, ImportMode, LineError},
    },
    db::customers::{Customer, CustomerEvidence, QualificationRecord},
    domain::{CustomerId, CustomerQualification, DisplayName, PartnerId, SpecialQualification},
};

/// The customer routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/customers", post(create).get(list))
        .route(
            "/v1/customers:import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_MAX_BYTES)),
        )
        .route("/v1/customers/{customer_id}", get(show))
        .route(
            "/v1/customers/{customer_id}/qualifications",
            get(qualifications).put(set_qualifications),
        )
        .route(
            "/v1/customers/{customer_id}/qualifications/history",
            get(qualification_history),
        )
        .route("/v1/customers/{customer_id}/partners", get(partners))
        .route(
            "/v1/customers/{customer_id}/partners/{partner_id}",
            put(link_partner),
        )
}

/// Checks the parts of a qualification change that the body carries.
pub(super) fn qualification_change(
    raw: BTreeSet<SpecialQualification>,
    evidence: CustomerEvidence,
    reason_text: Option<&str>,
) -> Result<QualificationChange, ApiError> {
    let qualifications = CustomerQualification::from_set(raw).map_err(app::Error::from)?;
    Ok(QualificationChange {
        qualifications,
        evidence,
        reason: super::extract::reason(reason_text)?,
    })
}

/// A new customer: a name, and optionally its first qualification set with evidence.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateCustomer {
    pub(super) name: String,
    #[serde(default)]
    pub(super) special_qualifications: BTreeSet<SpecialQualification>,
    #[serde(default)]
    pub(super) evidence: CustomerEvidence,
    pub(super) reason: Option<String>,
}

impl CreateCustomer {
    /// Checks every field.
    pub(super) fn parse(self) -> Result<(DisplayName, QualificationChange), ApiError> {
        let name =
            DisplayName::parse(&self.name).map_err(|e| ApiError::invalid_field("name", e))?;
        let reason = self.reason.as_deref().unwrap_or("customer created");
        Ok((
            name,
            qualification_change(self.special_qualifications, self.evidence, Some(reason))?,
        ))
    }
}

async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreateCustomer>,
) -> Result<impl IntoResponse, ApiError> {
    let (name, change) = body.parse()?;
    let customer = app::customers::create(&state.pool, &ctx, &name, &change).await?;
    let location = format!("/v1/customers/{}", customer.id);
    Ok((
        StatusCode::CREATED,
        etag(customer.version),
        [(header::LOCATION, location)],
        Json(customer),
    ))
}

async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Customer>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::customers::list(&state.pool, &ctx, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |c| c.id.0)))
}

async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
) -> Result<impl IntoResponse, ApiError> {
    let customer = app::customers::get(&state.pool, &ctx, id).await?;
    Ok((etag(customer.version), Json(customer)))
}

/// The set in force now (with its `ETag`) or at `as_of`.
async fn qualifications(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
    Query(AsOf { as_of }): Query<AsOf>,
) -> Result<impl IntoResponse, ApiError> {
    let record = app::customers::qualifications(&state.pool, &ctx, id, as_of).await?;
    Ok((etag(record.version), Json(record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetQualifications {
    special_qualifications: BTreeSet<SpecialQualification>,
    #[serde(default)]
    evidence: CustomerEvidence,
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct QualificationUpdateBody {
    #[serde(flatten)]
    record: QualificationRecord,
    warnings: Vec<Warning>,
}

async fn set_qualifications(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
    IfMatch(precondition): IfMatch,
    Json(body): Json<SetQualifications>,
) -> Result<impl IntoResponse, ApiError> {
    let change = qualification_change(
        body.special_qualifications,
        body.evidence,
        body.reason.as_deref(),
    )?;
    let update =
        app::customers::set_qualifications(&state.pool, &ctx, id, precondition, &change).await?;
    Ok((
        etag(update.record.version),
        Json(QualificationUpdateBody {
            record: update.record,
            warnings: update.warnings,
        }),
    ))
}

async fn qualification_history(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
    Query(params): Query<VersionPageParams>,
) -> Result<Json<Page<QualificationRecord, i64>>, ApiError> {
    let (after, fetch, limit) = params.checked()?;
    let rows = app::customers::qualification_history(&state.pool, &ctx, id, after, fetch).await?;
    Ok(Json(Page::from_rows(rows, limit, |r| r.version)))
}

#[derive(Debug, Serialize)]
struct CustomerPartners {
    customer_id: CustomerId,
    partner_ids: Vec<PartnerId>,
}

async fn partners(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
) -> Result<Json<CustomerPartners>, ApiError> {
    let partner_ids = app::customers::partners(&state.pool, &ctx, id).await?;
    Ok(Json(CustomerPartners {
        customer_id: id,
        partner_ids,
    }))
}

#[derive(Debug, Serialize)]
struct Relationship {
    customer_id: CustomerId,
    partner_id: PartnerId,
}

/// Idempotent: 201 when the relationship is new, 200 when it already existed.
async fn link_partner(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path((customer_id, partner_id)): Path<(CustomerId, PartnerId)>,
) -> Result<impl IntoResponse, ApiError> {
    let created = app::customers::link_partner(&state.pool, &ctx, customer_id, partner_id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Relationship {
            customer_id,
            partner_id,
        }),
    ))
}

/// Largest accepted import body: room for well over 100k lines.
const IMPORT_MAX_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct ImportParams {
    #[serde(default)]
    mode: ImportMode,
}

/// `POST /v1/customers:import`: NDJSON, one customer (as for `POST /v1/customers`) per line.
async fn import(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-ndjson") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "An import is NDJSON: send it with content-type application/x-ndjson.",
        ));
    }
    let body = body.map_err(ApiError::from)?;
    let (lines, errors) = parse_import(&body);
    let report =
        app::import::import_customers(&state.pool, &ctx, lines, errors, params.mode).await?;
    if report.imported == 0 && report.rejected > 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "import_rejected",
            format!(
                "{} line(s) are invalid, so nothing was imported.",
                report.rejected
            ),
        )
        .with("rejected", json!(report.rejected))
        .with("errors", json!(report.errors)));
    }
    Ok((StatusCode::CREATED, Json(report)))
}

/// Parses every non-blank line; a bad line becomes an error with its line number and code.
fn parse_import(body: &[u8]) -> (Vec<ImportLine>, Vec<LineError>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in body.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = index + 1;
        let parsed = serde_json::from_slice::<CreateCustomer>(raw)
            .map_err(|e| {
                let code = if e.is_data() {
                    "invalid_body"
                } else {
                    "malformed_json"
                };
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
            })
            .and_then(CreateCustomer::parse);
        match parsed {
            Ok((name, change)) => lines.push(ImportLine { line, name, change }),
            Err(e) => errors.push(LineError {
                line,
                code: e.code(),
                field: e.field(),
                message: e.detail().to_owned(),
            }),
        }
    }
    (lines, errors)
}
