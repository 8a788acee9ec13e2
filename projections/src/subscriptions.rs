//! `rm_subscriptions` and `rm_devices`: the lists, the device views and the license lookup
//! that validation reads. The projector copies what events carry; it decides nothing.

use cqrs_es::Aggregate;
use flowlytix_aggregates::{Subscription, SubscriptionEvent};
use sqlx::types::Json;
use uuid::Uuid;

use crate::db::Conn;
use crate::log::EventRecord;
use crate::projector::{ApplyFuture, ProjectionError, Projector};
use crate::with_conn;

pub struct SubscriptionsProjector;

/// Runs one statement on whichever backend `db` is.
macro_rules! run {
    ($db:expr, $query:expr) => {
        with_conn!($db.reborrow(), c => {
            $query.execute(&mut *c).await?;
        })
    };
}

impl Projector for SubscriptionsProjector {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_subscriptions", "rm_devices"]
    }

    fn apply<'a>(&'a self, db: Conn<'a>, event: &'a EventRecord) -> ApplyFuture<'a> {
        Box::pin(async move {
            if event.aggregate_type != Subscription::TYPE {
                return Ok(());
            }
            let typed: SubscriptionEvent = serde_json::from_value(event.tagged_payload())
                .map_err(|e| ProjectionError::BadPayload(event.message_id(), e))?;
            let id = Uuid::parse_str(&event.aggregate_id).unwrap_or_default();
            apply(db, id, event.sequence, typed)
                .await
                .map_err(ProjectionError::from)
        })
    }
}

