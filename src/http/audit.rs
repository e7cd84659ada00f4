//! `/v1/audit`: the event log for auditors (search, page, export) and chain verification.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use base64::{
    Engine,
    engine::{
        DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::URL_SAFE_NO_PAD,
    },
};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState, Code,
    extract::{Json, Query},
    openapi::{AUTHENTICATED, QUERY, problems},
    pagination::{Page, page_size},
};
use crate::{
    app::{
        self, RequestContext,
        audit::{AuditedEvent, EventQuery},
        principals::ActorName,
    },
    domain::{CustomerId, EventType, PartnerId, audit::ChainReport, checked_text},
};

/// Longest `actor` filter: the actors are user and token ids and `system`.
const MAX_ACTOR_CHARS: usize = 200;

/// The streamed representations of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    /// `text/csv`, with a header line.
    Csv,
    /// `application/x-ndjson`: one JSON event per line.
    Ndjson,
}

impl ExportFormat {
    /// The response's `Content-Type`.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    /// The file name extension of a download.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }
}

/// The audit routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(verify))
}

/// The event search parameters. Unknown parameters are refused: a misspelt filter must not
/// silently widen an auditor's answer to the whole log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventParams {
    /// Events about this customer, whichever partner acted.
    customer_id: Option<CustomerId>,
    /// Events naming this partner.
    partner_id: Option<PartnerId>,
    /// Events by this principal (a user's or a token's id, or `system`).
    #[param(min_length = 1, max_length = 200)]
    actor: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<EventType>,
    /// Events naming this policy version: decisions made under it, and its publication.
    #[param(minimum = 1, maximum = 2147483647)]
    policy_version: Option<u32>,
    /// RFC 3339; events at or after it.
    #[serde(default, deserialize_with = "super::extract::optional_instant")]
    from: Option<DateTime<Utc>>,
    /// RFC 3339; events before it.
    #[serde(default, deserialize_with = "super::extract::optional_instant")]
    to: Option<DateTime<Utc>>,
    /// Page size, 1 to 200 (default 50); exports ignore it.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{22}$")]
    after: Option<String>,
}

impl EventParams {
    fn query(&self) -> Result<EventQuery, ApiError> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(ApiError::invalid_query("from must not be after to"));
        }
        // No actor is empty, long or holds control characters (nor can PostgreSQL text hold NUL).
        if self
            .actor
            .as_deref()
            .is_some_and(|a| a != a.trim() || checked_text(a, MAX_ACTOR_CHARS).is_none())
        {
            return Err(ApiError::invalid_query(format!(
                "actor must be 1 to {MAX_ACTOR_CHARS} printable characters"
            )));
        }
        let policy_version = self
            .policy_version
            .map(|v| {
                app::audit::policy_version_filter(v.into()).ok_or_else(|| {
                    ApiError::invalid_query("policy_version is a version number, from 1")
                })
            })
            .transpose()?;
        Ok(EventQuery {
            customer_id: self.customer_id,
            policy_version,
            partner_id: self.partner_id,
            actor: self.actor.clone(),
            event_type: self.event_type,
            from: self.from,
            to: self.to,
            before: self.after.as_deref().map(decode_cursor).transpose()?,
        })
    }
}

/// The cursor is the last event id of a page, base64url without padding: opaque to clients, so
/// what it holds may change.
fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Decodes any 22 base64url characters: the unused low bits of the last one are ignored, so every
/// string the contract's pattern allows is a position in the log.
const CURSOR: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    CURSOR
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::invalid_query("after is not a cursor returned by this API"))
}

/// An event as auditors see it.
#[derive(Debug, Serialize, ToSchema)]
struct AuditEvent {
    id: Uuid,
    occurred_at: DateTime<Utc>,
    /// The principal that acted (a user's or a token's id), `system` for the command line.
    actor: String,
    /// The actor in words, resolved when read from the principal as it is now; not hashed.
    /// Null when the actor is not a known principal.
    #[schema(nullable)]
    actor_name: Option<ActorName>,
    actor_role: Option<String>,
    actor_partner_id: Option<Uuid>,
    request_id: Option<String>,
    customer_id: Option<Uuid>,
    partner_id: Option<Uuid>,
    #[serde(rename = "type")]
    event_type: String,
    /// Embedded as stored (`payload::text`), the exact text that was hashed.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    chain_id: Uuid,
    chain_seq: i64,
    prev_hash: String,
    hash: String,
}

impl TryFrom<AuditedEvent> for AuditEvent {
    type Error = app::Error;

