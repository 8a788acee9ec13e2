//! `/api/v1/licensing`: what client apps call. The license key or the license token is the
//! credential; no admin token is involved.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware::from_fn;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::DeviceInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, Problem};
use super::extract::{ApiJson, RequestContext};
use super::idempotency::{self, IdempotencyKeyHeader};
use super::views::{ClientDeviceView, LicenseView};
use crate::app::{App, SharedApp};
use crate::licensing::{self, Credential, Scope, TokenIssued, Verdict};
use crate::monitoring::record;
use crate::store::EventMetadata;
use flowlytix_aggregates::catalogue::MAX_ENTITLEMENTS;
use flowlytix_aggregates::Code;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(activate))
        .routes(routes!(refresh))
        .routes(routes!(deactivate))
        .routes(routes!(heartbeat))
        .routes(routes!(checkin))
        .route_layer(from_fn(idempotency::license_keys))
        // Validation changes nothing: a repeat is already safe.
        .routes(routes!(validate))
}

/// The token verification key, PEM and JWKS: public, the same for every caller and cacheable,
/// so outside the licensing budget (a client that used its budget up can still verify what
/// it holds, and a cache in front may serve many clients from one address).
pub fn verification_keys_router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(public_key))
        .routes(routes!(jwks))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub license_key: String,
    pub device: ActivatingDevice,
    /// Activate only if the license matches (else 403 with the scope's code).
    pub scope: Option<ScopeRequest>,
}

/// What the client app requires of the license: a key bought for product A must not unlock
/// product B.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ScopeRequest {
    /// A product code.
    #[schema(max_length = 64)]
    pub product: Option<String>,
    /// A policy code.
    #[schema(max_length = 64)]
    pub policy: Option<String>,
    /// Entitlement codes the license must grant, every one.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub entitlements: Vec<String>,
}

impl ScopeRequest {
    fn parse(self) -> Result<Scope, ApiError> {
        let code = |raw: String| {
            Code::parse(&raw)
                .map(|_| raw)
                .map_err(|e| ApiError::validation(format!("scope: {e}")))
        };
        if self.entitlements.len() > MAX_ENTITLEMENTS {
            return Err(ApiError::validation(format!(
                "scope.entitlements: at most {MAX_ENTITLEMENTS}"
            )));
        }
        Ok(Scope {
            product: self.product.map(code).transpose()?,
            policy: self.policy.map(code).transpose()?,
            entitlements: self
                .entitlements
                .into_iter()
                .map(code)
                .collect::<Result<_, _>>()?,
        })
    }
}

fn scope(request: Option<ScopeRequest>) -> Result<Scope, ApiError> {
    request.map_or_else(|| Ok(Scope::default()), ScopeRequest::parse)
}

/// The longest `nonce` echoed back.
const MAX_NONCE_LEN: usize = 256;

/// The device as an activation request sends it: its fingerprint and its [`DeviceInfo`].
/// (Written out rather than flattened: serde cannot refuse unknown fields beside a flatten.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeviceInfo)]
pub struct ActivatingDevice {
    /// A stable, app-computed identifier of the machine. Only its SHA-256 is kept.
    pub fingerprint: String,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub hostname: Option<String>,
}

impl ActivatingDevice {
    /// The fingerprint as sent, and what the device says about itself.
    fn into_parts(self) -> (String, DeviceInfo) {
        let info = DeviceInfo {
            name: self.name,
            platform: self.platform,
            os_version: self.os_version,
            app_version: self.app_version,
            hostname: self.hostname,
        };
        (self.fingerprint, info)
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = TokenIssued)]
pub struct TokenIssuedView {
    /// EdDSA JWT; verify it with `/.well-known/jwks.json`.
    pub token: String,
    pub token_expires_at: DateTime<Utc>,
    pub device_id: Uuid,
    pub license: LicenseView,
    pub position: i64,
}

/// Exactly one of `license_key` and `token`, plus the device's fingerprint.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    pub license_key: Option<String>,
    pub token: Option<String>,
    pub fingerprint: String,
}

/// `POST /api/v1/licensing/validate`: a credential, and optionally what the license must
/// match and a nonce to echo (so a captured answer cannot be replayed as a fresh one).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub license_key: Option<String>,
    pub token: Option<String>,
    pub fingerprint: String,
    pub scope: Option<ScopeRequest>,
    #[schema(max_length = 256)]
    pub nonce: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TokenRefreshRequest)]
