//! The pure domain of the Flowlytix Subscription Server.
//!
//! Nothing in this crate performs I/O, reads the clock or draws random numbers: time, ids and
//! key hashes arrive inside commands, so every rule is testable as given/when/then.

pub mod admin;
pub mod catalogue;
pub mod duration;
pub mod entitlement;
pub mod license_key;
pub mod policy;
pub mod product;
#[cfg(test)]
mod reference_tests;
pub mod subscription;
pub mod values;
pub mod webhook_endpoint;

#[cfg(test)]
mod fixture_log;

pub use admin::{AdminCommand, AdminError, AdminEvent, AdminUser};
pub use catalogue::CatalogueError;
pub use duration::IsoDuration;
pub use entitlement::{Entitlement, EntitlementCommand, EntitlementEvent};
pub use policy::{Policy, PolicyBook, PolicyCommand, PolicyEvent, PolicySettings, PolicyTerms};
pub use product::{Product, ProductCommand, ProductEvent};
pub use subscription::{
    DeactivationReason, DeviceDetails, DeviceInfo, NewSubscription, Status, Subscription,
    SubscriptionAction, SubscriptionCommand, SubscriptionError, SubscriptionEvent,
};
pub use values::{
    AdminId, Code, DeviceId, Email, EntitlementId, Plan, PolicyId, ProductId, Role, Sha256Hex,
    SubscriptionId, ValueError, WebhookEndpointId,
};
pub use webhook_endpoint::{
    WebhookEndpoint, WebhookEndpointCommand, WebhookEndpointError, WebhookEndpointEvent,
};
