//! `rm_subscriptions` and `rm_devices`: the lists, the device views and the license lookup
//! that validation reads. The projector copies what events carry; it decides nothing.

use cqrs_es::Aggregate;
use flowlytix_aggregates::{Subscription, SubscriptionEvent};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::log::EventRecord;
use crate::projector::{ApplyFuture, ProjectionError, Projector};

pub struct SubscriptionsProjector;

impl Projector for SubscriptionsProjector {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_subscriptions", "rm_devices"]
    }

    fn apply<'a>(&'a self, db: &'a mut PgConnection, event: &'a EventRecord) -> ApplyFuture<'a> {
        Box::pin(async move {
            if event.aggregate_type != Subscription::TYPE {
                return Ok(());
            }
            let typed: SubscriptionEvent = serde_json::from_value(event.tagged_payload())
                .map_err(|e| ProjectionError::BadPayload(event.message_id(), e))?;
            let id = Uuid::parse_str(&event.aggregate_id).unwrap_or_default();
            apply(db, id, event.sequence, typed).await.map_err(ProjectionError::from)
        })
    }
}

async fn apply(db: &mut PgConnection, id: Uuid, version: i64, event: SubscriptionEvent) -> Result<(), sqlx::Error> {
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
        sqlx::query(
            "insert into rm_subscriptions (id, customer_email, customer_name, organization, plan, status,
                 max_devices, features, metadata, starts_at, expires_at, trial_ends_at, created_at,
                 updated_at, version)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)",
        )
        .bind(id)
        .bind(customer_email.as_str())
        .bind(customer_name)
        .bind(organization)
        .bind(plan.as_str())
        .bind(status.as_str())
        .bind(max_devices as i32)
        .bind(Json(features))
        .bind(Json(metadata))
        .bind(starts_at)
        .bind(expires_at)
        .bind(trial_ends_at)
        .bind(at)
        .bind(version)
        .execute(&mut *db)
        .await?;
        return Ok(());
    }
    // Every later event moves the row's version and updated_at.
    sqlx::query("update rm_subscriptions set version = $2, updated_at = $3 where id = $1")
        .bind(id)
        .bind(version)
        .bind(at)
        .execute(&mut *db)
        .await?;
    let update = |sql: &'static str| sqlx::query(sql).bind(id);
    match event {
        SubscriptionCreated { .. } => {}
        SubscriptionPlanChanged { plan, .. } => {
            update("update rm_subscriptions set plan = $2 where id = $1").bind(plan.as_str()).execute(&mut *db).await?;
        }
        SubscriptionDeviceLimitChanged { max_devices, .. } => {
            update("update rm_subscriptions set max_devices = $2 where id = $1")
                .bind(max_devices as i32)
                .execute(&mut *db)
                .await?;
        }
        SubscriptionPeriodChanged { starts_at, expires_at, trial_ends_at, .. } => {
            update("update rm_subscriptions set starts_at = $2, expires_at = $3, trial_ends_at = $4 where id = $1")
                .bind(starts_at)
                .bind(expires_at)
                .bind(trial_ends_at)
                .execute(&mut *db)
                .await?;
        }
        SubscriptionDetailsUpdated { customer_email, customer_name, organization, features, metadata, .. } => {
            update(
                "update rm_subscriptions set
                     customer_email = coalesce($2, customer_email),
                     customer_name = coalesce($3, customer_name),
                     organization = case when $4 then $5 else organization end,
                     features = coalesce($6, features),
                     metadata = coalesce($7, metadata)
                 where id = $1",
            )
            .bind(customer_email.map(String::from))
            .bind(customer_name)
            .bind(organization.is_some())
            .bind(organization.flatten())
            .bind(features.map(Json))
            .bind(metadata.map(Json))
            .execute(&mut *db)
            .await?;
        }
        SubscriptionSuspended { .. } => set_status(db, id, "suspended").await?,
        SubscriptionResumed { .. } => set_status(db, id, "active").await?,
        SubscriptionMarkedPastDue { .. } => set_status(db, id, "past_due").await?,
        SubscriptionCanceled { .. } => {
            update("update rm_subscriptions set status = 'canceled', canceled_at = $2 where id = $1")
                .bind(at)
                .execute(&mut *db)
                .await?;
        }
        SubscriptionDeleted { .. } => {
            update("update rm_subscriptions set deleted_at = $2 where id = $1").bind(at).execute(&mut *db).await?;
            sqlx::query("update rm_devices set subscription_deleted = true where subscription_id = $1")
                .bind(id)
                .execute(&mut *db)
                .await?;
        }
        LicenseKeyIssued { key_hash, key_prefix, .. } | LicenseKeyRegenerated { key_hash, key_prefix, .. } => {
            update("update rm_subscriptions set license_key_hash = $2, license_key_prefix = $3 where id = $1")
                .bind(key_hash.as_str())
                .bind(key_prefix)
                .execute(&mut *db)
                .await?;
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
            .bind(name)
            .bind(platform)
            .bind(os_version)
            .bind(app_version)
            .bind(hostname)
            .bind(at)
            .execute(&mut *db)
            .await?;
            set_active_devices(db, id, active_devices).await?;
        }
        DeviceDeactivated { device_id, reason, active_devices, .. } => {
            let reason = serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned));
            sqlx::query(
                "update rm_devices set status = 'inactive', deactivated_at = $2, deactivation_reason = $3
                 where id = $1",
            )
            .bind(device_id.as_uuid())
            .bind(at)
            .bind(reason)
            .execute(&mut *db)
            .await?;
            set_active_devices(db, id, active_devices).await?;
        }
        DeviceUpdated { device_id, name, notes, .. } => {
            sqlx::query("update rm_devices set name = coalesce($2, name), notes = coalesce($3, notes) where id = $1")
                .bind(device_id.as_uuid())
                .bind(name)
                .bind(notes)
                .execute(&mut *db)
                .await?;
        }
        LicenseTokenIssued { device_id, .. } => {
            sqlx::query("update rm_devices set last_seen_at = $2 where id = $1")
                .bind(device_id.as_uuid())
                .bind(at)
                .execute(&mut *db)
                .await?;
        }
    }
    Ok(())
}

async fn set_status(db: &mut PgConnection, id: Uuid, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query("update rm_subscriptions set status = $2 where id = $1").bind(id).bind(status).execute(db).await?;
    Ok(())
}

async fn set_active_devices(db: &mut PgConnection, id: Uuid, active: u32) -> Result<(), sqlx::Error> {
    sqlx::query("update rm_subscriptions set active_devices = $2 where id = $1")
        .bind(id)
        .bind(active as i32)
        .execute(db)
        .await?;
    Ok(())
}
