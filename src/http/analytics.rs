//! `/api/v1/analytics`: the dashboard and its two halves, from the read models.

use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::RequireReader;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;
use crate::app::SharedApp;
use crate::read::analytics::{
    self as queries, Counts, DailyCounts, DeviceColumn, PolicySeats, Range,
};

/// With `enabled` false (`ENABLE_ANALYTICS=false`) every route answers 404
/// `ANALYTICS_DISABLED`: no projector keeps the figures, so none are served stale.
pub fn router(enabled: bool) -> OpenApiRouter<SharedApp> {
    let router = OpenApiRouter::new()
        .routes(routes!(dashboard))
        .routes(routes!(subscription_analytics))
        .routes(routes!(device_analytics));
    if enabled {
        router
    } else {
        router.route_layer(axum::middleware::from_fn(
            |_: axum::extract::Request, _: axum::middleware::Next| async {
                ApiError::not_found(
                    "ANALYTICS_DISABLED",
                    "analytics are turned off on this server (ENABLE_ANALYTICS=false)",
                )
            },
        ))
    }
}

#[derive(Serialize, ToSchema)]
pub struct Dashboard {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub subscriptions_total: i64,
    pub active_devices_total: i64,
    #[schema(value_type = Object)]
    pub subscriptions_by_status: Counts,
    #[schema(value_type = Object)]
    pub subscriptions_by_plan: Counts,
    /// By product code (`custom`: following no policy).
    #[schema(value_type = Object)]
    pub subscriptions_by_product: Counts,
    /// By `<product code>/<policy code>` (`custom`: following no policy).
    #[schema(value_type = Object)]
    pub subscriptions_by_policy: Counts,
    /// Expired, but within their policy's grace (counted as `expired` by status too).
    pub subscriptions_in_grace: i64,
    #[schema(value_type = Object)]
    pub active_devices_by_platform: Counts,
    /// Per day: activations, deactivations, subscriptions_created, subscriptions_canceled,
    /// subscriptions_expired.
    pub daily: Vec<DailyCounts>,
    /// Per floating policy: seats held now, and each day's peak (empty without one).
    pub floating_seats: Vec<PolicySeats>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionAnalytics {
    pub from: NaiveDate,
    pub to: NaiveDate,
    #[schema(value_type = Object)]
    pub by_status: Counts,
    #[schema(value_type = Object)]
    pub by_plan: Counts,
    /// By product code (`custom`: following no policy).
    #[schema(value_type = Object)]
    pub by_product: Counts,
    /// By `<product code>/<policy code>` (`custom`: following no policy).
    #[schema(value_type = Object)]
    pub by_policy: Counts,
    /// Expired, but within their policy's grace.
    pub in_grace: i64,
    /// Per day: subscriptions_created, subscriptions_canceled, subscriptions_expired.
    pub daily: Vec<DailyCounts>,
}

#[derive(Serialize, ToSchema)]
pub struct DeviceAnalytics {
    pub from: NaiveDate,
    pub to: NaiveDate,
    #[schema(value_type = Object)]
    pub by_status: Counts,
    /// Active devices.
    #[schema(value_type = Object)]
    pub by_platform: Counts,
    /// Active devices.
    #[schema(value_type = Object)]
    pub by_app_version: Counts,
    /// Per day: activations, deactivations.
    pub daily: Vec<DailyCounts>,
    /// Per floating policy: seats held now, and each day's peak (empty without one).
    pub floating_seats: Vec<PolicySeats>,
}

fn days(range: &Range) -> Result<(NaiveDate, NaiveDate), ApiError> {
    Ok(range.days(Utc::now().date_naive())?)
}

/// Counts now, and day by day over `from`..`to` (default: the last 30 days).
#[utoipa::path(get, path = "/api/v1/analytics/dashboard", tag = "analytics", security(("bearer" = [])),
    params(Range), responses((status = 200, body = Dashboard), (status = 422, body = Problem)))]
async fn dashboard(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Json<Dashboard>, ApiError> {
    let (from, to) = days(&range)?;
    let by_status = queries::subscriptions_by_status(&app.db).await?;
    let by_platform = queries::active_devices_by(&app.db, DeviceColumn::Platform).await?;
    let policies = app.policies.book();
    let (by_product, by_policy) = queries::subscriptions_by_policy(&app.db, &policies).await?;
    Ok(Json(Dashboard {
        from,
        to,
        subscriptions_total: by_status.values().sum(),
        active_devices_total: by_platform.values().sum(),
        subscriptions_by_status: by_status,
        subscriptions_by_plan: queries::subscriptions_by_plan(&app.db).await?,
        subscriptions_by_product: by_product,
        subscriptions_by_policy: by_policy,
        subscriptions_in_grace: queries::subscriptions_in_grace(&app.db, &policies).await?,
        active_devices_by_platform: by_platform,
        daily: queries::daily(
            &app.db,
            &[
                "activations",
                "deactivations",
                "subscriptions_created",
                "subscriptions_canceled",
                "subscriptions_expired",
            ],
            from,
            to,
        )
        .await?,
        floating_seats: queries::floating_seats(&app.db, &policies, from, to).await?,
    }))
}

/// Subscriptions by status and plan now; created, canceled and expired per day.
#[utoipa::path(get, path = "/api/v1/analytics/subscriptions", tag = "analytics", security(("bearer" = [])),
    params(Range), responses((status = 200, body = SubscriptionAnalytics), (status = 422, body = Problem)))]
async fn subscription_analytics(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Json<SubscriptionAnalytics>, ApiError> {
    let (from, to) = days(&range)?;
    let policies = app.policies.book();
    let (by_product, by_policy) = queries::subscriptions_by_policy(&app.db, &policies).await?;
    Ok(Json(SubscriptionAnalytics {
        from,
        to,
        by_status: queries::subscriptions_by_status(&app.db).await?,
        by_plan: queries::subscriptions_by_plan(&app.db).await?,
        by_product,
        by_policy,
        in_grace: queries::subscriptions_in_grace(&app.db, &policies).await?,
        daily: queries::daily(
            &app.db,
            &[
                "subscriptions_created",
                "subscriptions_canceled",
                "subscriptions_expired",
            ],
            from,
            to,
        )
        .await?,
    }))
}

/// Devices by status, platform and app version now; activations and deactivations per day;
/// floating seats per policy, now and each day's peak.
#[utoipa::path(get, path = "/api/v1/analytics/devices", tag = "analytics", security(("bearer" = [])),
    params(Range), responses((status = 200, body = DeviceAnalytics), (status = 422, body = Problem)))]
async fn device_analytics(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Json<DeviceAnalytics>, ApiError> {
    let (from, to) = days(&range)?;
    Ok(Json(DeviceAnalytics {
        from,
        to,
        by_status: queries::devices_by_status(&app.db).await?,
        by_platform: queries::active_devices_by(&app.db, DeviceColumn::Platform).await?,
        by_app_version: queries::active_devices_by(&app.db, DeviceColumn::AppVersion).await?,
        daily: queries::daily(&app.db, &["activations", "deactivations"], from, to).await?,
        floating_seats: queries::floating_seats(&app.db, &app.policies.book(), from, to).await?,
    }))
}
