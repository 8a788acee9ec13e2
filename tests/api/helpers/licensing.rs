//! The licensing endpoints as a device's application calls them: no credentials and, when
//! the test asks, an `x-request-id` of its own, by which it finds its requests in the logs
//! and in the events' metadata. A call returns the answer as it came (status, content type
//! and JSON body), a success or a problem alike, so that a test can assert on either.

use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use super::TestApp;

/// A server's answer: its status, content type and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// e.g. `application/json` or `application/problem+json`; empty when there is none.
    pub content_type: String,
    /// `Null` when the body is empty (204) or not JSON.
    pub body: Value,
}

impl Answer {
    /// Reads the whole answer. A body cut off (the server went away after its status line)
    /// reads as `Null`: the status was already given.
    pub async fn read(response: Response) -> Self {
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.unwrap_or_default();
        Self {
            status,
            content_type,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// Asserts the status (showing the body if it differs); returns the body.
    pub fn expect_status(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        self.body
    }

    /// Asserts a problem+json answer with this status and code, as `assert_problem` does;
    /// returns the problem.
    pub fn problem(self, status: StatusCode, code: &str) -> Value {
        assert_eq!(
            self.status, status,
            "expected {status} {code}: {}",
            self.body
        );
        assert_eq!(self.content_type, "application/problem+json");
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status.as_u16());
        self.body
    }

    /// A text field of the body (`token`, `device_id`, …).
    pub fn text(&self, field: &str) -> &str {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {}", self.body))
    }
}

/// The licensing API of one server.
#[derive(Clone)]
pub struct Licensing {
    client: Client,
    base: String,
    request_id: Option<String>,
    timeout: Option<Duration>,
}

impl Licensing {
    pub fn new(client: Client, base: &str) -> Self {
        Self {
            client,
            base: base.to_owned(),
            request_id: None,
            timeout: None,
        }
    }

    /// The same API, every request sending `x-request-id: id`.
    pub fn with_request_id(self, id: &str) -> Self {
        Self {
            request_id: Some(id.to_owned()),
            ..self
        }
    }

    /// The same API, every request giving up after `timeout` (a `try_` call then returns
    /// the error, the others panic).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..self
        }
    }

    /// `POST /api/v1/licensing/{endpoint}` with `body`, not sent yet (for `assert_refused`).
    pub fn request(&self, endpoint: &str, body: &Value) -> RequestBuilder {
        let mut request = self
            .client
            .request(
                Method::POST,
                format!("{}/api/v1/licensing/{endpoint}", self.base),
            )
            .json(body);
        if let Some(id) = &self.request_id {
            request = request.header("x-request-id", id);
        }
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        request
    }

    /// Sends `body` to `/api/v1/licensing/{endpoint}`; an error only when no answer came
    /// (the server is gone, or the timeout passed).
    pub async fn try_post(&self, endpoint: &str, body: &Value) -> reqwest::Result<Answer> {
        let response = self.request(endpoint, body).send().await?;
        Ok(Answer::read(response).await)
    }

    /// Sends `body` to `/api/v1/licensing/{endpoint}`, any body at all.
    pub async fn post(&self, endpoint: &str, body: &Value) -> Answer {
        self.try_post(endpoint, body)
            .await
            .unwrap_or_else(|error| panic!("POST /api/v1/licensing/{endpoint}: {error}"))
    }

    /// Activates the device `fingerprint`, named and on the platform `TestApp::activate`
    /// gives it.
    pub async fn activate(&self, key: &str, fingerprint: &str) -> Answer {
        let device = json!({"fingerprint": fingerprint, "name": format!("device {fingerprint}"), "platform": "linux"});
        self.activate_device(key, device).await
    }

    /// Activates a device described by the test (`{"fingerprint": …, "name": …, …}`).
    pub async fn activate_device(&self, key: &str, device: Value) -> Answer {
        self.post("activate", &activation(key, device)).await
    }

    pub async fn try_activate_device(&self, key: &str, device: Value) -> reqwest::Result<Answer> {
        self.try_post("activate", &activation(key, device)).await
    }

    pub async fn validate(&self, key: &str, fingerprint: &str) -> Answer {
        self.post(
            "validate",
            &json!({"license_key": key, "fingerprint": fingerprint}),
        )
        .await
    }

    /// Validation answers 200 with its verdict, valid or not: asserts the 200 and returns
    /// the verdict.
    pub async fn verdict(&self, key: &str, fingerprint: &str) -> Value {
        self.validate(key, fingerprint)
            .await
            .expect_status(StatusCode::OK)
    }

    pub async fn validate_token(&self, token: &str, fingerprint: &str) -> Answer {
        self.post(
            "validate",
            &json!({"token": token, "fingerprint": fingerprint}),
        )
        .await
    }

    pub async fn refresh(&self, token: &str) -> Answer {
        self.post("refresh", &json!({"token": token})).await
    }

    pub async fn deactivate(&self, key: &str, fingerprint: &str) -> Answer {
        self.post(
            "deactivate",
            &json!({"license_key": key, "fingerprint": fingerprint}),
        )
        .await
    }

    pub async fn deactivate_token(&self, token: &str, fingerprint: &str) -> Answer {
        self.post(
            "deactivate",
            &json!({"token": token, "fingerprint": fingerprint}),
        )
        .await
    }
}

fn activation(key: &str, device: Value) -> Value {
    json!({"license_key": key, "device": device})
}

impl TestApp {
    /// This app's licensing API.
    pub fn licensing(&self) -> Licensing {
        Licensing::new(self.client.clone(), &self.address)
    }

    pub async fn activate(&self, license_key: &str, fingerprint: &str) -> Response {
        self.anon(Method::POST, "/api/v1/licensing/activate")
            .json(&json!({"license_key": license_key, "device": {"fingerprint": fingerprint, "name": format!("device {fingerprint}"), "platform": "linux"}}))
            .send()
            .await
            .expect("activate request")
    }

    /// Validates (by key or by token: `body` as the endpoint takes it); asserts 200 and
    /// returns the verdict.
    pub async fn validate(&self, body: Value) -> Value {
        self.licensing()
            .post("validate", &body)
            .await
            .expect_status(StatusCode::OK)
    }
}
