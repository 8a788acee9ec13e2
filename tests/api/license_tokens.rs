//! License tokens: what a client app verifies offline, and what the server refuses.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use uuid::Uuid;

use crate::helpers::{assert_problem, assert_refused, count_events_of_type, spawn_app, TestApp};

const FINGERPRINT: &str = "machine-7f3a9c";

/// A server with one subscription and one activated device.
struct Activated {
    app: TestApp,
    subscription: Value,
    /// The activate response.
    activation: Value,
    license_expires_at: DateTime<Utc>,
}

impl Activated {
    fn token(&self) -> &str {
        self.activation["token"].as_str().unwrap()
    }
}

async fn activated() -> Activated {
    let app = spawn_app().await;
    let license_expires_at = (Utc::now() + Duration::days(30)).trunc_subsecs(0);
    let subscription = app
        .create_subscription(json!({
            "customer_email": "ann@example.com",
            "customer_name": "Ann Example",
            "plan": "pro",
            "max_devices": 3,
            "features": ["export", "sync"],
            "expires_at": license_expires_at,
        }))
        .await;
    let key = subscription["license_key"].as_str().unwrap();
    let response = app.activate(key, FINGERPRINT).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let activation: Value = response.json().await.unwrap();
    Activated {
        app,
        subscription,
        activation,
        license_expires_at,
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The claims of a token, read without verifying anything.
fn unverified_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn jwk(app: &TestApp) -> Value {
    let response = app
        .anon(Method::GET, "/.well-known/jwks.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    keys[0].clone()
}

async fn public_pem(app: &TestApp) -> String {
    let response = app
        .anon(Method::GET, "/api/v1/licensing/public-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/x-pem-file");
    response.text().await.unwrap()
}

/// How a client app verifies a token: EdDSA only, the license audience and issuer.
fn client_validation() -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["flowlytix-license"]);
    validation.set_issuer(&["flowlytix"]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "aud", "iss"]);
    validation
}

/// The server's license signing key, from the test's key directory.
fn server_private_key(app: &TestApp) -> EncodingKey {
    let pem = std::fs::read(app.key_dir.join("private.pem")).unwrap();
    EncodingKey::from_ed_pem(&pem).unwrap()
}

