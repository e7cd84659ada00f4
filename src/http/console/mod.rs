//! The back-office console: server-rendered HTML pages (askama templates compiled into the
//! binary) for staff, auditors and partner users, signed in with a username and password.
//!
//! Every action goes through the same use cases as the API, with a [`RequestContext`] whose
//! principal is the signed-in user, so it is authorized, validated, transactional and audited the
//! same way. Forms work without JavaScript.
//!
//! CSRF: every state-changing request must come from our own pages. Two checks, both required:
//! the browser's `Sec-Fetch-Site` (or, without it, `Origin`) must not name another site, and every
//! form of a signed-in user carries the session's CSRF token (compared in constant time). The
//! session cookie is also `SameSite=Strict`.

mod access;
mod audit;
mod customers;
mod home;
mod import;
mod offers;
mod partners;
mod policies;
mod view;
mod webhooks;

pub use import::upload_router;

use askama::Template;
use axum::{
    Router,
    body::Body,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{AppState, REQUEST_ID};
use crate::{
    app::{
        self, RequestContext,
        users::{AccountError, SessionLimits},
    },
    config::SecureCookies,
    db::users::LiveSession,
    domain::{Action, PartnerId, Role, permits},
};

/// What a request stopped at its time limit tells the user.
const TOO_LONG: &str = "This took too long and was stopped; nothing was changed. Please try again.";

/// How the console keeps sessions.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Idle and absolute session limits.
    pub sessions: SessionLimits,
    /// When the cookie is `Secure`.
    pub secure_cookies: SecureCookies,
}

/// Name of the session cookie.
const COOKIE: &str = "pc_session";

/// The console's routes; merged into the service's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/console.css", get(stylesheet))
        .merge(home::router())
        .merge(customers::router())
        .merge(partners::router())
        .merge(offers::router())
        .merge(policies::router())
        .merge(access::router())
        .merge(audit::router())
        .merge(import::router())
        .merge(webhooks::router())
        .layer(axum::middleware::from_fn(same_origin_writes))
}

/// The one stylesheet, compiled into the binary.
async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../templates/console.css"),
    )
}

/// Refuses a state-changing request that a browser says comes from another site (the first CSRF
/// check; the form token is the second).
async fn same_origin_writes(request: Request, next: axum::middleware::Next) -> Response {
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && !same_origin(request.headers())
    {
        return ConsoleError::CrossSite.into_response();
    }
    next.run(request).await
}

/// Whether a request comes from our own pages, as far as the browser tells: `Sec-Fetch-Site`
/// when sent (every current browser), else `Origin` against `Host`; a request with neither
/// (not from a browser) passes, and still needs the session's form token.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(_, authority)| authority.as_bytes() == host.as_bytes()),
        (Some(_), None) => false,
    }
}

/// The value of our cookie in a `Cookie` header.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the cookie should carry `Secure` for this request.
fn secure(settings: &Settings, headers: &HeaderMap) -> bool {
    match settings.secure_cookies {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => headers
            .get("x-forwarded-proto")
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https")),
    }
}

/// The `Set-Cookie` value starting a session (`Some`) or clearing it (`None`).
fn set_cookie(secret: Option<&str>, settings: &Settings, headers: &HeaderMap) -> HeaderValue {
    let secure = if secure(settings, headers) {
        "; Secure"
    } else {
        ""
    };
    let value = match secret {
        Some(secret) => format!(
            "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            settings.sessions.absolute.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).expect("cookie secrets are base64url")
}

/// A signed-in person, for every page but sign-in.
#[derive(Debug, Clone)]
pub struct Staff {
    /// The context every use case gets.
    pub ctx: RequestContext,
    /// The session.
    pub session: LiveSession,
}

impl Staff {
    /// The user's role.
    pub fn role(&self) -> Role {
        self.session.principal.role
    }

    /// Whether the user's role may take `action` (to show only what can be done).
    pub fn may(&self, action: Action) -> bool {
        permits(self.role(), action)
    }

    /// The partner a partner user acts for.
    pub fn partner(&self) -> Option<PartnerId> {
        self.session.principal.partner_scope()
    }

    /// What the page frame shows of the user.
    pub fn chrome(&self, active: &'static str) -> view::Chrome {
        view::Chrome::new(self, active)
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let signed_out = || ConsoleError::SignInRequired(parts.uri.path().to_owned());
        let secret = session_cookie(&parts.headers).ok_or_else(signed_out)?;
        let session = app::users::session(&state.pool, state.console.sessions, secret)
            .await?
            .ok_or_else(signed_out)?;
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self {
            ctx: RequestContext::new(Some(session.principal.clone()), request_id)
                .answered_by(super::Deadline::of(parts)),
            session,
        })
    }
}

/// A form posted by a signed-in user, its CSRF token checked: `T` is the form without the token.
#[derive(Debug)]
pub struct Posted<T> {
    /// Who posted it.
    pub staff: Staff,
    /// The form's fields.
    pub form: T,
}

/// A form whose only field is its CSRF token (a button: sign out, revoke, start).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = ConsoleError;

    async fn from_request(
        request: Request<Body>,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let staff = Staff::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, state.limits.body_bytes)
            .await
            .map_err(|_| ConsoleError::BadForm("The form is too large.".into()))?;
        let token: CsrfField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| ConsoleError::BadForm(e.to_string()))?;
        staff.check_csrf(&token.csrf)?;
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| ConsoleError::BadForm(e.to_string()))?;
        Ok(Self { staff, form })
    }
}

