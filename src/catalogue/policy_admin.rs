//! What admins do to policies: create, change, attach and detach entitlements, archive and
//! unarchive (never delete), read. Every command goes through [`Policies::run`], so that
//! this instance's validation sees the change at once.

use flowlytix_aggregates::policy::{
    ExpirationBasis, ExpirationStrategy, HeartbeatCull, LicenseModel, PolicyChange,
};
use flowlytix_aggregates::{
    Code, IsoDuration, Policy, PolicyCommand, PolicyId, PolicySettings, ProductId,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{parse_code, parse_codes, parse_duration, present, Catalogue, CatalogueFailure, Item};
use crate::store::{Committed, EventMetadata};

/// When a subscription's period starts counting (default `from_creation`).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    FromCreation,
    FromFirstActivation,
}

/// What happens once a period has run out (default `restrict`; `allow_grace` needs a
/// `grace_period`, which only it allows).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Restrict,
    AllowGrace,
}

impl From<Basis> for ExpirationBasis {
    fn from(basis: Basis) -> Self {
        match basis {
            Basis::FromCreation => Self::FromCreation,
            Basis::FromFirstActivation => Self::FromFirstActivation,
        }
    }
}

impl From<Strategy> for ExpirationStrategy {
    fn from(strategy: Strategy) -> Self {
        match strategy {
            Strategy::Restrict => Self::Restrict,
            Strategy::AllowGrace => Self::AllowGrace,
        }
    }
}

/// How seats are counted (default `node_locked`).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    NodeLocked,
    Floating,
}

/// What becomes of a device whose heartbeat stopped (default `deactivate`).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cull {
    Deactivate,
    Keep,
}

impl From<Model> for LicenseModel {
    fn from(model: Model) -> Self {
        match model {
            Model::NodeLocked => Self::NodeLocked,
            Model::Floating => Self::Floating,
        }
    }
}

impl From<Cull> for HeartbeatCull {
    fn from(cull: Cull) -> Self {
        match cull {
            Cull::Deactivate => Self::Deactivate,
            Cull::Keep => Self::Keep,
        }
    }
}

/// The policy fields of a later issue (check-out files), in the order the contract lists
/// them: refused with 422 `UNSUPPORTED_FIELD` rather than ignored, so that nobody believes
/// they took effect.
pub const LATER_FIELDS: [&str; 2] = ["max_checkouts", "checkout_window"];

/// The later-issue fields a body named (present, even as `null`); any of them is refused.
/// They are not in the document: the server does not accept them yet.
pub struct LaterFields {
    max_checkouts: Option<Option<Value>>,
    checkout_window: Option<Option<Value>>,
}

impl LaterFields {
    /// The first later-issue field the body named.
    fn first_present(&self) -> Option<&'static str> {
        let sent = [self.max_checkouts.is_some(), self.checkout_window.is_some()];
        LATER_FIELDS
            .iter()
            .zip(sent)
            .find_map(|(name, sent)| sent.then_some(*name))
    }

    fn refuse(&self) -> Result<(), CatalogueFailure> {
        match self.first_present() {
            Some(field) => Err(CatalogueFailure::UnsupportedField(field)),
            None => Ok(()),
        }
    }
}

// The later fields are listed in the structs one by one (serde's `flatten` would drop
// `deny_unknown_fields`), via a macro so that both requests name the same set.
macro_rules! with_later_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*
            #[serde(default, deserialize_with = "present")] #[schema(ignore)]
            max_checkouts: Option<Option<Value>>,
            #[serde(default, deserialize_with = "present")] #[schema(ignore)]
            checkout_window: Option<Option<Value>>,
        }

        impl $name {
            fn later_fields(&mut self) -> LaterFields {
                LaterFields {
                    max_checkouts: self.max_checkouts.take(),
                    checkout_window: self.checkout_window.take(),
                }
            }
        }
    };
}

