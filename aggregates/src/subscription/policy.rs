//! How a subscription follows a policy: which of its values are its own (overrides) and
//! which come from the policy's current terms, and the grace that a policy may give after
//! expiry. Validation applies the same functions to its cached licenses.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Status, SubscriptionError, SubscriptionState};
use crate::policy::{PolicyBook, PolicyTerms};

/// A field a subscription that follows a policy sets itself, instead of taking the
/// policy's value. (Its own entitlements always add to the policy's.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    MaxDevices,
    ExpiresAt,
    TrialEndsAt,
}

impl Override {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxDevices => "max_devices",
            Self::ExpiresAt => "expires_at",
            Self::TrialEndsAt => "trial_ends_at",
        }
    }

    /// The field `name` names, as `as_str` writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::MaxDevices, Self::ExpiresAt, Self::TrialEndsAt]
            .into_iter()
            .find(|field| field.as_str() == name)
    }

    /// The names of `overrides`, sorted by name: how the read model and every answer list
    /// them.
    pub fn names(overrides: &[Self]) -> Vec<String> {
        let mut names: Vec<String> = overrides.iter().map(|o| o.as_str().to_owned()).collect();
        names.sort();
        names
    }
}

/// The device limit in force: the policy's unless the subscription has its own.
pub fn effective_max_devices(
    own: u32,
    overrides: &[Override],
    policy: Option<&PolicyTerms>,
) -> u32 {
    match policy {
        Some(terms) if !overrides.contains(&Override::MaxDevices) => terms.settings.max_devices,
        _ => own,
    }
}

/// The entitlements in force: the policy's and the subscription's own, sorted, each once.
pub fn effective_entitlements(own: &[String], policy: Option<&PolicyTerms>) -> Vec<String> {
    let mut codes: Vec<String> = policy
        .into_iter()
        .flat_map(|terms| {
            terms
                .settings
                .entitlements
                .iter()
                .map(|c| c.as_str().to_owned())
        })
        .chain(own.iter().cloned())
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

/// Until when a subscription that expires at `expires_at` still validates under its policy.
pub fn grace_until(
    expires_at: Option<DateTime<Utc>>,
    policy: Option<&PolicyTerms>,
) -> Option<DateTime<Utc>> {
    policy?.settings.grace_until(expires_at?)
}

/// Whether a subscription is expired by its period (not by a trial, and not for any other
/// reason) and still within its grace at `now`.
pub fn in_grace(
    stored: Status,
    expires_at: Option<DateTime<Utc>>,
    trial_ends_at: Option<DateTime<Utc>>,
    grace_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let usable = matches!(stored, Status::Trialing | Status::Active | Status::PastDue);
    let trial_over = stored == Status::Trialing && trial_ends_at.is_some_and(|end| end <= now);
    usable
        && !trial_over
        && expires_at.is_some_and(|end| end <= now)
        && grace_until.is_some_and(|end| now < end)
}

impl SubscriptionState {
    /// The terms of the policy it follows, from the command's book; `None` for a
    /// subscription of its own. A followed policy missing from the book is refused rather
    /// than decided without.
    pub fn policy_terms<'a>(
        &self,
        book: &'a PolicyBook,
    ) -> Result<Option<&'a PolicyTerms>, SubscriptionError> {
        match self.policy_id {
            None => Ok(None),
            Some(id) => book
                .get(id)
                .map(|terms| Some(terms.as_ref()))
                .ok_or(SubscriptionError::PolicyNotFound),
        }
    }

    pub fn max_devices_under(&self, policy: Option<&PolicyTerms>) -> u32 {
        effective_max_devices(self.max_devices, &self.overrides, policy)
    }

    pub fn grace_until_under(&self, policy: Option<&PolicyTerms>) -> Option<DateTime<Utc>> {
        grace_until(self.expires_at, policy)
    }

    pub fn in_grace_at(&self, now: DateTime<Utc>, policy: Option<&PolicyTerms>) -> bool {
        in_grace(
            self.status,
            self.expires_at,
            self.trial_ends_at,
            self.grace_until_under(policy),
            now,
        )
    }
}

/// What a license grants once its policy's current terms are applied: what validation,
/// tokens and every representation show.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveTerms {
    /// The policy's code for a subscription that follows one, else its own plan.
    pub plan: String,
    pub max_devices: u32,
    /// The policy's entitlements and the subscription's own, sorted, each once.
    pub entitlements: Vec<String>,
    pub product_code: Option<String>,
    pub policy_code: Option<String>,
    /// Until when an expired period still validates (only with a policy that gives grace).
    pub grace_until: Option<DateTime<Utc>>,
}

/// A subscription's own values, as both its state and a cached license hold them.
pub struct OwnTerms<'a> {
    pub plan: &'a str,
    pub max_devices: u32,
    pub features: &'a [String],
    pub overrides: &'a [Override],
    pub expires_at: Option<DateTime<Utc>>,
}

impl EffectiveTerms {
    pub fn of(own: OwnTerms<'_>, policy: Option<&PolicyTerms>) -> Self {
        Self {
            plan: policy.map_or_else(|| own.plan.to_owned(), |t| t.code.as_str().to_owned()),
            max_devices: effective_max_devices(own.max_devices, own.overrides, policy),
            entitlements: effective_entitlements(own.features, policy),
            product_code: policy.map(|t| t.product_code.as_str().to_owned()),
            policy_code: policy.map(|t| t.code.as_str().to_owned()),
            grace_until: grace_until(own.expires_at, policy),
        }
    }
}

impl SubscriptionState {
    /// Its terms under the policies' current terms (a followed policy missing from the book
    /// counts as none: its own values).
    pub fn effective(&self, policies: &PolicyBook) -> EffectiveTerms {
        let policy = self
            .policy_id
            .and_then(|id| policies.get(id))
            .map(|terms| terms.as_ref());
        EffectiveTerms::of(
            OwnTerms {
                plan: self.plan.as_str(),
                max_devices: self.max_devices,
                features: &self.features,
                overrides: &self.overrides,
                expires_at: self.expires_at,
            },
            policy,
        )
    }
}
