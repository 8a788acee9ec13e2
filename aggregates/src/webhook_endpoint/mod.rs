//! The `WebhookEndpoint` aggregate: a receiver that admins register for the event stream.
//! Its history (created, updated, secret rotated, disabled, enabled, deleted) is audited
//! like every other aggregate's. Its signing secret only ever appears here sealed (encrypted
//! by the server under a key a database reader does not have).

mod aggregate;
mod commands;
mod error;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{
    PreviousSecret, WebhookEndpoint, WebhookEndpointState, MAX_DESCRIPTION_LEN, MAX_EVENT_TYPES,
    MAX_URL_LEN,
};
pub use commands::{EndpointChange, EndpointSettings, WebhookEndpointCommand};
pub use error::WebhookEndpointError;
pub use events::{DisableReason, SealedSecret, WebhookEndpointEvent, SEALED_PREFIX};

/// Every event type an endpoint may subscribe to, as the feed names them.
pub const EVENT_TYPES: &[&str] = &[
    "SubscriptionCreated",
    "SubscriptionPlanChanged",
    "SubscriptionDeviceLimitChanged",
    "SubscriptionPeriodChanged",
    "SubscriptionDetailsUpdated",
    "SubscriptionSuspended",
    "SubscriptionResumed",
    "SubscriptionMarkedPastDue",
    "SubscriptionCanceled",
    "SubscriptionDeleted",
    "LicenseKeyIssued",
    "LicenseKeyRegenerated",
    "DeviceActivated",
    "DeviceDeactivated",
    "DeviceUpdated",
    "LicenseTokenIssued",
    "SubscriptionPolicyChanged",
    "SubscriptionPeriodStarted",
    "SubscriptionExpiringSoon",
    "SubscriptionExpired",
    "SubscriptionGraceEnded",
    "DeviceLeaseTaken",
    "DeviceLeaseExpired",
    "DeviceRevived",
    "ProductCreated",
    "ProductUpdated",
    "ProductDeleted",
    "EntitlementCreated",
    "EntitlementRenamed",
    "EntitlementDeleted",
    "PolicyCreated",
    "PolicyUpdated",
    "PolicyEntitlementsChanged",
    "PolicyArchived",
    "PolicyUnarchived",
    "AdminCreated",
    "AdminRoleChanged",
    "AdminPasswordChanged",
    "AdminDisabled",
    "WebhookEndpointCreated",
    "WebhookEndpointUpdated",
    "WebhookEndpointSecretRotated",
    "WebhookEndpointDisabled",
    "WebhookEndpointEnabled",
    "WebhookEndpointDeleted",
];
