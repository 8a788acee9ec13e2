//! Deliveries from the event stream to real receivers.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::receiver::{eventually, Receiver};
use super::{create_webhook, delivery_log, feed_from, some_activity, webhook_for, LOCAL, PATIENCE};
use crate::helpers::{spawn_app_with, start_app, ApiClient};

/// The ids of the events `webhook` should get: every event from its creation on.
pub async fn expected_ids(api: &ApiClient, webhook: &Value) -> Vec<String> {
    let created = webhook["position"].as_i64().expect("position");
    feed_from(api, created)
        .await
        .iter()
        .map(|item| {
            format!(
                "{}:{}:{}",
                item["aggregate_type"].as_str().unwrap(),
                item["aggregate_id"].as_str().unwrap(),
                item["sequence"]
            )
        })
        .collect()
}

/// A feed item as a delivery carries it by default: without the client's IP address and
/// user agent (`WEBHOOK_INCLUDE_REQUEST_METADATA`).
pub fn without_request_metadata(item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(metadata) = item["metadata"].as_object_mut() {
        metadata.remove("ip");
        metadata.remove("user_agent");
    }
    item
}

/// Checks what a receiver got: every expected event exactly once after de-duplication by
/// `webhook-id`, each signed with `secret`, with the feed item as `data`, and every
/// aggregate's events in order.
pub async fn assert_delivered_once_in_order(
    api: &ApiClient,
    receiver: &Receiver,
    webhook: &Value,
    secret: &str,
) {
    // The feed (like the bus) shows what committed below PostgreSQL's transaction horizon,
    // which other tests' transactions hold back now and then: wait until both agree.
    let mut expected = expected_ids(api, webhook).await;
    for _ in 0..200 {
        let got: HashSet<String> = receiver
            .unique()
            .iter()
            .map(|r| r.body["id"].as_str().unwrap_or("").to_owned())
            .collect();
        if got == expected.iter().cloned().collect::<HashSet<_>>() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        expected = expected_ids(api, webhook).await;
    }
    let created = webhook["position"].as_i64().unwrap();
    let feed: BTreeMap<String, Value> = feed_from(api, created)
        .await
        .into_iter()
        .map(|item| (item["position"].to_string(), item))
        .collect();
    let all = receiver.received();
    for delivery in &all {
        assert!(
            delivery.verifies_with(secret),
            "a delivery failed verification: {:?}",
            delivery.headers
        );
    }
    let unique = receiver.unique();
    let ids: Vec<String> = unique
        .iter()
        .map(|r| r.body["id"].as_str().unwrap().to_owned())
        .collect();
    let as_set: HashSet<&String> = ids.iter().collect();
    assert_eq!(as_set.len(), ids.len(), "one webhook-id per event");
    assert_eq!(
        as_set,
        expected.iter().collect::<HashSet<_>>(),
        "every event from the endpoint's creation on, and nothing else"
    );
    // The same webhook-id always carries the same body (what receivers de-duplicate by).
    for delivery in &all {
        let first = unique
            .iter()
            .find(|u| u.webhook_id() == delivery.webhook_id())
            .unwrap();
        assert_eq!(first.raw, delivery.raw);
    }
    let mut last_sequence: BTreeMap<String, i64> = BTreeMap::new();
    for delivery in &unique {
        let data = &delivery.body["data"];
        assert_eq!(delivery.body["type"], data["event_type"]);
        assert_eq!(
            Some(data),
            feed.get(&data["position"].to_string())
                .map(without_request_metadata)
                .as_ref(),
            "data is the feed item"
        );
        let aggregate = data["aggregate_id"].as_str().unwrap().to_owned();
        let sequence = data["sequence"].as_i64().unwrap();
        let previous = last_sequence
            .insert(aggregate.clone(), sequence)
            .unwrap_or(0);
        assert!(
            sequence > previous,
            "{aggregate}: event {sequence} arrived after {previous}"
        );
    }
}

