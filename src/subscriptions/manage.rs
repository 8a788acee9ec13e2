//! What admins do to a subscription: create, update, delete, regenerate its key, and read
//! it as it is or as it was.

use chrono::{DateTime, Utc};
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::subscription::{DetailsChange, NewSubscription, Override, PeriodChange};
use flowlytix_aggregates::{
    Code, DeviceId, Email, Plan, PolicyId, ProductId, Subscription, SubscriptionAction,
    SubscriptionError, SubscriptionId,
};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::SubscriptionAdmin;
use crate::crypto::{new_license_key, sha256_hex};
use crate::store::{Committed, EventMetadata, ExecuteError};

pub const MAX_FEATURES: usize = 100;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The input breaks a rule that holds before any command runs (formats, sizes).
    #[error("{0}")]
    Invalid(String),
    #[error("no such subscription")]
    NotFound,
    #[error("no such device")]
    DeviceNotFound,
    #[error(transparent)]
    Command(#[from] ExecuteError<SubscriptionError>),
    #[error(transparent)]
    Read(#[from] sqlx::Error),
}

/// `POST /api/v1/subscriptions/{id}/license-key`; the body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegenerateKeyRequest {
    /// Also deactivate every active device, so each must activate again with the new key.
    #[serde(default)]
    pub deactivate_devices: bool,
}

/// A new subscription: of its own (`plan` and `max_devices` required), or following a
/// `policy`, which then gives the plan, the device limit, the period, the trial and the
/// entitlements; `max_devices`, `expires_at` and `trial_ends_at` sent with a policy
/// override it for this one subscription, and `features` add to its entitlements.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionRequest {
    pub customer_email: String,
    pub customer_name: String,
    pub organization: Option<String>,
    /// A policy id, or `<product code>/<policy code>`.
    #[schema(max_length = 129)]
    pub policy: Option<String>,
    /// Required without a policy; with one it is the policy's code (and may be omitted).
    pub plan: Option<String>,
    /// Required without a policy.
    pub max_devices: Option<u32>,
    /// Defaults to now.
    pub starts_at: Option<DateTime<Utc>>,
    /// Omit for a perpetual license (or, with a policy, for the policy's duration).
    pub expires_at: Option<DateTime<Utc>>,
    /// When set, the subscription is `trialing` until then.
    pub trial_ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// Every field is optional; only those sent change, all in one atomic step. For
/// `expires_at`, `trial_ends_at` and `organization`, an explicit `null` clears the value.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscriptionRequest {
    /// Follow this policy (an id or `<product code>/<policy code>`), every field from it;
    /// `null`: follow none, keeping the values in force as its own. Fields sent with it
    /// override the new policy.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 129)]
    pub policy: Option<Option<String>>,
    pub plan: Option<String>,
    pub max_devices: Option<u32>,
    /// Devices to deactivate so that a lower `max_devices` fits.
    #[serde(default)]
    pub deactivate_device_ids: Vec<Uuid>,
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub trial_ends_at: Option<Option<DateTime<Utc>>>,
    /// `active` (resume), `suspended`, `past_due` or `canceled`.
    pub status: Option<StatusChange>,
    /// Why, for a suspension or cancellation (422 with any other change of status, or none).
    pub reason: Option<String>,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub organization: Option<Option<String>>,
    pub features: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    Active,
    Suspended,
    PastDue,
    Canceled,
}

/// Tells "absent" (outer `None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A new subscription, and its license key: the only time the full key exists outside the
/// customer's hands.
pub struct Created {
    pub committed: Committed<Subscription>,
    pub license_key: LicenseKey,
}

impl SubscriptionAdmin {
    pub async fn create(
        &self,
        request: CreateSubscriptionRequest,
        metadata: EventMetadata,
    ) -> Result<Created, ManageError> {
        self.create_with_id(SubscriptionId(Uuid::new_v4()), request, metadata)
            .await
    }

