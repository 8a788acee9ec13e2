//! The `Policy` aggregate: a licensing template ("Pro, yearly, 3 seats, export + sync, 14
//! days of grace") that subscriptions follow. A change applies to every subscription that
//! follows the policy and has not overridden that setting, without an event per
//! subscription: they read the policy's terms when they decide and when they validate.
//! Policies are archived (no new subscription may follow one), never deleted.

#[cfg(test)]
mod lease_settings_tests;
mod terms;
#[cfg(test)]
mod tests;

pub use terms::{
    sorted_codes, ExpirationBasis, ExpirationStrategy, HeartbeatCull, LicenseModel, PolicyBook,
    PolicyChange, PolicySettings, PolicyTerms,
};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::catalogue::{check_metadata, check_name, CatalogueError, MAX_ENTITLEMENTS};
use crate::subscription::MAX_DEVICE_LIMIT;
use crate::values::{Code, PolicyId, ProductId};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    state: Option<PolicyState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    pub id: PolicyId,
    pub product_id: ProductId,
    pub product_code: Code,
    pub code: Code,
    pub settings: PolicySettings,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyCommand {
    /// The application layer has checked that the product and every entitlement exist.
    Create {
        product_id: ProductId,
        product_code: Code,
        code: Code,
        settings: PolicySettings,
        at: DateTime<Utc>,
    },
    Update {
        change: PolicyChange,
        at: DateTime<Utc>,
    },
    AttachEntitlements {
        codes: Vec<Code>,
        at: DateTime<Utc>,
    },
    DetachEntitlements {
        codes: Vec<Code>,
        at: DateTime<Utc>,
    },
    Archive {
        at: DateTime<Utc>,
    },
    Unarchive {
        at: DateTime<Utc>,
    },
}

/// Each event that changes the settings carries all of them after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyEvent {
    PolicyCreated {
        policy_id: PolicyId,
        product_id: ProductId,
        product_code: Code,
        code: Code,
        #[serde(flatten)]
        settings: PolicySettings,
        at: DateTime<Utc>,
    },
    PolicyUpdated {
        #[serde(flatten)]
        settings: PolicySettings,
        at: DateTime<Utc>,
    },
    PolicyEntitlementsChanged {
        attached: Vec<Code>,
        detached: Vec<Code>,
        entitlements: Vec<Code>,
        at: DateTime<Utc>,
    },
    PolicyArchived {
        at: DateTime<Utc>,
    },
    PolicyUnarchived {
        at: DateTime<Utc>,
    },
}

impl PolicyEvent {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::PolicyCreated { at, .. }
            | Self::PolicyUpdated { at, .. }
            | Self::PolicyEntitlementsChanged { at, .. }
            | Self::PolicyArchived { at }
            | Self::PolicyUnarchived { at } => *at,
        }
    }
}

impl DomainEvent for PolicyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PolicyCreated { .. } => "PolicyCreated",
            Self::PolicyUpdated { .. } => "PolicyUpdated",
            Self::PolicyEntitlementsChanged { .. } => "PolicyEntitlementsChanged",
            Self::PolicyArchived { .. } => "PolicyArchived",
            Self::PolicyUnarchived { .. } => "PolicyUnarchived",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// The rules every policy's settings keep.
fn check_settings(settings: &PolicySettings) -> Result<(), CatalogueError> {
    check_name(&settings.name)?;
    if !(1..=MAX_DEVICE_LIMIT).contains(&settings.max_devices) {
        return Err(CatalogueError::InvalidDeviceLimit);
    }
    let grace_allowed = settings.expiration_strategy == ExpirationStrategy::AllowGrace;
    if grace_allowed != settings.grace_period.is_some() {
        return Err(CatalogueError::InvalidGrace);
    }
    if settings.entitlements.len() > MAX_ENTITLEMENTS {
        return Err(CatalogueError::TooManyEntitlements);
    }
    check_lease_settings(settings)?;
    check_metadata(&settings.metadata)
}

/// Heartbeat settings come with `require_heartbeat` (and it with a duration); a churn limit
/// is a count and a window together; borrowing is for floating seats that beat.
fn check_lease_settings(settings: &PolicySettings) -> Result<(), CatalogueError> {
    let beats = settings.require_heartbeat;
    let heartbeat_ok = beats == settings.heartbeat_duration.is_some()
        && (beats || settings.resurrection_window.is_none())
        && (beats || settings.heartbeat_cull == HeartbeatCull::default());
    if !heartbeat_ok {
        return Err(CatalogueError::InvalidHeartbeat);
    }
    let churn_ok = settings.max_deactivations.is_some() == settings.deactivation_window.is_some()
        && settings
            .max_deactivations
            .is_none_or(|max| (1..=MAX_DEVICE_LIMIT).contains(&max));
    if !churn_ok {
        return Err(CatalogueError::InvalidDeactivationLimit);
    }
    if settings.max_borrow.is_some() && !(beats && settings.license_model == LicenseModel::Floating)
    {
        return Err(CatalogueError::InvalidBorrow);
    }
    Ok(())
}

