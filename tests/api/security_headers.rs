//! Security headers on every answer, HSTS only over HTTPS (as a trusted proxy says), and
//! the documentation pages still working, in a real browser, under their policies.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const API_POLICY: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn assert_common_headers(response: &reqwest::Response, what: &str) {
    assert_eq!(
        header(response, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(response, "x-frame-options").as_deref(),
        Some("DENY"),
        "{what}"
    );
    assert_eq!(
        header(response, "referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}"
    );
    let policy = header(response, "content-security-policy")
        .unwrap_or_else(|| panic!("{what} has no Content-Security-Policy"));
    assert!(policy.starts_with("default-src 'none'"), "{what}: {policy}");
    assert!(
        policy.contains("frame-ancestors 'none'"),
        "{what}: {policy}"
    );
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    assert!(!policy.contains("unsafe-eval"), "{what}: {policy}");
}

async fn send(app: &TestApp, request: reqwest::RequestBuilder, what: &str) -> reqwest::Response {
    let _ = app;
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test]
async fn every_answer_has_the_security_headers_and_json_gets_the_strictest_policy() {
    let app = spawn_app_with(&[("RATE_LIMIT_LICENSING_PER_MINUTE", "1")]).await;
    let answers = [
        (app.anon(Method::GET, "/health"), StatusCode::OK, "health"),
        (
            app.anon(Method::GET, "/openapi.json"),
            StatusCode::OK,
            "the OpenAPI document",
        ),
        (
            app.anon(Method::GET, "/no/such/thing"),
            StatusCode::NOT_FOUND,
            "the 404 fallback",
        ),
        (
            app.anon(Method::GET, "/api/v1/subscriptions"),
            StatusCode::UNAUTHORIZED,
            "a 401",
        ),
        (
            app.admin(Method::GET, "/api/v1/subscriptions"),
            StatusCode::OK,
            "an admin list",
        ),
        (
            app.anon(Method::DELETE, "/health"),
            StatusCode::METHOD_NOT_ALLOWED,
            "a 405",
        ),
        (
            app.anon(Method::POST, "/api/v1/licensing/validate")
                .json(&json!({"fingerprint": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a 422",
        ),
        (
            app.anon(Method::POST, "/api/v1/licensing/validate")
                .json(&json!({"fingerprint": 1})),
            StatusCode::TOO_MANY_REQUESTS,
            "a 429",
        ),
    ];
    for (request, status, what) in answers {
        let response = send(&app, request, what).await;
        assert_eq!(response.status(), status, "{what}");
        assert_common_headers(&response, what);
        assert_eq!(
            header(&response, "content-security-policy").as_deref(),
            Some(API_POLICY),
            "{what}"
        );
        assert_eq!(
            header(&response, "strict-transport-security"),
            None,
            "{what} came over plain HTTP"
        );
    }
}

#[tokio::test]
async fn the_docs_pages_get_policies_of_their_own_and_redoc_a_fresh_nonce_each_time() {
    let app = spawn_app().await;
    let swagger = send(&app, app.anon(Method::GET, "/docs/"), "/docs/").await;
    assert_eq!(swagger.status(), StatusCode::OK);
    assert_common_headers(&swagger, "/docs/");
    let policy = header(&swagger, "content-security-policy").unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");

    let mut nonces = Vec::new();
    for _ in 0..2 {
        let redoc = send(&app, app.anon(Method::GET, "/redoc"), "/redoc").await;
        assert_eq!(redoc.status(), StatusCode::OK);
        assert_common_headers(&redoc, "/redoc");
        let policy = header(&redoc, "content-security-policy").unwrap();
        let nonce = policy
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("no nonce in {policy}"))
            .to_owned();
        let page = redoc.text().await.unwrap();
        assert!(
            page.contains(&format!("nonce=\"{nonce}\"")),
            "the page carries its policy's nonce"
        );
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a nonce is never reused");
    assert!(nonces[0].len() >= 22, "128 bits at least: {}", nonces[0]);
}

#[tokio::test]
async fn hsts_only_when_a_trusted_proxy_says_the_request_came_over_https() {
    let trusting = spawn_app_with(&[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let over_https = trusting
        .anon(Method::GET, "/health")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let hsts = header(&over_https, "strict-transport-security").expect("HSTS over HTTPS");
    assert!(hsts.starts_with("max-age=31536000"), "{hsts}");
    let over_http = trusting
        .anon(Method::GET, "/health")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&over_http, "strict-transport-security"), None);

    // Anyone may write the header; only a trusted proxy is believed.
    let untrusting = spawn_app().await;
    let claimed = untrusting
        .anon(Method::GET, "/health")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&claimed, "strict-transport-security"), None);
}

/// Chromium, headless, on `url`: the rendered DOM and what the console said.
fn render(url: &str) -> Option<(String, String)> {
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&binary).exists() {
        assert!(
            std::env::var("FLOWLYTIX_REQUIRE_SERVICES").is_err(),
            "no Chromium at {binary} (set CHROMIUM)"
        );
        eprintln!("note: no Chromium at {binary}; the docs pages were not rendered");
        return None;
    }
    let profile = std::env::temp_dir().join(format!("flowlytix-chromium-{}", uuid::Uuid::new_v4()));
    let output = Command::new(binary)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            // No connection anywhere but to the server under test.
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("run Chromium");
    let _ = std::fs::remove_dir_all(&profile);
    Some((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_pages_render_under_their_policy_with_no_violation() {
    let app = spawn_app().await;
    for (path, needs) in [
        // Swagger UI's operation list, and ReDoc's rendered menu: both need their scripts
        // and styles, and the document fetched.
        ("/docs/", "opblock"),
        ("/redoc", "menu-content"),
    ] {
        let url = app.url(path);
        let rendered = tokio::task::spawn_blocking(move || render(&url))
            .await
            .unwrap();
        let Some((dom, console)) = rendered else {
            return;
        };
        let violations: Vec<&str> = console
            .lines()
            .filter(|line| line.contains("Content Security Policy") || line.contains("Refused to"))
            .collect();
        assert!(
            violations.is_empty(),
            "{path} breaks its policy:\n{}",
            violations.join("\n")
        );
        assert!(dom.contains(needs), "{path} did not render ({needs})");
        assert!(
            dom.contains("/api/v1/licensing/activate"),
            "{path} shows the API"
        );
    }
}
