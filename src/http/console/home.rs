//! Sign-in, sign-out, the start page of each role, and one's own account.

use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{
    ConsoleError, NoFields, Posted, Staff, parse_id, render, render_status, session_cookie,
    set_cookie,
    view::{self, Chrome},
};
use crate::{
    app::{
        self,
        users::{AccountError, SignInError},
    },
    domain::{Action, NewPassword},
    http::AppState,
};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(start))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/account", get(account))
        .route("/account/password", post(change_password))
        .route("/account/sessions/{id}/end", post(end_own_session))
}

/// One thing a role can do, on its start page.
struct Task {
    href: &'static str,
    title: &'static str,
    text: &'static str,
}

const TASKS: [(Action, Task); 11] = [
    (
        Action::ManageCustomers,
        Task {
            href: "/customers",
            title: "Customers",
            text: "Find customers, check and change their qualifications with evidence, see their history, subscriptions and eligibility.",
        },
    ),
    (
        Action::ReadCustomers,
        Task {
            href: "/customers",
            title: "Customers",
            text: "Find customers, see their qualifications, history and subscriptions, and check what may be sold to them.",
        },
    ),
    (
        Action::ManagePartners,
        Task {
            href: "/partners",
            title: "Partners",
            text: "Find partners, change their reseller qualifications, see provider links and profile history.",
        },
    ),
    (
        Action::ReadPartners,
        Task {
            href: "/partners",
            title: "Partners",
            text: "Find partners and see their qualifications and profile history.",
        },
    ),
    (
        Action::ManageOffers,
        Task {
            href: "/offers",
            title: "Offers",
            text: "See the offer catalog and create offers.",
        },
    ),
    (
        Action::PublishPolicies,
        Task {
            href: "/policies",
            title: "Policies",
            text: "See the rules of every policy version, preview what a new version would change, and publish it.",
        },
    ),
    (
        Action::ManageCustomers,
        Task {
            href: "/import",
            title: "Import customers",
            text: "Upload an NDJSON or CSV file of customers: see every line's errors before anything is written.",
        },
    ),
    (
        Action::ReadAudit,
        Task {
            href: "/audit",
            title: "Audit log",
            text: "Search every change and decision, see before and after, export it, and verify the hash chains.",
        },
    ),
    (
        Action::ManageAccess,
        Task {
            href: "/access",
            title: "Access",
            text: "Create and disable console users, issue and revoke API tokens, see when each was last used.",
        },
    ),
    (
        Action::ReadAudit,
        Task {
            href: "/access",
            title: "Principals",
            text: "See every user and token that can act, with role and partner (never secrets).",
        },
    ),
    (
        Action::ManageWebhooks,
        Task {
            href: "/webhooks",
            title: "Webhooks",
            text: "Register the endpoints that hear about changes, rotate their secrets, send a test, see every delivery and send notices again.",
        },
    ),
];

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    partner: Option<(uuid::Uuid, String)>,
    tasks: Vec<&'static Task>,
}

