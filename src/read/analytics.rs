//! Analytics: current counts grouped from the read models, daily counts over a range from
//! `rm_daily_counts` (plus expirations, which happen by time, from expires_at), and floating
//! seats per policy and day from `rm_policy_seats`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use flowlytix_aggregates::policy::{ExpirationStrategy, LicenseModel};
use flowlytix_aggregates::values::{is_supported_day, EARLIEST_DAY};
use flowlytix_aggregates::{PolicyBook, PolicyId};
use flowlytix_projections::{with_db, Db};
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// First day (inclusive), default 29 days before `to`; 1970-01-01 to 9999-12-31.
    #[param(value_type = Option<String>, format = Date, pattern = r"^\d{4}-\d{2}-\d{2}$")]
    #[serde(default, deserialize_with = "iso_day")]
    pub from: Option<NaiveDate>,
    /// Last day (inclusive), default today (UTC); 1970-01-01 to 9999-12-31.
    #[param(value_type = Option<String>, format = Date, pattern = r"^\d{4}-\d{2}-\d{2}$")]
    #[serde(default, deserialize_with = "iso_day")]
    pub to: Option<NaiveDate>,
}

/// A day as `YYYY-MM-DD` exactly, as the document's pattern says (chrono alone would also
/// take signed, longer or unpadded years and months).
fn iso_day<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(serde::de::Error::custom("a day is YYYY-MM-DD"));
    }
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub const MAX_RANGE_DAYS: i64 = 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("`from` must not be after `to`")]
    Reversed,
    #[error("a range covers at most {MAX_RANGE_DAYS} days")]
    TooLong,
    #[error("`from` and `to` must lie between 1970-01-01 and 9999-12-31")]
    OutOfRange,
}

