//! A subscription's state, as its events have folded it: what every decision reads. The
//! decisions themselves are in `aggregate` (and, for leases, `lease`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::commands::PresentedToken;
use super::{DeactivationReason, DeviceInfo, Lease, Override, Status, SubscriptionError};
use crate::policy::PolicyTerms;
use crate::values::PolicyId;
use crate::values::{DeviceId, Email, Plan, Sha256Hex, SubscriptionId};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub(super) state: Option<SubscriptionState>,
}

/// Everything known about a subscription that exists (or existed: see `deleted_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionState {
    pub id: SubscriptionId,
    pub customer_email: Email,
    pub customer_name: String,
    pub organization: Option<String>,
    pub plan: Plan,
    /// The stored status; see [`Subscription::status_at`] for the one in force.
    pub status: Status,
    pub starts_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// Its own limit: the one in force unless it follows a policy without overriding it
    /// (see [`SubscriptionState::max_devices_under`]).
    pub max_devices: u32,
    /// Its own entitlements; a policy's add to them.
    pub features: Vec<String>,
    pub metadata: Map<String, Value>,
    /// The policy it follows, if any. (Left out of snapshots when absent, so that those of
    /// subscriptions of their own stay as earlier builds wrote them.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<PolicyId>,
    /// The fields it sets itself while following a policy, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    /// The notices recorded for the deadline in force (see `RecordDeadlines`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_notices: Option<DeadlineNotices>,
    /// Set by `LicenseKeyIssued`, which always directly follows `SubscriptionCreated`.
    pub license_key: Option<LicenseKeyState>,
    /// Every device ever activated, in activation order; inactive ones stay for history.
    /// Shared, not owned: every command decides on a copy of the state and the copy is
    /// cached, so a subscription with hundreds of devices would otherwise copy every one of
    /// them (a dozen strings each) several times per activation. A change copies one device.
    #[serde(with = "shared_devices")]
    pub devices: Vec<Arc<Device>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Which notices were recorded for the deadline that ends at `ends_at`. A renewal moves the
/// deadline, and notices for the new one start afresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadlineNotices {
    pub ends_at: DateTime<Utc>,
    /// The fewest days before the end a reminder was recorded for: reminders for more days
    /// than this are past.
    pub reminded_days: Option<u32>,
    pub expired: bool,
    pub grace_ended: bool,
}

