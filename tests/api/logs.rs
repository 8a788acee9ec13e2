//! The real binary's logs: JSON lines on standard error and in `LOG_FILE`, every line of a
//! request carrying its request id, and no secret in any line at any level, even with
//! `LOG_LEVEL=trace`, `DEBUG=true` and `DATABASE_ECHO=true`.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    backend, fresh_database_url, nats_url, server_env, Backend, NatsNames, ServerProcess,
    ADMIN_EMAIL, ADMIN_PASSWORD,
};

/// A secret and the forms in which it could leak (a key also without its dashes and
/// without its shown prefix; a JWT also by its signature).
fn leak_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    if secret.starts_with("FLX-") {
        forms.push(secret.replace('-', ""));
        forms.push(secret[9..].to_owned());
    }
    if secret.matches('.').count() == 2 {
        forms.push(secret.rsplit('.').next().unwrap().to_owned());
    }
    forms
}

async fn post(client: &Client, base: &str, path: &str, marker: &str, body: Value) -> Value {
    let response = client
        .post(format!("{base}{path}"))
        .header("x-request-id", marker)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    assert!(
        status.is_success() || status == StatusCode::UNAUTHORIZED,
        "{path}: {status} {body}"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_ids_and_no_secret_at_trace_level_with_debug_and_sql_echo() {
    let database_url = fresh_database_url().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-logs-{}", Uuid::new_v4()));
    let nats = match backend() {
        Backend::Postgres => Some(NatsNames::unique(&nats_url()).await),
        Backend::Sqlite => None,
    };
    let mut env = server_env(&database_url, &key_dir, nats.as_ref());
    env.extend([
        ("LOG_FORMAT".into(), "json".into()),
        ("LOG_LEVEL".into(), "trace".into()),
        ("DEBUG".into(), "true".into()),
        ("DATABASE_ECHO".into(), "true".into()),
        ("LOG_FILE".into(), "logs/app.log".into()),
    ]);
    let mut server = ServerProcess::start(&env).await;
    let (client, base) = (Client::new(), server.address.clone());
    let marker = format!("logs-test-{}", Uuid::new_v4().simple());

    let mut secrets: Vec<(&str, String)> = vec![("the admin password", ADMIN_PASSWORD.into())];
    let pair = post(
        &client,
        &base,
        "/api/v1/auth/login",
        &marker,
        json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
    )
    .await;
    let wrong = "a-wrong-password-that-must-not-be-logged";
    post(
        &client,
        &base,
        "/api/v1/auth/login",
        &marker,
        json!({"email": ADMIN_EMAIL, "password": wrong}),
    )
    .await;
    secrets.push(("a wrong password", wrong.into()));
    let refreshed = post(
        &client,
        &base,
        "/api/v1/auth/refresh",
        &marker,
        json!({"refresh_token": pair["refresh_token"]}),
    )
    .await;
    for (what, body) in [("the first", &pair), ("the refreshed", &refreshed)] {
        for field in ["access_token", "refresh_token"] {
            secrets.push((what, body[field].as_str().unwrap().to_owned()));
        }
    }
    let access = refreshed["access_token"].as_str().unwrap().to_owned();
    let created: Value = client
        .post(format!("{base}/api/v1/subscriptions"))
        .header("x-request-id", &marker)
        .bearer_auth(&access)
        .json(&json!({"customer_email": "logs@example.com", "customer_name": "Logs", "plan": "pro", "max_devices": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["license_key"].as_str().unwrap().to_owned();
    secrets.push(("the license key", key.clone()));
    let activated = post(
        &client,
        &base,
        "/api/v1/licensing/activate",
        &marker,
        json!({"license_key": key, "device": {"fingerprint": "fp-logs"}}),
    )
    .await;
    let token = activated["token"].as_str().unwrap().to_owned();
    secrets.push(("the license token", token.clone()));
    post(
        &client,
        &base,
        "/api/v1/licensing/validate",
        &marker,
        json!({"license_key": key, "fingerprint": "fp-logs"}),
    )
    .await;
    let renewed = post(
        &client,
        &base,
        "/api/v1/licensing/refresh",
        &marker,
        json!({"token": token}),
    )
    .await;
    let renewed = renewed["token"].as_str().unwrap().to_owned();
    secrets.push(("the refreshed license token", renewed.clone()));
    post(
        &client,
        &base,
        "/api/v1/licensing/validate",
        &marker,
        json!({"token": renewed, "fingerprint": "fp-logs"}),
    )
    .await;
    let regenerated: Value = client
        .post(format!(
            "{base}/api/v1/subscriptions/{}/license-key",
            created["id"].as_str().unwrap()
        ))
        .header("x-request-id", &marker)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    secrets.push((
        "the regenerated key",
        regenerated["license_key"].as_str().unwrap().to_owned(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SIGTERM: the log file's writer flushes on the way out.
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let stderr = server.log_text();
    let logs_dir = server.work_dir().join("logs");
    let file_names: Vec<_> = std::fs::read_dir(&logs_dir)
        .unwrap_or_else(|e| panic!("LOG_FILE made {}: {e}", logs_dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    // Daily rotation names the file by its day.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        file_names.iter().any(|p| p
            .display()
            .to_string()
            .ends_with(&format!("app.log.{today}"))),
        "{file_names:?}"
    );
    let file: String = file_names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();

    for (place, text) in [("standard error", &stderr), ("LOG_FILE", &file)] {
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{place}: not JSON ({e}): {l}"))
            })
            .collect();
        assert!(
            lines.len() > 100,
            "{place} logs at trace level: {} lines",
            lines.len()
        );
        assert!(
            lines.iter().any(|l| l["level"] == "TRACE"),
            "{place} has trace lines"
        );
        // Every line logged inside a request's span names the request.
        let in_requests: Vec<&Value> = lines
            .iter()
            .filter(|l| {
                l["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["name"] == "request"))
            })
            .collect();
        let mut ours = 0;
        for line in &in_requests {
            let request = line["spans"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == "request")
                .unwrap();
            let id = request["request_id"].as_str().unwrap_or("");
            assert!(
                !id.is_empty(),
                "{place}: a request line without its request id: {line}"
            );
            ours += usize::from(id == marker);
        }
        assert!(
            ours >= 20,
            "{place}: only {ours} lines carry this test's request id"
        );
        for (what, secret) in &secrets {
            for form in leak_forms(secret) {
                assert!(!text.contains(&form), "{place} contains {what} ({form})");
            }
        }
    }
    if let Some(nats) = nats {
        nats.delete_stream().await;
    }
}
