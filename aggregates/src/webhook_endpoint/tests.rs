//! Given/when/then tests of the `WebhookEndpoint` aggregate: one test per rule and error.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use uuid::Uuid;

use super::*;
use crate::values::WebhookEndpointId;
use crate::ValueError;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn now() -> DateTime<Utc> {
    t0() + Duration::days(1)
}

fn id() -> WebhookEndpointId {
    WebhookEndpointId(Uuid::from_u128(7))
}

fn sealed(fill: char) -> SealedSecret {
    SealedSecret::parse(&format!("{SEALED_PREFIX}{}", fill.to_string().repeat(80))).unwrap()
}

fn settings() -> EndpointSettings {
    EndpointSettings {
        url: "https://hooks.example.com/flowlytix".into(),
        event_types: Some(vec!["SubscriptionCreated".into()]),
        description: Some("billing".into()),
    }
}

fn create(settings: EndpointSettings) -> WebhookEndpointCommand {
    WebhookEndpointCommand::Create {
        endpoint_id: id(),
        settings,
        enabled: true,
        sealed_secret: sealed('A'),
        at: t0(),
    }
}

fn created() -> Vec<WebhookEndpointEvent> {
    let settings = settings();
    vec![WebhookEndpointEvent::WebhookEndpointCreated {
        endpoint_id: id(),
        url: settings.url,
        event_types: settings.event_types,
        description: settings.description,
        enabled: true,
        sealed_secret: sealed('A'),
        at: t0(),
    }]
}

fn with(
    mut events: Vec<WebhookEndpointEvent>,
    more: WebhookEndpointEvent,
) -> Vec<WebhookEndpointEvent> {
    events.push(more);
    events
}

fn disabled() -> Vec<WebhookEndpointEvent> {
    with(
        created(),
        WebhookEndpointEvent::WebhookEndpointDisabled {
            reason: DisableReason::Admin,
            failing_since: None,
            at: t0(),
        },
    )
}

fn deleted() -> Vec<WebhookEndpointEvent> {
    with(
        created(),
        WebhookEndpointEvent::WebhookEndpointDeleted { at: t0() },
    )
}

fn given(events: Vec<WebhookEndpointEvent>) -> AggregateTestExecutor<WebhookEndpoint> {
    TestFramework::<WebhookEndpoint>::with(()).given(events)
}

fn update(change: EndpointChange) -> WebhookEndpointCommand {
    WebhookEndpointCommand::Update { change, at: now() }
}

fn every_non_create_command() -> Vec<WebhookEndpointCommand> {
    vec![
        update(EndpointChange::default()),
        WebhookEndpointCommand::RotateSecret {
            sealed_secret: sealed('B'),
            at: now(),
        },
        WebhookEndpointCommand::Disable {
            reason: DisableReason::Admin,
            failing_since: None,
            at: now(),
        },
        WebhookEndpointCommand::Enable { at: now() },
        WebhookEndpointCommand::Delete { at: now() },
    ]
}

#[test]
fn creating_records_the_settings_and_the_sealed_secret() {
    given(vec![])
        .when(create(settings()))
        .then_expect_events(created());
}

#[test]
fn an_endpoint_cannot_be_created_twice() {
    given(created())
        .when(create(settings()))
        .then_expect_error(WebhookEndpointError::AlreadyExists);
    given(deleted())
        .when(create(settings()))
        .then_expect_error(WebhookEndpointError::AlreadyExists);
}

#[test]
fn every_other_command_needs_an_existing_endpoint() {
    for command in every_non_create_command() {
        given(vec![])
            .when(command)
            .then_expect_error(WebhookEndpointError::NotFound);
    }
}

#[test]
fn a_deleted_endpoint_refuses_every_command() {
    for command in every_non_create_command() {
        given(deleted())
            .when(command)
            .then_expect_error(WebhookEndpointError::Deleted);
    }
}

