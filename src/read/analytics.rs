//! Analytics: current counts grouped from the read models, and daily counts over a range
//! from `rm_daily_counts` (plus expirations, which happen by time, from expires_at).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// First day (inclusive), default 29 days before `to`.
    pub from: Option<NaiveDate>,
    /// Last day (inclusive), default today (UTC).
    pub to: Option<NaiveDate>,
}

pub const MAX_RANGE_DAYS: i64 = 366;

impl Range {
    /// The inclusive day range, or why it is not acceptable.
    pub fn days(&self, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), String> {
        let to = self.to.unwrap_or(today);
        let from = self.from.unwrap_or(to - Duration::days(29));
        if from > to {
            return Err("`from` must not be after `to`".into());
        }
        if (to - from).num_days() >= MAX_RANGE_DAYS {
            return Err(format!("a range covers at most {MAX_RANGE_DAYS} days"));
        }
        Ok((from, to))
    }
}

/// One day's counts; every metric is present, zero when nothing happened.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyCounts {
    pub day: NaiveDate,
    #[schema(value_type = Object)]
    pub counts: BTreeMap<String, i64>,
}

pub type Counts = BTreeMap<String, i64>;

/// Counts of rows grouped by an expression over a read-model table (fixed SQL only).
async fn grouped(pool: &PgPool, sql: &str) -> Result<Counts, sqlx::Error> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(sql).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(k, n)| (k.unwrap_or_else(|| "unknown".into()), n)).collect())
}

pub async fn subscriptions_by_status(pool: &PgPool) -> Result<Counts, sqlx::Error> {
    grouped(
        pool,
        "select rm_effective_status(status, expires_at, trial_ends_at), count(*) from rm_subscriptions
         where deleted_at is null group by 1",
    )
    .await
}

pub async fn subscriptions_by_plan(pool: &PgPool) -> Result<Counts, sqlx::Error> {
    grouped(pool, "select plan, count(*) from rm_subscriptions where deleted_at is null group by 1").await
}

pub async fn active_devices_by(pool: &PgPool, column: DeviceColumn) -> Result<Counts, sqlx::Error> {
    let sql = format!(
        "select {}, count(*) from rm_devices where status = 'active' and not subscription_deleted group by 1",
        column.as_sql()
    );
    grouped(pool, &sql).await
}

pub async fn devices_by_status(pool: &PgPool) -> Result<Counts, sqlx::Error> {
    grouped(pool, "select status, count(*) from rm_devices where not subscription_deleted group by 1").await
}

#[derive(Clone, Copy)]
pub enum DeviceColumn {
    Platform,
    AppVersion,
}

impl DeviceColumn {
    fn as_sql(self) -> &'static str {
        match self {
            DeviceColumn::Platform => "platform",
            DeviceColumn::AppVersion => "app_version",
        }
    }
}

/// Daily counts of `metrics` from `from` to `to` inclusive. `subscriptions_expired` counts
/// subscriptions (not canceled, not deleted) whose period ended that day.
pub async fn daily(pool: &PgPool, metrics: &[&str], from: NaiveDate, to: NaiveDate) -> Result<Vec<DailyCounts>, sqlx::Error> {
    let mut days: BTreeMap<NaiveDate, Counts> = BTreeMap::new();
    let mut day = from;
    while day <= to {
        days.insert(day, metrics.iter().map(|m| ((*m).to_owned(), 0)).collect());
        day += Duration::days(1);
    }
    let metric_names: Vec<String> = metrics.iter().map(|m| (*m).to_owned()).collect();
    let rows: Vec<(NaiveDate, String, i64)> = sqlx::query_as(
        "select day, metric, value from rm_daily_counts where day between $1 and $2 and metric = any($3)",
    )
    .bind(from)
    .bind(to)
    .bind(&metric_names)
    .fetch_all(pool)
    .await?;
    for (day, metric, value) in rows {
        if let Some(counts) = days.get_mut(&day) {
            counts.insert(metric, value);
        }
    }
    if metrics.contains(&"subscriptions_expired") {
        let now: DateTime<Utc> = Utc::now();
        let expired: Vec<(NaiveDate, i64)> = sqlx::query_as(
            "select (expires_at at time zone 'utc')::date, count(*) from rm_subscriptions
             where deleted_at is null and status <> 'canceled' and expires_at <= $3
               and (expires_at at time zone 'utc')::date between $1 and $2
             group by 1",
        )
        .bind(from)
        .bind(to)
        .bind(now)
        .fetch_all(pool)
        .await?;
        for (day, value) in expired {
            if let Some(counts) = days.get_mut(&day) {
                counts.insert("subscriptions_expired".into(), value);
            }
        }
    }
    Ok(days.into_iter().map(|(day, counts)| DailyCounts { day, counts }).collect())
}
