//! The invariants the database itself holds, tried with raw SQL that bypasses the service.

use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::spawn_app;

async fn fails(pool: &PgPool, sql: &str, binds: &[Uuid]) -> String {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = query.bind(b);
    }
    match query.execute(pool).await {
        Ok(_) => panic!("the database accepted: {sql}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn the_database_refuses_what_the_rules_forbid() {
    let app = spawn_app().await;
    let pool = &app.pool;
    let id = Uuid::now_v7();

    let err = fails(
        pool,
        "insert into offers (id, name, segment, product_kind) values ($1, 'x', 'gcc', 'azure')",
        &[id],
    )
    .await;
    assert!(err.contains("offers_product_kind_sellable"), "{err}");

    let err = fails(
        pool,
        "insert into customers (id, name, special_qualifications) values ($1, 'x', '{education,gcc}')",
        &[id],
    )
    .await;
    assert!(
        err.contains("customers_special_qualifications_valid"),
        "{err}"
    );

    let direct = app.create_partner("direct_bill_partner", &[]).await;
    let reseller = app.create_partner("indirect_reseller", &[]).await;
    let err = fails(
        pool,
        "insert into indirect_reseller_providers (reseller_id, provider_id) values ($1, $2)",
        &[reseller, direct],
    )
    .await;
    assert!(
        err.contains("indirect_reseller_providers_provider_fkey"),
        "{err}"
    );

    // A subscription's segment must be its offer's segment.
    let customer = app.create_customer(&[]).await;
    let offer = app.create_offer("commercial", "license_based").await;
    let err = fails(
        pool,
        "insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity)
         values ($1, $2, $3, $4, 'gcc', 1)",
        &[id, customer, direct, offer],
    )
    .await;
    assert!(err.contains("subscriptions_offer_fkey"), "{err}");
}

#[tokio::test]
async fn history_cannot_be_rewritten_or_deleted() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let offer = app.create_offer("commercial", "license_based").await;
    app.purchase(customer, partner, offer, "k").await;
    let pool = &app.pool;

    for sql in [
        "update events set actor = 'mallory'",
        "delete from events",
        "truncate events cascade",
    ] {
        let err = fails(pool, sql, &[]).await;
        assert!(
            err.contains("is not allowed: it is history"),
            "{sql}: {err}"
        );
    }
    for sql in [
        "delete from subscriptions",
        "truncate subscriptions cascade",
    ] {
        let err = fails(pool, sql, &[]).await;
        assert!(
            err.contains("is not allowed: it is history"),
            "{sql}: {err}"
        );
    }
    assert_eq!(app.count("subscriptions").await, 1);
    assert!(app.count("events").await >= 5);
}

#[tokio::test]
async fn the_database_refuses_a_non_gcc_subscription_after_a_gcc_one_even_around_the_service() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let gcc_offer = app.create_offer("gcc", "license_based").await;
    let commercial = app.create_offer("commercial", "license_based").await;
    let locked = app.create_customer(&["gcc"]).await;
    let free = app.create_customer(&[]).await;
    app.link(locked, partner).await;
    assert_eq!(
        app.purchase(locked, partner, gcc_offer, "g").await.status,
        reqwest::StatusCode::CREATED
    );

    let insert =
        "insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity)
                  values ($1, $2, $3, $4, $5, 1)";
    let raw = |customer: Uuid, offer: Uuid, segment: &'static str| {
        sqlx::query(insert)
            .bind(Uuid::now_v7())
            .bind(customer)
            .bind(partner)
            .bind(offer)
            .bind(segment)
    };
    let err = raw(locked, commercial, "commercial")
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("gcc_lockout"), "{err}");
    // More GCC is fine, and customers without GCC history are untouched.
    raw(locked, gcc_offer, "gcc")
        .execute(&app.pool)
        .await
        .unwrap();
    raw(free, commercial, "commercial")
        .execute(&app.pool)
        .await
        .unwrap();

    // Within one transaction too: GCC first, then anything else is refused.
    let mut tx = app.pool.begin().await.unwrap();
    raw(free, gcc_offer, "gcc").execute(&mut *tx).await.unwrap();
    let err = raw(free, commercial, "commercial")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("gcc_lockout"), "{err}");
    tx.rollback().await.unwrap();

    // And a row cannot be moved into the lockout by an update: no subscription ever moves to
    // another customer, since its customer is its shard on Citus (README, "Scaling out: Citus").
    let err = sqlx::query(
        "update subscriptions set customer_id = $1 where customer_id = $2 and segment = 'commercial'",
    )
    .bind(locked)
    .bind(free)
    .execute(&app.pool)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("never changes"), "{err}");
}
