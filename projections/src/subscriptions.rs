//! `rm_subscriptions` and `rm_devices`: the lists, the device views and the license lookup
//! that validation reads. The projector copies what events carry; it decides nothing.
//!
//! Rows are folded in memory ([`SubscriptionsModel::apply`]) and written once per batch
//! with multi-row upserts: a live batch loads the rows it touches first; a replay starts
//! from nothing and folds the whole log before writing.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::Override;
use flowlytix_aggregates::SubscriptionEvent;
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::copy::CopyIn;
use crate::leases::{self, LeaseChange};
use crate::projector::{ApplyFuture, Due, Projector};
use crate::seats::SeatChanges;
use flowlytix_eventstore::with_conn;
use flowlytix_eventstore::Conn;

pub struct SubscriptionsProjector;

impl Projector for SubscriptionsProjector {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_subscriptions", "rm_devices", "rm_policy_seats"]
    }

    fn apply_batch<'a>(&'a self, mut db: Conn<'a>, events: &'a [Due<'a>]) -> ApplyFuture<'a> {
        Box::pin(async move {
            let events: Vec<(Uuid, i64, &SubscriptionEvent)> = events
                .iter()
                .filter_map(|due| {
                    let event = due.event.as_ref()?;
                    let id = Uuid::parse_str(&due.record.aggregate_id).ok()?;
                    Some((id, due.record.sequence, event))
                })
                .collect();
            if events.is_empty() {
                return Ok(());
            }
            let mut model = SubscriptionsModel::load_for(db.reborrow(), &events).await?;
            for (id, version, event) in &events {
                model.apply(*id, *version, event);
            }
            model.save(db).await?;
            Ok(())
        })
    }
}

/// A row of `rm_subscriptions`: what the projector writes and the lists read.
#[derive(Debug, Clone, FromRow)]
pub struct SubscriptionRecord {
    pub id: Uuid,
    pub customer_email: String,
    pub customer_name: String,
    pub organization: Option<String>,
    pub plan: String,
    pub status: String,
    pub max_devices: i32,
    pub active_devices: i32,
    pub features: Json<Vec<String>>,
    pub metadata: Json<Map<String, Value>>,
    pub starts_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub license_key_hash: Option<String>,
    pub license_key_prefix: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub version: i64,
    /// The policy it follows; its effective values are read through `rm_policies`.
    pub policy_id: Option<Uuid>,
    /// The fields it sets itself while following a policy (`max_devices`, ...).
    pub overrides: Json<Vec<String>>,
    /// Seats its devices hold, as the last event that counted them said (a floating pool
    /// counts live leases, a node-locked one active devices).
    pub seats_in_use: i32,
}

/// The columns of a [`SubscriptionRecord`] after `status`: a list computes the status as of
/// now in its place (see `src/read/subscriptions.rs`).
macro_rules! subscription_columns_after_status {
    () => {
        "max_devices, active_devices, features, metadata, starts_at, expires_at, \
         trial_ends_at, license_key_hash, license_key_prefix, created_at, updated_at, \
         canceled_at, deleted_at, version, policy_id, overrides, seats_in_use"
    };
}

/// The columns of a [`SubscriptionRecord`], the one row type of `rm_subscriptions`.
pub const SUBSCRIPTION_COLUMNS: &str = concat!(
    "id, customer_email, customer_name, organization, plan, status, ",
    subscription_columns_after_status!()
);
/// [`SUBSCRIPTION_COLUMNS`] after `status`.
pub const SUBSCRIPTION_COLUMNS_AFTER_STATUS: &str = subscription_columns_after_status!();

/// A row of `rm_devices`: what the projector writes and the lists read.
#[derive(Debug, Clone, FromRow)]
pub struct DeviceRecord {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub fingerprint_hash: String,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub hostname: Option<String>,
    pub notes: Option<String>,
    pub status: String,
    pub activated_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub deactivation_reason: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub subscription_deleted: bool,
    /// Whether it holds one of its subscription's seats: an active device does, unless its
    /// lease expired in a floating pool.
    pub holds_seat: bool,
}

