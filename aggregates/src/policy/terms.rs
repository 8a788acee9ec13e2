//! A policy's rules as values: what `Policy` events record and what subscription commands
//! carry, so that a subscription decides with the policy as the application layer loaded it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::duration::IsoDuration;
use crate::values::{Code, PolicyId, ProductId};

/// When a subscription's period starts counting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpirationBasis {
    #[default]
    FromCreation,
    /// The first device activation sets `expires_at` (recorded as an event).
    FromFirstActivation,
}

/// What happens once a subscription's period has run out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpirationStrategy {
    /// Expired is refused.
    #[default]
    Restrict,
    /// Still valid for `grace_period` after expiry (validate says so with `grace_until`).
    AllowGrace,
}

/// How a policy's subscriptions count their seats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseModel {
    /// A seat per active device, held until the device is deactivated.
    #[default]
    NodeLocked,
    /// A seat per live lease: a device whose lease expired or was checked in holds none.
    Floating,
}

/// What becomes of a device whose heartbeat stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatCull {
    /// Deactivated (reason `heartbeat_expired`): its seat is free.
    #[default]
    Deactivate,
    /// Kept, dead: a node-locked seat stays taken until the device is revived or
    /// deactivated; a floating one is free.
    Keep,
}

/// Everything an admin sets on a policy. (The default, a nameless policy of no seats, is
/// no valid policy: only a base to fill in.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicySettings {
    pub name: String,
    pub max_devices: u32,
    /// `None`: perpetual.
    #[serde(default)]
    pub duration: Option<IsoDuration>,
    #[serde(default)]
    pub trial_duration: Option<IsoDuration>,
    #[serde(default)]
    pub expiration_basis: ExpirationBasis,
    #[serde(default)]
    pub expiration_strategy: ExpirationStrategy,
    #[serde(default)]
    pub grace_period: Option<IsoDuration>,
    /// Overrides `LICENSE_TOKEN_TTL` for the subscriptions that follow the policy.
    #[serde(default)]
    pub token_ttl: Option<IsoDuration>,
    /// Sorted, each once.
    #[serde(default)]
    pub entitlements: Vec<Code>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    // The lease settings below are left out of events while they have their default, so
    // that policies which use none of them are recorded as before they existed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub license_model: LicenseModel,
    /// Devices hold a lease that lasts `heartbeat_duration` past their last heartbeat.
    #[serde(default, skip_serializing_if = "is_default")]
    pub require_heartbeat: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_duration: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub heartbeat_cull: HeartbeatCull,
    /// How long after its deadline a dead device may still be revived by a heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resurrection_window: Option<IsoDuration>,
    /// Client deactivations allowed per `deactivation_window` (admins are not limited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deactivations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivation_window: Option<IsoDuration>,
    /// How far ahead a heartbeat may borrow its seat (`borrow_until`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_borrow: Option<IsoDuration>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A change to some settings: `None` keeps a setting; for the optional ones `Some(None)`
/// clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyChange {
    pub name: Option<String>,
    pub max_devices: Option<u32>,
    pub duration: Option<Option<IsoDuration>>,
    pub trial_duration: Option<Option<IsoDuration>>,
    pub expiration_basis: Option<ExpirationBasis>,
    pub expiration_strategy: Option<ExpirationStrategy>,
    pub grace_period: Option<Option<IsoDuration>>,
    pub token_ttl: Option<Option<IsoDuration>>,
    pub entitlements: Option<Vec<Code>>,
    pub metadata: Option<Map<String, Value>>,
    pub license_model: Option<LicenseModel>,
    pub require_heartbeat: Option<bool>,
    pub heartbeat_duration: Option<Option<IsoDuration>>,
    pub heartbeat_cull: Option<HeartbeatCull>,
    pub resurrection_window: Option<Option<IsoDuration>>,
    pub max_deactivations: Option<Option<u32>>,
    pub deactivation_window: Option<Option<IsoDuration>>,
    pub max_borrow: Option<Option<IsoDuration>>,
}

