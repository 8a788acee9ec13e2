//! `/admin`: counts by status, plan and policy (and of those in grace), active devices,
//! floating seats per policy (now, today's peak and the last 7 days'), daily activations and
//! new subscriptions as SVG charts over a chosen range, what expires in the next 30 days,
//! and the read side's health (the figures `/health` reports).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate, Utc};
use serde::Deserialize;

use super::charts::{self, Chart};
use super::error::PanelError;
use super::forms::PageQuery;
use super::layout::Layout;
use super::session::Reader;
use super::subscriptions::Row;
use crate::app::{App, SharedApp};
use crate::read;
use crate::read::analytics::{self as queries, Counts, Range};
use crate::read::subscriptions::SubscriptionFilter;

#[derive(Deserialize, Default)]
pub struct RangeQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// A floating policy's seats: held now, today's peak, and each of the last 7 days' peaks.
pub struct FloatingSeats {
    pub policy_id: String,
    pub policy: String,
    pub in_use: i64,
    pub peak_today: i64,
    /// Oldest first, today last: (`YYYY-MM-DD`, peak).
    pub last_days: Vec<(String, i64)>,
}

/// Days of peaks the dashboard shows, today included.
const SEAT_DAYS: i64 = 7;

pub struct ProjectorLag {
    pub name: String,
    pub lag: i64,
    pub parked: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/dashboard.html")]
pub struct DashboardPage {
    layout: Layout,
    from: String,
    to: String,
    range_error: Option<String>,
    subscriptions_total: i64,
    active_devices: i64,
    by_status: Counts,
    by_plan: Counts,
    /// `<product>/<policy>` (or `custom`) → live subscriptions following it.
    by_policy: Counts,
    /// Expired by their period but still valid within their policy's grace.
    in_grace: i64,
    /// Only when some policy is floating.
    floating_seats: Vec<FloatingSeats>,
    /// Off (`ENABLE_ANALYTICS=false`): the page says so instead of drawing charts.
    analytics_enabled: bool,
    charts: Vec<Chart>,
    expiring: Vec<Row>,
    bus_kind: &'static str,
    bus_ok: bool,
    publisher_error: Option<String>,
    projectors: Vec<ProjectorLag>,
    width: i64,
    height: i64,
}

fn day(field: &str, text: &str) -> Result<Option<NaiveDate>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| format!("{field}: a day as YYYY-MM-DD"))
}

pub async fn page(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    PageQuery(query): PageQuery<RangeQuery>,
) -> Result<Response, PanelError> {
    let today = Utc::now().date_naive();
    let range = day("From", &query.from)
        .and_then(|from| Ok((from, day("To", &query.to)?)))
        .and_then(|(from, to)| {
            Range { from, to }
                .days(today)
                .map_err(|e| format!("Range: {e}"))
        });
    let (range_error, (from, to)) = match range {
        Ok(days) => (None, days),
        Err(message) => (Some(message), (today - Duration::days(29), today)),
    };
    let analytics_enabled = app.config.enable_analytics;
    let daily = if analytics_enabled {
        queries::daily(&app.db, &["activations", "subscriptions_created"], from, to).await?
    } else {
        Vec::new()
    };
    let series = |metric: &str| -> Vec<(NaiveDate, i64)> {
        daily
            .iter()
            .map(|d| (d.day, d.counts.get(metric).copied().unwrap_or(0)))
            .collect()
    };
    let by_status = queries::subscriptions_by_status(&app.db).await?;
    let book = app.policies.book();
    let (_, by_policy) = queries::subscriptions_by_policy(&app.db, &book).await?;
    let in_grace = queries::subscriptions_in_grace(&app.db, &book).await?;
    let devices = queries::devices_by_status(&app.db).await?;
    let floating_seats =
        queries::floating_seats(&app.db, &book, today - Duration::days(SEAT_DAYS - 1), today)
            .await?
            .into_iter()
            .map(|seats| FloatingSeats {
                policy_id: seats.policy_id.to_string(),
                peak_today: seats.daily.last().map_or(seats.in_use, |d| d.peak),
                last_days: seats
                    .daily
                    .iter()
                    .map(|d| (d.day.to_string(), d.peak))
                    .collect(),
                policy: seats.policy,
                in_use: seats.in_use,
            })
            .collect();
    let status = if range_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let last_error = app
        .publisher_status
        .last_error
        .lock()
        .ok()
        .and_then(|e| e.clone());
    let page = DashboardPage {
        layout: Layout::signed_in(&app, &session, "dashboard").await,
        from: if query.from.is_empty() {
            from.to_string()
        } else {
            query.from.clone()
        },
        to: if query.to.is_empty() {
            to.to_string()
        } else {
            query.to.clone()
        },
        range_error,
        subscriptions_total: by_status.values().sum(),
        active_devices: devices.get("active").copied().unwrap_or(0),
        by_status,
        by_plan: queries::subscriptions_by_plan(&app.db).await?,
        by_policy,
        in_grace,
        floating_seats,
        analytics_enabled,
        charts: if !analytics_enabled {
            Vec::new()
        } else {
            vec![
                charts::bars(
                    "activations-chart",
                    "Activations per day",
                    "bar",
                    &series("activations"),
                ),
                charts::bars(
                    "created-chart",
                    "New subscriptions per day",
                    "bar-alt",
                    &series("subscriptions_created"),
                ),
            ]
        },
        expiring: expiring_soon(&app).await?,
        bus_kind: app.bus.name(),
        bus_ok: app.bus.is_connected(),
        publisher_error: last_error,
        projectors: lag(&app).await?,
        width: charts::WIDTH,
        height: charts::HEIGHT,
    };
    Ok((status, page).into_response())
}

/// Live subscriptions whose period ends in the next 30 days, soonest first.
async fn expiring_soon(app: &App) -> Result<Vec<Row>, PanelError> {
    let now = Utc::now();
    let filter = SubscriptionFilter {
        status: None,
        plan: None,
        product: None,
        policy: None,
        q: None,
        expiring_before: Some(now + Duration::days(30)),
        sort: Some("expires_at".into()),
        page: Some(1),
        per_page: Some(read::MAX_PER_PAGE),
        min_position: None,
    };
    let book = app.policies.book();
    let (rows, _) = read::subscriptions::list(&app.db, &filter, &book).await?;
    Ok(rows
        .iter()
        .filter(|row| row.expires_at.is_some_and(|t| t > now))
        .take(20)
        .map(|row| Row::new(row, &book, now))
        .collect())
}

/// Each projector's lag: events in the log it has not applied yet.
async fn lag(app: &App) -> Result<Vec<ProjectorLag>, PanelError> {
    let total = app.event_count.total(&app.db).await?;
    Ok(
        read::progress::projectors(&app.db, app.config.enable_analytics)
            .await?
            .into_iter()
            .map(|p| ProjectorLag {
                name: p.name.to_owned(),
                lag: (total - p.events_applied).max(0),
                parked: p.parked,
            })
            .collect(),
    )
}
