//! The API reference names every event type the aggregates define (webhook `event_types`
//! and the feed's `event_type` take these names).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use cqrs_es::DomainEvent;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::webhook_endpoint::EVENT_TYPES;
use crate::{
    AdminEvent, EntitlementEvent, PolicyEvent, ProductEvent, SubscriptionEvent,
    WebhookEndpointEvent,
};

/// Every variant of an event enum, as serde's derive knows them: asked for a variant that
/// does not exist, serde lists all the ones that do. The store reads an event back by its
/// `event_type` as this variant name, so the two must be the same.
fn variants<E: DeserializeOwned>() -> BTreeSet<String> {
    let error = serde_json::from_value::<E>(json!({ "": null }))
        .err()
        .unwrap()
        .to_string();
    let expected = &error[error.find("expected").unwrap()..];
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The type names that sample events report through `DomainEvent::event_type`, the
/// function the store and the feed use. The samples are in the stored JSON form.
fn reported<E: DeserializeOwned + DomainEvent>(samples: Vec<Value>) -> BTreeSet<String> {
    samples
        .into_iter()
        .map(|sample| serde_json::from_value::<E>(sample).unwrap().event_type())
        .collect()
}

const AT: &str = "2026-01-02T03:04:05Z";
const ID: &str = "00000000-0000-4000-8000-000000000001";
const HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn subscription_samples() -> Vec<Value> {
    vec![
        json!({"SubscriptionCreated": {"subscription_id": ID, "customer_email": "a@example.com",
            "customer_name": "A", "organization": null, "plan": "pro", "status": "active",
            "starts_at": AT, "expires_at": null, "trial_ends_at": null, "max_devices": 1,
            "features": [], "metadata": {}, "at": AT}}),
        json!({"SubscriptionPlanChanged": {"previous_plan": "pro", "plan": "team", "at": AT}}),
        json!({"SubscriptionDeviceLimitChanged": {"previous_max_devices": 1, "max_devices": 2, "at": AT}}),
        json!({"SubscriptionPeriodChanged": {"starts_at": AT, "expires_at": null, "trial_ends_at": null, "at": AT}}),
        json!({"SubscriptionDetailsUpdated": {"customer_email": null, "customer_name": "B",
            "features": null, "metadata": null, "at": AT}}),
        json!({"SubscriptionSuspended": {"previous_status": "active", "reason": null, "at": AT}}),
        json!({"SubscriptionResumed": {"previous_status": "suspended", "at": AT}}),
        json!({"SubscriptionMarkedPastDue": {"previous_status": "active", "at": AT}}),
        json!({"SubscriptionCanceled": {"previous_status": "active", "reason": null, "at": AT}}),
        json!({"SubscriptionDeleted": {"at": AT}}),
        json!({"LicenseKeyIssued": {"key_hash": HASH, "key_prefix": "FLX-AAAAA", "at": AT}}),
        json!({"LicenseKeyRegenerated": {"previous_key_hash": HASH, "key_hash": HASH,
            "key_prefix": "FLX-AAAAA", "at": AT}}),
        json!({"DeviceActivated": {"device_id": ID, "fingerprint_hash": HASH, "name": null,
            "platform": null, "os_version": null, "app_version": null, "hostname": null,
            "active_devices": 1, "at": AT}}),
        json!({"DeviceDeactivated": {"device_id": ID, "reason": "client", "active_devices": 0, "at": AT}}),
        json!({"DeviceUpdated": {"device_id": ID, "name": "laptop", "notes": null, "at": AT}}),
        json!({"DeviceLeaseTaken": {"device_id": ID,
            "lease": {"expires_at": AT, "seats_in_use": 1}, "at": AT}}),
        json!({"DeviceLeaseExpired": {"device_id": ID, "lease_expires_at": AT,
            "last_heartbeat_at": null, "seats_in_use": 0, "at": AT}}),
        json!({"DeviceRevived": {"device_id": ID, "lease": {"expires_at": AT, "seats_in_use": 1},
            "active_devices": 1, "at": AT}}),
        json!({"LicenseTokenIssued": {"device_id": ID, "token_id": ID, "expires_at": AT, "at": AT}}),
        json!({"SubscriptionPolicyChanged": {"previous_policy_id": null, "policy_id": ID,
            "policy_version": 1, "plan": "pro", "max_devices": 3, "features": [],
            "overrides": ["max_devices"], "at": AT}}),
        json!({"SubscriptionPeriodStarted": {"expires_at": AT, "policy_version": 1, "at": AT}}),
        json!({"SubscriptionExpiringSoon": {"expires_at": AT, "days_before": 7, "at": AT}}),
        json!({"SubscriptionExpired": {"expires_at": AT, "trial": false, "grace_until": null, "at": AT}}),
        json!({"SubscriptionGraceEnded": {"expires_at": AT, "grace_until": AT, "at": AT}}),
    ]
}

fn catalogue_samples() -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let products = vec![
        json!({"ProductCreated": {"product_id": ID, "code": "app", "name": "App", "url": null,
            "metadata": {}, "at": AT}}),
        json!({"ProductUpdated": {"name": "App", "url": null, "metadata": {}, "at": AT}}),
        json!({"ProductDeleted": {"at": AT}}),
    ];
    let entitlements = vec![
        json!({"EntitlementCreated": {"entitlement_id": ID, "code": "export", "name": "Export", "at": AT}}),
        json!({"EntitlementRenamed": {"name": "Export", "at": AT}}),
        json!({"EntitlementDeleted": {"at": AT}}),
    ];
    let policies = vec![
        json!({"PolicyCreated": {"policy_id": ID, "product_id": ID, "product_code": "app",
            "code": "pro", "name": "Pro", "max_devices": 3, "at": AT}}),
        json!({"PolicyUpdated": {"name": "Pro", "max_devices": 3, "duration": "P1Y", "at": AT}}),
        json!({"PolicyEntitlementsChanged": {"attached": ["export"], "detached": [],
            "entitlements": ["export"], "at": AT}}),
        json!({"PolicyArchived": {"at": AT}}),
        json!({"PolicyUnarchived": {"at": AT}}),
    ];
    (products, entitlements, policies)
}

