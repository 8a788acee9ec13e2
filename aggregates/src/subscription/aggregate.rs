use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

use super::commands::{
    DetailsChange, DeviceDetails, NewSubscription, PeriodChange, PresentedToken,
};
use super::lease::{self, ensure_churn_allowed, ensure_seat_free, license_model, Draft};
use super::policy::effective_max_devices;
use super::state::{
    ensure_key_admits, DeadlineNotices, Device, LicenseKeyState, Subscription, SubscriptionState,
};
use super::{
    DeactivationReason, Status, SubscriptionAction, SubscriptionCommand, SubscriptionError,
    SubscriptionEvent,
};
use super::{Lease, LeaseGrant, LeaseRenewals, Override};
use crate::policy::{ExpirationBasis, LicenseModel, PolicyBook, PolicyTerms};
use crate::values::PolicyId;
use crate::values::{is_supported_instant, DeviceId, Plan, Sha256Hex};

/// Upper bound on `max_devices`, so a typo cannot make a limit meaningless.
pub const MAX_DEVICE_LIMIT: u32 = 10_000;
/// Upper bound on free-text fields (names, reasons, platform strings).
pub const MAX_TEXT_LEN: usize = 256;

impl Aggregate for Subscription {
    const TYPE: &'static str = "Subscription";
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = SubscriptionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SubscriptionCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SubscriptionError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: SubscriptionEvent) {
        use SubscriptionEvent::*;
        if let SubscriptionCreated {
            subscription_id,
            customer_email,
            customer_name,
            organization,
            plan,
            status,
            starts_at,
            expires_at,
            trial_ends_at,
            max_devices,
            features,
            metadata,
            at,
            policy_id,
            overrides,
            ..
        } = event
        {
            self.state = Some(SubscriptionState {
                id: subscription_id,
                customer_email,
                customer_name,
                organization,
                plan,
                status,
                starts_at,
                expires_at,
                trial_ends_at,
                max_devices,
                features,
                metadata,
                policy_id,
                overrides,
                deadline_notices: None,
                license_key: None,
                devices: Vec::new(),
                created_at: at,
                updated_at: at,
                deleted_at: None,
            });
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return; // no event but SubscriptionCreated can come first
        };
        state.updated_at = event.at();
        match event {
            SubscriptionCreated { .. } => {}
            SubscriptionPolicyChanged {
                policy_id,
                plan,
                max_devices,
                features,
                overrides,
                ..
            } => {
                state.policy_id = policy_id;
                state.plan = plan;
                state.max_devices = max_devices;
                state.features = features;
                state.overrides = overrides;
            }
            SubscriptionPeriodStarted { expires_at, .. } => state.expires_at = Some(expires_at),
            SubscriptionExpiringSoon {
                expires_at,
                days_before,
                ..
            } => {
                let mut notices =
                    DeadlineNotices::for_deadline(state.deadline_notices.as_ref(), expires_at);
                notices.reminded_days = Some(days_before);
                state.deadline_notices = Some(notices);
            }
            SubscriptionExpired { expires_at, .. } => {
                let mut notices =
                    DeadlineNotices::for_deadline(state.deadline_notices.as_ref(), expires_at);
                notices.expired = true;
                state.deadline_notices = Some(notices);
            }
            SubscriptionGraceEnded { expires_at, .. } => {
                let mut notices =
                    DeadlineNotices::for_deadline(state.deadline_notices.as_ref(), expires_at);
                notices.grace_ended = true;
                state.deadline_notices = Some(notices);
            }
            SubscriptionPlanChanged { plan, .. } => state.plan = plan,
            SubscriptionDeviceLimitChanged { max_devices, .. } => {
                state.max_devices = max_devices;
                state.mark_overridden(Override::MaxDevices, true);
            }
            SubscriptionPeriodChanged {
                starts_at,
                expires_at,
                trial_ends_at,
                ..
            } => {
                state.mark_overridden(Override::ExpiresAt, expires_at != state.expires_at);
                state.mark_overridden(Override::TrialEndsAt, trial_ends_at != state.trial_ends_at);
                state.starts_at = starts_at;
                state.expires_at = expires_at;
                state.trial_ends_at = trial_ends_at;
            }
            SubscriptionDetailsUpdated {
                customer_email,
                customer_name,
                organization,
                features,
                metadata,
                ..
            } => {
                if let Some(email) = customer_email {
                    state.customer_email = email;
                }
                if let Some(name) = customer_name {
                    state.customer_name = name;
                }
                if let Some(organization) = organization {
                    state.organization = organization;
                }
                if let Some(features) = features {
                    state.features = features;
                }
                if let Some(metadata) = metadata {
                    state.metadata = metadata;
                }
            }
            SubscriptionSuspended { .. } => state.status = Status::Suspended,
            SubscriptionResumed { .. } => state.status = Status::Active,
            SubscriptionMarkedPastDue { .. } => state.status = Status::PastDue,
            SubscriptionCanceled { .. } => state.status = Status::Canceled,
            SubscriptionDeleted { at } => state.deleted_at = Some(at),
            LicenseKeyIssued {
                key_hash,
                key_prefix,
                at,
            }
            | LicenseKeyRegenerated {
                key_hash,
                key_prefix,
                at,
                ..
            } => {
                state.license_key = Some(LicenseKeyState {
                    key_hash,
                    key_prefix,
                    issued_at: at,
                });
            }
            DeviceActivated {
                device_id,
                fingerprint_hash,
                info,
                at,
                lease,
                ..
            } => {
                let notes = state.device(device_id).and_then(|d| d.notes.clone());
                let lease = lease.map(|grant| Lease {
                    expires_at: grant.expires_at,
                    taken_at: at,
                    expired: false,
                });
                state.devices.retain(|d| d.id != device_id);
                state.devices.push(Arc::new(Device {
                    id: device_id,
                    fingerprint_hash,
                    info,
                    notes,
                    active: true,
                    activated_at: at,
                    deactivated_at: None,
                    deactivation_reason: None,
                    last_seen_at: Some(at),
                    lease,
                }));
            }
            DeviceLeaseTaken {
                device_id,
                lease,
                at,
            }
            | DeviceRevived {
                device_id,
                lease,
                at,
                ..
            } => {
                if let Some(device) = state.devices.iter_mut().find(|d| d.id == device_id) {
                    let device = Arc::make_mut(device);
                    device.active = true;
                    device.deactivated_at = None;
                    device.deactivation_reason = None;
                    device.lease = Some(Lease {
                        expires_at: lease.expires_at,
                        taken_at: at,
                        expired: false,
                    });
                }
            }
            DeviceLeaseExpired {
                device_id,
                lease_expires_at,
                ..
            } => {
                if let Some(device) = state.devices.iter_mut().find(|d| d.id == device_id) {
                    let device = Arc::make_mut(device);
                    if let Some(lease) = device.lease.as_mut() {
                        lease.expires_at = Some(lease_expires_at);
                        lease.expired = true;
                    }
                }
            }
            DeviceDeactivated {
                device_id,
                reason,
                at,
                ..
            } => {
                if let Some(device) = state.devices.iter_mut().find(|d| d.id == device_id) {
                    let device = Arc::make_mut(device);
                    device.active = false;
                    device.deactivated_at = Some(at);
                    device.deactivation_reason = Some(reason);
                }
            }
            DeviceUpdated {
                device_id,
                name,
                notes,
                ..
            } => {
                if let Some(device) = state.devices.iter_mut().find(|d| d.id == device_id) {
                    let device = Arc::make_mut(device);
                    if name.is_some() {
                        device.info.name = name;
                    }
                    if notes.is_some() {
                        device.notes = notes;
                    }
                }
            }
            LicenseTokenIssued { device_id, at, .. } => {
                if let Some(device) = state.devices.iter_mut().find(|d| d.id == device_id) {
                    let device = Arc::make_mut(device);
                    device.last_seen_at = Some(at);
                }
            }
        }
    }
}

