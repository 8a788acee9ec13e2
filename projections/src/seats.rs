//! `rm_policy_seats` (migration 0019): seats in use under each policy, day by day, with each
//! day's peak, for the dashboard's floating seats. The `subscriptions` projector records a
//! change whenever a subscription's seat count moves (it copies the counts the lease events
//! carry); this module turns the changes into day rows.
//!
//! A day without a change has no row: it held what the row before it ended with. So a live
//! batch needs only each policy's latest row to go on from, and a replay starts from none.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{FromRow, QueryBuilder};
use uuid::Uuid;

use flowlytix_eventstore::{with_conn, Conn};

/// A row of `rm_policy_seats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct PolicySeatDay {
    pub policy_id: Uuid,
    pub day: NaiveDate,
    /// Held at the end of the day (on the latest row: now).
    pub in_use: i32,
    /// The most held at once that day.
    pub peak: i32,
}

/// Seats taken (positive) or given back (negative) under a policy at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeatChange {
    policy_id: Uuid,
    at: DateTime<Utc>,
    delta: i32,
}

/// The seat changes of a batch (or a replay), in log order.
#[derive(Debug, Default)]
pub struct SeatChanges(Vec<SeatChange>);

impl SeatChanges {
    pub fn record(&mut self, policy_id: Uuid, at: DateTime<Utc>, delta: i32) {
        if delta != 0 {
            self.0.push(SeatChange {
                policy_id,
                at,
                delta,
            });
        }
    }

    /// Folds the changes into the rows of their days, going on from each policy's latest
    /// stored row, and writes those rows.
    pub async fn save(self, mut db: Conn<'_>) -> Result<(), sqlx::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let policies: BTreeSet<Uuid> = self.0.iter().map(|c| c.policy_id).collect();
        let latest = latest_rows(db.reborrow(), &policies).await?;
        let rows = fold(latest, &self.0);
        for chunk in rows.chunks(1000) {
            with_conn!(db.reborrow(), c => {
                let mut query =
                    QueryBuilder::new("insert into rm_policy_seats (policy_id, day, in_use, peak) ");
                query.push_values(chunk, |mut row, r| {
                    row.push_bind(r.policy_id)
                        .push_bind(r.day)
                        .push_bind(r.in_use)
                        .push_bind(r.peak);
                });
                query.push(
                    " on conflict (policy_id, day) do update \
                     set in_use = excluded.in_use, peak = excluded.peak",
                );
                query.build().execute(&mut *c).await?;
            });
        }
        Ok(())
    }
}

/// Each policy's latest row.
async fn latest_rows(
    db: Conn<'_>,
    policies: &BTreeSet<Uuid>,
) -> Result<HashMap<Uuid, PolicySeatDay>, sqlx::Error> {
    let rows: Vec<PolicySeatDay> = with_conn!(db, c => {
        let mut query = QueryBuilder::new(
            "select policy_id, day, in_use, peak from rm_policy_seats s \
             where day = (select max(day) from rm_policy_seats t where t.policy_id = s.policy_id) \
             and policy_id in (",
        );
        let mut list = query.separated(", ");
        for id in policies {
            list.push_bind(*id);
        }
        query.push(")");
        query.build_query_as().fetch_all(&mut *c).await?
    });
    Ok(rows.into_iter().map(|r| (r.policy_id, r)).collect())
}

/// The day rows the changes leave, from each policy's `latest` row. A change dated before
/// that row's day (a late event) counts on that day: the rows only move forward.
fn fold(latest: HashMap<Uuid, PolicySeatDay>, changes: &[SeatChange]) -> Vec<PolicySeatDay> {
    let mut current = latest;
    let mut touched: BTreeMap<(Uuid, NaiveDate), PolicySeatDay> = BTreeMap::new();
    for change in changes {
        let day = change.at.date_naive();
        let row = current
            .entry(change.policy_id)
            .or_insert_with(|| PolicySeatDay {
                policy_id: change.policy_id,
                day,
                in_use: 0,
                peak: 0,
            });
        if day > row.day {
            // A new day starts with what the last one ended with.
            *row = PolicySeatDay {
                day,
                peak: row.in_use,
                ..*row
            };
        }
        row.in_use = (row.in_use + change.delta).max(0);
        row.peak = row.peak.max(row.in_use);
        touched.insert((row.policy_id, row.day), *row);
    }
    touched.into_values().collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, hour, 0, 0).unwrap()
    }

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, day).unwrap()
    }

    #[test]
    fn a_day_keeps_its_peak_and_the_next_starts_from_where_it_ended() {
        let policy = Uuid::from_u128(1);
        let mut changes = SeatChanges::default();
        for (day, hour, delta) in [(1, 9, 1), (1, 10, 1), (1, 11, 1), (1, 12, -2), (2, 9, 1)] {
            changes.record(policy, at(day, hour), delta);
        }
        let rows = fold(HashMap::new(), &changes.0);
        assert_eq!(
            rows,
            vec![
                PolicySeatDay {
                    policy_id: policy,
                    day: date(1),
                    in_use: 1,
                    peak: 3
                },
                PolicySeatDay {
                    policy_id: policy,
                    day: date(2),
                    in_use: 2,
                    peak: 2
                },
            ]
        );
    }

    #[test]
    fn a_batch_goes_on_from_the_latest_row_and_a_late_change_counts_on_its_day() {
        let policy = Uuid::from_u128(1);
        let latest = PolicySeatDay {
            policy_id: policy,
            day: date(5),
            in_use: 4,
            peak: 6,
        };
        let mut changes = SeatChanges::default();
        changes.record(policy, at(4, 23), -1);
        changes.record(policy, at(5, 8), 0);
        let rows = fold(HashMap::from([(policy, latest)]), &changes.0);
        assert_eq!(
            rows,
            vec![PolicySeatDay {
                in_use: 3,
                ..latest
            }]
        );
    }
}