impl DeadlineNotices {
    pub(super) fn for_deadline(notices: Option<&Self>, ends_at: DateTime<Utc>) -> Self {
        match notices {
            Some(notices) if notices.ends_at == ends_at => notices.clone(),
            _ => Self {
                ends_at,
                reminded_days: None,
                expired: false,
                grace_ended: false,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseKeyState {
    pub key_hash: Sha256Hex,
    pub key_prefix: String,
    pub issued_at: DateTime<Utc>,
}

/// Hex digits of the key's hash that a license token carries as `license_key_ref`: enough to
/// tell keys apart (64 bits), too few to look a key up by.
const KEY_REF_LEN: usize = 16;

impl LicenseKeyState {
    /// What a license token issued under this key carries as its `license_key_ref` claim.
    pub fn token_ref(&self) -> &str {
        &self.key_hash.as_str()[..KEY_REF_LEN]
    }

    /// Whether a token issued under the key it names, at `issued_at`, still stands: only
    /// tokens issued under this key do, because regeneration means "the old key leaked".
    /// Tokens from before the claim existed name no key; they stand when issued no earlier
    /// than this key's second (their `iat` has whole seconds only).
    pub fn admits_token(&self, license_key_ref: Option<&str>, issued_at: DateTime<Utc>) -> bool {
        match license_key_ref {
            Some(key_ref) => key_ref == self.token_ref(),
            None => issued_at.timestamp() >= self.issued_at.timestamp(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub fingerprint_hash: Sha256Hex,
    #[serde(flatten)]
    pub info: DeviceInfo,
    pub notes: Option<String>,
    pub active: bool,
    pub activated_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub deactivation_reason: Option<DeactivationReason>,
    /// Last time the device obtained a license token.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Its lease, under a policy with heartbeats or floating seats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

impl Subscription {
    /// A subscription in this state (a draft of the events a command decides).
    pub(super) fn of(state: SubscriptionState) -> Self {
        Self { state: Some(state) }
    }

    /// The subscription's state, unless it was never created. Deleted ones are included.
    pub fn state(&self) -> Option<&SubscriptionState> {
        self.state.as_ref()
    }

    /// The subscription's state if it exists and is not deleted.
    pub fn live(&self) -> Option<&SubscriptionState> {
        self.state.as_ref().filter(|s| s.deleted_at.is_none())
    }

    /// The status in force at `now`: a usable subscription whose period or trial has run
    /// out is `expired`.
    pub fn status_at(&self, now: DateTime<Utc>) -> Option<Status> {
        self.state.as_ref().map(|s| s.status_at(now))
    }
}

impl SubscriptionState {
    pub fn status_at(&self, now: DateTime<Utc>) -> Status {
        effective_status(self.status, self.expires_at, self.trial_ends_at, now)
    }

    pub fn active_devices(&self) -> impl Iterator<Item = &Arc<Device>> {
        self.devices.iter().filter(|d| d.active)
    }

    pub fn active_device_count(&self) -> u32 {
        self.active_devices().count() as u32
    }

    pub fn device(&self, id: DeviceId) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id).map(Arc::as_ref)
    }

    pub fn active_device_with_fingerprint(&self, fingerprint: &Sha256Hex) -> Option<&Device> {
        self.active_devices()
            .find(|d| &d.fingerprint_hash == fingerprint)
            .map(Arc::as_ref)
    }

    /// Activation, validation and tokens work while trialing, active and past_due: past_due
    /// is a grace period in which the customer's apps keep working while payment is sorted.
    /// An expired period still works within the grace its policy gives.
    pub fn ensure_usable(
        &self,
        now: DateTime<Utc>,
        policy: Option<&PolicyTerms>,
    ) -> Result<(), SubscriptionError> {
        if self.in_grace_at(now, policy) {
            return Ok(());
        }
        match self.status_at(now) {
            Status::Trialing | Status::Active | Status::PastDue => Ok(()),
            Status::Suspended => Err(SubscriptionError::LicenseSuspended),
            Status::Canceled => Err(SubscriptionError::LicenseCanceled),
            Status::Expired => Err(SubscriptionError::LicenseExpired),
        }
    }

    /// Records `field` as its own while it follows a policy (a change made to it directly).
    pub(super) fn mark_overridden(&mut self, field: Override, changed: bool) {
        if changed && self.policy_id.is_some() && !self.overrides.contains(&field) {
            self.overrides.push(field);
            self.overrides.sort();
        }
    }

    pub(super) fn ensure_not_canceled(&self) -> Result<(), SubscriptionError> {
        if self.status == Status::Canceled {
            Err(SubscriptionError::Canceled)
        } else {
            Ok(())
        }
    }

    pub(super) fn active_device(&self, id: DeviceId) -> Result<&Device, SubscriptionError> {
        let device = self
            .device(id)
            .ok_or(SubscriptionError::DeviceNotFound(id))?;
        if device.active {
            Ok(device)
        } else {
            Err(SubscriptionError::DeviceNotActive(id))
        }
    }

    pub(super) fn transition(
        &self,
        to: Status,
        allowed_from: &[Status],
    ) -> Result<Status, SubscriptionError> {
        if allowed_from.contains(&self.status) {
            Ok(self.status)
        } else {
            Err(SubscriptionError::InvalidStatusTransition {
                from: self.status,
                to,
            })
        }
    }
}

/// The status in force at `now`: a usable subscription whose period (or, while trialing,
/// whose trial) has run out is `expired`. Read models apply the same rule through this.
pub fn effective_status(
    stored: Status,
    expires_at: Option<DateTime<Utc>>,
    trial_ends_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Status {
    let usable = matches!(stored, Status::Trialing | Status::Active | Status::PastDue);
    let period_over = expires_at.is_some_and(|end| end <= now);
    let trial_over = stored == Status::Trialing && trial_ends_at.is_some_and(|end| end <= now);
    if usable && (period_over || trial_over) {
        Status::Expired
    } else {
        stored
    }
}

/// Refuses a token issued under a key that has since been regenerated.
pub(super) fn ensure_key_admits(
    state: &SubscriptionState,
    presented: &PresentedToken,
) -> Result<(), SubscriptionError> {
    let key_current = state.license_key.as_ref().is_some_and(|key| {
        key.admits_token(presented.license_key_ref.as_deref(), presented.issued_at)
    });
    if key_current {
        Ok(())
    } else {
        Err(SubscriptionError::TokenRevoked)
    }
}

/// `devices` is stored as a plain list of devices: sharing them in memory changes nothing
/// in events' neighbours, snapshots or views.
mod shared_devices {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Device;

    pub fn serialize<S: Serializer>(
        devices: &[Arc<Device>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(devices.iter().map(Arc::as_ref))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Arc<Device>>, D::Error> {
        Ok(Vec::<Device>::deserialize(deserializer)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}
