//! Given/when/then tests of the `Product` aggregate: one test per rule and error.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use serde_json::{json, Map, Value};

use super::*;
use crate::catalogue::{MAX_METADATA_BYTES, MAX_URL_LEN};
use crate::subscription::MAX_TEXT_LEN;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn now() -> DateTime<Utc> {
    t0() + Duration::days(1)
}

fn code() -> Code {
    Code::parse("desktop-app").unwrap()
}

fn metadata() -> Map<String, Value> {
    json!({"crm": "42"}).as_object().unwrap().clone()
}

/// Metadata whose compact JSON is just over the limit.
fn too_much_metadata() -> Map<String, Value> {
    json!({"blob": "x".repeat(MAX_METADATA_BYTES)})
        .as_object()
        .unwrap()
        .clone()
}

fn create(name: &str, url: Option<&str>) -> ProductCommand {
    ProductCommand::Create {
        code: code(),
        name: name.to_owned(),
        url: url.map(str::to_owned),
        metadata: metadata(),
        at: t0(),
    }
}

fn created_event(at: DateTime<Utc>) -> ProductEvent {
    ProductEvent::ProductCreated {
        product_id: ProductId::for_code(&code()),
        code: code(),
        name: "Desktop App".to_owned(),
        url: Some("https://example.com/app".to_owned()),
        metadata: metadata(),
        at,
    }
}

fn created() -> Vec<ProductEvent> {
    vec![created_event(t0())]
}

fn deleted() -> Vec<ProductEvent> {
    vec![
        created_event(t0()),
        ProductEvent::ProductDeleted { at: t0() },
    ]
}

fn given(events: Vec<ProductEvent>) -> AggregateTestExecutor<Product> {
    TestFramework::<Product>::with(()).given(events)
}

fn update(
    name: Option<&str>,
    url: Option<Option<&str>>,
    metadata: Option<Map<String, Value>>,
) -> ProductCommand {
    ProductCommand::Update {
        name: name.map(str::to_owned),
        url: url.map(|u| u.map(str::to_owned)),
        metadata,
        at: now(),
    }
}

fn every_non_create_command() -> Vec<ProductCommand> {
    vec![
        update(Some("Renamed"), None, None),
        ProductCommand::Delete { at: now() },
    ]
}

// ---------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------

#[test]
fn creating_records_the_product_under_the_id_its_code_derives() {
    given(vec![])
        .when(create("Desktop App", Some("https://example.com/app")))
        .then_expect_events(created());
}

#[test]
fn the_id_is_the_same_for_the_same_code_and_differs_between_codes() {
    let other = Code::parse("mobile-app").unwrap();
    assert_eq!(ProductId::for_code(&code()), ProductId::for_code(&code()));
    assert_ne!(ProductId::for_code(&code()), ProductId::for_code(&other));
}

#[test]
fn a_product_may_have_no_url() {
    given(vec![])
        .when(create("Desktop App", None))
        .then_expect_events(vec![ProductEvent::ProductCreated {
            product_id: ProductId::for_code(&code()),
            code: code(),
            name: "Desktop App".to_owned(),
            url: None,
            metadata: metadata(),
            at: t0(),
        }]);
}

#[test]
fn a_live_product_cannot_be_created_twice() {
    given(created())
        .when(create("Desktop App", None))
        .then_expect_error(CatalogueError::AlreadyExists);
}

#[test]
fn a_deleted_product_is_created_again_under_its_code() {
    given(deleted())
        .when(ProductCommand::Create {
            code: code(),
            name: "Desktop App 2".to_owned(),
            url: None,
            metadata: Map::new(),
            at: now(),
        })
        .then_expect_events(vec![ProductEvent::ProductCreated {
            product_id: ProductId::for_code(&code()),
            code: code(),
            name: "Desktop App 2".to_owned(),
            url: None,
            metadata: Map::new(),
            at: now(),
        }]);
}

#[test]
fn a_product_created_again_is_live_with_only_its_new_description() {
    let mut product = Product::default();
    for event in deleted().into_iter().chain([ProductEvent::ProductCreated {
        product_id: ProductId::for_code(&code()),
        code: code(),
        name: "Desktop App 2".to_owned(),
        url: None,
        metadata: Map::new(),
        at: now(),
    }]) {
        cqrs_es::Aggregate::apply(&mut product, event);
    }
    let state = product.live().unwrap();
    assert!(!state.deleted);
    assert_eq!(state.name, "Desktop App 2");
    assert_eq!(state.url, None);
    assert!(state.metadata.is_empty());
    assert_eq!(state.created_at, now());
}

#[test]
fn names_are_one_to_max_characters_not_blank_and_without_control_characters() {
    for name in [
        String::new(),
        "   ".to_owned(),
        "x".repeat(MAX_TEXT_LEN + 1),
        "line\nbreak".to_owned(),
        "tab\there".to_owned(),
    ] {
        given(vec![])
            .when(create(&name, None))
            .then_expect_error(CatalogueError::InvalidName);
    }
    given(vec![])
        .when(create(&"é".repeat(MAX_TEXT_LEN), None))
        .then_expect_events(vec![ProductEvent::ProductCreated {
            product_id: ProductId::for_code(&code()),
            code: code(),
            name: "é".repeat(MAX_TEXT_LEN),
            url: None,
            metadata: metadata(),
            at: t0(),
        }]);
}