with_later_fields! {
    /// Durations are ISO 8601 (`P1Y`, `P14D`, `PT10M`; at least one second). The fields
    /// of a later issue (`max_checkouts`, `checkout_window`) are refused with 422
    /// `UNSUPPORTED_FIELD`.
    #[derive(Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct CreatePolicyRequest {
        /// A live product's id.
        pub product_id: Uuid,
        pub name: String,
        /// A slug (`a-z`, `0-9`, `-`, `_`; 1 to 64), unique within the product, never
        /// changed; it is the `plan` of the subscriptions that follow the policy.
        pub code: String,
        pub max_devices: u32,
        /// A subscription's period; absent or null: perpetual.
        pub duration: Option<String>,
        pub trial_duration: Option<String>,
        pub expiration_basis: Option<Basis>,
        pub expiration_strategy: Option<Strategy>,
        /// Required with `expiration_strategy: allow_grace`, refused without it.
        pub grace_period: Option<String>,
        /// Overrides `LICENSE_TOKEN_TTL` for the subscriptions that follow the policy.
        pub token_ttl: Option<String>,
        /// Codes of existing entitlements (at most 100).
        pub entitlements: Option<Vec<String>>,
        pub metadata: Option<Map<String, Value>>,
        /// `floating`: `max_devices` counts live leases only.
        pub license_model: Option<Model>,
        /// Devices must send heartbeats; needs `heartbeat_duration`.
        pub require_heartbeat: Option<bool>,
        /// How long a lease lasts past a heartbeat (e.g. `PT10M`).
        pub heartbeat_duration: Option<String>,
        /// Needs `require_heartbeat`.
        pub heartbeat_cull: Option<Cull>,
        /// How long after its deadline a heartbeat may revive a dead device; needs
        /// `require_heartbeat`.
        pub resurrection_window: Option<String>,
        /// Client deactivations allowed per `deactivation_window` (both or neither).
        pub max_deactivations: Option<u32>,
        pub deactivation_window: Option<String>,
        /// How far ahead a heartbeat may borrow its seat; floating with heartbeats only.
        pub max_borrow: Option<String>,
    }
}

with_later_fields! {
    /// Only the fields sent change; `null` clears `duration`, `trial_duration`,
    /// `grace_period`, `token_ttl`, `heartbeat_duration`, `resurrection_window`,
    /// `max_deactivations`, `deactivation_window` and `max_borrow`. `entitlements` replaces the list (each must exist).
    /// `product_id` and `code` never change.
    #[derive(Deserialize, ToSchema, Default)]
    #[serde(deny_unknown_fields)]
    pub struct UpdatePolicyRequest {
        pub name: Option<String>,
        pub max_devices: Option<u32>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<String>)]
        pub duration: Option<Option<String>>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<String>)]
        pub trial_duration: Option<Option<String>>,
        pub expiration_basis: Option<Basis>,
        pub expiration_strategy: Option<Strategy>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<String>)]
        pub grace_period: Option<Option<String>>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<String>)]
        pub token_ttl: Option<Option<String>>,
        pub entitlements: Option<Vec<String>>,
        pub metadata: Option<Map<String, Value>>,
        pub license_model: Option<Model>,
        pub require_heartbeat: Option<bool>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<String>)]
        pub heartbeat_duration: Option<Option<String>>,
        pub heartbeat_cull: Option<Cull>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<String>)]
        pub resurrection_window: Option<Option<String>>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<u32>)]
        pub max_deactivations: Option<Option<u32>>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<String>)]
        pub deactivation_window: Option<Option<String>>,
        #[serde(default, deserialize_with = "present")]
        #[schema(value_type = Option<String>)]
        pub max_borrow: Option<Option<String>>,
    }
}