    fn try_from(audited: AuditedEvent) -> Result<Self, Self::Error> {
        let AuditedEvent {
            event: row,
            actor_name,
        } = audited;
        let payload = RawValue::from_string(row.payload).map_err(|e| {
            app::Error::Internal(anyhow::Error::new(e).context("stored payload is not JSON"))
        })?;
        Ok(Self {
            id: row.id,
            occurred_at: row.occurred_at,
            actor: row.actor,
            actor_name,
            actor_role: row.actor_role,
            actor_partner_id: row.actor_partner_id,
            request_id: row.request_id,
            customer_id: row.customer_id,
            partner_id: row.partner_id,
            event_type: row.event_type,
            payload,
            chain_id: row.chain_id,
            chain_seq: row.chain_seq,
            prev_hash: hex::encode(row.prev_hash),
            hash: hex::encode(row.hash),
        })
    }
}

/// The representation asked for in `Accept`; JSON pages unless an export format is named.
/// Media types are taken in the order listed (quality values are not weighed).
fn negotiate(headers: &HeaderMap) -> Result<Option<ExportFormat>, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(None);
    };
    for media_type in accept.to_str().unwrap_or_default().split(',') {
        let essence = media_type.split(';').next().unwrap_or_default().trim();
        match essence.to_ascii_lowercase().as_str() {
            "text/csv" => return Ok(Some(ExportFormat::Csv)),
            "application/x-ndjson" => return Ok(Some(ExportFormat::Ndjson)),
            "application/json" | "application/*" | "*/*" => return Ok(None),
            _ => {}
        }
    }
    Err(ApiError::new(
        Code::NotAcceptable,
        "Events are available as application/json, text/csv or application/x-ndjson.",
    ))
}

problems!(
    EventsProblems = [
        AUTHENTICATED,
        QUERY,
        &[Code::NotAcceptable, Code::ExportBusy]
    ]
);

/// Search the event log: a page of matching events, newest first; or, with `Accept: text/csv` or
/// `application/x-ndjson`, all of them streamed (auditors).
#[utoipa::path(
    get, path = "/v1/audit/events", tag = "audit", operation_id = "search_events",
    params(EventParams),
    responses(
        (status = 200, description = "Matching events, newest first.", content(
            (Page<AuditEvent, String> = "application/json"),
            (String = "text/csv", example = "id,occurred_at,actor,actor_role,actor_partner_id,request_id,customer_id,partner_id,type,payload,chain_id,chain_seq,prev_hash,hash,actor_kind,actor_name,actor_username,actor_partner_name\n"),
            (String = "application/x-ndjson"),
        )),
        EventsProblems,
    ),
)]
async fn events(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Response, ApiError> {
    let format = negotiate(&headers)?;
    let query = params.query()?;
    let Some(format) = format else {
        let limit = page_size(params.limit)?;
        let rows = app::audit::events(&state.pool, &ctx, &query, limit as i64 + 1).await?;
        let items = rows
            .into_iter()
            .map(AuditEvent::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let page: Page<_, String> = Page::from_rows(items, limit, |e| encode_cursor(e.id));
        return Ok(Json(page).into_response());
    };
    let batches = app::audit::export(&state.pool, &state.exports, &ctx, &query).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        export_body(batches, format),
    )
        .into_response())
}

/// The body of an export: each batch of events encoded as one chunk, CSV with its header line
/// first. Shared by the API and the console's download.
pub(crate) fn export_body(
    batches: impl Stream<Item = app::Result<Vec<AuditedEvent>>> + Send + 'static,
    format: ExportFormat,
) -> Body {
    let mut header_line = match format {
        ExportFormat::Csv => Some(Bytes::from_static(CSV_HEADER.as_bytes())),
        ExportFormat::Ndjson => None,
    };
    let chunks = batches.map(move |batch| {
        let batch = batch?;
        let mut out = Vec::with_capacity(batch.len() * 512);
        if let Some(line) = header_line.take() {
            out.extend_from_slice(&line);
        }
        for event in batch {
            match format {
                ExportFormat::Csv => csv_line(&mut out, &event),
                ExportFormat::Ndjson => ndjson_line(&mut out, event)?,
            }
        }
        Ok::<_, app::Error>(Bytes::from(out))
    });
    // A failure after the first bytes cannot change the status any more: the body is cut short,
    // which clients see as a broken transfer, never as a complete export.
    let chunks = chunks.inspect(|chunk| {
        if let Err(error) = chunk {
            tracing::error!(error = ?error, "event export failed");
        }
    });
    Body::from_stream(chunks)
}

/// The first line of a CSV export: the stored columns, then the actor in words (not hashed; last,
/// so the stored columns keep their places).
const CSV_HEADER: &str = "id,occurred_at,actor,actor_role,actor_partner_id,request_id,customer_id,partner_id,type,payload,chain_id,chain_seq,prev_hash,hash,actor_kind,actor_name,actor_username,actor_partner_name\n";

