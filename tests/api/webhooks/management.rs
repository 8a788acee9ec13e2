//! Managing webhook endpoints over the API: roles, the secret shown once, validation, the
//! endpoints' own history.

use chrono::Utc;
use flowlytix_aggregates::Role;
use flowlytix_server::auth::accounts;
use flowlytix_server::store::EventMetadata;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::receiver::{eventually, Receiver};
use super::{create_webhook, feed_from, LOCAL, PATIENCE};
use crate::helpers::{assert_problem, assert_refused, captured_logs, spawn_app_with};

const AUDITOR_EMAIL: &str = "hooks-auditor@flowlytix.test";
const AUDITOR_PASSWORD: &str = "auditor-password-123";

#[tokio::test]
async fn admins_manage_endpoints_and_auditors_only_read() {
    let app = spawn_app_with(LOCAL).await;
    let created = create_webhook(
        &app.api(),
        json!({"url": "https://hooks.example.com/in", "event_types": ["SubscriptionCreated"],
               "description": "billing", "enabled": false}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["enabled"], false);
    assert_eq!(created["disabled_reason"], "admin");
    assert_eq!(created["event_types"], json!(["SubscriptionCreated"]));

    accounts::create_admin(
        &app.server.admins,
        AUDITOR_EMAIL,
        AUDITOR_PASSWORD,
        Role::Auditor,
        EventMetadata::system(Utc::now()),
    )
    .await
    .expect("create the auditor");
    let auditor = app.login(AUDITOR_EMAIL, AUDITOR_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_auditor = |method: Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&auditor)
    };
    for path in [
        "/api/v1/webhooks".to_owned(),
        format!("/api/v1/webhooks/{id}"),
        format!("/api/v1/webhooks/{id}/deliveries"),
    ] {
        let response = as_auditor(Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let writes = [
        as_auditor(Method::POST, "/api/v1/webhooks")
            .json(&json!({"url": "https://a.example.com/"})),
        as_auditor(Method::PUT, &format!("/api/v1/webhooks/{id}")).json(&json!({"enabled": true})),
        as_auditor(Method::DELETE, &format!("/api/v1/webhooks/{id}")),
        as_auditor(Method::POST, &format!("/api/v1/webhooks/{id}/secret")),
        as_auditor(
            Method::POST,
            &format!(
                "/api/v1/webhooks/{id}/deliveries/{}/redeliver",
                uuid::Uuid::new_v4()
            ),
        ),
    ];
    for write in writes {
        assert_refused(&app, write, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }

    let updated = app
        .admin(Method::PUT, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"url": "https://other.example.com/in", "event_types": null, "enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["url"], "https://other.example.com/in");
    assert_eq!(updated["event_types"], Value::Null);
    assert_eq!(updated["enabled"], true);
    assert_eq!(updated["description"], "billing");

    // The list is a read model, a moment behind the writes.
    let listed = |urls: Vec<&'static str>| {
        let app = &app;
        async move {
            let mut page = Value::Null;
            for _ in 0..200 {
                page = app.api().get("/api/v1/webhooks").await;
                let shown: Vec<&str> = page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|item| item["url"].as_str().unwrap())
                    .collect();
                if shown == urls && page["total"] == urls.len() {
                    return page;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the list never showed {urls:?}: {page}");
        }
    };
    let page = listed(vec!["https://other.example.com/in"]).await;
    assert_eq!(page["items"][0]["enabled"], true);
    assert_eq!(page["items"][0]["id"], id.as_str());
    assert_eq!(page["page"], 1);

    let deleted = app
        .admin(Method::DELETE, &format!("/api/v1/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_problem(
        app.admin(Method::GET, &format!("/api/v1/webhooks/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "WEBHOOK_NOT_FOUND",
    )
    .await;
    assert_refused(
        &app,
        app.admin(Method::PUT, &format!("/api/v1/webhooks/{id}"))
            .json(&json!({"enabled": false})),
        StatusCode::GONE,
        "WEBHOOK_DELETED",
    )
    .await;
    listed(vec![]).await;
    // Its history stays, in the feed like every aggregate's.
    let types: Vec<String> = feed_from(&app.api(), 0)
        .await
        .iter()
        .filter(|item| item["aggregate_id"] == id.as_str())
        .map(|item| item["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "WebhookEndpointCreated",
            "WebhookEndpointUpdated",
            "WebhookEndpointEnabled",
            "WebhookEndpointDeleted"
        ]
    );
    assert_problem(
        app.admin(
            Method::GET,
            &format!("/api/v1/webhooks/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::NOT_FOUND,
        "WEBHOOK_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn invalid_endpoints_are_refused_and_write_nothing() {
    let app = spawn_app_with(LOCAL).await;
    let create = |body: Value| app.admin(Method::POST, "/api/v1/webhooks").json(&body);
    for (body, code) in [
        (json!({"url": "not a url"}), "WEBHOOK_URL_REFUSED"),
        (
            json!({"url": "ftp://hooks.example.com/"}),
            "WEBHOOK_URL_REFUSED",
        ),
        (
            json!({"url": "https://user:pw@hooks.example.com/"}),
            "WEBHOOK_URL_REFUSED",
        ),
        (
            json!({"url": "https://hooks.example.com/", "event_types": ["NoSuchEvent"]}),
            "UNKNOWN_EVENT_TYPE",
        ),
        (
            json!({"url": "https://hooks.example.com/", "event_types": []}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"url": "https://hooks.example.com/", "description": "x".repeat(501)}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"url": format!("https://hooks.example.com/{}", "a".repeat(2100))}),
            "INVALID_WEBHOOK_URL",
        ),
    ] {
        assert_refused(&app, create(body), StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    assert_refused(
        &app,
        create(json!({"url": "https://hooks.example.com/", "secret": "mine"})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_BODY",
    )
    .await;
}

#[tokio::test]
async fn the_secret_is_shown_once_signs_deliveries_and_is_never_stored_or_logged_in_plaintext() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    let created = create_webhook(&app.api(), json!({"url": receiver.url})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let first_secret = created["secret"].as_str().unwrap().to_owned();
    assert!(first_secret.starts_with("whsec_"));
    let shown = app.api().get(&format!("/api/v1/webhooks/{id}")).await;
    assert!(shown.get("secret").is_none(), "{shown}");
    assert!(eventually(PATIENCE, || !receiver.received().is_empty()).await);
    assert!(receiver.received()[0].verifies_with(&first_secret));

    let rotated = app
        .admin(Method::POST, &format!("/api/v1/webhooks/{id}/secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: Value = rotated.json().await.unwrap();
    let second_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second_secret, first_secret);
    // The rotation itself is delivered, signed with the new secret and, during the
    // rotation's grace (24 h by default; see `rotation`), with the old one too.
    assert!(eventually(PATIENCE, || receiver.unique().len() >= 2).await);
    let after_rotation = receiver.unique()[1].clone();
    assert_eq!(after_rotation.body["type"], "WebhookEndpointSecretRotated");
    assert!(after_rotation.verifies_with(&second_secret));
    assert!(after_rotation.verifies_with(&first_secret));

    let page = app.api().get("/api/v1/webhooks").await;
    let everything_shown = format!(
        "{page}{}{}",
        app.api().get(&format!("/api/v1/webhooks/{id}")).await,
        serde_json::to_string(&feed_from(&app.api(), 0).await).unwrap()
    );
    let stored: Vec<String> = flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_scalar::<_, String>(&format!(
            "select {} from events",
            app.db.dialect().pick("payload::text", "payload")
        ))
        .fetch_all(pool)
        .await
        .unwrap()
    });
    let stored = stored.join("\n");
    let delivered: String = receiver
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    let logs = captured_logs();
    for secret in [&first_secret, &second_secret] {
        let key = secret.trim_start_matches("whsec_");
        for (place, text) in [
            ("the API", &everything_shown),
            ("the events table", &stored),
            ("the deliveries", &delivered),
            ("the logs", &logs),
        ] {
            assert!(!text.contains(key), "a signing secret is in {place}");
        }
    }
    assert!(
        stored.contains("sealed:v1:"),
        "the events keep the secret sealed"
    );
    assert!(
        everything_shown.contains("[redacted]"),
        "the feed shows it redacted"
    );
    assert!(!everything_shown.contains("sealed:v1:"));
    assert!(!delivered.contains("sealed:v1:"));
}
