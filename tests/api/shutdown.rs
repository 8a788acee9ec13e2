//! Graceful shutdown: SIGTERM to the real binary under load. Requests that were under way
//! finish, every acknowledged write is kept, the publisher and projectors finish what they
//! took, and the process exits 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::helpers::{
    backend, fresh_database_url, nats_url, server_env, ApiClient, Backend, Licensing, NatsNames,
    ServerProcess,
};

/// What became of one request.
#[derive(Debug)]
enum Fate {
    Acknowledged(String),
    /// Refused at the door once the server stopped accepting (connection refused).
    NotAccepted,
    Broken(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_finishes_requests_keeps_every_write_and_exits_0() {
    let database_url = fresh_database_url().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-shutdown-{}", Uuid::new_v4()));
    let nats = match backend() {
        Backend::Postgres => Some(NatsNames::unique(&nats_url()).await),
        Backend::Sqlite => None,
    };
    let mut env = server_env(&database_url, &key_dir, nats.as_ref());
    env.push(("SHUTDOWN_TIMEOUT_SECS".into(), "15".into()));
    let mut server = ServerProcess::start(&env).await;
    let api = ApiClient::login(&server.address).await;
    let created = api
        .create(json!({"customer_email": "stop@example.com", "customer_name": "Stop", "plan": "pro", "max_devices": 10000}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["license_key"].as_str().unwrap().to_owned();

    // Requests in flight at the signal: each has sent its headers and half its body, and
    // sends the rest only after SIGTERM. Each must still be answered.
    let (signal_sent, signal_seen) = tokio::sync::watch::channel(false);
    let mut waiting = Vec::new();
    let mut started = Vec::new();
    for _ in 0..3 {
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        started.push(is_ready);
        let port = server.address.rsplit(':').next().unwrap().to_owned();
        let (key, mut signal_seen) = (key.clone(), signal_seen.clone());
        waiting.push(tokio::spawn(async move {
            let body = json!({"license_key": key, "fingerprint": "fp-in-flight"}).to_string();
            let (first, rest) = body.split_at(body.len() / 2);
            let mut stream = TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap();
            let head = format!(
                "POST /api/v1/licensing/validate HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(first.as_bytes()).await.unwrap();
            let _ = ready.send(());
            let _ = signal_seen.wait_for(|sent| *sent).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            stream.write_all(rest.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    for ready in started {
        ready.await.unwrap();
    }

    // Writers on fresh connections (no pool: a request never lands on a connection the
    // server is closing), noting when each request started.
    let signalled: Arc<Mutex<Option<tokio::time::Instant>>> = Arc::default();
    let fates = Arc::new(Mutex::new(Vec::<(tokio::time::Instant, Fate)>::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let fresh = Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let licensing =
            Licensing::new(fresh, &server.address).with_timeout(Duration::from_secs(20));
        let (key, fates) = (key.clone(), fates.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..100_000 {
                let fingerprint = format!("writer-{writer}-device-{n}");
                let started = tokio::time::Instant::now();
                let device = json!({"fingerprint": fingerprint});
                let fate = match licensing.try_activate_device(&key, device).await {
                    Ok(answer) if answer.status == StatusCode::CREATED => {
                        Fate::Acknowledged(fingerprint)
                    }
                    Ok(answer) => Fate::Broken(format!("answered {}", answer.status)),
                    Err(error) if error.is_connect() => Fate::NotAccepted,
                    Err(error) => Fate::Broken(format!("{error:?}")),
                };
                let stop = !matches!(fate, Fate::Acknowledged(_));
                fates.lock().unwrap().push((started, fate));
                if stop {
                    return;
                }
            }
        }));
    }
    let acknowledged_count = |fates: &[(tokio::time::Instant, Fate)]| {
        fates
            .iter()
            .filter(|(_, f)| matches!(f, Fate::Acknowledged(_)))
            .count()
    };
    while acknowledged_count(&fates.lock().unwrap()) < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    *signalled.lock().unwrap() = Some(tokio::time::Instant::now());
    // The requests in flight send the rest of their bodies 300 ms from now, well after
    // the SIGTERM that follows at once.
    let _ = signal_sent.send(true);
    let status = server.terminate(Duration::from_secs(40)).await;
    let signalled = signalled.lock().unwrap().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; log:\n{}",
        server.log_text()
    );
    for writer in writers {
        writer.await.unwrap();
    }
    for request in waiting {
        let answer = request.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200")
                && answer.contains("\"code\":\"DEVICE_NOT_ACTIVATED\""),
            "a request in flight at SIGTERM was not answered: {answer:?}"
        );
    }

    let fates = std::mem::take(&mut *fates.lock().unwrap());
    let mut acknowledged = Vec::new();
    for (started, fate) in &fates {
        match fate {
            Fate::Acknowledged(fingerprint) => acknowledged.push(fingerprint.clone()),
            // Begun before the signal: the server had accepted it and must answer it.
            Fate::NotAccepted | Fate::Broken(_) if *started < signalled => {
                panic!("a request begun before SIGTERM failed: {fate:?}")
            }
            Fate::NotAccepted => {}
            Fate::Broken(why) => panic!("a request was broken off: {why}"),
        }
    }
    let log = server.log_text();
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.contains("shutdown complete"),
        "the pipeline stopped in order:\n{log}"
    );
    assert!(!log.contains("did not stop in time"), "{log}");

    // Restarted: every acknowledged activation is there, and the read models agree.
    let server = ServerProcess::start(&env).await;
    let api = ApiClient::login(&server.address).await;
    let subscription = api.get(&format!("/api/v1/subscriptions/{id}")).await;
    let stored = subscription["devices"].as_array().unwrap().len();
    assert_eq!(
        stored,
        acknowledged.len(),
        "every acknowledged write, and nothing that was not answered"
    );
    api.wait_for_read_models(Duration::from_secs(30)).await;
    let devices = api
        .get(&format!("/api/v1/devices?subscription_id={id}&per_page=1"))
        .await;
    assert_eq!(devices["total"].as_u64().unwrap() as usize, stored);
    if let Some(nats) = nats {
        nats.delete_stream().await;
    }
}

#[tokio::test]
async fn ctrl_c_stops_the_server_the_same_way() {
    let database_url = fresh_database_url().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-sigint-{}", Uuid::new_v4()));
    let nats = match backend() {
        Backend::Postgres => Some(NatsNames::unique(&nats_url()).await),
        Backend::Sqlite => None,
    };
    let env = server_env(&database_url, &key_dir, nats.as_ref());
    let mut server = ServerProcess::start(&env).await;
    ApiClient::login(&server.address).await;
    let status = server.signal("INT", Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    let log = server.log_text();
    assert!(log.contains("shutdown complete"), "{log}");
    if let Some(nats) = nats {
        nats.delete_stream().await;
    }
}