impl CreatePolicyRequest {
    /// A request with the required fields and none of the later-issue ones (the panel's
    /// form sets the optional fields after).
    pub fn new(product_id: Uuid, name: String, code: String, max_devices: u32) -> Self {
        Self {
            product_id,
            name,
            code,
            max_devices,
            duration: None,
            trial_duration: None,
            expiration_basis: None,
            expiration_strategy: None,
            grace_period: None,
            token_ttl: None,
            entitlements: None,
            metadata: None,
            license_model: None,
            require_heartbeat: None,
            heartbeat_duration: None,
            heartbeat_cull: None,
            resurrection_window: None,
            max_deactivations: None,
            deactivation_window: None,
            max_borrow: None,
            max_checkouts: None,
            checkout_window: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachEntitlementsRequest {
    /// Codes of existing entitlements; those already attached are left as they are.
    pub codes: Vec<String>,
}

fn optional_duration(
    field: &str,
    raw: Option<&str>,
) -> Result<Option<IsoDuration>, CatalogueFailure> {
    raw.map(|raw| parse_duration(field, raw)).transpose()
}

/// `Some(None)` clears, `Some(Some(text))` sets, `None` keeps.
fn changed_duration(
    field: &str,
    raw: Option<Option<String>>,
) -> Result<Option<Option<IsoDuration>>, CatalogueFailure> {
    raw.map(|raw| optional_duration(field, raw.as_deref()))
        .transpose()
}

impl Catalogue {
    pub async fn create_policy(
        &self,
        mut request: CreatePolicyRequest,
        metadata: EventMetadata,
    ) -> Result<Committed<Policy>, CatalogueFailure> {
        request.later_fields().refuse()?;
        let code = parse_code("code", &request.code)?;
        let entitlements = parse_codes("entitlements", &request.entitlements.unwrap_or_default())?;
        let settings = PolicySettings {
            name: request.name,
            max_devices: request.max_devices,
            duration: optional_duration("duration", request.duration.as_deref())?,
            trial_duration: optional_duration("trial_duration", request.trial_duration.as_deref())?,
            expiration_basis: request.expiration_basis.map(Into::into).unwrap_or_default(),
            expiration_strategy: request
                .expiration_strategy
                .map(Into::into)
                .unwrap_or_default(),
            grace_period: optional_duration("grace_period", request.grace_period.as_deref())?,
            token_ttl: optional_duration("token_ttl", request.token_ttl.as_deref())?,
            entitlements,
            metadata: request.metadata.unwrap_or_default(),
            license_model: request.license_model.map(Into::into).unwrap_or_default(),
            require_heartbeat: request.require_heartbeat.unwrap_or_default(),
            heartbeat_duration: optional_duration(
                "heartbeat_duration",
                request.heartbeat_duration.as_deref(),
            )?,
            heartbeat_cull: request.heartbeat_cull.map(Into::into).unwrap_or_default(),
            resurrection_window: optional_duration(
                "resurrection_window",
                request.resurrection_window.as_deref(),
            )?,
            max_deactivations: request.max_deactivations,
            deactivation_window: optional_duration(
                "deactivation_window",
                request.deactivation_window.as_deref(),
            )?,
            max_borrow: optional_duration("max_borrow", request.max_borrow.as_deref())?,
        };
        let product_id = ProductId(request.product_id);
        let product_code = match self.product(product_id).await {
            Ok((product, _)) => product
                .live()
                .map(|state| state.code.clone())
                .ok_or(CatalogueFailure::UnknownProduct)?,
            Err(CatalogueFailure::NotFound(_)) => return Err(CatalogueFailure::UnknownProduct),
            Err(other) => return Err(other),
        };
        self.require_entitlements(&settings.entitlements).await?;
        let id = PolicyId::for_code(product_id, &code);
        let command = PolicyCommand::Create {
            product_id,
            product_code,
            code,
            settings,
            at: metadata.occurred_at,
        };
        self.run_policy(id, command, metadata).await
    }

    pub async fn update_policy(
        &self,
        id: PolicyId,
        mut request: UpdatePolicyRequest,
        metadata: EventMetadata,
    ) -> Result<Committed<Policy>, CatalogueFailure> {
        request.later_fields().refuse()?;
        let entitlements = match &request.entitlements {
            Some(codes) => Some(parse_codes("entitlements", codes)?),
            None => None,
        };
        let change = PolicyChange {
            name: request.name,
            max_devices: request.max_devices,
            duration: changed_duration("duration", request.duration)?,
            trial_duration: changed_duration("trial_duration", request.trial_duration)?,
            expiration_basis: request.expiration_basis.map(Into::into),
            expiration_strategy: request.expiration_strategy.map(Into::into),
            grace_period: changed_duration("grace_period", request.grace_period)?,
            token_ttl: changed_duration("token_ttl", request.token_ttl)?,
            entitlements,
            metadata: request.metadata,
            license_model: request.license_model.map(Into::into),
            require_heartbeat: request.require_heartbeat,
            heartbeat_duration: changed_duration("heartbeat_duration", request.heartbeat_duration)?,
            heartbeat_cull: request.heartbeat_cull.map(Into::into),
            resurrection_window: changed_duration(
                "resurrection_window",
                request.resurrection_window,
            )?,
            max_deactivations: request.max_deactivations,
            deactivation_window: changed_duration(
                "deactivation_window",
                request.deactivation_window,
            )?,
            max_borrow: changed_duration("max_borrow", request.max_borrow)?,
        };
        self.policy(id).await?;
        if let Some(codes) = &change.entitlements {
            self.require_entitlements(codes).await?;
        }
        let command = PolicyCommand::Update {
            change,
            at: metadata.occurred_at,
        };
        self.run_policy(id, command, metadata).await
    }

    pub async fn attach_entitlements(
        &self,
        id: PolicyId,
        request: AttachEntitlementsRequest,
        metadata: EventMetadata,
    ) -> Result<Committed<Policy>, CatalogueFailure> {
        let codes = parse_codes("codes", &request.codes)?;
        self.policy(id).await?;
        self.require_entitlements(&codes).await?;
        let command = PolicyCommand::AttachEntitlements {
            codes,
            at: metadata.occurred_at,
        };
        self.run_policy(id, command, metadata).await
    }

    pub async fn detach_entitlement(
        &self,
        id: PolicyId,
        code: &str,
        metadata: EventMetadata,
    ) -> Result<Committed<Policy>, CatalogueFailure> {
        let code = parse_code("code", code)?;
        let command = PolicyCommand::DetachEntitlements {
            codes: vec![code],
            at: metadata.occurred_at,
        };
        self.run_policy(id, command, metadata).await
    }

    /// Archives (no new subscription may follow it) or unarchives a policy.
    pub async fn archive_policy(
        &self,
        id: PolicyId,
        archived: bool,
        metadata: EventMetadata,
    ) -> Result<Committed<Policy>, CatalogueFailure> {
        let at = metadata.occurred_at;
        let command = if archived {
            PolicyCommand::Archive { at }
        } else {
            PolicyCommand::Unarchive { at }
        };
        self.run_policy(id, command, metadata).await
    }

    /// A policy as its events have it now, and its version.
    pub async fn policy(&self, id: PolicyId) -> Result<(Policy, u64), CatalogueFailure> {
        let (policy, version) = self
            .policies
            .load(id)
            .await
            .map_err(CatalogueFailure::command(Item::Policy))?;
        if policy.state().is_none() {
            return Err(CatalogueFailure::NotFound(Item::Policy));
        }
        Ok((policy, version))
    }

    /// 422 `UNKNOWN_ENTITLEMENT` naming every code that is no live entitlement.
    async fn require_entitlements(&self, codes: &[Code]) -> Result<(), CatalogueFailure> {
        let unknown = self.unknown_entitlements(codes).await?;
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(CatalogueFailure::UnknownEntitlements(unknown))
        }
    }

    async fn run_policy(
        &self,
        id: PolicyId,
        command: PolicyCommand,
        metadata: EventMetadata,
    ) -> Result<Committed<Policy>, CatalogueFailure> {
        self.policies
            .run(id, vec![command], metadata, None)
            .await
            .map_err(CatalogueFailure::command(Item::Policy))
    }
}
