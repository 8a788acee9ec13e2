//! A license as validation sees it: the parts of a subscription that decide a verdict.

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::{
    effective_status, in_grace, Device, EffectiveTerms, Lease, LicenseKeyState, Override, OwnTerms,
    SubscriptionState,
};
use flowlytix_aggregates::DeactivationReason;
use flowlytix_aggregates::{DeviceId, PolicyId, PolicyTerms, Sha256Hex, Status, SubscriptionId};

/// The parts of a subscription that validation needs.
#[derive(Debug, Clone)]
pub struct LicenseSnapshot {
    pub subscription_id: SubscriptionId,
    pub version: i64,
    /// The current key: its hash names the license, and it decides which tokens stand.
    pub license_key: Option<LicenseKeyState>,
    pub status: Status,
    pub plan: String,
    pub features: Vec<String>,
    pub max_devices: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub active_devices: Vec<ActiveDevice>,
    /// Devices culled for a stopped heartbeat whose fingerprint has no active device since,
    /// the latest few: validation tells them `HEARTBEAT_DEAD` rather than "not activated".
    pub culled_devices: Vec<ActiveDevice>,
    /// The policy it follows; its terms are looked up when judged, so a policy change
    /// applies at once without touching any cached license.
    pub policy_id: Option<PolicyId>,
    pub overrides: Vec<Override>,
}

/// An active device as a license keeps it: what a verdict compares (its id and fingerprint)
/// and what a client app is told of it, nothing more. The license cache holds ten times as
/// many licenses as the aggregate cache holds states (100 000 against 10 000), so most
/// licenses are the only holder of their devices: a whole `Device` (a dozen fields, the
/// fingerprint as hex text) would be three times the size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDevice {
    pub id: DeviceId,
    pub fingerprint: Fingerprint,
    pub name: Option<Box<str>>,
    pub platform: Option<Box<str>>,
    pub activated_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Its lease, as the events say (heartbeats move the deadline on in the lease table).
    pub lease: Option<Lease>,
}

/// A device fingerprint's SHA-256, as bytes (its hex text is twice as long, on the heap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(hash: &Sha256Hex) -> Self {
        let mut bytes = [0; 32];
        // A `Sha256Hex` is 64 lowercase hex digits by construction.
        hex::decode_to_slice(hash.as_str(), &mut bytes).expect("a Sha256Hex is 64 hex digits");
        Self(bytes)
    }
}

impl ActiveDevice {
    pub fn of(device: &Device) -> Self {
        Self {
            id: device.id,
            fingerprint: Fingerprint::of(&device.fingerprint_hash),
            name: device.info.name.as_deref().map(Box::from),
            platform: device.info.platform.as_deref().map(Box::from),
            activated_at: device.activated_at,
            last_seen_at: device.last_seen_at,
            lease: device.lease.clone(),
        }
    }
}

/// How many culled devices a license remembers for validation's sake.
const CULLED_REMEMBERED: usize = 16;

fn culled_devices(state: &SubscriptionState) -> Vec<ActiveDevice> {
    let mut culled: Vec<ActiveDevice> = state
        .devices
        .iter()
        .rev()
        .filter(|d| d.deactivation_reason == Some(DeactivationReason::HeartbeatExpired))
        .filter(|d| {
            state
                .active_device_with_fingerprint(&d.fingerprint_hash)
                .is_none()
        })
        .take(CULLED_REMEMBERED)
        .map(|d| ActiveDevice::of(d))
        .collect();
    culled.reverse();
    culled
}

impl LicenseSnapshot {
    pub fn from_state(state: &SubscriptionState, version: u64) -> Self {
        Self {
            subscription_id: state.id,
            version: version as i64,
            license_key: state.license_key.clone(),
            status: state.status,
            plan: state.plan.as_str().to_owned(),
            features: state.features.clone(),
            max_devices: state.max_devices,
            expires_at: state.expires_at,
            trial_ends_at: state.trial_ends_at,
            deleted: state.deleted_at.is_some(),
            active_devices: state
                .active_devices()
                .map(|d| ActiveDevice::of(d))
                .collect(),
            culled_devices: culled_devices(state),
            policy_id: state.policy_id,
            overrides: state.overrides.clone(),
        }
    }

    pub fn status_at(&self, now: DateTime<Utc>) -> Status {
        effective_status(self.status, self.expires_at, self.trial_ends_at, now)
    }

    /// What it grants under `policy` (the one it follows, or none).
    pub fn effective(&self, policy: Option<&PolicyTerms>) -> EffectiveTerms {
        EffectiveTerms::of(
            OwnTerms {
                plan: &self.plan,
                max_devices: self.max_devices,
                features: &self.features,
                overrides: &self.overrides,
                expires_at: self.expires_at,
            },
            policy,
        )
    }

    /// Whether its period is over but `policy` still gives it grace at `now`.
    pub fn in_grace_at(&self, now: DateTime<Utc>, policy: Option<&PolicyTerms>) -> bool {
        let grace_until = self.effective(policy).grace_until;
        in_grace(
            self.status,
            self.expires_at,
            self.trial_ends_at,
            grace_until,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_the_hash_s_bytes() {
        let hash = crate::crypto::sha256_hex("laptop");
        let fingerprint = Fingerprint::of(&hash);
        assert_eq!(hex::encode(fingerprint.0), hash.as_str());
        assert_ne!(
            fingerprint,
            Fingerprint::of(&crate::crypto::sha256_hex("desktop"))
        );
    }
}
