//! What no store can give back exactly is refused at the door, alike on both backends, and
//! writes nothing: numbers PostgreSQL's `numeric` and serde_json read back differently, NUL
//! in any text, nesting too deep, list filters no store can hold, instants and analytics
//! days outside 1970–9999. (Issue 9, points 1 and 3; found by fuzzing and probes.)

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::bad_input::{raw_json, subscription_body, subscription_with_a_device};
use crate::helpers::{assert_problem, assert_refused, spawn_app, TestApp};

/// Every request of the store still answers after the refusals: the subscription reads back
/// and the lists and the feed work.
async fn store_still_answers(app: &TestApp, id: &str) {
    let api = app.api();
    api.get(&format!("/api/v1/subscriptions/{id}")).await;
    api.get("/api/v1/subscriptions").await;
    api.get(&format!("/api/v1/subscriptions/{id}/events")).await;
    api.get("/api/v1/events").await;
}

#[tokio::test]
async fn numbers_the_store_cannot_give_back_exactly_are_422_and_write_nothing() {
    let app = spawn_app().await;
    let (subscription, _) = subscription_with_a_device(&app).await;
    let id = subscription["id"].as_str().unwrap();
    let path = format!("/api/v1/subscriptions/{id}");
    // 1.797…e308 answered 201 and then poisoned the store on PostgreSQL (issue 9).
    for number in [
        "1.7976931348623157e308",
        "-1.7976931348623157e308",
        "1e300",
        "1e15",
        "123456789012345678901234567890",
    ] {
        for metadata in [
            format!(r#"{{"a": {number}}}"#),
            format!(r#"{{"a": {{"b": [1, {number}]}}}}"#),
        ] {
            let create = format!(
                r#"{{"customer_email": "a@example.com", "customer_name": "A", "plan": "pro", "max_devices": 1, "metadata": {metadata}}}"#
            );
            let post = raw_json(app.admin(Method::POST, "/api/v1/subscriptions"), &create);
            let problem =
                assert_refused(&app, post, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
            assert!(
                problem["detail"].as_str().unwrap().contains("metadata.a"),
                "{problem}"
            );
            let put = raw_json(
                app.admin(Method::PUT, &path),
                &format!(r#"{{"metadata": {metadata}}}"#),
            );
            assert_refused(&app, put, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY").await;
        }
    }
    // What both stores keep exactly is accepted and reads back the same, as sent.
    let kept = json!({"int": 9_007_199_254_740_993_u64, "neg": i64::MIN, "max": u64::MAX,
        "dec": 0.1, "tiny": 1.5e-7, "big": 99_999_999_999_999.9, "frac": 123_456_789.125, "list": [1, 2.5, null, true, "x"]});
    let response = app
        .admin(Method::PUT, &path)
        .json(&json!({"metadata": kept}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let read = app.api().get(&path).await;
    assert_eq!(read["metadata"], kept);
    app.wait_for_read_models().await;
    let listed = app.api().get("/api/v1/subscriptions").await;
    let row = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(row["metadata"], kept);
    store_still_answers(&app, id).await;
}

#[tokio::test]
async fn nul_in_any_text_field_is_422_and_writes_nothing() {
    let app = spawn_app().await;
    let (subscription, device_id) = subscription_with_a_device(&app).await;
    let id = subscription["id"].as_str().unwrap();
    let key = subscription["license_key"].as_str().unwrap();
    let nul = "a\u{0}b";
    let with = |field: &str, value: Value| {
        let mut body = subscription_body();
        body[field] = value;
        body
    };
    let creates = [
        with("customer_name", json!(nul)),
        with("customer_email", json!("a\u{0}@example.com")),
        with("organization", json!(nul)),
        with("plan", json!(nul)),
        with("features", json!(["export", nul])),
        with("metadata", json!({"k": nul})),
        with("metadata", json!({"k\u{0}": 1})),
        with("metadata", json!({"k": [{"deep": nul}]})),
    ];
    for body in &creates {
        let request = app.admin(Method::POST, "/api/v1/subscriptions").json(body);
        assert_refused(
            &app,
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_BODY",
        )
        .await;
    }
    let path = format!("/api/v1/subscriptions/{id}");
    let updates = [
        json!({"customer_name": nul}),
        json!({"organization": nul}),
        json!({"status": "suspended", "reason": nul}),
        json!({"status": "canceled", "reason": nul}),
        json!({"metadata": {"k": nul}}),
    ];
    for body in &updates {
        let request = app.admin(Method::PUT, &path).json(body);
        assert_refused(
            &app,
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_BODY",
        )
        .await;
    }
    // A reason without a suspension or cancellation would be dropped unseen.
    for body in [
        json!({"reason": "why"}),
        json!({"status": "active", "reason": "x"}),
    ] {
        let request = app.admin(Method::PUT, &path).json(&body);
        assert_refused(
            &app,
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let device_path = format!("/api/v1/devices/{device_id}");
    for body in [json!({"name": nul}), json!({"notes": nul})] {
        let request = app.admin(Method::PUT, &device_path).json(&body);
        assert_refused(
            &app,
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_BODY",
        )
        .await;
    }
    let device = |field: &str| {
        let mut device = json!({"fingerprint": "fp-2"});
        device[field] = json!(nul);
        json!({"license_key": key, "device": device})
    };
    let client = [
        ("/api/v1/licensing/activate", device("fingerprint")),
        ("/api/v1/licensing/activate", device("name")),
        ("/api/v1/licensing/activate", device("platform")),
        ("/api/v1/licensing/activate", device("os_version")),
        ("/api/v1/licensing/activate", device("app_version")),
        ("/api/v1/licensing/activate", device("hostname")),
        (
            "/api/v1/licensing/activate",
            json!({"license_key": format!("{key}\u{0}"), "device": {"fingerprint": "fp-2"}}),
        ),
        (
            "/api/v1/licensing/validate",
            json!({"license_key": key, "fingerprint": "fp-1\u{0}"}),
        ),
        (
            "/api/v1/licensing/validate",
            json!({"token": nul, "fingerprint": "fp-1"}),
        ),
        (
            "/api/v1/licensing/deactivate",
            json!({"license_key": key, "fingerprint": "fp-1\u{0}"}),
        ),
        ("/api/v1/licensing/refresh", json!({"token": nul})),
        (
            "/api/v1/auth/login",
            json!({"email": "root@flowlytix.test\u{0}", "password": "x"}),
        ),
    ];
    for (path, body) in &client {
        let request = app.anon(Method::POST, path).json(body);
        assert_refused(
            &app,
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_BODY",
        )
        .await;
    }
    // The device is still there and active.
    let still = app
        .validate(json!({"license_key": key, "fingerprint": "fp-1"}))
        .await;
    assert_eq!(still["code"], "VALID");
    store_still_answers(&app, id).await;
}

#[tokio::test]
async fn metadata_nested_deeper_than_the_limit_is_422_and_writes_nothing() {
    let app = spawn_app().await;
    let nested = |levels: usize| {
        let mut value = json!("leaf");
        for _ in 0..levels {
            value = json!({ "n": value });
        }
        value
    };
    // The body is level 1 and `metadata` level 2: 8 levels below it fit, 9 do not.
    let mut deep = subscription_body();
    deep["metadata"] = nested(10);
    let request = app.admin(Method::POST, "/api/v1/subscriptions").json(&deep);
    let problem = assert_refused(
        &app,
        request,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_BODY",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("deeper"));
    let mut fits = subscription_body();
    fits["metadata"] = nested(9);
    let created = app.create_subscription(fits.clone()).await;
    assert_eq!(created["metadata"], fits["metadata"]);
}

#[tokio::test]
async fn list_filters_no_store_can_hold_are_400_not_500_nor_everything() {
    let app = spawn_app().await;
    let (subscription, _) = subscription_with_a_device(&app).await;
    app.wait_for_read_models().await;
    // `q=%00abc` matched every row on SQLite and answered 500 on PostgreSQL (issue 9).
    let refused = [
        "/api/v1/subscriptions?q=%00",
        "/api/v1/subscriptions?q=%00abc",
        "/api/v1/subscriptions?status=%00",
        "/api/v1/subscriptions?plan=%00",
        "/api/v1/subscriptions?status=deleted",
        "/api/v1/subscriptions?plan=Not%20A%20Plan",
        "/api/v1/subscriptions?sort=",
        "/api/v1/devices?q=%00",
        "/api/v1/devices?platform=%00",
        "/api/v1/devices?status=%00",
        "/api/v1/devices?status=gone",
        "/api/v1/events?aggregate_type=%00",
        "/api/v1/events?event_type=a%00",
    ];
    for path in refused {
        let request = app.admin(Method::GET, path);
        assert_refused(&app, request, StatusCode::BAD_REQUEST, "INVALID_QUERY").await;
    }
    // `%25` is a literal percent sign: a filter like any other.
    let listed = app.api().get("/api/v1/subscriptions?q=%2500").await;
    assert_eq!(listed["total"], 0);
    // Instants outside the stores' range count as the nearest end of it.
    for before in ["0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z"] {
        let listed = app
            .api()
            .get_query(
                "/api/v1/subscriptions",
                &[("expiring_before", before.into())],
            )
            .await;
        assert_eq!(listed["total"], 0, "{before}");
    }
    let listed = app
        .api()
        .get_query(
            "/api/v1/subscriptions",
            &[("status", "active".into()), ("plan", "pro".into())],
        )
        .await;
    assert_eq!(listed["items"][0]["id"], subscription["id"]);
}

#[tokio::test]
async fn instants_outside_1970_to_9999_are_422_invalid_period_and_write_nothing() {
    let app = spawn_app().await;
    let existing = app.create_subscription(subscription_body()).await;
    let path = format!("/api/v1/subscriptions/{}", existing["id"].as_str().unwrap());
    for (field, instant) in [
        ("starts_at", "1969-12-31T23:59:59Z"),
        ("starts_at", "0001-01-01T00:00:00Z"),
        ("expires_at", "0001-01-01T00:00:00Z"),
        ("trial_ends_at", "1000-01-01T00:00:00Z"),
    ] {
        let mut body = subscription_body();
        body[field] = json!(instant);
        let request = app.admin(Method::POST, "/api/v1/subscriptions").json(&body);
        assert_refused(
            &app,
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_PERIOD",
        )
        .await;
        let request = app
            .admin(Method::PUT, &path)
            .json(&json!({ field: instant }));
        assert_refused(
            &app,
            request,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_PERIOD",
        )
        .await;
    }
    // Past 9999 too (chrono reads a signed year of five digits).
    let mut body = subscription_body();
    body["expires_at"] = json!("+10000-01-01T00:00:00Z");
    let request = app.admin(Method::POST, "/api/v1/subscriptions").json(&body);
    assert_refused(
        &app,
        request,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_PERIOD",
    )
    .await;
    // The ends of the range are fine.
    let mut body = subscription_body();
    body["starts_at"] = json!("1970-01-01T00:00:00Z");
    body["expires_at"] = json!("9999-12-31T23:59:59Z");
    let created = app.create_subscription(body).await;
    assert_eq!(created["expires_at"], "9999-12-31T23:59:59Z");
    app.wait_for_read_models().await;
}

#[tokio::test]
async fn analytics_days_outside_1970_to_9999_are_422_never_a_panic_or_500() {
    let app = spawn_app().await;
    app.create_subscription(subscription_body()).await;
    for endpoint in ["dashboard", "subscriptions", "devices"] {
        let path = format!("/api/v1/analytics/{endpoint}");
        // These panicked (a dropped connection) or answered 500 on PostgreSQL (issue 9).
        for query in [
            "to=-262143-01-01",
            "to=%2B262142-12-31",
            "to=-4800-01-01",
            "from=-4800-01-01&to=-4800-01-02",
            "from=1969-12-31&to=1970-01-01",
            "to=10000-01-01",
            "from=%2B262142-12-30&to=%2B262142-12-31",
        ] {
            let response = app
                .admin(Method::GET, &format!("{path}?{query}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}?{query}: no answer: {e}"));
            let status = response.status();
            assert!(
                status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
                "{path}?{query}: {status}"
            );
            let code = if status == StatusCode::BAD_REQUEST {
                "INVALID_QUERY"
            } else {
                "VALIDATION_FAILED"
            };
            assert_problem(response, status, code).await;
        }
        // A day is YYYY-MM-DD exactly, as documented (chrono alone also took these).
        for query in ["to=2024-1-5", "to=%2B2024-01-05", "from=02024-01-05"] {
            let response = app
                .admin(Method::GET, &format!("{path}?{query}"))
                .send()
                .await
                .unwrap();
            assert_problem(response, StatusCode::BAD_REQUEST, "INVALID_QUERY").await;
        }
        // The ends of the range work, and `from` defaults within it.
        for query in [
            "to=1970-01-05",
            "from=9999-12-01&to=9999-12-31",
            "from=1970-01-01&to=1970-01-01",
        ] {
            let answer = app.api().get(&format!("{path}?{query}")).await;
            assert!(answer["daily"].as_array().is_some_and(|d| !d.is_empty()));
        }
        let answer = app.api().get(&format!("{path}?to=1970-01-05")).await;
        assert_eq!(answer["from"], "1970-01-01");
    }
}
