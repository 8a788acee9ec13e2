use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{DeactivationReason, DeviceInfo};
use super::{LeaseRenewals, Override};
use crate::policy::PolicyBook;
use crate::values::{Code, DeviceId, Email, Plan, PolicyId, Sha256Hex, SubscriptionId};

/// A command for one subscription. `at` is the instant the command is handled, supplied by
/// the caller because the aggregate reads no clock; `policies` are the policies' terms as
/// the caller loaded them, because the aggregate reads no other aggregate: a subscription
/// that follows a policy decides with that policy's terms from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionCommand {
    pub at: DateTime<Utc>,
    pub action: SubscriptionAction,
    #[serde(skip)]
    pub policies: PolicyBook,
    /// The heartbeats of its leases since their last events, as the caller read them.
    #[serde(skip)]
    pub leases: LeaseRenewals,
}

impl SubscriptionCommand {
    pub fn new(at: DateTime<Utc>, action: SubscriptionAction) -> Self {
        Self {
            at,
            action,
            policies: PolicyBook::default(),
            leases: LeaseRenewals::default(),
        }
    }

    /// The command, deciding with these policies' terms.
    pub fn with_policies(self, policies: PolicyBook) -> Self {
        Self { policies, ..self }
    }

    /// The command, deciding with these lease renewals.
    pub fn with_leases(self, leases: LeaseRenewals) -> Self {
        Self { leases, ..self }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubscriptionAction {
    /// Creates the subscription and issues its first license key.
    CreateSubscription(NewSubscription),
    ChangePlan {
        plan: Plan,
    },
    /// Lowering below the active device count requires naming the devices to deactivate.
    /// `None` keeps the current limit (and only deactivates the devices named).
    ChangeDeviceLimit {
        max_devices: Option<u32>,
        deactivate_device_ids: Vec<DeviceId>,
    },
    ChangePeriod(PeriodChange),
    UpdateDetails(DetailsChange),
    SuspendSubscription {
        reason: Option<String>,
    },
    /// Back to `active` from `suspended`, `past_due` or `trialing` (a converted trial).
    ResumeSubscription,
    MarkPastDue,
    CancelSubscription {
        reason: Option<String>,
    },
    DeleteSubscription,
    /// A new key, because the old one leaked: tokens issued under the old key stop working
    /// (see [`LicenseKeyState::admits_token`](super::LicenseKeyState::admits_token)), and
    /// with `deactivate_devices` every active device is deactivated as well.
    RegenerateLicenseKey {
        key_hash: Sha256Hex,
        key_prefix: String,
        #[serde(default)]
        deactivate_devices: bool,
    },
    /// Emits nothing; refuses with `LicenseKeyMismatch` unless `key_hash` is the current
    /// key. Put first in a command list, it makes a client's key the condition of the rest.
    VerifyLicenseKey {
        key_hash: Sha256Hex,
    },
    ActivateDevice(DeviceDetails),
    DeactivateDevice {
        device_id: DeviceId,
        reason: DeactivationReason,
    },
    /// A client app giving up its slot: the device is the active one with this fingerprint
    /// (`DeviceNotActivated` when there is none), so the caller needs no prior read.
    DeactivateDeviceByFingerprint {
        fingerprint_hash: Sha256Hex,
        reason: DeactivationReason,
    },
    UpdateDevice {
        device_id: DeviceId,
        name: Option<String>,
        notes: Option<String>,
    },
    /// Names the device by fingerprint so that activation and its first token can be one
    /// atomic command list, whatever id the activation gave the device.
    IssueLicenseToken {
        fingerprint_hash: Sha256Hex,
        token_id: Uuid,
        expires_at: DateTime<Utc>,
    },
    /// Emits nothing; refuses with `TokenRevoked` when the key the token was issued under
    /// was regenerated since, and with `DeviceNotActivated` unless the very device it names
    /// (not merely its fingerprint) is still active. Put first in a command list, like
    /// `VerifyLicenseKey`, it makes a client's token the condition of the rest.
    VerifyLicenseToken {
        presented: PresentedToken,
    },
    /// Makes the subscription follow a policy (`None`: none, its own values from now on).
    /// `overrides` names the fields it keeps as its own; the device limit and the
    /// entitlements follow the policy otherwise. Its period stays as it is: a policy's
    /// `duration` and `trial_duration` shape new periods (creation, the first activation),
    /// never one already running. `features` replaces its own entitlements (on top of the
    /// policy's).
    FollowPolicy {
        policy_id: Option<PolicyId>,
        overrides: Vec<Override>,
        features: Option<Vec<String>>,
    },
    /// Records whichever deadline notices are due at the command's instant and not yet
    /// recorded: one reminder (the nearest of `reminder_days` that has come), the expiry,
    /// the end of grace. Each is recorded once per deadline, however often this runs, and
    /// late rather than never.
    RecordDeadlines {
        reminder_days: Vec<u32>,
    },
    /// Adds entitlements of its own, on top of its policy's.
    AttachEntitlements {
        codes: Vec<Code>,
    },
    DetachEntitlements {
        codes: Vec<Code>,
    },
    /// Records the expiry of every lease whose deadline has passed (the culler runs it).
    ExpireLeases,
    /// A heartbeat the lease table could not renew: starts, revives or refuses the lease
    /// of the device the token names (see `lease::heartbeat`). `borrow_until` keeps the
    /// seat until then.
    Heartbeat {
        presented: PresentedToken,
        borrow_until: Option<DateTime<Utc>>,
    },
    /// The device the token names gives its seat back: a floating seat is released (not a
    /// churn), a node-locked device is deactivated as a client deactivation.
    CheckIn {
        presented: PresentedToken,
    },
}

/// What a license token presented by a client says about where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresentedToken {
    pub device_id: DeviceId,
    /// The `license_key_ref` claim; `None` on tokens from builds before the claim existed.
    pub license_key_ref: Option<String>,
    /// The `iat` claim.
    pub issued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSubscription {
    pub subscription_id: SubscriptionId,
    pub customer_email: Email,
    pub customer_name: String,
    pub organization: Option<String>,
    pub plan: Plan,
    pub starts_at: DateTime<Utc>,
    /// `None` for a perpetual license.
    pub expires_at: Option<DateTime<Utc>>,
    /// When set, the subscription starts `trialing` until then.
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub max_devices: u32,
    pub features: Vec<String>,
    pub metadata: Map<String, Value>,
    pub key_hash: Sha256Hex,
    pub key_prefix: String,
    /// The policy to follow: its terms (from the command's policies) give the plan, the
    /// device limit, the period, the trial and the entitlements, except the fields named in
    /// `overrides`, which take the values above. `features` add to the policy's.
    #[serde(default)]
    pub policy_id: Option<PolicyId>,
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// The fields to change; `None` keeps the current value. The aggregate fills them in, so a
/// change to one field never overwrites a concurrent change to another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodChange {
    pub starts_at: Option<DateTime<Utc>>,
    /// `Some(None)` makes the license perpetual.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// `Some(None)` removes the trial end.
    pub trial_ends_at: Option<Option<DateTime<Utc>>>,
}

/// Only the fields that are `Some` change. `organization: Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetailsChange {
    pub customer_email: Option<Email>,
    pub customer_name: Option<String>,
    pub organization: Option<Option<String>>,
    pub features: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
}

/// What a client app tells about the device it activates. The device id is proposed by the
/// caller; re-activating an active fingerprint keeps its device, while one that comes back
/// after a deactivation is a new device under the proposed id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceDetails {
    pub device_id: DeviceId,
    pub fingerprint_hash: Sha256Hex,
    #[serde(flatten)]
    pub info: DeviceInfo,
}