impl Staff {
    /// The second CSRF check: the form's token is the session's.
    pub fn check_csrf(&self, sent: &str) -> Result<(), ConsoleError> {
        let expected = self.session.csrf_token.as_bytes();
        let sent = sent.as_bytes();
        // Constant time over the expected length, so timing tells nothing about the token.
        let differs = expected.len() != sent.len()
            || expected
                .iter()
                .zip(sent)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0;
        if differs {
            Err(ConsoleError::CsrfToken)
        } else {
            Ok(())
        }
    }
}

/// Why a console page could not be shown; each renders as a page of its own.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Not signed in (or the session ended): go to sign-in, then back to this path.
    #[error("sign-in required")]
    SignInRequired(String),
    /// A state-changing request from another site.
    #[error("cross-site request refused")]
    CrossSite,
    /// A form without this session's token.
    #[error("missing or wrong form token")]
    CsrfToken,
    /// No such page.
    #[error("not found")]
    NotFound,
    /// A form that could not be read at all.
    #[error("unreadable form: {0}")]
    BadForm(String),
    /// What a use case refused or failed with.
    #[error(transparent)]
    App(#[from] app::Error),
}

impl From<AccountError> for ConsoleError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::App(e) => Self::App(e),
            other => Self::BadForm(other.to_string()),
        }
    }
}

impl ConsoleError {
    /// The status and the sentence shown for this error.
    fn status_and_message(&self) -> (StatusCode, String) {
        use app::Error as E;
        match self {
            Self::SignInRequired(_) => (StatusCode::UNAUTHORIZED, "Please sign in.".into()),
            Self::CrossSite => (
                StatusCode::FORBIDDEN,
                "This form was sent from another site, so it was refused. Nothing was changed."
                    .into(),
            ),
            Self::CsrfToken => (
                StatusCode::FORBIDDEN,
                "This form is out of date or was not sent from this console (its security token \
                 does not match your session). Nothing was changed; reload the page and try again."
                    .into(),
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, "Not found.".into()),
            Self::BadForm(detail) => (
                StatusCode::BAD_REQUEST,
                format!("The form could not be read: {detail}"),
            ),
            Self::App(e) => match e {
                E::Forbidden { role, .. } => (
                    StatusCode::FORBIDDEN,
                    format!("Your role ({role}) may not do this."),
                ),
                E::CustomerNotFound(_)
                | E::PartnerNotFound(_)
                | E::SubscriptionNotFound(..)
                | E::OfferNotFound(_)
                | E::TokenNotFound(_)
                | E::WebhookEndpointNotFound(_)
                | E::NotRecordedAt(..) => (StatusCode::NOT_FOUND, "Not found.".into()),
                E::DatabaseUnavailable(source) => {
                    tracing::warn!(statement = source.statement, error = %source.source, "database unavailable");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The database is unavailable right now; please try again in a moment."
                            .into(),
                    )
                }
                E::RequestTimeout(source) => {
                    tracing::warn!(statement = source.statement, error = %source.source, "statement timed out");
                    (StatusCode::SERVICE_UNAVAILABLE, TOO_LONG.into())
                }
                E::PastDeadline => {
                    tracing::warn!("too little time left to record a purchase");
                    (StatusCode::SERVICE_UNAVAILABLE, TOO_LONG.into())
                }
                E::ExportBusy(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{e}. Please try again shortly."),
                ),
                E::Internal(source) => {
                    tracing::error!(error = ?source, "internal error");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong on our side; nothing was changed.".into(),
                    )
                }
                other => (StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
            },
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if let Self::SignInRequired(path) = &self {
            let target = format!("/sign-in?next={}", view::url_encode(path));
            return Redirect::to(&target).into_response();
        }
        let (status, message) = self.status_and_message();
        let page = view::ErrorPage {
            title: status.canonical_reason().unwrap_or("Error"),
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "error page did not render");
                status.into_response()
            }
        }
    }
}

/// Renders a page.
pub fn render(page: &impl Template) -> Result<Response, ConsoleError> {
    page.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| ConsoleError::App(app::Error::Internal(e.into())))
}

/// Renders a page with a status other than 200 (a form shown again with its errors: 422).
pub fn render_status(status: StatusCode, page: &impl Template) -> Result<Response, ConsoleError> {
    Ok((status, render(page)?).into_response())
}

/// How the actors among `ids` (events' and histories' `actor`) are shown to `staff`: users and
/// tokens by name and role (and partner), `system` as the command line. Partner users see their own
/// partner's people by name and anyone else by role alone, so staff names and other partners stay
/// private.
pub async fn actor_names<'a>(
    state: &AppState,
    staff: &Staff,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<std::collections::HashMap<String, String>, ConsoleError> {
    let ids: Vec<String> = ids
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut names: std::collections::HashMap<String, String> =
        app::users::principal_names(&state.pool, &ids)
            .await?
            .into_iter()
            .map(|p| {
                let shown = match staff.partner() {
                    Some(own) if p.partner_id != Some(own) => format!("{} staff", p.role),
                    _ => {
                        let partner = p.partner_name.map(|n| format!(", {n}")).unwrap_or_default();
                        match p.username {
                            Some(_) => format!("{} ({}{partner})", p.name, p.role),
                            None => format!("token “{}” ({}{partner})", p.name, p.role),
                        }
                    }
                };
                (p.id.to_string(), shown)
            })
            .collect();
    names.insert("system".to_owned(), "system (command line)".to_owned());
    Ok(names)
}

/// How `id` is shown, from the names of [`actor_names`]; an actor it does not know, as its id.
pub fn actor_name(names: &std::collections::HashMap<String, String>, id: &str) -> String {
    names.get(id).cloned().unwrap_or_else(|| id.to_owned())
}

/// An id from a path, or 404: a mistyped id is a page that does not exist.
pub fn parse_id(raw: &str) -> Result<Uuid, ConsoleError> {
    raw.parse().map_err(|_| ConsoleError::NotFound)
}