impl Subscription {
    /// The decision half of `handle`: which events a command produces, or why it is refused.
    /// An empty list means the command changes nothing (it is idempotent).
    pub fn decide(
        &self,
        command: SubscriptionCommand,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        let SubscriptionCommand {
            at,
            action,
            policies,
            leases,
        } = command;
        if let SubscriptionAction::CreateSubscription(new) = action {
            return match self.state {
                Some(_) => Err(SubscriptionError::AlreadyExists),
                None => create(new, &policies, at),
            };
        }
        let state = self.state.as_ref().ok_or(SubscriptionError::NotFound)?;
        if state.deleted_at.is_some() {
            return Err(SubscriptionError::Deleted);
        }
        use SubscriptionAction::*;
        use SubscriptionEvent as E;
        Ok(match action {
            CreateSubscription(_) => unreachable!("handled above"),
            ChangePlan { plan } => {
                state.ensure_not_canceled()?;
                if plan == state.plan {
                    vec![]
                } else if state.policy_id.is_some() {
                    // Its plan is its policy's code: the same one sent back changes nothing.
                    return Err(SubscriptionError::PlanFollowsPolicy);
                } else {
                    vec![E::SubscriptionPlanChanged {
                        previous_plan: state.plan.clone(),
                        plan,
                        at,
                    }]
                }
            }
            ChangeDeviceLimit {
                max_devices,
                deactivate_device_ids,
            } => change_device_limit(
                state,
                state.policy_terms(&policies)?,
                max_devices,
                deactivate_device_ids,
                at,
            )?,
            ChangePeriod(period) => change_period(state, period, at)?,
            UpdateDetails(change) => update_details(state, change, at)?,
            SuspendSubscription { reason } => {
                check_optional_text(reason.as_deref())?;
                let previous_status = state.transition(
                    Status::Suspended,
                    &[Status::Trialing, Status::Active, Status::PastDue],
                )?;
                vec![E::SubscriptionSuspended {
                    previous_status,
                    reason,
                    at,
                }]
            }
            ResumeSubscription => {
                let previous_status = state.transition(
                    Status::Active,
                    &[Status::Suspended, Status::PastDue, Status::Trialing],
                )?;
                vec![E::SubscriptionResumed {
                    previous_status,
                    at,
                }]
            }
            MarkPastDue => {
                let previous_status =
                    state.transition(Status::PastDue, &[Status::Active, Status::Trialing])?;
                vec![E::SubscriptionMarkedPastDue {
                    previous_status,
                    at,
                }]
            }
            CancelSubscription { reason } => {
                check_optional_text(reason.as_deref())?;
                let previous_status = state.transition(
                    Status::Canceled,
                    &[
                        Status::Trialing,
                        Status::Active,
                        Status::PastDue,
                        Status::Suspended,
                    ],
                )?;
                vec![E::SubscriptionCanceled {
                    previous_status,
                    reason,
                    at,
                }]
            }
            DeleteSubscription => vec![E::SubscriptionDeleted { at }],
            RegenerateLicenseKey {
                key_hash,
                key_prefix,
                deactivate_devices,
            } => regenerate_license_key(state, key_hash, key_prefix, deactivate_devices, at),
            VerifyLicenseKey { key_hash } => {
                if state
                    .license_key
                    .as_ref()
                    .is_some_and(|k| k.key_hash == key_hash)
                {
                    vec![]
                } else {
                    return Err(SubscriptionError::LicenseKeyMismatch);
                }
            }
            ActivateDevice(device) => {
                activate_device(state, state.policy_terms(&policies)?, &leases, device, at)?
            }
            DeactivateDevice { device_id, reason } => {
                state.active_device(device_id)?;
                if reason == DeactivationReason::Client {
                    ensure_churn_allowed(state, state.policy_terms(&policies)?, at)?;
                }
                vec![E::DeviceDeactivated {
                    device_id,
                    reason,
                    active_devices: state.active_device_count() - 1,
                    at,
                }]
            }
            DeactivateDeviceByFingerprint {
                fingerprint_hash,
                reason,
            } => {
                let device = state
                    .active_device_with_fingerprint(&fingerprint_hash)
                    .ok_or(SubscriptionError::DeviceNotActivated)?;
                if reason == DeactivationReason::Client {
                    ensure_churn_allowed(state, state.policy_terms(&policies)?, at)?;
                }
                vec![E::DeviceDeactivated {
                    device_id: device.id,
                    reason,
                    active_devices: state.active_device_count() - 1,
                    at,
                }]
            }
            UpdateDevice {
                device_id,
                name,
                notes,
            } => {
                let device = state
                    .device(device_id)
                    .ok_or(SubscriptionError::DeviceNotFound(device_id))?;
                check_optional_text(name.as_deref())?;
                check_optional_text(notes.as_deref())?;
                let name = name.filter(|n| Some(n) != device.info.name.as_ref());
                let notes = notes.filter(|n| Some(n) != device.notes.as_ref());
                if name.is_none() && notes.is_none() {
                    vec![]
                } else {
                    vec![E::DeviceUpdated {
                        device_id,
                        name,
                        notes,
                        at,
                    }]
                }
            }
            IssueLicenseToken {
                fingerprint_hash,
                token_id,
                expires_at,
            } => {
                let policy = state.policy_terms(&policies)?;
                state.ensure_usable(at, policy)?;
                let device = state
                    .active_device_with_fingerprint(&fingerprint_hash)
                    .ok_or(SubscriptionError::DeviceNotActivated)?;
                if device.lease_dead_at(policy, &leases, at) {
                    return Err(SubscriptionError::HeartbeatDead);
                }
                let lease_end = device.lease_deadline(policy, &leases);
                vec![token_issued(
                    state, policy, device, token_id, expires_at, lease_end, at,
                )]
            }
            VerifyLicenseToken { presented } => {
                ensure_token_stands(state, &presented)?;
                vec![]
            }
            FollowPolicy {
                policy_id,
                overrides,
                features,
            } => follow_policy(state, &policies, policy_id, overrides, features, at)?,
            RecordDeadlines { reminder_days } => {
                record_deadlines(state, state.policy_terms(&policies)?, reminder_days, at)
            }
            AttachEntitlements { codes } => {
                let mut features = state.features.clone();
                features.extend(codes.iter().map(|c| c.as_str().to_owned()));
                own_features(state, features, at)
            }
            DetachEntitlements { codes } => {
                let features = state
                    .features
                    .iter()
                    .filter(|f| !codes.iter().any(|c| c.as_str() == f.as_str()))
                    .cloned()
                    .collect();
                own_features(state, features, at)
            }
            ExpireLeases => {
                let mut draft = Draft::new(state);
                lease::expire_dead_leases(&mut draft, state.policy_terms(&policies)?, &leases, at);
                draft.events
            }
            Heartbeat {
                presented,
                borrow_until,
            } => {
                let policy = state.policy_terms(&policies)?;
                state.ensure_usable(at, policy)?;
                lease::heartbeat(state, policy, &leases, &presented, borrow_until, at)?
            }
            CheckIn { presented } => check_in(state, &policies, &leases, &presented, at)?,
        })
    }
}

