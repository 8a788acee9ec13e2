//! API documentation and ops endpoints: the OpenAPI document names every route, Swagger UI
//! and ReDoc work with no request to the internet, `/health`, and the 404 fallback.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app, TestApp};

/// Every URL in `text` that points at a host other than the server's.
fn external_urls(text: &str, own_address: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        for (start, _) in text.match_indices(scheme) {
            let url: String = text[start..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"\"'`)<>,;".contains(*c))
                .collect();
            let is_own = url.starts_with(own_address)
                && url[own_address.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == '/');
            if !is_own {
                found.push(url);
            }
        }
    }
    found
}

/// External URLs that a script would make the browser load: image, script and frame
/// sources, CSS `url(...)` and `@import`, `fetch(...)`. (Big bundles also hold URLs that are
/// never fetched: XML namespaces, JSON Schema ids, links in error messages.)
fn external_resources(script: &str, own_address: &str) -> Vec<String> {
    let compact: String = script.chars().filter(|c| !c.is_whitespace()).collect();
    let mut found = Vec::new();
    for context in [
        "src:\"",
        "src:'",
        "src=\"",
        "src='",
        "src=\\\"",
        "url(",
        "url(\"",
        "url('",
        "@import\"",
        "@import'",
        "fetch(\"",
        "fetch('",
    ] {
        for (start, _) in compact.match_indices(context) {
            let rest = &compact[start + context.len()..];
            if rest.starts_with("http://") || rest.starts_with("https://") {
                found.extend(
                    external_urls(&rest[..rest.len().min(300)], own_address)
                        .into_iter()
                        .take(1),
                );
            }
        }
    }
    found
}

/// The values of `attribute="..."` in an HTML page.
fn attribute_values(html: &str, attribute: &str) -> Vec<String> {
    let mut values = Vec::new();
    for quote in ['"', '\''] {
        let pattern = format!(" {attribute}={quote}");
        for (start, _) in html.match_indices(&pattern) {
            let rest = &html[start + pattern.len()..];
            if let Some(end) = rest.find(quote) {
                values.push(rest[..end].to_owned());
            }
        }
    }
    values
}

/// Resolves a page-relative reference the way a browser would, for the simple forms pages use.
fn resolve(page_path: &str, reference: &str) -> String {
    if reference.starts_with('/') {
        return reference.to_owned();
    }
    let directory = &page_path[..=page_path.rfind('/').unwrap_or(0)];
    format!(
        "{directory}{}",
        reference.strip_prefix("./").unwrap_or(reference)
    )
}

async fn get_text(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    let response = app.anon(Method::GET, path).send().await.expect("get");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

/// Fetches an HTML page and every script, stylesheet and icon it references; checks that all
/// of them are served by the server itself. Returns the page and the fetched (path, body) list.
async fn page_and_assets(app: &TestApp, path: &str) -> (String, Vec<(String, String)>) {
    let (status, content_type, html) = get_text(app, path).await;
    assert_eq!(status, StatusCode::OK, "{path}");
    assert!(
        content_type.starts_with("text/html"),
        "{path}: {content_type}"
    );
    let external = external_urls(&html, &app.address);
    assert!(
        external.is_empty(),
        "{path} names other hosts: {external:?}"
    );

    let mut assets = Vec::new();
    for reference in attribute_values(&html, "src")
        .into_iter()
        .chain(attribute_values(&html, "href"))
    {
        assert!(
            !reference.starts_with("//"),
            "{path}: protocol-relative {reference}"
        );
        let asset = resolve(path, &reference);
        let (status, _, body) = get_text(app, &asset).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path} references {reference}, served at {asset}"
        );
        assets.push((asset, body));
    }
    (html, assets)
}

