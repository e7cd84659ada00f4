//! Signing in and out, throttling, sessions, CSRF and passwords.

use partner_catalog::domain::Role;
use reqwest::{Method, StatusCode, header};

use super::{PASSWORD, browser, create_user, sign_in_form, signed_in};
use crate::helpers::spawn_app;

#[tokio::test]
async fn pages_need_a_session_and_sign_in_starts_one_with_a_strict_http_only_cookie() {
    let app = spawn_app().await;
    let anonymous = browser();
    let answer = anonymous
        .get(format!("{}/account?tab=x", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        answer.headers()[header::LOCATION],
        "/sign-in?next=%2Faccount"
    );

    create_user(&app, "jdoe", Role::BackOffice, None).await;
    let (page, cookie) = sign_in_form(&app, &anonymous, "JDoe", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    assert_eq!(page.location.as_deref(), Some("/"));
    let raw = anonymous
        .post(format!("{}/sign-in", app.address))
        .form(&[("username", "jdoe"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let set_cookie = raw.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "plain HTTP on 127.0.0.1 by default: {set_cookie}"
    );
    // Each sign-in is a new session id.
    assert_ne!(cookie.unwrap(), set_cookie.split(';').next().unwrap());
    let stored: i64 = sqlx::query_scalar("select count(*) from sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn wrong_passwords_unknown_users_and_disabled_accounts_get_one_answer() {
    let app = spawn_app().await;
    let id = create_user(&app, "jdoe", Role::Auditor, None).await;
    let client = browser();
    let (wrong, cookie) = sign_in_form(&app, &client, "jdoe", "not the password at all").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    wrong.assert_contains("The username or password is not correct.");
    let (unknown, _) = sign_in_form(&app, &client, "nobody", PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    unknown.assert_contains("The username or password is not correct.");
    unknown.assert_contains("value=\"nobody\"");

    sqlx::query("update users set disabled_at = now(), failed_sign_ins = 0, sign_in_blocked_until = null where id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let (disabled, cookie) = sign_in_form(&app, &client, "jdoe", PASSWORD).await;
    assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
}

#[tokio::test]
async fn password_guessing_is_throttled_per_account_even_for_the_right_password() {
    let app = spawn_app().await;
    create_user(&app, "jdoe", Role::Auditor, None).await;
    let client = browser();
    for _ in 0..5 {
        let (page, _) = sign_in_form(&app, &client, "jdoe", "guess guess guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    // The fifth failure blocks the account for a second (`domain::sign_in_delay`, unit-tested).
    let (failures, blocked_secs): (i32, f64) = sqlx::query_as(
        "select failed_sign_ins, extract(epoch from sign_in_blocked_until - now())::float8
         from users where username = 'jdoe'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(failures, 5);
    assert!(blocked_secs <= 1.0, "{blocked_secs}");
    // While blocked, even the right password is refused. Held longer here than the real second,
    // so that a slow machine cannot let the block lapse before the attempt.
    let block = |secs: i32| {
        sqlx::query("update users set sign_in_blocked_until = now() + make_interval(secs => $1) where username = 'jdoe'")
            .bind(secs)
    };
    block(60).execute(&app.pool).await.unwrap();
    let (throttled, cookie) = sign_in_form(&app, &client, "jdoe", PASSWORD).await;
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        throttled.html
    );
    assert!(cookie.is_none());
    throttled.assert_contains("Too many failed sign-ins");
    block(-1).execute(&app.pool).await.unwrap();
    let (page, cookie) = sign_in_form(&app, &client, "jdoe", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    assert!(cookie.is_some());
    let failures: i32 =
        sqlx::query_scalar("select failed_sign_ins from users where username = 'jdoe'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(failures, 0, "a success starts the count again");
}

#[tokio::test]
async fn forms_without_the_session_token_or_from_another_site_change_nothing() {
    let app = spawn_app().await;
    let me = signed_in(&app, Role::Auditor, None).await;
    let token = me.get("/account").await.csrf();

    let forged = me.post_raw("/sign-out", &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    forged.assert_contains("security token");
    let missing = me.post_raw("/sign-out", &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let cross_site = me
        .request(Method::POST, "/sign-out")
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let other_origin = me
        .request(Method::POST, "/sign-out")
        .header(header::ORIGIN, "https://evil.example")
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(other_origin.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        me.get("/account").await.status,
        StatusCode::OK,
        "still signed in"
    );

    let out = me.post_raw("/sign-out", &[("csrf", token.as_str())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        me.get("/account").await.status,
        StatusCode::SEE_OTHER,
        "signed out"
    );
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_the_other_sessions() {
    let app = spawn_app().await;
    let me = signed_in(&app, Role::BackOffice, None).await;
    let username: String = sqlx::query_scalar("select username from users where id = $1")
        .bind(me.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let (_, other) = sign_in_form(&app, &browser(), &username, PASSWORD).await;
    let other = other.unwrap();

    let wrong = me
        .post(
            "/account/password",
            &[
                ("current", "not it at all!"),
                ("new", "a new long passphrase"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    wrong.assert_contains("The current password is not correct.");
    let weak = me
        .post(
            "/account/password",
            &[("current", PASSWORD), ("new", "short")],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    weak.assert_contains("a password has 12 to 256 characters");

    let done = me
        .post(
            "/account/password",
            &[("current", PASSWORD), ("new", "a new long passphrase")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(
        me.get("/account").await.status,
        StatusCode::OK,
        "this session stays"
    );
    let ended = browser()
        .get(format!("{}/account", app.address))
        .header(header::COOKIE, other)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ended.status(),
        StatusCode::SEE_OTHER,
        "the other session ended"
    );
    let (old, _) = sign_in_form(&app, &browser(), &username, PASSWORD).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let (new, _) = sign_in_form(&app, &browser(), &username, "a new long passphrase").await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);
    let events: i64 = sqlx::query_scalar(
        "select count(*) from events where event_type = 'user_password_changed' and actor = $1",
    )
    .bind(me.user_id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 1, "the change is audited with the user as actor");
}

#[tokio::test]
async fn sessions_end_after_the_idle_limit() {
    let app = spawn_app().await;
    let me = signed_in(&app, Role::Auditor, None).await;
    sqlx::query(
        "update sessions set last_seen_at = now() - interval '31 minutes' where user_id = $1",
    )
    .bind(me.user_id)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(me.get("/account").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_start_page_offers_what_the_role_may_do() {
    let app = spawn_app().await;
    let auditor = signed_in(&app, Role::Auditor, None).await;
    let home = auditor.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_contains("href=\"/audit\"");
    assert!(!home.html.contains("href=\"/import\""));
    let back_office = signed_in(&app, Role::BackOffice, None).await;
    let home = back_office.get("/").await;
    home.assert_contains("href=\"/import\"");
    assert!(!home.html.contains("href=\"/audit\""));
}
