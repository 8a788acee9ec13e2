//! Verifying a license token offline: its signature by a pinned key, its audience and
//! issuer, and its time window against the clock the app trusts (see [`ClockGuard`]).

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Validation};

use crate::{ClockGuard, LicenseClaims, PinnedKeys, LICENSE_AUDIENCE};

/// Why a token is not trusted offline.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfflineError {
    #[error("the token is not a license token signed with EdDSA by a known key")]
    Invalid,
    #[error("the token names key {0}, which is not pinned")]
    UnknownKey(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the clock reads {now}, before {trusted}, a time already seen: it was wound back")]
    ClockWoundBack {
        now: DateTime<Utc>,
        trusted: DateTime<Utc>,
    },
    #[error("the token was issued to another device")]
    OtherDevice,
}

/// What the app checks a token against.
pub struct Expectation<'a> {
    /// The server's `LICENSE_TOKEN_ISSUER`.
    pub issuer: &'a str,
    /// The SHA-256 (hex) of this machine's fingerprint, as the server keeps it (`fpr`).
    pub fingerprint_hash: &'a str,
}

/// The claims of `token` if a pinned key signed it for this device and it is valid at
/// `now`, which the guard must accept first (a clock wound back is refused, not believed).
/// A verified token's `iat` is then trusted: the guard never accepts an earlier time again.
pub fn verify_token(
    token: &str,
    keys: &PinnedKeys,
    expected: &Expectation<'_>,
    guard: &mut ClockGuard,
    now: DateTime<Utc>,
) -> Result<LicenseClaims, OfflineError> {
    guard.check(now)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| OfflineError::Invalid)?;
    if header.alg != Algorithm::EdDSA {
        return Err(OfflineError::Invalid);
    }
    let kid = header.kid.ok_or(OfflineError::Invalid)?;
    let key = keys
        .get(&kid)
        .ok_or_else(|| OfflineError::UnknownKey(kid.clone()))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    // Times are checked below against the guarded clock, not the system's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims = ["exp", "nbf", "iat", "sub", "aud", "iss"]
        .into_iter()
        .map(String::from)
        .collect();
    validation.set_audience(&[LICENSE_AUDIENCE]);
    validation.set_issuer(&[expected.issuer]);
    let claims = jsonwebtoken::decode::<LicenseClaims>(token, key, &validation)
        .map_err(|_| OfflineError::Invalid)?
        .claims;
    if claims.fpr != expected.fingerprint_hash {
        return Err(OfflineError::OtherDevice);
    }
    let at = now.timestamp();
    if at < claims.nbf {
        return Err(OfflineError::NotYetValid);
    }
    if at >= claims.exp {
        return Err(OfflineError::Expired);
    }
    if let Some(issued) = DateTime::from_timestamp(claims.iat, 0) {
        guard.trust(issued);
    }
    Ok(claims)
}
