//! Malformed requests are answered with a problem+json 4xx and write nothing: every test
//! here checks the event count before and after each refused request.

use flowlytix_aggregates::license_key::LicenseKey;
use reqwest::header::{CONTENT_TYPE, IF_MATCH};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, assert_refused, spawn_app, TestApp};

/// A well-formed license key that no subscription has.
fn unknown_key() -> String {
    LicenseKey::from_entropy([7u8; 19]).expose().to_owned()
}

/// A key whose last (check) character is wrong.
fn key_with_bad_check_character(key: &str) -> String {
    let (body, check) = key.split_at(key.len() - 1);
    let other = if check == "0" { "1" } else { "0" };
    format!("{body}{other}")
}

/// `body` with one field set.
fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

pub(crate) fn subscription_body() -> Value {
    json!({
        "customer_email": "ann@example.com",
        "customer_name": "Ann Example",
        "plan": "pro",
        "max_devices": 2,
    })
}

/// A subscription with one activated device ("fp-1"); returns (subscription, device id).
pub(crate) async fn subscription_with_a_device(app: &TestApp) -> (Value, String) {
    let subscription = app.subscription_with_devices(2).await;
    let key = subscription["license_key"].as_str().unwrap();
    let response = app.activate(key, "fp-1").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let activated: Value = response.json().await.unwrap();
    (
        subscription,
        activated["device_id"].as_str().unwrap().to_owned(),
    )
}

pub(crate) fn raw_json(request: reqwest::RequestBuilder, body: &str) -> reqwest::RequestBuilder {
    request
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_owned())
}

#[tokio::test]
async fn malformed_json_is_400_malformed_json_and_writes_nothing() {
    let app = spawn_app().await;
    let (subscription, _) = subscription_with_a_device(&app).await;
    let id = subscription["id"].as_str().unwrap();
    // Syntax is judged before shape: a truncated body whose first key is unknown to the
    // endpoint, or whose first value has the wrong type, is still malformed JSON.
    let broken = [
        r#"{"customer_email": "#,
        "{",
        "not json at all",
        r#"{"plan": "pro",}"#,
        r#"{"max_devices": "two", "#,
        r#"{"unknown_field": 1"#,
        r#"{"plan": "pro"} trailing"#,
    ];
    for body in broken {
        let post = app.admin(Method::POST, "/api/v1/subscriptions");
        assert_refused(
            &app,
            raw_json(post, body),
            StatusCode::BAD_REQUEST,
            "MALFORMED_JSON",
        )
        .await;
        let put = app.admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"));
        assert_refused(
            &app,
            raw_json(put, body),
            StatusCode::BAD_REQUEST,
            "MALFORMED_JSON",
        )
        .await;
        for path in [
            "/api/v1/licensing/activate",
            "/api/v1/licensing/validate",
            "/api/v1/licensing/refresh",
            "/api/v1/licensing/deactivate",
            "/api/v1/auth/login",
        ] {
            let request = raw_json(app.anon(Method::POST, path), body);
            assert_refused(&app, request, StatusCode::BAD_REQUEST, "MALFORMED_JSON").await;
        }
    }
}

/// Sends `body` and asserts a 422 INVALID_BODY that wrote nothing; returns the detail.
async fn assert_invalid_body(app: &TestApp, request: RequestBuilder, body: &Value) -> String {
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    let problem = assert_refused(app, request.json(body), status, "INVALID_BODY").await;
    let detail = problem["detail"].as_str().unwrap().to_owned();
    assert!(!detail.is_empty(), "{body}: {problem}");
    detail
}

