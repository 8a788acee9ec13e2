//! `/api/v1/licensing`: what client apps call. The license key or the license token is the
//! credential; no admin token is involved.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::{
    DeactivationReason, DeviceDetails, DeviceId, Sha256Hex, Status, Subscription,
    SubscriptionAction, SubscriptionCommand, SubscriptionError, SubscriptionEvent, SubscriptionId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, Problem};
use super::extract::{ApiJson, RequestContext};
use super::views::{ClientDeviceView, LicenseView};
use crate::app::SharedApp;
use crate::crypto::sha256_hex;
use crate::licensing::token::{LicenseClaims, TokenError};
use crate::store::{Committed, ExecuteError};
use crate::validation::LicenseSnapshot;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(activate))
        .routes(routes!(validate))
        .routes(routes!(refresh))
        .routes(routes!(deactivate))
        .routes(routes!(public_key))
        .routes(routes!(jwks))
}

const MAX_FINGERPRINT_LEN: usize = 512;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub license_key: String,
    pub device: DeviceInfo,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    /// A stable, app-computed identifier of the machine. Only its SHA-256 is kept.
    pub fingerprint: String,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub hostname: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenIssued {
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct ValidationResult {
    pub valid: bool,
    /// VALID, NOT_FOUND, SUSPENDED, EXPIRED, CANCELED, DEVICE_NOT_ACTIVATED,
    /// FINGERPRINT_MISMATCH, TOKEN_INVALID or TOKEN_EXPIRED.
    pub code: &'static str,
    pub detail: String,
    pub license: Option<LicenseView>,
    pub device: Option<ClientDeviceView>,
}

impl ValidationResult {
    fn invalid(code: &'static str, detail: &str) -> Self {
        Self {
            valid: false,
            code,
            detail: detail.to_owned(),
            license: None,
            device: None,
        }
    }
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

fn fingerprint_hash(raw: &str) -> Result<Sha256Hex, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_FINGERPRINT_LEN {
        return Err(ApiError::validation(format!(
            "fingerprint must be 1 to {MAX_FINGERPRINT_LEN} characters"
        )));
    }
    Ok(sha256_hex(raw))
}

fn license_not_found() -> ApiError {
    ApiError::not_found("LICENSE_NOT_FOUND", "no license matches this key")
}

fn token_error(error: TokenError) -> ApiError {
    match error {
        TokenError::Invalid => ApiError::unauthorized("TOKEN_INVALID", error.to_string()),
        TokenError::Expired => ApiError::unauthorized("TOKEN_EXPIRED", error.to_string()),
    }
}

/// Licensing answers "not found" alike for unknown, deleted and superseded keys.
fn licensing_error(error: ExecuteError<SubscriptionError>) -> ApiError {
    match error {
        ExecuteError::Domain(
            SubscriptionError::NotFound
            | SubscriptionError::Deleted
            | SubscriptionError::LicenseKeyMismatch,
        ) => license_not_found(),
        other => other.into(),
    }
}

/// Which subscription a license key names, if any.
async fn subscription_for_key(
    app: &SharedApp,
    key: &LicenseKey,
) -> Result<(SubscriptionId, Sha256Hex), ApiError> {
    let key_hash = sha256_hex(key.expose());
    let id = app
        .lookup
        .subscription_by_key_hash(&key_hash)
        .await?
        .ok_or_else(license_not_found)?;
    Ok((id, key_hash))
}

/// Signs the token recorded by the `LicenseTokenIssued` event of a committed command.
fn token_issued(
    app: &SharedApp,
    committed: &Committed<Subscription>,
    now: DateTime<Utc>,
) -> Result<TokenIssued, ApiError> {
    let state = committed.aggregate.live().ok_or_else(license_not_found)?;
    let Some((device_id, token_id, expires_at, issued_at)) = committed
        .events
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            SubscriptionEvent::LicenseTokenIssued {
                device_id,
                token_id,
                expires_at,
                at,
            } => Some((*device_id, *token_id, *expires_at, *at)),
            _ => None,
        })
    else {
        return Err(ApiError::internal(
            "a token command committed without a LicenseTokenIssued event",
        ));
    };
    let device = state
        .device(device_id)
        .ok_or_else(|| ApiError::internal("token issued for an unknown device"))?;
    let token = app
        .license_tokens
        .sign(state, device, token_id, issued_at, expires_at)
        .map_err(ApiError::internal)?;
    Ok(TokenIssued {
        token,
        token_expires_at: expires_at,
        device_id: device_id.as_uuid(),
        license: LicenseView::from_snapshot(
            &LicenseSnapshot::from_state(state, committed.version),
            now,
        ),
        position: committed.position,
    })
}

/// Activate a license key on a device and get a license token. Re-activating a device that
/// is already active is idempotent: same device, fresh token.
#[utoipa::path(post, path = "/api/v1/licensing/activate", tag = "licensing", request_body = ActivateRequest,
    responses((status = 201, body = TokenIssued),
        (status = 404, body = Problem, description = "LICENSE_NOT_FOUND"),
        (status = 403, body = Problem, description = "LICENSE_SUSPENDED, LICENSE_EXPIRED or LICENSE_CANCELED"),
        (status = 409, body = Problem, description = "DEVICE_LIMIT_REACHED"),
        (status = 422, body = Problem, description = "LICENSE_KEY_MALFORMED or VALIDATION_FAILED")))]
