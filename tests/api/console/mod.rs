//! The console over HTTP: pages and forms as a browser without JavaScript would use them. The
//! browser itself is driven by `tests/browser`.

mod access;
mod account;
mod audit;
mod customers;
mod import;
mod offers;
mod partners;
mod policies;
mod webhooks;

use partner_catalog::{
    app::{RequestContext, users},
    domain::{NewPassword, PartnerId, Role, Username},
};
use reqwest::{StatusCode, header};
use uuid::Uuid;

use crate::helpers::TestApp;

/// The password every console test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// A signed-in browser without JavaScript: its session cookie, and redirects not followed.
pub struct Console {
    pub base: String,
    client: reqwest::Client,
    cookie: String,
    pub user_id: Uuid,
}

/// A page as answered.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    /// `Location` of a redirect.
    pub location: Option<String>,
    pub html: String,
}

impl Page {
    /// The value of the first `name="csrf"` input.
    pub fn csrf(&self) -> String {
        let at = self
            .html
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token");
        let rest = &self.html[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// Asserts the page contains `text` (as HTML source).
    #[track_caller]
    pub fn assert_contains(&self, text: &str) -> &Self {
        assert!(
            self.html.contains(text),
            "page lacks {text:?}:\n{}",
            self.html
        );
        self
    }
}

/// Creates a console user of `role` (bound to `partner` for partner roles) named `username`.
pub async fn create_user(
    app: &TestApp,
    username: &str,
    role: Role,
    partner: Option<PartnerId>,
) -> Uuid {
    users::create(
        &app.pool,
        &RequestContext::system(),
        &users::NewAccount {
            username: Username::parse(username).unwrap(),
            display_name: Some(
                partner_catalog::domain::DisplayName::parse(&format!("{username} (test)")).unwrap(),
            ),
            password: NewPassword::parse(PASSWORD).unwrap(),
            role,
            partner,
        },
    )
    .await
    .expect("create a console user")
    .id
}

/// An unauthenticated browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Signs in with the form; the answer and, on success, the session cookie.
pub async fn sign_in_form(
    app: &TestApp,
    client: &reqwest::Client,
    username: &str,
    password: &str,
) -> (Page, Option<String>) {
    let response = client
        .post(format!("{}/sign-in", app.address))
        .form(&[
            ("username", username),
            ("password", password),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (page(response).await, cookie)
}

async fn page(response: reqwest::Response) -> Page {
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    Page {
        status,
        location,
        html: response.text().await.unwrap(),
    }
}

/// A new user of `role` signed in.
pub async fn signed_in(app: &TestApp, role: Role, partner: Option<PartnerId>) -> Console {
    let username = format!("u{}", Uuid::now_v7().simple());
    let user_id = create_user(app, &username, role, partner).await;
    let client = browser();
    let (answer, cookie) = sign_in_form(app, &client, &username, PASSWORD).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.html);
    Console {
        base: app.address.clone(),
        client,
        cookie: cookie.expect("a session cookie"),
        user_id,
    }
}

impl Console {
    /// GET a console path.
    pub async fn get(&self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        page(response).await
    }

    /// POST a form to `path` with this session's CSRF token (read from `/account`).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get("/account").await.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// POST exactly `fields` (no token added) as a same-origin browser would.
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
            .header("sec-fetch-site", "same-origin")
            .form(fields)
            .send()
            .await
            .unwrap();
        page(response).await
    }

    /// A request with this session's cookie, to adjust before sending.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header(header::COOKIE, &self.cookie)
    }
}