impl Range {
    /// The inclusive day range, or why it is not acceptable. Every day of an accepted range
    /// is a supported day, so no date arithmetic on it can overflow.
    pub fn days(&self, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), RangeError> {
        let to = self.to.unwrap_or(today);
        let from = match self.from {
            Some(from) => from,
            None => to
                .checked_sub_signed(Duration::days(29))
                .ok_or(RangeError::OutOfRange)?
                .max(EARLIEST_DAY),
        };
        if !is_supported_day(from) || !is_supported_day(to) {
            return Err(RangeError::OutOfRange);
        }
        if from > to {
            return Err(RangeError::Reversed);
        }
        if (to - from).num_days() >= MAX_RANGE_DAYS {
            return Err(RangeError::TooLong);
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
async fn grouped(db: &Db, sql: &str) -> Result<Counts, sqlx::Error> {
    let rows: Vec<(Option<String>, i64)> =
        with_db!(db, pool => sqlx::query_as(sql).fetch_all(pool).await?);
    Ok(counts(rows))
}

fn counts(rows: Vec<(Option<String>, i64)>) -> Counts {
    rows.into_iter()
        .map(|(k, n)| (k.unwrap_or_else(|| "unknown".into()), n))
        .collect()
}

/// Live subscriptions by the status in force now (expired ones included as `expired`).
pub async fn subscriptions_by_status(db: &Db) -> Result<Counts, sqlx::Error> {
    let now = Utc::now();
    let rows: Vec<(Option<String>, i64)> = with_db!(db, pool => {
        let mut query = QueryBuilder::new("select ");
        crate::push_effective_status!(query, now);
        query.push(", count(*) from rm_subscriptions where deleted_at is null group by 1");
        query.build_query_as().fetch_all(pool).await?
    });
    Ok(counts(rows))
}

pub async fn subscriptions_by_plan(db: &Db) -> Result<Counts, sqlx::Error> {
    grouped(
        db,
        "select plan, count(*) from rm_subscriptions where deleted_at is null group by 1",
    )
    .await
}

/// Live subscriptions by the policy they follow, labelled `<product code>/<policy code>`
/// (`custom` for none), and by product (`custom` likewise). Policies are in memory: the
/// query groups by id and the labels come from `policies`.
pub async fn subscriptions_by_policy(
    db: &Db,
    policies: &PolicyBook,
) -> Result<(Counts, Counts), sqlx::Error> {
    let rows: Vec<(Option<Uuid>, i64)> = with_db!(db, pool => {
        sqlx::query_as(
            "select policy_id, count(*) from rm_subscriptions where deleted_at is null group by 1",
        )
        .fetch_all(pool)
        .await?
    });
    let mut by_policy = Counts::new();
    let mut by_product = Counts::new();
    for (id, count) in rows {
        let terms = id.and_then(|id| policies.get(PolicyId(id)));
        let (product, policy) = match terms {
            Some(terms) => (
                terms.product_code.to_string(),
                format!("{}/{}", terms.product_code, terms.code),
            ),
            None => ("custom".to_owned(), "custom".to_owned()),
        };
        *by_policy.entry(policy).or_default() += count;
        *by_product.entry(product).or_default() += count;
    }
    Ok((by_product, by_policy))
}

/// Live subscriptions whose period has ended but whose policy's grace has not (they count
/// as `expired` by status too).
pub async fn subscriptions_in_grace(db: &Db, policies: &PolicyBook) -> Result<i64, sqlx::Error> {
    let now = Utc::now();
    let mut total = 0;
    for terms in policies.iter() {
        let gives_grace = terms.settings.expiration_strategy == ExpirationStrategy::AllowGrace;
        let Some(grace) = terms.settings.grace_period.as_ref().filter(|_| gives_grace) else {
            continue;
        };
        // Ended by now, and not so long ago that the grace ran out.
        let Some(earliest) = grace.before(now) else {
            continue;
        };
        let count: i64 = with_db!(db, pool => {
            sqlx::query_scalar(
                "select count(*) from rm_subscriptions
                 where deleted_at is null and policy_id = $1
                   and status in ('trialing', 'active', 'past_due')
                   and expires_at <= $2 and expires_at > $3",
            )
            .bind(terms.policy_id.as_uuid())
            .bind(now)
            .bind(earliest)
            .fetch_one(pool)
            .await?
        });
        total += count;
    }
    Ok(total)
}

pub async fn active_devices_by(db: &Db, column: DeviceColumn) -> Result<Counts, sqlx::Error> {
    let sql = format!(
        "select {}, count(*) from rm_devices
         where status = 'active' and not subscription_deleted group by 1",
        column.as_sql()
    );
    grouped(db, &sql).await
}

pub async fn devices_by_status(db: &Db) -> Result<Counts, sqlx::Error> {
    grouped(
        db,
        "select status, count(*) from rm_devices where not subscription_deleted group by 1",
    )
    .await
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
pub async fn daily(
    db: &Db,
    metrics: &[&str],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DailyCounts>, sqlx::Error> {
    let mut days: BTreeMap<NaiveDate, Counts> = BTreeMap::new();
    for day in from.iter_days().take_while(|day| *day <= to) {
        days.insert(day, metrics.iter().map(|m| ((*m).to_owned(), 0)).collect());
    }
    let rows: Vec<(NaiveDate, String, i64)> = with_db!(db, pool => {
        sqlx::query_as("select day, metric, value from rm_daily_counts where day >= $1 and day <= $2")
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?
    });
    for (day, metric, value) in rows {
        if let Some(counts) = days
            .get_mut(&day)
            .filter(|_| metrics.contains(&metric.as_str()))
        {
            counts.insert(metric, value);
        }
    }
    if metrics.contains(&"subscriptions_expired") {
        let now: DateTime<Utc> = Utc::now();
        let start = from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        // The instant after `to`'s last one (`to` is at most 9999-12-31: no overflow).
        let end = to
            .succ_opt()
            .unwrap_or(to)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        let ended: Vec<(DateTime<Utc>,)> = with_db!(db, pool => {
            sqlx::query_as(
                "select expires_at from rm_subscriptions
                 where deleted_at is null and status <> 'canceled' and expires_at <= $3
                   and expires_at >= $1 and expires_at < $2",
            )
            .bind(start)
            .bind(end)
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        for (expires_at,) in ended {
            if let Some(count) = days
                .get_mut(&expires_at.date_naive())
                .and_then(|c| c.get_mut("subscriptions_expired"))
            {
                *count += 1;
            }
        }
    }
    Ok(days
        .into_iter()
        .map(|(day, counts)| DailyCounts { day, counts })
        .collect())
}

/// The seats of a floating policy: held now, and day by day.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicySeats {
    pub policy_id: Uuid,
    /// `<product code>/<policy code>`.
    pub policy: String,
    /// Seats held now (live leases of its subscriptions).
    pub in_use: i64,
    /// Every day of the range, oldest first.
    pub daily: Vec<SeatDay>,
}

/// One day's seats under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct SeatDay {
    pub day: NaiveDate,
    /// The most seats held at once that day.
    pub peak: i64,
    /// Held at the end of the day (today: now).
    pub in_use: i64,
}

/// The seats of every floating policy from `from` to `to` inclusive, by policy label; empty
/// when no policy is floating.
pub async fn floating_seats(
    db: &Db,
    policies: &PolicyBook,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<PolicySeats>, sqlx::Error> {
    let mut floating: Vec<(Uuid, String)> = policies
        .iter()
        .filter(|terms| terms.settings.license_model == LicenseModel::Floating)
        .map(|terms| {
            let label = format!("{}/{}", terms.product_code, terms.code);
            (terms.policy_id.as_uuid(), label)
        })
        .collect();
    if floating.is_empty() {
        return Ok(Vec::new());
    }
    floating.sort_by(|a, b| a.1.cmp(&b.1));
    // The range's rows, and the last row before it (the first days may have none of their
    // own: they held what it ended with).
    let rows: Vec<(Uuid, NaiveDate, i32, i32)> = with_db!(db, pool => {
        sqlx::query_as(
            "select policy_id, day, in_use, peak from rm_policy_seats s
             where (day >= $1 and day <= $2)
                or day = (select max(day) from rm_policy_seats t
                          where t.policy_id = s.policy_id and t.day < $1)
             order by day",
        )
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?
    });
    let now: Vec<(Uuid, i32)> = with_db!(db, pool => {
        sqlx::query_as(
            "select policy_id, in_use from rm_policy_seats s
             where day = (select max(day) from rm_policy_seats t where t.policy_id = s.policy_id)",
        )
        .fetch_all(pool)
        .await?
    });
    Ok(floating
        .into_iter()
        .map(|(policy_id, policy)| {
            let own: Vec<(NaiveDate, i64, i64)> = rows
                .iter()
                .filter(|row| row.0 == policy_id)
                .map(|row| (row.1, i64::from(row.3), i64::from(row.2)))
                .collect();
            PolicySeats {
                policy_id,
                policy,
                in_use: now
                    .iter()
                    .find(|row| row.0 == policy_id)
                    .map_or(0, |row| i64::from(row.1)),
                daily: seat_days(&own, from, to),
            }
        })
        .collect())
}

/// Every day from `from` to `to`, from the rows `(day, peak, in_use)` in day order: a day
/// without a row held what the one before it ended with.
fn seat_days(rows: &[(NaiveDate, i64, i64)], from: NaiveDate, to: NaiveDate) -> Vec<SeatDay> {
    let mut rows = rows.iter().peekable();
    let mut carried = 0;
    from.iter_days()
        .take_while(|day| *day <= to)
        .map(|day| {
            let mut shown = SeatDay {
                day,
                peak: carried,
                in_use: carried,
            };
            while let Some((row_day, peak, in_use)) = rows.next_if(|row| row.0 <= day) {
                carried = *in_use;
                shown = if *row_day == day {
                    SeatDay {
                        day,
                        peak: *peak,
                        in_use: *in_use,
                    }
                } else {
                    SeatDay {
                        day,
                        peak: *in_use,
                        in_use: *in_use,
                    }
                };
            }
            shown
        })
        .collect()
}

#[cfg(test)]
mod seat_tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    #[test]
    fn days_without_a_row_hold_what_the_last_row_ended_with() {
        let rows = [(day(1), 5, 2), (day(3), 4, 4)];
        let shown: Vec<(u32, i64, i64)> = seat_days(&rows, day(2), day(5))
            .iter()
            .map(|d| (chrono::Datelike::day(&d.day), d.peak, d.in_use))
            .collect();
        assert_eq!(shown, vec![(2, 2, 2), (3, 4, 4), (4, 4, 4), (5, 4, 4)]);
        assert!(seat_days(&[], day(1), day(2)).iter().all(|d| d.peak == 0));
    }
}