#[test]
fn urls_are_http_or_https_without_whitespace_and_not_too_long() {
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    for url in [
        "",
        "example.com",
        "ftp://example.com/",
        "javascript:alert(1)",
        "https://",
        "http://",
        "https:///path",
        "https://example.com/a b",
        long.as_str(),
    ] {
        given(vec![])
            .when(create("Desktop App", Some(url)))
            .then_expect_error(CatalogueError::InvalidUrl);
    }
    given(vec![])
        .when(create("Desktop App", Some("http://example.com/app")))
        .then_expect_events(vec![ProductEvent::ProductCreated {
            product_id: ProductId::for_code(&code()),
            code: code(),
            name: "Desktop App".to_owned(),
            url: Some("http://example.com/app".to_owned()),
            metadata: metadata(),
            at: t0(),
        }]);
}

#[test]
fn metadata_larger_than_the_limit_is_refused() {
    given(vec![])
        .when(ProductCommand::Create {
            code: code(),
            name: "Desktop App".to_owned(),
            url: None,
            metadata: too_much_metadata(),
            at: t0(),
        })
        .then_expect_error(CatalogueError::MetadataTooLarge);
}

// ---------------------------------------------------------------------------------------
// Update and delete
// ---------------------------------------------------------------------------------------

#[test]
fn every_other_command_needs_an_existing_product() {
    for command in every_non_create_command() {
        given(vec![])
            .when(command)
            .then_expect_error(CatalogueError::NotFound);
    }
}

#[test]
fn a_deleted_product_refuses_every_other_command() {
    for command in every_non_create_command() {
        given(deleted())
            .when(command)
            .then_expect_error(CatalogueError::Deleted);
    }
}

#[test]
fn an_update_records_the_whole_description_after_it() {
    given(created())
        .when(update(Some("Desktop App Pro"), None, None))
        .then_expect_events(vec![ProductEvent::ProductUpdated {
            name: "Desktop App Pro".to_owned(),
            url: Some("https://example.com/app".to_owned()),
            metadata: metadata(),
            at: now(),
        }]);
}

#[test]
fn an_update_may_clear_the_url_and_replace_the_metadata() {
    given(created())
        .when(update(None, Some(None), Some(Map::new())))
        .then_expect_events(vec![ProductEvent::ProductUpdated {
            name: "Desktop App".to_owned(),
            url: None,
            metadata: Map::new(),
            at: now(),
        }]);
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    given(created())
        .when(update(None, None, None))
        .then_expect_events(vec![]);
    given(created())
        .when(update(
            Some("Desktop App"),
            Some(Some("https://example.com/app")),
            Some(metadata()),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn an_update_is_checked_like_a_creation() {
    given(created())
        .when(update(Some(" "), None, None))
        .then_expect_error(CatalogueError::InvalidName);
    given(created())
        .when(update(None, Some(Some("mailto:a@example.com")), None))
        .then_expect_error(CatalogueError::InvalidUrl);
    given(created())
        .when(update(None, None, Some(too_much_metadata())))
        .then_expect_error(CatalogueError::MetadataTooLarge);
}

#[test]
fn deleting_records_it() {
    given(created())
        .when(ProductCommand::Delete { at: now() })
        .then_expect_events(vec![ProductEvent::ProductDeleted { at: now() }]);
}

#[test]
fn the_state_follows_the_events() {
    let mut product = Product::default();
    assert!(product.state().is_none());
    for event in [
        created_event(t0()),
        ProductEvent::ProductUpdated {
            name: "Renamed".to_owned(),
            url: None,
            metadata: Map::new(),
            at: now(),
        },
    ] {
        cqrs_es::Aggregate::apply(&mut product, event);
    }
    let state = product.live().unwrap();
    assert_eq!(state.id, ProductId::for_code(&code()));
    assert_eq!(state.code, code());
    assert_eq!(state.name, "Renamed");
    assert_eq!(state.url, None);
    assert_eq!(state.created_at, t0());
    assert_eq!(state.updated_at, now());
    cqrs_es::Aggregate::apply(&mut product, ProductEvent::ProductDeleted { at: now() });
    assert!(product.live().is_none());
    assert!(product.state().unwrap().deleted);
}

#[test]
fn each_event_reports_its_type_and_time() {
    for (event, name) in [
        (created_event(t0()), "ProductCreated"),
        (
            ProductEvent::ProductUpdated {
                name: "x".to_owned(),
                url: None,
                metadata: Map::new(),
                at: t0(),
            },
            "ProductUpdated",
        ),
        (ProductEvent::ProductDeleted { at: t0() }, "ProductDeleted"),
    ] {
        assert_eq!(cqrs_es::DomainEvent::event_type(&event), name);
        assert_eq!(event.at(), t0());
    }
}