pub struct RefreshRequest {
    /// The license token to exchange.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct ValidationResult {
    pub valid: bool,
    /// VALID, NOT_FOUND, SUSPENDED, EXPIRED, CANCELED, DEVICE_NOT_ACTIVATED,
    /// FINGERPRINT_MISMATCH, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_REVOKED,
    /// PRODUCT_SCOPE_MISMATCH, POLICY_SCOPE_MISMATCH, ENTITLEMENTS_MISSING or
    /// HEARTBEAT_DEAD.
    pub code: &'static str,
    pub detail: String,
    pub license: Option<LicenseView>,
    pub device: Option<ClientDeviceView>,
    /// Set while an expired license still works within its policy's grace.
    pub grace_until: Option<DateTime<Utc>>,
    /// With `ENTITLEMENTS_MISSING`: the codes asked for that the license does not grant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_entitlements: Vec<String>,
    /// The request's nonce, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl ValidationResult {
    fn new(verdict: Verdict, nonce: Option<String>, now: DateTime<Utc>) -> Self {
        let terms = verdict.terms();
        Self {
            valid: verdict.is_valid(),
            code: verdict.code.as_str(),
            detail: verdict.code.detail().to_owned(),
            license: verdict
                .license
                .as_ref()
                .zip(terms.as_ref())
                .map(|(license, terms)| LicenseView::from_snapshot(license, terms, now)),
            device: verdict.device.as_ref().map(ClientDeviceView::from_active),
            grace_until: verdict.grace_until,
            missing_entitlements: verdict.missing_entitlements,
            nonce,
        }
    }
}

impl TokenIssuedView {
    fn new(issued: TokenIssued) -> Self {
        Self {
            license: LicenseView::from_snapshot(&issued.license, &issued.terms, Utc::now()),
            token: issued.token,
            token_expires_at: issued.expires_at,
            device_id: issued.device_id.as_uuid(),
            position: issued.position,
        }
    }
}

/// Counts an operation's outcome (`ok`, or its problem code) and passes its result on.
fn counted<T>(result: Result<T, ApiError>, count: fn(&'static str)) -> Result<T, ApiError> {
    count(match &result {
        Ok(_) => "ok",
        Err(error) => error.code,
    });
    result
}

fn parse_key(raw: &str) -> Result<LicenseKey, ApiError> {
    LicenseKey::parse(raw).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "LICENSE_KEY_MALFORMED",
            e.to_string(),
        )
    })
}

/// What a licensing call's events record of the client (the actor is the license, which the
/// operation names once it knows it). Privacy mode (`ENABLE_DEVICE_TRACKING=false`) keeps
/// neither its address nor its user agent: dropped here, before any event is written.
fn client_metadata(app: &App, context: &RequestContext) -> EventMetadata {
    let metadata = context.metadata("");
    if app.config.enable_device_tracking {
        metadata
    } else {
        EventMetadata {
            ip: String::new(),
            user_agent: String::new(),
            ..metadata
        }
    }
}

/// What a device keeps of its own description: in privacy mode only the name its app gave
/// and its platform (its fingerprint hash and times are kept apart).
fn tracked(app: &App, info: DeviceInfo) -> DeviceInfo {
    if app.config.enable_device_tracking {
        info
    } else {
        DeviceInfo {
            name: info.name,
            platform: info.platform,
            ..DeviceInfo::default()
        }
    }
}

/// Exactly one of a license key and a token.
fn credential(license_key: Option<&str>, token: Option<String>) -> Result<Credential, ApiError> {
    match (license_key, token) {
        (Some(raw_key), None) => Ok(Credential::LicenseKey(parse_key(raw_key)?)),
        (None, Some(token)) => Ok(Credential::Token(token)),
        _ => Err(ApiError::validation(
            "send exactly one of license_key and token",
        )),
    }
}

/// Activate a license key on a device and get a license token. Re-activating a device that
/// is already active is idempotent: same device, fresh token.
#[utoipa::path(post, path = "/api/v1/licensing/activate", tag = "licensing", params(IdempotencyKeyHeader), request_body = ActivateRequest,
    responses((status = 201, body = TokenIssuedView),
        (status = 404, body = Problem, description = "LICENSE_NOT_FOUND"),
        (status = 403, body = Problem, description = "LICENSE_SUSPENDED, LICENSE_EXPIRED, LICENSE_CANCELED, PRODUCT_SCOPE_MISMATCH, POLICY_SCOPE_MISMATCH or ENTITLEMENTS_MISSING (with `missing_entitlements`)"),
        (status = 409, body = Problem, description = "DEVICE_LIMIT_REACHED (with `in_use` and `max`)"),
        (status = 422, body = Problem, description = "LICENSE_KEY_MALFORMED or VALIDATION_FAILED")))]
async fn activate(
    State(app): State<SharedApp>,
    context: RequestContext,
    ApiJson(body): ApiJson<ActivateRequest>,
) -> Result<(StatusCode, Json<TokenIssuedView>), ApiError> {
    let key = parse_key(&body.license_key)?;
    let scope = scope(body.scope)?;
    let (fingerprint, info) = body.device.into_parts();
    let info = tracked(&app, info);
    let fingerprint_hash = licensing::fingerprint_hash(&fingerprint)?;
    let issued = app
        .licensing
        .activate(
            key,
            fingerprint_hash,
            info,
            &scope,
            client_metadata(&app, &context),
        )
        .await;
    let issued = counted(issued.map_err(ApiError::from), record::activation)?;
    Ok((StatusCode::CREATED, Json(TokenIssuedView::new(issued))))
}

