//! The status in force (`effective_status`) has one rule in Rust (the aggregate) and one
//! rendering in SQL (lists and analytics filter and group by it): they must agree on every
//! combination, on both backends.

use chrono::{Duration, TimeZone, Utc};
use flowlytix_aggregates::subscription::effective_status;
use flowlytix_aggregates::Status;
use flowlytix_server::read::effective_status_in_sql;
use flowlytix_server::store;

use crate::helpers::fresh_database_url;

#[tokio::test]
async fn the_sql_status_in_force_agrees_with_the_aggregate_on_every_combination() {
    let db = store::connect(&fresh_database_url().await, false)
        .await
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let instants = [
        None,
        Some(now - Duration::days(1)),
        Some(now),
        Some(now + Duration::seconds(1)),
    ];
    let statuses = [
        Status::Trialing,
        Status::Active,
        Status::PastDue,
        Status::Suspended,
        Status::Canceled,
        Status::Expired,
    ];
    let mut checked = 0;
    for status in statuses {
        for expires_at in instants {
            for trial_ends_at in instants {
                let rust = effective_status(status, expires_at, trial_ends_at, now);
                let sql =
                    effective_status_in_sql(&db, status.as_str(), expires_at, trial_ends_at, now)
                        .await
                        .unwrap();
                assert_eq!(
                    sql,
                    rust.as_str(),
                    "{status:?}, expires {expires_at:?}, trial ends {trial_ends_at:?}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6 * 4 * 4);
}
