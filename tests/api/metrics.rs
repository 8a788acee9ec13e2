//! `GET /metrics`: Prometheus text after real traffic, its access control (METRICS_TOKEN,
//! METRICS_ADDR, production), route templates instead of raw paths, no secret in any label,
//! and every metric the Grafana dashboard queries.
//!
//! The recorder is global to the test process and other tests run beside these: assertions
//! are on presence and on increases, never on absolute values.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, backend, free_port, fresh_database_url, spawn_app, spawn_app_with, test_config,
    Backend, TestApp,
};

/// The metrics body from `url`, asserting 200 and the Prometheus text content type.
async fn scrape_at(client: &reqwest::Client, url: &str, token: Option<&str>) -> String {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("metrics body")
}

async fn scrape(app: &TestApp) -> String {
    scrape_at(&app.client, &app.url("/metrics"), None).await
}

/// The sum of a metric's samples whose labels contain every one of `labels` (`k="v"`).
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every family name (`# TYPE name kind`) in a metrics body, with histograms' series names.
fn families(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// Licensing, admin and pipeline traffic: a subscription, an activation, validations that
/// pass and fail, a refresh, a deactivation, a read by id, an unmatched path. Returns the
/// values that must never show in /metrics.
async fn make_traffic(app: &TestApp) -> Vec<String> {
    let created = app.subscription_with_devices(2).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["license_key"].as_str().unwrap().to_owned();
    let fingerprint = format!("metrics-fingerprint-{}", uuid::Uuid::new_v4());
    let activated = app.activate(&key, &fingerprint).await;
    assert_eq!(activated.status(), StatusCode::CREATED);
    let activated: Value = activated.json().await.unwrap();
    let token = activated["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.validate(json!({"license_key": key, "fingerprint": fingerprint}))
            .await["code"],
        "VALID"
    );
    assert_eq!(
        app.validate(json!({"license_key": key, "fingerprint": "another-device"}))
            .await["code"],
        "DEVICE_NOT_ACTIVATED"
    );
    let refreshed = app
        .anon(Method::POST, "/api/v1/licensing/refresh")
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let deactivated = app
        .anon(Method::POST, "/api/v1/licensing/deactivate")
        .json(&json!({"license_key": key, "fingerprint": fingerprint}))
        .send()
        .await
        .unwrap();
    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);
    let read = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let unmatched_path = format!("/api/v1/no-such-thing/{}", uuid::Uuid::new_v4());
    let missing = app.anon(Method::GET, &unmatched_path).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.wait_for_read_models().await;
    vec![
        id,
        key,
        token,
        fingerprint,
        unmatched_path,
        app.admin_token.clone(),
        crate::helpers::ADMIN_PASSWORD.to_owned(),
    ]
}

