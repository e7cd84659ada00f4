//! `/v1/customers`: customers, their qualification sets (with evidence, versions and history) and
//! partner relationships.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use axum::{
    Extension,
    body::Bytes,
    extract::{Request, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Code, etag,
    extract::{AsOf, IfMatch, Json, Path, Query},
    openapi::{AUTHENTICATED, IF_MATCH, JSON_BODY, PATH, QUERY, problems},
    pagination::{Page, PageParams, VersionPageParams},
};
use crate::{
    app::{
        self, RequestContext, Warning,
        customers::{CreateCustomer, QualificationChange},
        import::{
            ImportMode, ImportProgress, ImportReport,
            file::{CustomerFile, FileError},
        },
        principals::ActorName,
    },
    db::customers::{Customer, CustomerEvidence, QualificationRecord},
    domain::{CustomerId, FileFormat, PartnerId, SpecialQualification},
};

/// The customer routes but the import, which has limits of its own ([`import_router`]).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(qualifications, set_qualifications))
        .routes(routes!(qualification_history))
        .routes(routes!(partners))
        .routes(routes!(link_partner))
}

/// Checks the parts of a qualification change that the body carries.
pub(super) fn qualification_change(
    raw: BTreeSet<SpecialQualification>,
    evidence: CustomerEvidence,
    reason_text: Option<&str>,
) -> Result<QualificationChange, ApiError> {
    // The set is checked by the use case, under the policy in force when it is recorded.
    Ok(QualificationChange {
        qualifications: raw.into_iter().collect(),
        evidence,
        reason: super::extract::reason(reason_text)?,
    })
}

problems!(
    CreateProblems = [
        AUTHENTICATED,
        JSON_BODY,
        &[
            Code::InvalidField,
            Code::InvalidQualificationSet,
            Code::ExternalReferenceTaken
        ]
    ]
);

/// Create a customer (back office).
///
/// An `external_reference` that another customer has is refused (409 `external_reference_taken`,
/// naming that customer).
#[utoipa::path(
    post, path = "/v1/customers", tag = "customers", operation_id = "create_customer",
    request_body = CreateCustomer,
    responses(
        (status = 201, description = "Created.", body = Customer, headers(
            ("ETag" = String, description = "The version, e.g. `\"1\"`."),
            ("Location" = String, description = "The customer's URL."))),
        CreateProblems,
    ),
)]
async fn create(
    State(state): State<AppState>,
    ctx: RequestContext,
    Json(body): Json<CreateCustomer>,
) -> Result<impl IntoResponse, ApiError> {
    let customer = app::customers::create(&state.pool, &ctx, body.parse()?).await?;
    let location = format!("/v1/customers/{}", customer.id);
    Ok((
        StatusCode::CREATED,
        etag(customer.version),
        [(header::LOCATION, location)],
        Json(customer),
    ))
}

problems!(ListProblems = [AUTHENTICATED, QUERY]);

/// List customers (partner roles see related ones), oldest first.
#[utoipa::path(
    get, path = "/v1/customers", tag = "customers", operation_id = "list_customers",
    params(PageParams),
    responses((status = 200, description = "A page of customers.", body = Page<Customer>), ListProblems),
)]
async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<Customer>>, ApiError> {
    let (keyset, limit) = params.keyset()?;
    let rows = app::customers::list(&state.pool, &ctx, keyset).await?;
    Ok(Json(Page::from_rows(rows, limit, |c| c.id.0)))
}

problems!(ShowProblems = [AUTHENTICATED, PATH, &[Code::CustomerNotFound]]);

/// Read a customer.
#[utoipa::path(
    get, path = "/v1/customers/{customer_id}", tag = "customers", operation_id = "get_customer",
    params(("customer_id" = CustomerId, Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "The customer.", body = Customer,
         headers(("ETag" = String, description = "The version."))),
        ShowProblems,
    ),
)]
async fn show(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
) -> Result<impl IntoResponse, ApiError> {
    let customer = app::customers::get(&state.pool, &ctx, id).await?;
    Ok((etag(customer.version), Json(customer)))
}

problems!(
    QualificationsProblems = [
        AUTHENTICATED,
        PATH,
        QUERY,
        &[Code::CustomerNotFound, Code::NotRecordedAt]
    ]
);