#[test]
fn urls_must_be_absolute_http_or_https() {
    for url in [
        "",
        "hooks.example.com",
        "ftp://hooks.example.com/",
        "https://",
        "https:///path",
        "https://hooks.example.com/a b",
        "javascript:alert(1)",
    ] {
        given(vec![])
            .when(create(EndpointSettings {
                url: url.into(),
                ..settings()
            }))
            .then_expect_error(WebhookEndpointError::InvalidUrl { max: MAX_URL_LEN });
    }
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    given(vec![])
        .when(create(EndpointSettings {
            url: long,
            ..settings()
        }))
        .then_expect_error(WebhookEndpointError::InvalidUrl { max: MAX_URL_LEN });
    // The scheme's case does not matter; plain http is the server's policy, not the domain's.
    given(vec![])
        .when(create(EndpointSettings {
            url: "HTTP://127.0.0.1:9/x".into(),
            ..settings()
        }))
        .then_expect_events(vec![WebhookEndpointEvent::WebhookEndpointCreated {
            endpoint_id: id(),
            url: "HTTP://127.0.0.1:9/x".into(),
            event_types: settings().event_types,
            description: settings().description,
            enabled: true,
            sealed_secret: sealed('A'),
            at: t0(),
        }]);
}

#[test]
fn event_types_must_be_known_and_named_once() {
    given(vec![])
        .when(create(EndpointSettings {
            event_types: Some(vec!["SubscriptionExploded".into()]),
            ..settings()
        }))
        .then_expect_error(WebhookEndpointError::UnknownEventType(
            "SubscriptionExploded".into(),
        ));
    for types in [
        vec![],
        vec!["DeviceActivated".to_owned(), "DeviceActivated".to_owned()],
    ] {
        given(vec![])
            .when(create(EndpointSettings {
                event_types: Some(types),
                ..settings()
            }))
            .then_expect_error(WebhookEndpointError::InvalidEventTypes {
                max: MAX_EVENT_TYPES,
            });
    }
}

#[test]
fn descriptions_are_short_and_without_control_characters() {
    for description in ["x".repeat(MAX_DESCRIPTION_LEN + 1), "line\nbreak".into()] {
        given(vec![])
            .when(create(EndpointSettings {
                description: Some(description),
                ..settings()
            }))
            .then_expect_error(WebhookEndpointError::InvalidDescription {
                max: MAX_DESCRIPTION_LEN,
            });
    }
}

#[test]
fn an_update_records_the_full_new_settings() {
    given(created())
        .when(update(EndpointChange {
            url: Some("https://other.example.com/in".into()),
            event_types: Some(None),
            ..Default::default()
        }))
        .then_expect_events(vec![WebhookEndpointEvent::WebhookEndpointUpdated {
            url: "https://other.example.com/in".into(),
            event_types: None,
            description: Some("billing".into()),
            at: now(),
        }]);
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    given(created())
        .when(update(EndpointChange {
            url: Some(settings().url),
            enabled: Some(true),
            ..Default::default()
        }))
        .then_expect_events(vec![]);
}

#[test]
fn an_update_is_validated_like_a_creation() {
    given(created())
        .when(update(EndpointChange {
            url: Some("not a url".into()),
            ..Default::default()
        }))
        .then_expect_error(WebhookEndpointError::InvalidUrl { max: MAX_URL_LEN });
}

#[test]
fn switching_enabled_by_update_records_disabled_by_an_admin_or_enabled() {
    given(created())
        .when(update(EndpointChange {
            enabled: Some(false),
            ..Default::default()
        }))
        .then_expect_events(vec![WebhookEndpointEvent::WebhookEndpointDisabled {
            reason: DisableReason::Admin,
            failing_since: None,
            at: now(),
        }]);
    given(disabled())
        .when(update(EndpointChange {
            enabled: Some(true),
            description: Some(None),
            ..Default::default()
        }))
        .then_expect_events(vec![
            WebhookEndpointEvent::WebhookEndpointUpdated {
                url: settings().url,
                event_types: settings().event_types,
                description: None,
                at: now(),
            },
            WebhookEndpointEvent::WebhookEndpointEnabled { at: now() },
        ]);
}

