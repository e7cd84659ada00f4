//! The real thing, where it exists: a Citus coordinator and two workers as private clusters, the
//! schema distributed as `db::sharding::TABLES` says (the README's operator steps), purchases
//! through the service, and proof from `EXPLAIN` that every purchase statement is a single-shard
//! task and from `pg_dist_transaction` that no two-phase commit was written.
//!
//! Runs only when the Citus extension is installed (`citus.so` in `pg_config --pkglibdir`); it
//! prints that it skipped otherwise. No reachable registry ships Citus, so CI skips it.

use std::{path::PathBuf, process::Command};

use partner_catalog::db::{
    MIGRATOR,
    sharding::{Placement, TABLES},
};
use sqlx::{Connection, Executor, PgConnection, Row};
use uuid::Uuid;

use crate::{
    cluster::Cluster,
    load::{Answer, buy},
    service::{Service, http_client, seed},
};

/// The database every node holds.
const DATABASE: &str = "partner_catalog";

/// `citus.so`, if this PostgreSQL has it.
fn citus_library() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--pkglibdir")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("citus.so");
    path.is_file().then_some(path)
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// The number of tasks of a statement's distributed plan; 0 when it ran on the coordinator only.
fn task_counts(plan: &serde_json::Value, out: &mut Vec<i64>) {
    match plan {
        serde_json::Value::Object(map) => {
            if let Some(n) = map.get("Task Count").and_then(|n| n.as_i64()) {
                out.push(n);
            }
            map.values().for_each(|v| task_counts(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| task_counts(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn on_citus_a_purchase_is_a_single_shard_transaction() {
    let Some(_) = citus_library() else {
        eprintln!(
            "skipped: the Citus extension is not installed (no citus.so in `pg_config --pkglibdir`)"
        );
        return;
    };
    // Kept 2PC records stay visible: recovery would otherwise clear them every minute.
    let conf = "shared_preload_libraries = 'citus'\nmax_prepared_transactions = 20\n\
                citus.recover_2pc_interval = -1\n";
    let coordinator = Cluster::start_with("citus-coordinator", conf);
    let workers = [
        Cluster::start_with("citus-worker-1", conf),
        Cluster::start_with("citus-worker-2", conf),
    ];
    for node in std::iter::once(&coordinator).chain(&workers) {
        let mut admin = connect(&node.url("postgres")).await;
        admin
            .execute(format!("create database {DATABASE}").as_str())
            .await
            .expect("create the database");
        let mut db = connect(&node.url(DATABASE)).await;
        db.execute("create extension citus")
            .await
            .expect("create extension citus");
    }
    let mut db = connect(&coordinator.url(DATABASE)).await;
    sqlx::query("select citus_set_coordinator_host('127.0.0.1', $1)")
        .bind(i32::from(coordinator.port))
        .execute(&mut db)
        .await
        .expect("set the coordinator");
    for worker in &workers {
        sqlx::query("select citus_add_node('127.0.0.1', $1)")
            .bind(i32::from(worker.port))
            .execute(&mut db)
            .await
            .expect("add a worker");
    }

    // The operator's steps (README, "Distributing an existing database").
    MIGRATOR.run(&mut db).await.expect("migrate");
    db.execute("set citus.enable_unsafe_triggers = on")
        .await
        .expect("allow triggers");
    db.execute(format!("alter database {DATABASE} set citus.enable_unsafe_triggers = on").as_str())
        .await
        .expect("allow triggers for the service");
    for (table, placement) in TABLES {
        let statement = match placement {
            Placement::Reference => format!("select create_reference_table('{table}')"),
            // Citus may have made it a local table of its metadata already, for its foreign key
            // to a reference table.
            Placement::Local => format!(
                "select citus_add_local_table_to_metadata('{table}') where not exists \
                 (select 1 from pg_dist_partition where logicalrelid = '{table}'::regclass)"
            ),
            Placement::Distributed(column) if *table == "customers" => {
                format!("select create_distributed_table('{table}', '{column}')")
            }
            // Keyed by the reference (text), not by a customer: a colocation group of its own.
            Placement::Distributed(column) if *table == "customer_external_references" => format!(
                "select create_distributed_table('{table}', '{column}', colocate_with => 'none')"
            ),
            Placement::Distributed(column) => format!(
                "select create_distributed_table('{table}', '{column}', colocate_with => 'customers')"
            ),
        };
        if *table == "events" {
            db.execute("alter table events disable trigger events_chain")
                .await
                .expect("chain trigger off");
        }
        db.execute(statement.as_str())
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        if *table == "events" {
            db.execute("alter table events enable trigger events_chain")
                .await
                .expect("chain trigger on");
        }
    }

    let service = Service::start(&coordinator.url(DATABASE), coordinator.dir()).await;
    let shop = seed(&service, 6).await;
    let client = http_client();
    for (n, customer) in shop.customers.iter().enumerate() {
        let answer = buy(
            &client,
            &shop,
            &shop.sales_token,
            *customer,
            &format!("c-{n}"),
        )
        .await;
        assert!(
            matches!(answer, Answer::Created { .. }),
            "purchase {n}: {answer:?}\n{}",
            service.log_tail(30)
        );
        // A retry is replayed, on the same shard.
        let retry = buy(
            &client,
            &shop,
            &shop.sales_token,
            *customer,
            &format!("c-{n}"),
        )
        .await;
        assert!(
            matches!(retry, Answer::Created { replayed: true, .. }),
            "{retry:?}"
        );
    }
    let two_phase: i64 = sqlx::query_scalar("select count(*) from pg_dist_transaction")
        .fetch_one(&mut db)
        .await
        .expect("read 2PC records");
    assert_eq!(
        two_phase, 0,
        "purchases wrote two-phase commit records: they touched more than one node"
    );

    // Each statement of a purchase, for one customer, planned by Citus: one task each.
    let customer = shop.customers[0];
    let (partner, offer) = (shop.partner, shop.offer);
    let key = format!("explain-{}", Uuid::now_v7());
    let statements = [
        // The first round trip, as `db::purchases::read` sends it.
        format!(
            "select k.request, k.outcome, o.id, f.* from (select clock_timestamp() as at) t
             cross join lateral policy_in_force(t.at) v
             left join idempotency_keys k on k.customer_id = '{customer}' and k.owner = 'o' and k.key = '{key}'
             left join offers o on o.id = '{offer}'
             left join lateral purchase_facts('{customer}', '{partner}') f on true"
        ),
        // Then the statements of `purchase_record`.
        format!(
            "select k.request, k.outcome from idempotency_keys k
             where k.customer_id = '{customer}' and k.owner = 'o' and k.key = '{key}'"
        ),
        format!(
            "select 1 from customers c, partners p
             where c.id = '{customer}' and p.id = '{partner}' for no key update of c for share of p"
        ),
        format!("select * from purchase_facts('{customer}', '{partner}')"),
        format!(
            "insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity)
             values ('{}', '{customer}', '{partner}', '{offer}', 'education', 1)",
            Uuid::now_v7()
        ),
        format!(
            "insert into events (chain_id, actor, customer_id, partner_id, event_type, payload)
             values ('{customer}', 'explain', '{customer}', '{partner}', 'purchase_denied', '{{}}')"
        ),
        format!(
            "insert into idempotency_keys (owner, key, customer_id, request, outcome)
             values ('o', '{key}', '{customer}', '{{}}', '{{}}')"
        ),
        format!(
            "update subscriptions set status = 'suspended' where customer_id = '{customer}' and id = '{}'",
            Uuid::now_v7()
        ),
    ];
    let mut tx = db.begin().await.expect("begin");
    for statement in &statements {
        let row = sqlx::query(&format!("explain (format json) {statement}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("explain {statement}: {e}"));
        let plan: serde_json::Value = row.try_get(0).expect("a JSON plan");
        let mut tasks = Vec::new();
        task_counts(&plan, &mut tasks);
        assert!(
            !tasks.is_empty() && tasks.iter().all(|&n| n == 1),
            "not a single-shard task ({tasks:?}): {statement}\n{plan:#}"
        );
    }
    tx.rollback().await.expect("rollback");

    let (verified, report) = service.audit_verifies();
    assert!(verified, "audit verify on Citus: {report}");
}