#[tokio::test]
async fn wrong_field_types_are_422_invalid_body_and_write_nothing() {
    let app = spawn_app().await;
    let (subscription, device_id) = subscription_with_a_device(&app).await;
    let subscription_path = format!(
        "/api/v1/subscriptions/{}",
        subscription["id"].as_str().unwrap()
    );
    let key = subscription["license_key"].as_str().unwrap();
    let mut missing_email = subscription_body();
    missing_email
        .as_object_mut()
        .unwrap()
        .remove("customer_email");
    let create = [
        with(subscription_body(), "max_devices", json!("two")),
        with(subscription_body(), "max_devices", json!(-1)),
        with(subscription_body(), "customer_email", json!(42)),
        with(subscription_body(), "expires_at", json!("next tuesday")),
        with(subscription_body(), "features", json!("export")),
        missing_email,
        json!([subscription_body()]),
    ];
    for body in &create {
        assert_invalid_body(&app, app.admin(Method::POST, "/api/v1/subscriptions"), body).await;
    }
    for body in [json!({"max_devices": true}), json!({"status": "deleted"})] {
        assert_invalid_body(&app, app.admin(Method::PUT, &subscription_path), &body).await;
    }
    let device_path = format!("/api/v1/devices/{device_id}");
    let body = json!({"name": ["x"]});
    assert_invalid_body(&app, app.admin(Method::PUT, &device_path), &body).await;

    let device = json!({"fingerprint": "fp-2"});
    let client = [
        (
            "/api/v1/licensing/activate",
            json!({"license_key": 42, "device": device}),
        ),
        (
            "/api/v1/licensing/activate",
            json!({"license_key": key, "device": "fp-2"}),
        ),
        ("/api/v1/licensing/activate", json!({"license_key": key})),
        (
            "/api/v1/licensing/validate",
            json!({"license_key": key, "fingerprint": 1}),
        ),
        ("/api/v1/licensing/refresh", json!({"token": 12345})),
        (
            "/api/v1/licensing/deactivate",
            json!({"license_key": key, "fingerprint": null}),
        ),
        (
            "/api/v1/auth/login",
            json!({"email": "root@flowlytix.test", "password": 5}),
        ),
    ];
    for (path, body) in &client {
        assert_invalid_body(&app, app.anon(Method::POST, path), body).await;
    }
    // The device is still active after the refused deactivation.
    let still = app
        .validate(json!({"license_key": key, "fingerprint": "fp-1"}))
        .await;
    assert_eq!(still["code"], "VALID");
}

