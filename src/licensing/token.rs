//! License tokens: EdDSA JWTs that client apps verify offline with the server's public key.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use flowlytix_aggregates::subscription::{
    Device, EffectiveTerms, PresentedToken, SubscriptionState,
};
use flowlytix_aggregates::DeviceId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use uuid::Uuid;

use crate::keys::JwtKeys;

pub use flowlytix_client::{LicenseClaims, LICENSE_AUDIENCE};

/// What a token says of where it came from, for the subscription to judge.
pub fn presented(claims: &LicenseClaims) -> PresentedToken {
    PresentedToken {
        device_id: DeviceId(claims.sub),
        license_key_ref: claims.license_key_ref.clone(),
        issued_at: DateTime::from_timestamp(claims.iat, 0).unwrap_or_default(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a valid license token")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// Whom a token is for: the device, its subscription, its fingerprint, the key it is under.
struct Holder {
    device: Uuid,
    subscription: Uuid,
    fingerprint: String,
    license_key_ref: Option<String>,
}

/// What a token states, and when.
struct Stated<'a> {
    terms: &'a EffectiveTerms,
    license_expires_at: Option<DateTime<Utc>>,
    token_id: Uuid,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct LicenseTokens {
    keys: Arc<JwtKeys>,
    issuer: String,
    ttl: Duration,
}

impl LicenseTokens {
    pub fn new(keys: Arc<JwtKeys>, issuer: String, ttl: Duration) -> Self {
        Self { keys, issuer, ttl }
    }

    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    /// The expiry to request for a token issued at `now`; the aggregate caps it at the
    /// license's own expiry.
    pub fn requested_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(7))
    }

    /// A token for `device` of `subscription`, stating what it grants under `terms`.
    pub fn sign(
        &self,
        subscription: &SubscriptionState,
        terms: &EffectiveTerms,
        device: &Device,
        token_id: Uuid,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let holder = Holder {
            device: device.id.as_uuid(),
            subscription: subscription.id.as_uuid(),
            fingerprint: device.fingerprint_hash.as_str().to_owned(),
            license_key_ref: subscription
                .license_key
                .as_ref()
                .map(|key| key.token_ref().to_owned()),
        };
        let stated = Stated {
            terms,
            license_expires_at: subscription.expires_at,
            token_id,
            issued_at,
            expires_at,
        };
        Ok(self.keys.sign(&self.claims(holder, stated))?)
    }

    /// A new token for the device `previous` was issued to, stating what the license grants
    /// now: what a heartbeat answers, without an event (the heartbeat is none).
    pub fn reissue(
        &self,
        previous: &LicenseClaims,
        terms: &EffectiveTerms,
        license_expires_at: Option<DateTime<Utc>>,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let holder = Holder {
            device: previous.sub,
            subscription: previous.sid,
            fingerprint: previous.fpr.clone(),
            license_key_ref: previous.license_key_ref.clone(),
        };
        let stated = Stated {
            terms,
            license_expires_at,
            token_id: Uuid::new_v4(),
            issued_at,
            expires_at,
        };
        Ok(self.keys.sign(&self.claims(holder, stated))?)
    }

    fn claims(&self, holder: Holder, stated: Stated<'_>) -> LicenseClaims {
        let terms = stated.terms;
        LicenseClaims {
            iss: self.issuer.clone(),
            aud: LICENSE_AUDIENCE.into(),
            sub: holder.device,
            iat: stated.issued_at.timestamp(),
            nbf: stated.issued_at.timestamp(),
            exp: stated.expires_at.timestamp(),
            jti: stated.token_id,
            sid: holder.subscription,
            fpr: holder.fingerprint,
            plan: terms.plan.clone(),
            features: terms.entitlements.clone(),
            max_devices: terms.max_devices,
            license_expires_at: stated
                .license_expires_at
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            license_key_ref: holder.license_key_ref,
            prd: terms.product_code.clone(),
            pol: terms.policy_code.clone(),
            ent: terms.entitlements.clone(),
            grace_until: terms.grace_until.map(|t| t.timestamp()),
        }
    }

    /// Verifies signature, key id, audience, issuer and time claims. Only EdDSA is accepted:
    /// `alg: none` and HMAC tokens made with the public key fail here.
    pub fn verify(&self, token: &str) -> Result<LicenseClaims, TokenError> {
        verify_jwt(token, &self.keys, LICENSE_AUDIENCE, &self.issuer)
    }

    /// The claims of a token that `verify` found expired and nothing else wrong with: a
    /// leased device's token expires with its lease, and it still names the device whose
    /// heartbeat may revive it (or which validation tells is dead).
    pub fn verify_expired(&self, token: &str) -> Result<LicenseClaims, TokenError> {
        decode_jwt(token, &self.keys, LICENSE_AUDIENCE, &self.issuer, false)
    }
}

/// Shared by license and admin tokens: strict EdDSA verification against one key.
pub fn verify_jwt<T: serde::de::DeserializeOwned>(
    token: &str,
    keys: &JwtKeys,
    audience: &str,
    issuer: &str,
) -> Result<T, TokenError> {
    decode_jwt(token, keys, audience, issuer, true)
}

/// `verify_jwt`, checking `exp` only when `check_expiry`.
fn decode_jwt<T: serde::de::DeserializeOwned>(
    token: &str,
    keys: &JwtKeys,
    audience: &str,
    issuer: &str,
    check_expiry: bool,
) -> Result<T, TokenError> {
    if token.len() > 8 * 1024 {
        return Err(TokenError::Invalid);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if header.alg != Algorithm::EdDSA || header.kid.as_deref() != Some(keys.kid.as_str()) {
        return Err(TokenError::Invalid);
    }
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.validate_exp = check_expiry;
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "aud", "iss"]);
    match jsonwebtoken::decode::<T>(token, &keys.decoding, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
        Err(_) => Err(TokenError::Invalid),
    }
}
