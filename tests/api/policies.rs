//! Subscriptions that follow a policy: the policy's terms in every answer, overrides, a
//! policy change that applies at once without an event per subscription, grace, a period
//! from the first activation, scoped validation and the token's claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Months, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{count_events_of_type, spawn_app, with_fields, ApiClient, TestApp};

/// A product `app`, entitlements `export`, `sync` and `admin`, and a policy `app/pro`:
/// yearly, 3 seats, export and sync, 14 days of grace, with `settings` on top.
async fn catalogue(api: &ApiClient, settings: Value) -> Value {
    let product = api
        .create_at("/api/v1/products", json!({"name": "App", "code": "app"}))
        .await;
    for code in ["export", "sync", "admin"] {
        api.create_at("/api/v1/entitlements", json!({"code": code, "name": code}))
            .await;
    }
    let policy = json!({
        "product_id": product["id"],
        "name": "Pro",
        "code": "pro",
        "max_devices": 3,
        "duration": "P1Y",
        "expiration_strategy": "allow_grace",
        "grace_period": "P14D",
        "entitlements": ["export", "sync"],
    });
    api.create_at("/api/v1/policies", with_fields(policy, &settings))
        .await
}

async fn follower(api: &ApiClient, policy: &str, extra: Value) -> Value {
    let body = json!({
        "customer_email": "ann@example.com",
        "customer_name": "Ann Example",
        "policy": policy,
    });
    api.create(with_fields(body, &extra)).await
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("an instant, not {value}"))
        .parse()
        .unwrap()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn put_policy(api: &ApiClient, id: &Value, body: Value) -> Value {
    let path = format!("/api/v1/policies/{}", id.as_str().unwrap());
    let response = api
        .admin(Method::PUT, &path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "PUT {path}: {body}");
    body
}

#[tokio::test]
async fn a_subscription_takes_its_terms_from_its_policy() {
    let app = spawn_app().await;
    let api = app.api();
    let policy = catalogue(&api, json!({})).await;
    let subscription = follower(&api, "app/pro", json!({"features": ["admin"]})).await;

    assert_eq!(subscription["policy_id"], policy["id"]);
    assert_eq!(subscription["product_code"], "app");
    assert_eq!(subscription["policy_code"], "pro");
    assert_eq!(subscription["plan"], "pro", "plan is the policy's code");
    assert_eq!(subscription["max_devices"], 3);
    assert_eq!(
        subscription["entitlements"],
        json!(["admin", "export", "sync"])
    );
    assert_eq!(subscription["features"], subscription["entitlements"]);
    assert_eq!(subscription["overrides"], json!([]));
    assert_eq!(subscription["status"], "active");
    assert_eq!(subscription["in_grace"], false);
    let starts_at = instant(&subscription["starts_at"]);
    assert_eq!(
        instant(&subscription["expires_at"]),
        starts_at.checked_add_months(Months::new(12)).unwrap(),
        "P1Y from creation"
    );

    // The plan and limit sent back unchanged (as the panel's edit form does) change nothing
    // and override nothing.
    let id = subscription["id"].as_str().unwrap();
    let saved = api.put(id, json!({"plan": "pro", "max_devices": 3})).await;
    assert_eq!(saved["overrides"], json!([]));
    assert_eq!(saved["version"], subscription["version"]);

    // By id too, and the list shows the same terms.
    let by_id = follower(&api, policy["id"].as_str().unwrap(), json!({})).await;
    assert_eq!(by_id["policy_code"], "pro");
    app.wait_for_read_models().await;
    let listed = api
        .get_query("/api/v1/subscriptions", &[("policy", "app/pro".into())])
        .await;
    assert_eq!(listed["total"], 2);
    for item in listed["items"].as_array().unwrap() {
        assert_eq!(item["product_code"], "app");
        assert_eq!(item["max_devices"], 3);
    }
    let other_product = api
        .get_query("/api/v1/subscriptions", &[("product", "other".into())])
        .await;
    assert_eq!(other_product["total"], 0);
}