/// The columns of a [`DeviceRecord`], the one row type of `rm_devices`.
pub const DEVICE_COLUMNS: &str = "id, subscription_id, fingerprint_hash, name, platform, \
     os_version, app_version, hostname, notes, status, activated_at, deactivated_at, \
     deactivation_reason, last_seen_at, subscription_deleted, holds_seat";

/// Rows per multi-row statement: well under both backends' bound-parameter limits
/// (PostgreSQL 65,535; SQLite 32,766) at 23 columns.
const ROWS_PER_STATEMENT: usize = 1000;

/// The rows a batch (or a replay) has touched, as they will be written.
#[derive(Debug, Default)]
pub struct SubscriptionsModel {
    subscriptions: HashMap<Uuid, SubscriptionRecord>,
    devices: HashMap<Uuid, DeviceRecord>,
    /// Subscriptions deleted here, whose devices not in `devices` must be flagged too.
    deleted: BTreeSet<Uuid>,
    /// Deadline notices, in order, written after the rows (see [`NoticeCopy`]).
    notices: Vec<(Uuid, NoticeCopy)>,
    /// What the events say about leases, in order, written after the rows.
    leases: Vec<LeaseChange>,
    /// Seats taken and given back under policies, in order, written after the rows.
    seats: SeatChanges,
}

impl SubscriptionsModel {
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// The existing rows that `events` touch.
    async fn load_for(
        db: Conn<'_>,
        events: &[(Uuid, i64, &SubscriptionEvent)],
    ) -> Result<Self, sqlx::Error> {
        let subscription_ids: BTreeSet<Uuid> = events
            .iter()
            .filter(|(_, _, e)| !matches!(e, SubscriptionEvent::SubscriptionCreated { .. }))
            .map(|(id, _, _)| *id)
            .collect();
        let device_ids: BTreeSet<Uuid> =
            events.iter().filter_map(|(_, _, e)| device_of(e)).collect();
        let mut model = Self::default();
        with_conn!(db, c => {
            if !subscription_ids.is_empty() {
                let mut query = QueryBuilder::new(format!(
                    "select {SUBSCRIPTION_COLUMNS} from rm_subscriptions where id in ("
                ));
                let mut list = query.separated(", ");
                for id in &subscription_ids {
                    list.push_bind(*id);
                }
                query.push(")");
                let rows: Vec<SubscriptionRecord> = query.build_query_as().fetch_all(&mut *c).await?;
                model.subscriptions.extend(rows.into_iter().map(|r| (r.id, r)));
            }
            if !device_ids.is_empty() {
                let mut query = QueryBuilder::new(format!(
                    "select {DEVICE_COLUMNS} from rm_devices where id in ("
                ));
                let mut list = query.separated(", ");
                for id in &device_ids {
                    list.push_bind(*id);
                }
                query.push(")");
                let rows: Vec<DeviceRecord> = query.build_query_as().fetch_all(&mut *c).await?;
                model.devices.extend(rows.into_iter().map(|r| (r.id, r)));
            }
        });
        Ok(model)
    }

