//! Licensing's operations on a real (SQLite) store, without HTTP: what activation,
//! validation, refresh and deactivation answer, and what they change.

use std::sync::Arc;

use chrono::{Duration, Utc};
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::{SubscriptionError, SubscriptionId};
use uuid::Uuid;

use super::token::{LicenseTokens, TokenError};
use super::verdict::Scope;
use super::{fingerprint_hash, Credential, LicensingError, TokenIssued, ValidationCode, Verdict};
use crate::crypto::new_license_key;
use crate::keys::JwtKeys;
use crate::store::ExecuteError;
use crate::subscriptions::{RegenerateKeyRequest, StatusChange, UpdateSubscriptionRequest};
use crate::test_support::{
    device, fingerprint, metadata, services, Services, ISSUER, SERVER_SECRET, TOKEN_TTL,
};

/// The error of an operation that had to fail.
fn refused<T>(result: Result<T, LicensingError>) -> LicensingError {
    match result {
        Ok(_) => panic!("the operation succeeded; it had to be refused"),
        Err(error) => error,
    }
}

async fn try_activate(
    s: &Services,
    key: &LicenseKey,
    raw_fingerprint: &str,
) -> Result<TokenIssued, LicensingError> {
    s.licensing
        .activate(
            key.clone(),
            fingerprint(raw_fingerprint),
            device(raw_fingerprint),
            &Scope::default(),
            metadata(),
        )
        .await
}

async fn activate(s: &Services, key: &LicenseKey, raw_fingerprint: &str) -> TokenIssued {
    try_activate(s, key, raw_fingerprint)
        .await
        .expect("the activation succeeds")
}

async fn try_deactivate(
    s: &Services,
    credential: Credential,
    raw_fingerprint: &str,
) -> Result<(), LicensingError> {
    s.licensing
        .deactivate(credential, fingerprint(raw_fingerprint), metadata())
        .await
}

async fn by_key(s: &Services, key: &LicenseKey, raw_fingerprint: &str) -> Verdict {
    s.licensing
        .validate(
            Credential::LicenseKey(key.clone()),
            fingerprint(raw_fingerprint),
            &Scope::default(),
            Utc::now(),
        )
        .await
        .expect("a validation answers with a verdict")
}

async fn by_token(s: &Services, token: &str, raw_fingerprint: &str) -> Verdict {
    s.licensing
        .validate(
            Credential::Token(token.to_owned()),
            fingerprint(raw_fingerprint),
            &Scope::default(),
            Utc::now(),
        )
        .await
        .expect("a validation answers with a verdict")
}

async fn set_status(s: &Services, id: SubscriptionId, status: StatusChange) {
    let request = UpdateSubscriptionRequest {
        status: Some(status),
        ..UpdateSubscriptionRequest::default()
    };
    s.subscriptions
        .update(id, request, None, metadata())
        .await
        .expect("the status changes");
}

/// A token for `issued`'s device signed by `tokens`, issued and expiring when given.
async fn token_signed_by(
    s: &Services,
    tokens: &LicenseTokens,
    id: SubscriptionId,
    issued: &TokenIssued,
    issued_at: chrono::DateTime<Utc>,
    expires_at: chrono::DateTime<Utc>,
) -> String {
    let (subscription, _) = s.subscriptions.subscription(id, None).await.unwrap();
    let state = subscription.live().unwrap();
    let device = state.device(issued.device_id).unwrap();
    let terms = state.effective(&Default::default());
    tokens
        .sign(state, &terms, device, Uuid::new_v4(), issued_at, expires_at)
        .unwrap()
}

