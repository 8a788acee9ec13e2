//! NATS stopped while commands keep arriving: the commands succeed, `/health` reports the
//! outage, and the read models catch up once NATS is back.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::helpers::{skip_unless_postgres, spawn_app_on_nats_at, NatsServer};

use super::{
    assert_analytics_match_events, assert_each_event_projected_once,
    assert_read_models_match_aggregates, assert_stream_holds_each_event_once, scalar,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_succeed_while_nats_is_down_and_the_read_models_catch_up_after() {
    if skip_unless_postgres() {
        return;
    }
    let mut nats = NatsServer::start().await;
    let app = spawn_app_on_nats_at(&nats.url()).await;
    let api = app.api();
    let mut subscriptions = Vec::new();
    for n in 0..3 {
        let (id, key) = api.create_simple(n, "pro", 10).await;
        api.activate(&key, &format!("before-{n}"), "linux").await;
        subscriptions.push((id, key));
    }
    app.wait_for_read_models().await;
    assert_eq!(app.health().await["status"], "ok");

    nats.stop().await;
    let stopped = Instant::now();
    // Commands keep working without NATS.
    for n in 3..8 {
        let (id, key) = api.create_simple(n, "team", 10).await;
        subscriptions.push((id, key));
    }
    for (n, (id, key)) in subscriptions.iter().enumerate() {
        api.activate(key, &format!("during-{n}"), "macos").await;
        api.put(id, json!({"plan": "enterprise"})).await;
    }
    api.deactivate(&subscriptions[0].1, "before-0").await;
    api.put(&subscriptions[1].0, json!({"status": "suspended"}))
        .await;
    eprintln!(
        "{} commands without NATS took {:?}",
        5 + 2 * subscriptions.len() + 2,
        stopped.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let health = app.health().await;
        if health["status"] == "degraded" && health["bus"]["status"] == "unavailable" {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "/health does not report the outage: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["database"], "ok");
    // Once its publish attempt times out, the publisher reports why and what waits.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health = app.health().await;
        if health["publisher"]["backlog"].as_i64().unwrap() > 0
            && health["publisher"]["last_error"].is_string()
        {
            eprintln!(
                "the publisher reported the outage {:?} after NATS stopped: {health}",
                stopped.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the publisher does not report the outage: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still nothing of the outage in the read model.
    assert_eq!(
        scalar(app.pg(), "select count(*) from rm_subscriptions").await,
        3
    );

    nats.run().await;
    let restarted = Instant::now();
    app.api()
        .wait_for_read_models(Duration::from_secs(45))
        .await;
    eprintln!(
        "read models converged {:?} after NATS came back",
        restarted.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.health().await["status"] != "ok" {
        assert!(
            Instant::now() < deadline,
            "/health stays degraded: {}",
            app.health().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_each_event_projected_once(app.pg()).await;
    assert_analytics_match_events(app.pg()).await;
    assert_eq!(assert_read_models_match_aggregates(&api, app.pg()).await, 8);
    assert_stream_holds_each_event_once(&app.nats, app.pg()).await;
    app.server.stop_background_tasks();
}
