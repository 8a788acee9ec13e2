//! Events are forever: a log written by an earlier build still reads. The fixture is the
//! `events` table of an embedded server (2026-12-07) after a workload touching every kind of
//! change, and the snapshot a subscription of it folded to. Every payload must deserialize,
//! fold, and serialize back to the same JSON; so must the snapshot.

use cqrs_es::Aggregate;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{AdminUser, Subscription, WebhookEndpoint};

#[derive(serde::Deserialize)]
struct StoredEvent {
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    payload: String,
}

const LOG: &str = include_str!("../fixtures/event-log-2026-12-07.json");
const SNAPSHOT: &str = include_str!("../fixtures/subscription-snapshot-2026-12-07.json");

fn stored_log() -> Vec<StoredEvent> {
    serde_json::from_str(LOG).expect("the fixture log is JSON")
}

/// Reads one payload as `A`'s event, checks it writes back to the same JSON and names the
/// same type, and folds it into `aggregate`.
fn fold<A: Aggregate>(aggregate: &mut A, stored: &StoredEvent)
where
    A::Event: DeserializeOwned + Serialize,
{
    let event: A::Event = serde_json::from_str(&stored.payload)
        .unwrap_or_else(|e| panic!("{} no longer reads: {e}", stored.event_type));
    let written: Value = serde_json::to_value(&event).expect("an event serializes");
    let stored_json: Value = serde_json::from_str(&stored.payload).expect("stored JSON");
    assert_eq!(
        written, stored_json,
        "{} writes back differently",
        stored.event_type
    );
    assert_eq!(cqrs_es::DomainEvent::event_type(&event), stored.event_type);
    aggregate.apply(event);
}

fn folded_subscriptions() -> Vec<(String, Subscription)> {
    let mut subscriptions: Vec<(String, Subscription)> = Vec::new();
    for stored in stored_log() {
        match stored.aggregate_type.as_str() {
            "Subscription" => {
                let at = match subscriptions
                    .iter()
                    .position(|(id, _)| *id == stored.aggregate_id)
                {
                    Some(at) => at,
                    None => {
                        subscriptions.push((stored.aggregate_id.clone(), Subscription::default()));
                        subscriptions.len() - 1
                    }
                };
                fold(&mut subscriptions[at].1, &stored);
            }
            "AdminUser" => fold(&mut AdminUser::default(), &stored),
            "WebhookEndpoint" => fold(&mut WebhookEndpoint::default(), &stored),
            other => panic!("unknown aggregate type {other}"),
        }
    }
    subscriptions
}

#[test]
fn every_event_of_an_earlier_build_reads_folds_and_writes_back_the_same() {
    let subscriptions = folded_subscriptions();
    assert_eq!(subscriptions.len(), 2);
    assert_eq!(stored_log().len(), 26);
}

#[test]
fn a_snapshot_of_an_earlier_build_reads_and_writes_back_the_same() {
    let (_, first) = folded_subscriptions().remove(0);
    let stored: Value = serde_json::from_str(SNAPSHOT).expect("stored snapshot JSON");
    let read: Subscription = serde_json::from_value(stored.clone()).expect("the snapshot reads");
    assert_eq!(read, first, "the snapshot is the folded log");
    assert_eq!(serde_json::to_value(&read).expect("serializes"), stored);
}

/// The log predates policies: its subscriptions fold to ones of their own, whose direct
/// changes (the log has a device limit and a period changed) record no overrides, and which
/// decide without any policy in the command.
#[test]
fn a_log_from_before_policies_folds_to_subscriptions_of_their_own() {
    use crate::{
        DeviceDetails, DeviceInfo, SubscriptionAction, SubscriptionCommand, SubscriptionError,
        SubscriptionEvent,
    };

    let subscriptions = folded_subscriptions();
    for (id, subscription) in &subscriptions {
        let state = subscription.state().expect("created");
        assert_eq!(state.policy_id, None, "{id}");
        assert!(state.overrides.is_empty(), "{id}");
        assert_eq!(state.deadline_notices, None, "{id}");
    }
    let (_, canceled) = &subscriptions[0];
    let state = canceled.state().expect("created");
    assert_eq!(state.max_devices_under(None), 5);
    let deadlines = |at| {
        SubscriptionCommand::new(
            at,
            SubscriptionAction::RecordDeadlines {
                reminder_days: vec![7, 1],
            },
        )
    };
    // Canceled: no deadline notices, and no policy is asked for.
    let after_its_end = state.expires_at.expect("it has an end") + chrono::Duration::days(1);
    assert_eq!(canceled.decide(deadlines(after_its_end)), Ok(vec![]));
    // Before its cancelation it activated devices, and still does, with no policy version.
    let mut active = Subscription::default();
    for stored in stored_log()
        .iter()
        .filter(|e| e.aggregate_id == subscriptions[0].0)
        .take_while(|e| e.event_type != "SubscriptionCanceled")
    {
        fold(&mut active, stored);
    }
    let at = after_its_end - chrono::Duration::days(30);
    let device = DeviceDetails {
        device_id: crate::DeviceId(uuid::Uuid::from_u128(1)),
        fingerprint_hash: crate::Sha256Hex::parse(&"f".repeat(64)).expect("a hash"),
        info: DeviceInfo::default(),
    };
    let activation =
        SubscriptionCommand::new(at, SubscriptionAction::ActivateDevice(device.clone()));
    assert_eq!(
        active.decide(activation),
        Ok(vec![SubscriptionEvent::DeviceActivated {
            device_id: device.device_id,
            fingerprint_hash: device.fingerprint_hash,
            info: DeviceInfo::default(),
            active_devices: 1,
            at,
            policy_version: None,
            lease: None,
        }])
    );
    let (_, deleted) = &subscriptions[1];
    assert_eq!(
        deleted.decide(deadlines(after_its_end)),
        Err(SubscriptionError::Deleted)
    );
}