/// The qualification set in force now (with its `ETag`) or at `as_of`.
#[utoipa::path(
    get, path = "/v1/customers/{customer_id}/qualifications", tag = "customers",
    operation_id = "get_customer_qualifications",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), AsOf),
    responses(
        (status = 200, description = "The version in force.", body = QualificationRecord,
         headers(("ETag" = String, description = "The version."))),
        QualificationsProblems,
    ),
)]
async fn qualifications(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
    Query(AsOf { as_of }): Query<AsOf>,
) -> Result<impl IntoResponse, ApiError> {
    let record = app::customers::qualifications(&state.pool, &ctx, id, as_of).await?;
    Ok((etag(record.version), Json(record)))
}

/// The customer's whole new qualification set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"special_qualifications": ["gcc"], "evidence": {"gcc": "GCV-123"},
    "reason": "government cloud validation"}))]
struct SetQualifications {
    /// One of the sets of the policy version in force (R3).
    #[schema(value_type = Vec<SpecialQualification>)]
    special_qualifications: BTreeSet<SpecialQualification>,
    /// Evidence reference per added qualification (required for each; kept ones keep theirs).
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    evidence: CustomerEvidence,
    /// Why (required).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1000, pattern = "\\S")]
    reason: Option<String>,
}

/// The new version, and what the caller should know about it.
#[derive(Debug, Serialize, ToSchema)]
struct QualificationUpdateBody {
    #[serde(flatten)]
    record: QualificationRecord,
    /// E.g. `gcc_lockout_still_applies`.
    warnings: Vec<Warning>,
}

problems!(
    SetQualificationsProblems = [
        AUTHENTICATED,
        JSON_BODY,
        PATH,
        IF_MATCH,
        &[
            Code::CustomerNotFound,
            Code::InvalidField,
            Code::InvalidQualificationSet,
        ]
    ]
);

/// Replace the customer's qualification set (back office).
#[utoipa::path(
    put, path = "/v1/customers/{customer_id}/qualifications", tag = "customers",
    operation_id = "set_customer_qualifications",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), IfMatch),
    request_body = SetQualifications,
    responses(
        (status = 200, description = "The new version.", body = QualificationUpdateBody,
         headers(("ETag" = String, description = "The new version."))),
        SetQualificationsProblems,
    ),
)]

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

problems!(HistoryProblems = [AUTHENTICATED, PATH, QUERY, &[Code::CustomerNotFound]]);

/// A version of a customer's qualification history, with its actor in words.
#[derive(Debug, Serialize, ToSchema)]
struct QualificationVersion {
    #[serde(flatten)]
    record: QualificationRecord,
    /// Who recorded it, in words (resolved when read, not hashed); null when the actor is not a
    /// known principal, or, for partner roles, not one of their partner's.
    #[schema(nullable)]
    actor_name: Option<ActorName>,
}

/// Every qualification set the customer had, oldest first.
#[utoipa::path(
    get, path = "/v1/customers/{customer_id}/qualifications/history", tag = "customers",
    operation_id = "get_customer_qualification_history",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), VersionPageParams),
    responses((status = 200, description = "A page of versions.", body = Page<QualificationVersion, i64>), HistoryProblems),
)]
async fn qualification_history(
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<CustomerId>,
    Query(params): Query<VersionPageParams>,
) -> Result<Json<Page<QualificationVersion, i64>>, ApiError> {
    let (after, fetch, limit) = params.checked()?;
    let rows = app::customers::qualification_history(&state.pool, &ctx, id, after, fetch).await?;
    let names =
        app::principals::names(&state.pool, &ctx, rows.iter().map(|r| r.actor.as_str())).await?;
    let versions = rows
        .into_iter()
        .map(|record| QualificationVersion {
            actor_name: names.get(&record.actor),
            record,
        })
        .collect();
    Ok(Json(Page::from_rows(versions, limit, |v| v.record.version)))
}

/// The partners related to a customer.
#[derive(Debug, Serialize, ToSchema)]
struct CustomerPartners {
    customer_id: CustomerId,
    partner_ids: Vec<PartnerId>,
}

problems!(PartnersProblems = [AUTHENTICATED, PATH, &[Code::CustomerNotFound]]);

/// The partners related to the customer.
#[utoipa::path(
    get, path = "/v1/customers/{customer_id}/partners", tag = "customers",
    operation_id = "list_customer_partners",
    params(("customer_id" = CustomerId, Path, description = "The customer's id.")),
    responses((status = 200, description = "The related partners.", body = CustomerPartners), PartnersProblems),
)]
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

/// A customer's relationship with a partner.
#[derive(Debug, Serialize, ToSchema)]
struct Relationship {
    customer_id: CustomerId,
    partner_id: PartnerId,
}