#[tokio::test]
async fn activation_issues_a_token_the_signer_verifies_for_that_device() {
    let s = services().await;
    let (id, key) = s.subscription(2).await;

    let issued = activate(&s, &key, "laptop").await;

    let claims = s.tokens.verify(&issued.token).unwrap();
    assert_eq!(claims.sid, id.as_uuid());
    assert_eq!(claims.sub, issued.device_id.as_uuid());
    assert_eq!(claims.fpr, fingerprint("laptop").as_str());
    assert_eq!(claims.iss, ISSUER);
    assert_eq!((claims.plan.as_str(), claims.max_devices), ("pro", 2));
    assert_eq!(claims.features, ["export"]);
    assert_eq!(claims.exp, issued.expires_at.timestamp());
    let lifetime = claims.exp - claims.iat;
    assert!(
        (TOKEN_TTL.as_secs() as i64 - 1..=TOKEN_TTL.as_secs() as i64).contains(&lifetime),
        "the token lives for the configured TTL, not {lifetime}s"
    );
    // The license it answers with, and the subscription, hold the device as reported.
    assert_eq!(issued.license.subscription_id, id);
    assert_eq!(
        issued
            .license
            .active_devices
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [issued.device_id]
    );
    let found = s.subscriptions.device(issued.device_id).await.unwrap();
    assert!(found.device.active);
    assert_eq!(found.device.fingerprint_hash, fingerprint("laptop"));
    assert_eq!(found.device.info.name.as_deref(), Some("laptop's name"));
    assert_eq!(found.device.info.hostname.as_deref(), Some("laptop.local"));
    assert!(found.device.last_seen_at.is_some(), "a token was issued");
}

#[tokio::test]
async fn reactivating_an_active_fingerprint_keeps_its_device_and_takes_no_second_slot() {
    let s = services().await;
    let (_, key) = s.subscription(1).await;
    let first = activate(&s, &key, "laptop").await;

    // With one slot, a second activation of the same fingerprint still succeeds.
    let again = activate(&s, &key, "laptop").await;

    assert_eq!(again.device_id, first.device_id);
    assert_ne!(again.token, first.token, "a fresh token");
    let (first_claims, again_claims) = (
        s.tokens.verify(&first.token).unwrap(),
        s.tokens.verify(&again.token).unwrap(),
    );
    assert_ne!(first_claims.jti, again_claims.jti);
    assert_eq!(again.license.active_devices.len(), 1);

    // A fingerprint that comes back after a deactivation is a new device, so that the old
    // device's tokens stay dead.
    try_deactivate(&s, Credential::LicenseKey(key.clone()), "laptop")
        .await
        .unwrap();
    let returned = activate(&s, &key, "laptop").await;
    assert_ne!(returned.device_id, first.device_id);
    assert_eq!(returned.license.active_devices.len(), 1);
}

#[tokio::test]
async fn a_device_beyond_the_limit_is_refused_until_a_slot_is_freed() {
    let s = services().await;
    let (_, key) = s.subscription(1).await;
    activate(&s, &key, "laptop").await;

    let error = refused(try_activate(&s, &key, "desktop").await);
    assert!(
        matches!(
            error,
            LicensingError::Command(ExecuteError::Domain(
                SubscriptionError::DeviceLimitReached { max_devices: 1, .. }
            ))
        ),
        "{error:?}"
    );
    // The refused activation left nothing behind.
    assert_eq!(
        by_key(&s, &key, "desktop").await.code,
        ValidationCode::DeviceNotActivated
    );
    assert_eq!(by_key(&s, &key, "laptop").await.code, ValidationCode::Valid);

    // Deactivating by key frees the slot.
    try_deactivate(&s, Credential::LicenseKey(key.clone()), "laptop")
        .await
        .unwrap();
    let desktop = activate(&s, &key, "desktop").await;
    assert_eq!(
        by_key(&s, &key, "desktop").await.code,
        ValidationCode::Valid
    );
    assert_eq!(
        by_key(&s, &key, "laptop").await.code,
        ValidationCode::DeviceNotActivated
    );
    assert_eq!(desktop.license.active_devices.len(), 1);
}

#[tokio::test]
async fn an_unknown_or_deleted_key_is_license_not_found() {
    let s = services().await;
    let (id, key) = s.subscription(2).await;
    let unknown = new_license_key();

    let error = refused(try_activate(&s, &unknown, "laptop").await);
    assert!(
        matches!(error, LicensingError::LicenseNotFound),
        "{error:?}"
    );
    assert_eq!(
        by_key(&s, &unknown, "laptop").await.code,
        ValidationCode::NotFound
    );
    let error = refused(try_deactivate(&s, Credential::LicenseKey(unknown), "laptop").await);
    assert!(
        matches!(error, LicensingError::LicenseNotFound),
        "{error:?}"
    );

    // A deleted subscription's key is as unknown as one never issued.
    activate(&s, &key, "laptop").await;
    s.subscriptions.delete(id, None, metadata()).await.unwrap();
    let error = refused(try_activate(&s, &key, "desktop").await);
    assert!(
        matches!(error, LicensingError::LicenseNotFound),
        "{error:?}"
    );
    assert_eq!(
        by_key(&s, &key, "laptop").await.code,
        ValidationCode::NotFound
    );
}

