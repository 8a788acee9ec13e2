//! `rm_daily_counts`: activations, deactivations, new and canceled subscriptions per day.
//! Current counts (by status, plan, platform, app version) are read from the other read
//! models, so they need no table of their own.

use flowlytix_aggregates::SubscriptionEvent;
use sqlx::PgConnection;

use crate::log::EventRecord;
use crate::projector::{ApplyFuture, ProjectionError, Projector};

pub struct AnalyticsProjector;

pub const METRICS: [&str; 4] = ["activations", "deactivations", "subscriptions_created", "subscriptions_canceled"];

impl Projector for AnalyticsProjector {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_daily_counts"]
    }

    fn apply<'a>(&'a self, db: &'a mut PgConnection, event: &'a EventRecord) -> ApplyFuture<'a> {
        Box::pin(async move {
            let metric = match event.event_type.as_str() {
                "DeviceActivated" => "activations",
                "DeviceDeactivated" => "deactivations",
                "SubscriptionCreated" => "subscriptions_created",
                "SubscriptionCanceled" => "subscriptions_canceled",
                _ => return Ok(()),
            };
            let typed: SubscriptionEvent = serde_json::from_value(event.tagged_payload())
                .map_err(|e| ProjectionError::BadPayload(event.message_id(), e))?;
            sqlx::query(
                "insert into rm_daily_counts (day, metric, value) values (($1 at time zone 'utc')::date, $2, 1)
                 on conflict (day, metric) do update set value = rm_daily_counts.value + 1",
            )
            .bind(typed.at())
            .bind(metric)
            .execute(db)
            .await?;
            Ok(())
        })
    }
}
