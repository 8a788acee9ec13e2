use chrono::{DateTime, Utc};

use super::Status;
use crate::values::DeviceId;

/// Why a subscription refused a command. Each variant maps to one stable API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("the subscription does not exist")]
    NotFound,
    #[error("the subscription already exists")]
    AlreadyExists,
    #[error("the subscription was deleted")]
    Deleted,
    #[error("the license key is not this subscription's current key")]
    LicenseKeyMismatch,
    #[error("max_devices must be between 1 and {max}")]
    InvalidDeviceLimit { max: u32 },
    #[error("expires_at must be after starts_at, and trial_ends_at after starts_at")]
    InvalidPeriod,
    #[error(
        "starts_at, expires_at and trial_ends_at must fall between 1970-01-01 and 9999-12-31 (UTC)"
    )]
    InstantOutOfRange,
    #[error("a subscription cannot go from {from:?} to {to:?}")]
    InvalidStatusTransition { from: Status, to: Status },
    #[error("the subscription is canceled and cannot be changed")]
    Canceled,
    #[error("the license is suspended")]
    LicenseSuspended,
    #[error("the license has expired")]
    LicenseExpired,
    #[error("the license is canceled")]
    LicenseCanceled,
    #[error("all {max_devices} device slots are in use")]
    DeviceLimitReached { max_devices: u32, in_use: u32 },
    #[error("{active} devices are active; name {must_deactivate} of them to deactivate to go down to {requested}")]
    DeviceLimitBelowActiveCount {
        active: u32,
        requested: u32,
        must_deactivate: u32,
    },
    #[error("device {0} does not belong to this subscription")]
    DeviceNotFound(DeviceId),
    #[error("the token was issued under a license key that has since been regenerated")]
    TokenRevoked,
    #[error("no active device has this fingerprint")]
    DeviceNotActivated,
    #[error("device {0} is not active")]
    DeviceNotActive(DeviceId),
    #[error("a text field is too long or empty")]
    InvalidText,
    #[error("the policy does not exist")]
    PolicyNotFound,
    #[error("the policy is archived: no new subscription may follow it")]
    PolicyArchived,
    #[error("the device's heartbeat stopped: its lease is dead")]
    HeartbeatDead,
    #[error("the license's policy does not require heartbeats")]
    HeartbeatNotRequired,
    #[error("the license's policy does not allow borrowing")]
    BorrowNotAllowed,
    #[error("borrow_until must be in the future and no later than {until}")]
    InvalidBorrow { until: DateTime<Utc> },
    #[error("too many deactivations recently; the next is allowed at {retry_at}")]
    DeactivationLimitReached { retry_at: DateTime<Utc> },
    #[error("the plan of a subscription that follows a policy is the policy's code; change its policy instead")]
    PlanFollowsPolicy,
}