/// One CSV record (RFC 4180). `payload` is the stored jsonb text, so an auditor can recompute the
/// hash from the export alone (after undoing [`csv_text`]'s formula guard).
fn csv_line(out: &mut Vec<u8>, event: &AuditedEvent) {
    let row = &event.event;
    let name = event.actor_name.as_ref();
    let optional = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    let optional_text = |text: Option<&str>| text.map(csv_text).unwrap_or_default();
    let fields = [
        row.id.to_string(),
        row.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        csv_text(&row.actor),
        row.actor_role.as_deref().map(csv_text).unwrap_or_default(),
        optional(row.actor_partner_id),
        row.request_id.as_deref().map(csv_text).unwrap_or_default(),
        optional(row.customer_id),
        optional(row.partner_id),
        csv_text(&row.event_type),
        csv_text(&row.payload),
        row.chain_id.to_string(),
        row.chain_seq.to_string(),
        hex::encode(&row.prev_hash),
        hex::encode(&row.hash),
        name.map(|n| n.kind.as_str().to_owned()).unwrap_or_default(),
        optional_text(name.map(|n| n.name.as_str())),
        optional_text(name.and_then(|n| n.username.as_deref())),
        optional_text(name.and_then(|n| n.partner_name.as_deref())),
    ];
    out.extend_from_slice(fields.join(",").as_bytes());
    out.push(b'\n');
}

/// A CSV field of stored text, safe to open in a spreadsheet: a cell a spreadsheet would run as a
/// formula (OWASP CSV injection: one starting with `=`, `+`, `-`, `@`, tab or carriage return) is
/// prefixed with `'`, and so is one already starting with `'`, so that removing one leading `'`
/// from any cell that has one gives back the stored text exactly. Quoted when it holds a
/// separator, a quote or a line break.
fn csv_text(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn ndjson_line(out: &mut Vec<u8>, event: AuditedEvent) -> Result<(), app::Error> {
    serde_json::to_writer(&mut *out, &AuditEvent::try_from(event)?)
        .map_err(|e| app::Error::Internal(anyhow::Error::new(e).context("encode event")))?;
    out.push(b'\n');
    Ok(())
}

/// Exactly one of them names the chain to verify.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct VerifyParams {
    /// Verify this customer's chain.
    customer_id: Option<CustomerId>,
    /// Verify this partner's chain.
    partner_id: Option<PartnerId>,
}

problems!(
    VerifyProblems = [
        AUTHENTICATED,
        QUERY,
        &[Code::CustomerNotFound, Code::PartnerNotFound]
    ]
);

/// Recompute a customer's or a partner's hash chain and report the first broken link (auditors).
#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit", operation_id = "verify_chain",
    params(VerifyParams),
    responses((status = 200, description = "The chain's report.", body = ChainReport), VerifyProblems),
)]
async fn verify(
    State(state): State<AppState>,
    ctx: RequestContext,
    Query(params): Query<VerifyParams>,
) -> Result<Json<ChainReport>, ApiError> {
    let report = match (params.customer_id, params.partner_id) {
        (Some(customer), None) => app::audit::verify_customer(&state.pool, &ctx, customer).await?,
        (None, Some(partner)) => app::audit::verify_partner(&state.pool, &ctx, partner).await?,
        _ => {
            return Err(ApiError::invalid_query(
                "give exactly one of customer_id and partner_id",
            ));
        }
    };
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        for bad in ["", "not a cursor", "AAAA", &encode_cursor(id)[1..]] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().code(),
                "invalid_query_parameter"
            );
        }
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_text("system"), "system");
        assert_eq!(
            csv_text(r#"{"a": "b", "c": 1}"#),
            r#""{""a"": ""b"", ""c"": 1}""#
        );
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn csv_cells_never_start_a_formula_and_the_guard_can_be_undone() {
        for (stored, exported) in [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1", "'+1"),
            ("-1+1", "'-1+1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            ("'quoted", "''quoted"),
            ("system", "system"),
            ("{\"a\": 1}", "\"{\"\"a\"\": 1}\""),
        ] {
            let cell = csv_text(stored);
            assert_eq!(cell, exported, "{stored:?}");
            // What an auditor does: unquote (RFC 4180), then drop one leading `'`.
            let unquoted = cell
                .strip_prefix('"')
                .and_then(|c| c.strip_suffix('"'))
                .map_or_else(|| cell.clone(), |c| c.replace("\"\"", "\""));
            let text = unquoted.strip_prefix('\'').unwrap_or(&unquoted);
            assert_eq!(text, stored);
        }
    }

    #[test]
    fn accept_picks_the_first_known_media_type() {
        let accept = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static(value));
            negotiate(&headers)
        };
        assert_eq!(accept("text/csv").unwrap(), Some(ExportFormat::Csv));
        assert_eq!(
            accept("application/x-ndjson; q=1, */*").unwrap(),
            Some(ExportFormat::Ndjson)
        );
        assert_eq!(accept("application/json, text/csv").unwrap(), None);
        assert_eq!(accept("*/*").unwrap(), None);
        assert_eq!(negotiate(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            accept("application/xml").unwrap_err().code(),
            "not_acceptable"
        );
    }
}
