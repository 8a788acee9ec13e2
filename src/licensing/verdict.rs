//! The licensing verdict: which code a validation gets, and why. Pure: a function of the
//! license, the device that asks and the time, so every code is unit-tested here.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::{watches_deadlines, EffectiveTerms, PresentedToken};
use flowlytix_aggregates::{PolicyTerms, Sha256Hex, Status, SubscriptionId};

use super::snapshot::Fingerprint;
use super::token::{presented, LicenseClaims, TokenError};
use super::{ActiveDevice, LicenseSnapshot};

/// The stable codes of `POST /api/v1/licensing/validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationCode {
    Valid,
    NotFound,
    Suspended,
    Expired,
    Canceled,
    DeviceNotActivated,
    FingerprintMismatch,
    TokenInvalid,
    TokenExpired,
    /// Issued under a license key that was regenerated since.
    TokenRevoked,
    /// The client asked for a product this license is not for.
    ProductScopeMismatch,
    /// The client asked for a policy this license does not follow.
    PolicyScopeMismatch,
    /// The client asked for entitlements this license does not grant.
    EntitlementsMissing,
    /// The device's lease passed its deadline without a heartbeat.
    HeartbeatDead,
}

impl ValidationCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::Suspended => "SUSPENDED",
            Self::Expired => "EXPIRED",
            Self::Canceled => "CANCELED",
            Self::DeviceNotActivated => "DEVICE_NOT_ACTIVATED",
            Self::FingerprintMismatch => "FINGERPRINT_MISMATCH",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::TokenRevoked => "TOKEN_REVOKED",
            Self::ProductScopeMismatch => "PRODUCT_SCOPE_MISMATCH",
            Self::PolicyScopeMismatch => "POLICY_SCOPE_MISMATCH",
            Self::EntitlementsMissing => "ENTITLEMENTS_MISSING",
            Self::HeartbeatDead => "HEARTBEAT_DEAD",
        }
    }

    /// What a human reading the client's log should be told.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Valid => "the license is valid on this device",
            Self::NotFound => "no license matches",
            Self::Suspended => "the license is suspended",
            Self::Expired => "the license has expired",
            Self::Canceled => "the license is canceled",
            Self::DeviceNotActivated => "this device is not activated",
            Self::FingerprintMismatch => "the token was issued to another device",
            Self::TokenInvalid => "the token is not a valid license token",
            Self::TokenExpired => "the token has expired",
            Self::TokenRevoked => {
                "the token was issued under a license key that has since been regenerated"
            }
            Self::ProductScopeMismatch => "the license is not for this product",
            Self::PolicyScopeMismatch => "the license does not follow this policy",
            Self::EntitlementsMissing => "the license does not grant every entitlement asked for",
            Self::HeartbeatDead => "the device's heartbeat stopped: its lease is dead",
        }
    }
}

/// The device asking: its fingerprint, and what its token says when it presented one.
#[derive(Debug, Clone)]
pub struct DeviceClaim {
    pub fingerprint_hash: Sha256Hex,
    pub token: Option<PresentedToken>,
}

/// What a client may ask a license to be: for this product, under this policy, granting
/// these entitlements. Every part is optional.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub product: Option<String>,
    pub policy: Option<String>,
    pub entitlements: Vec<String>,
}

impl Scope {
    pub fn is_given(&self) -> bool {
        self.product.is_some() || self.policy.is_some() || !self.entitlements.is_empty()
    }

    /// Why a license with these terms does not match, and the entitlements it lacks.
    pub fn mismatch(&self, terms: &EffectiveTerms) -> Option<(ValidationCode, Vec<String>)> {
        if self
            .product
            .as_ref()
            .is_some_and(|p| terms.product_code.as_ref() != Some(p))
        {
            return Some((ValidationCode::ProductScopeMismatch, vec![]));
        }
        if self
            .policy
            .as_ref()
            .is_some_and(|p| terms.policy_code.as_ref() != Some(p))
        {
            return Some((ValidationCode::PolicyScopeMismatch, vec![]));
        }
        let mut missing: Vec<String> = self
            .entitlements
            .iter()
            .filter(|code| !terms.entitlements.contains(code))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        (!missing.is_empty()).then_some((ValidationCode::EntitlementsMissing, missing))
    }
}

/// A verdict, with the license and device it was reached on (when there is one).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub code: ValidationCode,
    /// Shared with the license cache: a validation copies nothing of it.
    pub license: Option<Arc<LicenseSnapshot>>,
    pub device: Option<ActiveDevice>,
    /// The terms of the policy the license follows, as judged (shared with the book).
    pub policy: Option<Arc<PolicyTerms>>,
    /// Set while the license is valid only thanks to its policy's grace.
    pub grace_until: Option<DateTime<Utc>>,
    /// With `EntitlementsMissing`: the codes asked for and not granted.
    pub missing_entitlements: Vec<String>,
}

