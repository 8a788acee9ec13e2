//! No secret reaches the event store, the logs or an error body: not the license keys, not
//! the admin password, not any token handed out.

use flowlytix_aggregates::license_key::LicenseKey;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{
    assert_problem, captured_logs, spawn_app, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD,
};

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
}

async fn post(app: &TestApp, path: &str, body: Value, request_id: &str) -> reqwest::Response {
    app.anon(Method::POST, path)
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The forms in which a secret could leak: itself, and for a license key also without its
/// dashes; for a JWT also its signature alone (the header part is shared by many tokens).
fn leak_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    if secret.starts_with("FLX-") {
        forms.push(secret.replace('-', ""));
        // The key minus its shown prefix (`FLX-XXXXX`): the part that must stay secret.
        forms.push(secret[9..].to_owned());
    }
    if secret.matches('.').count() == 2 {
        forms.push(secret.rsplit('.').next().unwrap().to_owned());
    }
    forms
}

fn assert_no_secret(haystack: &str, secrets: &[(&str, String)], place: &str) {
    for (what, secret) in secrets {
        for form in leak_forms(secret) {
            assert!(
                !haystack.contains(&form),
                "{place} contains {what} ({form})"
            );
        }
    }
}

#[tokio::test]
async fn no_license_key_password_or_token_is_stored_in_events_or_logs_or_echoed() {
    let app = spawn_app().await;
    let marker = format!("secrets-scan-{}", Uuid::new_v4());

    // A subscription and its first key.
    let subscription = app.subscription_with_devices(3).await;
    let id = text(&subscription, "id");
    let first_key = text(&subscription, "license_key").to_owned();
    assert_eq!(LicenseKey::parse(&first_key).unwrap().expose(), first_key);

    // Activate, validate by key, refresh, deactivate by token and by key.
    let licensing = app.licensing().with_request_id(&marker);
    let device = json!({"fingerprint": "fp-secret-1", "name": "laptop", "platform": "linux"});
    let activated = licensing.activate_device(&first_key, device).await;
    let first_token = text(&activated.expect_status(StatusCode::CREATED), "token").to_owned();
    let verdict = licensing.validate(&first_key, "fp-secret-1").await;
    assert_eq!(verdict.body["code"], "VALID");
    let refreshed = licensing.refresh(&first_token).await;
    let refreshed_token = text(&refreshed.expect_status(StatusCode::OK), "token").to_owned();
    let verdict = licensing
        .validate_token(&refreshed_token, "fp-secret-1")
        .await;
    assert_eq!(verdict.body["code"], "VALID");
    let deactivated = licensing
        .deactivate_token(&refreshed_token, "fp-secret-1")
        .await;
    assert_eq!(deactivated.status, StatusCode::NO_CONTENT);
    let device = json!({"fingerprint": "fp-secret-2"});
    let activated = licensing.activate_device(&first_key, device).await;
    let second_token = text(&activated.expect_status(StatusCode::CREATED), "token").to_owned();
    let deactivated = licensing.deactivate(&first_key, "fp-secret-2").await;
    assert_eq!(deactivated.status, StatusCode::NO_CONTENT);

    // Regenerate: a new key, shown once; the old one stops working.
    let response = app
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id}/license-key"),
        )
        .header("x-request-id", &marker)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let regenerated: Value = response.json().await.unwrap();
    let second_key = text(&regenerated, "license_key").to_owned();
    assert_ne!(second_key, first_key);
    let device = json!({"fingerprint": "fp-secret-3"});
    let activated = licensing.activate_device(&second_key, device).await;
    let third_token = text(&activated.expect_status(StatusCode::CREATED), "token").to_owned();

    // The key is never shown again after create and regenerate.
    let read: Value = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for key in [&first_key, &second_key] {
        assert!(
            !read.to_string().contains(key.as_str()),
            "GET shows a key: {read}"
        );
        assert!(!history.contains(key.as_str()), "the history shows a key");
    }
    assert_eq!(read["license_key_prefix"], second_key[..9]);

    // Error bodies do not echo a key: the old (superseded) key, an unknown well-formed key,
    // a mistyped key.
    let unknown_key = LicenseKey::from_entropy([3u8; 19]).expose().to_owned();
    let mistyped = format!(
        "{}{}",
        &second_key[..second_key.len() - 1],
        if second_key.ends_with('0') { '1' } else { '0' }
    );
    let mut echoed_candidates = vec![first_key.clone(), unknown_key.clone()];
    for key in [&first_key, &unknown_key] {
        let not_echoed = |body: &Value, place: &str| {
            assert_no_secret(&body.to_string(), &[("a license key", key.clone())], place)
        };
        let device = json!({"fingerprint": "fp-secret-4"});
        let activated = licensing.activate_device(key, device).await;
        let problem = activated.problem(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND");
        not_echoed(&problem, "a 404 body");
        let verdict = licensing.validate(key, "fp-secret-4").await.body;
        assert_eq!(verdict["code"], "NOT_FOUND");
        not_echoed(&verdict, "a validate body");
        let deactivated = licensing.deactivate(key, "fp-secret-4").await;
        let problem = deactivated.problem(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND");
        not_echoed(&problem, "a 404 body");
    }
    let device = json!({"fingerprint": "fp-secret-4"});
    let problem = licensing
        .activate_device(&mistyped, device)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "LICENSE_KEY_MALFORMED");
    assert!(
        !problem.to_string().contains(&mistyped[9..]),
        "a 422 body echoes the key: {problem}"
    );
    echoed_candidates.push(mistyped);

    // Admin sign-in: a login, a rotation, a failed login with the real password elsewhere.
    let session = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let response = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": text(&session, "refresh_token")}),
        &marker,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated: Value = response.json().await.unwrap();
    let response = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": "someone@flowlytix.test", "password": ADMIN_PASSWORD}),
        &marker,
    )
    .await;
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    assert!(!problem.to_string().contains(ADMIN_PASSWORD));
    let response = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": text(&session, "refresh_token")}),
        &marker,
    )
    .await;
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;
    assert!(!problem
        .to_string()
        .contains(text(&session, "refresh_token")));

    let secrets: Vec<(&str, String)> = vec![
        ("the first license key", first_key.clone()),
        ("the regenerated license key", second_key.clone()),
        ("the admin password", ADMIN_PASSWORD.to_owned()),
        (
            "the secret key",
            "test-secret-key-that-is-long-enough-0123456789".to_owned(),
        ),
        ("the first license token", first_token),
        ("the refreshed license token", refreshed_token),
        ("the second device's license token", second_token),
        ("the third device's license token", third_token),
        ("the bootstrap access token", app.admin_token.clone()),
        (
            "the access token",
            text(&session, "access_token").to_owned(),
        ),
        (
            "the refresh token",
            text(&session, "refresh_token").to_owned(),
        ),
        (
            "the rotated access token",
            text(&rotated, "access_token").to_owned(),
        ),
        (
            "the rotated refresh token",
            text(&rotated, "refresh_token").to_owned(),
        ),
    ];

    // Every event row, payload and metadata.
    let sql = app.db.dialect().pick(
        "select event_type, payload::text, metadata::text from events order by global_position",
        "select event_type, payload, metadata from events order by global_position",
    );
    let rows: Vec<(String, String, String)> = flowlytix_projections::with_db!(&app.db, pool => sqlx::query_as(sql).fetch_all(pool).await.unwrap());
    assert!(rows.len() >= 10, "{} events", rows.len());
    let events: String = rows
        .iter()
        .map(|(t, p, m)| format!("{t} {p} {m}\n"))
        .collect();
    assert_no_secret(&events, &secrets, "the events table");
    for key in &echoed_candidates {
        assert!(
            !events.contains(key.as_str()),
            "the events table contains a key that was only tried"
        );
    }
    // The scan is not vacuous: the events do hold the keys' hashes, and the request metadata.
    for (what, key) in [("first", &first_key), ("regenerated", &second_key)] {
        assert!(
            events.contains(&sha256_hex(key)),
            "the events hold the {what} key's SHA-256"
        );
    }
    let regenerated_event = rows
        .iter()
        .find(|(t, _, _)| t == "LicenseKeyRegenerated")
        .expect("a LicenseKeyRegenerated event");
    assert!(
        regenerated_event.1.contains(&sha256_hex(&first_key))
            || regenerated_event.1.contains(&sha256_hex(&second_key))
    );
    assert!(
        events.contains(&sha256_hex("fp-secret-1")),
        "the events hold fingerprint hashes"
    );
    assert!(events.contains(&marker), "the events carry the request id");
    assert!(
        events.contains("$argon2id$"),
        "the admin's password is stored as an argon2id hash"
    );

    // Refresh tokens are stored as hashes only.
    let hashes: Vec<String> = flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_scalar("select token_hash from admin_refresh_tokens").fetch_all(pool).await.unwrap()
    });
    let stored = hashes.join("\n");
    assert_no_secret(&stored, &secrets, "admin_refresh_tokens");
    assert!(stored.contains(&sha256_hex(text(&rotated, "refresh_token"))));

    // Every other table too (read models, sessions, checkpoints), once the read side has
    // caught up with the regenerated key (bounded wait; the scan runs either way).
    let mut dump = String::new();
    for _ in 0..50 {
        dump = database_dump(&app).await;
        if dump.contains(&sha256_hex(&second_key)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_no_secret(&dump, &secrets, "the database");
    for key in &echoed_candidates {
        assert!(
            !dump.contains(key.as_str()),
            "the database contains a key that was only tried"
        );
    }

    // The logs of every server in this test binary.
    let logs = captured_logs();
    assert!(
        logs.contains(&marker),
        "the logs hold this test's requests (request id {marker})"
    );
    assert!(logs.contains("/api/v1/licensing/activate"));
    assert_no_secret(&logs, &secrets, "the logs");
    for key in &echoed_candidates {
        assert!(
            !logs.contains(key.as_str()),
            "the logs contain a key that was only tried"
        );
    }
}

/// Every row of every table of the test database except the events, as text. On SQLite,
/// the database files themselves (main file and write-ahead log), which is stricter still.
async fn database_dump(app: &TestApp) -> String {
    if let Some(path) = app.database_url.strip_prefix("sqlite://") {
        let mut dump = String::new();
        for suffix in ["", "-wal"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                dump.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        assert!(
            dump.contains("admin_refresh_tokens"),
            "the dump covers the sessions table"
        );
        return dump;
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables
         where table_schema = 'public' and table_type = 'BASE TABLE' and table_name <> 'events'",
    )
    .fetch_all(app.pg())
    .await
    .unwrap();
    assert!(
        tables.iter().any(|t| t == "admin_refresh_tokens"),
        "{tables:?}"
    );
    let mut dump = String::new();
    for table in tables {
        let rows: Option<String> = sqlx::query_scalar(&format!(
            r#"select string_agg(t::text, E'\n') from "{table}" t"#
        ))
        .fetch_one(app.pg())
        .await
        .unwrap();
        dump.push_str(&format!("== {table}\n{}\n", rows.unwrap_or_default()));
    }
    dump
}
