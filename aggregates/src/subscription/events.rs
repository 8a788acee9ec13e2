use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{DeviceInfo, LeaseGrant, Override, Status};
use crate::values::{DeviceId, Email, Plan, PolicyId, Sha256Hex, SubscriptionId};

/// Every change to a subscription. Events are kept forever and never hold a secret: license
/// keys and device fingerprints appear only as SHA-256 hashes. Each carries `at`, the domain
/// time of the change, and the values projections need (such as `active_devices`), so that
/// read models copy rather than recompute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubscriptionEvent {
    SubscriptionCreated {
        subscription_id: SubscriptionId,
        customer_email: Email,
        customer_name: String,
        organization: Option<String>,
        plan: Plan,
        status: Status,
        starts_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        trial_ends_at: Option<DateTime<Utc>>,
        max_devices: u32,
        features: Vec<String>,
        metadata: Map<String, Value>,
        at: DateTime<Utc>,
        /// The policy it follows and the version of it the creation decided on; absent on
        /// subscriptions of their own (and on every one from before policies existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy_id: Option<PolicyId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy_version: Option<u64>,
        /// The fields set on the subscription itself rather than taken from the policy.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        overrides: Vec<Override>,
    },
    /// It follows another policy (or none). `max_devices` is the limit in force right after.
    SubscriptionPolicyChanged {
        previous_policy_id: Option<PolicyId>,
        policy_id: Option<PolicyId>,
        policy_version: Option<u64>,
        plan: Plan,
        max_devices: u32,
        features: Vec<String>,
        overrides: Vec<Override>,
        at: DateTime<Utc>,
    },
    /// The first activation started a period that runs from it (`from_first_activation`).
    SubscriptionPeriodStarted {
        expires_at: DateTime<Utc>,
        policy_version: u64,
        at: DateTime<Utc>,
    },
    /// A reminder, `days_before` the period (or trial) ends at `expires_at`.
    SubscriptionExpiringSoon {
        expires_at: DateTime<Utc>,
        days_before: u32,
        at: DateTime<Utc>,
    },
    /// The period (or, with `trial`, the trial) ended at `expires_at`; `at` is when this
    /// was recorded, which after downtime is later. `grace_until` when its policy gives grace.
    SubscriptionExpired {
        expires_at: DateTime<Utc>,
        trial: bool,
        grace_until: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The grace after the period that ended at `expires_at` is over.
    SubscriptionGraceEnded {
        expires_at: DateTime<Utc>,
        grace_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    SubscriptionPlanChanged {
        previous_plan: Plan,
        plan: Plan,
        at: DateTime<Utc>,
    },
    SubscriptionDeviceLimitChanged {
        previous_max_devices: u32,
        max_devices: u32,
        at: DateTime<Utc>,
    },
    SubscriptionPeriodChanged {
        starts_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        trial_ends_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    SubscriptionDetailsUpdated {
        customer_email: Option<Email>,
        customer_name: Option<String>,
        /// `None` (key absent): unchanged; `Some(None)` (`null`): cleared. Plain serde would
        /// write both as `null` and read `null` back as `None`, losing a clear on reload.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "null_is_some"
        )]
        organization: Option<Option<String>>,
        features: Option<Vec<String>>,
        metadata: Option<Map<String, Value>>,
        at: DateTime<Utc>,
    },
    SubscriptionSuspended {
        previous_status: Status,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    SubscriptionResumed {
        previous_status: Status,
        at: DateTime<Utc>,
    },
    SubscriptionMarkedPastDue {
        previous_status: Status,
        at: DateTime<Utc>,
    },
    SubscriptionCanceled {
        previous_status: Status,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    SubscriptionDeleted {
        at: DateTime<Utc>,
    },
    LicenseKeyIssued {
        key_hash: Sha256Hex,
        key_prefix: String,
        at: DateTime<Utc>,
    },
    LicenseKeyRegenerated {
        previous_key_hash: Option<Sha256Hex>,
        key_hash: Sha256Hex,
        key_prefix: String,
        at: DateTime<Utc>,
    },
    DeviceActivated {
        device_id: DeviceId,
        fingerprint_hash: Sha256Hex,
        #[serde(flatten)]
        info: DeviceInfo,
        active_devices: u32,
        at: DateTime<Utc>,
        /// The version of the policy whose device limit admitted it, when it follows one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy_version: Option<u64>,
        /// The lease it took, under a policy with heartbeats or floating seats.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<LeaseGrant>,
    },
    /// An active device without a lease took one: its first heartbeat under a policy that
    /// began requiring heartbeats after it was activated.
    DeviceLeaseTaken {
        device_id: DeviceId,
        lease: LeaseGrant,
        at: DateTime<Utc>,
    },
    /// The lease's deadline passed without a heartbeat: the device is dead. Recorded once,
    /// by whichever comes first: the culler, or a command that needed the seat.
    DeviceLeaseExpired {
        device_id: DeviceId,
        lease_expires_at: DateTime<Utc>,
        /// `None` when it never beat after its lease was taken.
        last_heartbeat_at: Option<DateTime<Utc>>,
        seats_in_use: u32,
        at: DateTime<Utc>,
    },
    /// A dead device holds a live lease again, under the same id: a heartbeat within the
    /// resurrection window, or the device's activation with the license key.
    DeviceRevived {
        device_id: DeviceId,
        lease: LeaseGrant,
        active_devices: u32,
        at: DateTime<Utc>,
    },
    DeviceDeactivated {
        device_id: DeviceId,
        reason: DeactivationReason,
        active_devices: u32,
        at: DateTime<Utc>,
    },
    DeviceUpdated {
        device_id: DeviceId,
        name: Option<String>,
        notes: Option<String>,
        at: DateTime<Utc>,
    },
    LicenseTokenIssued {
        device_id: DeviceId,
        token_id: Uuid,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

/// Reads a present field as `Some`, so that `null` is `Some(None)` (with `default`, an
/// absent field stays `None`).
fn null_is_some<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeactivationReason {
    Client,
    Admin,
    LimitReduced,
    HeartbeatExpired,
    /// A floating seat given back by its device (`checkin`).
    CheckedIn,
}

impl SubscriptionEvent {
    /// The domain time of the change.
    pub fn at(&self) -> DateTime<Utc> {
        use SubscriptionEvent::*;
        match self {
            SubscriptionCreated { at, .. }
            | SubscriptionPolicyChanged { at, .. }
            | SubscriptionPeriodStarted { at, .. }
            | SubscriptionExpiringSoon { at, .. }
            | SubscriptionExpired { at, .. }
            | SubscriptionGraceEnded { at, .. }
            | SubscriptionPlanChanged { at, .. }
            | SubscriptionDeviceLimitChanged { at, .. }
            | SubscriptionPeriodChanged { at, .. }
            | SubscriptionDetailsUpdated { at, .. }
            | SubscriptionSuspended { at, .. }
            | SubscriptionResumed { at, .. }
            | SubscriptionMarkedPastDue { at, .. }
            | SubscriptionCanceled { at, .. }
            | SubscriptionDeleted { at }
            | LicenseKeyIssued { at, .. }
            | LicenseKeyRegenerated { at, .. }
            | DeviceActivated { at, .. }
            | DeviceLeaseTaken { at, .. }
            | DeviceLeaseExpired { at, .. }
            | DeviceRevived { at, .. }
            | DeviceDeactivated { at, .. }
            | DeviceUpdated { at, .. }
            | LicenseTokenIssued { at, .. } => *at,
        }
    }
}

impl DomainEvent for SubscriptionEvent {
    fn event_type(&self) -> String {
        use SubscriptionEvent::*;
        let name = match self {
            SubscriptionCreated { .. } => "SubscriptionCreated",
            SubscriptionPolicyChanged { .. } => "SubscriptionPolicyChanged",
            SubscriptionPeriodStarted { .. } => "SubscriptionPeriodStarted",
            SubscriptionExpiringSoon { .. } => "SubscriptionExpiringSoon",
            SubscriptionExpired { .. } => "SubscriptionExpired",
            SubscriptionGraceEnded { .. } => "SubscriptionGraceEnded",
            SubscriptionPlanChanged { .. } => "SubscriptionPlanChanged",
            SubscriptionDeviceLimitChanged { .. } => "SubscriptionDeviceLimitChanged",
            SubscriptionPeriodChanged { .. } => "SubscriptionPeriodChanged",
            SubscriptionDetailsUpdated { .. } => "SubscriptionDetailsUpdated",
            SubscriptionSuspended { .. } => "SubscriptionSuspended",
            SubscriptionResumed { .. } => "SubscriptionResumed",
            SubscriptionMarkedPastDue { .. } => "SubscriptionMarkedPastDue",
            SubscriptionCanceled { .. } => "SubscriptionCanceled",
            SubscriptionDeleted { .. } => "SubscriptionDeleted",
            LicenseKeyIssued { .. } => "LicenseKeyIssued",
            LicenseKeyRegenerated { .. } => "LicenseKeyRegenerated",
            DeviceActivated { .. } => "DeviceActivated",
            DeviceLeaseTaken { .. } => "DeviceLeaseTaken",
            DeviceLeaseExpired { .. } => "DeviceLeaseExpired",
            DeviceRevived { .. } => "DeviceRevived",
            DeviceDeactivated { .. } => "DeviceDeactivated",
            DeviceUpdated { .. } => "DeviceUpdated",
            LicenseTokenIssued { .. } => "LicenseTokenIssued",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