impl PolicySettings {
    /// These settings with `change` applied.
    pub fn changed(&self, change: PolicyChange) -> Self {
        let current = self.clone();
        Self {
            name: change.name.unwrap_or(current.name),
            max_devices: change.max_devices.unwrap_or(current.max_devices),
            duration: change.duration.unwrap_or(current.duration),
            trial_duration: change.trial_duration.unwrap_or(current.trial_duration),
            expiration_basis: change.expiration_basis.unwrap_or(current.expiration_basis),
            expiration_strategy: change
                .expiration_strategy
                .unwrap_or(current.expiration_strategy),
            grace_period: change.grace_period.unwrap_or(current.grace_period),
            token_ttl: change.token_ttl.unwrap_or(current.token_ttl),
            entitlements: change
                .entitlements
                .map(sorted_codes)
                .unwrap_or(current.entitlements),
            metadata: change.metadata.unwrap_or(current.metadata),
            license_model: change.license_model.unwrap_or(current.license_model),
            require_heartbeat: change
                .require_heartbeat
                .unwrap_or(current.require_heartbeat),
            heartbeat_duration: change
                .heartbeat_duration
                .unwrap_or(current.heartbeat_duration),
            heartbeat_cull: change.heartbeat_cull.unwrap_or(current.heartbeat_cull),
            resurrection_window: change
                .resurrection_window
                .unwrap_or(current.resurrection_window),
            max_deactivations: change
                .max_deactivations
                .unwrap_or(current.max_deactivations),
            deactivation_window: change
                .deactivation_window
                .unwrap_or(current.deactivation_window),
            max_borrow: change.max_borrow.unwrap_or(current.max_borrow),
        }
    }

    /// How long a lease lasts past a heartbeat, when devices must beat.
    pub fn lease_duration(&self) -> Option<&IsoDuration> {
        self.heartbeat_duration
            .as_ref()
            .filter(|_| self.require_heartbeat)
    }

    /// Whether devices under these settings hold leases (that expire, or are checked in).
    pub fn leases(&self) -> bool {
        self.require_heartbeat || self.license_model == LicenseModel::Floating
    }

    /// The last instant a subscription that expires at `expires_at` still validates:
    /// `expires_at` itself is already expired, so grace covers up to, not including, this.
    pub fn grace_until(&self, expires_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match (self.expiration_strategy, &self.grace_period) {
            (ExpirationStrategy::AllowGrace, Some(grace)) => grace.after(expires_at),
            _ => None,
        }
    }
}

/// Codes sorted, each once.
pub fn sorted_codes(mut codes: Vec<Code>) -> Vec<Code> {
    codes.sort();
    codes.dedup();
    codes
}

/// A policy as one subscription command decides with it: its settings, which version of
/// the policy they are, and the codes that name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyTerms {
    pub policy_id: PolicyId,
    /// The policy aggregate's version these terms were read at; events decided with them
    /// record it.
    pub version: u64,
    pub product_id: ProductId,
    pub product_code: Code,
    pub code: Code,
    pub archived: bool,
    pub settings: PolicySettings,
}

/// Every policy's terms as the application layer had them when it built a command: a
/// subscription command carries the book, and the subscription takes the terms of the
/// policy it follows from it. Policies are few, so the book is one shared map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyBook(Arc<BTreeMap<PolicyId, Arc<PolicyTerms>>>);

impl PolicyBook {
    pub fn new(policies: BTreeMap<PolicyId, Arc<PolicyTerms>>) -> Self {
        Self(Arc::new(policies))
    }

    pub fn get(&self, id: PolicyId) -> Option<&Arc<PolicyTerms>> {
        self.0.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<PolicyTerms>> {
        self.0.values()
    }

    /// A book with `terms` in it (replacing an older version of the same policy).
    pub fn with(&self, terms: Arc<PolicyTerms>) -> Self {
        let mut policies = (*self.0).clone();
        policies.insert(terms.policy_id, terms);
        Self::new(policies)
    }
}
