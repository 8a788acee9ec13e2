//! Queries over the read models (lists, analytics) and the event log (the global feed), and
//! the bounded wait that lets a caller read what it just wrote.

pub mod actors;
pub mod adoption;
pub mod analytics;
pub mod catalogue;
pub mod consistency;
pub mod deadlines;
pub mod devices;
pub mod feed;
pub mod leases;
pub mod licenses;
pub mod progress;
pub mod subscriptions;
pub mod webhooks;

use chrono::{DateTime, Utc};
use flowlytix_projections::{with_db, Db};
use serde::Deserialize;
use sqlx::QueryBuilder;
use utoipa::IntoParams;

pub const MAX_PER_PAGE: u32 = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// From 1.
    pub page: Option<u32>,
    /// 1 to 200; default 20.
    pub per_page: Option<u32>,
}

impl Paging {
    pub fn page(&self) -> u32 {
        self.page.unwrap_or(1).max(1)
    }

    pub fn per_page(&self) -> u32 {
        self.per_page.unwrap_or(20).clamp(1, MAX_PER_PAGE)
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page() - 1) * i64::from(self.per_page())
    }
}

/// `%q%`, lowercased, for `lower(column) like $n escape '\'`, with the pattern characters
/// in `q` taken literally. (PostgreSQL's ILIKE does not exist in SQLite.)
pub fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Appends the status in force at `now` (the aggregate's `effective_status`, in SQL) to a
/// query being built: a usable subscription whose period or trial has ended is expired.
/// The one SQL rendering of that rule: `effective_status_in_sql` runs it, and a test holds
/// it to the aggregate's on every combination of status, period and trial.
#[macro_export]
macro_rules! push_effective_status {
    ($query:expr, $now:expr) => {
        $query
            .push("(case when status in ('trialing', 'active', 'past_due') and (expires_at <= ")
            .push_bind($now)
            .push(" or (status = 'trialing' and trial_ends_at <= ")
            .push_bind($now)
            .push(")) then 'expired' else status end)")
    };
}

/// The status `push_effective_status!` computes for one stored status, period end and trial
/// end at `now`, as the database evaluates it.
pub async fn effective_status_in_sql(
    db: &Db,
    status: &str,
    expires_at: Option<DateTime<Utc>>,
    trial_ends_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    with_db!(db, pool => {
        let mut query = QueryBuilder::new("select ");
        crate::push_effective_status!(query, now);
        query
            .push(" from (select ")
            .push_bind(status.to_owned())
            .push(" as status, ")
            .push_bind(expires_at)
            .push(" as expires_at, ")
            .push_bind(trial_ends_at)
            .push(" as trial_ends_at) as subscription");
        query.build_query_scalar().fetch_one(pool).await
    })
}