#[tokio::test]
async fn a_superseded_key_is_not_found_once_the_key_is_regenerated() {
    let s = services().await;
    let (id, old_key) = s.subscription(3).await;
    activate(&s, &old_key, "laptop").await;
    // Validated once, so the cache holds the license under the old key.
    assert_eq!(
        by_key(&s, &old_key, "laptop").await.code,
        ValidationCode::Valid
    );

    let new_key = s
        .subscriptions
        .regenerate_license_key(id, RegenerateKeyRequest::default(), metadata())
        .await
        .unwrap()
        .license_key;
    assert_ne!(new_key, old_key);

    let error = refused(try_activate(&s, &old_key, "desktop").await);
    assert!(
        matches!(error, LicensingError::LicenseNotFound),
        "{error:?}"
    );
    let verdict = by_key(&s, &old_key, "laptop").await;
    assert_eq!(verdict.code, ValidationCode::NotFound);
    assert!(verdict.license.is_none(), "nothing is told of the license");
    let error = refused(try_deactivate(&s, Credential::LicenseKey(old_key), "laptop").await);
    assert!(
        matches!(error, LicensingError::LicenseNotFound),
        "{error:?}"
    );

    // The device keeps its slot, and the new key works.
    assert_eq!(
        by_key(&s, &new_key, "laptop").await.code,
        ValidationCode::Valid
    );
    let desktop = activate(&s, &new_key, "desktop").await;
    assert_eq!(desktop.license.active_devices.len(), 2);
}

#[tokio::test]
async fn validation_by_key_judges_the_device_that_asks() {
    let s = services().await;
    let (id, key) = s.subscription(2).await;
    let issued = activate(&s, &key, "laptop").await;

    let verdict = by_key(&s, &key, "laptop").await;
    assert_eq!(verdict.code, ValidationCode::Valid);
    assert_eq!(verdict.device.map(|d| d.id), Some(issued.device_id));
    assert_eq!(verdict.license.map(|l| l.subscription_id), Some(id));

    let verdict = by_key(&s, &key, "desktop").await;
    assert_eq!(verdict.code, ValidationCode::DeviceNotActivated);
    assert!(verdict.device.is_none());
}

#[tokio::test]
async fn validation_by_token_checks_signature_expiry_and_fingerprint() {
    let s = services().await;
    let (id, key) = s.subscription(2).await;
    let issued = activate(&s, &key, "laptop").await;

    let verdict = by_token(&s, &issued.token, "laptop").await;
    assert_eq!(verdict.code, ValidationCode::Valid);
    assert_eq!(verdict.device.map(|d| d.id), Some(issued.device_id));

    assert_eq!(
        by_token(&s, &issued.token, "desktop").await.code,
        ValidationCode::FingerprintMismatch
    );
    assert_eq!(
        by_token(&s, "not.a.token", "laptop").await.code,
        ValidationCode::TokenInvalid
    );

    // Well-formed tokens for the right device, but signed with another key, or expired.
    let stranger = LicenseTokens::new(
        Arc::new(JwtKeys::derive_from_secret("another server", SERVER_SECRET)),
        ISSUER.into(),
        TOKEN_TTL,
    );
    let now = Utc::now();
    let forged = token_signed_by(&s, &stranger, id, &issued, now, now + Duration::hours(1)).await;
    assert_eq!(
        by_token(&s, &forged, "laptop").await.code,
        ValidationCode::TokenInvalid
    );
    let expired = token_signed_by(
        &s,
        &s.tokens,
        id,
        &issued,
        now - Duration::hours(2),
        now - Duration::hours(1),
    )
    .await;
    assert_eq!(
        by_token(&s, &expired, "laptop").await.code,
        ValidationCode::TokenExpired
    );
}

