//! The admin operations on subscriptions and devices against a real (SQLite) store, without
//! HTTP.

use chrono::{Duration, Utc};
use flowlytix_aggregates::{
    DeactivationReason, DeviceId, Status, SubscriptionError, SubscriptionId,
};
use uuid::Uuid;

use super::{ManageError, RegenerateKeyRequest, StatusChange, UpdateSubscriptionRequest};
use crate::crypto::sha256_hex;
use crate::licensing::Scope;
use crate::licensing::{Credential, ValidationCode};
use crate::store::{EventMetadata, ExecuteError};
use crate::test_support::{device, fingerprint, metadata, services, sqlite, subscription_request};

/// The error of an operation that had to fail.
fn refused<T>(result: Result<T, ManageError>) -> ManageError {
    match result {
        Ok(_) => panic!("the operation succeeded; it had to be refused"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn creation_keeps_the_request_and_only_the_keys_hash() {
    let s = services().await;
    let created = s
        .subscriptions
        .create(subscription_request(3), metadata())
        .await
        .unwrap();
    let key = created.license_key;
    let id = created.committed.aggregate.state().unwrap().id;

    let (subscription, version) = s.subscriptions.subscription(id, None).await.unwrap();

    assert_eq!(version, created.committed.version);
    let state = subscription.live().unwrap();
    assert_eq!(state.customer_email.as_str(), "customer@example.com");
    assert_eq!(state.plan.as_str(), "pro");
    assert_eq!(state.max_devices, 3);
    assert_eq!(state.status, Status::Active);
    let issued = state.license_key.as_ref().unwrap();
    assert_eq!(issued.key_hash, sha256_hex(key.expose()));
    assert_eq!(issued.key_prefix, key.display_prefix());
    let stored: Vec<String> = sqlx::query_scalar("select payload from events")
        .fetch_all(sqlite(&s.store.db))
        .await
        .unwrap();
    assert!(!stored.is_empty());
    assert!(
        stored.iter().all(|payload| !payload.contains(key.expose())),
        "the full key is never stored"
    );
}

#[tokio::test]
async fn malformed_input_is_refused_before_any_command() {
    let s = services().await;
    for request in [
        crate::subscriptions::CreateSubscriptionRequest {
            plan: Some("Not A Plan".into()),
            ..subscription_request(1)
        },
        crate::subscriptions::CreateSubscriptionRequest {
            customer_email: "nobody".into(),
            ..subscription_request(1)
        },
        crate::subscriptions::CreateSubscriptionRequest {
            features: vec!["ok".into(); super::MAX_FEATURES + 1],
            ..subscription_request(1)
        },
    ] {
        let id = SubscriptionId(Uuid::new_v4());
        let error = refused(
            s.subscriptions
                .create_with_id(id, request, metadata())
                .await,
        );
        assert!(matches!(error, ManageError::Invalid(_)), "{error:?}");
        assert!(matches!(
            s.subscriptions.subscription(id, None).await,
            Err(ManageError::NotFound)
        ));
    }

    let (id, _) = s.subscription(1).await;
    let error = refused(
        s.subscriptions
            .update(
                id,
                UpdateSubscriptionRequest {
                    plan: Some("enterprise".into()),
                    reason: Some("late payment".into()),
                    ..UpdateSubscriptionRequest::default()
                },
                None,
                metadata(),
            )
            .await,
    );
    assert!(matches!(error, ManageError::Invalid(_)), "{error:?}");
    let (subscription, version) = s.subscriptions.subscription(id, None).await.unwrap();
    assert_eq!(subscription.live().unwrap().plan.as_str(), "pro");
    assert_eq!(version, 2, "created and keyed, nothing since");
}

#[tokio::test]
async fn an_update_applies_at_once_against_the_expected_version() {
    let s = services().await;
    let an_hour_ago = Utc::now() - Duration::hours(1);
    let created = s
        .subscriptions
        .create(subscription_request(1), EventMetadata::system(an_hour_ago))
        .await
        .unwrap();
    let id = created.committed.aggregate.state().unwrap().id;
    let change = || UpdateSubscriptionRequest {
        plan: Some("enterprise".into()),
        max_devices: Some(5),
        ..UpdateSubscriptionRequest::default()
    };

    let error = refused(
        s.subscriptions
            .update(
                id,
                change(),
                Some(created.committed.version - 1),
                metadata(),
            )
            .await,
    );
    assert!(
        matches!(
            error,
            ManageError::Command(ExecuteError::VersionMismatch { .. })
        ),
        "{error:?}"
    );
    let updated = s
        .subscriptions
        .update(id, change(), Some(created.committed.version), metadata())
        .await
        .unwrap();

    assert_eq!(updated.version, created.committed.version + 2, "two events");
    let state = updated.aggregate.live().unwrap();
    assert_eq!((state.plan.as_str(), state.max_devices), ("enterprise", 5));
    // The past is still readable as it was.
    let half_an_hour_ago = Utc::now() - Duration::minutes(30);
    let (then, then_version) = s
        .subscriptions
        .subscription(id, Some(half_an_hour_ago))
        .await
        .unwrap();
    assert_eq!(then_version, created.committed.version);
    assert_eq!(then.live().unwrap().plan.as_str(), "pro");
}

#[tokio::test]
async fn lowering_the_limit_below_the_active_devices_must_name_whom_to_deactivate() {
    let s = services().await;
    let (id, key) = s.subscription(2).await;
    let laptop = s
        .licensing
        .activate(
            key.clone(),
            fingerprint("laptop"),
            device("laptop"),
            &Scope::default(),
            metadata(),
        )
        .await
        .unwrap();
    s.licensing
        .activate(
            key.clone(),
            fingerprint("desktop"),
            device("desktop"),
            &Scope::default(),
            metadata(),
        )
        .await
        .unwrap();
    let lower = |deactivate: Vec<DeviceId>| UpdateSubscriptionRequest {
        max_devices: Some(1),
        deactivate_device_ids: deactivate.into_iter().map(|d| d.as_uuid()).collect(),
        ..UpdateSubscriptionRequest::default()
    };

    let error = refused(
        s.subscriptions
            .update(id, lower(vec![]), None, metadata())
            .await,
    );
    assert!(
        matches!(
            error,
            ManageError::Command(ExecuteError::Domain(
                SubscriptionError::DeviceLimitBelowActiveCount {
                    active: 2,
                    requested: 1,
                    must_deactivate: 1
                }
            ))
        ),
        "{error:?}"
    );

    s.subscriptions
        .update(id, lower(vec![laptop.device_id]), None, metadata())
        .await
        .unwrap();
    let no_scope = Scope::default();
    let validate = |raw: &'static str| {
        s.licensing.validate(
            Credential::LicenseKey(key.clone()),
            fingerprint(raw),
            &no_scope,
            Utc::now(),
        )
    };
    assert_eq!(
        validate("laptop").await.unwrap().code,
        ValidationCode::DeviceNotActivated
    );
    assert_eq!(
        validate("desktop").await.unwrap().code,
        ValidationCode::Valid
    );
}

#[tokio::test]
async fn a_deleted_subscription_is_gone_for_every_operation() {
    let s = services().await;
    let (id, _) = s.subscription(1).await;

    s.subscriptions.delete(id, None, metadata()).await.unwrap();

    assert!(matches!(
        s.subscriptions.subscription(id, None).await,
        Err(ManageError::NotFound)
    ));
    // Gone, also when the update changes nothing; an id never created is not found.
    for request in [
        UpdateSubscriptionRequest {
            status: Some(StatusChange::Suspended),
            ..UpdateSubscriptionRequest::default()
        },
        UpdateSubscriptionRequest::default(),
    ] {
        let error = refused(s.subscriptions.update(id, request, None, metadata()).await);
        assert!(
            matches!(
                error,
                ManageError::Command(ExecuteError::Domain(SubscriptionError::Deleted))
            ),
            "{error:?}"
        );
    }
    let error = refused(
        s.subscriptions
            .update(
                SubscriptionId(Uuid::new_v4()),
                UpdateSubscriptionRequest::default(),
                None,
                metadata(),
            )
            .await,
    );
    assert!(matches!(error, ManageError::NotFound), "{error:?}");
    let error = refused(
        s.subscriptions
            .regenerate_license_key(id, RegenerateKeyRequest::default(), metadata())
            .await,
    );
    assert!(
        matches!(
            error,
            ManageError::Command(ExecuteError::Domain(SubscriptionError::Deleted))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_admin_finds_renames_and_deactivates_a_device_by_its_id() {
    let s = services().await;
    let (id, key) = s.subscription(2).await;
    let issued = s
        .licensing
        .activate(
            key.clone(),
            fingerprint("laptop"),
            device("laptop"),
            &Scope::default(),
            metadata(),
        )
        .await
        .unwrap();

    let found = s.subscriptions.device(issued.device_id).await.unwrap();
    assert_eq!(found.subscription.id, id);
    assert_eq!(found.device.id, issued.device_id);

    let renamed = s
        .subscriptions
        .update_device(
            issued.device_id,
            Some("Front desk".into()),
            Some("asset 42".into()),
            metadata(),
        )
        .await
        .unwrap();
    assert_eq!(renamed.device.info.name.as_deref(), Some("Front desk"));
    assert_eq!(renamed.device.notes.as_deref(), Some("asset 42"));
    assert!(renamed.position.is_some());
    let reread = s.subscriptions.device(issued.device_id).await.unwrap();
    assert_eq!(reread.device.info.name.as_deref(), Some("Front desk"));

    let deactivated = s
        .subscriptions
        .deactivate_device(issued.device_id, metadata())
        .await
        .unwrap();
    assert!(!deactivated.device.active);
    assert_eq!(
        deactivated.device.deactivation_reason,
        Some(DeactivationReason::Admin)
    );
    // The client's token stops validating at once.
    let verdict = s
        .licensing
        .validate(
            Credential::Token(issued.token),
            fingerprint("laptop"),
            &Scope::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(verdict.code, ValidationCode::DeviceNotActivated);
    let error = refused(
        s.subscriptions
            .deactivate_device(issued.device_id, metadata())
            .await,
    );
    assert!(
        matches!(
            error,
            ManageError::Command(ExecuteError::Domain(SubscriptionError::DeviceNotActive(d)))
                if d == issued.device_id
        ),
        "{error:?}"
    );

    let unknown = DeviceId(Uuid::new_v4());
    assert!(matches!(
        s.subscriptions.device(unknown).await,
        Err(ManageError::DeviceNotFound)
    ));
    assert!(matches!(
        s.subscriptions
            .update_device(unknown, Some("x".into()), None, metadata())
            .await,
        Err(ManageError::DeviceNotFound)
    ));
}