/// Check a license key or license token for a device. Always 200 with a `code`, unless the
/// request itself is malformed.
#[utoipa::path(post, path = "/api/v1/licensing/validate", tag = "licensing", request_body = ValidateRequest,
    responses((status = 200, body = ValidationResult), (status = 422, body = Problem)))]
async fn validate(
    State(app): State<SharedApp>,
    ApiJson(body): ApiJson<ValidateRequest>,
) -> Result<Json<ValidationResult>, ApiError> {
    let fingerprint_hash = licensing::fingerprint_hash(&body.fingerprint)?;
    let credential = credential(body.license_key.as_deref(), body.token)?;
    let scope = scope(body.scope)?;
    check_nonce(body.nonce.as_ref())?;
    let now = Utc::now();
    let verdict = app
        .licensing
        .validate(credential, fingerprint_hash, &scope, now)
        .await?;
    record::validation(verdict.code.as_str());
    Ok(Json(ValidationResult::new(verdict, body.nonce, now)))
}

/// Exchange a valid license token for a fresh one while the license is still valid.
#[utoipa::path(post, path = "/api/v1/licensing/refresh", tag = "licensing", params(IdempotencyKeyHeader), request_body = RefreshRequest,
    responses((status = 200, body = TokenIssuedView),
        (status = 401, body = Problem, description = "TOKEN_INVALID or TOKEN_EXPIRED"),
        (status = 403, body = Problem, description = "LICENSE_SUSPENDED, LICENSE_EXPIRED or LICENSE_CANCELED"),
        (status = 404, body = Problem, description = "LICENSE_NOT_FOUND or DEVICE_NOT_ACTIVATED")))]
async fn refresh(
    State(app): State<SharedApp>,
    context: RequestContext,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenIssuedView>, ApiError> {
    let issued = app
        .licensing
        .refresh(&body.token, client_metadata(&app, &context))
        .await;
    let issued = counted(issued.map_err(ApiError::from), record::token_refresh)?;
    Ok(Json(TokenIssuedView::new(issued)))
}

/// `POST /api/v1/licensing/heartbeat`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The device's license token.
    pub token: String,
    /// Keep the seat (offline) until then, within the policy's `max_borrow`.
    pub borrow_until: Option<DateTime<Utc>>,
    #[schema(max_length = 256)]
    pub nonce: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HeartbeatView {
    /// The lease's new deadline: beat again before it.
    pub lease_expires_at: DateTime<Utc>,
    /// Set while the seat is borrowed.
    pub borrowed_until: Option<DateTime<Utc>>,
    /// A fresh license token, never lasting past the lease.
    pub token: String,
    pub token_expires_at: DateTime<Utc>,
    /// The request's nonce, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// `POST /api/v1/licensing/checkin`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    /// The device's license token.
    pub token: String,
}

fn check_nonce(nonce: Option<&String>) -> Result<(), ApiError> {
    if nonce.is_some_and(|n| n.chars().count() > MAX_NONCE_LEN) {
        return Err(ApiError::validation(format!(
            "nonce: at most {MAX_NONCE_LEN} characters"
        )));
    }
    Ok(())
}

/// Renew the lease of the device a token names (heartbeats are no events). A dead device is
/// revived within its policy's `resurrection_window`, else refused.
#[utoipa::path(post, path = "/api/v1/licensing/heartbeat", tag = "licensing", params(IdempotencyKeyHeader), request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatView),
        (status = 401, body = Problem, description = "TOKEN_INVALID, TOKEN_EXPIRED or TOKEN_REVOKED"),
        (status = 403, body = Problem, description = "LICENSE_SUSPENDED, LICENSE_EXPIRED or LICENSE_CANCELED"),
        (status = 404, body = Problem, description = "LICENSE_NOT_FOUND or DEVICE_NOT_ACTIVATED"),
        (status = 409, body = Problem, description = "HEARTBEAT_NOT_REQUIRED (the policy has no heartbeats) or DEVICE_LIMIT_REACHED (a revival into a full pool, with `in_use` and `max`)"),
        (status = 410, body = Problem, description = "HEARTBEAT_DEAD: the lease's deadline passed and the resurrection window (if any) is over"),
        (status = 422, body = Problem, description = "BORROW_NOT_ALLOWED, INVALID_BORROW (with `max_borrow_until`) or VALIDATION_FAILED")))]
