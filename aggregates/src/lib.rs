//! The pure domain of the Flowlytix Subscription Server.
//!
//! Nothing in this crate performs I/O, reads the clock or draws random numbers: time, ids and
//! key hashes arrive inside commands, so every rule is testable as given/when/then.

pub mod admin;
pub mod license_key;
#[cfg(test)]
mod reference_tests;
pub mod subscription;
pub mod values;
pub mod webhook_endpoint;

#[cfg(test)]
mod fixture_log;

pub use admin::{AdminCommand, AdminError, AdminEvent, AdminUser};
pub use subscription::{
    DeactivationReason, DeviceDetails, DeviceInfo, NewSubscription, Status, Subscription,
    SubscriptionAction, SubscriptionCommand, SubscriptionError, SubscriptionEvent,
};
pub use values::{
    AdminId, DeviceId, Email, Plan, Role, Sha256Hex, SubscriptionId, ValueError, WebhookEndpointId,
};
pub use webhook_endpoint::{
    WebhookEndpoint, WebhookEndpointCommand, WebhookEndpointError, WebhookEndpointEvent,
};
