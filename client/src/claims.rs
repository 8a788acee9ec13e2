//! What a license token says: the one type for it, which the server signs and apps read.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The audience of every license token.
pub const LICENSE_AUDIENCE: &str = "flowlytix-license";

/// The claims of a license token. `sub` is the device id, `sid` the subscription id and `fpr`
/// the SHA-256 of the device fingerprint, so an app can check the token is its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseClaims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub sid: Uuid,
    pub fpr: String,
    pub plan: String,
    pub features: Vec<String>,
    pub max_devices: u32,
    pub license_expires_at: Option<String>,
    /// The first digits of the hash of the license key the token was issued under: after a
    /// regeneration, tokens naming the old key are revoked. Absent on tokens issued before
    /// the claim existed (their `iat` decides instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_key_ref: Option<String>,
    /// The product's code, for a license that follows a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prd: Option<String>,
    /// The policy's code, for a license that follows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pol: Option<String>,
    /// The entitlement codes in force (the same as `features`), so an app can gate
    /// features offline.
    #[serde(default)]
    pub ent: Vec<String>,
    /// Seconds since the epoch: until when an expired license still works in grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<i64>,
}