/// A token for `device`, until [`token_expiry`].
fn token_issued(
    state: &SubscriptionState,
    policy: Option<&PolicyTerms>,
    device: &Device,
    token_id: uuid::Uuid,
    expires_at: DateTime<Utc>,
    lease_end: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> SubscriptionEvent {
    let license_end = state.grace_until_under(policy).or(state.expires_at);
    let trial_end = state
        .trial_ends_at
        .filter(|_| state.status == Status::Trialing);
    SubscriptionEvent::LicenseTokenIssued {
        device_id: device.id,
        token_id,
        expires_at: token_expiry(expires_at, policy, license_end, trial_end, lease_end, at),
        at,
    }
}

/// When a token issued at `at` expires: after `requested` (or its policy's `token_ttl`),
/// but never after the license it stands for (`license_end`: its grace, else its period),
/// nor the trial it is in (`trial_end`), nor the device's lease (`lease_end`, which a
/// borrow extends).
pub fn token_expiry(
    requested: DateTime<Utc>,
    policy: Option<&PolicyTerms>,
    license_end: Option<DateTime<Utc>>,
    trial_end: Option<DateTime<Utc>>,
    lease_end: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> DateTime<Utc> {
    let expires_at = policy
        .and_then(|terms| terms.settings.token_ttl.as_ref())
        .and_then(|ttl| ttl.after(at))
        .unwrap_or(requested);
    [license_end, trial_end, lease_end]
        .into_iter()
        .flatten()
        .fold(expires_at, DateTime::min)
}

/// A presented token stands while the key it was issued under is current and the very
/// device it names is active: a fingerprint activated again is a new device, and the old
/// token died with the old one.
fn ensure_token_stands(
    state: &SubscriptionState,
    presented: &PresentedToken,
) -> Result<(), SubscriptionError> {
    ensure_key_admits(state, presented)?;
    match state.device(presented.device_id) {
        Some(device) if device.active => Ok(()),
        _ => Err(SubscriptionError::DeviceNotActivated),
    }
}

/// The new key, and with `deactivate_devices` every active device deactivated after it.
fn regenerate_license_key(
    state: &SubscriptionState,
    key_hash: Sha256Hex,
    key_prefix: String,
    deactivate_devices: bool,
    at: DateTime<Utc>,
) -> Vec<SubscriptionEvent> {
    let regenerated = SubscriptionEvent::LicenseKeyRegenerated {
        previous_key_hash: state.license_key.as_ref().map(|k| k.key_hash.clone()),
        key_hash,
        key_prefix,
        at,
    };
    let active: Vec<DeviceId> = if deactivate_devices {
        state.active_devices().map(|d| d.id).collect()
    } else {
        Vec::new()
    };
    let remaining = active.len() as u32;
    std::iter::once(regenerated)
        .chain(active.into_iter().enumerate().map(|(i, device_id)| {
            SubscriptionEvent::DeviceDeactivated {
                device_id,
                reason: DeactivationReason::Admin,
                active_devices: remaining - 1 - i as u32,
                at,
            }
        }))
        .collect()
}

fn create(
    new: NewSubscription,
    policies: &PolicyBook,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    let new = match new.policy_id {
        None => NewSubscription {
            overrides: vec![],
            ..new
        },
        Some(id) => {
            let terms = policies.get(id).ok_or(SubscriptionError::PolicyNotFound)?;
            if terms.archived {
                return Err(SubscriptionError::PolicyArchived);
            }
            following(new, terms)
        }
    };
    let policy_version = new
        .policy_id
        .and_then(|id| policies.get(id))
        .map(|terms| terms.version);
    check_device_limit(new.max_devices)?;
    check_instants(&[Some(new.starts_at), new.expires_at, new.trial_ends_at])?;
    check_period(new.starts_at, new.expires_at, new.trial_ends_at)?;
    check_text(&new.customer_name)?;
    check_optional_text(new.organization.as_deref())?;
    let status = if new.trial_ends_at.is_some() {
        Status::Trialing
    } else {
        Status::Active
    };
    Ok(vec![
        SubscriptionEvent::SubscriptionCreated {
            subscription_id: new.subscription_id,
            customer_email: new.customer_email,
            customer_name: new.customer_name,
            organization: new.organization,
            plan: new.plan,
            status,
            starts_at: new.starts_at,
            expires_at: new.expires_at,
            trial_ends_at: new.trial_ends_at,
            max_devices: new.max_devices,
            features: new.features,
            metadata: new.metadata,
            at,
            policy_id: new.policy_id,
            policy_version,
            overrides: new.overrides,
        },
        SubscriptionEvent::LicenseKeyIssued {
            key_hash: new.key_hash,
            key_prefix: new.key_prefix,
            at,
        },
    ])
}

/// A new subscription to follow `terms`: what it does not override comes from the policy.
/// A period that runs from the first activation has no end until then.
fn following(new: NewSubscription, terms: &PolicyTerms) -> NewSubscription {
    let settings = &terms.settings;
    let mut overrides = new.overrides.clone();
    overrides.sort();
    overrides.dedup();
    let own = |field| overrides.contains(&field);
    let max_devices = if own(Override::MaxDevices) {
        new.max_devices
    } else {
        settings.max_devices
    };
    let expires_at = match (own(Override::ExpiresAt), settings.expiration_basis) {
        (true, _) => new.expires_at,
        (false, ExpirationBasis::FromCreation) => settings
            .duration
            .as_ref()
            .and_then(|d| d.after(new.starts_at)),
        (false, ExpirationBasis::FromFirstActivation) => None,
    };
    let trial_ends_at = if own(Override::TrialEndsAt) {
        new.trial_ends_at
    } else {
        settings
            .trial_duration
            .as_ref()
            .and_then(|d| d.after(new.starts_at))
    };
    NewSubscription {
        plan: Plan::from(&terms.code),
        max_devices,
        expires_at,
        trial_ends_at,
        overrides,
        ..new
    }
}

/// Follows another policy, or none. A limit that falls below the active devices is refused
/// as an explicit lower limit would be.
fn follow_policy(
    state: &SubscriptionState,
    policies: &PolicyBook,
    policy_id: Option<PolicyId>,
    mut overrides: Vec<Override>,
    features: Option<Vec<String>>,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    state.ensure_not_canceled()?;
    let terms = match policy_id {
        None => None,
        Some(id) => {
            let terms = policies.get(id).ok_or(SubscriptionError::PolicyNotFound)?;
            if terms.archived && state.policy_id != Some(id) {
                return Err(SubscriptionError::PolicyArchived);
            }
            Some(terms.as_ref())
        }
    };
    overrides.sort();
    overrides.dedup();
    if terms.is_none() {
        overrides.clear();
    }
    let current_limit = state.max_devices_under(state.policy_terms(policies).ok().flatten());
    let max_devices = effective_max_devices(current_limit, &overrides, terms);
    let active = state.active_device_count();
    if active > max_devices {
        return Err(SubscriptionError::DeviceLimitBelowActiveCount {
            active,
            requested: max_devices,
            must_deactivate: active - max_devices,
        });
    }
    let features = features.map_or_else(
        || state.features.clone(),
        |mut features| {
            features.sort();
            features.dedup();
            features
        },
    );
    let plan = terms.map_or_else(|| state.plan.clone(), |t| Plan::from(&t.code));
    // The limit in force, not the stored one: a follower's own value lies unused while its
    // policy sets the limit, and a policy change does not rewrite it.
    let unchanged = policy_id == state.policy_id
        && overrides == state.overrides
        && features == state.features
        && max_devices == current_limit;
    if unchanged {
        return Ok(vec![]);
    }
    Ok(vec![SubscriptionEvent::SubscriptionPolicyChanged {
        previous_policy_id: state.policy_id,
        policy_id,
        policy_version: terms.map(|t| t.version),
        plan,
        max_devices,
        features,
        overrides,
        at,
    }])
}

/// The deadline notices due at `now` and not yet recorded. Only a subscription that would
/// otherwise be usable has deadlines: a suspended or canceled one expires silently.
fn record_deadlines(
    state: &SubscriptionState,
    policy: Option<&PolicyTerms>,
    mut reminder_days: Vec<u32>,
    now: DateTime<Utc>,
) -> Vec<SubscriptionEvent> {
    use SubscriptionEvent as E;
    let usable = matches!(
        state.status,
        Status::Trialing | Status::Active | Status::PastDue
    );
    let trial = state.status == Status::Trialing && state.trial_ends_at.is_some();
    let deadline = if trial {
        // A trial ends with its trial or its period, whichever comes first.
        match (state.trial_ends_at, state.expires_at) {
            (Some(trial_end), Some(end)) if end < trial_end => Some((end, false)),
            (trial_end, _) => trial_end.map(|end| (end, true)),
        }
    } else {
        state.expires_at.map(|end| (end, false))
    };
    let Some((ends_at, trial)) = deadline.filter(|_| usable) else {
        return vec![];
    };
    let notices = DeadlineNotices::for_deadline(state.deadline_notices.as_ref(), ends_at);
    let grace_until = (!trial).then(|| state.grace_until_under(policy)).flatten();
    let mut events = Vec::new();
    if now < ends_at {
        // The nearest reminder that has come, unless one as near was recorded already.
        reminder_days.sort_unstable();
        // A reminder that would start before the calendar does has simply come.
        let due = reminder_days.into_iter().find(|days| {
            ends_at
                .checked_sub_signed(chrono::TimeDelta::days(i64::from(*days)))
                .is_none_or(|start| start <= now)
                && notices.reminded_days.is_none_or(|done| *days < done)
        });
        if let Some(days_before) = due {
            events.push(E::SubscriptionExpiringSoon {
                expires_at: ends_at,
                days_before,
                at: now,
            });
        }
        return events;
    }
    if !notices.expired {
        events.push(E::SubscriptionExpired {
            expires_at: ends_at,
            trial,
            grace_until,
            at: now,
        });
    }
    if let Some(grace_until) = grace_until.filter(|end| *end <= now) {
        if !notices.grace_ended {
            events.push(E::SubscriptionGraceEnded {
                expires_at: ends_at,
                grace_until,
                at: now,
            });
        }
    }
    events
}

/// Its own entitlements become `features` (sorted, each once).
fn own_features(
    state: &SubscriptionState,
    mut features: Vec<String>,
    at: DateTime<Utc>,
) -> Vec<SubscriptionEvent> {
    features.sort();
    features.dedup();
    // Its own as created or updated may be in any order: the same codes are no change.
    let mut current = state.features.clone();
    current.sort();
    current.dedup();
    if features == current {
        return vec![];
    }
    vec![SubscriptionEvent::SubscriptionDetailsUpdated {
        customer_email: None,
        customer_name: None,
        organization: None,
        features: Some(features),
        metadata: None,
        at,
    }]
}

fn change_device_limit(
    state: &SubscriptionState,
    policy: Option<&PolicyTerms>,
    max_devices: Option<u32>,
    mut deactivate_device_ids: Vec<DeviceId>,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    state.ensure_not_canceled()?;
    let current = state.max_devices_under(policy);
    let max_devices = max_devices.unwrap_or(current);
    check_device_limit(max_devices)?;
    deactivate_device_ids.sort();
    deactivate_device_ids.dedup();
    for id in &deactivate_device_ids {
        state.active_device(*id)?;
    }
    let active = state.active_device_count();
    let remaining = active - deactivate_device_ids.len() as u32;
    if remaining > max_devices {
        return Err(SubscriptionError::DeviceLimitBelowActiveCount {
            active,
            requested: max_devices,
            must_deactivate: active - max_devices,
        });
    }
    let mut events: Vec<SubscriptionEvent> = deactivate_device_ids
        .into_iter()
        .zip((remaining..active).rev())
        .map(
            |(device_id, active_devices)| SubscriptionEvent::DeviceDeactivated {
                device_id,
                reason: DeactivationReason::LimitReduced,
                active_devices,
                at,
            },
        )
        .collect();
    if max_devices != current {
        events.push(SubscriptionEvent::SubscriptionDeviceLimitChanged {
            previous_max_devices: current,
            max_devices,
            at,
        });
    }
    Ok(events)
}

fn change_period(
    state: &SubscriptionState,
    period: PeriodChange,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    state.ensure_not_canceled()?;
    // Only what this command sets: an old value out of range stays as it was.
    check_instants(&[
        period.starts_at,
        period.expires_at.flatten(),
        period.trial_ends_at.flatten(),
    ])?;
    let starts_at = period.starts_at.unwrap_or(state.starts_at);
    let expires_at = period.expires_at.unwrap_or(state.expires_at);
    let trial_ends_at = period.trial_ends_at.unwrap_or(state.trial_ends_at);
    check_period(starts_at, expires_at, trial_ends_at)?;
    let unchanged = starts_at == state.starts_at
        && expires_at == state.expires_at
        && trial_ends_at == state.trial_ends_at;
    if unchanged {
        return Ok(vec![]);
    }
    Ok(vec![SubscriptionEvent::SubscriptionPeriodChanged {
        starts_at,
        expires_at,
        trial_ends_at,
        at,
    }])
}

fn update_details(
    state: &SubscriptionState,
    change: DetailsChange,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    if let Some(name) = &change.customer_name {
        check_text(name)?;
    }
    if let Some(organization) = &change.organization {
        check_optional_text(organization.as_deref())?;
    }
    let customer_email = change.customer_email.filter(|v| v != &state.customer_email);
    let customer_name = change.customer_name.filter(|v| v != &state.customer_name);
    let organization = change.organization.filter(|v| v != &state.organization);
    let features = change.features.filter(|v| v != &state.features);
    let metadata = change.metadata.filter(|v| v != &state.metadata);
    let nothing_changed = customer_email.is_none()
        && customer_name.is_none()
        && organization.is_none()
        && features.is_none()
        && metadata.is_none();
    if nothing_changed {
        return Ok(vec![]);
    }
    Ok(vec![SubscriptionEvent::SubscriptionDetailsUpdated {
        customer_email,
        customer_name,
        organization,
        features,
        metadata,
        at,
    }])
}

/// Activates a new fingerprint when a seat is free (expiring dead leases first, so that a
/// dead seat never blocks a live device). An active fingerprint changes nothing, unless its
/// lease has died: then the key revives it, seat permitting.
fn activate_device(
    state: &SubscriptionState,
    policy: Option<&PolicyTerms>,
    leases: &LeaseRenewals,
    device: DeviceDetails,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    state.ensure_usable(at, policy)?;
    let max_devices = state.max_devices_under(policy);
    let model = license_model(policy);
    let lease_end = policy
        .and_then(|terms| terms.settings.lease_duration())
        .and_then(|duration| duration.after(at));
    let leased = policy.is_some_and(|terms| terms.settings.leases());
    let mut draft = Draft::new(state);
    if let Some(known) = state.active_device_with_fingerprint(&device.fingerprint_hash) {
        if !known.lease_dead_at(policy, leases, at) {
            return Ok(vec![]);
        }
        let device_id = known.id;
        lease::expire_dead_leases(&mut draft, policy, leases, at);
        // Culled just now (`heartbeat_cull: deactivate`): it comes back as a new device.
        if draft.state().device(device_id).is_some_and(|d| d.active) {
            // Kept dead on a node-locked pool, it still holds its seat.
            if !draft.holds_seat(device_id, model) {
                ensure_seat_free(&mut draft, policy, leases, max_devices, at)?;
            }
            let active_devices = draft.active_after_reviving(device_id);
            draft.push(model, |seats_in_use| SubscriptionEvent::DeviceRevived {
                device_id,
                lease: LeaseGrant {
                    expires_at: lease_end,
                    seats_in_use,
                },
                active_devices,
                at,
            });
            return Ok(draft.events);
        }
    }
    ensure_seat_free(&mut draft, policy, leases, max_devices, at)?;
    for text in device.info.fields() {
        check_optional_text(text)?;
    }
    if let Some(started) = first_activation_period(state, policy, at) {
        draft.push_event(started);
    }
    let active_devices = draft.state().active_device_count() + 1;
    // A fingerprint that comes back after a deactivation is a new device with a new id, so
    // that the tokens of the deactivated one stay dead (the old device keeps its history).
    draft.push(model, |seats_in_use| SubscriptionEvent::DeviceActivated {
        device_id: device.device_id,
        fingerprint_hash: device.fingerprint_hash.clone(),
        info: device.info.clone(),
        active_devices,
        at,
        policy_version: policy.map(|terms| terms.version),
        lease: leased.then_some(LeaseGrant {
            expires_at: lease_end,
            seats_in_use,
        }),
    });
    Ok(draft.events)
}

/// The device the token names gives its seat back (see `SubscriptionAction::CheckIn`).
/// Checking in a device that no longer holds a seat changes nothing.
fn check_in(
    state: &SubscriptionState,
    policies: &PolicyBook,
    leases: &LeaseRenewals,
    presented: &PresentedToken,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    ensure_key_admits(state, presented)?;
    let policy = state.policy_terms(policies)?;
    let Some(device) = state.device(presented.device_id).filter(|d| d.active) else {
        return Ok(vec![]);
    };
    let reason = if license_model(policy) == LicenseModel::Floating {
        if device.lease_dead_at(policy, leases, at) {
            return Ok(vec![]);
        }
        DeactivationReason::CheckedIn
    } else {
        ensure_churn_allowed(state, policy, at)?;
        DeactivationReason::Client
    };
    Ok(vec![SubscriptionEvent::DeviceDeactivated {
        device_id: device.id,
        reason,
        active_devices: state.active_device_count() - 1,
        at,
    }])
}

/// The period a policy starts at the first activation, unless the subscription has an end
/// of its own (or has had a device before).
fn first_activation_period(
    state: &SubscriptionState,
    policy: Option<&PolicyTerms>,
    at: DateTime<Utc>,
) -> Option<SubscriptionEvent> {
    let terms = policy?;
    let waiting = terms.settings.expiration_basis == ExpirationBasis::FromFirstActivation
        && state.expires_at.is_none()
        && state.devices.is_empty()
        && !state.overrides.contains(&Override::ExpiresAt);
    if !waiting {
        return None;
    }
    let expires_at = terms.settings.duration.as_ref()?.after(at)?;
    Some(SubscriptionEvent::SubscriptionPeriodStarted {
        expires_at,
        policy_version: terms.version,
        at,
    })
}

fn check_device_limit(max_devices: u32) -> Result<(), SubscriptionError> {
    if (1..=MAX_DEVICE_LIMIT).contains(&max_devices) {
        Ok(())
    } else {
        Err(SubscriptionError::InvalidDeviceLimit {
            max: MAX_DEVICE_LIMIT,
        })
    }
}

fn check_period(
    starts_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    trial_ends_at: Option<DateTime<Utc>>,
) -> Result<(), SubscriptionError> {
    let after_start = |end: Option<DateTime<Utc>>| end.is_none_or(|end| end > starts_at);
    if after_start(expires_at) && after_start(trial_ends_at) {
        Ok(())
    } else {
        Err(SubscriptionError::InvalidPeriod)
    }
}

fn check_instants(instants: &[Option<DateTime<Utc>>]) -> Result<(), SubscriptionError> {
    if instants
        .iter()
        .flatten()
        .all(|at| is_supported_instant(*at))
    {
        Ok(())
    } else {
        Err(SubscriptionError::InstantOutOfRange)
    }
}

fn check_text(text: &str) -> Result<(), SubscriptionError> {
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT_LEN {
        Err(SubscriptionError::InvalidText)
    } else {
        Ok(())
    }
}

fn check_optional_text(text: Option<&str>) -> Result<(), SubscriptionError> {
    text.map_or(Ok(()), check_text)
}