#[tokio::test]
async fn every_event_arrives_signed_once_and_in_order_although_the_receiver_fails_for_a_while() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    receiver.fail_next(6);
    let webhook = webhook_for(&app.api(), &receiver).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    some_activity(&app.api(), 3).await;
    let expected = expected_ids(&app.api(), &webhook).await.len();
    assert!(expected >= 10, "the activity made {expected} events");
    assert!(
        eventually(PATIENCE, || receiver.unique().len() >= expected).await,
        "only {} of {expected} events arrived",
        receiver.unique().len()
    );
    // Nothing more arrives than the retries of the failed attempts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.received().len() >= expected + 6,
        "the first six answers were failures"
    );
    assert_delivered_once_in_order(&app.api(), &receiver, &webhook, &secret).await;

    let log = delivery_log(&app.api(), webhook["id"].as_str().unwrap()).await;
    let failures: Vec<&Value> = log.iter().filter(|a| a["status_code"] == 500).collect();
    assert_eq!(failures.len(), 6, "{log:?}");
    assert!(failures
        .iter()
        .all(|a| a["error"].as_str().unwrap().contains("500")));
    let retried = failures[0]["id"].clone();
    let attempts_of_it: Vec<&Value> = log.iter().filter(|a| a["id"] == retried).collect();
    assert!(attempts_of_it.len() >= 2);
    assert_eq!(attempts_of_it[0]["attempt"], 1);
    assert_eq!(attempts_of_it.last().unwrap()["status_code"], 204);
    assert!(log.iter().all(|a| a["latency_ms"].as_i64().unwrap() >= 0));
}