async fn start(State(state): State<AppState>, staff: Staff) -> Result<Response, ConsoleError> {
    let mut tasks: Vec<&'static Task> = Vec::new();
    for (action, task) in &TASKS {
        // One card per page: the fuller description wins (listed first).
        if staff.may(*action) && !tasks.iter().any(|t| t.href == task.href) {
            tasks.push(task);
        }
    }
    let partner = match staff.partner() {
        Some(id) => {
            let p = app::partners::get(&state.pool, &staff.ctx, id).await?;
            Some((p.id.0, p.name))
        }
        None => None,
    };
    render(&HomePage {
        chrome: staff.chrome("/"),
        partner,
        tasks,
    })
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    error: Option<String>,
    username: String,
    next: String,
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only a path of this console: never another site (no open redirect).
fn local_path(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/".to_owned())
}

async fn sign_in_page(Query(next): Query<Next>) -> Result<Response, ConsoleError> {
    render(&SignInPage {
        error: None,
        username: String::new(),
        next: local_path(next.next),
    })
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, ConsoleError> {
    let settings = state.console;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let next = local_path(form.next);
    match app::users::sign_in(
        &state.pool,
        settings.sessions,
        &form.username,
        &form.password,
        user_agent,
    )
    .await
    {
        Ok(signed_in) => {
            // A session the browser had before is ended: a new id at every sign-in.
            if let Some(old) = session_cookie(&headers)
                && let Some(live) = app::users::session(&state.pool, settings.sessions, old).await?
            {
                let ctx = app::RequestContext::new(Some(live.principal.clone()), None);
                app::users::sign_out(&state.pool, &ctx, live.id).await?;
            }
            let cookie = set_cookie(Some(&signed_in.secret), &settings, &headers);
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
        }
        Err(SignInError::App(e)) => Err(e.into()),
        Err(refusal) => {
            let status = match refusal {
                SignInError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            render_status(
                status,
                &SignInPage {
                    error: Some(view::sentence(&refusal.to_string())),
                    username: form.username,
                    next,
                },
            )
        }
    }
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let staff = posted.staff;
    app::users::sign_out(&state.pool, &staff.ctx, staff.session.id).await?;
    let cookie = set_cookie(None, &state.console, &headers);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/sign-in")).into_response())
}

/// A session as listed.
pub(super) struct SessionRow {
    pub started: String,
    pub last_seen: String,
    pub ends: String,
    pub user_agent: String,
    pub current: bool,
    pub revoke_action: String,
}

impl SessionRow {
    pub(super) fn list(
        sessions: Vec<crate::db::users::Session>,
        current: uuid::Uuid,
        revoke_base: &str,
    ) -> Vec<Self> {
        sessions
            .into_iter()
            .map(|s| Self {
                started: view::when(&s.created_at),
                last_seen: view::when(&s.last_seen_at),
                ends: view::when(&s.expires_at),
                user_agent: s.user_agent.unwrap_or_default(),
                current: s.id == current,
                revoke_action: format!("{revoke_base}/{}/end", s.id),
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    username: String,
    notice: Option<String>,
    current_error: Option<String>,
    new_error: Option<String>,
    sessions: Vec<SessionRow>,
}

async fn account_page(
    state: &AppState,
    staff: &Staff,
    notice: Option<String>,
    current_error: Option<String>,
    new_error: Option<String>,
) -> Result<AccountPage, ConsoleError> {
    let sessions =
        app::users::sessions(&state.pool, &staff.ctx, staff.session.principal.id).await?;
    Ok(AccountPage {
        chrome: staff.chrome("/account"),
        username: staff.session.username.clone(),
        notice,
        current_error,
        new_error,
        sessions: SessionRow::list(sessions, staff.session.id, "/account/sessions"),
    })
}

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn account(
    State(state): State<AppState>,
    staff: Staff,
    Query(notice): Query<Notice>,
) -> Result<Response, ConsoleError> {
    let notice = notice.done.map(|_| "Done.".to_owned());
    render(&account_page(&state, &staff, notice, None, None).await?)
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

async fn change_password(
    State(state): State<AppState>,
    posted: Posted<PasswordForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let new = match NewPassword::parse(&form.new) {
        Ok(new) => new,
        Err(weak) => {
            let page = account_page(&state, &staff, None, None, Some(weak.to_string())).await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    match app::users::change_own_password(
        &state.pool,
        &staff.ctx,
        staff.session.id,
        &form.current,
        &new,
    )
    .await
    {
        Ok(()) => Ok(Redirect::to("/account?done=password").into_response()),
        Err(AccountError::WrongPassword) => {
            let message = "The current password is not correct.".to_owned();
            let page = account_page(&state, &staff, None, Some(message), None).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(e) => Err(e.into()),
    }
}

async fn end_own_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let staff = posted.staff;
    let id = parse_id(&id)?;
    app::users::revoke_session(&state.pool, &staff.ctx, staff.session.principal.id, id).await?;
    Ok(Redirect::to("/account?done=session").into_response())
}
