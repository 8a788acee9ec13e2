//! `Idempotency-Key` on the writing POSTs: a repeat gets the first answer and runs nothing,
//! another request under the key is refused, concurrent repeats run once, keys survive a
//! restart, belong to their caller, and what is remembered is sealed.

use chrono::{Duration, Utc};
use flowlytix_aggregates::Role;
use flowlytix_server::auth::accounts;
use flowlytix_server::idempotency::{Begun, IdempotencyKey, Scope};
use flowlytix_server::store::EventMetadata;
use futures::future::join_all;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use flowlytix_projections::Db;
use flowlytix_server::idempotency::STATEMENT_LIMIT;

use crate::helpers::{
    assert_problem, assert_refused, count_events_of_type, skip_unless_postgres, spawn_app,
    spawn_app_with, start_app, TestApp,
};

const HEADER: &str = "Idempotency-Key";

fn new_subscription(email: &str) -> Value {
    json!({
        "customer_email": email,
        "customer_name": "Ida Empotent",
        "plan": "pro",
        "max_devices": 2,
        "features": ["sync"],
    })
}

fn create(app: &TestApp, key: &str, body: &Value) -> RequestBuilder {
    app.admin(Method::POST, "/api/v1/subscriptions")
        .header(HEADER, key)
        .json(body)
}

/// Status, the headers a replay must repeat, and the body.
async fn answer(response: Response) -> (StatusCode, Option<String>, Option<String>, bool, Value) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let location = header("location");
    let content_type = header("content-type");
    let replayed = header("idempotent-replayed").is_some_and(|v| v == "true");
    let status = response.status();
    let body = if status == StatusCode::NO_CONTENT {
        Value::Null
    } else {
        response.json().await.expect("a JSON body")
    };
    (status, location, content_type, replayed, body)
}