    /// Folds one event of subscription `id` (its `version`-th) into the rows. An event for
    /// a row that does not exist changes nothing, as an update of a missing row would not.
    pub fn apply(&mut self, id: Uuid, version: i64, event: &SubscriptionEvent) {
        use SubscriptionEvent::*;
        let at = event.at();
        if let SubscriptionCreated {
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
            ..
        } = event
        {
            self.subscriptions.insert(
                id,
                SubscriptionRecord {
                    id,
                    customer_email: customer_email.as_str().to_owned(),
                    customer_name: customer_name.clone(),
                    organization: organization.clone(),
                    plan: plan.as_str().to_owned(),
                    status: status.as_str().to_owned(),
                    max_devices: *max_devices as i32,
                    active_devices: 0,
                    features: Json(features.clone()),
                    metadata: Json(metadata.clone()),
                    starts_at: *starts_at,
                    expires_at: *expires_at,
                    trial_ends_at: *trial_ends_at,
                    license_key_hash: None,
                    license_key_prefix: None,
                    created_at: at,
                    updated_at: at,
                    canceled_at: None,
                    deleted_at: None,
                    version,
                    policy_id: policy_id.map(|id| id.as_uuid()),
                    overrides: Json(Override::names(overrides)),
                    seats_in_use: 0,
                },
            );
            return;
        }
        let Some(row) = self.subscriptions.get_mut(&id) else {
            return;
        };
        // Every later event moves the row's version and updated_at.
        row.version = version;
        row.updated_at = at;
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
                let (before, after) = (row.policy_id, policy_id.map(|id| id.as_uuid()));
                if before != after {
                    // Its seats move with it.
                    let seats = row.seats_in_use;
                    if let Some(before) = before {
                        self.seats.record(before, at, -seats);
                    }
                    if let Some(after) = after {
                        self.seats.record(after, at, seats);
                    }
                }
                row.policy_id = after;
                row.plan = plan.as_str().to_owned();
                row.max_devices = *max_devices as i32;
                row.features = Json(features.clone());
                row.overrides = Json(Override::names(overrides));
            }
            SubscriptionPeriodStarted { expires_at, .. } => row.expires_at = Some(*expires_at),
            // Notices: the status in force is computed from the period when read; what
            // was noticed is kept apart (see `NoticeCopy`).
            SubscriptionExpiringSoon { .. }
            | SubscriptionExpired { .. }
            | SubscriptionGraceEnded { .. } => {
                self.notices
                    .extend(NoticeCopy::of(event).map(|notice| (id, notice)));
            }
            SubscriptionPlanChanged { plan, .. } => row.plan = plan.as_str().to_owned(),
            SubscriptionDeviceLimitChanged { max_devices, .. } => {
                row.max_devices = *max_devices as i32;
                if row.policy_id.is_some() {
                    mark_overridden(row, Override::MaxDevices);
                }
            }
            SubscriptionPeriodChanged {
                starts_at,
                expires_at,
                trial_ends_at,
                ..
            } => {
                // As the aggregate does: a period set directly is the subscription's own.
                if row.policy_id.is_some() {
                    if *expires_at != row.expires_at {
                        mark_overridden(row, Override::ExpiresAt);
                    }
                    if *trial_ends_at != row.trial_ends_at {
                        mark_overridden(row, Override::TrialEndsAt);
                    }
                }
                row.starts_at = *starts_at;
                row.expires_at = *expires_at;
                row.trial_ends_at = *trial_ends_at;
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
                    row.customer_email = email.as_str().to_owned();
                }
                if let Some(name) = customer_name {
                    row.customer_name = name.clone();
                }
                if let Some(organization) = organization {
                    row.organization = organization.clone();
                }
                if let Some(features) = features {
                    row.features = Json(features.clone());
                }
                if let Some(metadata) = metadata {
                    row.metadata = Json(metadata.clone());
                }
            }
            SubscriptionSuspended { .. } => row.status = "suspended".into(),
            SubscriptionResumed { .. } => row.status = "active".into(),
            SubscriptionMarkedPastDue { .. } => row.status = "past_due".into(),
            SubscriptionCanceled { .. } => {
                row.status = "canceled".into();
                row.canceled_at = Some(at);
            }
            SubscriptionDeleted { .. } => {
                set_seats(row, &mut self.seats, at, 0);
                row.deleted_at = Some(at);
                self.leases.push(LeaseChange::SubscriptionGone {
                    subscription_id: id,
                });
                self.deleted.insert(id);
                for device in self.devices.values_mut() {
                    if device.subscription_id == id {
                        device.subscription_deleted = true;
                    }
                }
            }
            LicenseKeyIssued {
                key_hash,
                key_prefix,
                ..
            }
            | LicenseKeyRegenerated {
                key_hash,
                key_prefix,
                ..
            } => {
                row.license_key_hash = Some(key_hash.as_str().to_owned());
                row.license_key_prefix = Some(key_prefix.clone());
            }
            DeviceActivated {
                device_id,
                fingerprint_hash,
                info,
                active_devices,
                lease,
                ..
            } => {
                row.active_devices = *active_devices as i32;
                // Without a lease every active device holds a seat.
                let seats = lease.map_or(*active_devices, |l| l.seats_in_use);
                set_seats(row, &mut self.seats, at, seats as i32);
                if let Some(lease) = lease {
                    self.leases.push(LeaseChange::Taken {
                        device_id: device_id.as_uuid(),
                        subscription_id: id,
                        taken_at: at,
                        expires_at: lease.expires_at,
                    });
                }
                let device =
                    self.devices
                        .entry(device_id.as_uuid())
                        .or_insert_with(|| DeviceRecord {
                            id: device_id.as_uuid(),
                            subscription_id: id,
                            fingerprint_hash: fingerprint_hash.as_str().to_owned(),
                            name: None,
                            platform: None,
                            os_version: None,
                            app_version: None,
                            hostname: None,
                            notes: None,
                            status: "active".into(),
                            activated_at: at,
                            deactivated_at: None,
                            deactivation_reason: None,
                            last_seen_at: None,
                            subscription_deleted: false,
                            holds_seat: false,
                        });
                // A returning device keeps its row (and notes).
                device.name = info.name.clone();
                device.platform = info.platform.clone();
                device.os_version = info.os_version.clone();
                device.app_version = info.app_version.clone();
                device.hostname = info.hostname.clone();
                device.status = "active".into();
                device.activated_at = at;
                device.last_seen_at = Some(at);
                device.deactivated_at = None;
                device.deactivation_reason = None;
                device.holds_seat = true;
            }
            DeviceLeaseTaken {
                device_id, lease, ..
            } => {
                set_seats(row, &mut self.seats, at, lease.seats_in_use as i32);
                if let Some(device) = self.devices.get_mut(&device_id.as_uuid()) {
                    device.holds_seat = true;
                }
                self.leases.push(LeaseChange::Taken {
                    device_id: device_id.as_uuid(),
                    subscription_id: id,
                    taken_at: at,
                    expires_at: lease.expires_at,
                });
            }
            DeviceRevived {
                device_id,
                lease,
                active_devices,
                ..
            } => {
                row.active_devices = *active_devices as i32;
                set_seats(row, &mut self.seats, at, lease.seats_in_use as i32);
                if let Some(device) = self.devices.get_mut(&device_id.as_uuid()) {
                    device.status = "active".into();
                    device.deactivated_at = None;
                    device.deactivation_reason = None;
                    device.holds_seat = true;
                }
                self.leases.push(LeaseChange::Taken {
                    device_id: device_id.as_uuid(),
                    subscription_id: id,
                    taken_at: at,
                    expires_at: lease.expires_at,
                });
            }
            DeviceLeaseExpired {
                device_id,
                seats_in_use,
                ..
            } => {
                // A floating pool takes the seat back (its count drops); a node-locked one
                // leaves it with the device (its count stays).
                let gave_back = (*seats_in_use as i32) < row.seats_in_use;
                if let Some(device) = self.devices.get_mut(&device_id.as_uuid()) {
                    device.holds_seat &= !gave_back;
                }
                set_seats(row, &mut self.seats, at, *seats_in_use as i32);
                self.leases.push(LeaseChange::Ended {
                    device_id: device_id.as_uuid(),
                    at,
                });
            }
            DeviceDeactivated {
                device_id,
                reason,
                active_devices,
                ..
            } => {
                row.active_devices = *active_devices as i32;
                self.leases.push(LeaseChange::Ended {
                    device_id: device_id.as_uuid(),
                    at,
                });
                if let Some(device) = self.devices.get_mut(&device_id.as_uuid()) {
                    if device.holds_seat {
                        let seats = (row.seats_in_use - 1).max(0);
                        set_seats(row, &mut self.seats, at, seats);
                    }
                    device.holds_seat = false;
                    device.status = "inactive".into();
                    device.deactivated_at = Some(at);
                    device.deactivation_reason = serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned));
                }
            }
            DeviceUpdated {
                device_id,
                name,
                notes,
                ..
            } => {
                if let Some(device) = self.devices.get_mut(&device_id.as_uuid()) {
                    if let Some(name) = name {
                        device.name = Some(name.clone());
                    }
                    if let Some(notes) = notes {
                        device.notes = Some(notes.clone());
                    }
                }
            }
            LicenseTokenIssued { device_id, .. } => {
                if let Some(device) = self.devices.get_mut(&device_id.as_uuid()) {
                    device.last_seen_at = Some(at);
                }
            }
        }
    }

    /// Writes every row held, a multi-row upsert per chunk, then flags the devices of
    /// deleted subscriptions that this model did not hold.
    pub async fn save(self, mut db: Conn<'_>) -> Result<(), sqlx::Error> {
        let subscriptions: Vec<SubscriptionRecord> = self.subscriptions.into_values().collect();
        let devices: Vec<DeviceRecord> = self.devices.into_values().collect();
        for chunk in subscriptions.chunks(ROWS_PER_STATEMENT) {
            upsert_subscriptions(db.reborrow(), chunk).await?;
        }
        for chunk in devices.chunks(ROWS_PER_STATEMENT) {
            upsert_devices(db.reborrow(), chunk).await?;
        }
        save_notices(db.reborrow(), &self.notices).await?;
        leases::save_changes(db.reborrow(), &self.leases).await?;
        self.seats.save(db.reborrow()).await?;
        if !self.deleted.is_empty() {
            with_conn!(db, c => {
                let mut query = QueryBuilder::new(
                    "update rm_devices set subscription_deleted = true where subscription_id in (",
                );
                let mut list = query.separated(", ");
                for id in &self.deleted {
                    list.push_bind(*id);
                }
                query.push(")");
                query.build().execute(&mut *c).await?;
            });
        }
        Ok(())
    }
}

