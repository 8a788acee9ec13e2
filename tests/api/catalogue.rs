//! The catalogue's admin API over HTTP: products, entitlements and policies end to end, the
//! refusals and their codes, roles, idempotent and unique creations, the rules across
//! aggregates (in use, unknown), the read models (lists, replay) and the feed.

use std::time::{Duration, Instant};

use chrono::Utc;
use flowlytix_aggregates::Role;
use flowlytix_server::auth::accounts;
use flowlytix_server::store::EventMetadata;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, assert_refused, spawn_app, TestApp};

/// Sends a request; asserts its status (showing the body otherwise) and returns its body.
async fn expect(request: RequestBuilder, status: StatusCode) -> Value {
    let response = request.send().await.expect("request");
    let actual = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(actual, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn post(app: &TestApp, path: &str, body: Value) -> Value {
    app.api().create_at(path, body).await
}

async fn product(app: &TestApp, code: &str) -> Value {
    post(
        app,
        "/api/v1/products",
        json!({"name": "Flowlytix Desktop", "code": code}),
    )
    .await
}

async fn entitlement(app: &TestApp, code: &str) -> Value {
    post(
        app,
        "/api/v1/entitlements",
        json!({"code": code, "name": code.to_uppercase()}),
    )
    .await
}

async fn policy(app: &TestApp, product_id: &Value, code: &str, entitlements: &[&str]) -> Value {
    post(
        app,
        "/api/v1/policies",
        json!({"product_id": product_id, "name": "Pro", "code": code, "max_devices": 3,
               "entitlements": entitlements}),
    )
    .await
}

/// A list, once the read model includes the write at `position`.
async fn list(app: &TestApp, path: &str, position: &Value) -> Value {
    let separator = if path.contains('?') { '&' } else { '?' };
    let path = format!("{path}{separator}min_position={position}&per_page=200");
    let response = app.admin(Method::GET, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-read-model-consistent"], "true");
    response.json().await.unwrap()
}

fn codes(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["code"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn products_entitlements_and_policies_from_creation_to_deletion() {
    let app = spawn_app().await;

    // Products.
    let created = post(
        &app,
        "/api/v1/products",
        json!({"name": "Flowlytix Desktop", "code": "desktop", "url": "https://flowlytix.example/desktop",
               "metadata": {"tier": 1}}),
    )
    .await;
    let product_id = created["id"].clone();
    assert_eq!(created["code"], "desktop");
    assert_eq!(created["url"], "https://flowlytix.example/desktop");
    assert_eq!(created["metadata"], json!({"tier": 1}));
    assert!(created["created_at"].is_string() && created["position"].is_i64());
    let path = format!("/api/v1/products/{}", product_id.as_str().unwrap());
    let read = expect(app.admin(Method::GET, &path), StatusCode::OK).await;
    assert_eq!(read["name"], "Flowlytix Desktop");
    let changed = expect(
        app.admin(Method::PUT, &path)
            .json(&json!({"name": "Flowlytix", "url": null})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["name"], "Flowlytix");
    assert_eq!(changed["url"], Value::Null);
    assert_eq!(changed["metadata"], json!({"tier": 1}));
    assert!(changed["position"].as_i64() > created["position"].as_i64());
    let page = list(&app, "/api/v1/products", &changed["position"]).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["name"], "Flowlytix");
    assert_eq!(page["items"][0]["url"], Value::Null);

    // Entitlements.
    let export = entitlement(&app, "export").await;
    assert_eq!(export["code"], "export");
    assert_eq!(export["name"], "EXPORT");
    assert!(export["id"].is_string() && export["position"].is_i64());
    entitlement(&app, "sync").await;
    let renamed = expect(
        app.admin(
            Method::PUT,
            &format!("/api/v1/entitlements/{}", export["id"].as_str().unwrap()),
        )
        .json(&json!({"name": "Export to CSV"})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["name"], "Export to CSV");
    let page = list(&app, "/api/v1/entitlements", &renamed["position"]).await;
    assert_eq!(codes(&page), ["export", "sync"]);
    assert_eq!(page["items"][0]["name"], "Export to CSV");

    // Policies.
    let created = post(
        &app,
        "/api/v1/policies",
        json!({"product_id": product_id, "name": "Pro yearly", "code": "pro", "max_devices": 3,
               "duration": "P1Y", "trial_duration": "P14D", "expiration_basis": "from_first_activation",
               "expiration_strategy": "allow_grace", "grace_period": "P7D", "token_ttl": "PT1H",
               "entitlements": ["sync", "export"], "metadata": {"seats": "3"}}),
    )
    .await;
    let policy_id = created["id"].as_str().unwrap().to_owned();
    for (field, value) in [
        ("product_id", product_id.clone()),
        ("product_code", json!("desktop")),
        ("name", json!("Pro yearly")),
        ("code", json!("pro")),
        ("max_devices", json!(3)),
        ("duration", json!("P1Y")),
        ("trial_duration", json!("P14D")),
        ("expiration_basis", json!("from_first_activation")),
        ("expiration_strategy", json!("allow_grace")),
        ("grace_period", json!("P7D")),
        ("token_ttl", json!("PT1H")),
        ("entitlements", json!(["export", "sync"])),
        ("metadata", json!({"seats": "3"})),
        ("archived", json!(false)),
    ] {
        assert_eq!(created[field], value, "{field}");
    }
    assert!(created["created_at"].is_string() && created["position"].is_i64());
    let path = format!("/api/v1/policies/{policy_id}");
    assert_eq!(
        expect(app.admin(Method::GET, &path), StatusCode::OK).await["code"],
        "pro"
    );

    // A partial change: null clears an optional setting, absent keeps it.
    let changed = expect(
        app.admin(Method::PUT, &path)
            .json(&json!({"max_devices": 5, "duration": null, "expiration_strategy": "restrict", "grace_period": null})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["max_devices"], 5);
    assert_eq!(changed["duration"], Value::Null);
    assert_eq!(changed["grace_period"], Value::Null);
    assert_eq!(changed["trial_duration"], "P14D");
    assert_eq!(changed["name"], "Pro yearly");

    let archived = expect(
        app.admin(Method::POST, &format!("{path}/archive")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(archived["archived"], true);
    let page = list(
        &app,
        "/api/v1/policies?archived=true",
        &archived["position"],
    )
    .await;
    assert_eq!(codes(&page), ["pro"]);
    assert_eq!(page["items"][0]["max_devices"], 5);
    assert_eq!(page["items"][0]["duration"], Value::Null);
    let page = list(
        &app,
        "/api/v1/policies?archived=false",
        &archived["position"],
    )
    .await;
    assert_eq!(page["total"], 0);
    let unarchived = expect(
        app.admin(Method::POST, &format!("{path}/unarchive")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(unarchived["archived"], false);

    entitlement(&app, "offline").await;
    let attached = expect(
        app.admin(Method::POST, &format!("{path}/entitlements"))
            .json(&json!({"codes": ["offline", "export"]})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        attached["entitlements"],
        json!(["export", "offline", "sync"])
    );
    let detached = expect(
        app.admin(Method::DELETE, &format!("{path}/entitlements/sync")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(detached["entitlements"], json!(["export", "offline"]));
    let filter = format!(
        "/api/v1/policies?product_id={}",
        product_id.as_str().unwrap()
    );
    let page = list(&app, &filter, &detached["position"]).await;
    assert_eq!(
        page["items"][0]["entitlements"],
        json!(["export", "offline"])
    );
    assert_eq!(page["items"][0]["archived"], false);
    let other = format!("/api/v1/policies?product_id={}", uuid::Uuid::new_v4());
    assert_eq!(list(&app, &other, &detached["position"]).await["total"], 0);

    // Deletions of what nothing names.
    let sync = expect(
        app.admin(Method::GET, "/api/v1/entitlements?per_page=200"),
        StatusCode::OK,
    )
    .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "sync")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = expect(
        app.admin(Method::DELETE, &format!("/api/v1/entitlements/{sync}")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(deleted["deleted"], true);
    assert!(deleted["position"].is_i64());
    assert_problem(
        app.admin(Method::GET, &format!("/api/v1/entitlements/{sync}"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "ENTITLEMENT_NOT_FOUND",
    )
    .await;
    let spare = product(&app, "spare").await;
    let spare_path = format!("/api/v1/products/{}", spare["id"].as_str().unwrap());
    let deleted = expect(app.admin(Method::DELETE, &spare_path), StatusCode::OK).await;
    assert_problem(
        app.admin(Method::GET, &spare_path).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    assert_eq!(
        codes(&list(&app, "/api/v1/products", &deleted["position"]).await),
        ["desktop"]
    );
    assert_eq!(
        codes(&list(&app, "/api/v1/entitlements", &deleted["position"]).await),
        ["export", "offline"]
    );
    // A deleted code may be used again.
    product(&app, "spare").await;
}

#[tokio::test]
async fn each_refusal_has_its_code_and_writes_nothing() {
    let app = spawn_app().await;
    let desktop = product(&app, "desktop").await;
    entitlement(&app, "export").await;
    let pro = policy(&app, &desktop["id"], "pro", &["export"]).await;
    let pro_path = format!("/api/v1/policies/{}", pro["id"].as_str().unwrap());
    let unknown = uuid::Uuid::new_v4();
    let admin = |method: Method, path: &str| app.admin(method, path);
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;

    for (request, status, code) in [
        (admin(Method::POST, "/api/v1/products").json(&json!({"name": "X", "code": "Not A Slug"})), unprocessable, "INVALID_CODE"),
        (admin(Method::POST, "/api/v1/entitlements").json(&json!({"name": "X", "code": "a/b"})), unprocessable, "INVALID_CODE"),
        (admin(Method::POST, "/api/v1/products").json(&json!({"name": "X", "code": "x", "url": "ftp://x"})), unprocessable, "INVALID_URL"),
        (admin(Method::POST, "/api/v1/products").json(&json!({"name": " ", "code": "x"})), unprocessable, "INVALID_NAME"),
        (admin(Method::POST, "/api/v1/products").json(&json!({"name": "X", "code": "desktop"})), StatusCode::CONFLICT, "PRODUCT_EXISTS"),
        (admin(Method::POST, "/api/v1/entitlements").json(&json!({"name": "X", "code": "export"})), StatusCode::CONFLICT, "ENTITLEMENT_EXISTS"),
        (admin(Method::POST, "/api/v1/policies").json(&json!({"product_id": desktop["id"], "name": "P", "code": "pro", "max_devices": 1})), StatusCode::CONFLICT, "POLICY_EXISTS"),
        (admin(Method::POST, "/api/v1/policies").json(&json!({"product_id": desktop["id"], "name": "P", "code": "p", "max_devices": 1, "duration": "one year"})), unprocessable, "INVALID_DURATION"),
        (admin(Method::POST, "/api/v1/policies").json(&json!({"product_id": desktop["id"], "name": "P", "code": "p", "max_devices": 1, "grace_period": "P0D"})), unprocessable, "INVALID_DURATION"),
        (admin(Method::POST, "/api/v1/policies").json(&json!({"product_id": desktop["id"], "name": "P", "code": "p", "max_devices": 0})), unprocessable, "INVALID_DEVICE_LIMIT"),
        (admin(Method::POST, "/api/v1/policies").json(&json!({"product_id": desktop["id"], "name": "P", "code": "p", "max_devices": 1, "expiration_strategy": "allow_grace"})), unprocessable, "INVALID_GRACE"),
        (admin(Method::POST, "/api/v1/policies").json(&json!({"product_id": unknown, "name": "P", "code": "p", "max_devices": 1})), unprocessable, "PRODUCT_NOT_FOUND"),
        (admin(Method::PUT, &pro_path).json(&json!({"token_ttl": "PT0S"})), unprocessable, "INVALID_DURATION"),
        (admin(Method::DELETE, &format!("{pro_path}/entitlements/Bad%20Code")), unprocessable, "INVALID_CODE"),
        (admin(Method::GET, &format!("/api/v1/products/{unknown}")), StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND"),
        (admin(Method::PUT, &format!("/api/v1/products/{unknown}")).json(&json!({"name": "X"})), StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND"),
        (admin(Method::DELETE, &format!("/api/v1/products/{unknown}")), StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND"),
        (admin(Method::GET, &format!("/api/v1/entitlements/{unknown}")), StatusCode::NOT_FOUND, "ENTITLEMENT_NOT_FOUND"),
        (admin(Method::PUT, &format!("/api/v1/entitlements/{unknown}")).json(&json!({"name": "X"})), StatusCode::NOT_FOUND, "ENTITLEMENT_NOT_FOUND"),
        (admin(Method::DELETE, &format!("/api/v1/entitlements/{unknown}")), StatusCode::NOT_FOUND, "ENTITLEMENT_NOT_FOUND"),
        (admin(Method::GET, &format!("/api/v1/policies/{unknown}")), StatusCode::NOT_FOUND, "POLICY_NOT_FOUND"),
        (admin(Method::PUT, &format!("/api/v1/policies/{unknown}")).json(&json!({"name": "X"})), StatusCode::NOT_FOUND, "POLICY_NOT_FOUND"),
        (admin(Method::POST, &format!("/api/v1/policies/{unknown}/archive")), StatusCode::NOT_FOUND, "POLICY_NOT_FOUND"),
        (admin(Method::POST, &format!("/api/v1/policies/{unknown}/unarchive")), StatusCode::NOT_FOUND, "POLICY_NOT_FOUND"),
        (admin(Method::POST, &format!("/api/v1/policies/{unknown}/entitlements")).json(&json!({"codes": ["export"]})), StatusCode::NOT_FOUND, "POLICY_NOT_FOUND"),
        (admin(Method::DELETE, &format!("/api/v1/policies/{unknown}/entitlements/export")), StatusCode::NOT_FOUND, "POLICY_NOT_FOUND"),
    ] {
        assert_refused(&app, request, status, code).await;
    }

    // Unknown entitlements are named, on creation, change and attachment.
    for request in [
        admin(Method::POST, "/api/v1/policies").json(&json!({"product_id": desktop["id"], "name": "P", "code": "p", "max_devices": 1, "entitlements": ["export", "ghost", "phantom"]})),
        admin(Method::PUT, &pro_path).json(&json!({"entitlements": ["ghost", "export", "phantom"]})),
        admin(Method::POST, &format!("{pro_path}/entitlements")).json(&json!({"codes": ["phantom", "ghost"]})),
    ] {
        let problem = assert_refused(&app, request, unprocessable, "UNKNOWN_ENTITLEMENT").await;
        let mut named: Vec<&str> = problem["unknown_entitlements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        named.sort_unstable();
        assert_eq!(named, ["ghost", "phantom"], "{problem}");
    }

    // The fields of a later issue (check-out files) are refused by name, not ignored.
    for field in ["max_checkouts", "checkout_window"] {
        let mut body =
            json!({"product_id": desktop["id"], "name": "P", "code": "p", "max_devices": 1});
        body[field] = json!("node_locked");
        let problem = assert_refused(
            &app,
            admin(Method::POST, "/api/v1/policies").json(&body),
            unprocessable,
            "UNSUPPORTED_FIELD",
        )
        .await;
        assert_eq!(problem["field"], field);
        assert!(problem["detail"].as_str().unwrap().contains(field));
        let problem = assert_refused(
            &app,
            admin(Method::PUT, &pro_path).json(&json!({field: null})),
            unprocessable,
            "UNSUPPORTED_FIELD",
        )
        .await;
        assert_eq!(problem["field"], field);
    }
    // The code and product of a policy never change.
    assert_refused(
        &app,
        admin(Method::PUT, &pro_path).json(&json!({"code": "other"})),
        unprocessable,
        "INVALID_BODY",
    )
    .await;
}

#[tokio::test]
async fn auditors_read_the_catalogue_and_may_not_change_it() {
    let app = spawn_app().await;
    let desktop = product(&app, "desktop").await;
    let export = entitlement(&app, "export").await;
    let pro = policy(&app, &desktop["id"], "pro", &["export"]).await;
    accounts::create_admin(
        &app.server.admins,
        "catalogue-auditor@flowlytix.test",
        "auditor-password-123",
        Role::Auditor,
        EventMetadata::system(Utc::now()),
    )
    .await
    .expect("create the auditor");
    let token = app
        .login("catalogue-auditor@flowlytix.test", "auditor-password-123")
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_auditor = |method: Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&token)
    };
    let (product_id, entitlement_id, policy_id) = (
        desktop["id"].as_str().unwrap(),
        export["id"].as_str().unwrap(),
        pro["id"].as_str().unwrap(),
    );
    for path in [
        "/api/v1/products".to_owned(),
        format!("/api/v1/products/{product_id}"),
        "/api/v1/entitlements".to_owned(),
        format!("/api/v1/entitlements/{entitlement_id}"),
        "/api/v1/policies".to_owned(),
        format!("/api/v1/policies/{policy_id}"),
    ] {
        expect(as_auditor(Method::GET, &path), StatusCode::OK).await;
    }
    let writes = [
        as_auditor(Method::POST, "/api/v1/products").json(&json!({"name": "X", "code": "x"})),
        as_auditor(Method::PUT, &format!("/api/v1/products/{product_id}"))
            .json(&json!({"name": "X"})),
        as_auditor(Method::DELETE, &format!("/api/v1/products/{product_id}")),
        as_auditor(Method::POST, "/api/v1/entitlements").json(&json!({"name": "X", "code": "x"})),
        as_auditor(
            Method::PUT,
            &format!("/api/v1/entitlements/{entitlement_id}"),
        )
        .json(&json!({"name": "X"})),
        as_auditor(
            Method::DELETE,
            &format!("/api/v1/entitlements/{entitlement_id}"),
        ),
        as_auditor(Method::POST, "/api/v1/policies")
            .json(&json!({"product_id": product_id, "name": "P", "code": "p", "max_devices": 1})),
        as_auditor(Method::PUT, &format!("/api/v1/policies/{policy_id}"))
            .json(&json!({"name": "X"})),
        as_auditor(
            Method::POST,
            &format!("/api/v1/policies/{policy_id}/archive"),
        ),
        as_auditor(
            Method::POST,
            &format!("/api/v1/policies/{policy_id}/unarchive"),
        ),
        as_auditor(
            Method::POST,
            &format!("/api/v1/policies/{policy_id}/entitlements"),
        )
        .json(&json!({"codes": ["export"]})),
        as_auditor(
            Method::DELETE,
            &format!("/api/v1/policies/{policy_id}/entitlements/export"),
        ),
    ];
    for write in writes {
        assert_refused(&app, write, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
}

#[tokio::test]
async fn creations_are_idempotent_and_codes_unique_even_at_once() {
    let app = spawn_app().await;
    let desktop = product(&app, "desktop").await;
    let creations = [
        (
            "/api/v1/products",
            json!({"name": "Server", "code": "server"}),
        ),
        (
            "/api/v1/entitlements",
            json!({"name": "Sync", "code": "sync"}),
        ),
        (
            "/api/v1/policies",
            json!({"product_id": desktop["id"], "name": "Team", "code": "team", "max_devices": 10}),
        ),
    ];
    for (path, body) in &creations {
        let send = || {
            app.admin(Method::POST, path)
                .header("Idempotency-Key", format!("create {path}"))
                .json(body)
                .send()
        };
        let first = send().await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await.unwrap();
        let before = app.event_count().await;
        let again = send().await.unwrap();
        assert_eq!(again.status(), StatusCode::CREATED, "{path}");
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.json::<Value>().await.unwrap(), first);
        assert_eq!(
            app.event_count().await,
            before,
            "{path}: a replay wrote events"
        );
        // The same key for another body is refused.
        let mut other = body.clone();
        other["name"] = json!("Other");
        let response = app
            .admin(Method::POST, path)
            .header("Idempotency-Key", format!("create {path}"))
            .json(&other)
            .send()
            .await
            .unwrap();
        assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
        )
        .await;
    }

    // Two creations with one code at the same moment: one is made, the other refused.
    let at_once = [
        (
            "/api/v1/products",
            json!({"name": "Mobile", "code": "mobile"}),
            "PRODUCT_EXISTS",
        ),
        (
            "/api/v1/entitlements",
            json!({"name": "Export", "code": "export"}),
            "ENTITLEMENT_EXISTS",
        ),
        (
            "/api/v1/policies",
            json!({"product_id": desktop["id"], "name": "Solo", "code": "solo", "max_devices": 1}),
            "POLICY_EXISTS",
        ),
    ];
    for (path, body, code) in at_once {
        let (a, b) = tokio::join!(
            app.admin(Method::POST, path).json(&body).send(),
            app.admin(Method::POST, path).json(&body).send(),
        );
        let mut answers = [a.unwrap(), b.unwrap()];
        answers.sort_by_key(|r| r.status());
        let [made, refused] = answers;
        assert_eq!(made.status(), StatusCode::CREATED, "{path}");
        assert_problem(refused, StatusCode::CONFLICT, code).await;
    }
}

#[tokio::test]
async fn what_is_named_is_not_deleted() {
    let app = spawn_app().await;
    let desktop = product(&app, "desktop").await;
    let export = entitlement(&app, "export").await;
    let legacy = entitlement(&app, "legacy").await;
    let pro = policy(&app, &desktop["id"], "pro", &["export"]).await;
    let product_path = format!("/api/v1/products/{}", desktop["id"].as_str().unwrap());
    let export_path = format!("/api/v1/entitlements/{}", export["id"].as_str().unwrap());
    let pro_path = format!("/api/v1/policies/{}", pro["id"].as_str().unwrap());

    // Archived or not, a policy names its product and its entitlements.
    expect(
        app.admin(Method::POST, &format!("{pro_path}/archive")),
        StatusCode::OK,
    )
    .await;
    assert_refused(
        &app,
        app.admin(Method::DELETE, &product_path),
        StatusCode::CONFLICT,
        "PRODUCT_IN_USE",
    )
    .await;
    assert_refused(
        &app,
        app.admin(Method::DELETE, &export_path),
        StatusCode::CONFLICT,
        "ENTITLEMENT_IN_USE",
    )
    .await;
    expect(
        app.admin(Method::DELETE, &format!("{pro_path}/entitlements/export")),
        StatusCode::OK,
    )
    .await;
    expect(app.admin(Method::DELETE, &export_path), StatusCode::OK).await;
    // The product stays named by its policy: policies are never deleted.
    assert_refused(
        &app,
        app.admin(Method::DELETE, &product_path),
        StatusCode::CONFLICT,
        "PRODUCT_IN_USE",
    )
    .await;

    // A live subscription that lists an entitlement among its features names it; a deleted
    // one does not.
    let subscription = app
        .create_subscription(
            json!({"customer_email": "ann@example.com", "customer_name": "Ann",
                                    "plan": "basic", "max_devices": 1, "features": ["legacy"]}),
        )
        .await;
    let position = subscription["position"].clone();
    list(&app, "/api/v1/subscriptions", &position).await;
    let legacy_path = format!("/api/v1/entitlements/{}", legacy["id"].as_str().unwrap());
    assert_refused(
        &app,
        app.admin(Method::DELETE, &legacy_path),
        StatusCode::CONFLICT,
        "ENTITLEMENT_IN_USE",
    )
    .await;
    let deleted = expect(
        app.admin(
            Method::DELETE,
            &format!(
                "/api/v1/subscriptions/{}",
                subscription["id"].as_str().unwrap()
            ),
        ),
        StatusCode::OK,
    )
    .await;
    list(&app, "/api/v1/subscriptions", &deleted["position"]).await;
    expect(app.admin(Method::DELETE, &legacy_path), StatusCode::OK).await;
}

/// The three catalogue lists as the API shows them.
async fn catalogue_lists(app: &TestApp) -> Vec<Value> {
    let mut lists = Vec::new();
    for path in [
        "/api/v1/products",
        "/api/v1/entitlements",
        "/api/v1/policies",
    ] {
        lists.push(
            expect(
                app.admin(Method::GET, &format!("{path}?per_page=200")),
                StatusCode::OK,
            )
            .await,
        );
    }
    lists
}

#[tokio::test]
async fn a_replay_rebuilds_the_catalogue_and_its_events_reach_the_feed() {
    let app = spawn_app().await;
    let desktop = product(&app, "desktop").await;
    let gone = product(&app, "gone").await;
    entitlement(&app, "export").await;
    let pro = policy(&app, &desktop["id"], "pro", &["export"]).await;
    let pro_path = format!("/api/v1/policies/{}", pro["id"].as_str().unwrap());
    expect(
        app.admin(Method::PUT, &pro_path)
            .json(&json!({"max_devices": 7})),
        StatusCode::OK,
    )
    .await;
    expect(
        app.admin(Method::POST, &format!("{pro_path}/archive")),
        StatusCode::OK,
    )
    .await;
    let last = expect(
        app.admin(
            Method::DELETE,
            &format!("/api/v1/products/{}", gone["id"].as_str().unwrap()),
        ),
        StatusCode::OK,
    )
    .await;
    list(&app, "/api/v1/policies", &last["position"]).await;
    app.wait_for_read_models().await;
    let live = catalogue_lists(&app).await;
    assert_eq!(codes(&live[0]), ["desktop"]);
    assert_eq!(live[2]["items"][0]["max_devices"], 7);
    assert_eq!(live[2]["items"][0]["archived"], true);

    // Rows lost (or never written): a replay rebuilds them from the events alone.
    flowlytix_projections::with_db!(&app.db, pool => {
        for table in ["rm_products", "rm_entitlements", "rm_policies"] {
            sqlx::query(&format!("delete from {table}")).execute(pool).await.unwrap();
        }
    });
    assert_eq!(catalogue_lists(&app).await[0]["total"], 0);
    flowlytix_projections::replay::replay(&app.db, &|_| {})
        .await
        .expect("replay");
    // On PostgreSQL a replay reads the log below the horizon of every open transaction; the
    // projectors bring in the rest. Re-read until the lists agree.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rebuilt = catalogue_lists(&app).await;
        if rebuilt == live {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuilt catalogue differs: {rebuilt:?} vs {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every catalogue event is in the feed, in commit order.
    let mut seen = Vec::new();
    for aggregate_type in ["Product", "Entitlement", "Policy"] {
        let feed = expect(
            app.admin(
                Method::GET,
                &format!("/api/v1/events?aggregate_type={aggregate_type}"),
            ),
            StatusCode::OK,
        )
        .await;
        for item in feed["items"].as_array().unwrap() {
            assert_eq!(item["aggregate_type"], aggregate_type);
            assert!(item["metadata"]["actor"].is_string());
            seen.push(item["event_type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        seen,
        [
            "ProductCreated",
            "ProductCreated",
            "ProductDeleted",
            "EntitlementCreated",
            "PolicyCreated",
            "PolicyUpdated",
            "PolicyArchived",
        ]
    );
}
