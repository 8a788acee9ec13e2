//! Client-app licensing: what a license key or license token proves. The operations behind
//! `/api/v1/licensing` live here (the HTTP handlers only parse and respond); the verdict of
//! a validation is a pure function in `verdict`.

mod cache;
pub mod freshness;
mod lease;
mod operations;
mod snapshot;
#[cfg(test)]
mod tests;
pub mod token;
pub mod verdict;

pub use cache::LicenseCache;
pub use lease::HeartbeatAnswer;
pub use operations::{
    fingerprint_hash, Credential, Licensing, LicensingError, TokenIssued, MAX_FINGERPRINT_LEN,
};
pub use snapshot::{ActiveDevice, LicenseSnapshot};
pub use verdict::{Scope, ValidationCode, Verdict};