#[tokio::test]
async fn openapi_json_lists_exactly_the_routes_the_server_has() {
    let app = spawn_app().await;
    let response = app.anon(Method::GET, "/openapi.json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths: BTreeSet<&str> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/licensing/activate",
        "/api/v1/licensing/validate",
        "/api/v1/licensing/refresh",
        "/api/v1/licensing/deactivate",
        "/api/v1/licensing/heartbeat",
        "/api/v1/licensing/checkin",
        "/api/v1/licensing/public-key",
        "/.well-known/jwks.json",
        "/api/v1/subscriptions",
        "/api/v1/subscriptions/{id}",
        "/api/v1/subscriptions/{id}/license-key",
        "/api/v1/subscriptions/{id}/events",
        "/api/v1/subscriptions/{id}/entitlements",
        "/api/v1/subscriptions/{id}/entitlements/{code}",
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/analytics/dashboard",
        "/api/v1/analytics/subscriptions",
        "/api/v1/analytics/devices",
        "/api/v1/events",
        "/api/v1/webhooks",
        "/api/v1/webhooks/{id}",
        "/api/v1/webhooks/{id}/secret",
        "/api/v1/webhooks/{id}/deliveries",
        "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
        "/api/v1/products",
        "/api/v1/products/{id}",
        "/api/v1/entitlements",
        "/api/v1/entitlements/{id}",
        "/api/v1/policies",
        "/api/v1/policies/{id}",
        "/api/v1/policies/{id}/archive",
        "/api/v1/policies/{id}/unarchive",
        "/api/v1/policies/{id}/entitlements",
        "/api/v1/policies/{id}/entitlements/{code}",
        "/health",
        "/livez",
        "/metrics",
    ]
    .into();
    assert_eq!(paths, expected);
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());

    // Each documented path answers: not the 404 fallback (a 401 or 405 is fine).
    for path in &expected {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{delivery_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{code}", "export");
        for method in document["paths"][*path].as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app.anon(method.clone(), &concrete).send().await.unwrap();
            let body: String = response.text().await.unwrap();
            assert!(
                !body.contains("\"code\":\"NOT_FOUND\""),
                "{method} {concrete} is documented but not routed"
            );
        }
    }
}

#[tokio::test]
async fn swagger_ui_is_served_locally_with_no_url_to_another_host() {
    let app = spawn_app().await;
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = redirect.get(app.url("/docs")).send().await.unwrap();
    assert!(
        response.status().is_redirection(),
        "/docs sends the browser to /docs/"
    );

    let (html, assets) = page_and_assets(&app, "/docs/").await;
    assert!(html.contains("swagger-ui"), "{html}");
    let scripts: Vec<String> = attribute_values(&html, "src")
        .iter()
        .map(|s| resolve("/docs/", s))
        .collect();
    assert!(!scripts.is_empty(), "Swagger UI has scripts: {html}");
    for (path, body) in &assets {
        let resources = external_resources(body, &app.address);
        assert!(
            resources.is_empty(),
            "{path} loads from other hosts: {resources:?}"
        );
    }

    // The configuration script: it points at our document and turns off the online
    // validator (whose badge would send the document's URL to validator.swagger.io).
    let (initializer_path, initializer) = assets
        .iter()
        .find(|(p, _)| p.ends_with("swagger-initializer.js"))
        .expect("Swagger UI's configuration script");
    let external = external_urls(initializer, &app.address);
    assert!(
        external.is_empty(),
        "{initializer_path} names other hosts: {external:?}"
    );
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    let compact: String = initializer.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        compact.contains("\"validatorUrl\":\"none\""),
        "the online validator is off: {initializer}"
    );
    let bundle = assets
        .iter()
        .find(|(p, _)| p.ends_with("swagger-ui-bundle.js"))
        .expect("the Swagger UI bundle");
    assert!(bundle.1.len() > 100_000, "the bundle is served whole");
}

#[tokio::test]
async fn redoc_is_served_locally_with_its_script_and_no_url_to_another_host() {
    let app = spawn_app().await;
    let (html, assets) = page_and_assets(&app, "/redoc").await;
    assert!(html.contains("/openapi.json"), "{html}");
    let script = assets
        .iter()
        .find(|(p, _)| p == "/redoc/redoc.standalone.js")
        .expect("the page loads /redoc/redoc.standalone.js");

    let response = app
        .anon(Method::GET, "/redoc/redoc.standalone.js")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.contains("javascript"), "{content_type}");
    assert!(
        script.1.len() > 500_000,
        "the whole ReDoc bundle: {} bytes",
        script.1.len()
    );
    assert!(script.1.contains("Redoc"), "it is ReDoc");
    let resources = external_resources(&script.1, &app.address);
    assert!(
        resources.is_empty(),
        "ReDoc loads from other hosts: {resources:?}"
    );
}

#[tokio::test]
async fn health_is_200_with_status_ok_and_database_ok() {
    let app = spawn_app().await;
    let response = app.anon(Method::GET, "/health").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
}

#[tokio::test]
async fn an_unknown_path_is_404_problem_json_not_found() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/no/such/thing"),
        (Method::GET, "/api/v1/nothing-here"),
        (Method::POST, "/api/v1/licensing/nope"),
        (Method::GET, "/api/v1/devices/"),
    ] {
        let response = app.anon(method, path).send().await.unwrap();
        assert_problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
}