impl SubscriptionsModel {
    /// [`SubscriptionsModel::save`] into empty tables (a replay's) on PostgreSQL: the same
    /// rows, streamed with `COPY` instead of multi-row upserts.
    pub async fn copy_into(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let mut copy = CopyIn::start(conn, "rm_subscriptions", SUBSCRIPTION_COLUMNS).await?;
        for r in self.subscriptions.values() {
            copy.field(r.id)
                .field(&r.customer_email)
                .field(&r.customer_name)
                .field(&r.organization)
                .field(&r.plan)
                .field(&r.status)
                .field(r.max_devices)
                .field(r.active_devices)
                .field(&r.features)
                .field(&r.metadata)
                .field(r.starts_at)
                .field(r.expires_at)
                .field(r.trial_ends_at)
                .field(&r.license_key_hash)
                .field(&r.license_key_prefix)
                .field(r.created_at)
                .field(r.updated_at)
                .field(r.canceled_at)
                .field(r.deleted_at)
                .field(r.version)
                .field(r.policy_id)
                .field(&r.overrides)
                .field(r.seats_in_use);
            copy.end_row().await?;
        }
        copy.finish().await?;
        let mut copy = CopyIn::start(conn, "rm_devices", DEVICE_COLUMNS).await?;
        for r in self.devices.values() {
            copy.field(r.id)
                .field(r.subscription_id)
                .field(&r.fingerprint_hash)
                .field(&r.name)
                .field(&r.platform)
                .field(&r.os_version)
                .field(&r.app_version)
                .field(&r.hostname)
                .field(&r.notes)
                .field(&r.status)
                .field(r.activated_at)
                .field(r.deactivated_at)
                .field(&r.deactivation_reason)
                .field(r.last_seen_at)
                .field(r.subscription_deleted)
                .field(r.holds_seat);
            copy.end_row().await?;
        }
        copy.finish().await?;
        save_notices(Conn::Postgres(&mut *conn), &self.notices).await?;
        leases::save_changes(Conn::Postgres(&mut *conn), &self.leases).await?;
        // A few rows per policy and day: no need for COPY.
        self.seats.save(Conn::Postgres(&mut *conn)).await?;
        // Every device of a deleted subscription is held (and flagged) here: a replay folds
        // whole histories, so there is nothing left to flag in the table.
        Ok(())
    }
}

