//! Admin authentication: login, rotating refresh tokens, logout, roles.

use std::time::{Duration, Instant};

use chrono::Utc;
use flowlytix_aggregates::Role;
use flowlytix_server::auth::accounts::{self, AdminChange};
use flowlytix_server::store::EventMetadata;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_problem, assert_refused, spawn_app, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD,
};

const AUDITOR_EMAIL: &str = "aud@x.test";
const AUDITOR_PASSWORD: &str = "long-enough-password";

async fn login_response(app: &TestApp, email: &str, password: &str) -> Response {
    app.anon(Method::POST, "/api/v1/auth/login")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn refresh_response(app: &TestApp, refresh_token: &str) -> Response {
    app.anon(Method::POST, "/api/v1/auth/refresh")
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .unwrap()
}

async fn refreshed(app: &TestApp, refresh_token: &str) -> Value {
    let response = refresh_response(app, refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn text<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
}

/// A read that needs a signed-in admin or auditor.
fn read_with(app: &TestApp, subscription_id: &str, access_token: &str) -> RequestBuilder {
    app.anon(
        Method::GET,
        &format!("/api/v1/subscriptions/{subscription_id}"),
    )
    .bearer_auth(access_token)
}

async fn assert_access_works(app: &TestApp, subscription_id: &str, access_token: &str) {
    let response = read_with(app, subscription_id, access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn assert_access_refused(app: &TestApp, subscription_id: &str, access_token: &str) {
    let response = read_with(app, subscription_id, access_token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_ACCESS_TOKEN").await;
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn login_with_an_unknown_email_or_a_wrong_password_fails_identically() {
    let app = spawn_app().await;
    let mut bodies = Vec::new();
    for (email, password) in [
        ("nobody@flowlytix.test", ADMIN_PASSWORD),
        (ADMIN_EMAIL, "wrong-password-entirely"),
        (ADMIN_EMAIL, &ADMIN_PASSWORD.to_uppercase()),
        ("not-an-email", ADMIN_PASSWORD),
        (ADMIN_EMAIL, ""),
    ] {
        let response = login_response(&app, email, password).await;
        let body = assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
        bodies.push(body);
    }
    for body in &bodies[1..] {
        assert_eq!(
            body, &bodies[0],
            "login failures must not tell which part was wrong"
        );
    }
    // The email is matched case-insensitively, the password exactly.
    let upper_email = login_response(&app, &ADMIN_EMAIL.to_uppercase(), ADMIN_PASSWORD).await;
    assert_eq!(upper_email.status(), StatusCode::OK);
}

#[tokio::test]
async fn login_with_an_unknown_email_takes_about_as_long_as_with_a_wrong_password() {
    let app = spawn_app().await;
    // Warm up connections and caches on both paths.
    login_response(&app, "warm@flowlytix.test", "x-password").await;
    login_response(&app, ADMIN_EMAIL, "x-password").await;
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..7 {
        // Interleaved, so that load from other tests hits both alike.
        let start = Instant::now();
        let response =
            login_response(&app, &format!("nobody{i}@flowlytix.test"), ADMIN_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        response.bytes().await.unwrap();
        unknown.push(start.elapsed());
        let start = Instant::now();
        let response = login_response(&app, ADMIN_EMAIL, &format!("wrong-password-{i}")).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        response.bytes().await.unwrap();
        wrong.push(start.elapsed());
    }
    let (unknown, wrong) = (median(unknown), median(wrong));
    eprintln!("median login failure: unknown email {unknown:?}, wrong password {wrong:?}");
    assert!(
        unknown * 3 > wrong && wrong * 3 > unknown,
        "median login time for an unknown email {unknown:?} vs a wrong password {wrong:?}: \
         the unknown-email path must do the same argon2 work"
    );
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_the_new_one_works() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(1).await;
    let id = text(&subscription, "id");
    let first = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(first["token_type"], "Bearer");
    assert!(first["expires_in"].as_u64().unwrap() > 0);

    let second = refreshed(&app, text(&first, "refresh_token")).await;
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["token_type"], "Bearer");
    assert_access_works(&app, id, text(&second, "access_token")).await;

    let third = refreshed(&app, text(&second, "refresh_token")).await;
    assert_ne!(third["refresh_token"], second["refresh_token"]);
    assert_access_works(&app, id, text(&third, "access_token")).await;

    // An unknown refresh token is simply invalid.
    let response = refresh_response(&app, "not-a-refresh-token").await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;
    assert_access_works(&app, id, text(&third, "access_token")).await;
}

#[tokio::test]
async fn reusing_a_refresh_token_is_refused_and_revokes_its_whole_family() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(1).await;
    let id = text(&subscription, "id");
    let first = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let second = refreshed(&app, text(&first, "refresh_token")).await;
    let third = refreshed(&app, text(&second, "refresh_token")).await;
    assert_access_works(&app, id, text(&third, "access_token")).await;

    // The first refresh token, already used, comes back: it leaked.
    let response = refresh_response(&app, text(&first, "refresh_token")).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;

    // The whole family is revoked: the newest refresh token and every access token fail.
    let response = refresh_response(&app, text(&third, "refresh_token")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert!(
        ["INVALID_REFRESH_TOKEN", "REFRESH_TOKEN_REUSED"].contains(&body["code"].as_str().unwrap()),
        "{body}"
    );
    for tokens in [&first, &second, &third] {
        assert_access_refused(&app, id, text(tokens, "access_token")).await;
    }
    // The middle token, used once already, is reuse too.
    let response = refresh_response(&app, text(&second, "refresh_token")).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;

    // Other sessions of the same admin are untouched; a new login works.
    assert_access_works(&app, id, &app.admin_token).await;
    let again = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_access_works(&app, id, text(&again, "access_token")).await;
}

#[tokio::test]
async fn a_second_use_of_the_same_refresh_token_is_reuse_even_right_after_rotation() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(1).await;
    let id = text(&subscription, "id");
    let first = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let second = refreshed(&app, text(&first, "refresh_token")).await;
    let response = refresh_response(&app, text(&first, "refresh_token")).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;
    let response = refresh_response(&app, text(&second, "refresh_token")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_access_refused(&app, id, text(&second, "access_token")).await;
}

#[tokio::test]
async fn logout_ends_the_session_its_access_and_refresh_tokens_stop_working() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(1).await;
    let id = text(&subscription, "id");
    let session = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let access = text(&session, "access_token");
    assert_access_works(&app, id, access).await;

    let response = app
        .anon(Method::POST, "/api/v1/auth/logout")
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_access_refused(&app, id, access).await;
    let response = refresh_response(&app, text(&session, "refresh_token")).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;
    let response = app
        .anon(Method::POST, "/api/v1/auth/logout")
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_ACCESS_TOKEN").await;
    // Only that session ended.
    assert_access_works(&app, id, &app.admin_token).await;
}

/// Every admin endpoint, with a body where it takes one.
fn admin_endpoints(subscription_id: &str, device_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::GET,
            format!("/api/v1/subscriptions/{subscription_id}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/subscriptions/{subscription_id}/events"),
            None,
        ),
        (Method::GET, format!("/api/v1/devices/{device_id}"), None),
        (
            Method::POST,
            "/api/v1/subscriptions".into(),
            Some(json!({
                "customer_email": "eve@example.com",
                "customer_name": "Eve",
                "plan": "pro",
                "max_devices": 5,
            })),
        ),
        (
            Method::PUT,
            format!("/api/v1/subscriptions/{subscription_id}"),
            Some(json!({"plan": "enterprise"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/subscriptions/{subscription_id}"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/subscriptions/{subscription_id}/license-key"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/devices/{device_id}"),
            Some(json!({"name": "renamed"})),
        ),
        (Method::DELETE, format!("/api/v1/devices/{device_id}"), None),
        (Method::POST, "/api/v1/auth/logout".into(), None),
    ]
}

fn with_body(request: RequestBuilder, body: &Option<Value>) -> RequestBuilder {
    match body {
        Some(body) => request.json(body),
        None => request,
    }
}

/// A subscription with one active device; returns (subscription, device id).
async fn subscription_with_device(app: &TestApp) -> (Value, String) {
    let subscription = app.subscription_with_devices(2).await;
    let key = text(&subscription, "license_key");
    let activated = app.licensing().activate(key, "fp-1").await;
    let device_id = text(&activated.expect_status(StatusCode::CREATED), "device_id").to_owned();
    (subscription, device_id)
}

#[tokio::test]
async fn admin_endpoints_without_a_valid_access_token_are_401() {
    let app = spawn_app().await;
    let (subscription, device_id) = subscription_with_device(&app).await;
    let id = text(&subscription, "id");
    let endpoints = admin_endpoints(id, &device_id);
    for (method, path, body) in &endpoints {
        // No credentials at all, or not a Bearer token.
        let request = with_body(app.anon(method.clone(), path), body);
        assert_refused(&app, request, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
        for authorization in [
            format!("Basic {}", "cm9vdDpwdw=="),
            "Bearer".into(),
            "Bearer   ".into(),
            app.admin_token.clone(),
        ] {
            let request = with_body(app.anon(method.clone(), path), body)
                .header("authorization", authorization);
            assert_refused(&app, request, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
        }
        // Something that is not an access token.
        let garbage = [
            "garbage".to_owned(),
            "a.b.c".to_owned(),
            format!("{}x", app.admin_token),
            app.admin_token[..app.admin_token.len() - 4].to_owned(),
        ];
        for token in garbage {
            let request = with_body(app.anon(method.clone(), path).bearer_auth(token), body);
            assert_refused(
                &app,
                request,
                StatusCode::UNAUTHORIZED,
                "INVALID_ACCESS_TOKEN",
            )
            .await;
        }
    }
    // Unknown random ids are still 401 first, not 404: authentication comes before lookup.
    let request = app.anon(
        Method::GET,
        &format!("/api/v1/subscriptions/{}", Uuid::new_v4()),
    );
    assert_refused(&app, request, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    // Nothing changed.
    let current: Value = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["plan"], "pro");
    assert_eq!(current["active_devices"], 1);
}

#[tokio::test]
async fn an_auditor_can_read_but_every_write_is_403_forbidden_and_writes_nothing() {
    let app = spawn_app().await;
    accounts::create_admin(
        &app.server.admins,
        AUDITOR_EMAIL,
        AUDITOR_PASSWORD,
        Role::Auditor,
        EventMetadata::system(Utc::now()),
    )
    .await
    .expect("create the auditor");
    let (subscription, device_id) = subscription_with_device(&app).await;
    let id = text(&subscription, "id");
    let key = text(&subscription, "license_key");
    let auditor = app.login(AUDITOR_EMAIL, AUDITOR_PASSWORD).await;
    let token = text(&auditor, "access_token");

    // Reads work.
    let response = app
        .anon(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = response.json().await.unwrap();
    assert_eq!(read["id"], subscription["id"]);
    assert!(
        read.get("license_key").is_none(),
        "the key is never shown again: {read}"
    );
    let response = app
        .anon(Method::GET, &format!("/api/v1/subscriptions/{id}/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let history: Value = response.json().await.unwrap();
    assert!(history["items"].as_array().unwrap().len() >= 3, "{history}");
    let response = app
        .anon(Method::GET, &format!("/api/v1/devices/{device_id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Every write is forbidden, and writes nothing.
    let writes: Vec<_> = admin_endpoints(id, &device_id)
        .into_iter()
        .filter(|(method, path, _)| *method != Method::GET && !path.ends_with("/logout"))
        .collect();
    assert_eq!(writes.len(), 6);
    for (method, path, body) in &writes {
        let request = with_body(app.anon(method.clone(), path).bearer_auth(token), body);
        let problem = assert_refused(&app, request, StatusCode::FORBIDDEN, "FORBIDDEN").await;
        assert!(problem.get("license_key").is_none());
    }
    // Forbidden even on ids that do not exist, and for a request that would otherwise be 422.
    let request = app
        .anon(
            Method::DELETE,
            &format!("/api/v1/subscriptions/{}", Uuid::new_v4()),
        )
        .bearer_auth(token);
    assert_refused(&app, request, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let request = app
        .anon(Method::POST, "/api/v1/subscriptions")
        .bearer_auth(token)
        .json(&json!({"customer_email": "x", "customer_name": "", "plan": "?", "max_devices": 0}));
    assert_refused(&app, request, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // The subscription, its key and its device are as they were.
    let after: Value = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["version"], read["version"]);
    assert_eq!(after["plan"], "pro");
    assert_eq!(after["devices"][0]["name"], read["devices"][0]["name"]);
    assert_eq!(app.licensing().verdict(key, "fp-1").await["code"], "VALID");

    // An auditor may log out.
    let response = app
        .anon(Method::POST, "/api/v1/auth/logout")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn admin_tokens_and_license_tokens_are_not_interchangeable() {
    let app = spawn_app().await;
    let (subscription, _) = subscription_with_device(&app).await;
    let id = text(&subscription, "id");
    let key = text(&subscription, "license_key");
    let licensing = app.licensing();
    let activated = licensing.activate(key, "fp-1").await.body;
    let license_token = text(&activated, "token");

    // An admin access token is no license token.
    let verdict = licensing.validate_token(&app.admin_token, "fp-1").await;
    let verdict = verdict.expect_status(StatusCode::OK);
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["code"], "TOKEN_INVALID", "{verdict}");
    let request = licensing.request("refresh", &json!({"token": app.admin_token}));
    assert_refused(&app, request, StatusCode::UNAUTHORIZED, "TOKEN_INVALID").await;
    let body = json!({"token": app.admin_token, "fingerprint": "fp-1"});
    let request = licensing.request("deactivate", &body);
    assert_refused(&app, request, StatusCode::UNAUTHORIZED, "TOKEN_INVALID").await;

    // A license token is no admin access token, on reads and writes alike.
    for (method, path, body) in admin_endpoints(id, text(&activated, "device_id")) {
        let request = with_body(app.anon(method, &path).bearer_auth(license_token), &body);
        assert_refused(
            &app,
            request,
            StatusCode::UNAUTHORIZED,
            "INVALID_ACCESS_TOKEN",
        )
        .await;
    }
    // Nor is a refresh token.
    let session = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let request = app
        .anon(Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .bearer_auth(text(&session, "refresh_token"));
    assert_refused(
        &app,
        request,
        StatusCode::UNAUTHORIZED,
        "INVALID_ACCESS_TOKEN",
    )
    .await;
    // And an access token is no refresh token.
    let response = refresh_response(&app, text(&session, "access_token")).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;
}

#[tokio::test]
async fn the_bearer_scheme_name_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = app
            .anon(Method::GET, "/api/v1/subscriptions")
            .header("authorization", format!("{scheme} {}", app.admin_token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    let response = app
        .anon(Method::GET, "/api/v1/subscriptions")
        .header("authorization", format!("Basic {}", app.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn changing_an_admin_ends_their_sessions_and_disabling_ends_their_sign_ins() {
    let app = spawn_app().await;
    let email = "ops@flowlytix.test";
    let metadata = || EventMetadata::system(Utc::now());
    accounts::create_admin(
        &app.server.admins,
        email,
        "first-password-123",
        Role::Admin,
        metadata(),
    )
    .await
    .unwrap();
    let session = app.login(email, "first-password-123").await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let reads = |token: String| {
        let request = app
            .anon(Method::GET, "/api/v1/subscriptions")
            .bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(reads(token.clone()).await, StatusCode::OK);

    // A new role: the old token (which says "admin") stops working; a new sign-in is an auditor.
    accounts::change_admin(
        &app.server.admins,
        app.server.admin_auth.sessions(),
        email,
        AdminChange::Role(Role::Auditor),
        metadata(),
    )
    .await
    .unwrap();
    assert_eq!(reads(token).await, StatusCode::UNAUTHORIZED);
    let auditor = app.login(email, "first-password-123").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let write = app
        .anon(Method::POST, "/api/v1/subscriptions")
        .bearer_auth(&auditor)
        .json(&json!({"customer_email": "a@b.co", "customer_name": "A", "plan": "pro", "max_devices": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);

    // A new password: the old one fails, the new one works.
    accounts::change_admin(
        &app.server.admins,
        app.server.admin_auth.sessions(),
        email,
        AdminChange::Password("second-password-456".into()),
        metadata(),
    )
    .await
    .unwrap();
    assert_eq!(reads(auditor).await, StatusCode::UNAUTHORIZED);
    let refused = app
        .anon(Method::POST, "/api/v1/auth/login")
        .json(&json!({"email": email, "password": "first-password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let last = app.login(email, "second-password-456").await;

    // Disabled: the session ends, refresh and sign-in fail.
    accounts::change_admin(
        &app.server.admins,
        app.server.admin_auth.sessions(),
        email,
        AdminChange::Disable,
        metadata(),
    )
    .await
    .unwrap();
    assert_eq!(
        reads(last["access_token"].as_str().unwrap().to_owned()).await,
        StatusCode::UNAUTHORIZED
    );
    let refresh = app
        .anon(Method::POST, "/api/v1/auth/refresh")
        .json(&json!({"refresh_token": last["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
    let disabled = app
        .anon(Method::POST, "/api/v1/auth/login")
        .json(&json!({"email": email, "password": "second-password-456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::UNAUTHORIZED);
    let history = app
        .scalar("select count(*) from events where aggregate_type = 'AdminUser'")
        .await;
    assert_eq!(history, 5, "root and ops created, role, password, disabled");
}
