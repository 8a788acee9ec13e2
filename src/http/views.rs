//! JSON representations of aggregate state (field names are part of the public contract).

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::{
    Device, EffectiveTerms, Override, OwnTerms, SubscriptionState,
};
use flowlytix_aggregates::{PolicyBook, PolicyId, Status};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::licensing::{ActiveDevice, LicenseSnapshot};
use crate::read::devices::DeviceRecord;
use crate::read::leases::{DeviceFacts, DeviceLeases, DeviceState};
use crate::read::subscriptions::SubscriptionRecord;

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub customer_email: String,
    pub customer_name: String,
    pub organization: Option<String>,
    pub plan: String,
    /// trialing, active, past_due, suspended, canceled or expired (as of now).
    pub status: String,
    pub max_devices: u32,
    pub active_devices: u32,
    pub features: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub starts_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub license_key_prefix: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The policy it follows (null: a subscription of its own, "custom").
    pub policy_id: Option<Uuid>,
    pub product_code: Option<String>,
    pub policy_code: Option<String>,
    /// The entitlements in force: its policy's and its own (the same as `features`).
    pub entitlements: Vec<String>,
    /// The fields it sets itself instead of taking them from its policy.
    pub overrides: Vec<String>,
    /// Expired, but still valid within its policy's grace (until `grace_until`).
    pub in_grace: bool,
    pub grace_until: Option<DateTime<Utc>>,
    /// The aggregate version: send it back in `If-Match` to update safely.
    pub version: u64,
    /// On single-subscription responses only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceView>>,
    /// The full license key: present only in the responses to create and regenerate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_key: Option<String>,
    /// The event-log position this state reached (on command responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl SubscriptionView {
    /// The subscription under the policies' current terms, its devices with `leases` (the
    /// rows of `device_leases`, or none for a past state).
    pub fn new(
        state: &SubscriptionState,
        version: u64,
        now: DateTime<Utc>,
        policies: &PolicyBook,
        leases: &DeviceLeases,
    ) -> Self {
        let terms = state.effective(policies);
        let policy = state.policy_id.and_then(|id| policies.get(id));
        let in_grace = state.in_grace_at(now, policy.map(|p| p.as_ref()));
        Self {
            id: state.id.as_uuid(),
            customer_email: state.customer_email.to_string(),
            customer_name: state.customer_name.clone(),
            organization: state.organization.clone(),
            plan: terms.plan,
            status: state.status_at(now).as_str().to_owned(),
            max_devices: terms.max_devices,
            active_devices: state.active_device_count(),
            features: terms.entitlements.clone(),
            metadata: state.metadata.clone(),
            starts_at: state.starts_at,
            expires_at: state.expires_at,
            trial_ends_at: state.trial_ends_at,
            license_key_prefix: state.license_key.as_ref().map(|k| k.key_prefix.clone()),
            created_at: state.created_at,
            updated_at: state.updated_at,
            policy_id: state.policy_id.map(|id| id.as_uuid()),
            product_code: terms.product_code,
            policy_code: terms.policy_code,
            entitlements: terms.entitlements,
            overrides: Override::names(&state.overrides),
            in_grace,
            grace_until: terms.grace_until,
            version,
            devices: Some(
                state
                    .devices
                    .iter()
                    .map(|d| DeviceView::new(state, d, leases, now))
                    .collect(),
            ),
            license_key: None,
            position: None,
        }
    }
}

