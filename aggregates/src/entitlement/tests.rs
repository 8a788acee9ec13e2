//! Given/when/then tests of the `Entitlement` aggregate: one test per rule and error.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};

use super::*;
use crate::subscription::MAX_TEXT_LEN;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn now() -> DateTime<Utc> {
    t0() + Duration::days(1)
}

fn code() -> Code {
    Code::parse("export").unwrap()
}

fn create(name: &str) -> EntitlementCommand {
    EntitlementCommand::Create {
        code: code(),
        name: name.to_owned(),
        at: t0(),
    }
}

fn created_event(name: &str, at: DateTime<Utc>) -> EntitlementEvent {
    EntitlementEvent::EntitlementCreated {
        entitlement_id: EntitlementId::for_code(&code()),
        code: code(),
        name: name.to_owned(),
        at,
    }
}

fn created() -> Vec<EntitlementEvent> {
    vec![created_event("Export", t0())]
}

fn deleted() -> Vec<EntitlementEvent> {
    vec![
        created_event("Export", t0()),
        EntitlementEvent::EntitlementDeleted { at: t0() },
    ]
}

fn given(events: Vec<EntitlementEvent>) -> AggregateTestExecutor<Entitlement> {
    TestFramework::<Entitlement>::with(()).given(events)
}

fn rename(name: &str) -> EntitlementCommand {
    EntitlementCommand::Rename {
        name: name.to_owned(),
        at: now(),
    }
}

fn every_non_create_command() -> Vec<EntitlementCommand> {
    vec![
        rename("Export data"),
        EntitlementCommand::Delete { at: now() },
    ]
}

#[test]
fn creating_records_the_entitlement_under_the_id_its_code_derives() {
    given(vec![])
        .when(create("Export"))
        .then_expect_events(created());
}

#[test]
fn the_id_is_the_same_for_the_same_code_and_differs_between_codes() {
    let sync = Code::parse("sync").unwrap();
    assert_eq!(
        EntitlementId::for_code(&code()),
        EntitlementId::for_code(&code())
    );
    assert_ne!(
        EntitlementId::for_code(&code()),
        EntitlementId::for_code(&sync)
    );
}

#[test]
fn a_live_entitlement_cannot_be_created_twice() {
    given(created())
        .when(create("Export"))
        .then_expect_error(CatalogueError::AlreadyExists);
}

#[test]
fn a_deleted_entitlement_is_created_again_under_its_code() {
    given(deleted())
        .when(EntitlementCommand::Create {
            code: code(),
            name: "Export v2".to_owned(),
            at: now(),
        })
        .then_expect_events(vec![created_event("Export v2", now())]);
}

#[test]
fn an_entitlement_created_again_is_live() {
    let mut entitlement = Entitlement::default();
    for event in deleted()
        .into_iter()
        .chain([created_event("Export v2", now())])
    {
        cqrs_es::Aggregate::apply(&mut entitlement, event);
    }
    let state = entitlement.live().unwrap();
    assert_eq!(state.name, "Export v2");
    assert_eq!(state.created_at, now());
}

#[test]
fn names_are_one_to_max_characters_not_blank_and_without_control_characters() {
    for name in [
        String::new(),
        " \t ".to_owned(),
        "x".repeat(MAX_TEXT_LEN + 1),
        "bell\u{7}".to_owned(),
    ] {
        given(vec![])
            .when(create(&name))
            .then_expect_error(CatalogueError::InvalidName);
    }
    given(vec![])
        .when(create(&"x".repeat(MAX_TEXT_LEN)))
        .then_expect_events(vec![created_event(&"x".repeat(MAX_TEXT_LEN), t0())]);
}

#[test]
fn every_other_command_needs_an_existing_entitlement() {
    for command in every_non_create_command() {
        given(vec![])
            .when(command)
            .then_expect_error(CatalogueError::NotFound);
    }
}

#[test]
fn a_deleted_entitlement_refuses_every_other_command() {
    for command in every_non_create_command() {
        given(deleted())
            .when(command)
            .then_expect_error(CatalogueError::Deleted);
    }
}

#[test]
fn renaming_records_the_new_name() {
    given(created())
        .when(rename("Export data"))
        .then_expect_events(vec![EntitlementEvent::EntitlementRenamed {
            name: "Export data".to_owned(),
            at: now(),
        }]);
}

#[test]
fn renaming_to_the_same_name_records_nothing() {
    given(created())
        .when(rename("Export"))
        .then_expect_events(vec![]);
}

#[test]
fn a_new_name_is_checked_like_a_first_one() {
    given(created())
        .when(rename(""))
        .then_expect_error(CatalogueError::InvalidName);
}

#[test]
fn deleting_records_it() {
    given(created())
        .when(EntitlementCommand::Delete { at: now() })
        .then_expect_events(vec![EntitlementEvent::EntitlementDeleted { at: now() }]);
}

#[test]
fn the_state_follows_the_events() {
    let mut entitlement = Entitlement::default();
    assert!(entitlement.state().is_none());
    for event in [
        created_event("Export", t0()),
        EntitlementEvent::EntitlementRenamed {
            name: "Export data".to_owned(),
            at: now(),
        },
    ] {
        cqrs_es::Aggregate::apply(&mut entitlement, event);
    }
    let state = entitlement.live().unwrap();
    assert_eq!(state.id, EntitlementId::for_code(&code()));
    assert_eq!(state.name, "Export data");
    assert_eq!(state.updated_at, now());
    cqrs_es::Aggregate::apply(
        &mut entitlement,
        EntitlementEvent::EntitlementDeleted { at: now() },
    );
    assert!(entitlement.live().is_none());
    assert!(entitlement.state().unwrap().deleted);
}

#[test]
fn each_event_reports_its_type_and_time() {
    for (event, name) in [
        (created_event("Export", t0()), "EntitlementCreated"),
        (
            EntitlementEvent::EntitlementRenamed {
                name: "x".to_owned(),
                at: t0(),
            },
            "EntitlementRenamed",
        ),
        (
            EntitlementEvent::EntitlementDeleted { at: t0() },
            "EntitlementDeleted",
        ),
    ] {
        assert_eq!(cqrs_es::DomainEvent::event_type(&event), name);
        assert_eq!(event.at(), t0());
    }
}