async fn activate(
    State(app): State<SharedApp>,
    context: RequestContext,
    ApiJson(body): ApiJson<ActivateRequest>,
) -> Result<(StatusCode, Json<TokenIssued>), ApiError> {
    let key = parse_key(&body.license_key)?;
    let fingerprint_hash = fingerprint_hash(&body.device.fingerprint)?;
    let (subscription_id, key_hash) = subscription_for_key(&app, &key).await?;
    let now = Utc::now();
    let device = body.device;
    let commands = vec![
        SubscriptionAction::VerifyLicenseKey { key_hash },
        SubscriptionAction::ActivateDevice(DeviceDetails {
            device_id: DeviceId(Uuid::new_v4()),
            fingerprint_hash: fingerprint_hash.clone(),
            name: device.name,
            platform: device.platform,
            os_version: device.os_version,
            app_version: device.app_version,
            hostname: device.hostname,
        }),
        SubscriptionAction::IssueLicenseToken {
            fingerprint_hash,
            token_id: Uuid::new_v4(),
            expires_at: app.license_tokens.requested_expiry(now),
        },
    ];
    let committed = app
        .execute_subscription(
            &subscription_id.to_string(),
            commands
                .into_iter()
                .map(|a| SubscriptionCommand::new(now, a))
                .collect(),
            context.metadata(format!("license:{subscription_id}")),
            None,
        )
        .await
        .map_err(licensing_error)?;
    Ok((
        StatusCode::CREATED,
        Json(token_issued(&app, &committed, now)?),
    ))
}

/// Check a license key or license token for a device. Always 200 with a `code`, unless the
/// request itself is malformed.
#[utoipa::path(post, path = "/api/v1/licensing/validate", tag = "licensing", request_body = CredentialRequest,
    responses((status = 200, body = ValidationResult), (status = 422, body = Problem)))]
async fn validate(
    State(app): State<SharedApp>,
    ApiJson(body): ApiJson<CredentialRequest>,
) -> Result<Json<ValidationResult>, ApiError> {
    let fingerprint_hash = fingerprint_hash(&body.fingerprint)?;
    let now = Utc::now();
    let not_found = || Json(ValidationResult::invalid("NOT_FOUND", "no license matches"));
    let (license, device_id) = match (&body.license_key, &body.token) {
        (Some(raw_key), None) => {
            let key_hash = sha256_hex(parse_key(raw_key)?.expose());
            match app.licenses.by_key(&key_hash).await? {
                Some(license) => (license, None),
                None => return Ok(not_found()),
            }
        }
        (None, Some(token)) => {
            let claims = match app.license_tokens.verify(token) {
                Ok(claims) => claims,
                Err(TokenError::Expired) => {
                    return Ok(Json(ValidationResult::invalid(
                        "TOKEN_EXPIRED",
                        "the token has expired",
                    )))
                }
                Err(TokenError::Invalid) => {
                    return Ok(Json(ValidationResult::invalid(
                        "TOKEN_INVALID",
                        "the token is not a valid license token",
                    )))
                }
            };
            if claims.fpr != fingerprint_hash.as_str() {
                return Ok(Json(ValidationResult::invalid(
                    "FINGERPRINT_MISMATCH",
                    "the token was issued to another device",
                )));
            }
            match app
                .licenses
                .by_subscription(SubscriptionId(claims.sid))
                .await?
            {
                Some(license) => (license, Some(DeviceId(claims.sub))),
                None => return Ok(not_found()),
            }
        }
        _ => {
            return Err(ApiError::validation(
                "send exactly one of license_key and token",
            ))
        }
    };
    if license.deleted {
        return Ok(not_found());
    }
    Ok(Json(judge(&license, &fingerprint_hash, device_id, now)))
}

/// The verdict on a live license for one device (found by fingerprint, and by id when a
/// token named it).
fn judge(
    license: &LicenseSnapshot,
    fingerprint: &Sha256Hex,
    device_id: Option<DeviceId>,
    now: DateTime<Utc>,
) -> ValidationResult {
    let view = Some(LicenseView::from_snapshot(license, now));
    let (code, detail) = match license.status_at(now) {
        Status::Suspended => ("SUSPENDED", "the license is suspended"),
        Status::Expired => ("EXPIRED", "the license has expired"),
        Status::Canceled => ("CANCELED", "the license is canceled"),
        Status::Trialing | Status::Active | Status::PastDue => {
            let device = license.active_devices.iter().find(|d| {
                &d.fingerprint_hash == fingerprint && device_id.is_none_or(|id| d.id == id)
            });
            return match device {
                Some(device) => ValidationResult {
                    valid: true,
                    code: "VALID",
                    detail: "the license is valid on this device".into(),
                    license: view,
                    device: Some(ClientDeviceView::from_active(device)),
                },
                None => ValidationResult {
                    license: view,
                    ..ValidationResult::invalid(
                        "DEVICE_NOT_ACTIVATED",
                        "this device is not activated",
                    )
                },
            };
        }
    };
    ValidationResult {
        license: view,
        ..ValidationResult::invalid(code, detail)
    }
}