impl SubscriptionView {
    /// A list's row (its `status` already the one in force at `now`) under the policies'
    /// current terms.
    pub fn from_record(row: SubscriptionRecord, policies: &PolicyBook, now: DateTime<Utc>) -> Self {
        let overrides: Vec<Override> = row
            .overrides
            .0
            .iter()
            .filter_map(|name| Override::from_name(name))
            .collect();
        let policy = row
            .policy_id
            .and_then(|id| policies.get(PolicyId(id)))
            .map(|p| p.as_ref());
        let terms = EffectiveTerms::of(
            OwnTerms {
                plan: &row.plan,
                max_devices: row.max_devices.max(0) as u32,
                features: &row.features.0,
                overrides: &overrides,
                expires_at: row.expires_at,
            },
            policy,
        );
        // The status is already the one in force: expired by its period, within grace.
        let in_grace = row.status == Status::Expired.as_str()
            && row.expires_at.is_some_and(|end| end <= now)
            && terms.grace_until.is_some_and(|end| now < end);
        Self {
            id: row.id,
            customer_email: row.customer_email,
            customer_name: row.customer_name,
            organization: row.organization,
            plan: terms.plan,
            status: row.status,
            max_devices: terms.max_devices,
            active_devices: row.active_devices.max(0) as u32,
            features: terms.entitlements.clone(),
            metadata: row.metadata.0,
            starts_at: row.starts_at,
            expires_at: row.expires_at,
            trial_ends_at: row.trial_ends_at,
            license_key_prefix: row.license_key_prefix,
            created_at: row.created_at,
            updated_at: row.updated_at,
            policy_id: row.policy_id,
            product_code: terms.product_code,
            policy_code: terms.policy_code,
            entitlements: terms.entitlements,
            overrides: row.overrides.0,
            in_grace,
            grace_until: terms.grace_until,
            version: row.version.max(0) as u64,
            devices: None,
            license_key: None,
            position: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: Uuid,
    pub subscription_id: Uuid,
    /// SHA-256 of the fingerprint the app sent; the fingerprint itself is not kept.
    pub fingerprint_hash: String,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub hostname: Option<String>,
    pub notes: Option<String>,
    /// `active` or `inactive`.
    pub status: &'static str,
    pub activated_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
    /// client, admin, limit_reduced, heartbeat_expired or checked_in.
    pub deactivation_reason: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The last heartbeat, under a policy that requires them (null before the first).
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The lease's deadline in force: a heartbeat or a borrow moves it on; past it, the
    /// device is dead. Null without a lease, or for a floating seat without heartbeats.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Until when the device may stay offline on a borrowed lease (as last set).
    pub borrowed_until: Option<DateTime<Utc>>,
    /// `live`, `dead` (its lease ran out; a culled device too) or `borrowed`; null for a
    /// device deactivated otherwise.
    #[schema(nullable)]
    pub state: Option<DeviceState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl DeviceView {
    /// A device as its subscription's events left it, with its lease row from `leases`.
    pub fn new(
        subscription: &SubscriptionState,
        device: &Device,
        leases: &DeviceLeases,
        now: DateTime<Utc>,
    ) -> Self {
        let deactivation_reason = device
            .deactivation_reason
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        let lease = leases.shown(
            device.id.as_uuid(),
            DeviceFacts {
                active: device.active,
                deactivation_reason: deactivation_reason.as_deref(),
                recorded: device.lease.as_ref(),
            },
            now,
        );
        Self {
            id: device.id.as_uuid(),
            subscription_id: subscription.id.as_uuid(),
            fingerprint_hash: device.fingerprint_hash.as_str().to_owned(),
            name: device.info.name.clone(),
            platform: device.info.platform.clone(),
            os_version: device.info.os_version.clone(),
            app_version: device.info.app_version.clone(),
            hostname: device.info.hostname.clone(),
            notes: device.notes.clone(),
            status: if device.active { "active" } else { "inactive" },
            activated_at: device.activated_at,
            deactivated_at: device.deactivated_at,
            deactivation_reason,
            last_seen_at: device.last_seen_at,
            last_heartbeat_at: lease.last_heartbeat_at,
            lease_expires_at: lease.lease_expires_at,
            borrowed_until: lease.borrowed_until,
            state: lease.state,
            position: None,
        }
    }

    /// A device list's row, with its lease row from `leases`.
    pub fn from_record(row: DeviceRecord, leases: &DeviceLeases, now: DateTime<Utc>) -> Self {
        let active = row.status == "active";
        let lease = leases.shown(
            row.id,
            DeviceFacts {
                active,
                deactivation_reason: row.deactivation_reason.as_deref(),
                recorded: None,
            },
            now,
        );
        Self {
            id: row.id,
            subscription_id: row.subscription_id,
            fingerprint_hash: row.fingerprint_hash,
            name: row.name,
            platform: row.platform,
            os_version: row.os_version,
            app_version: row.app_version,
            hostname: row.hostname,
            notes: row.notes,
            status: if active { "active" } else { "inactive" },
            activated_at: row.activated_at,
            deactivated_at: row.deactivated_at,
            deactivation_reason: row.deactivation_reason,
            last_seen_at: row.last_seen_at,
            last_heartbeat_at: lease.last_heartbeat_at,
            lease_expires_at: lease.lease_expires_at,
            borrowed_until: lease.borrowed_until,
            state: lease.state,
            position: None,
        }
    }
}

/// A page of a list: one named type per item type, so that each list's document names
/// its own items (a generic `Page<T>` is one schema in OpenAPI, whose items the last user
/// decided).
macro_rules! page {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            /// How many items match, over all pages.
            pub total: i64,
            /// From 1.
            #[schema(minimum = 1)]
            pub page: u32,
            #[schema(minimum = 1, maximum = 200)]
            pub per_page: u32,
        }
    };
}

page!(
    /// A page of subscriptions.
    SubscriptionPage,
    SubscriptionView
);
page!(
    /// A page of devices.
    DevicePage,
    DeviceView
);

/// What a client app learns about its license.
#[derive(Debug, Serialize, ToSchema)]
pub struct LicenseView {
    pub subscription_id: Uuid,
    pub status: String,
    /// The policy's code for a license that follows one.
    pub plan: String,
    /// The entitlements in force (the same as `entitlements`).
    pub features: Vec<String>,
    pub entitlements: Vec<String>,
    pub product_code: Option<String>,
    pub policy_code: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Until when it still works after `expires_at`, when its policy gives grace.
    pub grace_until: Option<DateTime<Utc>>,
    pub max_devices: u32,
}

impl LicenseView {
    pub fn from_snapshot(
        license: &LicenseSnapshot,
        terms: &EffectiveTerms,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            subscription_id: license.subscription_id.as_uuid(),
            status: license.status_at(now).as_str().to_owned(),
            plan: terms.plan.clone(),
            features: terms.entitlements.clone(),
            entitlements: terms.entitlements.clone(),
            product_code: terms.product_code.clone(),
            policy_code: terms.policy_code.clone(),
            expires_at: license.expires_at,
            grace_until: terms.grace_until,
            max_devices: terms.max_devices,
        }
    }
}

/// What a client app learns about its device.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientDeviceView {
    pub id: Uuid,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub activated_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl ClientDeviceView {
    pub fn from_active(device: &ActiveDevice) -> Self {
        Self {
            id: device.id.as_uuid(),
            name: device.name.as_deref().map(str::to_owned),
            platform: device.platform.as_deref().map(str::to_owned),
            activated_at: device.activated_at,
            last_seen_at: device.last_seen_at,
        }
    }
}
