//! The server's HTTP API, as far as the bench speaks it: sign-in, creating subscriptions,
//! activating devices, `/health`.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::BoxError;

/// A signed-in client of one server.
pub struct Bench {
    pub client: Client,
    pub base: String,
    pub token: String,
    /// Tells this run's customers and fingerprints from earlier runs' on the same database.
    pub run_id: String,
}

pub async fn login(
    client: &Client,
    base: &str,
    email: &str,
    password: &str,
) -> Result<String, BoxError> {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if status != StatusCode::OK {
        return Err(format!("admin login failed: {status} {body}").into());
    }
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "login answer has no access_token".into())
}

impl Bench {
    pub async fn create_subscription(
        &self,
        label: &str,
        max_devices: u32,
    ) -> Result<String, BoxError> {
        let response = self
            .client
            .post(format!("{}/api/v1/subscriptions", self.base))
            .bearer_auth(&self.token)
            .json(&json!({
                "customer_email": format!("bench-{}-{label}@example.com", self.run_id),
                "customer_name": format!("Bench {label}"),
                "plan": "pro",
                "max_devices": max_devices,
                "features": ["export", "sync"],
            }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status != StatusCode::CREATED {
            return Err(format!("create subscription: {status} {body}").into());
        }
        body["license_key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "create subscription: no license_key in the answer".into())
    }

    pub async fn activate(&self, license_key: &str, fingerprint: &str) -> Result<(), BoxError> {
        let response = self
            .client
            .post(format!("{}/api/v1/licensing/activate", self.base))
            .json(&activate_body(license_key, fingerprint))
            .send()
            .await?;
        let status = response.status();
        if status != StatusCode::CREATED {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("activate: {status} {body}").into());
        }
        response.bytes().await?;
        Ok(())
    }

    pub async fn health(&self) -> Result<Value, BoxError> {
        Ok(self
            .client
            .get(format!("{}/health", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Events not yet applied, summed over the projectors `/health` lists; `None` when the
    /// server does not answer or lists no projector (its database is down).
    pub async fn projector_lag(&self) -> Option<i64> {
        let health = self.health().await.ok()?;
        let projectors = health["projectors"].as_array().filter(|p| !p.is_empty())?;
        Some(
            projectors
                .iter()
                .map(|p| p["lag"].as_i64().unwrap_or(0))
                .sum(),
        )
    }
}

pub fn activate_body(license_key: &str, fingerprint: &str) -> Value {
    json!({
        "license_key": license_key,
        "device": {"fingerprint": fingerprint, "name": format!("bench {fingerprint}"), "platform": "linux"},
    })
}