#[tokio::test]
async fn a_redelivery_sends_the_same_delivery_again_and_logs_it() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    let webhook = webhook_for(&app.api(), &receiver).await;
    let id = webhook["id"].as_str().unwrap();
    assert!(eventually(PATIENCE, || !receiver.received().is_empty()).await);
    let first = receiver.received()[0].clone();
    // The attempt is logged once its answer is in.
    let mut log = Vec::new();
    for _ in 0..200 {
        log = delivery_log(&app.api(), id).await;
        if !log.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery = log[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(delivery, first.webhook_id());
    let response = app
        .admin(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(eventually(PATIENCE, || receiver.received().len() == 2).await);
    let again = &receiver.received()[1];
    assert_eq!(again.webhook_id(), first.webhook_id());
    assert_eq!(again.raw, first.raw);
    for _ in 0..200 {
        log = delivery_log(&app.api(), id).await;
        if log.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["attempt"], 2);
    // The cursor pages the log.
    let after = app
        .api()
        .get(&format!("/api/v1/webhooks/{id}/deliveries?after={}", {
            let page = app
                .api()
                .get(&format!("/api/v1/webhooks/{id}/deliveries?limit=1"))
                .await;
            page["next_after"].as_i64().unwrap()
        }))
        .await;
    assert_eq!(after["items"].as_array().unwrap().len(), 1);
    assert_eq!(after["items"][0]["attempt"], 2);
    let unknown = app
        .admin(
            Method::POST,
            &format!(
                "/api/v1/webhooks/{id}/deliveries/{}/redeliver",
                uuid::Uuid::new_v4()
            ),
        )
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(unknown, StatusCode::NOT_FOUND, "DELIVERY_NOT_FOUND").await;
}

#[tokio::test]
async fn a_hanging_receiver_does_not_delay_another_endpoints_deliveries() {
    let mut settings = LOCAL.to_vec();
    settings.push(("WEBHOOK_TIMEOUT", "20s"));
    let app = spawn_app_with(&settings).await;
    let hanging = Receiver::start().await;
    hanging.hang();
    let healthy = Receiver::start().await;
    webhook_for(&app.api(), &hanging).await;
    let webhook = webhook_for(&app.api(), &healthy).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    let started = Instant::now();
    some_activity(&app.api(), 3).await;
    let expected = expected_ids(&app.api(), &webhook).await.len();
    assert!(
        eventually(Duration::from_secs(10), || healthy.unique().len()
            >= expected)
        .await,
        "the healthy endpoint got {} of {expected} while the other hangs",
        healthy.unique().len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "deliveries waited for the hanging receiver's timeout"
    );
    assert!(
        !hanging.received().is_empty(),
        "the hanging receiver was tried"
    );
    assert_delivered_once_in_order(&app.api(), &healthy, &webhook, &secret).await;
}

#[tokio::test]
async fn an_endpoint_only_gets_the_event_types_it_asked_for() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    create_webhook(
        &app.api(),
        json!({"url": receiver.url, "event_types": ["SubscriptionPlanChanged", "DeviceActivated"]}),
    )
    .await;
    some_activity(&app.api(), 2).await;
    assert!(eventually(PATIENCE, || receiver.unique().len() >= 4).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let types: Vec<String> = receiver
        .unique()
        .iter()
        .map(|r| r.body["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types.len(), 4, "{types:?}");
    assert!(types
        .iter()
        .all(|t| t == "SubscriptionPlanChanged" || t == "DeviceActivated"));
}

#[tokio::test]
async fn a_receiver_on_a_private_address_is_refused_unless_allowed() {
    let app = spawn_app_with(&[("WEBHOOK_ALLOW_HTTP", "true"), ("WEBHOOK_POLL_MS", "50")]).await;
    let receiver = Receiver::start().await;
    // An address literal is refused when registered...
    let literal = app
        .admin(Method::POST, "/api/v1/webhooks")
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(
        literal,
        StatusCode::UNPROCESSABLE_ENTITY,
        "WEBHOOK_URL_REFUSED",
    )
    .await;
    // ...and a name that resolves to one is refused when delivering.
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let webhook = create_webhook(&app.api(), json!({"url": by_name})).await;
    let id = webhook["id"].as_str().unwrap().to_owned();
    let mut log = Vec::new();
    for _ in 0..200 {
        log = delivery_log(&app.api(), &id).await;
        if !log.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!log.is_empty(), "an attempt was made and logged");
    assert_eq!(log[0]["status_code"], Value::Null);
    let error = log[0]["error"].as_str().unwrap();
    assert!(error.contains("WEBHOOK_ALLOW_PRIVATE"), "{error}");
    assert!(
        receiver.received().is_empty(),
        "nothing reached the private receiver"
    );
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let app = spawn_app_with(&[("WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let response = app
        .admin(Method::POST, "/api/v1/webhooks")
        .json(&json!({"url": "http://hooks.example.com/in"}))
        .send()
        .await
        .unwrap();
    let problem = crate::helpers::assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "WEBHOOK_URL_REFUSED",
    )
    .await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("WEBHOOK_ALLOW_HTTP"));
}

#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled_by_an_event_that_says_why() {
    let mut settings = LOCAL.to_vec();
    settings.push(("WEBHOOK_DISABLE_AFTER", "1s"));
    let app = spawn_app_with(&settings).await;
    let receiver = Receiver::start().await;
    receiver.fail_always(true);
    let webhook = webhook_for(&app.api(), &receiver).await;
    let id = webhook["id"].as_str().unwrap().to_owned();
    let mut current = Value::Null;
    for _ in 0..400 {
        current = app.api().get(&format!("/api/v1/webhooks/{id}")).await;
        if current["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(current["enabled"], false, "{current}");
    assert_eq!(current["disabled_reason"], "failing");
    // The feed shows what committed below PostgreSQL's transaction horizon: poll.
    let mut disabled = Value::Null;
    for _ in 0..200 {
        let history = app
            .api()
            .get_query(
                "/api/v1/events",
                &[
                    ("aggregate_id", id.clone()),
                    ("event_type", "WebhookEndpointDisabled".into()),
                ],
            )
            .await;
        disabled = history["items"][0].clone();
        if !disabled.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(disabled["payload"]["reason"], "failing");
    assert!(disabled["payload"]["failing_since"].is_string());
    assert_eq!(disabled["metadata"]["actor"], "system");
    // Disabled: nothing more is tried.
    let tried = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        receiver.received().len() <= tried + 4,
        "only attempts already in flight"
    );
    // An admin turns it on again; it delivers once the receiver recovers.
    receiver.fail_always(false);
    let enabled = app
        .admin(Method::PUT, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    let mut delivered = false;
    for _ in 0..400 {
        let log = delivery_log(&app.api(), &id).await;
        if log.iter().any(|a| a["status_code"] == 204) {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(delivered, "the queued deliveries resumed");
}

#[tokio::test]
async fn deliveries_queue_while_notifications_are_off_and_resume_on_restart_without_loss() {
    let mut settings = LOCAL.to_vec();
    settings.push(("ENABLE_NOTIFICATIONS", "false"));
    let first = spawn_app_with(&settings).await;
    let receiver = Receiver::start().await;
    let webhook = webhook_for(&first.api(), &receiver).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    some_activity(&first.api(), 2).await;
    // Queued (by the projector) but not sent. The feed, like the bus, shows only what
    // committed below PostgreSQL's transaction horizon, which other tests' transactions hold
    // back now and then, so read both again until they agree.
    let mut queued = 0;
    let mut expected = 0;
    for _ in 0..200 {
        expected = expected_ids(&first.api(), &webhook).await.len();
        queued = first
            .scalar("select count(*) from webhook_deliveries where status = 'pending'")
            .await;
        if queued as usize == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(queued as usize, expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());

    // The same deployment, restarted with notifications on; the receiver fails at first.
    first.server.stop_background_tasks();
    receiver.fail_next(3);
    let second = start_app(
        &first.database_url,
        &first.key_dir,
        first.nats_names.clone(),
        LOCAL,
    )
    .await;
    some_activity(&second.api(), 1).await;
    let expected = expected_ids(&second.api(), &webhook).await.len();
    assert!(
        eventually(PATIENCE, || receiver.unique().len() >= expected).await,
        "{} of {expected} after the restart",
        receiver.unique().len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_delivered_once_in_order(&second.api(), &receiver, &webhook, &secret).await;
    assert_eq!(
        second
            .scalar("select count(*) from webhook_deliveries where status <> 'delivered'")
            .await,
        0
    );
}

#[tokio::test]
async fn two_instances_share_the_queue_and_never_send_one_delivery_twice() {
    if crate::helpers::skip_unless_postgres() {
        return;
    }
    let first = spawn_app_with(LOCAL).await;
    let second = start_app(
        &first.database_url,
        &first.key_dir,
        first.nats_names.clone(),
        LOCAL,
    )
    .await;
    let receiver = Receiver::start().await;
    let webhook = webhook_for(&first.api(), &receiver).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    some_activity(&first.api(), 3).await;
    some_activity(&second.api(), 3).await;
    let expected = expected_ids(&first.api(), &webhook).await.len();
    assert!(
        eventually(PATIENCE, || receiver.unique().len() >= expected).await,
        "{} of {expected}",
        receiver.unique().len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_delivered_once_in_order(&first.api(), &receiver, &webhook, &secret).await;
    assert_eq!(
        receiver.received().len(),
        receiver.unique().len(),
        "with no failure, every delivery is sent once: the instances' claims never overlap"
    );
    let attempts = first.scalar("select count(*) from webhook_attempts").await;
    assert_eq!(attempts as usize, receiver.received().len());
}

#[tokio::test]
async fn redirects_are_not_followed_and_a_silent_receiver_times_out() {
    let mut settings = LOCAL.to_vec();
    settings.push(("WEBHOOK_TIMEOUT", "500ms"));
    let app = spawn_app_with(&settings).await;
    let target = Receiver::start().await;
    let redirecting = Receiver::start().await;
    redirecting.redirect_to(&target.url);
    let silent = Receiver::start().await;
    silent.hang();
    let redirected = webhook_for(&app.api(), &redirecting).await;
    let timed_out = webhook_for(&app.api(), &silent).await;
    let first_attempt = |id: String| {
        let api = app.api();
        async move {
            for _ in 0..200 {
                if let Some(attempt) = delivery_log(&api, &id).await.first() {
                    return attempt.clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no attempt was logged for {id}");
        }
    };
    let attempt = first_attempt(redirected["id"].as_str().unwrap().to_owned()).await;
    assert_eq!(attempt["status_code"], 307);
    assert!(attempt["error"]
        .as_str()
        .unwrap()
        .contains("redirects are not followed"));
    let attempt = first_attempt(timed_out["id"].as_str().unwrap().to_owned()).await;
    assert_eq!(attempt["status_code"], Value::Null);
    assert!(
        attempt["error"].as_str().unwrap().contains("timed out"),
        "{attempt}"
    );
    let latency = attempt["latency_ms"].as_i64().unwrap();
    assert!((400..5000).contains(&latency), "{latency} ms");
    assert!(
        target.received().is_empty(),
        "the redirect was not followed"
    );
}