#[tokio::test]
async fn a_suspension_is_seen_by_the_next_validation() {
    let s = services().await;
    let (id, key) = s.subscription(2).await;
    let issued = activate(&s, &key, "laptop").await;
    // A valid verdict is cached and trusted for long: only the suspension's write-through
    // can change the next answer.
    assert_eq!(by_key(&s, &key, "laptop").await.code, ValidationCode::Valid);

    set_status(&s, id, StatusChange::Suspended).await;

    assert_eq!(
        by_key(&s, &key, "laptop").await.code,
        ValidationCode::Suspended
    );
    assert_eq!(
        by_token(&s, &issued.token, "laptop").await.code,
        ValidationCode::Suspended
    );
    let error = refused(s.licensing.refresh(&issued.token, metadata()).await);
    assert!(
        matches!(
            error,
            LicensingError::Command(ExecuteError::Domain(SubscriptionError::LicenseSuspended))
        ),
        "{error:?}"
    );
    let error = refused(try_activate(&s, &key, "desktop").await);
    assert!(
        matches!(
            error,
            LicensingError::Command(ExecuteError::Domain(SubscriptionError::LicenseSuspended))
        ),
        "{error:?}"
    );

    set_status(&s, id, StatusChange::Active).await;
    assert_eq!(by_key(&s, &key, "laptop").await.code, ValidationCode::Valid);
}

