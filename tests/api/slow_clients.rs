//! Slow clients: a connection whose request head never ends is closed by the server after
//! `HEADER_READ_TIMEOUT`, and hundreds of them do not hold up anyone else meanwhile.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{free_port, spawn_app_with};

/// A request head cut off in the middle of a header line, as a slowloris client sends it.
const HALF_SENT: &[u8] = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-a: ";
const HALF_SENT_CONNECTIONS: usize = 500;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The server runs in this process, so each half-sent connection costs two descriptors
/// here (ours and the server's): 1000 and more, above the usual soft limit of 1024.
/// Raised to the hard limit, as a server's service manager would (`LimitNOFILE`).
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("raise the soft open-file limit to the hard one");
    let needed = 2 * HALF_SENT_CONNECTIONS as u64 + 200;
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|n| n >= needed),
        "this test needs {needed} open files; the hard limit is {now:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_after_the_header_read_timeout_and_livez_still_answers() {
    raise_open_file_limit();
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT", "1s")]).await;
    let address = app.address.trim_start_matches("http://").to_owned();

    // Each connection sends half a request head, then waits for the server to close it
    // (the end of the stream, or a reset), noting how long after its bytes that came.
    let mut held = Vec::with_capacity(HALF_SENT_CONNECTIONS);
    for _ in 0..HALF_SENT_CONNECTIONS {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(HALF_SENT).await.unwrap();
        let sent = Instant::now();
        held.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            let waited = HEADER_READ_TIMEOUT + Duration::from_secs(1);
            match tokio::time::timeout(waited, stream.read_to_end(&mut answer)).await {
                Ok(_) => Some(sent.elapsed()),
                Err(_) => None,
            }
        }));
    }

    // Meanwhile: /livez on fresh connections, each answered in under 100 ms.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..5 {
        let started = Instant::now();
        let response = fresh.get(app.url("/livez")).send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert!(
            took < Duration::from_millis(100),
            "/livez took {took:?} with {HALF_SENT_CONNECTIONS} half-sent requests open"
        );
    }

    let mut still_open = 0;
    let mut slowest = Duration::ZERO;
    for connection in held {
        match connection.await.unwrap() {
            Some(closed_after) => slowest = slowest.max(closed_after),
            None => still_open += 1,
        }
    }
    assert_eq!(
        still_open, 0,
        "{still_open} of {HALF_SENT_CONNECTIONS} half-sent connections were still open \
         {HEADER_READ_TIMEOUT:?} + 1 s after their last byte"
    );
    assert!(
        slowest >= HEADER_READ_TIMEOUT - Duration::from_millis(50),
        "closed after {slowest:?}, before the timeout: something else closed them"
    );
}

/// `METRICS_ADDR`, the listener of its own for `/metrics`, has the same limit.
#[tokio::test]
async fn a_half_sent_request_to_the_metrics_listener_is_closed_after_the_timeout_too() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _app = spawn_app_with(&[
        ("HEADER_READ_TIMEOUT", "1s"),
        ("METRICS_ADDR", metrics_addr.as_str()),
    ])
    .await;
    let mut stream = TcpStream::connect(&metrics_addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-a: ")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let waited = HEADER_READ_TIMEOUT + Duration::from_secs(1);
    let closed = tokio::time::timeout(waited, stream.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "a half-sent request to METRICS_ADDR was still open after {waited:?}"
    );
}
