//! The licensing catalogue: products, entitlements and the policies subscriptions follow.

mod policies;

pub use policies::{follow_policy_changes, Policies};