async fn heartbeat(
    State(app): State<SharedApp>,
    context: RequestContext,
    ApiJson(body): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatView>, ApiError> {
    check_nonce(body.nonce.as_ref())?;
    let answer = app
        .licensing
        .heartbeat(
            &body.token,
            body.borrow_until,
            client_metadata(&app, &context),
        )
        .await?;
    Ok(Json(HeartbeatView {
        lease_expires_at: answer.lease_expires_at,
        borrowed_until: answer.borrowed_until,
        token: answer.token,
        token_expires_at: answer.token_expires_at,
        nonce: body.nonce,
    }))
}

/// Give the device's seat back at once: a floating seat is released (not counted as a
/// deactivation); a node-locked device is deactivated, within the policy's churn limit.
#[utoipa::path(post, path = "/api/v1/licensing/checkin", tag = "licensing", params(IdempotencyKeyHeader), request_body = CheckinRequest,
    responses((status = 204),
        (status = 401, body = Problem, description = "TOKEN_INVALID, TOKEN_EXPIRED or TOKEN_REVOKED"),
        (status = 404, body = Problem, description = "LICENSE_NOT_FOUND"),
        (status = 429, body = Problem, description = "DEACTIVATION_LIMIT_REACHED (node-locked, past the churn limit; with `Retry-After` and `retry_at`)")))]
async fn checkin(
    State(app): State<SharedApp>,
    context: RequestContext,
    ApiJson(body): ApiJson<CheckinRequest>,
) -> Result<StatusCode, ApiError> {
    app.licensing
        .checkin(&body.token, client_metadata(&app, &context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Free a device's slot. The credential is the license key or the device's license token.
#[utoipa::path(post, path = "/api/v1/licensing/deactivate", tag = "licensing", params(IdempotencyKeyHeader), request_body = CredentialRequest,
    responses((status = 204),
        (status = 401, body = Problem, description = "TOKEN_INVALID or TOKEN_EXPIRED"),
        (status = 403, body = Problem, description = "FINGERPRINT_MISMATCH"),
        (status = 404, body = Problem, description = "LICENSE_NOT_FOUND or DEVICE_NOT_ACTIVATED"),
        (status = 429, body = Problem, description = "DEACTIVATION_LIMIT_REACHED (past the policy's churn limit; with `Retry-After` and `retry_at`)")))]
async fn deactivate(
    State(app): State<SharedApp>,
    context: RequestContext,
    ApiJson(body): ApiJson<CredentialRequest>,
) -> Result<StatusCode, ApiError> {
    let fingerprint_hash = licensing::fingerprint_hash(&body.fingerprint)?;
    let credential = credential(body.license_key.as_deref(), body.token)?;
    let deactivated = app
        .licensing
        .deactivate(
            credential,
            fingerprint_hash,
            client_metadata(&app, &context),
        )
        .await;
    counted(deactivated.map_err(ApiError::from), record::deactivation)?;
    Ok(StatusCode::NO_CONTENT)
}
/// The Ed25519 public key that verifies license tokens, as PEM (SPKI).
#[utoipa::path(get, path = "/api/v1/licensing/public-key", tag = "licensing",
    responses((status = 200, content_type = "application/x-pem-file", body = String)))]
async fn public_key(State(app): State<SharedApp>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        app.licensing.tokens().keys().public_pem.clone(),
    )
}

/// A JSON Web Key Set (RFC 7517) holding the license-token verification key.
#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// An Ed25519 public key as an OKP JWK (RFC 8037).
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    pub kty: KeyType,
    pub crv: Curve,
    /// The raw public key, base64url without padding.
    pub x: String,
    /// The RFC 7638 thumbprint of the key; license tokens carry it in their header.
    pub kid: String,
    pub alg: JwkAlgorithm,
    #[serde(rename = "use")]
    pub key_use: KeyUse,
}

#[derive(Serialize, ToSchema)]
pub enum KeyType {
    #[serde(rename = "OKP")]
    Okp,
}

#[derive(Serialize, ToSchema)]
pub enum Curve {
    Ed25519,
}

#[derive(Serialize, ToSchema)]
pub enum JwkAlgorithm {
    EdDSA,
}

#[derive(Serialize, ToSchema)]
pub enum KeyUse {
    #[serde(rename = "sig")]
    Sig,
}

/// The license token verification key as a JSON Web Key Set (OKP / Ed25519, with `kid`).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "licensing",
    responses((status = 200, content_type = "application/json", body = JwkSet)))]
async fn jwks(State(app): State<SharedApp>) -> impl IntoResponse {
    let keys = app.licensing.tokens().keys();
    let key = Jwk {
        kty: KeyType::Okp,
        crv: Curve::Ed25519,
        x: keys.public_x.clone(),
        kid: keys.kid.clone(),
        alg: JwkAlgorithm::EdDSA,
        key_use: KeyUse::Sig,
    };
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(JwkSet { keys: vec![key] }),
    )
}