problems!(
    LinkProblems = [
        AUTHENTICATED,
        PATH,
        &[Code::CustomerNotFound, Code::PartnerNotFound]
    ]
);

/// Relate a partner to the customer. Idempotent: 201 when the relationship is new, 200 when it
/// already existed.
#[utoipa::path(
    put, path = "/v1/customers/{customer_id}/partners/{partner_id}", tag = "customers",
    operation_id = "link_customer_partner",
    params(("customer_id" = CustomerId, Path, description = "The customer's id."), ("partner_id" = PartnerId, Path, description = "The partner's id.")),
    responses(
        (status = 201, description = "Related now.", body = Relationship),
        (status = 200, description = "Already related.", body = Relationship),
        LinkProblems,
    ),
)]
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

/// The import route, to be given its own body limit and [`import_budget`].
pub fn import_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

/// The import's time budget, in place of the request timeout: a large import that the body limit
/// allows must be able to finish. When the budget runs out, the import is dropped (its transaction
/// rolls back) and the answer says how far it had got.
pub async fn import_budget(
    State(budget): State<Duration>,
    mut request: Request,
    next: Next,
) -> Response {
    let progress = Arc::new(ImportProgress::new(budget));
    request.extensions_mut().insert(Arc::clone(&progress));
    match tokio::time::timeout(budget, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let (lines, valid) = progress.lines();
            tracing::warn!(lines, valid, "customer import ran out of time");
            ApiError::new(
                Code::ImportTimeout,
                format!(
                    "The import did not finish within {} s and was rolled back: nothing was \
                     imported. {lines} line(s) had been read, {valid} of them valid. Import \
                     smaller files, or ask for a larger IMPORT_TIMEOUT_SECS.",
                    budget.as_secs()
                ),
            )
            .with("imported", json!(0))
            .with("lines_read", json!(lines))
            .with("lines_valid", json!(valid))
            .into_response()
        }
    }
}

/// The import's parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ImportParams {
    /// `all_or_nothing` (default) or `partial`.
    #[serde(default)]
    mode: ImportMode,
}

problems!(
    ImportProblems = [
        AUTHENTICATED,
        QUERY,
        &[
            Code::UnsupportedMediaType,
            Code::UnreadableBody,
            Code::PayloadTooLarge,
            Code::ImportRejected,
            Code::ImportTimeout,
        ]
    ]
);

/// Bulk-create customers from NDJSON, one `POST /v1/customers` body per line (back office).
///
/// A line whose `external_reference` another customer has is skipped and reported in
/// `already_imported`, so importing a file twice creates its customers once; two lines with the
/// same reference are a bad line. Lines without a reference are created every time.
#[utoipa::path(
    post, path = "/v1/customers:import", tag = "customers", operation_id = "import_customers",
    params(ImportParams),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "One customer per line, each as the body of `POST /v1/customers`; up to `IMPORT_BODY_LIMIT_BYTES` (256 MiB by default).",
        example = "{\"name\":\"Northwind School\",\"special_qualifications\":[\"education\"],\"evidence\":{\"education\":\"QEU-1\"}}\n"),
    responses(
        (status = 201, description = "Imported (with `mode=partial`, the bad lines are reported).", body = ImportReport),
        ImportProblems,
    ),
)]
async fn import(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<ImportParams>,
    Extension(progress): Extension<Arc<ImportProgress>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-ndjson") {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "An import is NDJSON: send it with content-type application/x-ndjson.",
        ));
    }
    let body = body.map_err(ApiError::from)?;
    let file = CustomerFile::open(FileFormat::Ndjson, &body).map_err(|e| match e {
        // Not for NDJSON, which has no header; an empty file imports nothing.
        FileError::Empty | FileError::Header(_) => ApiError::new(Code::InvalidBody, e.to_string()),
    })?;
    let policy = app::policies::current(&state.pool).await?;
    let mut lines = Vec::new();
    let errors = app::import::read_all(&file, &policy, usize::MAX, |line| lines.push(line)).kept;
    let report =
        app::import::import_customers(&state.pool, &ctx, lines, errors, params.mode, &progress)
            .await?;
    // Refused: all or nothing with bad lines, or nothing but bad lines.
    if report.rejected > 0
        && (params.mode == ImportMode::AllOrNothing || report.imported + report.skipped == 0)
    {
        return Err(ApiError::new(
            Code::ImportRejected,
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
