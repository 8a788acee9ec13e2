//! The `Subscription` aggregate: a customer's plan, period, status, license key and device
//! activations. One aggregate, because activating a device must respect the current status
//! and device limit atomically.

mod aggregate;
#[cfg(test)]
mod churn_tests;
mod commands;
mod device;
mod error;
mod events;
mod lease;
#[cfg(test)]
mod lease_fixtures;
#[cfg(test)]
mod lease_tests;
mod policy;
#[cfg(test)]
mod policy_tests;
mod state;
#[cfg(test)]
mod tests;

pub use aggregate::{token_expiry, MAX_DEVICE_LIMIT, MAX_TEXT_LEN};
pub use commands::{
    DetailsChange, DeviceDetails, NewSubscription, PeriodChange, PresentedToken,
    SubscriptionAction, SubscriptionCommand,
};
pub use device::DeviceInfo;
pub use error::SubscriptionError;
pub use events::{DeactivationReason, SubscriptionEvent};
pub use lease::{
    lease_end, license_model, watches_deadlines, Lease, LeaseGrant, LeaseRenewals, Renewal,
};
pub use policy::{
    effective_entitlements, effective_max_devices, grace_until, in_grace, EffectiveTerms, Override,
    OwnTerms,
};
pub use state::{
    effective_status, DeadlineNotices, Device, LicenseKeyState, Subscription, SubscriptionState,
};

use serde::{Deserialize, Serialize};

/// Lifecycle status. `expired` is never stored by an event: it is what an otherwise usable
/// subscription becomes once its period or trial has run out (see [`Subscription::status_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Trialing,
    Active,
    PastDue,
    Suspended,
    Canceled,
    Expired,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Trialing => "trialing",
            Status::Active => "active",
            Status::PastDue => "past_due",
            Status::Suspended => "suspended",
            Status::Canceled => "canceled",
            Status::Expired => "expired",
        }
    }
}