    /// `create` with the id chosen by the caller: a retry under one `Idempotency-Key` uses the
    /// same id, so the event store refuses a second creation (see `IdempotentRequest`).
    pub async fn create_with_id(
        &self,
        subscription_id: SubscriptionId,
        request: CreateSubscriptionRequest,
        metadata: EventMetadata,
    ) -> Result<Created, ManageError> {
        check_features(&request.features)?;
        check_metadata(&request.metadata)?;
        let key = new_license_key();
        let policy_id = request.policy.as_deref().map(policy_id).transpose()?;
        let (plan, max_devices, overrides) = match policy_id {
            None => (
                parse_plan(request.plan.as_deref().ok_or_else(|| {
                    ManageError::Invalid("plan: required without a policy".into())
                })?)?,
                request.max_devices.ok_or_else(|| {
                    ManageError::Invalid("max_devices: required without a policy".into())
                })?,
                vec![],
            ),
            Some(id) => {
                let policy_code = self
                    .commands
                    .policies()
                    .book()
                    .get(id)
                    .map(|t| t.code.clone());
                // The plan of a follower is its policy's code: another one would be dropped.
                if let (Some(plan), Some(code)) = (&request.plan, &policy_code) {
                    if plan != code.as_str() {
                        return Err(ManageError::Invalid(
                            "plan: with a policy, the plan is the policy's code".into(),
                        ));
                    }
                }
                let plan =
                    policy_code.map_or_else(|| parse_plan("custom"), |c| Ok(Plan::from(&c)))?;
                let overrides = [
                    (request.max_devices.is_some(), Override::MaxDevices),
                    (request.expires_at.is_some(), Override::ExpiresAt),
                    (request.trial_ends_at.is_some(), Override::TrialEndsAt),
                ]
                .into_iter()
                .filter_map(|(sent, field)| sent.then_some(field))
                .collect();
                (plan, request.max_devices.unwrap_or(1), overrides)
            }
        };
        let new = NewSubscription {
            subscription_id,
            customer_email: parse_email(&request.customer_email)?,
            customer_name: request.customer_name,
            organization: request.organization,
            plan,
            starts_at: request.starts_at.unwrap_or(metadata.occurred_at),
            expires_at: request.expires_at,
            trial_ends_at: request.trial_ends_at,
            max_devices,
            features: request.features,
            metadata: request.metadata,
            key_hash: sha256_hex(key.expose()),
            key_prefix: key.display_prefix(),
            policy_id,
            overrides,
        };
        let committed = self
            .commands
            .run(
                subscription_id,
                vec![SubscriptionAction::CreateSubscription(new)],
                metadata,
                None,
            )
            .await?;
        Ok(Created {
            committed,
            license_key: key,
        })
    }

    /// Applies a PUT: every change in one atomic step. An unknown subscription is not found and
    /// a deleted one is gone (410), also when the body changes nothing.
    pub async fn update(
        &self,
        id: SubscriptionId,
        request: UpdateSubscriptionRequest,
        expected_version: Option<u64>,
        metadata: EventMetadata,
    ) -> Result<Committed<Subscription>, ManageError> {
        let actions = update_actions(request)?;
        let committed = self
            .commands
            .run(id, actions, metadata, expected_version)
            .await?;
        // With no action (`{}`), no command reached the aggregate to refuse it; nothing was
        // written, and the state loaded under the lock says whether it exists.
        match committed.aggregate.state() {
            None => Err(ManageError::NotFound),
            Some(state) if state.deleted_at.is_some() => {
                Err(ExecuteError::Domain(SubscriptionError::Deleted).into())
            }
            Some(_) => Ok(committed),
        }
    }

    /// Deletes a subscription: it leaves every list and never validates again; its events stay.
    pub async fn delete(
        &self,
        id: SubscriptionId,
        expected_version: Option<u64>,
        metadata: EventMetadata,
    ) -> Result<Committed<Subscription>, ManageError> {
        Ok(self
            .commands
            .run(
                id,
                vec![SubscriptionAction::DeleteSubscription],
                metadata,
                expected_version,
            )
            .await?)
    }

    /// Issues a new license key because the old one leaked: the old key stops working at
    /// once, and so do the license tokens issued under it. Devices stay activated unless
    /// the request asks for them to be deactivated too.
    pub async fn regenerate_license_key(
        &self,
        id: SubscriptionId,
        request: RegenerateKeyRequest,
        metadata: EventMetadata,
    ) -> Result<Created, ManageError> {
        let key = new_license_key();
        let action = SubscriptionAction::RegenerateLicenseKey {
            key_hash: sha256_hex(key.expose()),
            key_prefix: key.display_prefix(),
            deactivate_devices: request.deactivate_devices,
        };
        let committed = self.commands.run(id, vec![action], metadata, None).await?;
        Ok(Created {
            committed,
            license_key: key,
        })
    }

    /// Adds entitlements of its own (on top of its policy's), or removes them.
    pub async fn change_entitlements(
        &self,
        id: SubscriptionId,
        codes: Vec<Code>,
        attach: bool,
        metadata: EventMetadata,
    ) -> Result<Committed<Subscription>, ManageError> {
        let action = if attach {
            SubscriptionAction::AttachEntitlements { codes }
        } else {
            SubscriptionAction::DetachEntitlements { codes }
        };
        Ok(self.commands.run(id, vec![action], metadata, None).await?)
    }