#[tokio::test]
async fn fields_sent_with_a_policy_override_it_for_that_subscription() {
    let app = spawn_app().await;
    let api = app.api();
    catalogue(&api, json!({})).await;
    let expires_at = (Utc::now() + Duration::days(40)).to_rfc3339();
    let subscription = follower(
        &api,
        "app/pro",
        json!({"max_devices": 5, "expires_at": expires_at}),
    )
    .await;
    assert_eq!(subscription["max_devices"], 5);
    assert_eq!(
        subscription["overrides"],
        json!(["expires_at", "max_devices"])
    );
    assert_eq!(
        instant(&subscription["expires_at"]),
        instant(&json!(expires_at))
    );

    // A plan that is not the policy's code, an unknown policy, a custom one without a plan.
    for (body, code) in [
        (
            json!({"customer_email": "a@example.com", "customer_name": "A", "policy": "app/pro", "plan": "team"}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"customer_email": "a@example.com", "customer_name": "A", "policy": "app/nope"}),
            "POLICY_NOT_FOUND",
        ),
        (
            json!({"customer_email": "a@example.com", "customer_name": "A", "max_devices": 1}),
            "VALIDATION_FAILED",
        ),
    ] {
        let before = app.event_count().await;
        let response = api
            .admin(Method::POST, "/api/v1/subscriptions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(app.event_count().await, before, "nothing written");
    }
}