async fn apply(
    mut db: Conn<'_>,
    id: Uuid,
    version: i64,
    event: SubscriptionEvent,
) -> Result<(), sqlx::Error> {
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
        ..
    } = event
    {
        run!(
            db,
            sqlx::query(
                "insert into rm_subscriptions (id, customer_email, customer_name, organization, plan, status,
                     max_devices, features, metadata, starts_at, expires_at, trial_ends_at, created_at,
                     updated_at, version)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)",
            )
            .bind(id)
            .bind(customer_email.as_str())
            .bind(&customer_name)
            .bind(&organization)
            .bind(plan.as_str())
            .bind(status.as_str())
            .bind(max_devices as i32)
            .bind(Json(&features))
            .bind(Json(&metadata))
            .bind(starts_at)
            .bind(expires_at)
            .bind(trial_ends_at)
            .bind(at)
            .bind(version)
        );
        return Ok(());
    }
    // Every later event moves the row's version and updated_at.
    run!(
        db,
        sqlx::query("update rm_subscriptions set version = $2, updated_at = $3 where id = $1")
            .bind(id)
            .bind(version)
            .bind(at)
    );
    match event {
        SubscriptionCreated { .. } => {}
        SubscriptionPlanChanged { plan, .. } => {
            run!(
                db,
                sqlx::query("update rm_subscriptions set plan = $2 where id = $1")
                    .bind(id)
                    .bind(plan.as_str())
            );
        }
        SubscriptionDeviceLimitChanged { max_devices, .. } => {
            run!(
                db,
                sqlx::query("update rm_subscriptions set max_devices = $2 where id = $1")
                    .bind(id)
                    .bind(max_devices as i32)
            );
        }
        SubscriptionPeriodChanged {
            starts_at,
            expires_at,
            trial_ends_at,
            ..
        } => {
            run!(
                db,
                sqlx::query(
                    "update rm_subscriptions set starts_at = $2, expires_at = $3, trial_ends_at = $4 where id = $1"
                )
                .bind(id)
                .bind(starts_at)
                .bind(expires_at)
                .bind(trial_ends_at)
            );
        }
        SubscriptionDetailsUpdated {
            customer_email,
            customer_name,
            organization,
            features,
            metadata,
            ..
        } => {
            run!(
                db,
                sqlx::query(
                    "update rm_subscriptions set
                         customer_email = coalesce($2, customer_email),
                         customer_name = coalesce($3, customer_name),
                         organization = case when $4 then $5 else organization end,
                         features = coalesce($6, features),
                         metadata = coalesce($7, metadata)
                     where id = $1",
                )
                .bind(id)
                .bind(customer_email.as_ref().map(|e| e.as_str()))
                .bind(&customer_name)
                .bind(organization.is_some())
                .bind(organization.as_ref().and_then(|o| o.as_deref()))
                .bind(features.as_ref().map(Json))
                .bind(metadata.as_ref().map(Json))
            );
        }
        SubscriptionSuspended { .. } => set_status(db, id, "suspended").await?,
        SubscriptionResumed { .. } => set_status(db, id, "active").await?,
        SubscriptionMarkedPastDue { .. } => set_status(db, id, "past_due").await?,
        SubscriptionCanceled { .. } => {
            run!(
                db,
                sqlx::query("update rm_subscriptions set status = 'canceled', canceled_at = $2 where id = $1")
                    .bind(id)
                    .bind(at)
            );
        }
        SubscriptionDeleted { .. } => {
            run!(
                db,
                sqlx::query("update rm_subscriptions set deleted_at = $2 where id = $1")
                    .bind(id)
                    .bind(at)
            );
            run!(
                db,
                sqlx::query(
                    "update rm_devices set subscription_deleted = true where subscription_id = $1"
                )
                .bind(id)
            );
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
            run!(
                db,
                sqlx::query("update rm_subscriptions set license_key_hash = $2, license_key_prefix = $3 where id = $1")
                    .bind(id)
                    .bind(key_hash.as_str())
                    .bind(&key_prefix)
            );
        }
        DeviceActivated {
            device_id,
            fingerprint_hash,
            name,
            platform,
            os_version,
            app_version,
            hostname,
            active_devices,
            ..
        } => {
            // A returning device keeps its row (and notes).
            run!(
                db,
                sqlx::query(
                    "insert into rm_devices (id, subscription_id, fingerprint_hash, name, platform, os_version,
                         app_version, hostname, status, activated_at, last_seen_at)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9)
                     on conflict (id) do update set
                         name = excluded.name, platform = excluded.platform, os_version = excluded.os_version,
                         app_version = excluded.app_version, hostname = excluded.hostname, status = 'active',
                         activated_at = excluded.activated_at, last_seen_at = excluded.last_seen_at,
                         deactivated_at = null, deactivation_reason = null",
                )
                .bind(device_id.as_uuid())
                .bind(id)
                .bind(fingerprint_hash.as_str())
                .bind(&name)
                .bind(&platform)
                .bind(&os_version)
                .bind(&app_version)
                .bind(&hostname)
                .bind(at)
            );
            set_active_devices(db, id, active_devices).await?;
        }
        DeviceDeactivated {
            device_id,
            reason,
            active_devices,
            ..
        } => {
            let reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            run!(
                db,
                sqlx::query(
                    "update rm_devices set status = 'inactive', deactivated_at = $2, deactivation_reason = $3
                     where id = $1",
                )
                .bind(device_id.as_uuid())
                .bind(at)
                .bind(&reason)
            );
            set_active_devices(db, id, active_devices).await?;
        }
        DeviceUpdated {
            device_id,
            name,
            notes,
            ..
        } => {
            run!(
                db,
                sqlx::query("update rm_devices set name = coalesce($2, name), notes = coalesce($3, notes) where id = $1")
                    .bind(device_id.as_uuid())
                    .bind(&name)
                    .bind(&notes)
            );
        }
        LicenseTokenIssued { device_id, .. } => {
            run!(
                db,
                sqlx::query("update rm_devices set last_seen_at = $2 where id = $1")
                    .bind(device_id.as_uuid())
                    .bind(at)
            );
        }
    }
    Ok(())
}

async fn set_status(mut db: Conn<'_>, id: Uuid, status: &str) -> Result<(), sqlx::Error> {
    run!(
        db,
        sqlx::query("update rm_subscriptions set status = $2 where id = $1")
            .bind(id)
            .bind(status)
    );
    Ok(())
}

async fn set_active_devices(mut db: Conn<'_>, id: Uuid, active: u32) -> Result<(), sqlx::Error> {
    run!(
        db,
        sqlx::query("update rm_subscriptions set active_devices = $2 where id = $1")
            .bind(id)
            .bind(active as i32)
    );
    Ok(())
}