/// Exchange a valid license token for a fresh one while the license is still valid.
#[utoipa::path(post, path = "/api/v1/licensing/refresh", tag = "licensing", request_body = RefreshRequest,
    responses((status = 200, body = TokenIssued),
        (status = 401, body = Problem, description = "TOKEN_INVALID or TOKEN_EXPIRED"),
        (status = 403, body = Problem, description = "LICENSE_SUSPENDED, LICENSE_EXPIRED or LICENSE_CANCELED"),
        (status = 404, body = Problem, description = "LICENSE_NOT_FOUND or DEVICE_NOT_ACTIVATED")))]
async fn refresh(
    State(app): State<SharedApp>,
    context: RequestContext,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenIssued>, ApiError> {
    let claims: LicenseClaims = app
        .license_tokens
        .verify(&body.token)
        .map_err(token_error)?;
    let fingerprint_hash =
        Sha256Hex::parse(&claims.fpr).map_err(|_| token_error(TokenError::Invalid))?;
    let now = Utc::now();
    let command = SubscriptionCommand::new(
        now,
        SubscriptionAction::IssueLicenseToken {
            fingerprint_hash,
            token_id: Uuid::new_v4(),
            expires_at: app.license_tokens.requested_expiry(now),
        },
    );
    let committed = app
        .execute_subscription(
            &claims.sid.to_string(),
            vec![command],
            context.metadata(format!("license:{}", claims.sid)),
            None,
        )
        .await
        .map_err(licensing_error)?;
    Ok(Json(token_issued(&app, &committed, now)?))
}

/// Free a device's slot. The credential is the license key or the device's license token.
#[utoipa::path(post, path = "/api/v1/licensing/deactivate", tag = "licensing", request_body = CredentialRequest,
    responses((status = 204),
        (status = 401, body = Problem, description = "TOKEN_INVALID or TOKEN_EXPIRED"),
        (status = 403, body = Problem, description = "FINGERPRINT_MISMATCH"),
        (status = 404, body = Problem, description = "LICENSE_NOT_FOUND or DEVICE_NOT_ACTIVATED")))]
async fn deactivate(
    State(app): State<SharedApp>,
    context: RequestContext,
    ApiJson(body): ApiJson<CredentialRequest>,
) -> Result<StatusCode, ApiError> {
    let fingerprint_hash = fingerprint_hash(&body.fingerprint)?;
    let (subscription_id, key_check) = match (&body.license_key, &body.token) {
        (Some(raw_key), None) => {
            let (id, key_hash) = subscription_for_key(&app, &parse_key(raw_key)?).await?;
            (id, Some(SubscriptionAction::VerifyLicenseKey { key_hash }))
        }
        (None, Some(token)) => {
            let claims = app.license_tokens.verify(token).map_err(token_error)?;
            if claims.fpr != fingerprint_hash.as_str() {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "FINGERPRINT_MISMATCH",
                    "the token was issued to another device",
                ));
            }
            (SubscriptionId(claims.sid), None)
        }
        _ => {
            return Err(ApiError::validation(
                "send exactly one of license_key and token",
            ))
        }
    };
    let id = subscription_id.to_string();
    let (subscription, _) = app.subscriptions.load(&id).await?;
    let device_not_activated =
        || ApiError::not_found("DEVICE_NOT_ACTIVATED", "this device is not activated");
    let state = subscription.live().ok_or_else(license_not_found)?;
    // A superseded key still names its subscription in the log: refuse it as unknown before
    // saying anything about the devices.
    if let Some(SubscriptionAction::VerifyLicenseKey { key_hash }) = &key_check {
        if state.license_key.as_ref().map(|k| &k.key_hash) != Some(key_hash) {
            return Err(license_not_found());
        }
    }
    let device_id = state
        .active_device_with_fingerprint(&fingerprint_hash)
        .ok_or_else(device_not_activated)?
        .id;
    let now = Utc::now();
    let commands = key_check
        .into_iter()
        .chain([SubscriptionAction::DeactivateDevice {
            device_id,
            reason: DeactivationReason::Client,
        }])
        .map(|a| SubscriptionCommand::new(now, a))
        .collect();
    match app
        .execute_subscription(
            &id,
            commands,
            context.metadata(format!("license:{subscription_id}")),
            None,
        )
        .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        // Deactivated by someone else between our read and our write.
        Err(ExecuteError::Domain(SubscriptionError::DeviceNotActive(_))) => {
            Err(device_not_activated())
        }
        Err(other) => Err(licensing_error(other)),
    }
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
        app.license_tokens.keys().public_pem.clone(),
    )
}

/// The license token verification key as a JSON Web Key Set (OKP / Ed25519, with `kid`).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "licensing",
    responses((status = 200, content_type = "application/json", body = Object)))]
async fn jwks(State(app): State<SharedApp>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(app.license_tokens.keys().jwks()),
    )
}