#[tokio::test]
async fn metrics_answer_prometheus_text_with_every_required_family_after_traffic() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    make_traffic(&app).await;
    let text = scrape(&app).await;
    let present = families(&text);
    let required = [
        "flowlytix_http_requests_total",
        "flowlytix_http_request_duration_seconds_bucket",
        "flowlytix_http_requests_in_flight",
        "flowlytix_commands_total",
        "flowlytix_command_duration_seconds_bucket",
        "flowlytix_aggregate_cache_hits_total",
        "flowlytix_aggregate_cache_misses_total",
        "flowlytix_publisher_events_published_total",
        "flowlytix_publisher_errors_total",
        "flowlytix_publisher_backlog_events",
        "flowlytix_publisher_leader",
        "flowlytix_event_log_head_events",
        "flowlytix_projector_checkpoint_events",
        "flowlytix_projector_lag_events",
        "flowlytix_projector_lag_seconds",
        "flowlytix_projector_events_applied_total",
        "flowlytix_projector_batch_events_bucket",
        "flowlytix_projector_errors_total",
        "flowlytix_projector_parked_events",
        "flowlytix_license_validations_total",
        "flowlytix_license_activations_total",
        "flowlytix_license_deactivations_total",
        "flowlytix_license_token_refreshes_total",
        "flowlytix_rate_limited_requests_total",
        "flowlytix_license_cache_hits_total",
        "flowlytix_license_cache_misses_total",
        "flowlytix_build_info",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ];
    let missing: Vec<_> = required
        .iter()
        .filter(|name| !present.contains(**name))
        .collect();
    assert!(
        missing.is_empty(),
        "missing families {missing:?} in\n{text}"
    );

    // What this test did shows as increases.
    let increased =
        |name: &str, labels: &[&str]| sample(&text, name, labels) > sample(&before, name, labels);
    assert!(increased(
        "flowlytix_license_validations_total",
        &[r#"code="VALID""#]
    ));
    assert!(increased(
        "flowlytix_license_validations_total",
        &[r#"code="DEVICE_NOT_ACTIVATED""#]
    ));
    assert!(increased(
        "flowlytix_license_activations_total",
        &[r#"outcome="ok""#]
    ));
    assert!(increased(
        "flowlytix_license_deactivations_total",
        &[r#"outcome="ok""#]
    ));
    assert!(increased(
        "flowlytix_license_token_refreshes_total",
        &[r#"outcome="ok""#]
    ));
    assert!(increased(
        "flowlytix_commands_total",
        &[
            r#"aggregate="Subscription""#,
            r#"command="ActivateDevice""#,
            r#"outcome="committed""#
        ]
    ));
    assert!(increased(
        "flowlytix_commands_total",
        &[r#"command="CreateSubscription""#, r#"outcome="committed""#]
    ));
    assert!(increased("flowlytix_publisher_events_published_total", &[]));
    assert!(increased(
        "flowlytix_projector_events_applied_total",
        &[r#"projector="subscriptions""#]
    ));
    assert!(
        sample(
            &text,
            "flowlytix_build_info",
            &[r#"version=""#, r#"git_commit=""#]
        ) >= 1.0
    );
    assert!(sample(&text, "process_resident_memory_bytes", &[]) > 0.0);
}

#[tokio::test]
async fn routes_are_templates_and_no_secret_or_raw_path_reaches_a_label() {
    let app = spawn_app().await;
    let secrets = make_traffic(&app).await;
    let text = scrape(&app).await;
    assert!(
        sample(
            &text,
            "flowlytix_http_requests_total",
            &[
                r#"route="/api/v1/subscriptions/{id}""#,
                r#"method="GET""#,
                r#"status="2xx""#
            ]
        ) >= 1.0,
        "a read by id counts under its route template"
    );
    assert!(
        sample(
            &text,
            "flowlytix_http_requests_total",
            &[r#"route="unmatched""#, r#"status="4xx""#]
        ) >= 1.0,
        "a path no route matched counts as one label value"
    );
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "/metrics shows {secret}");
    }
    // Every route label is a template or `unmatched`: no segment that looks like an id.
    for line in text.lines().filter(|l| l.contains("route=\"")) {
        let route = line
            .split("route=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert!(
            route == "unmatched" || route.starts_with('/'),
            "unexpected route label {route:?}"
        );
        assert!(
            route
                .split('/')
                .all(|segment| uuid::Uuid::parse_str(segment).is_err()),
            "a raw id in the route label {route:?}"
        );
    }
}

#[tokio::test]
async fn metrics_token_is_required_when_set() {
    let token = "scrape-token-for-the-test-0123456789";
    let app = spawn_app_with(&[("METRICS_TOKEN", token)]).await;
    let url = app.url("/metrics");
    let without = app.client.get(&url).send().await.unwrap();
    assert_eq!(without.headers()["www-authenticate"], "Bearer");
    assert_problem(without, StatusCode::UNAUTHORIZED, "METRICS_TOKEN_REQUIRED").await;
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "METRICS_TOKEN_REQUIRED").await;
    // An admin's access token is no metrics token.
    let admin = app
        .client
        .get(&url)
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_problem(admin, StatusCode::UNAUTHORIZED, "METRICS_TOKEN_REQUIRED").await;
    let text = scrape_at(&app.client, &url, Some(token)).await;
    assert!(text.contains("flowlytix_build_info"));
    assert!(!text.contains(token), "the token is never shown");
}

#[tokio::test]
async fn metrics_addr_serves_metrics_on_a_listener_of_its_own() {
    let port = free_port();
    let app = spawn_app_with(&[("METRICS_ADDR", &format!("127.0.0.1:{port}"))]).await;
    let own = format!("http://127.0.0.1:{port}/metrics");
    let text = scrape_at(&app.client, &own, None).await;
    assert!(text.contains("flowlytix_build_info"));
    // That listener serves nothing else.
    let other = app
        .client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    // In development the main port serves it too.
    scrape(&app).await;
}

#[tokio::test]
async fn production_refuses_to_start_without_metrics_token_or_metrics_addr() {
    let database_url = fresh_database_url().await;
    let key_dir =
        std::env::temp_dir().join(format!("flowlytix-test-keys-{}", uuid::Uuid::new_v4()));
    let config = test_config(&database_url, &key_dir, &[("ENVIRONMENT", "production")]);
    let refused = flowlytix_server::App::start(config)
        .await
        .err()
        .expect("refused");
    let message = refused.to_string();
    assert!(
        message.contains("METRICS_TOKEN") && message.contains("METRICS_ADDR"),
        "{message}"
    );
}

#[tokio::test]
async fn production_with_metrics_addr_alone_keeps_metrics_off_the_main_port() {
    let port = free_port();
    let app = spawn_app_with(&[
        ("ENVIRONMENT", "production"),
        ("METRICS_ADDR", &format!("127.0.0.1:{port}")),
    ])
    .await;
    let main = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(main, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let text = scrape_at(
        &app.client,
        &format!("http://127.0.0.1:{port}/metrics"),
        None,
    )
    .await;
    assert!(text.contains("flowlytix_http_requests_total"));
}

/// The metric names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let word = &tail[..end];
        if word.starts_with("flowlytix_") || word.starts_with("process_") {
            names.push(word.to_owned());
        }
        // Skip quoted label values whole.
        rest = &tail[end..];
        if let Some(quoted) = rest
            .strip_prefix("=~\"")
            .or_else(|| rest.strip_prefix("=\""))
        {
            rest = quoted.split_once('"').map_or("", |(_, after)| after);
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_exists_after_traffic() {
    let dashboard: Value = serde_json::from_str(include_str!(
        "../../deploy/grafana/dashboards/flowlytix.json"
    ))
    .expect("the dashboard is JSON");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queried.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() > 20, "the dashboard queries {queried:?}");
    let app = spawn_app_with(crate::webhooks::LOCAL).await;
    make_traffic(&app).await;
    // And a webhook delivery, for the webhook panels.
    let receiver = crate::webhooks::receiver::Receiver::start().await;
    crate::webhooks::webhook_for(&app.api(), &receiver).await;
    assert!(
        crate::webhooks::receiver::eventually(crate::webhooks::PATIENCE, || {
            !receiver.received().is_empty()
        })
        .await
    );
    // Its attempt is recorded once the answer is in.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let present = families(&scrape(&app).await);
    let missing: Vec<_> = queried
        .iter()
        .filter(|name| !present.contains(*name))
        // JetStream consumers exist only with NATS: checked there below.
        .filter(|name| backend() == Backend::Postgres || !name.starts_with("flowlytix_jetstream_"))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics lacks: {missing:?}"
    );
}

#[tokio::test]
async fn jetstream_consumers_are_reported_on_nats() {
    if crate::helpers::skip_unless_postgres() {
        return;
    }
    let app = spawn_app().await;
    make_traffic(&app).await;
    let text = scrape(&app).await;
    for name in [
        "flowlytix_jetstream_consumer_pending_messages",
        "flowlytix_jetstream_consumer_ack_pending_messages",
        "flowlytix_jetstream_consumer_redelivered_messages",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name) && l.contains(r#"consumer="projector-subscriptions""#)),
            "{name} for projector-subscriptions in\n{text}"
        );
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            r#"sum by (le) (rate(flowlytix_a_bucket{job=~"flowlytix_not_a_metric", x="y"}[5m])) / process_open_fds"#
        ),
        vec!["flowlytix_a_bucket", "process_open_fds"]
    );
}

#[tokio::test]
async fn a_rate_limited_request_is_counted() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    let before = sample(
        &scrape(&app).await,
        "flowlytix_rate_limited_requests_total",
        &[],
    );
    let mut limited = 0;
    for _ in 0..4 {
        let response = app
            .anon(Method::POST, "/api/v1/licensing/validate")
            .json(&json!({"token": "not-a-token", "fingerprint": "f"}))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited >= 1, "the limiter refused nothing");
    let text = scrape(&app).await;
    assert!(sample(&text, "flowlytix_rate_limited_requests_total", &[]) >= before + limited as f64);
    assert!(
        sample(
            &text,
            "flowlytix_http_requests_total",
            &[r#"route="/api/v1/licensing/validate""#, r#"status="4xx""#]
        ) >= limited as f64,
        "refused requests count under their route"
    );
}

/// Two instances on one database: the second moves a subscription on behind the first's
/// cached state, so the first's next append meets a taken sequence, which is a conflict
/// (and a retry from the store's state), not an error. (Details, not the device limit: on
/// PostgreSQL a change that can stop a license validating is announced to every instance,
/// which then reloads it and has no stale state left to conflict with.)
#[tokio::test]
async fn an_append_conflict_and_its_retry_are_counted() {
    let app = spawn_app().await;
    let second = app.api().at(&app.spawn_second_instance().await);
    let created = app.subscription_with_devices(2).await;
    let id = created["id"].as_str().unwrap();
    app.api().put(id, json!({"customer_name": "Ann One"})).await;
    let counts = |text: &str| {
        (
            sample(
                text,
                "flowlytix_append_conflicts_total",
                &[r#"aggregate="Subscription""#],
            ),
            sample(
                text,
                "flowlytix_command_retries_total",
                &[r#"aggregate="Subscription""#],
            ),
        )
    };
    let (conflicts, retries) = counts(&scrape(&app).await);
    // An activation: changes the instances announce to each other (an update would be)
    // bring the first one's cached aggregate up to date before its own write.
    let key = created["license_key"].as_str().unwrap();
    second
        .activate(key, "second-instance-device", "linux")
        .await;
    let updated = app
        .api()
        .put(id, json!({"customer_name": "Ann Three"}))
        .await;
    assert_eq!(updated["customer_name"], "Ann Three");
    let (conflicts_after, retries_after) = counts(&scrape(&app).await);
    assert!(
        conflicts_after > conflicts,
        "{conflicts} → {conflicts_after}"
    );
    assert!(retries_after > retries, "{retries} → {retries_after}");
}

#[tokio::test]
async fn the_openapi_document_describes_metrics_as_text_with_its_refusals() {
    let app = spawn_app().await;
    let document: Value = app
        .anon(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let responses = &document["paths"]["/metrics"]["get"]["responses"];
    assert!(
        responses["200"]["content"]["text/plain"].is_object(),
        "{responses}"
    );
    for status in ["401", "404"] {
        assert!(
            responses[status]["content"]["application/problem+json"].is_object(),
            "{status}: {responses}"
        );
    }
}