impl Verdict {
    pub fn refused(code: ValidationCode) -> Self {
        Self {
            code,
            license: None,
            device: None,
            policy: None,
            grace_until: None,
            missing_entitlements: Vec::new(),
        }
    }

    /// What the license grants under the policy it was judged with.
    pub fn terms(&self) -> Option<EffectiveTerms> {
        let license = self.license.as_ref()?;
        Some(license.effective(self.policy.as_deref()))
    }

    /// This verdict, refused if a valid license does not match what the client asked for.
    pub fn within(mut self, scope: &Scope) -> Self {
        if !self.is_valid() {
            return self;
        }
        let Some(terms) = self.terms() else {
            return self;
        };
        if let Some((code, missing)) = scope.mismatch(&terms) {
            self.code = code;
            self.missing_entitlements = missing;
            self.grace_until = None;
        }
        self
    }

    pub fn is_valid(&self) -> bool {
        self.code == ValidationCode::Valid
    }
}

/// What a presented license token says, before any license is read: the subscription and
/// device it names, or the code that ends the validation there.
pub fn token_claim(
    verified: Result<LicenseClaims, TokenError>,
    fingerprint_hash: &Sha256Hex,
) -> Result<(SubscriptionId, DeviceClaim), ValidationCode> {
    let claims = verified.map_err(|error| match error {
        TokenError::Expired => ValidationCode::TokenExpired,
        TokenError::Invalid => ValidationCode::TokenInvalid,
    })?;
    if claims.fpr != fingerprint_hash.as_str() {
        return Err(ValidationCode::FingerprintMismatch);
    }
    Ok((
        SubscriptionId(claims.sid),
        DeviceClaim {
            fingerprint_hash: fingerprint_hash.clone(),
            token: Some(presented(&claims)),
        },
    ))
}

