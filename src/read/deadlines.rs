//! The subscriptions that may have a deadline notice due, from `rm_subscriptions` and its
//! `notice_*` columns (migration 0017): what the deadline scheduler
//! (`crate::subscriptions::deadlines`) hands to the aggregate, which alone decides.
//!
//! Every query runs over a partial index whose rows all wait for some notice, so what a
//! pass reads is what is due (plus what was recorded but not yet projected), not every
//! subscription. Reading one too many costs a command that records nothing; missing one
//! would lose a notice, so the deadline below is spelled as the aggregate's
//! `record_deadlines` chooses it, and a unit test holds the two together.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use flowlytix_aggregates::SubscriptionId;
use flowlytix_projections::{with_conn, Conn};
use sqlx::QueryBuilder;
use uuid::Uuid;

/// The deadline in force: the trial's end while trialing, unless the period ends first;
/// otherwise the period's end. The same text as the indexes of migration 0017, so that
/// they serve these queries.
const DEADLINE: &str = "(case when status = 'trialing' and trial_ends_at is not null \
     and (expires_at is null or trial_ends_at <= expires_at) \
     then trial_ends_at else expires_at end)";

/// Only a usable subscription has deadline notices (a suspended or canceled one expires
/// silently); the indexes hold no other.
const USABLE: &str = "deleted_at is null and status in ('trialing', 'active', 'past_due')";

/// What one pass looks for.
#[derive(Debug, Clone)]
pub struct DueWindow<'a> {
    pub now: DateTime<Utc>,
    /// The instant up to which an earlier pass found every due reminder of subscriptions
    /// already reminded once; `None` looks at all of them (a new leader's first pass).
    pub covered: Option<DateTime<Utc>>,
    /// Days before a deadline that a reminder is due (`EXPIRY_REMINDER_DAYS`).
    pub reminder_days: &'a [u32],
}

/// The subscriptions that may have a notice due at `window.now`.
pub async fn due(
    db: Conn<'_>,
    window: &DueWindow<'_>,
) -> Result<BTreeSet<SubscriptionId>, sqlx::Error> {
    let now = window.now;
    let days_before = |days: u32| TimeDelta::days(i64::from(days));
    let longest = window.reminder_days.iter().copied().max().unwrap_or(0);
    // (a) No notice yet for the deadline, and its longest reminder (or the deadline) has come.
    let mut queries = vec![due_query(
        &format!(
            "notice_reminded_for is distinct from {DEADLINE} \
             and notice_expired_for is distinct from {DEADLINE}"
        ),
        None,
        now + days_before(longest),
        None,
    )];
    let reminded = format!(
        "notice_reminded_for = {DEADLINE} and notice_expired_for is distinct from {DEADLINE}"
    );
    // (b) Reminded, and the deadline has passed.
    queries.push(due_query(&reminded, None, now, None));
    // (c) Reminded, and a nearer reminder came since the last pass: its instant (the
    // deadline less `days`) is in (covered, now].
    for &days in window.reminder_days {
        queries.push(due_query(
            &reminded,
            window.covered.map(|covered| covered + days_before(days)),
            now + days_before(days),
            Some(days),
        ));
    }
    let mut found = BTreeSet::new();
    with_conn!(db, c => {
        // (d) Expired in grace for the deadline in force, and the grace has ended.
        let mut grace = QueryBuilder::new(format!(
            "select id from rm_subscriptions where {USABLE} \
             and notice_expired_for = {DEADLINE} and notice_grace_until is not null \
             and notice_grace_ended_for is distinct from notice_expired_for \
             and notice_grace_until <= "
        ));
        grace.push_bind(now);
        let ids: Vec<Uuid> = grace.build_query_scalar().fetch_all(&mut *c).await?;
        found.extend(ids);
        for (condition, after, until, nearer_than) in &queries {
            let mut query = QueryBuilder::new(format!(
                "select id from rm_subscriptions where {USABLE} and {condition} and {DEADLINE} <= "
            ));
            query.push_bind(*until);
            if let Some(after) = after {
                query.push(format!(" and {DEADLINE} > ")).push_bind(*after);
            }
            if let Some(days) = nearer_than {
                query
                    .push(" and notice_reminded_days > ")
                    .push_bind(i64::from(*days));
            }
            let ids: Vec<Uuid> = query.build_query_scalar().fetch_all(&mut *c).await?;
            found.extend(ids);
        }
    });
    Ok(found.into_iter().map(SubscriptionId).collect())
}

/// A condition on the notices, the deadline's bounds `(after, until]`, and for reminders
/// the days they must be nearer than.
type DueQuery = (String, Option<DateTime<Utc>>, DateTime<Utc>, Option<u32>);

fn due_query(
    condition: &str,
    after: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
    nearer_than: Option<u32>,
) -> DueQuery {
    (condition.to_owned(), after, until, nearer_than)
}