fn device_of(event: &SubscriptionEvent) -> Option<Uuid> {
    use SubscriptionEvent::*;
    match event {
        DeviceActivated { device_id, .. }
        | DeviceLeaseTaken { device_id, .. }
        | DeviceLeaseExpired { device_id, .. }
        | DeviceRevived { device_id, .. }
        | DeviceDeactivated { device_id, .. }
        | DeviceUpdated { device_id, .. }
        | LicenseTokenIssued { device_id, .. } => Some(device_id.as_uuid()),
        _ => None,
    }
}

/// `excluded.column` for every column but the key, for `on conflict do update`.
fn set_all_but_id(columns: &str) -> String {
    columns
        .split(',')
        .map(str::trim)
        .filter(|c| *c != "id")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets the seats a subscription holds, recording the change under its policy (a deleted
/// subscription holds none, and counts under no policy any more).
fn set_seats(row: &mut SubscriptionRecord, seats: &mut SeatChanges, at: DateTime<Utc>, held: i32) {
    if row.deleted_at.is_none() {
        if let Some(policy) = row.policy_id {
            seats.record(policy, at, held - row.seats_in_use);
        }
    }
    row.seats_in_use = held;
}

fn mark_overridden(row: &mut SubscriptionRecord, field: Override) {
    let name = field.as_str().to_owned();
    if !row.overrides.0.contains(&name) {
        row.overrides.0.push(name);
        row.overrides.0.sort();
    }
}

async fn upsert_subscriptions(
    db: Conn<'_>,
    rows: &[SubscriptionRecord],
) -> Result<(), sqlx::Error> {
    let conflict = format!(
        " on conflict (id) do update set {}",
        set_all_but_id(SUBSCRIPTION_COLUMNS)
    );
    with_conn!(db, c => {
        let mut query =
            QueryBuilder::new(format!("insert into rm_subscriptions ({SUBSCRIPTION_COLUMNS}) "));
        query.push_values(rows, |mut row, r| {
            row.push_bind(r.id)
                .push_bind(&r.customer_email)
                .push_bind(&r.customer_name)
                .push_bind(&r.organization)
                .push_bind(&r.plan)
                .push_bind(&r.status)
                .push_bind(r.max_devices)
                .push_bind(r.active_devices)
                .push_bind(&r.features)
                .push_bind(&r.metadata)
                .push_bind(r.starts_at)
                .push_bind(r.expires_at)
                .push_bind(r.trial_ends_at)
                .push_bind(&r.license_key_hash)
                .push_bind(&r.license_key_prefix)
                .push_bind(r.created_at)
                .push_bind(r.updated_at)
                .push_bind(r.canceled_at)
                .push_bind(r.deleted_at)
                .push_bind(r.version)
                .push_bind(r.policy_id)
                .push_bind(&r.overrides)
                .push_bind(r.seats_in_use);
        });
        query.push(&conflict);
        query.build().execute(&mut *c).await?;
    });
    Ok(())
}

async fn upsert_devices(db: Conn<'_>, rows: &[DeviceRecord]) -> Result<(), sqlx::Error> {
    let conflict = format!(
        " on conflict (id) do update set {}",
        set_all_but_id(DEVICE_COLUMNS)
    );
    with_conn!(db, c => {
        let mut query = QueryBuilder::new(format!("insert into rm_devices ({DEVICE_COLUMNS}) "));
        query.push_values(rows, |mut row, r| {
            row.push_bind(r.id)
                .push_bind(r.subscription_id)
                .push_bind(&r.fingerprint_hash)
                .push_bind(&r.name)
                .push_bind(&r.platform)
                .push_bind(&r.os_version)
                .push_bind(&r.app_version)
                .push_bind(&r.hostname)
                .push_bind(&r.notes)
                .push_bind(&r.status)
                .push_bind(r.activated_at)
                .push_bind(r.deactivated_at)
                .push_bind(&r.deactivation_reason)
                .push_bind(r.last_seen_at)
                .push_bind(r.subscription_deleted)
                .push_bind(r.holds_seat);
        });
        query.push(&conflict);
        query.build().execute(&mut *c).await?;
    });
    Ok(())
}

/// A deadline notice as its event carries it, for the `notice_*` columns of
/// `rm_subscriptions` (migration 0017): each notice with the deadline it was for, which is
/// what lets the deadline scheduler find what is still due (`src/read/deadlines.rs`). Kept
/// outside [`SubscriptionRecord`]: nothing lists or shows them, and the row upserts leave
/// these columns alone.
#[derive(Debug, Clone)]
enum NoticeCopy {
    Reminded {
        deadline: DateTime<Utc>,
        days_before: u32,
    },
    Expired {
        deadline: DateTime<Utc>,
        grace_until: Option<DateTime<Utc>>,
    },
    GraceEnded {
        deadline: DateTime<Utc>,
    },
}

impl NoticeCopy {
    fn of(event: &SubscriptionEvent) -> Option<Self> {
        use SubscriptionEvent::*;
        match event {
            SubscriptionExpiringSoon {
                expires_at,
                days_before,
                ..
            } => Some(Self::Reminded {
                deadline: *expires_at,
                days_before: *days_before,
            }),
            SubscriptionExpired {
                expires_at,
                grace_until,
                ..
            } => Some(Self::Expired {
                deadline: *expires_at,
                grace_until: *grace_until,
            }),
            SubscriptionGraceEnded { expires_at, .. } => Some(Self::GraceEnded {
                deadline: *expires_at,
            }),
            _ => None,
        }
    }
}

/// One update per notice, in order: notices are a few per subscription and deadline, far
/// fewer than the events that upsert rows. A notice for a row that does not exist changes
/// nothing.
async fn save_notices(db: Conn<'_>, notices: &[(Uuid, NoticeCopy)]) -> Result<(), sqlx::Error> {
    if notices.is_empty() {
        return Ok(());
    }
    with_conn!(db, c => {
        for (id, notice) in notices {
            let query = match notice {
                NoticeCopy::Reminded { deadline, days_before } => sqlx::query(
                    "update rm_subscriptions set notice_reminded_for = $1, \
                     notice_reminded_days = $2 where id = $3",
                )
                .bind(*deadline)
                .bind(i64::from(*days_before)),
                NoticeCopy::Expired { deadline, grace_until } => sqlx::query(
                    "update rm_subscriptions set notice_expired_for = $1, \
                     notice_grace_until = $2 where id = $3",
                )
                .bind(*deadline)
                .bind(*grace_until),
                NoticeCopy::GraceEnded { deadline } => sqlx::query(
                    "update rm_subscriptions set notice_grace_ended_for = $1 where id = $2",
                )
                .bind(*deadline),
            };
            query.bind(*id).execute(&mut *c).await?;
        }
    });
    Ok(())
}
