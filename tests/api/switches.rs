//! The seed's switches (issue 21, item 9): `ENABLE_ANALYTICS=false` runs no analytics
//! projector and serves no analytics; `ENABLE_DEVICE_TRACKING=false` stores no more of a
//! device than its fingerprint hash, name, platform and times, and no client address.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with, start_app, TestApp};
use crate::panel::Browser;

/// Every stored subscription event: its type, payload and metadata, as the database has them.
async fn stored_events(app: &TestApp) -> Vec<(String, String, String)> {
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_as(
            "select event_type, cast(payload as text), cast(metadata as text) from events
             where aggregate_type = 'Subscription'",
        )
        .fetch_all(pool)
        .await
        .expect("read the stored events")
    })
}

#[tokio::test]
async fn with_analytics_off_no_projector_keeps_them_and_nothing_serves_them() {
    let app = spawn_app_with(&[("ENABLE_ANALYTICS", "false")]).await;
    let created = app.subscription_with_devices(2).await;
    let key = created["license_key"].as_str().unwrap();
    app.licensing()
        .activate(key, "fp-analytics")
        .await
        .expect_status(StatusCode::CREATED);
    let health = app.wait_for_read_models().await;

    for path in ["dashboard", "subscriptions", "devices"] {
        let response = app
            .admin(Method::GET, &format!("/api/v1/analytics/{path}"))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::NOT_FOUND, "ANALYTICS_DISABLED").await;
    }
    let projected: i64 = flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_scalar(
            "select count(*) from projector_checkpoints where projector = 'analytics' and events_applied > 0",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(projected, 0, "the analytics projector ran: {health}");
    assert!(!health.to_string().contains("\"analytics\""), "{health}");

    let dashboard = Browser::signed_in(&app).await.page("/admin").await;
    assert!(
        dashboard.contains("Analytics are turned off"),
        "{dashboard}"
    );
    assert!(!dashboard.contains("<svg"), "no charts");
    assert!(dashboard.contains("<h1>Dashboard</h1>"));
}

#[tokio::test]
async fn with_analytics_on_the_projector_runs_and_serves_them() {
    let app = spawn_app_with(&[]).await;
    app.subscription_with_devices(1).await;
    app.wait_for_read_models().await;
    let response = app
        .admin(Method::GET, "/api/v1/analytics/dashboard")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let dashboard = Browser::signed_in(&app).await.page("/admin").await;
    assert!(dashboard.contains("<svg") && !dashboard.contains("Analytics are turned off"));
}

#[tokio::test]
async fn analytics_turned_on_again_count_what_happened_while_they_were_off() {
    let off = spawn_app_with(&[("ENABLE_ANALYTICS", "false")]).await;
    off.subscription_with_devices(1).await;
    off.subscription_with_devices(2).await;
    off.wait_for_read_models().await;
    // This instance goes away; the next one, on the same store, has analytics on.
    off.db.close().await;
    let on = start_app(&off.database_url, &off.key_dir, off.nats_names.clone(), &[]).await;
    on.wait_for_read_models().await;
    let dashboard = on.api().get("/api/v1/analytics/dashboard").await;
    assert_eq!(dashboard["subscriptions_total"], 2, "{dashboard}");
    let today = &dashboard["daily"].as_array().unwrap().last().unwrap()["counts"];
    assert_eq!(today["subscriptions_created"], 2, "{dashboard}");
}

#[tokio::test]
async fn privacy_mode_writes_no_hostname_os_app_version_or_client_address_into_any_event() {
    let app = spawn_app_with(&[("ENABLE_DEVICE_TRACKING", "false")]).await;
    let created = app.subscription_with_devices(2).await;
    let id = created["id"].as_str().unwrap();
    let key = created["license_key"].as_str().unwrap();
    let licensing = app.licensing();
    let device = json!({
        "fingerprint": "fp-private",
        "name": "Ann's laptop",
        "platform": "linux",
        "os_version": "os-7731",
        "app_version": "app-7731",
        "hostname": "host-7731.example",
    });
    let activated = licensing
        .request("activate", &json!({"license_key": key, "device": device}))
        .header("user-agent", "ClientApp/7731")
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), StatusCode::CREATED);
    let activated: Value = activated.json().await.unwrap();
    let token = activated["token"].as_str().unwrap();
    licensing
        .request("refresh", &json!({"token": token}))
        .header("user-agent", "ClientApp/7731")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    licensing
        .request(
            "deactivate",
            &json!({"license_key": key, "fingerprint": "fp-private"}),
        )
        .header("user-agent", "ClientApp/7731")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();

    let events = stored_events(&app).await;
    let licensing_events: Vec<_> = events
        .iter()
        .filter(|(_, _, metadata)| metadata.contains("license:"))
        .collect();
    assert_eq!(licensing_events.len(), 4, "{events:?}");
    for (event_type, payload, metadata) in &events {
        for dropped in ["os-7731", "app-7731", "host-7731", "ClientApp/7731"] {
            assert!(
                !payload.contains(dropped) && !metadata.contains(dropped),
                "{event_type} keeps {dropped}: {payload} {metadata}"
            );
        }
    }
    for (event_type, _, metadata) in licensing_events {
        let metadata: Value = serde_json::from_str(metadata).unwrap();
        assert_eq!(metadata["ip"], "", "{event_type}: {metadata}");
    }
    let activation = events
        .iter()
        .find(|(event_type, _, _)| event_type == "DeviceActivated")
        .map(|(_, payload, _)| serde_json::from_str::<Value>(payload).unwrap())
        .unwrap();
    let activation = activation.get("DeviceActivated").unwrap_or(&activation);
    assert_eq!(activation["name"], "Ann's laptop", "{activation}");
    assert_eq!(activation["platform"], "linux");

    // What admins do is still recorded with its address.
    let admin_event = events
        .iter()
        .find(|(event_type, _, _)| event_type == "SubscriptionCreated")
        .unwrap();
    let metadata: Value = serde_json::from_str(&admin_event.2).unwrap();
    assert_ne!(metadata["ip"], "", "{metadata}");
    let subscription = app.api().get(&format!("/api/v1/subscriptions/{id}")).await;
    let shown = &subscription["devices"][0];
    assert_eq!(shown["hostname"], Value::Null);
    assert_eq!(shown["os_version"], Value::Null);
    assert_eq!(shown["app_version"], Value::Null);
}
