//! The access log: at the default level, the real binary writes one JSON line per request to
//! `LOG_FILE` (what `tail -f logs/app.log` shows), and none with `ACCESS_LOG=false`.

use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    backend, fresh_database_url, nats_url, server_env, ApiClient, Backend, NatsNames, ServerProcess,
};

/// The real binary at its default log level, JSON lines in `logs/app.log`, behind a trusted
/// proxy on loopback.
async fn start_server(access_log: &str) -> (ServerProcess, Option<NatsNames>) {
    let database_url = fresh_database_url().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-access-{}", Uuid::new_v4()));
    let nats = match backend() {
        Backend::Postgres => Some(NatsNames::unique(&nats_url()).await),
        Backend::Sqlite => None,
    };
    let mut env = server_env(&database_url, &key_dir, nats.as_ref());
    // The default level, as an operator who sets nothing gets it.
    env.retain(|(name, _)| name != "RUST_LOG");
    env.extend([
        ("LOG_FORMAT".into(), "json".into()),
        ("LOG_FILE".into(), "logs/app.log".into()),
        ("TRUSTED_PROXIES".into(), "127.0.0.1".into()),
        ("ACCESS_LOG".into(), access_log.into()),
    ]);
    (ServerProcess::start(&env).await, nats)
}

/// Sends a GET from behind the proxy; returns the status and the body's length.
async fn get_forwarded(api: &ApiClient, path_and_query: &str, request_id: &str) -> (u16, usize) {
    let response = Client::new()
        .get(format!("{}{path_and_query}", api.base))
        .bearer_auth(&api.token)
        .header("x-request-id", request_id)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().len())
}

/// Stops the server (its log file's writer flushes on the way out) and returns the lines
/// of its log file.
async fn log_file_lines(mut server: ServerProcess) -> Vec<Value> {
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let logs = server.work_dir().join("logs");
    let text: String = std::fs::read_dir(&logs)
        .unwrap_or_else(|e| panic!("LOG_FILE made {}: {e}", logs.display()))
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert!(
        !text.contains("secret-query-text"),
        "a query string was logged"
    );
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .collect()
}

/// The lines whose own fields (not a span's) name `request_id`.
fn access_lines<'a>(lines: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| line["fields"]["request_id"] == request_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_writes_one_access_line_at_the_default_level_unless_turned_off() {
    let ((on, on_nats), (off, off_nats)) =
        tokio::join!(start_server("true"), start_server("false"));

    let api = ApiClient::login(&on.address).await;
    let created = api
        .create(json!({"customer_email": "log@example.com", "customer_name": "Log", "plan": "pro", "max_devices": 1}))
        .await;
    let path = format!("/api/v1/subscriptions/{}", created["id"].as_str().unwrap());
    let found = format!("access-found-{}", Uuid::new_v4().simple());
    let (status, bytes) = get_forwarded(&api, &path, &found).await;
    assert_eq!(status, 200);
    let listed = format!("access-listed-{}", Uuid::new_v4().simple());
    let query = "/api/v1/subscriptions?q=secret-query-text";
    assert_eq!(get_forwarded(&api, query, &listed).await.0, 200);
    let missing = format!("access-missing-{}", Uuid::new_v4().simple());
    let no_route = "/no/such/page?q=secret-query-text";
    assert_eq!(get_forwarded(&api, no_route, &missing).await.0, 404);

    let lines = log_file_lines(on).await;
    let found_lines = access_lines(&lines, &found);
    assert_eq!(
        found_lines.len(),
        1,
        "one access line per request: {found_lines:?}"
    );
    let line = found_lines[0];
    assert_eq!(line["level"], "INFO", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["method"], "GET", "{line}");
    assert_eq!(
        fields["path"],
        path.as_str(),
        "the path without its query: {line}"
    );
    assert_eq!(fields["route"], "/api/v1/subscriptions/{id}", "{line}");
    assert_eq!(fields["status"], 200, "{line}");
    assert!(
        fields["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    assert_eq!(fields["bytes"], bytes, "{line}");
    assert_eq!(
        fields["client_ip"], "203.0.113.9",
        "after TRUSTED_PROXIES: {line}"
    );
    let listed_lines = access_lines(&lines, &listed);
    assert_eq!(listed_lines.len(), 1, "{listed_lines:?}");
    assert_eq!(listed_lines[0]["fields"]["path"], "/api/v1/subscriptions");
    // A request no route matched is logged too.
    let missing_lines = access_lines(&lines, &missing);
    assert_eq!(missing_lines.len(), 1, "{missing_lines:?}");
    assert_eq!(missing_lines[0]["fields"]["status"], 404);
    assert_eq!(missing_lines[0]["fields"]["path"], "/no/such/page");

    let off_api = ApiClient::login(&off.address).await;
    let off_request = format!("access-off-{}", Uuid::new_v4().simple());
    assert_eq!(get_forwarded(&off_api, "/livez", &off_request).await.0, 200);
    let off_lines = log_file_lines(off).await;
    assert!(
        access_lines(&off_lines, &off_request).is_empty(),
        "ACCESS_LOG=false writes no access line"
    );
    for nats in [on_nats, off_nats].into_iter().flatten() {
        nats.delete_stream().await;
    }
}