#[tokio::test]
async fn a_policy_change_applies_at_once_to_every_follower_without_an_override() {
    let app = spawn_app().await;
    let api = app.api();
    let policy = catalogue(&api, json!({})).await;
    let following = follower(&api, "app/pro", json!({})).await;
    let overriding = follower(&api, "app/pro", json!({"max_devices": 3})).await;
    let key = following["license_key"].as_str().unwrap();
    let licensing = api.licensing();
    licensing
        .activate(key, "one")
        .await
        .expect_status(StatusCode::CREATED);
    let subscription_events = count_events_of_type(&app, "SubscriptionDeviceLimitChanged").await;

    put_policy(
        &api,
        &policy["id"],
        json!({"max_devices": 1, "entitlements": ["export"]}),
    )
    .await;

    // No event per subscription: the policy's own event carries the change.
    assert_eq!(
        count_events_of_type(&app, "SubscriptionDeviceLimitChanged").await,
        subscription_events
    );
    assert_eq!(count_events_of_type(&app, "PolicyUpdated").await, 1);
    licensing
        .activate(key, "two")
        .await
        .problem(StatusCode::CONFLICT, "DEVICE_LIMIT_REACHED");
    let verdict = licensing.verdict(key, "one").await;
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["license"]["max_devices"], 1);
    assert_eq!(verdict["license"]["entitlements"], json!(["export"]));
    let view = api
        .get(&format!(
            "/api/v1/subscriptions/{}",
            following["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(view["max_devices"], 1);
    assert_eq!(view["features"], json!(["export"]));
    let kept = api
        .get(&format!(
            "/api/v1/subscriptions/{}",
            overriding["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(kept["max_devices"], 3, "its own limit stays");
    assert_eq!(kept["entitlements"], json!(["export"]));

    // The activation records which version of the policy admitted it.
    let history = api
        .get(&format!(
            "/api/v1/subscriptions/{}/events",
            following["id"].as_str().unwrap()
        ))
        .await;
    let activated = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "DeviceActivated")
        .unwrap();
    assert_eq!(activated["payload"]["policy_version"], 1, "{activated}");
}

#[tokio::test]
async fn an_expired_license_validates_within_its_policy_s_grace_and_not_after() {
    let app = spawn_app().await;
    let api = app.api();
    let pro = catalogue(&api, json!({})).await;
    api.create_at(
        "/api/v1/policies",
        json!({"product_id": pro["product_id"], "name": "Strict", "code": "strict",
               "max_devices": 2, "expiration_strategy": "restrict"}),
    )
    .await;
    let period = |days_ago: i64| {
        json!({
            "starts_at": (Utc::now() - Duration::days(60)).to_rfc3339(),
            "expires_at": (Utc::now() - Duration::days(days_ago)).to_rfc3339(),
        })
    };
    let in_grace = follower(&api, "app/pro", period(1)).await;
    let past_grace = follower(&api, "app/pro", period(20)).await;
    let strict = follower(&api, "app/strict", period(1)).await;
    let licensing = api.licensing();
    let key = in_grace["license_key"].as_str().unwrap();

    // Activation and its token work in grace; the token ends with the grace.
    let issued = licensing
        .activate(key, "laptop")
        .await
        .expect_status(StatusCode::CREATED);
    let grace_until = instant(&in_grace["expires_at"]) + Duration::days(14);
    let token_expires_at = instant(&issued["token_expires_at"]);
    assert!(
        token_expires_at <= grace_until,
        "{token_expires_at} after {grace_until}"
    );
    let claims = claims(issued["token"].as_str().unwrap());
    assert_eq!(claims["grace_until"], grace_until.timestamp());
    assert!(claims["exp"].as_i64().unwrap() <= grace_until.timestamp());

    let verdict = licensing.verdict(key, "laptop").await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["code"], "VALID");
    assert_eq!(instant(&verdict["grace_until"]), grace_until);
    assert_eq!(in_grace["in_grace"], true);
    assert_eq!(in_grace["status"], "expired");

    for (subscription, fingerprint) in [(&past_grace, "desk"), (&strict, "desk")] {
        let key = subscription["license_key"].as_str().unwrap();
        licensing
            .activate(key, fingerprint)
            .await
            .problem(StatusCode::FORBIDDEN, "LICENSE_EXPIRED");
        let verdict = licensing.verdict(key, fingerprint).await;
        assert_eq!(verdict["code"], "EXPIRED", "{verdict}");
        assert_eq!(verdict["grace_until"], Value::Null);
    }

    // Lists show it as expired, in grace.
    app.wait_for_read_models().await;
    let listed = api
        .get_query("/api/v1/subscriptions", &[("status", "expired".into())])
        .await;
    let row = |id: &Value| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["id"] == *id)
            .cloned()
            .unwrap()
    };
    assert_eq!(row(&in_grace["id"])["in_grace"], true);
    assert_eq!(row(&past_grace["id"])["in_grace"], false);
    assert_eq!(row(&strict["id"])["in_grace"], false);
    let dashboard = api.get("/api/v1/analytics/dashboard").await;
    assert_eq!(dashboard["subscriptions_in_grace"], 1, "{dashboard}");
    assert_eq!(dashboard["subscriptions_by_policy"]["app/pro"], 2);
    assert_eq!(dashboard["subscriptions_by_policy"]["app/strict"], 1);
    assert_eq!(dashboard["subscriptions_by_product"]["app"], 3);
}

#[tokio::test]
async fn the_first_activation_starts_a_period_that_runs_from_it() {
    let app = spawn_app().await;
    let api = app.api();
    catalogue(
        &api,
        json!({"duration": "P30D", "expiration_basis": "from_first_activation"}),
    )
    .await;
    let subscription = follower(&api, "app/pro", json!({})).await;
    assert_eq!(subscription["expires_at"], Value::Null, "not started yet");
    let key = subscription["license_key"].as_str().unwrap();
    let before = Utc::now();
    api.licensing()
        .activate(key, "laptop")
        .await
        .expect_status(StatusCode::CREATED);
    let after = Utc::now();
    api.licensing()
        .activate(key, "desk")
        .await
        .expect_status(StatusCode::CREATED);
    let view = api
        .get(&format!(
            "/api/v1/subscriptions/{}",
            subscription["id"].as_str().unwrap()
        ))
        .await;
    let expires_at = instant(&view["expires_at"]);
    assert!(
        expires_at >= before + Duration::days(30) && expires_at <= after + Duration::days(30),
        "{expires_at}"
    );
    assert_eq!(
        count_events_of_type(&app, "SubscriptionPeriodStarted").await,
        1,
        "only the first activation starts it"
    );
}

#[tokio::test]
async fn scoped_validation_refuses_another_product_policy_or_missing_entitlements() {
    let app = spawn_app().await;
    let api = app.api();
    catalogue(&api, json!({})).await;
    let subscription = follower(&api, "app/pro", json!({})).await;
    let custom = api
        .create(
            json!({"customer_email": "c@example.com", "customer_name": "C",
                       "plan": "pro", "max_devices": 2, "features": ["export"]}),
        )
        .await;
    let key = subscription["license_key"].as_str().unwrap();
    let licensing = api.licensing();
    licensing
        .activate(key, "laptop")
        .await
        .expect_status(StatusCode::CREATED);
    let validate = |key: &str, scope: Value| {
        let licensing = licensing.clone();
        let body =
            json!({"license_key": key, "fingerprint": "laptop", "scope": scope, "nonce": "n-42"});
        async move {
            licensing
                .post("validate", &body)
                .await
                .expect_status(StatusCode::OK)
        }
    };

    let ok = validate(
        key,
        json!({"product": "app", "policy": "pro", "entitlements": ["export", "sync"]}),
    )
    .await;
    assert_eq!(ok["valid"], true, "{ok}");
    assert_eq!(ok["nonce"], "n-42", "the nonce is echoed");
    for (scope, code) in [
        (json!({"product": "other"}), "PRODUCT_SCOPE_MISMATCH"),
        (json!({"policy": "basic"}), "POLICY_SCOPE_MISMATCH"),
        (
            json!({"entitlements": ["export", "admin"]}),
            "ENTITLEMENTS_MISSING",
        ),
    ] {
        let verdict = validate(key, scope.clone()).await;
        assert_eq!(verdict["valid"], false, "{scope}: {verdict}");
        assert_eq!(verdict["code"], code, "{verdict}");
    }
    let missing = validate(key, json!({"entitlements": ["export", "admin"]})).await;
    assert_eq!(missing["missing_entitlements"], json!(["admin"]));
    // A license of its own is for no product.
    let custom_key = custom["license_key"].as_str().unwrap();
    licensing
        .activate(custom_key, "laptop")
        .await
        .expect_status(StatusCode::CREATED);
    let verdict = validate(custom_key, json!({"product": "app"})).await;
    assert_eq!(verdict["code"], "PRODUCT_SCOPE_MISMATCH");

    // Activation refuses before writing anything.
    let before = app.event_count().await;
    let refused = licensing
        .post(
            "activate",
            &json!({"license_key": key, "device": {"fingerprint": "desk"},
                    "scope": {"entitlements": ["admin"]}}),
        )
        .await
        .problem(StatusCode::FORBIDDEN, "ENTITLEMENTS_MISSING");
    assert_eq!(refused["missing_entitlements"], json!(["admin"]));
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn tokens_carry_the_product_policy_and_entitlements_beside_every_old_claim() {
    let app = spawn_app().await;
    let api = app.api();
    catalogue(
        &api,
        json!({"token_ttl": "PT1H", "expiration_strategy": "restrict", "grace_period": null}),
    )
    .await;
    let subscription = follower(&api, "app/pro", json!({"features": ["admin"]})).await;
    let issued = api
        .licensing()
        .activate(subscription["license_key"].as_str().unwrap(), "laptop")
        .await
        .expect_status(StatusCode::CREATED);
    let claims = claims(issued["token"].as_str().unwrap());
    assert_eq!(claims["prd"], "app");
    assert_eq!(claims["pol"], "pro");
    assert_eq!(claims["ent"], json!(["admin", "export", "sync"]));
    assert_eq!(claims["plan"], "pro");
    assert_eq!(claims["features"], claims["ent"]);
    assert_eq!(claims["max_devices"], 3);
    assert!(
        claims.get("grace_until").is_none(),
        "not in grace: {claims}"
    );
    for old in [
        "iss",
        "aud",
        "sub",
        "iat",
        "nbf",
        "exp",
        "jti",
        "sid",
        "fpr",
        "license_key_ref",
    ] {
        assert!(claims.get(old).is_some(), "{old} in {claims}");
    }
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600,
        "the policy's token_ttl"
    );
}

#[tokio::test]
async fn entitlements_attach_to_one_subscription_and_a_policy_can_be_followed_later() {
    let app = spawn_app().await;
    let api = app.api();
    catalogue(&api, json!({})).await;
    let custom = api
        .create(
            json!({"customer_email": "c@example.com", "customer_name": "C",
                       "plan": "legacy", "max_devices": 2, "features": ["export"]}),
        )
        .await;
    let id = custom["id"].as_str().unwrap();
    assert_eq!(custom["policy_id"], Value::Null);
    assert_eq!(custom["entitlements"], json!(["export"]));

    let attached = api
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id}/entitlements"),
        )
        .json(&json!({"codes": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(attached.status(), StatusCode::OK);
    let attached: Value = attached.json().await.unwrap();
    assert_eq!(attached["entitlements"], json!(["admin", "export"]));

    // Following the policy: its terms, plus its own entitlements; the plan is refused.
    let followed = api.put(id, json!({"policy": "app/pro"})).await;
    assert_eq!(followed["policy_code"], "pro");
    assert_eq!(followed["max_devices"], 3);
    assert_eq!(followed["entitlements"], json!(["admin", "export", "sync"]));
    let refused = api
        .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
        .json(&json!({"plan": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let detached = api
        .admin(
            Method::DELETE,
            &format!("/api/v1/subscriptions/{id}/entitlements/admin"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(detached.status(), StatusCode::OK);
    let detached: Value = detached.json().await.unwrap();
    assert_eq!(detached["entitlements"], json!(["export", "sync"]));

    // And back to its own values.
    let custom_again = api.put(id, json!({"policy": null})).await;
    assert_eq!(custom_again["policy_id"], Value::Null);
    assert_eq!(custom_again["max_devices"], 3, "the limit in force stays");
    assert_eq!(
        count_events_of_type(&app, "SubscriptionPolicyChanged").await,
        2
    );
}

/// On PostgreSQL, a policy change made on one instance reaches the other's validation
/// through the store's notices, with no event per subscription.
#[tokio::test]
async fn a_policy_change_reaches_every_instance_s_validation() {
    if crate::helpers::skip_unless_postgres() {
        return;
    }
    let app: TestApp = spawn_app().await;
    let api = app.api();
    let policy = catalogue(&api, json!({})).await;
    let subscription = follower(&api, "app/pro", json!({})).await;
    let key = subscription["license_key"].as_str().unwrap();
    let other = api.at(&app.spawn_second_instance().await);
    let scope = json!({"license_key": key, "fingerprint": "laptop",
                       "scope": {"entitlements": ["sync"]}});
    api.licensing()
        .activate(key, "laptop")
        .await
        .expect_status(StatusCode::CREATED);
    // The other instance has the license cached, valid with `sync`.
    let verdict = other
        .licensing()
        .post("validate", &scope)
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(verdict["valid"], true, "{verdict}");

    let detached = api
        .admin(
            Method::DELETE,
            &format!(
                "/api/v1/policies/{}/entitlements/sync",
                policy["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(detached.status(), StatusCode::OK);
    let changed = std::time::Instant::now();
    loop {
        let verdict = other
            .licensing()
            .post("validate", &scope)
            .await
            .expect_status(StatusCode::OK);
        if verdict["code"] == "ENTITLEMENTS_MISSING" {
            break;
        }
        assert!(
            changed.elapsed() < std::time::Duration::from_secs(2),
            "the change did not reach the other instance within 2 s: {verdict}"
        );
        tokio::task::yield_now().await;
    }
}
