//! One trace from the request through the append, the publisher and the bus (a NATS header
//! or the in-process bus) to the projectors; and the real binary exporting over OTLP/HTTP
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::time::Duration;

use opentelemetry_sdk::trace::SpanData;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::helpers::{
    backend, fresh_database_url, nats_url, server_env, spans_of_trace, spawn_app, Backend,
    NatsNames, ServerProcess,
};

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn is_child_of(child: &SpanData, parents: &[&SpanData]) -> bool {
    parents
        .iter()
        .any(|p| p.span_context.span_id() == child.parent_span_id)
}

#[tokio::test]
async fn one_trace_follows_a_write_from_the_request_to_the_projections() {
    let app = spawn_app().await;
    let trace_id = Uuid::new_v4().simple().to_string();
    let caller_span = &Uuid::new_v4().simple().to_string()[..16];
    let traceparent = format!("00-{trace_id}-{caller_span}-01");

    let response = app
        .admin(Method::POST, "/api/v1/subscriptions")
        .header("traceparent", &traceparent)
        .json(&json!({"customer_email": "trace@example.com", "customer_name": "Trace", "plan": "pro", "max_devices": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();

    // The events keep the trace context of the command that appended them.
    let history: Value = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = history["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for item in items {
        let stored = item["metadata"]["traceparent"]
            .as_str()
            .unwrap_or_else(|| panic!("no traceparent in {item}"));
        assert!(stored.starts_with(&format!("00-{trace_id}-")), "{stored}");
    }

    // Every projector applies every event; a projector's span ends when its message is
    // acknowledged.
    app.wait_for_read_models().await;
    let projectors = if backend() == Backend::Postgres { 2 } else { 1 };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = spans_of_trace(&trace_id);
        if named(&spans, "project").len() >= items.len() * projectors {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projections' spans never came: {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let request = named(&spans, "request");
    assert_eq!(request.len(), 1, "one request span");
    assert_eq!(
        request[0].parent_span_id.to_string(),
        caller_span,
        "the request continues the caller's trace"
    );
    let command = named(&spans, "command");
    assert_eq!(command.len(), 1);
    assert!(is_child_of(command[0], &request), "request → command");
    let publish = named(&spans, "publish");
    assert_eq!(publish.len(), items.len(), "one publish span per event");
    for span in &publish {
        assert!(is_child_of(span, &command), "command → publish");
    }
    for span in named(&spans, "project") {
        assert!(
            is_child_of(span, &publish),
            "publish → project ({} via {})",
            span.name,
            if backend() == Backend::Postgres {
                "the NATS header"
            } else {
                "the in-process bus"
            }
        );
    }
}

/// A stand-in OTLP/HTTP collector: answers 200 to every request and hands over what it
/// was sent (each connection sends one request).
async fn collector() -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (sent, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 65536];
                // Read the head, then as much body as Content-Length says.
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = sent.send(request);
            });
        }
    });
    (address, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_its_spans_over_otlp_http_when_an_endpoint_is_set() {
    let (endpoint, mut received) = collector().await;
    let database_url = fresh_database_url().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-otlp-{}", Uuid::new_v4()));
    let nats = match backend() {
        Backend::Postgres => Some(NatsNames::unique(&nats_url()).await),
        Backend::Sqlite => None,
    };
    let mut env = server_env(&database_url, &key_dir, nats.as_ref());
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint));
    let mut server = ServerProcess::start(&env).await;
    let response = Client::new()
        .get(format!("{}/health", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Spans go out in batches; stopping flushes the last one.
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let request = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the collector was sent spans")
        .unwrap();
    let text = String::from_utf8_lossy(&request);
    assert!(text.starts_with("POST /v1/traces "), "{text}");
    assert!(
        text.to_lowercase()
            .contains("content-type: application/x-protobuf"),
        "{text}"
    );
    // The protobuf names the service and the request span.
    assert!(
        text.contains("flowlytix"),
        "the service name is in the export"
    );
    assert!(
        text.contains("request"),
        "the request span is in the export"
    );
    if let Some(nats) = nats {
        nats.delete_stream().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_nothing_connects() {
    let (collector_url, mut received) = collector().await;
    let database_url = fresh_database_url().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-no-otlp-{}", Uuid::new_v4()));
    let nats = match backend() {
        Backend::Postgres => Some(NatsNames::unique(&nats_url()).await),
        Backend::Sqlite => None,
    };
    let mut env = server_env(&database_url, &key_dir, nats.as_ref());
    // The SDK's own variable, which an exporter built by default would follow: the server
    // builds none without OTEL_EXPORTER_OTLP_ENDPOINT.
    env.push((
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(),
        format!("{collector_url}/v1/traces"),
    ));
    let mut server = ServerProcess::start(&env).await;
    let client = Client::new();
    let response = client
        .get(format!("{}/health", server.address))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let sent = tokio::time::timeout(Duration::from_secs(2), received.recv()).await;
    assert!(sent.is_err(), "something was exported: {sent:?}");
    if let Some(nats) = nats {
        nats.delete_stream().await;
    }
}
