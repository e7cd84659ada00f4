//! Many writers, several service instances, one customer lock: R4 must hold whatever the timing.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{purchase_at, spawn_app};

const ROUNDS: usize = 40;
const ROUNDS_AT_ONCE: usize = 4;
const BUYERS_PER_SIDE: usize = 5;

/// What every round shares: the instances, the partners with a sales token each, the offers.
#[derive(Clone)]
struct Race {
    client: reqwest::Client,
    instances: Vec<String>,
    partners: Vec<(Uuid, String)>,
    offers: Vec<(&'static str, Uuid)>,
    back_office: String,
}

/// One round on a fresh customer qualified for education: at the same instant, buyers of
/// commercial and education offers, a back-office change to {gcc}, and buyers of the GCC offer,
/// spread over all instances and partners. Returns the segments of the 201s.
async fn race_round(race: Race, customer: Uuid, round: usize) -> Vec<&'static str> {
    let Race {
        client,
        instances,
        partners,
        offers,
        back_office,
    } = race;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(2 * BUYERS_PER_SIDE + 1));
    let mut buyers = Vec::new();
    for b in 0..2 * BUYERS_PER_SIDE {
        let (client, start) = (client.clone(), start.clone());
        // The first half buys commercial or education, the second half GCC.
        let (segment, offer) = if b < BUYERS_PER_SIDE {
            offers[b % 2]
        } else {
            offers[2]
        };
        let (partner, token) = partners[b % partners.len()].clone();
        let base = instances[b % instances.len()].clone();
        buyers.push(tokio::spawn(async move {
            start.wait().await;
            let reply = purchase_at(
                &client,
                &base,
                &token,
                customer,
                partner,
                offer,
                &format!("r{round}-b{b}"),
            )
            .await;
            match reply.status {
                StatusCode::CREATED => Some(segment),
                StatusCode::UNPROCESSABLE_ENTITY => {
                    assert_eq!(reply.body["code"], "purchase_denied");
                    None
                }
                other => panic!("unexpected {other}: {:#}", reply.body),
            }
        }));
    }
    let base = instances[round % instances.len()].clone();
    start.wait().await;
    let reply = client
        .put(format!("{base}/v1/customers/{customer}/qualifications"))
        .bearer_auth(&back_office)
        .header("if-match", "\"1\"")
        .json(&json!({ "special_qualifications": ["gcc"], "evidence": { "gcc": "GCV" }, "reason": "race" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let mut created = Vec::new();
    for buyer in buyers {
        created.extend(buyer.await.expect("buyer task"));
    }
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_purchases_and_qualification_changes_never_break_the_gcc_lockout() {
    let app = spawn_app().await;
    // Three service instances, each with its own pool, over one database.
    let instances = vec![
        app.address.clone(),
        app.spawn_instance().await,
        app.spawn_instance().await,
    ];
    let mut partners = Vec::new();
    for _ in 0..4 {
        partners.push(app.create_qualified_partner().await);
    }
    let mut offers = Vec::new();
    for segment in ["commercial", "education", "gcc"] {
        offers.push((segment, app.create_offer(segment, "license_based").await));
    }
    let mut customers = Vec::new();
    for _ in 0..ROUNDS {
        let customer = app.create_customer(&["education"]).await;
        for partner in &partners {
            app.link(customer, *partner).await;
        }
        customers.push(customer);
    }

    let mut sellers = Vec::new();
    for partner in &partners {
        sellers.push((*partner, app.sales_token(*partner).await));
    }
    let race = Race {
        client: app.client.clone(),
        instances: instances.clone(),
        partners: sellers,
        offers: offers.clone(),
        back_office: app.back_office.clone(),
    };
    let mut created = Vec::new();
    for chunk in customers.chunks(ROUNDS_AT_ONCE).enumerate() {
        let (c, group) = chunk;
        let rounds: Vec<_> = group
            .iter()
            .enumerate()
            .map(|(i, customer)| {
                tokio::spawn(race_round(race.clone(), *customer, c * ROUNDS_AT_ONCE + i))
            })
            .collect();
        for round in rounds {
            created.extend(round.await.expect("round"));
        }
    }

    let gcc = created.iter().filter(|s| **s == "gcc").count();
    assert!(
        gcc > 0 && gcc < created.len(),
        "the race must create both GCC and other subscriptions"
    );
    assert_eq!(
        app.count("subscriptions").await,
        created.len() as i64,
        "one subscription per 201"
    );
    let broken: i64 = sqlx::query_scalar(
        "select count(*) from subscriptions s
         where s.segment <> 'gcc'
           and exists (select 1 from subscriptions g
                       where g.customer_id = s.customer_id and g.segment = 'gcc' and g.created_at < s.created_at)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        broken, 0,
        "no customer bought a non-GCC subscription after its first GCC subscription"
    );

    // Each subscription was decided under the qualification set in force at its commit: the set
    // recorded with the decision is the one the latest qualification change before it had set.
    let mismatched: i64 = sqlx::query_scalar(
        "select count(*) from events e
         where e.event_type = 'subscription_created'
           and e.payload -> 'customer_qualifications' is distinct from coalesce(
               (select q.payload -> 'after' from events q
                where q.customer_id = e.customer_id and q.event_type = 'customer_qualifications_set'
                  and q.occurred_at < e.occurred_at
                order by q.occurred_at desc limit 1),
               (select c.payload -> 'special_qualifications' from events c
                where c.customer_id = e.customer_id and c.event_type = 'customer_created'))",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);

    // The same, from the qualification history: the set in force when each subscription was
    // created allowed its segment (the race only sells commercial, education and GCC).
    let outside_the_set: i64 = sqlx::query_scalar(
        "select count(*) from subscriptions s
         cross join lateral (
             select h.special_qualifications as q from customer_qualification_history h
             where h.customer_id = s.customer_id and h.valid_from <= s.created_at
             order by h.valid_from desc limit 1) in_force
         where not case s.segment
             when 'gcc' then 'gcc' = any(in_force.q)
             when 'education' then 'education' = any(in_force.q)
             else not 'gcc' = any(in_force.q) end",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(outside_the_set, 0);
}

/// A purchase decides on facts read without locks and records only if they still hold under the
/// customer's lock. Here a GCC subscription commits after the read and before the record (another
/// transaction holds the customer's lock while the record waits for it): the commercial purchase
/// must be decided again, and denied by the lockout, not recorded as allowed on the old facts.
#[tokio::test]
async fn a_purchase_whose_facts_change_before_its_locks_is_decided_again_on_the_new_ones() {
    let app = spawn_app().await;
    let partner = app.create_qualified_partner().await;
    let commercial = app.create_offer("commercial", "license_based").await;
    let gcc = app.create_offer("gcc", "license_based").await;
    let customer = app.create_customer(&[]).await;
    app.link(customer, partner).await;
    let token = app.sales_token(partner).await;

    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from customers where id = $1 for no key update")
        .bind(customer)
        .execute(&mut *holder)
        .await
        .unwrap();
    let buying = tokio::spawn({
        let (client, address) = (app.client.clone(), app.address.clone());
        async move {
            purchase_at(
                &client,
                &address,
                &token,
                customer,
                partner,
                commercial,
                "after-the-read",
            )
            .await
        }
    });
    // The purchase has read its facts (no GCC history) and waits for the customer's lock.
    app.waits_for_a_lock("%purchase_record%").await;
    let gcc_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity, created_at)
         values ($1, $2, $3, $4, 'gcc', 1, clock_timestamp()) returning created_at",
    )
    .bind(Uuid::now_v7())
    .bind(customer)
    .bind(partner)
    .bind(gcc)
    .fetch_one(&mut *holder)
    .await
    .unwrap();
    holder.commit().await.unwrap();

    let reply = buying.await.unwrap();
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "purchase_denied");
    assert_eq!(reply.violation_codes(), ["gcc_lockout"], "{:#}", reply.body);
    assert_eq!(app.count("subscriptions").await, 1, "only the GCC one");
    let decided_at: String = sqlx::query_scalar(
        "select payload ->> 'decided_at' from events
         where customer_id = $1 and event_type = 'purchase_denied'",
    )
    .bind(customer)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let decided_at: chrono::DateTime<chrono::Utc> = decided_at.parse().unwrap();
    assert!(
        decided_at > gcc_at,
        "decided at {decided_at}, after the GCC subscription of {gcc_at}"
    );
    let stored: serde_json::Value = sqlx::query_scalar(
        "select outcome from idempotency_keys where customer_id = $1 and key = 'after-the-read'",
    )
    .bind(customer)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored["result"], "denied", "{stored:#}");
}
