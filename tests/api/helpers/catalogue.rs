//! Catalogue fixtures the suites share: JSON bodies with fields laid over them, and a
//! product with policies.

use serde_json::{json, Value};

use super::ApiClient;

/// `base` with every field of `fields` set over it.
pub fn with_fields(mut base: Value, fields: &Value) -> Value {
    for (field, value) in fields.as_object().expect("fields are a JSON object") {
        base[field] = value.clone();
    }
    base
}

/// A product `app` and one policy per `(code, settings)`, 3 seats unless set; returns the
/// policies as created, in order.
pub async fn product_with_policies(api: &ApiClient, policies: &[(&str, Value)]) -> Vec<Value> {
    let product = api
        .create_at("/api/v1/products", json!({"name": "App", "code": "app"}))
        .await;
    let mut created = Vec::new();
    for (code, settings) in policies {
        let base = json!({"product_id": product["id"], "name": code, "code": code,
            "max_devices": 3});
        created.push(
            api.create_at("/api/v1/policies", with_fields(base, settings))
                .await,
        );
    }
    created
}
