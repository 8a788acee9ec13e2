//! What a subscription's page says about the policy it follows: which policy, which of its
//! values are its own (overrides, beside the policy's), its grace and its entitlements.

use flowlytix_aggregates::{PolicyBook, PolicyId};

use super::catalogue::{duration, moment};
use crate::http::views::SubscriptionView;

pub struct Following {
    pub policy_id: String,
    /// `<product>/<policy> — name`.
    pub label: String,
    pub archived: bool,
    /// "own value; policy: 5", for each field it overrides.
    pub max_devices: Option<String>,
    pub expires_at: Option<String>,
    pub trial_ends_at: Option<String>,
}

/// An entitlement in force, and whether the subscription adds it itself.
pub struct Entitlement {
    pub code: String,
    pub own: bool,
}

pub struct PolicyShown {
    /// None: a subscription of its own.
    pub following: Option<Following>,
    pub entitlements: Vec<Entitlement>,
    /// "in grace until …", while in grace.
    pub grace: Option<String>,
}

pub fn shown(view: &SubscriptionView, book: &PolicyBook) -> PolicyShown {
    let terms = view
        .policy_id
        .and_then(|id| book.get(PolicyId(id)))
        .cloned();
    let own = |field: &str, policy: String| {
        view.overrides
            .iter()
            .any(|o| o == field)
            .then(|| format!("own value; policy: {policy}"))
    };
    let following = terms.as_ref().map(|terms| {
        let settings = &terms.settings;
        Following {
            policy_id: terms.policy_id.as_uuid().to_string(),
            label: format!("{}/{} — {}", terms.product_code, terms.code, settings.name),
            archived: terms.archived,
            max_devices: own("max_devices", settings.max_devices.to_string()),
            expires_at: own(
                "expires_at",
                duration(settings.duration.as_ref(), "perpetual"),
            ),
            trial_ends_at: own(
                "trial_ends_at",
                duration(settings.trial_duration.as_ref(), "no trial"),
            ),
        }
    });
    let granted = |code: &str| {
        terms
            .as_ref()
            .is_some_and(|t| t.settings.entitlements.iter().any(|c| c.as_str() == code))
    };
    PolicyShown {
        entitlements: view
            .entitlements
            .iter()
            .map(|code| Entitlement {
                code: code.clone(),
                own: terms.is_some() && !granted(code),
            })
            .collect(),
        grace: view
            .in_grace
            .then_some(view.grace_until)
            .flatten()
            .map(|until| format!("in grace until {}", moment(until))),
        following,
    }
}
