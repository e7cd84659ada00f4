//! Access in the console: operators and global admins manage users and tokens.

use partner_catalog::domain::{PartnerId, Role};
use reqwest::{StatusCode, header};

use super::{PASSWORD, browser, sign_in_form, signed_in};
use crate::helpers::spawn_app;

#[tokio::test]
async fn operators_create_users_with_checked_fields_and_unique_names() {
    let app = spawn_app().await;
    let operator = signed_in(&app, Role::Operator, None).await;
    let bad = operator
        .post(
            "/access/users",
            &[
                ("username", "Jane Doe"),
                ("role", "back_office"),
                ("partner", ""),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.html);
    bad.assert_contains("id=\"username-error\"")
        .assert_contains("id=\"password-error\"");
    assert!(
        !bad.html.contains("value=\"short\""),
        "passwords are never echoed"
    );
    let unbound = operator
        .post(
            "/access/users",
            &[
                ("username", "jane"),
                ("role", "sales_agent"),
                ("partner", ""),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(unbound.status, StatusCode::UNPROCESSABLE_ENTITY);
    unbound.assert_contains("Partner roles need a partner.");

    let created = operator
        .post(
            "/access/users",
            &[
                ("username", "Jane"),
                ("display_name", "Jane Doe"),
                ("role", "back_office"),
                ("partner", ""),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    let (signed, cookie) = sign_in_form(&app, &browser(), "jane", PASSWORD).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert!(cookie.is_some());
    let taken = operator
        .post(
            "/access/users",
            &[
                ("username", "jane"),
                ("role", "auditor"),
                ("partner", ""),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    taken.assert_contains("The username jane is taken.");
    let creator: String =
        sqlx::query_scalar("select actor from events where event_type = 'user_created' and payload->>'username' = 'jane'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(creator, operator.user_id.to_string());
}

#[tokio::test]
async fn disabling_a_user_ends_its_sessions_and_a_new_password_replaces_the_old() {
    let app = spawn_app().await;
    let operator = signed_in(&app, Role::Operator, None).await;
    let colleague = signed_in(&app, Role::BackOffice, None).await;
    let path = format!("/access/users/{}", colleague.user_id);
    let page = operator.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    let disabled = operator.post(&format!("{path}/disable"), &[]).await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER);
    assert_eq!(
        colleague.get("/").await.status,
        StatusCode::SEE_OTHER,
        "signed out"
    );
    operator.get(&path).await.assert_contains("disabled");
    let enabled = operator.post(&format!("{path}/enable"), &[]).await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER);

    let weak = operator
        .post(
            &format!("{path}/password"),
            &[("password", "aaaaaaaaaaaaaaa")],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    weak.assert_contains("id=\"password-error\"");
    let reset = operator
        .post(
            &format!("{path}/password"),
            &[("password", "another long passphrase")],
        )
        .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER);
    let username: String = sqlx::query_scalar("select username from users where id = $1")
        .bind(colleague.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let (old, _) = sign_in_form(&app, &browser(), &username, PASSWORD).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let (new, _) = sign_in_form(&app, &browser(), &username, "another long passphrase").await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);
    let events: Vec<String> = sqlx::query_scalar(
        "select event_type from events where event_type like 'user_%' and payload->>'user_id' = $1 order by id",
    )
    .bind(colleague.user_id.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            "user_created",
            "user_disabled",
            "user_enabled",
            "user_password_changed"
        ]
    );
    // Nobody disables themselves.
    let own = operator
        .post(&format!("/access/users/{}/disable", operator.user_id), &[])
        .await;
    assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_token_made_in_the_console_shows_its_secret_once_and_works_until_revoked() {
    let app = spawn_app().await;
    let operator = signed_in(&app, Role::Operator, None).await;
    let made = operator
        .post(
            "/access/tokens",
            &[
                ("label", "ERP export"),
                ("role", "auditor"),
                ("partner", ""),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.html);
    let at = made.html.find("<code>").expect("the secret") + "<code>".len();
    let secret = made.html[at..].split('<').next().unwrap().to_owned();
    assert!(secret.starts_with("pct_"));
    assert!(
        !operator.get("/access").await.html.contains(&secret),
        "shown once"
    );
    let works = app
        .client
        .get(format!("{}/v1/audit/events?limit=1", app.address))
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(works.status(), StatusCode::OK);
    let id: uuid::Uuid = sqlx::query_scalar("select id from api_tokens where label = 'ERP export'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let revoked = operator
        .post(&format!("/access/tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let state: bool =
        sqlx::query_scalar("select revoked_at is not null from api_tokens where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(state);
}

#[tokio::test]
async fn global_admins_manage_only_their_partners_people() {
    let app = spawn_app().await;
    let mine = app.create_qualified_partner().await;
    let theirs = app.create_qualified_partner().await;
    let admin = signed_in(&app, Role::GlobalAdmin, Some(PartnerId(mine))).await;
    let their_agent = signed_in(&app, Role::SalesAgent, Some(PartnerId(theirs))).await;
    let page = admin.get("/access").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.html.contains(&their_agent.user_id.to_string()));
    assert!(
        !page.html.contains(">back_office<"),
        "only partner roles are offered"
    );
    let other = admin
        .get(&format!("/access/users/{}", their_agent.user_id))
        .await;
    let absent = admin
        .get(&format!("/access/users/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.html, absent.html);
    let refused = admin
        .post(
            &format!("/access/users/{}/disable", their_agent.user_id),
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(
        their_agent.get("/").await.status,
        StatusCode::OK,
        "untouched"
    );
    let platform = admin
        .post(
            "/access/users",
            &[
                ("username", "boss"),
                ("role", "back_office"),
                ("partner", ""),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(platform.status, StatusCode::FORBIDDEN);
    let agent = admin
        .post(
            "/access/users",
            &[
                ("username", "seller"),
                ("role", "sales_agent"),
                ("partner", &mine.to_string()),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(agent.status, StatusCode::SEE_OTHER, "{}", agent.html);
    let back_office = signed_in(&app, Role::BackOffice, None).await;
    assert_eq!(
        back_office.get("/access").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn auditors_read_every_principal_with_its_last_use_but_change_nothing() {
    let app = spawn_app().await;
    let auditor = signed_in(&app, Role::Auditor, None).await;
    // The test app's own tokens have been used by its setup calls.
    app.create_customer(&[]).await;
    let page = auditor.get("/access").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    page.assert_contains("Secrets are never shown");
    let operator_label: String =
        sqlx::query_scalar("select label from api_tokens where role = 'back_office' limit 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    page.assert_contains(&operator_label);
    assert!(
        !page.html.contains("action=\"/access/users\""),
        "no forms for auditors"
    );
    assert!(!page.html.contains("/revoke"));
    assert!(
        page.html.contains(" UTC</td>"),
        "a last use is shown: {}",
        page.html
    );
    let refused = auditor
        .post(
            "/access/tokens",
            &[
                ("label", "x"),
                ("role", "auditor"),
                ("partner", ""),
                ("days", "1"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}