/// The verdict on a license (absent when nothing matched) for one device at `now`. A
/// deleted license is not found; a token from before the key was regenerated is revoked
/// (the subscription's `VerifyLicenseToken` applies the same rule to refresh); an unusable
/// license says why before anything about devices.
pub fn judge(
    license: Option<&Arc<LicenseSnapshot>>,
    policy: Option<&Arc<PolicyTerms>>,
    device: &DeviceClaim,
    now: DateTime<Utc>,
) -> Verdict {
    let Some(license) = license.filter(|l| !l.deleted) else {
        return Verdict::refused(ValidationCode::NotFound);
    };
    if let Some(token) = &device.token {
        let key_current = license
            .license_key
            .as_ref()
            .is_some_and(|key| key.admits_token(token.license_key_ref.as_deref(), token.issued_at));
        if !key_current {
            // Whoever holds it may hold a leaked key: it is told nothing of the license.
            return Verdict::refused(ValidationCode::TokenRevoked);
        }
    }
    let terms = policy.map(|p| p.as_ref());
    let in_grace = license.in_grace_at(now, terms);
    let status = if in_grace {
        // Expired, but its policy's grace still lets it work.
        Status::Active
    } else {
        license.status_at(now)
    };
    let code = match status {
        Status::Suspended => ValidationCode::Suspended,
        Status::Expired => ValidationCode::Expired,
        Status::Canceled => ValidationCode::Canceled,
        Status::Trialing | Status::Active | Status::PastDue => {
            let fingerprint = Fingerprint::of(&device.fingerprint_hash);
            let asking = |d: &&ActiveDevice| {
                d.fingerprint == fingerprint
                    && device.token.as_ref().is_none_or(|t| d.id == t.device_id)
            };
            let active = license.active_devices.iter().find(asking);
            let culled = active.is_none() && license.culled_devices.iter().any(|d| asking(&d));
            // A lease recorded as expired is dead; one whose deadline merely passed is
            // judged by the caller, who can read the heartbeats since.
            let expired = watches_deadlines(terms)
                && active.is_some_and(|d| d.lease.as_ref().is_some_and(|l| l.expired));
            return Verdict {
                code: match active {
                    _ if culled || expired => ValidationCode::HeartbeatDead,
                    Some(_) => ValidationCode::Valid,
                    None => ValidationCode::DeviceNotActivated,
                },
                license: Some(license.clone()),
                device: active.cloned(),
                policy: policy.cloned(),
                grace_until: in_grace
                    .then(|| license.effective(terms).grace_until)
                    .flatten(),
                missing_entitlements: Vec::new(),
            };
        }
    };
    Verdict {
        code,
        license: Some(license.clone()),
        device: None,
        policy: policy.cloned(),
        grace_until: None,
        missing_entitlements: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use flowlytix_aggregates::subscription::{Device, DeviceInfo, LicenseKeyState};
    use flowlytix_aggregates::DeviceId;
    use uuid::Uuid;

    use super::*;

    /// The verdict on a license built here (the server's come shared from its cache).
    fn judge(
        license: Option<&LicenseSnapshot>,
        device: &DeviceClaim,
        now: DateTime<Utc>,
    ) -> Verdict {
        super::judge(license.cloned().map(Arc::new).as_ref(), None, device, now)
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn hash(text: &str) -> Sha256Hex {
        crate::crypto::sha256_hex(text)
    }

    fn device(fingerprint: &str) -> ActiveDevice {
        ActiveDevice::of(&Device {
            id: DeviceId(Uuid::new_v4()),
            fingerprint_hash: hash(fingerprint),
            info: DeviceInfo::default(),
            notes: None,
            active: true,
            activated_at: now() - Duration::days(1),
            deactivated_at: None,
            deactivation_reason: None,
            last_seen_at: None,
            lease: None,
        })
    }

    fn license(status: Status, devices: Vec<ActiveDevice>) -> LicenseSnapshot {
        LicenseSnapshot {
            subscription_id: SubscriptionId(Uuid::new_v4()),
            version: 3,
            license_key: Some(LicenseKeyState {
                key_hash: hash("key"),
                key_prefix: "FLX-KEY00".into(),
                issued_at: now() - Duration::days(2),
            }),
            status,
            plan: "pro".into(),
            features: vec![],
            max_devices: 3,
            expires_at: None,
            trial_ends_at: None,
            deleted: false,
            active_devices: devices,
            culled_devices: vec![],
            policy_id: None,
            overrides: vec![],
        }
    }

    fn by_fingerprint(fingerprint: &str) -> DeviceClaim {
        DeviceClaim {
            fingerprint_hash: hash(fingerprint),
            token: None,
        }
    }

    /// A token for `device`, issued a day ago under the key with this hash.
    fn by_token(device: &ActiveDevice, fingerprint: &str, key: &str) -> DeviceClaim {
        DeviceClaim {
            fingerprint_hash: hash(fingerprint),
            token: Some(PresentedToken {
                device_id: device.id,
                license_key_ref: Some(hash(key).as_str()[..16].to_owned()),
                issued_at: now() - Duration::days(1),
            }),
        }
    }

    fn claims(fingerprint: &str) -> LicenseClaims {
        LicenseClaims {
            iss: "flowlytix".into(),
            aud: "flowlytix-license".into(),
            sub: Uuid::new_v4(),
            iat: 0,
            nbf: 0,
            exp: 0,
            jti: Uuid::new_v4(),
            sid: Uuid::new_v4(),
            fpr: hash(fingerprint).as_str().to_owned(),
            plan: "pro".into(),
            features: vec![],
            max_devices: 3,
            license_expires_at: None,
            license_key_ref: None,
            prd: None,
            pol: None,
            ent: vec![],
            grace_until: None,
        }
    }

    #[test]
    fn an_active_license_with_the_device_activated_is_valid() {
        let laptop = device("laptop");
        for status in [Status::Active, Status::Trialing, Status::PastDue] {
            let license = license(status, vec![laptop.clone()]);
            let verdict = judge(Some(&license), &by_fingerprint("laptop"), now());
            assert_eq!(verdict.code, ValidationCode::Valid, "{status:?}");
            assert!(verdict.is_valid());
            assert_eq!(verdict.device.map(|d| d.id), Some(laptop.id));
            assert!(verdict.license.is_some());
        }
    }

    #[test]
    fn no_license_or_a_deleted_one_is_not_found() {
        let verdict = judge(None, &by_fingerprint("laptop"), now());
        assert_eq!(verdict.code, ValidationCode::NotFound);
        assert!(verdict.license.is_none());

        let mut deleted = license(Status::Active, vec![device("laptop")]);
        deleted.deleted = true;
        let verdict = judge(Some(&deleted), &by_fingerprint("laptop"), now());
        assert_eq!(verdict.code, ValidationCode::NotFound);
        assert!(
            verdict.license.is_none(),
            "a deleted license is not described"
        );
    }

    #[test]
    fn an_unusable_license_says_why_even_for_an_activated_device() {
        for (status, code) in [
            (Status::Suspended, ValidationCode::Suspended),
            (Status::Canceled, ValidationCode::Canceled),
            (Status::Expired, ValidationCode::Expired),
        ] {
            let license = license(status, vec![device("laptop")]);
            let verdict = judge(Some(&license), &by_fingerprint("laptop"), now());
            assert_eq!(verdict.code, code);
            assert!(verdict.device.is_none());
            assert!(verdict.license.is_some(), "the license is described");
        }
    }

    #[test]
    fn a_period_or_trial_that_has_run_out_is_expired() {
        let mut period_over = license(Status::Active, vec![device("laptop")]);
        period_over.expires_at = Some(now());
        assert_eq!(
            judge(Some(&period_over), &by_fingerprint("laptop"), now()).code,
            ValidationCode::Expired
        );
        let mut trial_over = license(Status::Trialing, vec![device("laptop")]);
        trial_over.trial_ends_at = Some(now() - Duration::seconds(1));
        assert_eq!(
            judge(Some(&trial_over), &by_fingerprint("laptop"), now()).code,
            ValidationCode::Expired
        );
        period_over.expires_at = Some(now() + Duration::seconds(1));
        assert_eq!(
            judge(Some(&period_over), &by_fingerprint("laptop"), now()).code,
            ValidationCode::Valid
        );
    }

    #[test]
    fn an_unknown_fingerprint_is_not_activated() {
        let license = license(Status::Active, vec![device("laptop")]);
        let verdict = judge(Some(&license), &by_fingerprint("desktop"), now());
        assert_eq!(verdict.code, ValidationCode::DeviceNotActivated);
        assert!(verdict.device.is_none());
    }

    #[test]
    fn a_token_for_a_deactivated_device_is_not_activated_even_if_the_fingerprint_returned() {
        // The fingerprint was activated again under a new id: the old token's device is gone.
        let license = license(Status::Active, vec![device("laptop")]);
        let gone = device("laptop");
        assert_eq!(
            judge(Some(&license), &by_token(&gone, "laptop", "key"), now()).code,
            ValidationCode::DeviceNotActivated
        );
    }

    #[test]
    fn a_token_under_the_current_key_for_its_active_device_is_valid() {
        let laptop = device("laptop");
        let license = license(Status::Active, vec![laptop.clone()]);
        let verdict = judge(Some(&license), &by_token(&laptop, "laptop", "key"), now());
        assert_eq!(verdict.code, ValidationCode::Valid);
    }

    #[test]
    fn a_token_under_a_regenerated_key_is_revoked_and_told_nothing() {
        let laptop = device("laptop");
        for status in [Status::Active, Status::Suspended] {
            let license = license(status, vec![laptop.clone()]);
            let verdict = judge(
                Some(&license),
                &by_token(&laptop, "laptop", "old key"),
                now(),
            );
            assert_eq!(verdict.code, ValidationCode::TokenRevoked, "{status:?}");
            assert!(verdict.license.is_none() && verdict.device.is_none());
        }
    }

    #[test]
    fn a_token_names_its_subscription_and_device() {
        let claims = claims("laptop");
        let (sid, device) = token_claim(Ok(claims.clone()), &hash("laptop")).unwrap();
        assert_eq!(sid, SubscriptionId(claims.sid));
        assert_eq!(
            device.token.map(|t| t.device_id),
            Some(DeviceId(claims.sub))
        );
        assert_eq!(device.fingerprint_hash, hash("laptop"));
    }

    #[test]
    fn a_token_for_another_fingerprint_is_a_mismatch() {
        assert_eq!(
            token_claim(Ok(claims("laptop")), &hash("desktop")).unwrap_err(),
            ValidationCode::FingerprintMismatch
        );
    }

    #[test]
    fn a_bad_or_expired_token_says_so() {
        assert_eq!(
            token_claim(Err(TokenError::Invalid), &hash("laptop")).unwrap_err(),
            ValidationCode::TokenInvalid
        );
        assert_eq!(
            token_claim(Err(TokenError::Expired), &hash("laptop")).unwrap_err(),
            ValidationCode::TokenExpired
        );
    }

    #[test]
    fn every_code_has_its_contract_name() {
        let names: Vec<_> = [
            ValidationCode::Valid,
            ValidationCode::NotFound,
            ValidationCode::Suspended,
            ValidationCode::Expired,
            ValidationCode::Canceled,
            ValidationCode::DeviceNotActivated,
            ValidationCode::FingerprintMismatch,
            ValidationCode::TokenInvalid,
            ValidationCode::TokenExpired,
            ValidationCode::TokenRevoked,
        ]
        .iter()
        .map(|c| c.as_str())
        .collect();
        assert_eq!(
            names,
            [
                "VALID",
                "NOT_FOUND",
                "SUSPENDED",
                "EXPIRED",
                "CANCELED",
                "DEVICE_NOT_ACTIVATED",
                "FINGERPRINT_MISMATCH",
                "TOKEN_INVALID",
                "TOKEN_EXPIRED",
                "TOKEN_REVOKED"
            ]
        );
    }
}
