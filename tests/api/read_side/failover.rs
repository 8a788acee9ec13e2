//! Instances that die: a server SIGKILLed while its writes are being acknowledged resumes
//! publishing without gap or duplicate, and when the publishing instance of two dies the
//! other takes over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::{
    fresh_database, nats_url, server_env, skip_unless_postgres, ApiClient, NatsNames, ServerProcess,
};

use super::{
    assert_analytics_match_events, assert_each_event_projected_once,
    assert_read_models_match_aggregates, assert_stream_holds_each_event_once, publisher_checkpoint,
    scalar,
};

/// After an instance dies, the messages its projectors had been handed but not yet
/// acknowledged come back only when their ack wait (10 s) runs out.
const CONVERGE_AFTER_CRASH: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The server SIGKILLed while writes are being acknowledged.

#[derive(Default)]
struct Acknowledged {
    /// (subscription id, version the response reported)
    subscriptions: Vec<(String, u64)>,
    /// (subscription id, device id)
    devices: Vec<(String, String)>,
}

/// Writes until the server stops answering: creates, activations and plan changes, each
/// recorded once its response arrived. An answer other than success fails the test.
async fn write_until_refused(
    api: ApiClient,
    writer: usize,
    acked: Arc<Mutex<Acknowledged>>,
    count: Arc<AtomicUsize>,
) -> Result<(), String> {
    for n in 0.. {
        let response = api
            .admin(Method::POST, "/api/v1/subscriptions")
            .json(&json!({"customer_email": format!("w{writer}-{n}@example.com"), "customer_name": "Writer",
                          "plan": "pro", "max_devices": 3}))
            .send()
            .await;
        let Ok(response) = response else {
            return Ok(());
        };
        if response.status() != StatusCode::CREATED {
            return Err(format!("create answered {}", response.status()));
        }
        let Ok(body) = response.json::<Value>().await else {
            return Ok(());
        };
        let id = body["id"].as_str().unwrap().to_owned();
        let key = body["license_key"].as_str().unwrap().to_owned();
        acked
            .lock()
            .unwrap()
            .subscriptions
            .push((id.clone(), body["version"].as_u64().unwrap()));
        count.fetch_add(1, Ordering::SeqCst);

        let response = api
            .anon(Method::POST, "/api/v1/licensing/activate")
            .json(&json!({"license_key": key, "device": {"fingerprint": format!("w{writer}-{n}"), "platform": "linux"}}))
            .send()
            .await;
        let Ok(response) = response else {
            return Ok(());
        };
        if response.status() != StatusCode::CREATED {
            return Err(format!("activate answered {}", response.status()));
        }
        let Ok(body) = response.json::<Value>().await else {
            return Ok(());
        };
        acked
            .lock()
            .unwrap()
            .devices
            .push((id.clone(), body["device_id"].as_str().unwrap().to_owned()));
        count.fetch_add(1, Ordering::SeqCst);

        let response = api
            .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
            .json(&json!({"plan": "team"}))
            .send()
            .await;
        let Ok(response) = response else {
            return Ok(());
        };
        if response.status() != StatusCode::OK {
            return Err(format!("PUT answered {}", response.status()));
        }
        let Ok(body) = response.json::<Value>().await else {
            return Ok(());
        };
        acked
            .lock()
            .unwrap()
            .subscriptions
            .push((id, body["version"].as_u64().unwrap()));
        count.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

async fn assert_acknowledged_writes_projected(pool: &PgPool, acked: &Acknowledged) {
    for (id, version) in &acked.subscriptions {
        let projected: Option<i64> =
            sqlx::query_scalar("select version from rm_subscriptions where id = $1::uuid")
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap();
        assert!(
            projected.is_some_and(|v| v >= *version as i64),
            "acknowledged write {id}@{version} is missing: {projected:?}"
        );
    }
    for (id, device) in &acked.devices {
        let projected: Option<(String, String)> = sqlx::query_as(
            "select subscription_id::text, status from rm_devices where id = $1::uuid",
        )
        .bind(device)
        .fetch_optional(pool)
        .await
        .unwrap();
        assert_eq!(
            projected,
            Some((id.clone(), "active".into())),
            "acknowledged activation {device} is missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_stream_resumes_publishing_without_gap_or_duplicate() {
    if skip_unless_postgres() {
        return;
    }
    let database_url = fresh_database().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-test-keys-{}", Uuid::new_v4()));
    let nats = NatsNames::unique(&nats_url()).await;
    let env = server_env(&database_url, &key_dir, Some(&nats));
    let mut server = ServerProcess::start(&env).await;
    let api = ApiClient::login(&server.address).await;

    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let count = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(write_until_refused(
                api.clone(),
                w,
                acked.clone(),
                count.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < 80 {
        assert!(Instant::now() < deadline, "the writers are too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().await;
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let pool = PgPool::connect(&database_url).await.unwrap();
    let (_, checkpoint_at_kill) = publisher_checkpoint(&pool).await;
    let events_at_kill = scalar(&pool, "select count(*) from events").await;
    eprintln!(
        "killed after {} acknowledged writes; {events_at_kill} events, publisher checkpoint at position {checkpoint_at_kill}",
        count.load(Ordering::SeqCst)
    );

    let server = ServerProcess::start(&env).await;
    let api = api.at(&server.address);
    // The publisher carries on from its checkpoint: it never goes back.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(500) {
        assert!(publisher_checkpoint(&pool).await.1 >= checkpoint_at_kill);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..5 {
        let (_, key) = api.create_simple(1000 + n, "starter", 2).await;
        api.activate(&key, &format!("after-restart-{n}"), "windows")
            .await;
    }
    let converging = Instant::now();
    api.wait_for_read_models(CONVERGE_AFTER_CRASH).await;
    eprintln!(
        "read models converged {:?} after the restart's last write",
        converging.elapsed()
    );

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert_acknowledged_writes_projected(&pool, &acked).await;
    assert_each_event_projected_once(&pool).await;
    assert_analytics_match_events(&pool).await;
    let activations = scalar(
        &pool,
        "select coalesce(sum(value), 0)::bigint from rm_daily_counts where metric = 'activations'",
    )
    .await;
    assert_eq!(
        activations,
        scalar(
            &pool,
            "select count(*) from events where event_type = 'DeviceActivated'"
        )
        .await
    );
    assert!(assert_read_models_match_aggregates(&api, &pool).await >= acked.devices.len() + 5);
    assert_stream_holds_each_event_once(&nats, &pool).await;
    drop(server);
    nats.delete_stream().await;
}

// ---------------------------------------------------------------------------------------
// Publisher failover between two instances.

async fn leaders(api: &ApiClient, servers: &[&str]) -> Vec<bool> {
    let mut result = Vec::new();
    for base in servers {
        result.push(api.at(base).health().await["publisher"]["leader"] == true);
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_publishing_instance_dies_another_takes_over_and_nothing_is_lost_or_doubled() {
    if skip_unless_postgres() {
        return;
    }
    let database_url = fresh_database().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-test-keys-{}", Uuid::new_v4()));
    let nats = NatsNames::unique(&nats_url()).await;
    let env = server_env(&database_url, &key_dir, Some(&nats));
    let first = ServerProcess::start(&env).await;
    let second = ServerProcess::start(&env).await;
    let api = ApiClient::login(&first.address).await;
    let mut servers = [Some(first), Some(second)];
    let addresses: Vec<String> = servers
        .iter()
        .flatten()
        .map(|s| s.address.clone())
        .collect();

    // Commands side by side on both instances.
    let results: Vec<(String, String)> = futures::stream::iter(0..20)
        .map(|n| {
            let api = api.at(&addresses[n % 2]);
            async move {
                let (id, key) = api.create_simple(n, "pro", 3).await;
                api.activate(&key, &format!("side-{n}"), "linux").await;
                (id, key)
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    assert_eq!(results.len(), 20);

    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let flags = leaders(&api, &[&addresses[0], &addresses[1]]).await;
        if flags.iter().filter(|l| **l).count() == 1 {
            break flags.iter().position(|l| *l).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no single publisher leader: {flags:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let survivor = 1 - leader;
    servers[leader].as_mut().unwrap().kill().await;
    let killed = Instant::now();
    loop {
        if api.at(&addresses[survivor]).health().await["publisher"]["leader"] == true {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the surviving instance did not take over the publisher"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the surviving instance took over the publisher {:?} after the kill",
        killed.elapsed()
    );

    let api = api.at(&addresses[survivor]);
    for (n, (id, key)) in results.iter().enumerate().take(10) {
        api.activate(key, &format!("after-failover-{n}"), "macos")
            .await;
        api.put(id, json!({"plan": "team"})).await;
    }
    for n in 20..25 {
        api.create_simple(n, "starter", 1).await;
    }
    api.wait_for_read_models(CONVERGE_AFTER_CRASH).await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    assert_each_event_projected_once(&pool).await;
    assert_analytics_match_events(&pool).await;
    assert_eq!(assert_read_models_match_aggregates(&api, &pool).await, 25);
    assert_stream_holds_each_event_once(&nats, &pool).await;
    drop(servers);
    nats.delete_stream().await;
}