#[tokio::test]
async fn the_same_key_and_request_answer_the_first_response_again_and_run_once() {
    let app = spawn_app().await;
    let body = new_subscription("once@example.com");
    let first = answer(create(&app, "create-1", &body).send().await.unwrap()).await;
    let again = answer(create(&app, "create-1", &body).send().await.unwrap()).await;
    assert_eq!(first.0, StatusCode::CREATED);
    assert!(!first.3, "a first answer is not a replay");
    assert!(again.3, "a repeat says it is a replay");
    assert_eq!(again.0, first.0);
    assert_eq!(again.1, first.1, "the same Location");
    assert_eq!(again.2.as_deref(), Some("application/json"));
    assert_eq!(again.4, first.4, "the same body, license key included");
    assert!(first.4["license_key"]
        .as_str()
        .is_some_and(|k| k.starts_with("FLX-")));
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 1);
    assert_eq!(count_events_of_type(&app, "LicenseKeyIssued").await, 1);
    let feed = app
        .api()
        .get("/api/v1/events?aggregate_type=Subscription")
        .await;
    assert_eq!(
        feed["items"].as_array().unwrap().len(),
        2,
        "one set of events: {feed}"
    );

    // Without a key, the same request is a new subscription, as before.
    app.create_subscription(body).await;
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 2);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_422_and_writes_nothing() {
    let app = spawn_app().await;
    let created = create(&app, "k", &new_subscription("a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_refused(
        &app,
        create(&app, "k", &new_subscription("b@example.com")),
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    // Another route under the same key is another request too.
    let id = created["id"].as_str().unwrap();
    assert_refused(
        &app,
        app.admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id}/license-key"),
        )
        .header(HEADER, "k"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
}

#[tokio::test]
async fn a_refused_request_is_not_remembered_so_its_corrected_retry_runs() {
    let app = spawn_app().await;
    let mut invalid = new_subscription("fix@example.com");
    invalid["max_devices"] = json!(0);
    let refused = create(&app, "fix-me", &invalid).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let fixed = create(&app, "fix-me", &new_subscription("fix@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(fixed.status(), StatusCode::CREATED);
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 1);
}

#[tokio::test]
async fn malformed_keys_are_400_and_write_nothing() {
    let app = spawn_app().await;
    let body = new_subscription("bad@example.com");
    for key in ["x".repeat(256), "caf\u{e9}".to_owned()] {
        let request = app
            .admin(Method::POST, "/api/v1/subscriptions")
            .header(
                HEADER,
                reqwest::header::HeaderValue::from_bytes(key.as_bytes()).unwrap(),
            )
            .json(&body);
        assert_refused(
            &app,
            request,
            StatusCode::BAD_REQUEST,
            "INVALID_IDEMPOTENCY_KEY",
        )
        .await;
    }
    let twice = app
        .admin(Method::POST, "/api/v1/subscriptions")
        .header(HEADER, "one")
        .header(HEADER, "two")
        .json(&body);
    assert_refused(
        &app,
        twice,
        StatusCode::BAD_REQUEST,
        "INVALID_IDEMPOTENCY_KEY",
    )
    .await;
    let longest = create(&app, &"k".repeat(255), &body).send().await.unwrap();
    assert_eq!(longest.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn ten_concurrent_repeats_create_one_subscription() {
    let app = spawn_app().await;
    let body = new_subscription("race@example.com");
    let answers = join_all(
        (0..10).map(|_| async { answer(create(&app, "race", &body).send().await.unwrap()).await }),
    )
    .await;
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 1);
    let created: Vec<&Value> = answers
        .iter()
        .filter(|a| a.0 == StatusCode::CREATED)
        .map(|a| &a.4)
        .collect();
    assert!(!created.is_empty(), "{answers:?}");
    assert!(
        created.iter().all(|body| *body == created[0]),
        "every 201 is the first one"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.0 == StatusCode::CREATED && !a.3)
            .count(),
        1
    );
    for other in answers.iter().filter(|a| a.0 != StatusCode::CREATED) {
        assert_eq!(other.0, StatusCode::CONFLICT, "{other:?}");
        assert_eq!(other.4["code"], "IDEMPOTENCY_KEY_IN_FLIGHT");
    }
    // Once the first is answered, every repeat is the replay.
    let after = answer(create(&app, "race", &body).send().await.unwrap()).await;
    assert_eq!((after.0, after.3), (StatusCode::CREATED, true));
    assert_eq!(&after.4, created[0]);
}

#[tokio::test]
async fn a_repeat_after_a_restart_on_the_same_database_is_replayed() {
    let app = spawn_app().await;
    let body = new_subscription("restart@example.com");
    let first = answer(create(&app, "survives", &body).send().await.unwrap()).await;
    assert_eq!(first.0, StatusCode::CREATED);
    app.server.stop_background_tasks();
    // A new server process on the same database and secret.
    let restarted = start_app(&app.database_url, &app.key_dir, app.nats_names.clone(), &[]).await;
    let again = answer(create(&restarted, "survives", &body).send().await.unwrap()).await;
    assert_eq!((again.0, again.3), (StatusCode::CREATED, true));
    assert_eq!(again.4, first.4);
    assert_eq!(
        count_events_of_type(&restarted, "SubscriptionCreated").await,
        1
    );
}

#[tokio::test]
async fn another_admin_with_the_same_key_runs_its_own_request() {
    let app = spawn_app().await;
    accounts::create_admin(
        &app.server.admins,
        "second@flowlytix.test",
        "second-admin-password-123",
        Role::Admin,
        EventMetadata::system(Utc::now()),
    )
    .await
    .expect("create a second admin");
    let second = app
        .login("second@flowlytix.test", "second-admin-password-123")
        .await;
    let second_token = second["access_token"].as_str().unwrap().to_owned();
    let body = new_subscription("shared-key@example.com");
    let mine = answer(create(&app, "shared", &body).send().await.unwrap()).await;
    let theirs = app
        .anon(Method::POST, "/api/v1/subscriptions")
        .bearer_auth(&second_token)
        .header(HEADER, "shared")
        .json(&body)
        .send()
        .await
        .unwrap();
    let theirs = answer(theirs).await;
    assert_eq!((theirs.0, theirs.3), (StatusCode::CREATED, false));
    assert_ne!(theirs.4["id"], mine.4["id"]);
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 2);
}

#[tokio::test]
async fn a_regenerated_key_is_shown_again_on_a_repeat_and_issued_once() {
    let app = spawn_app().await;
    let subscription = app
        .create_subscription(new_subscription("regen@example.com"))
        .await;
    let path = format!(
        "/api/v1/subscriptions/{}/license-key",
        subscription["id"].as_str().unwrap()
    );
    let regenerate = || app.admin(Method::POST, &path).header(HEADER, "regen");
    let first = answer(regenerate().send().await.unwrap()).await;
    let again = answer(regenerate().send().await.unwrap()).await;
    assert_eq!(
        (first.0, again.0, again.3),
        (StatusCode::OK, StatusCode::OK, true)
    );
    assert_eq!(again.4["license_key"], first.4["license_key"]);
    assert_ne!(first.4["license_key"], subscription["license_key"]);
    assert_eq!(count_events_of_type(&app, "LicenseKeyRegenerated").await, 1);
}

fn activate(app: &TestApp, key: &str, license_key: &str, fingerprint: &str) -> RequestBuilder {
    app.anon(Method::POST, "/api/v1/licensing/activate")
        .header(HEADER, key)
        .json(&json!({"license_key": license_key, "device": {"fingerprint": fingerprint}}))
}

#[tokio::test]
async fn licensing_calls_are_replayed_per_license() {
    let app = spawn_app().await;
    let a = app.subscription_with_devices(3).await;
    let b = app.subscription_with_devices(3).await;
    let key_a = a["license_key"].as_str().unwrap();
    let key_b = b["license_key"].as_str().unwrap();

    let first = answer(
        activate(&app, "boot-1", key_a, "laptop")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let again = answer(
        activate(&app, "boot-1", key_a, "laptop")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (first.0, again.0, again.3),
        (StatusCode::CREATED, StatusCode::CREATED, true)
    );
    assert_eq!(again.4, first.4, "the same token and device");
    assert_eq!(count_events_of_type(&app, "LicenseTokenIssued").await, 1);
    // Another license's client may use the same key: its own request runs.
    let other = answer(
        activate(&app, "boot-1", key_b, "laptop")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((other.0, other.3), (StatusCode::CREATED, false));
    assert_eq!(count_events_of_type(&app, "DeviceActivated").await, 2);

    // Refresh, scoped by the token's license.
    let token = first.4["token"].as_str().unwrap();
    let refresh = || {
        app.anon(Method::POST, "/api/v1/licensing/refresh")
            .header(HEADER, "refresh-1")
            .json(&json!({"token": token}))
    };
    let refreshed = answer(refresh().send().await.unwrap()).await;
    let refreshed_again = answer(refresh().send().await.unwrap()).await;
    assert_eq!((refreshed.0, refreshed_again.3), (StatusCode::OK, true));
    assert_eq!(refreshed_again.4["token"], refreshed.4["token"]);
    assert_eq!(count_events_of_type(&app, "LicenseTokenIssued").await, 3);

    // Deactivate: 204 twice, one deactivation.
    let deactivate = || {
        app.anon(Method::POST, "/api/v1/licensing/deactivate")
            .header(HEADER, "bye")
            .json(&json!({"license_key": key_a, "fingerprint": "laptop"}))
    };
    let gone = answer(deactivate().send().await.unwrap()).await;
    let gone_again = answer(deactivate().send().await.unwrap()).await;
    assert_eq!(
        (gone.0, gone_again.0, gone_again.3),
        (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT, true)
    );
    assert_eq!(count_events_of_type(&app, "DeviceDeactivated").await, 1);
    // Without the key, a second deactivation is what it always was.
    let plain = app
        .anon(Method::POST, "/api/v1/licensing/deactivate")
        .json(&json!({"license_key": key_a, "fingerprint": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_problem(plain, StatusCode::NOT_FOUND, "DEVICE_NOT_ACTIVATED").await;
}

/// Every byte of the table, as text a secret could be found in.
async fn idempotency_table_dump(app: &TestApp) -> String {
    type Row = (String, String, Option<Vec<u8>>, Option<Vec<u8>>);
    let rows: Vec<Row> = flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_as("select key_hash, request_hash, response_nonce, response_sealed from idempotency_keys")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert!(!rows.is_empty());
    rows.into_iter()
        .map(|(key, request, nonce, sealed)| {
            format!(
                "{key} {request} {} {}",
                String::from_utf8_lossy(&nonce.unwrap_or_default()),
                String::from_utf8_lossy(&sealed.unwrap_or_default())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_table_holds_no_license_key_token_or_idempotency_key_in_clear() {
    let app = spawn_app().await;
    let created = answer(
        create(
            &app,
            "secret-holder-key",
            &new_subscription("s@example.com"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let license_key = created.4["license_key"].as_str().unwrap().to_owned();
    let activated = answer(
        activate(&app, "secret-holder-key-2", &license_key, "pc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let token = activated.4["token"].as_str().unwrap().to_owned();
    let dump = idempotency_table_dump(&app).await;
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 2);
    assert!(!dump.is_empty());
    for secret in [
        license_key.as_str(),
        &license_key[4..15],
        token.as_str(),
        &token[..20],
        "secret-holder-key",
    ] {
        assert!(!dump.contains(secret), "{secret} is in the table");
    }
}

#[tokio::test]
async fn a_crashed_request_s_key_is_free_after_its_lease_and_expired_keys_are_purged() {
    let app = spawn_app().await;
    let keys = &app.server.idempotency;
    let scope = Scope::license(flowlytix_aggregates::SubscriptionId(uuid::Uuid::new_v4()));
    let key = IdempotencyKey::parse(b"crash").unwrap();
    let now = Utc::now();
    // The first attempt claims the key and "crashes": it never answers.
    assert!(matches!(
        keys.begin(&scope, &key, "request", now).await.unwrap(),
        Begun::Run(_)
    ));
    assert!(matches!(
        keys.begin(&scope, &key, "request", now).await.unwrap(),
        Begun::InFlight
    ));
    assert!(matches!(
        keys.begin(&scope, &key, "other", now).await.unwrap(),
        Begun::Reused
    ));
    let later = now + Duration::seconds(61);
    // A different request never takes over: the crashed one may have committed.
    assert!(matches!(
        keys.begin(&scope, &key, "other", later).await.unwrap(),
        Begun::Reused
    ));
    assert!(matches!(
        keys.begin(&scope, &key, "request", later).await.unwrap(),
        Begun::Run(_)
    ));

    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 1);
    assert_eq!(
        keys.purge_expired(now + Duration::hours(23)).await.unwrap(),
        0
    );
    assert_eq!(
        keys.purge_expired(later + Duration::hours(24))
            .await
            .unwrap(),
        1
    );
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 0);
}

#[tokio::test]
async fn the_document_describes_the_header_and_cors_allows_it() {
    let app = spawn_app().await;
    let document: Value = app
        .anon(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Every writing POST, so that one added later without the header fails here. Sign-in
    // ignores the header on purpose (see the README) and validate writes nothing.
    let writing_posts: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, item)| {
            item.get("post").is_some()
                && !path.starts_with("/api/v1/auth/")
                && path.as_str() != "/api/v1/licensing/validate"
        })
        .map(|(path, _)| path.clone())
        .collect();
    for expected in [
        "/api/v1/subscriptions",
        "/api/v1/subscriptions/{id}/license-key",
        "/api/v1/licensing/activate",
        "/api/v1/licensing/refresh",
        "/api/v1/licensing/deactivate",
        "/api/v1/webhooks",
        "/api/v1/webhooks/{id}/secret",
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
        "/api/v1/products",
        "/api/v1/entitlements",
        "/api/v1/policies",
        "/api/v1/policies/{id}/archive",
        "/api/v1/policies/{id}/unarchive",
        "/api/v1/policies/{id}/entitlements",
    ] {
        assert!(writing_posts.iter().any(|p| p == expected), "{expected}");
    }
    for path in &writing_posts {
        let (path, method) = (path.as_str(), "post");
        let operation = &document["paths"][path][method];
        let header = operation["parameters"]
            .as_array()
            .and_then(|p| {
                p.iter()
                    .find(|p| p["name"] == HEADER && p["in"] == "header")
            })
            .unwrap_or_else(|| panic!("{method} {path} documents {HEADER}"));
        assert_eq!(header["schema"]["maxLength"], 255);
        let success = operation["responses"]
            .as_object()
            .and_then(|r| r.iter().find(|(status, _)| status.starts_with('2')))
            .map(|(_, response)| response)
            .unwrap();
        assert!(
            success["headers"]["Idempotent-Replayed"].is_object(),
            "{method} {path}"
        );
        for (status, code) in [
            ("400", "INVALID_IDEMPOTENCY_KEY"),
            ("409", "IDEMPOTENCY_KEY_IN_FLIGHT"),
            ("422", "IDEMPOTENCY_KEY_REUSED"),
        ] {
            let description = operation["responses"][status]["description"]
                .as_str()
                .unwrap_or("");
            assert!(
                description.contains(code),
                "{method} {path} {status}: {description}"
            );
        }
    }
    let validate = &document["paths"]["/api/v1/licensing/validate"]["post"];
    assert!(
        !validate.to_string().contains(HEADER),
        "validation writes nothing"
    );
}

#[tokio::test]
async fn a_browser_may_send_the_header_and_read_the_replay_mark() {
    let app =
        crate::helpers::spawn_app_with(&[("ALLOWED_ORIGINS", "https://console.example.com")]).await;
    let preflight = app
        .anon(Method::OPTIONS, "/api/v1/subscriptions")
        .header("origin", "https://console.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, idempotency-key",
        )
        .send()
        .await
        .unwrap();
    let allowed = preflight
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
    let created = create(&app, "cors", &new_subscription("cors@example.com"))
        .header("origin", "https://console.example.com")
        .send()
        .await
        .unwrap();
    let exposed = created
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(exposed.contains("idempotent-replayed"), "{exposed}");
}

#[tokio::test]
async fn a_repeat_whose_answer_cannot_be_opened_any_more_is_409_and_runs_nothing() {
    let app = spawn_app().await;
    let body = new_subscription("rotated@example.com");
    let first = create(&app, "before-rotation", &body).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    app.server.stop_background_tasks();
    // The same database after SECRET_KEY changed: the sealed answer no longer opens.
    let rotated = start_app(
        &app.database_url,
        &app.key_dir,
        app.nats_names.clone(),
        &[(
            "SECRET_KEY",
            "another-secret-key-that-is-long-enough-987654",
        )],
    )
    .await;
    assert_refused(
        &rotated,
        create(&rotated, "before-rotation", &body),
        StatusCode::CONFLICT,
        "IDEMPOTENCY_RESPONSE_UNREADABLE",
    )
    .await;
    assert_eq!(
        count_events_of_type(&rotated, "SubscriptionCreated").await,
        1
    );
}

#[tokio::test]
async fn a_request_refused_for_its_credential_is_not_remembered() {
    let app = spawn_app().await;
    accounts::create_admin(
        &app.server.admins,
        "reader@flowlytix.test",
        "reader-password-123456",
        Role::Auditor,
        EventMetadata::system(Utc::now()),
    )
    .await
    .expect("create an auditor");
    let auditor = app
        .login("reader@flowlytix.test", "reader-password-123456")
        .await;
    let body = new_subscription("nobody@example.com");
    let as_auditor = app
        .anon(Method::POST, "/api/v1/subscriptions")
        .bearer_auth(auditor["access_token"].as_str().unwrap())
        .header(HEADER, "k")
        .json(&body);
    assert_refused(&app, as_auditor, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // Auditors only read: no writing route is theirs, so they own no key and write no row
    // (a released key's row stays for a day: one per request, as many as they liked).
    let rows = app.scalar("select count(*) from idempotency_keys").await;
    assert_eq!(rows, 0, "an auditor's refused request left a key behind");
    let unsigned = app
        .anon(Method::POST, "/api/v1/subscriptions")
        .bearer_auth("not-a-token")
        .header(HEADER, "k")
        .json(&body);
    assert_refused(
        &app,
        unsigned,
        StatusCode::UNAUTHORIZED,
        "INVALID_ACCESS_TOKEN",
    )
    .await;
    let forged_token = app
        .anon(Method::POST, "/api/v1/licensing/refresh")
        .header(HEADER, "k")
        .json(&json!({"token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}));
    assert_refused(
        &app,
        forged_token,
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
    )
    .await;
    // Without a credential there is no caller: nothing is claimed at all.
    assert_eq!(
        app.scalar("select count(*) from idempotency_keys").await,
        rows
    );
}

#[tokio::test]
async fn a_license_key_nobody_holds_claims_no_key() {
    let app = spawn_app().await;
    // Well formed, but no license has it: anyone could send one such request after another,
    // each under a new key, and fill the table for a day.
    let unknown = "FLX-00000-00000-00000-00000-00000-00000-0";
    for key in ["guess-1", "guess-2"] {
        assert_refused(
            &app,
            activate(&app, key, unknown, "laptop"),
            StatusCode::NOT_FOUND,
            "LICENSE_NOT_FOUND",
        )
        .await;
    }
    assert_eq!(
        app.scalar("select count(*) from idempotency_keys").await,
        0,
        "a request refused for its credential left a key behind"
    );
    // A license key someone holds still owns its keys.
    let held = app.subscription_with_devices(1).await;
    let held = held["license_key"].as_str().unwrap();
    let first = activate(&app, "boot", held, "laptop").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = activate(&app, "boot", held, "laptop").send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn a_retry_after_a_crash_between_commit_and_answer_creates_no_second_subscription() {
    let app = spawn_app().await;
    let body = new_subscription("crash@example.com");
    let first = create(&app, "lost-answer", &body).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    // What a server that died after the commit, before remembering the answer, leaves: the
    // key held by an attempt whose lease has run out, and no answer.
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query(
            "update idempotency_keys set response_status = null, response_nonce = null,
             response_sealed = null, claim_id = 'crashed', lease_until = 0",
        )
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
    });
    assert_refused(
        &app,
        create(&app, "lost-answer", &body),
        StatusCode::CONFLICT,
        "SUBSCRIPTION_EXISTS",
    )
    .await;
    // The refusal wrote nothing and is not remembered; every further retry is the same.
    assert_refused(
        &app,
        create(&app, "lost-answer", &body),
        StatusCode::CONFLICT,
        "SUBSCRIPTION_EXISTS",
    )
    .await;
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 1);
    // Once the key expired, using it again is a new key: a new subscription.
    app.server
        .idempotency
        .purge_expired(Utc::now() + Duration::hours(25))
        .await
        .unwrap();
    let later = create(&app, "lost-answer", &body).send().await.unwrap();
    assert_eq!(later.status(), StatusCode::CREATED);
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 2);
}

#[tokio::test]
async fn a_retry_after_a_crash_between_commit_and_answer_creates_no_second_webhook_endpoint() {
    let app = spawn_app_with(crate::webhooks::LOCAL).await;
    let body = json!({"url": "http://127.0.0.1:9/hook", "description": "lost answer"});
    let webhook = || {
        app.admin(Method::POST, "/api/v1/webhooks")
            .header(HEADER, "lost-webhook-answer")
            .json(&body)
    };
    let first = webhook().send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    // As above: the key held by a dead attempt, its answer never remembered.
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query(
            "update idempotency_keys set response_status = null, response_nonce = null,
             response_sealed = null, claim_id = 'crashed', lease_until = 0",
        )
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
    });
    assert_refused(&app, webhook(), StatusCode::CONFLICT, "WEBHOOK_EXISTS").await;
    assert_eq!(
        count_events_of_type(&app, "WebhookEndpointCreated").await,
        1
    );
}

#[tokio::test]
async fn an_append_held_up_on_a_lock_is_cut_off_by_the_database_before_the_lease_runs_out() {
    // A write held up on a lock needs PostgreSQL (SQLite gives up after its busy timeout).
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app().await;
    let subscription = app
        .create_subscription(new_subscription("stuck@example.com"))
        .await;
    let path = format!(
        "/api/v1/subscriptions/{}/license-key",
        subscription["id"].as_str().unwrap()
    );
    let regenerate = || app.admin(Method::POST, &path).header(HEADER, "stuck");
    let Db::Postgres(pool) = &app.db else {
        unreachable!("PostgreSQL run")
    };
    // Every append waits while this transaction holds the lock.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("lock table events in share mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    // Dropping an attempt (at RUN_LIMIT) would not stop a statement the database already
    // has: the append would wait on, and commit whenever the lock is let go, even after a
    // retry had taken the key over. The database itself cancels it, well before the lease
    // (and before the 30 s request timeout), and the client hears it may retry.
    let started = std::time::Instant::now();
    let first = regenerate().send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < STATEMENT_LIMIT + std::time::Duration::from_secs(5));
    lock.rollback().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(count_events_of_type(&app, "LicenseKeyRegenerated").await, 0);
    // Nothing was done, so the key was let go: the retry runs at once, and once.
    let retry = regenerate().send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(count_events_of_type(&app, "LicenseKeyRegenerated").await, 1);
}
