//! The service is killed (SIGKILL) under purchase load and started again.

use std::time::Duration;

use sqlx::PgPool;

use crate::{
    cluster::Cluster,
    load::{self, Load},
    service::{Service, seed},
};

/// How many times the service is killed.
const CRASHES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_survive_service_crashes() {
    let cluster = Cluster::start("crash");
    let mut service = Service::start(&cluster.url("partner_catalog"), cluster.dir()).await;
    let shop = seed(&service, 3).await;
    let pool = PgPool::connect(&cluster.url("partner_catalog"))
        .await
        .expect("connect to the private cluster");

    let load = Load::start(&shop, 6, "crash");
    for crash in 0..CRASHES {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        service.kill();
        // What the killed process committed is whole; what it had not committed is not there.
        let problems = load::check_purchases_whole(&pool).await;
        assert!(
            problems.is_empty(),
            "right after crash {crash}: {problems:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        service.restart().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let histories = load.finish().await;

    let tally = load::tally(&histories);
    eprintln!("service crashes: {tally}");
    // Refused and reset connections are what a crash looks like; a hang or a lost key is not.
    tally.assert_sound(&service);
    assert!(
        tally.no_answer > 0,
        "no request was cut off by a crash, so this test tested nothing: {tally}"
    );
    let mut problems = load::check_one_subscription_per_key(&pool, &shop, &histories).await;
    problems.extend(load::check_purchases_whole(&pool).await);
    pool.close().await;
    assert!(problems.is_empty(), "{tally}\n{problems:#?}");
    let (verified, report) = tokio::task::block_in_place(|| service.audit_verifies());
    assert!(
        verified,
        "the event log does not verify after the crashes:\n{report}"
    );
}