#[test]
fn rotating_records_the_new_sealed_secret() {
    given(created())
        .when(WebhookEndpointCommand::RotateSecret {
            sealed_secret: sealed('B'),
            at: now(),
        })
        .then_expect_events(vec![WebhookEndpointEvent::WebhookEndpointSecretRotated {
            sealed_secret: sealed('B'),
            at: now(),
        }]);
}

#[test]
fn disabling_for_failure_records_since_when() {
    let since = t0() + Duration::hours(1);
    given(created())
        .when(WebhookEndpointCommand::Disable {
            reason: DisableReason::Failing,
            failing_since: Some(since),
            at: now(),
        })
        .then_expect_events(vec![WebhookEndpointEvent::WebhookEndpointDisabled {
            reason: DisableReason::Failing,
            failing_since: Some(since),
            at: now(),
        }]);
}

#[test]
fn disabling_a_disabled_endpoint_or_enabling_an_enabled_one_records_nothing() {
    given(disabled())
        .when(WebhookEndpointCommand::Disable {
            reason: DisableReason::Failing,
            failing_since: Some(t0()),
            at: now(),
        })
        .then_expect_events(vec![]);
    given(created())
        .when(WebhookEndpointCommand::Enable { at: now() })
        .then_expect_events(vec![]);
}

#[test]
fn enabling_a_disabled_endpoint_records_it() {
    given(disabled())
        .when(WebhookEndpointCommand::Enable { at: now() })
        .then_expect_events(vec![WebhookEndpointEvent::WebhookEndpointEnabled {
            at: now(),
        }]);
}

#[test]
fn deleting_records_it() {
    given(disabled())
        .when(WebhookEndpointCommand::Delete { at: now() })
        .then_expect_events(vec![WebhookEndpointEvent::WebhookEndpointDeleted {
            at: now(),
        }]);
}

#[test]
fn the_state_follows_the_events() {
    let mut endpoint = WebhookEndpoint::default();
    for event in with(
        disabled(),
        WebhookEndpointEvent::WebhookEndpointSecretRotated {
            sealed_secret: sealed('C'),
            at: now(),
        },
    ) {
        cqrs_es::Aggregate::apply(&mut endpoint, event);
    }
    let state = endpoint.state().unwrap();
    assert!(!state.enabled);
    assert_eq!(state.disabled_reason, Some(DisableReason::Admin));
    assert_eq!(state.sealed_secret, sealed('C'));
    // What the rotation replaced, for the signatures of its grace period.
    let previous = state.previous_secret.as_ref().unwrap();
    assert_eq!(previous.sealed_secret, sealed('A'));
    assert_eq!(previous.replaced_at, now());
    assert_eq!(state.updated_at, now());
    assert!(state.wants("SubscriptionCreated"));
    assert!(!state.wants("DeviceActivated"));
}

#[test]
fn a_plaintext_secret_cannot_pass_for_a_sealed_one() {
    let plaintext = format!("whsec_{}", "A".repeat(44));
    assert_eq!(SealedSecret::parse(&plaintext), Err(ValueError::NotSealed));
    assert_eq!(
        SealedSecret::parse(&format!("{SEALED_PREFIX}short")),
        Err(ValueError::NotSealed)
    );
    let from_json: Result<SealedSecret, _> =
        serde_json::from_value(serde_json::Value::String(plaintext));
    assert!(from_json.is_err());
    assert_eq!(format!("{:?}", sealed('A')), "SealedSecret([redacted])");
}

#[test]
fn every_listed_event_type_is_one_this_aggregate_or_another_emits() {
    for event in created().into_iter().chain(disabled()).chain(deleted()) {
        let name = cqrs_es::DomainEvent::event_type(&event);
        assert!(EVENT_TYPES.contains(&name.as_str()), "{name}");
    }
}