#[tokio::test]
async fn unknown_fields_are_422_invalid_body_and_write_nothing() {
    let app = spawn_app().await;
    let (subscription, device_id) = subscription_with_a_device(&app).await;
    let subscription_path = format!(
        "/api/v1/subscriptions/{}",
        subscription["id"].as_str().unwrap()
    );
    let key = subscription["license_key"].as_str().unwrap();
    let mut requests = vec![
        (
            app.admin(Method::POST, "/api/v1/subscriptions"),
            with(subscription_body(), "status", json!("active")),
        ),
        (
            app.admin(Method::POST, "/api/v1/subscriptions"),
            with(subscription_body(), "license_key", json!(key)),
        ),
        (
            app.admin(Method::PUT, &subscription_path),
            json!({"plan": "enterprise", "version": 3}),
        ),
        (
            app.admin(Method::PUT, &format!("/api/v1/devices/{device_id}")),
            json!({"name": "x", "active": false}),
        ),
    ];
    let extra_device_field = json!({"fingerprint": "fp-2", "max_devices": 99});
    let client = [
        (
            "/api/v1/licensing/activate",
            json!({"license_key": key, "device": extra_device_field}),
        ),
        (
            "/api/v1/licensing/activate",
            json!({"license_key": key, "device": {"fingerprint": "fp-2"}, "plan": "x"}),
        ),
        (
            "/api/v1/licensing/validate",
            json!({"license_key": key, "fingerprint": "fp-1", "force": true}),
        ),
        (
            "/api/v1/licensing/refresh",
            json!({"token": "a.b.c", "ttl": 99999}),
        ),
        (
            "/api/v1/licensing/deactivate",
            json!({"license_key": key, "fingerprint": "fp-1", "why": "x"}),
        ),
        (
            "/api/v1/auth/login",
            json!({"email": "root@flowlytix.test", "password": "x", "role": "admin"}),
        ),
        (
            "/api/v1/auth/refresh",
            json!({"refresh_token": "x", "session": "y"}),
        ),
    ];
    requests.extend(
        client
            .into_iter()
            .map(|(path, body)| (app.anon(Method::POST, path), body)),
    );
    for (request, body) in requests {
        let detail = assert_invalid_body(&app, request, &body).await;
        assert!(detail.contains("unknown field"), "{body}: {detail}");
    }
    let still = app
        .validate(json!({"license_key": key, "fingerprint": "fp-1"}))
        .await;
    assert_eq!(still["code"], "VALID");
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_415_and_writes_nothing() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(2).await;
    let key = subscription["license_key"].as_str().unwrap();
    let activate = json!({"license_key": key, "device": {"fingerprint": "fp-1"}}).to_string();
    let create = subscription_body().to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let with_type = |request: reqwest::RequestBuilder| match content_type {
            Some(t) => request.header(CONTENT_TYPE, t),
            None => request,
        };
        let request =
            with_type(app.anon(Method::POST, "/api/v1/licensing/activate")).body(activate.clone());
        assert_refused(
            &app,
            request,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        )
        .await;
        let request =
            with_type(app.admin(Method::POST, "/api/v1/subscriptions")).body(create.clone());
        assert_refused(
            &app,
            request,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        )
        .await;
    }
    // The same activation with the right content type works: the 415 was the content type.
    assert_eq!(
        app.activate(key, "fp-1").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_413_payload_too_large_and_writes_nothing() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(2).await;
    let key = subscription["license_key"].as_str().unwrap();
    let limit = 64 * 1024;
    // Valid JSON, wrong only in size.
    let mut create = subscription_body();
    create["metadata"] = json!({"note": "x".repeat(limit + 1024)});
    let request = app
        .admin(Method::POST, "/api/v1/subscriptions")
        .json(&create);
    assert_refused(
        &app,
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    let long_name = "n".repeat(limit + 1);
    let activate =
        json!({"license_key": key, "device": {"fingerprint": "fp-1", "name": long_name}});
    let request = app
        .anon(Method::POST, "/api/v1/licensing/activate")
        .json(&activate);
    assert_refused(
        &app,
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    let login = json!({"email": "root@flowlytix.test", "password": "p".repeat(limit + 100)});
    let request = app.anon(Method::POST, "/api/v1/auth/login").json(&login);
    assert_refused(
        &app,
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;

    // Just under the limit the body is read and judged on its content instead.
    let under = json!({"license_key": "K".repeat(limit - 200), "device": {"fingerprint": "fp-1"}});
    let request = app
        .anon(Method::POST, "/api/v1/licensing/activate")
        .json(&under);
    assert_refused(
        &app,
        request,
        StatusCode::UNPROCESSABLE_ENTITY,
        "LICENSE_KEY_MALFORMED",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_uuid_in_the_path_is_400_invalid_path_and_writes_nothing() {
    let app = spawn_app().await;
    subscription_with_a_device(&app).await;
    for bad in [
        "not-a-uuid",
        "123",
        "00000000-0000-0000-0000-00000000000g",
        "%27%20or%201%3D1",
    ] {
        let cases: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/api/v1/subscriptions/{bad}"), None),
            (
                Method::PUT,
                format!("/api/v1/subscriptions/{bad}"),
                Some(json!({"plan": "enterprise"})),
            ),
            (Method::DELETE, format!("/api/v1/subscriptions/{bad}"), None),
            (
                Method::POST,
                format!("/api/v1/subscriptions/{bad}/license-key"),
                None,
            ),
            (
                Method::GET,
                format!("/api/v1/subscriptions/{bad}/events"),
                None,
            ),
            (Method::GET, format!("/api/v1/devices/{bad}"), None),
            (
                Method::PUT,
                format!("/api/v1/devices/{bad}"),
                Some(json!({"name": "x"})),
            ),
            (Method::DELETE, format!("/api/v1/devices/{bad}"), None),
        ];
        for (method, path, body) in cases {
            let mut request = app.admin(method, &path);
            if let Some(body) = body {
                request = request.json(&body);
            }
            assert_refused(&app, request, StatusCode::BAD_REQUEST, "INVALID_PATH").await;
        }
    }
}

#[tokio::test]
async fn a_license_key_with_a_bad_check_character_or_shape_is_422_license_key_malformed() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(2).await;
    let key = subscription["license_key"].as_str().unwrap();
    assert_eq!(
        app.activate(key, "fp-1").await.status(),
        StatusCode::CREATED
    );
    let mut mistyped_symbol = key.to_owned();
    let symbol = mistyped_symbol.as_bytes()[4];
    let replacement = if symbol == b'A' { "B" } else { "A" };
    mistyped_symbol.replace_range(4..5, replacement);
    let bad_keys = [
        key_with_bad_check_character(key),
        key_with_bad_check_character(&unknown_key()),
        mistyped_symbol,
        key[..key.len() - 2].to_owned(),
        format!("{key}-X"),
        key.replacen("FLX", "ABC", 1),
        "FLX-12345".to_owned(),
        "not a key".to_owned(),
        String::new(),
        "FLX-UUUUU-UUUUU-UUUUU-UUUUU-UUUUU-UUUUU-0".to_owned(),
        "FLX-".repeat(40),
    ];
    for bad in &bad_keys {
        let activate = json!({"license_key": bad, "device": {"fingerprint": "fp-2"}});
        let request = app
            .anon(Method::POST, "/api/v1/licensing/activate")
            .json(&activate);
        let problem = assert_refused(
            &app,
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "LICENSE_KEY_MALFORMED",
        )
        .await;
        if !bad.is_empty() {
            assert!(
                !problem.to_string().contains(bad.as_str()),
                "the problem echoes the key: {problem}"
            );
        }
        for path in ["/api/v1/licensing/validate", "/api/v1/licensing/deactivate"] {
            let body = json!({"license_key": bad, "fingerprint": "fp-1"});
            let request = app.anon(Method::POST, path).json(&body);
            assert_refused(
                &app,
                request,
                StatusCode::UNPROCESSABLE_ENTITY,
                "LICENSE_KEY_MALFORMED",
            )
            .await;
        }
    }
    // The device is still active: the refused deactivations did nothing.
    let still = app
        .validate(json!({"license_key": key, "fingerprint": "fp-1"}))
        .await;
    assert_eq!(still["code"], "VALID");
}

#[tokio::test]
async fn validate_and_deactivate_need_exactly_one_of_license_key_and_token() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(2).await;
    let key = subscription["license_key"].as_str().unwrap();
    let activated: Value = app.activate(key, "fp-1").await.json().await.unwrap();
    let token = activated["token"].as_str().unwrap();
    for path in ["/api/v1/licensing/validate", "/api/v1/licensing/deactivate"] {
        for body in [
            json!({"license_key": key, "token": token, "fingerprint": "fp-1"}),
            json!({"fingerprint": "fp-1"}),
            json!({"license_key": null, "token": null, "fingerprint": "fp-1"}),
        ] {
            let request = app.anon(Method::POST, path).json(&body);
            assert_refused(
                &app,
                request,
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
            )
            .await;
        }
        // An empty or oversized fingerprint is refused the same way.
        for fingerprint in [String::new(), "   ".to_owned(), "f".repeat(513)] {
            let body = json!({"license_key": key, "fingerprint": fingerprint});
            let request = app.anon(Method::POST, path).json(&body);
            assert_refused(
                &app,
                request,
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
            )
            .await;
        }
    }
    let still = app
        .validate(json!({"token": token, "fingerprint": "fp-1"}))
        .await;
    assert_eq!(still["code"], "VALID");
}

#[tokio::test]
async fn create_refuses_a_bad_email_plan_or_device_limit_with_422_and_a_code() {
    let app = spawn_app().await;
    let with = |field: &str, value: Value| with(subscription_body(), field, value);
    let cases = [
        (
            with("customer_email", json!("not-an-email")),
            "VALIDATION_FAILED",
        ),
        (with("customer_email", json!("")), "VALIDATION_FAILED"),
        (with("customer_email", json!("a@")), "VALIDATION_FAILED"),
        (with("plan", json!("")), "VALIDATION_FAILED"),
        (with("plan", json!("Pro Plan!")), "VALIDATION_FAILED"),
        (with("plan", json!("p".repeat(65))), "VALIDATION_FAILED"),
        (
            with("features", json!(["ok", "Not OK!"])),
            "VALIDATION_FAILED",
        ),
        (with("max_devices", json!(0)), "INVALID_DEVICE_LIMIT"),
        (
            with("max_devices", json!(1_000_000)),
            "INVALID_DEVICE_LIMIT",
        ),
    ];
    for (body, code) in cases {
        let request = app.admin(Method::POST, "/api/v1/subscriptions").json(&body);
        let problem = assert_refused(&app, request, StatusCode::UNPROCESSABLE_ENTITY, code).await;
        assert!(
            !problem["detail"].as_str().unwrap().is_empty(),
            "{body}: {problem}"
        );
    }
    // The same body with the fields fixed is accepted.
    app.create_subscription(subscription_body()).await;
}

#[tokio::test]
async fn a_bad_if_match_is_400_invalid_if_match_and_writes_nothing() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(2).await;
    let id = subscription["id"].as_str().unwrap();
    let path = format!("/api/v1/subscriptions/{id}");
    // The last ones were accepted before the fuzzing run held the server to its documented
    // pattern (`3`, `"3"` or `W/"3"`): `null`, stray quotes, a sign.
    for if_match in [
        "abc",
        "\"abc\"",
        "W/\"x\"",
        "-1",
        "1.5",
        "\"1\", \"2\"",
        "",
        "null",
        "\"\"1\"\"",
        "\"1",
        "+1",
        "W/1",
        "12345678901234567890",
    ] {
        let request = app
            .admin(Method::PUT, &path)
            .header(IF_MATCH, if_match)
            .json(&json!({"plan": "enterprise"}));
        assert_refused(&app, request, StatusCode::BAD_REQUEST, "INVALID_IF_MATCH").await;
        let request = app.admin(Method::DELETE, &path).header(IF_MATCH, if_match);
        assert_refused(&app, request, StatusCode::BAD_REQUEST, "INVALID_IF_MATCH").await;
    }
    let current: Value = app
        .admin(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["plan"], "pro");
    assert_eq!(current["version"], subscription["version"]);
}

#[tokio::test]
async fn the_public_endpoints_are_rate_limited_per_address_with_a_problem_and_retry_after() {
    let app = crate::helpers::spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "5")]).await;
    // The login in spawn_app spent the sign-in budget, not this one.
    for _ in 0..5 {
        let answer = app
            .validate(json!({"license_key": "FLX-00000-00000-00000-00000-00000-00000-0", "fingerprint": "fp"}))
            .await;
        assert_eq!(answer["code"], "NOT_FOUND");
    }
    let response = app
        .anon(Method::POST, "/api/v1/licensing/validate")
        .json(&json!({"license_key": "FLX-00000-00000-00000-00000-00000-00000-0", "fingerprint": "fp"}))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // Admin endpoints need a token and are not limited this way.
    for _ in 0..10 {
        let response = app
            .admin(Method::GET, "/api/v1/subscriptions")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// The verification key is public and cacheable: a client (or a cache in front of many)
/// that used up the licensing budget can still fetch it.
#[tokio::test]
async fn the_verification_keys_answer_outside_the_licensing_budget_and_are_cacheable() {
    let app = crate::helpers::spawn_app_with(&[("RATE_LIMIT_LICENSING_PER_MINUTE", "3")]).await;
    let unknown =
        json!({"license_key": "FLX-00000-00000-00000-00000-00000-00000-0", "fingerprint": "fp"});
    let mut spent = false;
    for _ in 0..10 {
        let response = app
            .anon(Method::POST, "/api/v1/licensing/validate")
            .json(&unknown)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            spent = true;
            break;
        }
    }
    assert!(spent, "the licensing budget of 3 was never used up");
    for path in ["/.well-known/jwks.json", "/api/v1/licensing/public-key"] {
        for _ in 0..5 {
            let response = app.anon(Method::GET, path).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                response.headers()["cache-control"],
                "public, max-age=300",
                "{path}"
            );
        }
    }
}
