//! The read side on whichever backend this run uses (SQLite + in-process bus, or PostgreSQL
//! + NATS): read-your-writes with `min_position`, `as_of`, and `flowlytix replay` / `events
//! export` run as the real binary on the app's database.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.admin(Method::GET, path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

async fn put(app: &TestApp, id: &str, body: Value) -> Value {
    let response = app
        .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// What the read models say, through the API.
async fn read_side_view(app: &TestApp) -> Vec<Value> {
    let mut view = Vec::new();
    for path in [
        "/api/v1/subscriptions?per_page=200&sort=created_at",
        "/api/v1/devices?per_page=200",
        "/api/v1/analytics/dashboard",
        "/api/v1/analytics/devices",
    ] {
        view.push(get_json(app, path).await);
    }
    view
}

fn run_binary(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flowlytix"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the flowlytix binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_position_as_of_replay_and_export_work_on_this_backend() {
    let app = spawn_app().await;

    // Read your writes: the list waits for the position the create reached.
    let created = app.subscription_with_devices(3).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["license_key"].as_str().unwrap().to_owned();
    let position = created["position"].as_i64().unwrap();
    let response = app
        .admin(
            Method::GET,
            &format!("/api/v1/subscriptions?min_position={position}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-read-model-consistent"], "true");
    let listed: Value = response.json().await.unwrap();
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id.as_str()));

    // A mixed workload.
    for fingerprint in ["fp-a", "fp-b", "fp-c"] {
        assert_eq!(
            app.activate(&key, fingerprint).await.status(),
            StatusCode::CREATED
        );
    }
    let before_plan_change = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    put(&app, &id, json!({"plan": "enterprise", "max_devices": 5})).await;
    let other = app.subscription_with_devices(1).await;
    let other_id = other["id"].as_str().unwrap();
    let last = put(&app, other_id, json!({"status": "suspended"})).await;
    let deactivated = app
        .anon(Method::POST, "/api/v1/licensing/deactivate")
        .json(&json!({"license_key": key, "fingerprint": "fp-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);

    // As of an instant before the plan change, the subscription had its old plan.
    let then = get_json(
        &app,
        &format!(
            "/api/v1/subscriptions/{id}?as_of={}",
            before_plan_change.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
    )
    .await;
    assert_eq!(then["plan"], "pro");
    assert_eq!(then["max_devices"], 3);
    assert_eq!(
        get_json(&app, &format!("/api/v1/subscriptions/{id}")).await["plan"],
        "enterprise"
    );

    // The read models have caught up; replay rebuilds them from the events alone and the
    // API answers exactly as before.
    let position = last["position"].as_i64().unwrap();
    get_json(&app, &format!("/api/v1/devices?min_position={position}")).await;
    app.wait_for_read_models().await;
    let live = read_side_view(&app).await;
    assert_eq!(live[0]["total"], 2);
    assert_eq!(
        live[1]["total"], 3,
        "three devices, one of them deactivated"
    );
    app.server.stop_background_tasks();
    let replay = run_binary(&app, &["replay"]);
    assert!(
        replay.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert_eq!(read_side_view(&app).await, live);

    // The export is every event, one JSON object a line, each aggregate in sequence.
    let export = run_binary(&app, &["events", "export"]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len() as i64, app.event_count().await);
    let mut last_sequence = std::collections::HashMap::new();
    for event in &lines {
        let aggregate = event["aggregate_id"].as_str().unwrap().to_owned();
        let sequence = event["sequence"].as_i64().unwrap();
        let previous = last_sequence.insert(aggregate, sequence).unwrap_or(0);
        assert_eq!(sequence, previous + 1, "{event}");
    }
}
