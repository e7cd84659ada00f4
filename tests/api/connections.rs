//! Slow and stalled clients: clients that open connections and send nothing, half a request head
//! or a body they announced and never send, over raw TCP.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::spawn_app;

/// Longest any answer or disconnection may take in these tests: generous, only there so that a
/// server that never answers fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(10);

/// `host:port` of a base URL.
fn socket_address(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// Reads until the server closes the connection (EOF or a reset); `None` if it is still open
/// after [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(received)
}

/// Reads one response's status line, headers and `Content-Length` body.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    let read = tokio::time::timeout(BOUND, async {
        loop {
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return text,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.expect("no answer within the bound")
}

#[tokio::test]
async fn a_connection_that_sends_half_a_request_head_is_closed_after_the_header_timeout() {
    let app = spawn_app().await;
    let base = app
        .spawn_instance_with(|c| {
            c.header_read_timeout_secs = 1;
            c.request_timeout_secs = 60;
        })
        .await;
    let mut half = TcpStream::connect(socket_address(&base)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nAcc")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(socket_address(&base)).await.unwrap();
    assert!(
        read_until_closed(&mut half).await.is_some(),
        "a half-sent request head kept its connection open"
    );
    assert!(
        read_until_closed(&mut silent).await.is_some(),
        "a connection that sent nothing was kept open"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app().await;
    let base = app
        .spawn_instance_with(|c| c.header_read_timeout_secs = 1)
        .await;
    let mut stream = TcpStream::connect(socket_address(&base)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        read_until_closed(&mut stream).await.is_some(),
        "an idle keep-alive connection was kept open"
    );
}

#[tokio::test]
async fn hundreds_of_idle_and_half_open_connections_do_not_keep_others_from_being_served() {
    let app = spawn_app().await;
    // A header timeout longer than the test, so every stalled connection is still held.
    let base = app
        .spawn_instance_with(|c| c.header_read_timeout_secs = 60)
        .await;
    let mut stalled = Vec::new();
    for n in 0..300 {
        let mut stream = TcpStream::connect(socket_address(&base)).await.unwrap();
        if n % 2 == 1 {
            stream
                .write_all(b"POST /v1/offers HTTP/1.1\r\nHost: localhost\r\nContent-Le")
                .await
                .unwrap();
        }
        stalled.push(stream);
    }
    let reply = tokio::time::timeout(
        BOUND,
        app.client
            .get(format!("{base}/v1/offers"))
            .bearer_auth(&app.operator)
            .send(),
    )
    .await
    .expect("not answered while stalled connections were open")
    .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    drop(stalled);
}

#[tokio::test]
async fn beyond_max_connections_new_connections_wait_until_one_closes() {
    let app = spawn_app().await;
    let base = app
        .spawn_instance_with(|c| {
            c.max_connections = 2;
            c.header_read_timeout_secs = 60;
        })
        .await;
    let first = TcpStream::connect(socket_address(&base)).await.unwrap();
    let _second = TcpStream::connect(socket_address(&base)).await.unwrap();
    let request = {
        let (client, url) = (app.client.clone(), format!("{base}/healthz"));
        tokio::spawn(async move { client.get(url).send().await })
    };
    // Both slots are held, so the third connection is not served (this is the cap, not a speed).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!request.is_finished(), "served beyond MAX_CONNECTIONS");
    drop(first);
    let reply = tokio::time::timeout(BOUND, request)
        .await
        .expect("not served after a slot was freed")
        .unwrap()
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
}

/// Sends a request head declaring `length` body bytes, sends no body, and returns the answer.
async fn declare_body(
    base: &str,
    path: &str,
    token: &str,
    content_type: &str,
    length: usize,
) -> String {
    let mut stream = TcpStream::connect(socket_address(base)).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_at_once_without_waiting_for_it() {
    let app = spawn_app().await;
    // A long request timeout: an answer within the bound cannot be the timeout's.
    let base = app
        .spawn_instance_with(|c| {
            c.request_timeout_secs = 120;
            c.body_limit_bytes = 1024;
            c.import_body_limit_bytes = 4096;
        })
        .await;
    let json = "application/json";
    let answer = declare_body(&base, "/v1/offers", &app.operator, json, 1025).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");

    // The import's own limit applies to it: over the JSON limit is fine, over its own is not.
    let ndjson = "application/x-ndjson";
    let import = "/v1/customers:import";
    let answer = declare_body(&base, import, &app.back_office, ndjson, 4097).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    let lines = format!("{{\"name\":\"{}\"}}\n", "c".repeat(100)).repeat(20);
    let reply = app
        .client
        .post(format!("{base}{import}"))
        .bearer_auth(&app.back_office)
        .header("content-type", ndjson)
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_body_that_breaks_off_mid_way_is_unreadable_and_writes_nothing() {
    let app = crate::helpers::spawn_app().await;
    let before = app.snapshot().await;
    let mut stream = TcpStream::connect(socket_address(&app.address))
        .await
        .unwrap();
    // A chunked body whose second chunk size is not hexadecimal.
    let request = format!(
        "POST /v1/customers HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         5\r\n{{\"nam\r\nzz\r\n",
        app.back_office
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").expect("a response head");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["code"], "unreadable_body", "{response}");
    assert_eq!(app.snapshot().await, before);
}
