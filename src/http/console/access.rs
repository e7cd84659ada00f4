//! Access: console users and API tokens, for operators (all) and global admins (their partner's).

use std::collections::BTreeMap;

use askama::Template;
use axum::{
    Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use chrono::{Duration, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    ConsoleError, NoFields, Posted, Staff, home::SessionRow, parse_id, render, render_status, view,
};
use crate::{
    app::{self, users::AccountError},
    db::{Keyset, users::User},
    domain::{Action, DisplayName, NewPassword, PartnerId, PrincipalKind, Role, Username},
    http::AppState,
};

/// Users or tokens listed at once: the set of principals is small.
const LIST: i64 = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/access", get(access))
        .route("/access/users", post(create_user))
        .route("/access/users/{id}", get(user))
        .route("/access/users/{id}/disable", post(disable_user))
        .route("/access/users/{id}/enable", post(enable_user))
        .route("/access/users/{id}/password", post(reset_password))
        .route(
            "/access/users/{id}/sessions/{session}/end",
            post(end_session),
        )
        .route("/access/tokens", post(create_token))
        .route("/access/tokens/{id}/revoke", post(revoke_token))
}

struct UserRow {
    id: String,
    username: String,
    display_name: String,
    role: &'static str,
    partner: String,
    state: &'static str,
    last_used: String,
}

struct TokenRow {
    id: String,
    label: String,
    role: &'static str,
    partner: String,
    state: &'static str,
    expires: String,
    last_used: String,
    revocable: bool,
}

struct Choice {
    value: String,
    label: String,
}

/// The new-user form as typed, and messages by field.
#[derive(Default, Deserialize)]
struct UserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    partner: String,
    #[serde(default)]
    password: String,
}