    /// A live subscription and its version, now or as it was at `as_of`.
    pub async fn subscription(
        &self,
        id: SubscriptionId,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<(Subscription, u64), ManageError> {
        let (subscription, version) = match as_of {
            None => self.commands.load(id).await?,
            Some(instant) => self.commands.load_as_of(id, instant).await?,
        };
        if subscription.live().is_none() {
            return Err(ManageError::NotFound);
        }
        Ok((subscription, version))
    }
}

/// A policy named by its id or by `<product code>/<policy code>` (ids derive from codes).
pub fn policy_id(raw: &str) -> Result<PolicyId, ManageError> {
    if let Ok(id) = Uuid::parse_str(raw) {
        return Ok(PolicyId(id));
    }
    let invalid =
        || ManageError::Invalid("policy: a policy id or <product code>/<policy code>".into());
    let (product, policy) = raw.split_once('/').ok_or_else(invalid)?;
    let product = Code::parse(product).map_err(|_| invalid())?;
    let policy = Code::parse(policy).map_err(|_| invalid())?;
    Ok(PolicyId::for_code(ProductId::for_code(&product), &policy))
}

/// Entitlement codes from a request.
pub fn entitlement_codes(raw: &[String]) -> Result<Vec<Code>, ManageError> {
    if raw.is_empty() || raw.len() > MAX_FEATURES {
        return Err(ManageError::Invalid(format!(
            "codes: 1 to {MAX_FEATURES} entitlement codes"
        )));
    }
    raw.iter()
        .map(|code| Code::parse(code).map_err(|e| ManageError::Invalid(format!("codes: {e}"))))
        .collect()
}

fn parse_email(raw: &str) -> Result<Email, ManageError> {
    Email::parse(raw).map_err(|e| ManageError::Invalid(format!("customer_email: {e}")))
}

fn parse_plan(raw: &str) -> Result<Plan, ManageError> {
    Plan::parse(raw).map_err(|e| ManageError::Invalid(format!("plan: {e}")))
}

fn check_features(features: &[String]) -> Result<(), ManageError> {
    let valid = features.len() <= MAX_FEATURES && features.iter().all(|f| Plan::parse(f).is_ok());
    if valid {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!(
            "features: at most {MAX_FEATURES}, each 1 to 64 characters of a-z, 0-9, '-' and '_'"
        )))
    }
}

fn check_metadata(metadata: &Map<String, Value>) -> Result<(), ManageError> {
    if serde_json::to_vec(metadata).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
        return Err(ManageError::Invalid(format!(
            "metadata: at most {MAX_METADATA_BYTES} bytes of JSON"
        )));
    }
    Ok(())
}

/// Turns a PUT body into actions. Unchanged fields produce no events (the aggregate drops
/// no-ops); fields not sent keep their current values, filled in by the aggregate under
/// the same lock as the change, so concurrent updates of different fields never undo
/// each other.
fn update_actions(
    request: UpdateSubscriptionRequest,
) -> Result<Vec<SubscriptionAction>, ManageError> {
    let mut actions = Vec::new();
    // The policy first: what else the request sets then overrides the new policy.
    if let Some(policy) = request.policy {
        actions.push(SubscriptionAction::FollowPolicy {
            policy_id: policy.as_deref().map(policy_id).transpose()?,
            overrides: vec![],
            features: None,
        });
    }
    let details = DetailsChange {
        customer_email: request
            .customer_email
            .as_deref()
            .map(parse_email)
            .transpose()?,
        customer_name: request.customer_name,
        organization: request.organization,
        features: request
            .features
            .map(|f| check_features(&f).map(|_| f))
            .transpose()?,
        metadata: request
            .metadata
            .map(|m| check_metadata(&m).map(|_| m))
            .transpose()?,
    };
    if details != DetailsChange::default() {
        actions.push(SubscriptionAction::UpdateDetails(details));
    }
    if let Some(plan) = request.plan {
        actions.push(SubscriptionAction::ChangePlan {
            plan: parse_plan(&plan)?,
        });
    }
    if request.max_devices.is_some() || !request.deactivate_device_ids.is_empty() {
        actions.push(SubscriptionAction::ChangeDeviceLimit {
            max_devices: request.max_devices,
            deactivate_device_ids: request
                .deactivate_device_ids
                .into_iter()
                .map(DeviceId)
                .collect(),
        });
    }
    if request.starts_at.is_some()
        || request.expires_at.is_some()
        || request.trial_ends_at.is_some()
    {
        actions.push(SubscriptionAction::ChangePeriod(PeriodChange {
            starts_at: request.starts_at,
            expires_at: request.expires_at,
            trial_ends_at: request.trial_ends_at,
        }));
    }
    // A reason is recorded with a suspension or a cancellation; sent with anything else it
    // would be dropped unseen.
    let takes_reason = matches!(
        request.status,
        Some(StatusChange::Suspended | StatusChange::Canceled)
    );
    if request.reason.is_some() && !takes_reason {
        return Err(ManageError::Invalid(
            "reason: only with status suspended or canceled".into(),
        ));
    }
    // Status last, so that e.g. a renewal and a resume in one request both apply.
    match request.status {
        None => {}
        Some(StatusChange::Active) => actions.push(SubscriptionAction::ResumeSubscription),
        Some(StatusChange::Suspended) => actions.push(SubscriptionAction::SuspendSubscription {
            reason: request.reason,
        }),
        Some(StatusChange::PastDue) => actions.push(SubscriptionAction::MarkPastDue),
        Some(StatusChange::Canceled) => actions.push(SubscriptionAction::CancelSubscription {
            reason: request.reason,
        }),
    }
    Ok(actions)
}
