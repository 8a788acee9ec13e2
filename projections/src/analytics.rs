//! `rm_daily_counts`: activations, deactivations, new and canceled subscriptions per day.
//! Current counts (by status, plan, platform, app version) are read from the other read
//! models, so they need no table of their own.

use std::collections::HashMap;

use chrono::NaiveDate;
use flowlytix_aggregates::SubscriptionEvent;
use sqlx::QueryBuilder;

use crate::projector::{ApplyFuture, Due, Projector};
use flowlytix_eventstore::with_conn;
use flowlytix_eventstore::Conn;

pub struct AnalyticsProjector;

impl Projector for AnalyticsProjector {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_daily_counts"]
    }

    fn apply_batch<'a>(&'a self, db: Conn<'a>, events: &'a [Due<'a>]) -> ApplyFuture<'a> {
        Box::pin(async move {
            let mut counts = DailyCounts::default();
            for event in events.iter().filter_map(|due| due.event.as_ref()) {
                counts.apply(event);
            }
            counts.save(db).await?;
            Ok(())
        })
    }
}

/// Increments per day and metric, to be added to `rm_daily_counts`.
#[derive(Debug, Default)]
pub struct DailyCounts {
    increments: HashMap<(NaiveDate, &'static str), i64>,
}

impl DailyCounts {
    pub fn apply(&mut self, event: &SubscriptionEvent) {
        use SubscriptionEvent::*;
        let metric = match event {
            DeviceActivated { .. } => "activations",
            DeviceDeactivated { .. } => "deactivations",
            SubscriptionCreated { .. } => "subscriptions_created",
            SubscriptionCanceled { .. } => "subscriptions_canceled",
            _ => return,
        };
        *self
            .increments
            .entry((event.at().date_naive(), metric))
            .or_default() += 1;
    }

    /// Adds the increments to the table, one multi-row upsert per chunk.
    pub async fn save(self, mut db: Conn<'_>) -> Result<(), sqlx::Error> {
        let rows: Vec<((NaiveDate, &str), i64)> = self.increments.into_iter().collect();
        for chunk in rows.chunks(1000) {
            with_conn!(db.reborrow(), c => {
                let mut query = QueryBuilder::new("insert into rm_daily_counts (day, metric, value) ");
                query.push_values(chunk, |mut row, ((day, metric), value)| {
                    row.push_bind(*day).push_bind(*metric).push_bind(*value);
                });
                query.push(
                    " on conflict (day, metric) do update set value = rm_daily_counts.value + excluded.value",
                );
                query.build().execute(&mut *c).await?;
            });
        }
        Ok(())
    }
}
