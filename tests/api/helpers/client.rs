//! `ApiClient`: how a test talks to any server over HTTP (the in-process `TestApp`, a second
//! instance on the same database, or the real binary as a child process): a base URL and
//! the bootstrap admin's token, for requests as that admin or with no credentials. Also
//! signing in and polling `/health` at any base URL.

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use super::{Licensing, ADMIN_EMAIL, ADMIN_PASSWORD};

#[derive(Clone)]
pub struct ApiClient {
    pub client: Client,
    /// e.g. `http://127.0.0.1:40123`
    pub base: String,
    /// The bootstrap admin's access token; it works on every instance sharing the keys.
    pub token: String,
}

impl ApiClient {
    /// Signs in as the bootstrap admin at `base` with a client of its own.
    pub async fn login(base: &str) -> Self {
        let client = Client::new();
        let token = login_at(&client, base).await;
        Self {
            client,
            base: base.to_owned(),
            token,
        }
    }

    /// The same client and token, talking to the server at `base`.
    pub fn at(&self, base: &str) -> Self {
        Self {
            base: base.to_owned(),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with no credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request as the bootstrap admin.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.anon(method, path).bearer_auth(&self.token)
    }

    /// `GET path` as the admin; asserts 200 and returns the body.
    pub async fn get(&self, path: &str) -> Value {
        expect_status(
            self.admin(Method::GET, path).send().await.expect("GET"),
            StatusCode::OK,
            path,
        )
        .await
    }

    /// `GET path?query` as the admin; asserts 200 and returns the body.
    pub async fn get_query(&self, path: &str, query: &[(&str, String)]) -> Value {
        let response = self
            .admin(Method::GET, path)
            .query(query)
            .send()
            .await
            .expect("GET");
        expect_status(response, StatusCode::OK, &format!("{path} {query:?}")).await
    }

    /// Creates a subscription; asserts 201 and returns the body (with `license_key`).
    pub async fn create(&self, body: Value) -> Value {
        let response = self
            .admin(Method::POST, "/api/v1/subscriptions")
            .json(&body)
            .send()
            .await
            .expect("create");
        expect_status(response, StatusCode::CREATED, "create").await
    }

    /// `POST path` as the admin (a catalogue item, a subscription, a webhook...); asserts
    /// 201 and returns the body.
    pub async fn create_at(&self, path: &str, body: Value) -> Value {
        let response = self
            .admin(Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("POST");
        expect_status(
            response,
            StatusCode::CREATED,
            &format!("POST {path} {body}"),
        )
        .await
    }

    /// A subscription with `max_devices`, on `plan`, for a customer numbered `n`; returns
    /// its id and license key.
    pub async fn create_simple(&self, n: usize, plan: &str, max_devices: u32) -> (String, String) {
        let body = self
            .create(json!({
                "customer_email": format!("customer{n}@example.com"),
                "customer_name": format!("Customer {n}"),
                "organization": format!("Org {n}"),
                "plan": plan,
                "max_devices": max_devices,
                "features": ["export"],
            }))
            .await;
        (
            body["id"].as_str().unwrap().to_owned(),
            body["license_key"].as_str().unwrap().to_owned(),
        )
    }

    /// `PUT /api/v1/subscriptions/{id}`; asserts 200 and returns the body.
    pub async fn put(&self, id: &str, body: Value) -> Value {
        let path = format!("/api/v1/subscriptions/{id}");
        let response = self
            .admin(Method::PUT, &path)
            .json(&body)
            .send()
            .await
            .expect("PUT");
        expect_status(response, StatusCode::OK, &format!("PUT {path} {body}")).await
    }

    /// This server's licensing API.
    pub fn licensing(&self) -> Licensing {
        Licensing::new(self.client.clone(), &self.base)
    }

    /// Activates a device (app version 2.1.0); asserts 201 and returns the body.
    pub async fn activate(&self, key: &str, fingerprint: &str, platform: &str) -> Value {
        let device = json!({"fingerprint": fingerprint, "name": format!("device {fingerprint}"),
            "platform": platform, "app_version": "2.1.0"});
        self.licensing()
            .activate_device(key, device)
            .await
            .expect_status(StatusCode::CREATED)
    }

    /// Deactivates a device as its client; asserts 204.
    pub async fn deactivate(&self, key: &str, fingerprint: &str) {
        self.licensing()
            .deactivate(key, fingerprint)
            .await
            .expect_status(StatusCode::NO_CONTENT);
    }

    /// Validates a license on a device; asserts 200 and returns the verdict.
    pub async fn validate(&self, key: &str, fingerprint: &str) -> Value {
        self.licensing().verdict(key, fingerprint).await
    }

    /// Every item of a paged list.
    pub async fn list_all(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        for page in 1.. {
            let body = self
                .get_query(
                    path,
                    &[("per_page", "200".into()), ("page", page.to_string())],
                )
                .await;
            let batch = body["items"].as_array().unwrap().clone();
            let total = body["total"].as_u64().unwrap() as usize;
            items.extend(batch.iter().cloned());
            if batch.is_empty() || items.len() >= total {
                break;
            }
        }
        items
    }

    /// `GET /health` (any status code).
    pub async fn health(&self) -> Value {
        health_at(&self.client, &self.base).await
    }

    /// Polls `/health` until the read models have converged; panics after `within`.
    pub async fn wait_for_read_models(&self, within: std::time::Duration) -> Value {
        wait_for_read_models_at(&self.client, &self.base, within).await
    }
}

/// Asserts the status (showing the body if it differs); returns the body as JSON, or
/// `Null` if it is not JSON.
async fn expect_status(response: Response, expected: StatusCode, what: &str) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, expected, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Signs in as the bootstrap admin at `base`; returns the access token.
pub async fn login_at(client: &Client, base: &str) -> String {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login request");
    assert_eq!(response.status(), StatusCode::OK, "login at {base}");
    let body: Value = response.json().await.expect("login body");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// `GET /health` of the server at `base` (any status code).
pub async fn health_at(client: &Client, base: &str) -> Value {
    let response = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health request");
    response.json().await.expect("health body")
}

/// Whether a `/health` body says that the read models have caught up with the log: every
/// projector's lag is 0 and the publisher's backlog is 0.
pub fn read_models_converged(health: &Value) -> bool {
    let projectors = health["projectors"].as_array().cloned().unwrap_or_default();
    health["database"] == "ok"
        && !projectors.is_empty()
        && projectors.iter().all(|p| p["lag"].as_i64() == Some(0))
        && health["publisher"]["backlog"].as_i64() == Some(0)
}

/// Polls `/health` at `base` until the read models have converged; panics with the last
/// answer after `within`. Returns the converged health.
pub async fn wait_for_read_models_at(
    client: &Client,
    base: &str,
    within: std::time::Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let health = match client.get(format!("{base}/health")).send().await {
            Ok(response) => response.json::<Value>().await.unwrap_or(Value::Null),
            Err(error) => json!({"request_error": error.to_string()}),
        };
        if read_models_converged(&health) {
            return health;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("the read models did not converge within {within:?}; last /health: {health}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
