//! What the panel takes in (issue 21): its forms and query strings pass the JSON API's own
//! checks.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{count_events_of_type, spawn_app};
use crate::panel::Browser;

#[tokio::test]
async fn panel_forms_refuse_what_the_json_api_refuses_and_store_nothing() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let api_body = json!({
        "customer_email": "nul@example.com", "customer_name": "Bad\u{0}Name",
        "plan": "pro", "max_devices": 1,
    });
    let api = app
        .admin(Method::POST, "/api/v1/subscriptions")
        .json(&api_body)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let form = |name: &'static str, value: &'static str| {
        let mut fields = vec![
            ("csrf", token.as_str()),
            ("customer_email", "nul@example.com"),
            ("customer_name", "Good Name"),
            ("plan", "pro"),
            ("max_devices", "1"),
        ];
        fields.retain(|(k, _)| *k != name);
        fields.push((name, value));
        fields
    };
    for fields in [
        form("customer_name", "Bad\u{0}Name"),
        form("organization", "\u{0}"),
        form("features", "sync,\u{0}x"),
        form("customer_email", "nul\u{0}@example.com"),
        form("max_devices\u{0}", "1"),
    ] {
        let response = browser.post("/admin/subscriptions/new", &fields).await;
        let status = response.status();
        let page = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{fields:?}:\n{page}"
        );
        assert!(page.contains("NUL"), "the page says why:\n{page}");
    }
    // The sign-in form too: the JSON sign-in refuses the same body with 422.
    let response = browser
        .post(
            "/admin/login",
            &[("email", "a\u{0}@example.com"), ("password", "x")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 0);

    // And the same form without the NUL is stored.
    let response = browser
        .post(
            "/admin/subscriptions/new",
            &form("customer_name", "Good Name"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 1);
}

#[tokio::test]
async fn panel_pages_refuse_a_nul_in_the_query_as_the_api_does() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    app.subscription_with_devices(1).await;
    let api = app
        .admin(Method::GET, "/api/v1/subscriptions?q=%00")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::BAD_REQUEST);
    for path in [
        "/admin/subscriptions?q=%00",
        "/admin/subscriptions?q=%00abc",
        "/admin/subscriptions/export.csv?q=%00",
        "/admin/subscriptions?status=%00",
        "/admin/devices?q=%00",
        "/admin/events?event_type=a%00",
        "/admin/webhooks?page=%00",
        "/admin?from=%00",
    ] {
        let response = browser.get(path).await;
        let status = response.status();
        let page = response.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}:\n{page}");
        assert!(page.contains("NUL"), "{path} says why:\n{page}");
    }
    // A literal percent sign is a search like any other.
    let response = browser.get("/admin/subscriptions?q=%2500").await;
    assert_eq!(response.status(), StatusCode::OK);
}
