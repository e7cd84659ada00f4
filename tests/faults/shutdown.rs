//! SIGTERM: requests in flight finish, and the process exits within the grace period even while
//! clients hold connections open.

use std::time::Duration;

use partner_catalog::dev::SeedOptions;
use reqwest::StatusCode;
use sqlx::PgPool;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::{
    cluster::Cluster,
    service::{Service, http_client},
};

/// The grace period the service is given.
const GRACE_SECS: u64 = 2;

/// Opens a connection to the service and sends `request` on it.
async fn send(base: &str, request: &str, receive_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let address = base.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_then_exits_despite_clients_holding_connections() {
    let cluster = Cluster::start("shutdown");
    let grace = GRACE_SECS.to_string();
    // Nothing but the grace period may end the held connections.
    let settings = [
        ("SHUTDOWN_GRACE_SECS", grace.as_str()),
        ("SEND_TIMEOUT_SECS", "600"),
        ("HEADER_READ_TIMEOUT_SECS", "600"),
        ("REQUEST_TIMEOUT_SECS", "600"),
    ];
    let mut service =
        Service::start_with(&cluster.url("partner_catalog"), cluster.dir(), &settings).await;
    let pool = PgPool::connect(&cluster.url("partner_catalog"))
        .await
        .expect("connect to the private cluster");
    let options = SeedOptions {
        events: 40_000,
        customers: 20,
        partners: 2,
        days: 1,
    };
    partner_catalog::dev::seed(&pool, &options, chrono::Utc::now())
        .await
        .expect("seed events");
    let auditor = service.token("auditor", None);
    let back_office = service.token("back_office", None);

    // An export whose client never reads (about 18 MB, so it stalls), and an idle keep-alive
    // connection.
    let export = format!(
        "GET /v1/audit/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/csv\r\n\
         Authorization: Bearer {auditor}\r\n\r\n"
    );
    let _stalled = send(&service.base, &export, Some(4096)).await;
    let mut idle = send(
        &service.base,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        None,
    )
    .await;
    let mut answer = [0_u8; 256];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));

    // A request in flight when the signal comes: an import waiting for a table lock.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("lock table customers in share mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let importing = {
        let request = http_client()
            .post(format!("{}/v1/customers:import", service.base))
            .bearer_auth(&back_office)
            .header("content-type", "application/x-ndjson")
            .body("{\"name\":\"In flight\"}\n");
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    service.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.rollback().await.unwrap();
    let imported = importing
        .await
        .unwrap()
        .expect("the request in flight got no answer");
    assert_eq!(imported.status(), StatusCode::CREATED);

    let status = service
        .wait_exit(Duration::from_secs(GRACE_SECS + 10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "still running 10 s after the grace period:\n{}",
                service.log_tail(20)
            )
        });
    assert!(status.success(), "{status}\n{}", service.log_tail(20));
    assert_eq!(service.log_count("shutdown grace period over"), 1);
    let customers: i64 =
        sqlx::query_scalar("select count(*) from customers where name = 'In flight'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(customers, 1);
    pool.close().await;
}
