//! What a receiver gets of a queued delivery. The queue keeps the event as the feed shows
//! it (`projections::webhooks::delivery_body`); the request metadata that identifies a
//! person, the client's IP address and user agent, leaves the server only when
//! `WEBHOOK_INCLUDE_REQUEST_METADATA` says so. Done as it is sent, not as it is queued, so
//! the setting also covers deliveries queued before it changed.

use std::borrow::Cow;

use serde_json::Value;

/// The metadata fields left out unless the operator includes them.
const PERSONAL_METADATA: [&str; 2] = ["ip", "user_agent"];

/// The body to sign and send for a queued `body`.
pub fn outgoing(body: &str, include_request_metadata: bool) -> Cow<'_, str> {
    if include_request_metadata {
        return Cow::Borrowed(body);
    }
    let Ok(mut delivery) = serde_json::from_str::<Value>(body) else {
        // Not JSON: not a body the projector wrote, so it holds no metadata to leave out.
        return Cow::Borrowed(body);
    };
    let Some(metadata) = delivery
        .pointer_mut("/data/metadata")
        .and_then(Value::as_object_mut)
    else {
        return Cow::Borrowed(body);
    };
    let before = metadata.len();
    metadata.retain(|key, _| !PERSONAL_METADATA.contains(&key.as_str()));
    if metadata.len() == before {
        return Cow::Borrowed(body);
    }
    Cow::Owned(delivery.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn queued() -> String {
        json!({"id": "Subscription:1:1", "type": "SubscriptionCreated", "created_at": "2027-01-01T00:00:00Z",
            "data": {"payload": {"ip": "kept: not metadata"}, "metadata": {"actor": "admin-1", "request_id": "req-1",
                "ip": "203.0.113.7", "user_agent": "curl/8", "occurred_at": "2027-01-01T00:00:00Z"}}})
        .to_string()
    }

    #[test]
    fn ip_and_user_agent_are_left_out_by_default() {
        let sent: Value = serde_json::from_str(&outgoing(&queued(), false)).unwrap();
        assert_eq!(
            sent["data"]["metadata"],
            json!({"actor": "admin-1", "request_id": "req-1", "occurred_at": "2027-01-01T00:00:00Z"})
        );
        assert_eq!(sent["data"]["payload"]["ip"], "kept: not metadata");
        assert_eq!(sent["type"], "SubscriptionCreated");
    }

    #[test]
    fn included_when_the_operator_says_so() {
        let body = queued();
        assert_eq!(outgoing(&body, true), body);
    }

    #[test]
    fn a_body_without_them_goes_as_queued() {
        let body = json!({"data": {"metadata": {"actor": "system"}}}).to_string();
        assert!(matches!(outgoing(&body, false), Cow::Borrowed(_)));
    }
}
