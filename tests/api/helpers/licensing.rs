//! The licensing endpoints as a device's application calls them.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::TestApp;

impl TestApp {
    pub async fn activate(&self, license_key: &str, fingerprint: &str) -> Response {
        self.anon(Method::POST, "/api/v1/licensing/activate")
            .json(&json!({"license_key": license_key, "device": {"fingerprint": fingerprint, "name": format!("device {fingerprint}"), "platform": "linux"}}))
            .send()
            .await
            .expect("activate request")
    }

    pub async fn validate(&self, body: Value) -> Value {
        let response = self
            .anon(Method::POST, "/api/v1/licensing/validate")
            .json(&body)
            .send()
            .await
            .expect("validate");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("validate body")
    }
}
