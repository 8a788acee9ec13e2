//! `flowlytix-client`: the app side of Flowlytix licensing, with no server dependency.
//!
//! This first part is the offline half: a license token verified against the server's
//! pinned public keys (unknown key ids refused), for this machine, within its time window
//! on a clock that may not be wound back. The online calls, license files, signed answers
//! and air-gapped requests follow (issue 24).

mod claims;
mod clock;
mod keys;
mod verify;

pub use claims::{LicenseClaims, LICENSE_AUDIENCE};
pub use clock::ClockGuard;
pub use keys::{KeysError, PinnedKeys};
pub use verify::{verify_token, Expectation, OfflineError};
