//! `rm_daily_counts`: activations, deactivations, new and canceled subscriptions per day.
//! Current counts (by status, plan, platform, app version) are read from the other read
//! models, so they need no table of their own.

use crate::db::Conn;
use crate::with_conn;
use flowlytix_aggregates::SubscriptionEvent;

use crate::log::EventRecord;
use crate::projector::{ApplyFuture, ProjectionError, Projector};

pub struct AnalyticsProjector;

impl Projector for AnalyticsProjector {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_daily_counts"]
    }

    fn apply<'a>(&'a self, db: Conn<'a>, event: &'a EventRecord) -> ApplyFuture<'a> {
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
            with_conn!(db, c => {
                sqlx::query(
                    "insert into rm_daily_counts (day, metric, value) values ($1, $2, 1)
                     on conflict (day, metric) do update set value = rm_daily_counts.value + 1",
                )
                .bind(typed.at().date_naive())
                .bind(metric)
                .execute(&mut *c)
                .await?;
            });
            Ok(())
        })
    }
}