fn admin_samples() -> Vec<Value> {
    vec![
        json!({"AdminCreated": {"admin_id": ID, "email": "a@example.com",
            "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "role": "admin", "at": AT}}),
        json!({"AdminRoleChanged": {"previous_role": "admin", "role": "auditor", "at": AT}}),
        json!({"AdminPasswordChanged": {"password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "at": AT}}),
        json!({"AdminDisabled": {"at": AT}}),
    ]
}

fn webhook_endpoint_samples() -> Vec<Value> {
    let sealed = format!("sealed:v1:{}", "A".repeat(64));
    vec![
        json!({"WebhookEndpointCreated": {"endpoint_id": ID, "url": "https://example.com/hook",
            "event_types": null, "description": null, "enabled": true, "sealed_secret": sealed, "at": AT}}),
        json!({"WebhookEndpointUpdated": {"url": "https://example.com/hook", "event_types": null,
            "description": null, "at": AT}}),
        json!({"WebhookEndpointSecretRotated": {"sealed_secret": sealed, "at": AT}}),
        json!({"WebhookEndpointDisabled": {"reason": "admin", "failing_since": null, "at": AT}}),
        json!({"WebhookEndpointEnabled": {"at": AT}}),
        json!({"WebhookEndpointDeleted": {"at": AT}}),
    ]
}

/// Every event type, by the name each event reports; fails when a variant has no sample.
fn every_event_type() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let (products, entitlements, policies) = catalogue_samples();
    for (variants, reported) in [
        (
            variants::<ProductEvent>(),
            reported::<ProductEvent>(products),
        ),
        (
            variants::<EntitlementEvent>(),
            reported::<EntitlementEvent>(entitlements),
        ),
        (variants::<PolicyEvent>(), reported::<PolicyEvent>(policies)),
        (
            variants::<SubscriptionEvent>(),
            reported::<SubscriptionEvent>(subscription_samples()),
        ),
        (
            variants::<AdminEvent>(),
            reported::<AdminEvent>(admin_samples()),
        ),
        (
            variants::<WebhookEndpointEvent>(),
            reported::<WebhookEndpointEvent>(webhook_endpoint_samples()),
        ),
    ] {
        assert_eq!(
            reported, variants,
            "one sample per variant, each reporting its variant's name"
        );
        all.extend(reported);
    }
    all
}

/// The rows of docs/api.md's "Event types" section: `| \`Name\` | … |`.
fn documented_event_types() -> BTreeSet<String> {
    let doc = include_str!("../../docs/api.md");
    let section = doc.split("\n## Event types\n").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_api_reference_lists_every_event_type_and_no_other() {
    let defined = every_event_type();
    assert!(defined.contains("SubscriptionCreated") && defined.contains("AdminCreated"));
    assert_eq!(
        documented_event_types(),
        defined,
        "docs/api.md's \"Event types\" table against the aggregates' events"
    );
}

#[test]
fn webhooks_accept_every_event_type() {
    let accepted: BTreeSet<String> = EVENT_TYPES.iter().map(|t| t.to_string()).collect();
    assert_eq!(accepted, every_event_type());
}