impl Policy {
    pub fn state(&self) -> Option<&PolicyState> {
        self.state.as_ref()
    }

    /// The terms a subscription command carries, read at `version` of this policy.
    pub fn terms(&self, version: u64) -> Option<PolicyTerms> {
        self.state.as_ref().map(|state| PolicyTerms {
            policy_id: state.id,
            version,
            product_id: state.product_id,
            product_code: state.product_code.clone(),
            code: state.code.clone(),
            archived: state.archived,
            settings: state.settings.clone(),
        })
    }

    pub fn decide(&self, command: PolicyCommand) -> Result<Vec<PolicyEvent>, CatalogueError> {
        use PolicyCommand as C;
        use PolicyEvent as E;
        if let C::Create {
            product_id,
            product_code,
            code,
            settings,
            at,
        } = command
        {
            if self.state.is_some() {
                return Err(CatalogueError::AlreadyExists);
            }
            let settings = PolicySettings {
                entitlements: sorted_codes(settings.entitlements),
                ..settings
            };
            check_settings(&settings)?;
            return Ok(vec![E::PolicyCreated {
                policy_id: PolicyId::for_code(product_id, &code),
                product_id,
                product_code,
                code,
                settings,
                at,
            }]);
        }
        let state = self.state.as_ref().ok_or(CatalogueError::NotFound)?;
        match command {
            C::Create { .. } => Err(CatalogueError::AlreadyExists),
            C::Update { change, at } => {
                let settings = state.settings.changed(change);
                check_settings(&settings)?;
                if settings == state.settings {
                    return Ok(vec![]);
                }
                Ok(vec![E::PolicyUpdated { settings, at }])
            }
            C::AttachEntitlements { codes, at } => {
                let attached: Vec<Code> = sorted_codes(codes)
                    .into_iter()
                    .filter(|c| !state.settings.entitlements.contains(c))
                    .collect();
                if attached.is_empty() {
                    return Ok(vec![]);
                }
                let entitlements =
                    sorted_codes([state.settings.entitlements.clone(), attached.clone()].concat());
                if entitlements.len() > MAX_ENTITLEMENTS {
                    return Err(CatalogueError::TooManyEntitlements);
                }
                Ok(vec![E::PolicyEntitlementsChanged {
                    attached,
                    detached: vec![],
                    entitlements,
                    at,
                }])
            }
            C::DetachEntitlements { codes, at } => {
                let detached: Vec<Code> = sorted_codes(codes)
                    .into_iter()
                    .filter(|c| state.settings.entitlements.contains(c))
                    .collect();
                if detached.is_empty() {
                    return Ok(vec![]);
                }
                let entitlements = state
                    .settings
                    .entitlements
                    .iter()
                    .filter(|c| !detached.contains(c))
                    .cloned()
                    .collect();
                Ok(vec![E::PolicyEntitlementsChanged {
                    attached: vec![],
                    detached,
                    entitlements,
                    at,
                }])
            }
            C::Archive { at } => Ok(if state.archived {
                vec![]
            } else {
                vec![E::PolicyArchived { at }]
            }),
            C::Unarchive { at } => Ok(if state.archived {
                vec![E::PolicyUnarchived { at }]
            } else {
                vec![]
            }),
        }
    }
}

impl Aggregate for Policy {
    const TYPE: &'static str = "Policy";
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = CatalogueError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PolicyCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CatalogueError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: PolicyEvent) {
        if let PolicyEvent::PolicyCreated {
            policy_id,
            product_id,
            product_code,
            code,
            settings,
            at,
        } = event
        {
            self.state = Some(PolicyState {
                id: policy_id,
                product_id,
                product_code,
                code,
                settings,
                archived: false,
                created_at: at,
                updated_at: at,
            });
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        state.updated_at = event.at();
        match event {
            PolicyEvent::PolicyCreated { .. } => {}
            PolicyEvent::PolicyUpdated { settings, .. } => state.settings = settings,
            PolicyEvent::PolicyEntitlementsChanged { entitlements, .. } => {
                state.settings.entitlements = entitlements;
            }
            PolicyEvent::PolicyArchived { .. } => state.archived = true,
            PolicyEvent::PolicyUnarchived { .. } => state.archived = false,
        }
    }
}
