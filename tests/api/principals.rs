//! `/v1/principals`: every console user and API token for auditors and access managers, with
//! state and last use, never a secret.

use partner_catalog::domain::{PartnerId, Role};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    console::{create_user, signed_in},
    helpers::{Reply, TestApp, issue_token, spawn_app},
};

/// A page of `/v1/principals` as `token`.
async fn page(app: &TestApp, token: &str, query: &str) -> Reply {
    Reply::from(
        app.client
            .get(format!("{}/v1/principals{query}", app.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Every principal `token` may list, following the cursor `limit` at a time.
async fn all(app: &TestApp, token: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut query = format!("?limit={limit}");
    loop {
        let reply = page(app, token, &query).await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        let page_items = reply.body["items"].as_array().unwrap();
        assert!(page_items.len() <= limit as usize);
        items.extend(page_items.iter().cloned());
        match reply.body["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit={limit}&after={cursor}"),
            None => return items,
        }
    }
}

fn find(items: &[Value], id: Uuid) -> &Value {
    items
        .iter()
        .find(|p| p["id"] == id.to_string())
        .unwrap_or_else(|| panic!("{id} not listed"))
}

#[tokio::test]
async fn auditors_list_every_user_and_token_with_state_and_last_use_and_never_a_secret() {
    let app = spawn_app().await;
    let a = app.create_qualified_partner().await;
    let b = app.create_qualified_partner().await;
    let sales_a = app.principal_id(&app.sales_token(a).await).await;
    let sales_b = app.principal_id(&app.sales_token(b).await).await;
    let admin_a = issue_token(&app.pool, Role::GlobalAdmin, Some(a)).await;
    let jdoe = create_user(&app, "jdoe", Role::BackOffice, None).await;
    let anna = create_user(&app, "anna", Role::AdminAgent, Some(PartnerId(a))).await;
    let signed = signed_in(&app, Role::Auditor, None).await;
    // One revoked token, one expired, one disabled user.
    let revoked = app
        .client
        .delete(format!("{}/v1/tokens/{sales_b}", app.address))
        .bearer_auth(&app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let expired = app
        .principal_id(&issue_token(&app.pool, Role::Auditor, None).await)
        .await;
    sqlx::query(
        "update api_tokens set created_at = now() - interval '2 days', expires_at = now() - interval '1 day'
         where id = $1",
    )
        .bind(expired)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("update users set disabled_at = now() where id = $1")
        .bind(jdoe)
        .execute(&app.pool)
        .await
        .unwrap();

    let listed = all(&app, &app.auditor, 2).await;
    let stored: i64 = sqlx::query_scalar(
        "select (select count(*) from users) + (select count(*) from api_tokens)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(listed.len() as i64, stored);
    let ids: Vec<Uuid> = listed
        .iter()
        .map(|p| p["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "oldest first, no repeats"
    );

    let partner_name = app.get(&format!("/v1/partners/{a}")).await.body["name"].clone();
    let user = find(&listed, jdoe);
    assert_eq!(
        (
            &user["kind"],
            &user["name"],
            &user["username"],
            &user["role"],
            &user["state"]
        ),
        (
            &"user".into(),
            &"jdoe (test)".into(),
            &"jdoe".into(),
            &"back_office".into(),
            &"disabled".into()
        )
    );
    assert!(user["disabled_at"].is_string());
    assert_eq!(user["last_used_at"], Value::Null, "never signed in");
    let partner_user = find(&listed, anna);
    assert_eq!(partner_user["partner_id"], a.to_string());
    assert_eq!(partner_user["partner_name"], partner_name);
    assert_eq!(partner_user["state"], "active");
    // A signed-in user's last use is their session's.
    assert!(find(&listed, signed.user_id)["last_used_at"].is_string());

    let token = find(&listed, sales_a);
    assert_eq!(
        (
            &token["kind"],
            &token["name"],
            &token["role"],
            &token["state"]
        ),
        (
            &"token".into(),
            &"test".into(),
            &"sales_agent".into(),
            &"active".into()
        )
    );
    assert_eq!(token["username"], Value::Null);
    assert!(token["expires_at"].is_string());
    assert_eq!(find(&listed, sales_b)["state"], "revoked");
    assert_eq!(find(&listed, expired)["state"], "expired");
    // The auditor's own token was just used, so it is stamped.
    let me = app.principal_id(&app.auditor).await;
    assert!(find(&listed, me)["last_used_at"].is_string());
    for principal in &listed {
        for key in principal.as_object().unwrap().keys() {
            assert!(
                !["secret", "hash", "password"]
                    .iter()
                    .any(|s| key.contains(s)),
                "{key} listed"
            );
        }
    }

    // Operators list the same; a global admin only its own partner's principals.
    assert_eq!(all(&app, &app.operator, 200).await.len(), listed.len());
    let own = all(&app, &admin_a, 200).await;
    let admin_id = app.principal_id(&admin_a).await;
    let mut own_ids: Vec<Uuid> = own
        .iter()
        .map(|p| p["id"].as_str().unwrap().parse().unwrap())
        .collect();
    own_ids.sort();
    let mut expected = vec![sales_a, admin_id, anna];
    expected.sort();
    assert_eq!(own_ids, expected);
    assert!(own.iter().all(|p| p["partner_id"] == a.to_string()));

    // Nobody else may list principals.
    for token in [
        app.back_office.clone(),
        app.sales_token(a).await,
        issue_token(&app.pool, Role::AdminAgent, Some(a)).await,
    ] {
        page(&app, &token, "")
            .await
            .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    }
    page(&app, &app.auditor, "?after=nope")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
    page(&app, &app.auditor, "?kind=user")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query_parameter");
}