/// The new-token form as typed.
#[derive(Default, Deserialize)]
struct TokenForm {
    #[serde(default)]
    label: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    partner: String,
    #[serde(default)]
    days: String,
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage {
    chrome: view::Chrome,
    /// Whether the forms are shown (operators, global admins); auditors only read.
    manage: bool,
    notice: Option<String>,
    users: Vec<UserRow>,
    tokens: Vec<TokenRow>,
    roles: Vec<&'static str>,
    partners: Vec<Choice>,
    user_form: UserForm,
    token_form: TokenForm,
    errors: BTreeMap<&'static str, String>,
    issued_secret: Option<String>,
}

#[derive(Deserialize, Default)]
struct Notice {
    done: Option<String>,
}

impl AccessPage {
    async fn load(
        state: &AppState,
        staff: &Staff,
        user_form: UserForm,
        token_form: TokenForm,
    ) -> Result<Self, ConsoleError> {
        let page = Keyset {
            after: None,
            limit: LIST,
        };
        let principals = app::principals::list(&state.pool, &staff.ctx, page).await?;
        let manage = staff.may(Action::ManageAccess);
        let partners = if manage {
            app::partners::list(&state.pool, &staff.ctx, page).await?
        } else {
            Vec::new()
        };
        let last_used = |at: &Option<chrono::DateTime<Utc>>| {
            at.as_ref().map_or_else(|| "never".to_owned(), view::when)
        };
        let (mut users, mut tokens) = (Vec::new(), Vec::new());
        for p in principals {
            match p.kind {
                PrincipalKind::User => users.push(UserRow {
                    id: p.id.to_string(),
                    display_name: p.name,
                    username: p.username.unwrap_or_default(),
                    role: p.role.as_str(),
                    partner: p.partner_name.unwrap_or_default(),
                    state: p.state.as_str(),
                    last_used: last_used(&p.last_used_at),
                }),
                PrincipalKind::Token => tokens.push(TokenRow {
                    id: p.id.to_string(),
                    label: p.name,
                    role: p.role.as_str(),
                    partner: p.partner_name.unwrap_or_default(),
                    state: p.state.as_str(),
                    expires: p.expires_at.as_ref().map_or_else(String::new, view::when),
                    last_used: last_used(&p.last_used_at),
                    revocable: manage && p.revoked_at.is_none(),
                }),
                PrincipalKind::System => {}
            }
        }
        // Global admins give only their own partner's roles.
        let roles = Role::ALL
            .iter()
            .filter(|r| staff.partner().is_none() || r.is_partner_role())
            .map(|r| r.as_str())
            .collect();
        Ok(Self {
            chrome: staff.chrome("/access"),
            manage,
            notice: None,
            users,
            tokens,
            roles,
            partners: partners
                .into_iter()
                .map(|p| Choice {
                    value: p.id.to_string(),
                    label: p.name,
                })
                .collect(),
            user_form,
            token_form,
            errors: BTreeMap::new(),
            issued_secret: None,
        })
    }
}

async fn access(
    State(state): State<AppState>,
    staff: Staff,
    Query(notice): Query<Notice>,
) -> Result<Response, ConsoleError> {
    let mut page =
        AccessPage::load(&state, &staff, UserForm::default(), TokenForm::default()).await?;
    page.notice = notice.done.map(|done| match done.as_str() {
        "user" => "The user was created.".to_owned(),
        "revoked" => "The token was revoked; it stops working within 5 seconds.".to_owned(),
        _ => "Done.".to_owned(),
    });
    render(&page)
}

/// The role and partner of a form; messages under `role` and `partner` otherwise.
fn role_and_partner(
    role: &str,
    partner: &str,
    errors: &mut BTreeMap<&'static str, String>,
) -> Option<(Role, Option<PartnerId>)> {
    let Ok(role) = role.parse::<Role>() else {
        errors.insert("role", "Choose a role.".into());
        return None;
    };
    let partner = match (role.is_partner_role(), partner.trim()) {
        (false, "") => None,
        (false, _) => {
            errors.insert(
                "partner",
                "Only partner roles are bound to a partner.".into(),
            );
            return None;
        }
        (true, raw) => match raw.parse() {
            Ok(id) => Some(PartnerId(id)),
            Err(_) => {
                errors.insert("partner", "Partner roles need a partner.".into());
                return None;
            }
        },
    };
    Some((role, partner))
}

async fn create_user(
    State(state): State<AppState>,
    posted: Posted<UserForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let mut errors = BTreeMap::new();
    let username = Username::parse(&form.username)
        .map_err(|e| errors.insert("username", view::sentence(&e.to_string())))
        .ok();
    let display_name = match form.display_name.trim() {
        "" => Some(None),
        raw => DisplayName::parse(raw)
            .map(Some)
            .map_err(|e| errors.insert("display_name", format!("The name {e}.")))
            .ok(),
    };
    let password = NewPassword::parse(&form.password)
        .map_err(|e| errors.insert("password", view::sentence(&e.to_string())))
        .ok();
    let grant = role_and_partner(&form.role, &form.partner, &mut errors);
    let (Some(username), Some(display_name), Some(password), Some((role, partner))) =
        (username, display_name, password, grant)
    else {
        return show_again(&state, &staff, form, TokenForm::default(), errors).await;
    };
    let account = app::users::NewAccount {
        username,
        display_name,
        password,
        role,
        partner,
    };
    match app::users::create(&state.pool, &staff.ctx, &account).await {
        Ok(_) => Ok(Redirect::to("/access?done=user").into_response()),
        Err(AccountError::UsernameTaken(name)) => {
            errors.insert("username", format!("The username {name} is taken."));
            show_again(&state, &staff, form, TokenForm::default(), errors).await
        }
        Err(AccountError::App(app::Error::InvalidTokenRequest(why))) => {
            errors.insert("partner", view::sentence(why));
            show_again(&state, &staff, form, TokenForm::default(), errors).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The access page again with what was typed and the messages (422). Passwords are not echoed.
async fn show_again(
    state: &AppState,
    staff: &Staff,
    mut user_form: UserForm,
    token_form: TokenForm,
    errors: BTreeMap<&'static str, String>,
) -> Result<Response, ConsoleError> {
    user_form.password.clear();
    let mut page = AccessPage::load(state, staff, user_form, token_form).await?;
    page.errors = errors;
    render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

async fn create_token(
    State(state): State<AppState>,
    posted: Posted<TokenForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let mut errors = BTreeMap::new();
    let label = DisplayName::parse(&form.label)
        .map_err(|e| errors.insert("label", format!("The label {e}.")))
        .ok();
    let days = match form.days.trim().parse::<i64>() {
        Ok(days) if (1..=3650).contains(&days) => Some(days),
        _ => {
            errors.insert("days", "Enter a lifetime of 1 to 3650 days.".into());
            None
        }
    };
    let grant = role_and_partner(&form.role, &form.partner, &mut errors);
    let (Some(label), Some(days), Some((role, partner))) = (label, days, grant) else {
        return show_again(&state, &staff, UserForm::default(), form, errors).await;
    };
    let expires_at = Utc::now() + Duration::days(days);
    let issued = match app::tokens::issue(
        &state.pool,
        &staff.ctx,
        role,
        partner,
        expires_at,
        &label,
    )
    .await
    {
        Ok(issued) => issued,
        Err(app::Error::InvalidTokenRequest(why)) => {
            errors.insert("partner", view::sentence(why));
            return show_again(&state, &staff, UserForm::default(), form, errors).await;
        }
        Err(e) => return Err(e.into()),
    };
    // Shown once, on this answer only; never stored in clear.
    let mut page =
        AccessPage::load(&state, &staff, UserForm::default(), TokenForm::default()).await?;
    page.issued_secret = Some(issued.secret);
    render(&page)
}

async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let staff = posted.staff;
    app::tokens::revoke(&state.pool, &staff.ctx, parse_id(&id)?).await?;
    Ok(Redirect::to("/access?done=revoked").into_response())
}

#[derive(Template)]
#[template(path = "access_user.html")]
struct UserPage {
    chrome: view::Chrome,
    notice: Option<String>,
    id: String,
    username: String,
    display_name: String,
    role: &'static str,
    disabled: bool,
    is_self: bool,
    last_sign_in: String,
    created: String,
    created_by: String,
    sessions: Vec<SessionRow>,
    password_error: Option<String>,
}

async fn user_page(
    state: &AppState,
    staff: &Staff,
    id: Uuid,
    notice: Option<String>,
    password_error: Option<String>,
) -> Result<UserPage, ConsoleError> {
    staff.ctx.require(Action::ManageAccess)?;
    let user: User = app::users::get(&state.pool, &staff.ctx, id)
        .await
        .map_err(not_found)?;
    let sessions = app::users::sessions(&state.pool, &staff.ctx, id)
        .await
        .map_err(not_found)?;
    Ok(UserPage {
        chrome: staff.chrome("/access"),
        notice,
        id: user.id.to_string(),
        username: user.username,
        display_name: user.display_name.unwrap_or_default(),
        role: user.role.as_str(),
        disabled: user.disabled_at.is_some(),
        is_self: user.id == staff.session.principal.id,
        last_sign_in: user
            .last_sign_in_at
            .as_ref()
            .map_or_else(|| "never".into(), view::when),
        created: view::when(&user.created_at),
        created_by: user.created_by,
        sessions: SessionRow::list(
            sessions,
            staff.session.id,
            &format!("/access/users/{id}/sessions"),
        ),
        password_error,
    })
}

/// Another partner's user, or none: the same 404 page.
fn not_found(e: AccountError) -> ConsoleError {
    match e {
        AccountError::UserNotFound(_) => ConsoleError::NotFound,
        other => other.into(),
    }
}

async fn user(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, ConsoleError> {
    let notice = notice.done.map(|done| match done.as_str() {
        "disabled" => "The account is disabled and its sessions ended.".to_owned(),
        "enabled" => "The account may sign in again.".to_owned(),
        "password" => "The password was set and the user's sessions ended.".to_owned(),
        _ => "Done.".to_owned(),
    });
    render(&user_page(&state, &staff, parse_id(&id)?, notice, None).await?)
}

async fn set_disabled(
    state: &AppState,
    staff: &Staff,
    raw: &str,
    disabled: bool,
) -> Result<Response, ConsoleError> {
    let id = parse_id(raw)?;
    app::users::set_disabled(&state.pool, &staff.ctx, id, disabled)
        .await
        .map_err(not_found)?;
    let done = if disabled { "disabled" } else { "enabled" };
    Ok(Redirect::to(&format!("/access/users/{id}?done={done}")).into_response())
}

async fn disable_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    set_disabled(&state, &posted.staff, &id, true).await
}

async fn enable_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    set_disabled(&state, &posted.staff, &id, false).await
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
}

async fn reset_password(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<PasswordForm>,
) -> Result<Response, ConsoleError> {
    let Posted { staff, form } = posted;
    let id = parse_id(&id)?;
    let password = match NewPassword::parse(&form.password) {
        Ok(p) => p,
        Err(e) => {
            let message = view::sentence(&e.to_string());
            let page = user_page(&state, &staff, id, None, Some(message)).await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    app::users::reset_password(&state.pool, &staff.ctx, id, &password)
        .await
        .map_err(not_found)?;
    Ok(Redirect::to(&format!("/access/users/{id}?done=password")).into_response())
}

async fn end_session(
    State(state): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    posted: Posted<NoFields>,
) -> Result<Response, ConsoleError> {
    let staff = posted.staff;
    let (id, session) = (parse_id(&id)?, parse_id(&session)?);
    app::users::revoke_session(&state.pool, &staff.ctx, id, session)
        .await
        .map_err(not_found)?;
    Ok(Redirect::to(&format!("/access/users/{id}")).into_response())
}
