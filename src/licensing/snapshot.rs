//! A license as validation sees it: the parts of a subscription that decide a verdict.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::{effective_status, Device, SubscriptionState};
use flowlytix_aggregates::{Sha256Hex, Status, SubscriptionId};

/// The parts of a subscription that validation needs.
#[derive(Debug, Clone)]
pub struct LicenseSnapshot {
    pub subscription_id: SubscriptionId,
    pub version: i64,
    pub key_hash: Option<Sha256Hex>,
    pub status: Status,
    pub plan: String,
    pub features: Vec<String>,
    pub max_devices: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub active_devices: Vec<ActiveDevice>,
}

/// An active device, shared with the subscription state it was read from (no copy).
pub type ActiveDevice = Arc<Device>;

impl LicenseSnapshot {
    pub fn from_state(state: &SubscriptionState, version: u64) -> Self {
        Self {
            subscription_id: state.id,
            version: version as i64,
            key_hash: state.license_key.as_ref().map(|k| k.key_hash.clone()),
            status: state.status,
            plan: state.plan.as_str().to_owned(),
            features: state.features.clone(),
            max_devices: state.max_devices,
            expires_at: state.expires_at,
            trial_ends_at: state.trial_ends_at,
            deleted: state.deleted_at.is_some(),
            active_devices: state.active_devices().cloned().collect(),
        }
    }

    pub fn status_at(&self, now: DateTime<Utc>) -> Status {
        effective_status(self.status, self.expires_at, self.trial_ends_at, now)
    }
}
