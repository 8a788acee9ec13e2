//! The client crate's offline half against the real server: a token the server issued is
//! verified with the server's published keys pinned, and refused when tampered with, for
//! another machine, under an unknown key, expired, or on a clock wound back.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use flowlytix_client::{verify_token, ClockGuard, Expectation, OfflineError, PinnedKeys};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::spawn_app;

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn guard() -> ClockGuard {
    ClockGuard::new(TimeDelta::minutes(5))
}

#[tokio::test]
async fn a_token_is_verified_offline_against_pinned_keys_and_refused_when_it_should_be() {
    let app = spawn_app().await;
    let subscription = app.subscription_with_devices(2).await;
    let key = subscription["license_key"].as_str().unwrap();
    let activated = app
        .client
        .post(app.url("/api/v1/licensing/activate"))
        .json(&json!({"license_key": key, "device": {"fingerprint": "laptop-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), StatusCode::CREATED);
    let activated: Value = activated.json().await.unwrap();
    let token = activated["token"].as_str().unwrap();
    let jwks = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys = PinnedKeys::from_jwks(&jwks).unwrap();
    let laptop = sha256_hex("laptop-1");
    let expected = Expectation {
        issuer: "flowlytix",
        fingerprint_hash: &laptop,
    };
    let now = Utc::now();

    let mut clock = guard();
    let claims = verify_token(token, &keys, &expected, &mut clock, now).unwrap();
    assert_eq!(
        claims.sub.to_string(),
        activated["device_id"].as_str().unwrap()
    );
    assert_eq!(claims.fpr, laptop);
    assert!(
        clock.latest_trusted().is_some(),
        "the token's iat is trusted"
    );

    // Tampered: a claim changed (more devices), the signature kept.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut body: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    body["max_devices"] = json!(1000);
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap());
    let tampered = parts.join(".");
    assert_eq!(
        verify_token(&tampered, &keys, &expected, &mut guard(), now),
        Err(OfflineError::Invalid)
    );

    // Another machine presenting this machine's token.
    let desktop = sha256_hex("desktop-2");
    let elsewhere = Expectation {
        issuer: "flowlytix",
        fingerprint_hash: &desktop,
    };
    assert_eq!(
        verify_token(token, &keys, &elsewhere, &mut guard(), now),
        Err(OfflineError::OtherDevice)
    );

    // Keys pinned from another server: the token's kid is unknown there.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let other_jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "someone-else",
        "x": URL_SAFE_NO_PAD.encode(other.verifying_key().as_bytes())}]});
    let other_keys = PinnedKeys::from_jwks(&other_jwks.to_string()).unwrap();
    assert!(matches!(
        verify_token(token, &other_keys, &expected, &mut guard(), now),
        Err(OfflineError::UnknownKey(_))
    ));
    // The server's kid pinned to another key: the signature does not verify.
    let kid = keys.kids().next().unwrap().to_owned();
    let forged_jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(other.verifying_key().as_bytes())}]});
    let forged_keys = PinnedKeys::from_jwks(&forged_jwks.to_string()).unwrap();
    assert_eq!(
        verify_token(token, &forged_keys, &expected, &mut guard(), now),
        Err(OfflineError::Invalid)
    );

    // Expired, by the clock the app trusts.
    let after_expiry = DateTime::from_timestamp(claims.exp, 0).unwrap();
    assert_eq!(
        verify_token(token, &keys, &expected, &mut guard(), after_expiry),
        Err(OfflineError::Expired)
    );

    // A clock wound back past the time already trusted (beyond the tolerance) is refused,
    // even for a token that would otherwise still be valid then.
    let wound_back = now - TimeDelta::hours(1);
    assert!(matches!(
        verify_token(token, &keys, &expected, &mut clock, wound_back),
        Err(OfflineError::ClockWoundBack { .. })
    ));
    // Within the tolerance it is drift, not fraud (the guard lets it by; this token, issued
    // just now, is then simply not valid yet at that reading).
    let drifted = now - TimeDelta::minutes(2);
    assert_eq!(clock.check(drifted), Ok(()));
    assert_eq!(
        verify_token(token, &keys, &expected, &mut clock, drifted),
        Err(OfflineError::NotYetValid)
    );
}

#[tokio::test]
async fn a_key_set_that_holds_anything_but_ed25519_keys_is_refused_whole() {
    assert!(PinnedKeys::from_jwks("not json").is_err());
    assert!(PinnedKeys::from_jwks(r#"{"keys": []}"#).is_err());
    let rsa = json!({"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]});
    assert!(PinnedKeys::from_jwks(&rsa.to_string()).is_err());
}