#[tokio::test]
async fn refresh_issues_a_new_token_for_the_same_device() {
    let s = services().await;
    let (id, key) = s.subscription(2).await;
    let issued = activate(&s, &key, "laptop").await;

    let refreshed = s
        .licensing
        .refresh(&issued.token, metadata())
        .await
        .unwrap();

    assert_eq!(refreshed.device_id, issued.device_id);
    assert_ne!(refreshed.token, issued.token);
    let (before, after) = (
        s.tokens.verify(&issued.token).unwrap(),
        s.tokens.verify(&refreshed.token).unwrap(),
    );
    assert_ne!(after.jti, before.jti);
    assert_eq!(
        (after.sid, after.sub, after.fpr.as_str()),
        (
            id.as_uuid(),
            issued.device_id.as_uuid(),
            before.fpr.as_str()
        )
    );
    assert!(after.exp >= before.exp);
    assert_eq!(
        by_token(&s, &refreshed.token, "laptop").await.code,
        ValidationCode::Valid
    );

    let error = refused(s.licensing.refresh("garbage", metadata()).await);
    assert!(
        matches!(error, LicensingError::Token(TokenError::Invalid)),
        "{error:?}"
    );
    let now = Utc::now();
    let expired = token_signed_by(
        &s,
        &s.tokens,
        id,
        &issued,
        now - Duration::hours(2),
        now - Duration::hours(1),
    )
    .await;
    let error = refused(s.licensing.refresh(&expired, metadata()).await);
    assert!(
        matches!(error, LicensingError::Token(TokenError::Expired)),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_deactivated_device_neither_validates_nor_refreshes() {
    let s = services().await;
    let (_, key) = s.subscription(2).await;
    let issued = activate(&s, &key, "laptop").await;

    try_deactivate(&s, Credential::Token(issued.token.clone()), "laptop")
        .await
        .unwrap();

    assert_eq!(
        by_token(&s, &issued.token, "laptop").await.code,
        ValidationCode::DeviceNotActivated
    );
    assert_eq!(
        by_key(&s, &key, "laptop").await.code,
        ValidationCode::DeviceNotActivated
    );
    let error = refused(s.licensing.refresh(&issued.token, metadata()).await);
    assert!(
        matches!(error, LicensingError::DeviceNotActivated),
        "{error:?}"
    );
    // Nothing is left to deactivate.
    let error = refused(try_deactivate(&s, Credential::LicenseKey(key), "laptop").await);
    assert!(
        matches!(error, LicensingError::DeviceNotActivated),
        "{error:?}"
    );
    let found = s.subscriptions.device(issued.device_id).await.unwrap();
    assert!(!found.device.active);
}

#[tokio::test]
async fn a_regenerated_key_revokes_the_tokens_issued_under_the_old_one_and_keeps_the_devices() {
    let s = services().await;
    let (id, old_key) = s.subscription(2).await;
    let old = activate(&s, &old_key, "laptop").await;
    // Validated once, so the cache holds the license under the old key.
    assert_eq!(
        by_token(&s, &old.token, "laptop").await.code,
        ValidationCode::Valid
    );

    let new_key = s
        .subscriptions
        .regenerate_license_key(id, RegenerateKeyRequest::default(), metadata())
        .await
        .unwrap()
        .license_key;

    let verdict = by_token(&s, &old.token, "laptop").await;
    assert_eq!(verdict.code, ValidationCode::TokenRevoked);
    assert!(verdict.license.is_none(), "nothing is told of the license");
    for error in [
        refused(s.licensing.refresh(&old.token, metadata()).await),
        refused(try_deactivate(&s, Credential::Token(old.token.clone()), "laptop").await),
    ] {
        assert!(matches!(error, LicensingError::TokenRevoked), "{error:?}");
    }
    // The device kept its slot: activating with the new key gives it a token that works.
    assert_eq!(
        by_key(&s, &new_key, "laptop").await.code,
        ValidationCode::Valid
    );
    let again = activate(&s, &new_key, "laptop").await;
    assert_eq!(again.device_id, old.device_id);
    assert_eq!(
        by_token(&s, &again.token, "laptop").await.code,
        ValidationCode::Valid
    );
    s.licensing.refresh(&again.token, metadata()).await.unwrap();
}

#[tokio::test]
async fn refresh_and_validate_agree_that_a_replaced_device_s_token_is_dead() {
    let s = services().await;
    let (_, key) = s.subscription(2).await;
    let old = activate(&s, &key, "laptop").await;
    try_deactivate(&s, Credential::LicenseKey(key.clone()), "laptop")
        .await
        .unwrap();
    let returned = activate(&s, &key, "laptop").await;
    assert_ne!(returned.device_id, old.device_id);

    assert_eq!(
        by_token(&s, &old.token, "laptop").await.code,
        ValidationCode::DeviceNotActivated
    );
    let error = refused(s.licensing.refresh(&old.token, metadata()).await);
    assert!(
        matches!(error, LicensingError::DeviceNotActivated),
        "{error:?}"
    );
    // Nor can the old token free the new device's slot.
    let error = refused(try_deactivate(&s, Credential::Token(old.token), "laptop").await);
    assert!(
        matches!(error, LicensingError::DeviceNotActivated),
        "{error:?}"
    );
    assert_eq!(by_key(&s, &key, "laptop").await.code, ValidationCode::Valid);
}

#[tokio::test]
async fn deactivation_by_token_frees_only_the_tokens_own_device() {
    let s = services().await;
    let (_, key) = s.subscription(2).await;
    let laptop = activate(&s, &key, "laptop").await;
    activate(&s, &key, "desktop").await;

    let error =
        refused(try_deactivate(&s, Credential::Token(laptop.token.clone()), "desktop").await);
    assert!(
        matches!(error, LicensingError::FingerprintMismatch),
        "{error:?}"
    );
    assert_eq!(
        by_key(&s, &key, "desktop").await.code,
        ValidationCode::Valid
    );

    let error = refused(try_deactivate(&s, Credential::Token("garbage".into()), "laptop").await);
    assert!(
        matches!(error, LicensingError::Token(TokenError::Invalid)),
        "{error:?}"
    );
    assert_eq!(by_key(&s, &key, "laptop").await.code, ValidationCode::Valid);

    try_deactivate(&s, Credential::Token(laptop.token), "laptop")
        .await
        .unwrap();
    assert_eq!(
        by_key(&s, &key, "laptop").await.code,
        ValidationCode::DeviceNotActivated
    );
    assert_eq!(
        by_key(&s, &key, "desktop").await.code,
        ValidationCode::Valid
    );
}

#[test]
fn a_fingerprint_is_one_to_512_characters() {
    assert!(matches!(
        fingerprint_hash("   "),
        Err(LicensingError::InvalidFingerprint)
    ));
    assert!(matches!(
        fingerprint_hash(&"é".repeat(513)),
        Err(LicensingError::InvalidFingerprint)
    ));
    // Counted in characters, not bytes; surrounding blanks do not make another device.
    assert!(fingerprint_hash(&"é".repeat(512)).is_ok());
    assert_eq!(fingerprint("laptop"), fingerprint("  laptop\n"));
}
