//! Client addresses behind trusted proxies (`TRUSTED_PROXIES`), the rate-limit budgets and
//! their headers, and the per-account sign-in throttle.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

const UNKNOWN_KEY: &str = "FLX-00000-00000-00000-00000-00000-00000-0";

async fn validate_from(app: &TestApp, forwarded_for: &str) -> reqwest::Response {
    app.anon(Method::POST, "/api/v1/licensing/validate")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"license_key": UNKNOWN_KEY, "fingerprint": "fp"}))
        .send()
        .await
        .unwrap()
}

async fn login_from(
    app: &TestApp,
    forwarded_for: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    app.anon(Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

fn number(response: &reqwest::Response, name: &str) -> u64 {
    response.headers()[name]
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number"))
}

/// The `ip` of the first event of a subscription created with these request headers.
async fn recorded_ip(app: &TestApp, forwarded_for: &str) -> String {
    let created: Value = app
        .admin(Method::POST, "/api/v1/subscriptions")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"customer_email": "ip@example.com", "customer_name": "Ip", "plan": "pro", "max_devices": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let history: Value = app
        .admin(Method::GET, &format!("/api/v1/subscriptions/{id}/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    history["items"][0]["metadata"]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("an ip in {history}"))
        .to_owned()
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_and_events_follow_the_forwarded_client() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8"),
        ("RATE_LIMIT_LICENSING_PER_MINUTE", "3"),
    ])
    .await;
    // Each answer says the budget and what is left of it.
    for left in [2, 1, 0] {
        let response = validate_from(&app, "198.51.100.1").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(number(&response, "x-ratelimit-limit"), 3);
        assert_eq!(number(&response, "x-ratelimit-remaining"), left);
    }
    let refused = validate_from(&app, "198.51.100.1").await;
    assert_eq!(number(&refused, "x-ratelimit-limit"), 3);
    assert_eq!(number(&refused, "x-ratelimit-remaining"), 0);
    assert!(number(&refused, "retry-after") >= 1);
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // Another client behind the same proxy has a budget of its own, also through a second
    // trusted hop; what the client wrote on the left of the list is not believed.
    let other = validate_from(&app, "1.1.1.1, 198.51.100.2, 10.1.1.1").await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(number(&other, "x-ratelimit-remaining"), 2);
    // The first client cannot escape by prepending another address.
    let spoofed = validate_from(&app, "198.51.100.99, 198.51.100.1").await;
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);

    // The audit trail records the forwarded client, not the proxy.
    assert_eq!(
        recorded_ip(&app, "203.0.113.5, 198.51.100.7").await,
        "198.51.100.7"
    );
}

#[tokio::test]
async fn without_trusted_proxies_x_forwarded_for_is_ignored() {
    let app = spawn_app_with(&[("RATE_LIMIT_LICENSING_PER_MINUTE", "2")]).await;
    for forwarded in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(
            validate_from(&app, forwarded).await.status(),
            StatusCode::OK
        );
    }
    // Every request came from 127.0.0.1, whatever the header says.
    let refused = validate_from(&app, "198.51.100.3").await;
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    assert_eq!(recorded_ip(&app, "198.51.100.4").await, "127.0.0.1");
}

#[tokio::test]
async fn sign_in_and_licensing_spend_budgets_of_their_own() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_SIGN_IN_PER_MINUTE", "2"),
        ("RATE_LIMIT_LICENSING_PER_MINUTE", "50"),
    ])
    .await;
    // spawn_app signed in once: one sign-in left.
    let response = login_from(&app, "", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(number(&response, "x-ratelimit-limit"), 2);
    assert_eq!(number(&response, "x-ratelimit-remaining"), 0);
    let refused = login_from(&app, "", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // Licensing is untouched by the spent sign-in budget.
    let response = validate_from(&app, "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(number(&response, "x-ratelimit-limit"), 50);
    assert_eq!(number(&response, "x-ratelimit-remaining"), 49);
}

#[tokio::test]
async fn the_per_account_throttle_holds_across_addresses_and_for_unknown_emails_alike() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("RATE_LIMIT_SIGN_IN_PER_ACCOUNT_PER_HOUR", "3"),
    ])
    .await;
    // spawn_app's sign-in spent one of the admin's three; two guesses from two addresses
    // spend the rest.
    for address in ["198.51.100.1", "198.51.100.2"] {
        let response = login_from(&app, address, ADMIN_EMAIL, "wrong password").await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    }
    // A third address, even with the right password, waits: the account is throttled, not
    // the address (and with the case of the email changed, it is the same account).
    let response = login_from(
        &app,
        "198.51.100.3",
        &ADMIN_EMAIL.to_uppercase(),
        ADMIN_PASSWORD,
    )
    .await;
    let wait = number(&response, "retry-after");
    assert!((60..=1200).contains(&wait), "{wait}");
    let problem = assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    assert!(!problem["detail"].as_str().unwrap().contains(ADMIN_EMAIL));

    // An email that has no account is counted the same way: the throttle tells nobody
    // whether an account exists.
    for n in 0..3 {
        let response = login_from(
            &app,
            &format!("198.51.100.{}", 10 + n),
            "nobody@example.com",
            "guess",
        )
        .await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    }
    let response = login_from(&app, "198.51.100.20", "nobody@example.com", "guess").await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
}

#[tokio::test]
async fn an_ipv6_client_cannot_escape_its_limit_by_changing_addresses_within_its_network() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("RATE_LIMIT_LICENSING_PER_MINUTE", "2"),
    ])
    .await;
    // One IPv6 host usually holds a whole /64 and picks any address in it: the budget is
    // the network's, or it is no limit at all.
    for forwarded in ["2001:db8:1:2::1", "2001:db8:1:2::2"] {
        let response = validate_from(&app, forwarded).await;
        assert_eq!(response.status(), StatusCode::OK, "{forwarded}");
    }
    let refused = validate_from(&app, "2001:db8:1:2:ffff:1234:5678:9abc").await;
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // The neighbouring /64 is another client, with a budget of its own.
    let neighbour = validate_from(&app, "2001:db8:1:3::1").await;
    assert_eq!(neighbour.status(), StatusCode::OK);
    // The audit trail still records the client's own address.
    assert_eq!(
        recorded_ip(&app, "2001:db8:1:2::77").await,
        "2001:db8:1:2::77"
    );
}
