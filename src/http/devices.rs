//! `/api/v1/devices/{id}`: admins see, annotate and deactivate single devices.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use flowlytix_aggregates::DeviceId;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{RequireAdmin, RequireReader};
use super::error::{ApiError, Problem};
use super::extract::{with_consistency, ApiJson, ApiPath, ApiQuery, RequestContext};
use super::views::{DevicePage, DeviceView};
use crate::app::{App, SharedApp};
use crate::read;
use crate::read::consistency::wait_for_position;
use crate::read::devices::DeviceFilter;
use crate::read::leases::DeviceLeases;
use crate::subscriptions::DeviceFound;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(list_devices))
        .routes(routes!(get_device, update_device, deactivate_device))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeviceRequest {
    pub name: Option<String>,
    pub notes: Option<String>,
}

/// A device as a response, with its lease and the position of the command that produced it.
async fn device_view(app: &App, found: DeviceFound) -> Result<Json<DeviceView>, ApiError> {
    let leases = DeviceLeases::of(&app.db, &[found.device.id.as_uuid()]).await?;
    let mut view = DeviceView::new(&found.subscription, &found.device, &leases, Utc::now());
    view.position = found.position;
    Ok(Json(view))
}

/// List devices (from the read model), filtered and paged. With `min_position`, waits (up
/// to 5 s) until the list includes that write.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    params(DeviceFilter), responses((status = 200, body = DevicePage), (status = 400, body = Problem)))]
async fn list_devices(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(filter): ApiQuery<DeviceFilter>,
) -> Result<Response, ApiError> {
    let consistent = wait_for_position(&app.db, "subscriptions", filter.min_position).await?;
    let (rows, total) = read::devices::list(&app.db, &filter).await?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let leases = DeviceLeases::of(&app.db, &ids).await?;
    let now = Utc::now();
    let paging = read::Paging {
        page: filter.page,
        per_page: filter.per_page,
    };
    let page = DevicePage {
        items: rows
            .into_iter()
            .map(|row| DeviceView::from_record(row, &leases, now))
            .collect(),
        total,
        page: paging.page(),
        per_page: paging.per_page(),
    };
    Ok(with_consistency(Json(page).into_response(), consistent))
}

/// One device, active or not, of a subscription that is not deleted.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = DeviceView), (status = 404, body = Problem)))]
async fn get_device(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DeviceView>, ApiError> {
    device_view(&app, app.subscriptions.device(DeviceId(id)).await?).await
}

/// Rename a device or note something about it.
#[utoipa::path(put, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateDeviceRequest,
    responses((status = 200, body = DeviceView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_device(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateDeviceRequest>,
) -> Result<Json<DeviceView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let found = app
        .subscriptions
        .update_device(DeviceId(id), body.name, body.notes, metadata)
        .await?;
    device_view(&app, found).await
}

/// Deactivate a device, freeing its slot. Its tokens stop validating online at once.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = Problem), (status = 409, body = Problem, description = "DEVICE_NOT_ACTIVE")))]
async fn deactivate_device(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DeviceView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let found = app
        .subscriptions
        .deactivate_device(DeviceId(id), metadata)
        .await?;
    device_view(&app, found).await
}