fn eddsa_header(kid: Option<&str>) -> Header {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    header
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

async fn validate_token(app: &TestApp, token: &str, fingerprint: &str) -> Value {
    app.validate(json!({"token": token, "fingerprint": fingerprint}))
        .await
}

async fn refresh(app: &TestApp, token: &str) -> Response {
    app.anon(Method::POST, "/api/v1/licensing/refresh")
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap()
}

/// Asserts that validate answers `code` for the token, and that refresh and deactivate refuse
/// it with 401 `code`, writing nothing.
async fn assert_token_refused(app: &TestApp, label: &str, token: &str, code: &str) {
    let verdict = validate_token(app, token, FINGERPRINT).await;
    assert_eq!(verdict["valid"], false, "{label}: {verdict}");
    assert_eq!(verdict["code"], code, "{label}: {verdict}");
    assert!(
        verdict["license"].is_null() && verdict["device"].is_null(),
        "{label}: {verdict}"
    );
    let request = app
        .anon(Method::POST, "/api/v1/licensing/refresh")
        .json(&json!({"token": token}));
    assert_refused(app, request, StatusCode::UNAUTHORIZED, code).await;
    let request = app
        .anon(Method::POST, "/api/v1/licensing/deactivate")
        .json(&json!({"token": token, "fingerprint": FINGERPRINT}));
    assert_refused(app, request, StatusCode::UNAUTHORIZED, code).await;
}

#[tokio::test]
async fn a_license_token_verifies_with_the_published_keys_and_carries_every_claim() {
    let a = activated().await;
    let app = &a.app;
    let token = a.token();

    let jwk = jwk(app).await;
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert!(
        jwk.get("d").is_none(),
        "the JWKS must not hold the private key: {jwk}"
    );
    let kid = jwk["kid"].as_str().unwrap();
    assert!(!kid.is_empty());

    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(kid));

    let from_jwk = DecodingKey::from_ed_components(jwk["x"].as_str().unwrap()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(token, &from_jwk, &client_validation())
        .unwrap()
        .claims;
    let from_pem = DecodingKey::from_ed_pem(public_pem(app).await.as_bytes()).unwrap();
    let via_pem = jsonwebtoken::decode::<Value>(token, &from_pem, &client_validation())
        .unwrap()
        .claims;
    assert_eq!(claims, via_pem);

    let now = Utc::now().timestamp();
    let token_expires_at: DateTime<Utc> = a.activation["token_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected_keys = [
        "iss",
        "aud",
        "sub",
        "iat",
        "nbf",
        "exp",
        "jti",
        "sid",
        "fpr",
        "plan",
        "features",
        "max_devices",
        "license_expires_at",
        "license_key_ref",
        // Added with policies: the entitlements in force (`prd`, `pol` and
        // `grace_until` only when there is one).
        "ent",
    ];
    let mut keys: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected_sorted = expected_keys.to_vec();
    expected_sorted.sort_unstable();
    assert_eq!(keys, expected_sorted, "{claims}");

    assert_eq!(claims["iss"], "flowlytix");
    assert_eq!(claims["aud"], "flowlytix-license");
    let key_hash = sha256_hex(a.subscription["license_key"].as_str().unwrap());
    assert_eq!(
        claims["license_key_ref"],
        key_hash[..16],
        "the key it was issued under"
    );
    assert_eq!(claims["sub"], a.activation["device_id"]);
    let iat = claims["iat"].as_i64().unwrap();
    assert!(
        (now - iat).abs() <= 60,
        "iat {iat} is not about now ({now})"
    );
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert_eq!(
        claims["exp"].as_i64().unwrap(),
        token_expires_at.timestamp()
    );
    // The default token lifetime (7 days) is shorter than the license's 30 days.
    assert!(
        (claims["exp"].as_i64().unwrap() - iat - 7 * 24 * 3600).abs() <= 60,
        "{claims}"
    );
    let jti = Uuid::parse_str(claims["jti"].as_str().unwrap()).unwrap();
    assert!(!jti.is_nil());
    assert_eq!(claims["sid"], a.subscription["id"]);
    assert_eq!(claims["sid"], a.activation["license"]["subscription_id"]);
    assert_eq!(claims["fpr"], sha256_hex(FINGERPRINT));
    assert_eq!(claims["plan"], "pro");
    assert_eq!(claims["features"], json!(["export", "sync"]));
    assert_eq!(claims["max_devices"], 3);
    let license_expires_at: DateTime<Utc> = claims["license_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(license_expires_at, a.license_expires_at);
    assert_eq!(
        a.activation["license"]["expires_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        a.license_expires_at
    );

    // The device row is the token's subject.
    let device: Value = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/devices/{}",
                a.activation["device_id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(device["fingerprint_hash"], sha256_hex(FINGERPRINT));
    assert_eq!(device["subscription_id"], a.subscription["id"]);

    // And the server accepts it.
    let verdict = validate_token(app, token, FINGERPRINT).await;
    assert_eq!(verdict["code"], "VALID", "{verdict}");
    assert_eq!(verdict["device"]["id"], a.activation["device_id"]);
}

#[tokio::test]
async fn a_license_token_expiry_is_capped_at_the_license_expiry() {
    let app = spawn_app().await;
    let license_expires_at = (Utc::now() + Duration::hours(2)).trunc_subsecs(0);
    let subscription = app
        .create_subscription(json!({
            "customer_email": "ann@example.com", "customer_name": "Ann", "plan": "pro",
            "max_devices": 1, "expires_at": license_expires_at,
        }))
        .await;
    let response = app
        .activate(subscription["license_key"].as_str().unwrap(), FINGERPRINT)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let activation: Value = response.json().await.unwrap();
    let claims = unverified_claims(activation["token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap(),
        license_expires_at.timestamp()
    );
    let token_expires_at: DateTime<Utc> = activation["token_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(token_expires_at, license_expires_at);
}

#[tokio::test]
async fn forged_license_tokens_are_token_invalid_on_validate_refresh_and_deactivate() {
    let a = activated().await;
    let app = &a.app;
    let token = a.token();
    let kid = jwk(app).await["kid"].as_str().unwrap().to_owned();
    let claims = unverified_claims(token);
    let real_key = server_private_key(app);

    // alg: none, no signature.
    let none_header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let alg_none = format!("{}.{}.", b64_json(&none_header), b64_json(&claims));
    // The original signature kept, the header switched to none.
    let signature = token.rsplit('.').next().unwrap();
    let alg_none_with_signature = format!(
        "{}.{}.{signature}",
        b64_json(&none_header),
        b64_json(&claims)
    );

    // HS256 keyed with the public key's PEM: the classic algorithm confusion.
    let pem = public_pem(app).await;
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hmac_with_public_key = sign(
        &hs_header,
        &claims,
        &EncodingKey::from_secret(pem.as_bytes()),
    );
    let hmac_with_jwk_x = sign(
        &hs_header,
        &claims,
        &EncodingKey::from_secret(jwk(app).await["x"].as_str().unwrap().as_bytes()),
    );

    // The right claims and the server's kid, signed by another Ed25519 key.
    let other = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let other_pem = other.to_pkcs8_pem(LineEnding::LF).unwrap();
    let other_key = EncodingKey::from_ed_pem(other_pem.as_bytes()).unwrap();
    let foreign_signature = sign(&eddsa_header(Some(&kid)), &claims, &other_key);

    // A valid signature by the server's own key, under a kid that is not the server's, or none.
    let wrong_kid = sign(&eddsa_header(Some("some-other-key")), &claims, &real_key);
    let no_kid = sign(&eddsa_header(None), &claims, &real_key);

    // The payload altered (a better plan, more devices), the signature kept.
    let parts: Vec<&str> = token.split('.').collect();
    let mut upgraded = claims.clone();
    upgraded["plan"] = json!("enterprise");
    let tampered_plan = format!("{}.{}.{}", parts[0], b64_json(&upgraded), parts[2]);
    let mut more_devices = claims.clone();
    more_devices["max_devices"] = json!(1000);
    let tampered_limit = format!("{}.{}.{}", parts[0], b64_json(&more_devices), parts[2]);
    // A signature by the server's key over different claims, spliced onto these.
    let mut other_claims = claims.clone();
    other_claims["plan"] = json!("enterprise");
    let other_signature = sign(&eddsa_header(Some(&kid)), &other_claims, &real_key);
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other_signature.rsplit('.').next().unwrap()
    );

    // Signed by the server's key, but not a license token: wrong audience, wrong issuer.
    let mut admin_audience = claims.clone();
    admin_audience["aud"] = json!("flowlytix-admin");
    let wrong_audience = sign(&eddsa_header(Some(&kid)), &admin_audience, &real_key);
    let mut foreign_issuer = claims.clone();
    foreign_issuer["iss"] = json!("someone-else");
    let wrong_issuer = sign(&eddsa_header(Some(&kid)), &foreign_issuer, &real_key);
    // Signed by the server's key, but not yet valid.
    let mut future = claims.clone();
    future["nbf"] = json!(Utc::now().timestamp() + 3600);
    future["iat"] = future["nbf"].clone();
    let not_yet_valid = sign(&eddsa_header(Some(&kid)), &future, &real_key);

    // Control: the same machinery, with the server's key and kid and the claims unchanged,
    // makes a token the server accepts; so each refusal below is for its one forgery.
    let control = sign(&eddsa_header(Some(&kid)), &claims, &real_key);
    assert_eq!(
        validate_token(app, &control, FINGERPRINT).await["code"],
        "VALID"
    );

    let forged = [
        ("alg none", alg_none),
        ("alg none with the real signature", alg_none_with_signature),
        ("HS256 keyed with the public PEM", hmac_with_public_key),
        ("HS256 keyed with the JWK x", hmac_with_jwk_x),
        (
            "another Ed25519 key under the server's kid",
            foreign_signature,
        ),
        ("the server's key under another kid", wrong_kid),
        ("the server's key and no kid", no_kid),
        ("plan changed in the payload", tampered_plan),
        ("max_devices changed in the payload", tampered_limit),
        ("a signature over other claims", spliced),
        ("the admin audience", wrong_audience),
        ("another issuer", wrong_issuer),
        ("nbf in the future", not_yet_valid),
        ("garbage", "not.a.token".to_owned()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("empty", String::new()),
    ];
    for (label, forged_token) in &forged {
        assert_token_refused(app, label, forged_token, "TOKEN_INVALID").await;
    }

    // The real token still works and the device is still active.
    let verdict = validate_token(app, token, FINGERPRINT).await;
    assert_eq!(verdict["code"], "VALID", "{verdict}");
}

#[tokio::test]
async fn an_expired_license_token_is_token_expired() {
    let a = activated().await;
    let app = &a.app;
    let kid = jwk(app).await["kid"].as_str().unwrap().to_owned();
    let mut claims = unverified_claims(a.token());
    let now = Utc::now().timestamp();
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = sign(&eddsa_header(Some(&kid)), &claims, &server_private_key(app));
    // Just expired: no leeway.
    claims["exp"] = json!(now - 2);
    let just_expired = sign(&eddsa_header(Some(&kid)), &claims, &server_private_key(app));
    for (label, token) in [("an hour ago", expired), ("two seconds ago", just_expired)] {
        assert_token_refused(app, label, &token, "TOKEN_EXPIRED").await;
    }
}

#[tokio::test]
async fn a_license_token_presented_for_another_fingerprint_is_fingerprint_mismatch() {
    let a = activated().await;
    let app = &a.app;
    let key = a.subscription["license_key"].as_str().unwrap();
    // Another device of the same subscription, activated and valid in its own right.
    assert_eq!(
        app.activate(key, "machine-other").await.status(),
        StatusCode::CREATED
    );
    let verdict = validate_token(app, a.token(), "machine-other").await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["code"], "FINGERPRINT_MISMATCH", "{verdict}");
    let verdict = validate_token(app, a.token(), "machine-never-seen").await;
    assert_eq!(verdict["code"], "FINGERPRINT_MISMATCH", "{verdict}");
    // Deactivating another device with this token is refused too, and writes nothing.
    let request = app
        .anon(Method::POST, "/api/v1/licensing/deactivate")
        .json(&json!({"token": a.token(), "fingerprint": "machine-other"}));
    assert_refused(app, request, StatusCode::FORBIDDEN, "FINGERPRINT_MISMATCH").await;
    let other = app
        .validate(json!({"license_key": key, "fingerprint": "machine-other"}))
        .await;
    assert_eq!(other["code"], "VALID");
}

#[tokio::test]
async fn refreshing_a_valid_license_token_issues_a_new_token_and_records_it() {
    let a = activated().await;
    let app = &a.app;
    let old = unverified_claims(a.token());
    let issued_before = count_events_of_type(app, "LicenseTokenIssued").await;
    let events_before = app.event_count().await;

    // A second apart, so that the new iat is visibly later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let response = refresh(app, a.token()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let refreshed: Value = response.json().await.unwrap();
    let token = refreshed["token"].as_str().unwrap();
    assert_ne!(token, a.token());

    let from_jwk = DecodingKey::from_ed_components(jwk(app).await["x"].as_str().unwrap()).unwrap();
    let new = jsonwebtoken::decode::<Value>(token, &from_jwk, &client_validation())
        .unwrap()
        .claims;
    assert_ne!(new["jti"], old["jti"]);
    Uuid::parse_str(new["jti"].as_str().unwrap()).unwrap();
    assert!(new["iat"].as_i64().unwrap() > old["iat"].as_i64().unwrap());
    for same in [
        "sub",
        "sid",
        "fpr",
        "plan",
        "features",
        "max_devices",
        "license_expires_at",
        "iss",
        "aud",
    ] {
        assert_eq!(new[same], old[same], "{same}");
    }
    assert_eq!(refreshed["device_id"], a.activation["device_id"]);
    let token_expires_at: DateTime<Utc> = refreshed["token_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(new["exp"].as_i64().unwrap(), token_expires_at.timestamp());

    // Exactly one new event: the LicenseTokenIssued naming the new token.
    assert_eq!(
        count_events_of_type(app, "LicenseTokenIssued").await,
        issued_before + 1
    );
    assert_eq!(app.event_count().await, events_before + 1);
    let (Json(payload), Json(metadata)): (Json<Value>, Json<Value>) = flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_as(
            "select payload, metadata from events where event_type = 'LicenseTokenIssued'
             order by global_position desc limit 1",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    let issued = &payload["LicenseTokenIssued"];
    assert_eq!(issued["token_id"], new["jti"], "{payload}");
    assert_eq!(issued["device_id"], new["sub"], "{payload}");
    assert_eq!(
        metadata["actor"],
        format!("license:{}", a.subscription["id"].as_str().unwrap())
    );

    // The new token is valid, and can itself be refreshed.
    let verdict = validate_token(app, token, FINGERPRINT).await;
    assert_eq!(verdict["code"], "VALID", "{verdict}");
    assert_eq!(refresh(app, token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_is_refused_once_the_device_is_deactivated() {
    let a = activated().await;
    let app = &a.app;
    let response = app
        .anon(Method::POST, "/api/v1/licensing/deactivate")
        .json(&json!({"token": a.token(), "fingerprint": FINGERPRINT}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let request = app
        .anon(Method::POST, "/api/v1/licensing/refresh")
        .json(&json!({"token": a.token()}));
    assert_refused(app, request, StatusCode::NOT_FOUND, "DEVICE_NOT_ACTIVATED").await;
    let verdict = validate_token(app, a.token(), FINGERPRINT).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["code"], "DEVICE_NOT_ACTIVATED", "{verdict}");
}

#[tokio::test]
async fn reactivating_the_same_fingerprint_returns_the_same_device_and_a_fresh_token() {
    let a = activated().await;
    let app = &a.app;
    let key = a.subscription["license_key"].as_str().unwrap();
    assert_eq!(count_events_of_type(app, "DeviceActivated").await, 1);

    let response = app.activate(key, FINGERPRINT).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["device_id"], a.activation["device_id"]);
    assert_ne!(again["token"], a.activation["token"]);
    let (first, second) = (
        unverified_claims(a.token()),
        unverified_claims(again["token"].as_str().unwrap()),
    );
    assert_ne!(first["jti"], second["jti"]);
    assert_eq!(first["sub"], second["sub"]);

    assert_eq!(
        count_events_of_type(app, "DeviceActivated").await,
        1,
        "no second DeviceActivated"
    );
    assert_eq!(count_events_of_type(app, "LicenseTokenIssued").await, 2);
    let subscription: Value = app
        .admin(
            Method::GET,
            &format!(
                "/api/v1/subscriptions/{}",
                a.subscription["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(subscription["active_devices"], 1);
    assert_eq!(subscription["devices"].as_array().unwrap().len(), 1);
    for token in [a.token(), again["token"].as_str().unwrap()] {
        assert_eq!(
            validate_token(app, token, FINGERPRINT).await["code"],
            "VALID"
        );
    }
}

#[tokio::test]
async fn activation_with_an_unknown_key_is_404_license_not_found() {
    let app = spawn_app().await;
    let unknown = flowlytix_aggregates::license_key::LicenseKey::from_entropy([9u8; 19]);
    let before = app.event_count().await;
    assert_problem(
        app.activate(unknown.expose(), FINGERPRINT).await,
        StatusCode::NOT_FOUND,
        "LICENSE_NOT_FOUND",
    )
    .await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn a_superseded_license_key_is_license_not_found_everywhere() {
    let a = activated().await;
    let app = &a.app;
    let old_key = a.subscription["license_key"].as_str().unwrap();
    let id = a.subscription["id"].as_str().unwrap();
    let response = app
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id}/license-key"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let new_key = response.json::<Value>().await.unwrap()["license_key"]
        .as_str()
        .unwrap()
        .to_owned();

    // The old key is unknown to every licensing endpoint, whichever fingerprint is sent: it
    // must not reveal that it once named a subscription, nor which devices are active.
    for fingerprint in [FINGERPRINT, "machine-never-seen"] {
        let before = app.event_count().await;
        assert_problem(
            app.activate(old_key, fingerprint).await,
            StatusCode::NOT_FOUND,
            "LICENSE_NOT_FOUND",
        )
        .await;
        assert_eq!(app.event_count().await, before);
        let verdict = app
            .validate(json!({"license_key": old_key, "fingerprint": fingerprint}))
            .await;
        assert_eq!(verdict["code"], "NOT_FOUND", "{verdict}");
        assert!(verdict["license"].is_null(), "{verdict}");
        let request = app
            .anon(Method::POST, "/api/v1/licensing/deactivate")
            .json(&json!({"license_key": old_key, "fingerprint": fingerprint}));
        assert_refused(app, request, StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND").await;
    }
    // The device stays activated, and the new key works for it.
    let verdict = app
        .validate(json!({"license_key": new_key, "fingerprint": FINGERPRINT}))
        .await;
    assert_eq!(verdict["code"], "VALID", "{verdict}");
}
