//! `/api/v1/entitlements`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::entitlement::EntitlementState;
use flowlytix_aggregates::{Entitlement, EntitlementId};
use flowlytix_projections::catalogue::EntitlementRecord;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{created, CatalogueDeleted};
use crate::app::SharedApp;
use crate::catalogue::{CreateEntitlementRequest, UpdateEntitlementRequest};
use crate::http::access::{RequireAdmin, RequireReader};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{with_consistency, ApiJson, ApiPath, ApiQuery, RequestContext};
use crate::http::idempotency::IdempotencyKeyHeader;
use crate::read::catalogue::CatalogueQuery;
use crate::read::consistency::wait_for_position;
use crate::store::Committed;

/// An entitlement: a feature a license may unlock, named by its code.
#[derive(Serialize, ToSchema)]
pub struct EntitlementView {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
    /// The event-log position this state reached (on command responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl EntitlementView {
    fn new(state: &EntitlementState, version: u64) -> Self {
        Self {
            id: state.id.as_uuid(),
            code: state.code.to_string(),
            name: state.name.clone(),
            created_at: state.created_at,
            updated_at: state.updated_at,
            version,
            position: None,
        }
    }

    fn committed(committed: &Committed<Entitlement>) -> Result<Self, ApiError> {
        let state = committed
            .aggregate
            .state()
            .ok_or_else(|| ApiError::internal("a committed entitlement has no state"))?;
        let mut view = Self::new(state, committed.version);
        view.position = Some(committed.position);
        Ok(view)
    }
}

impl From<EntitlementRecord> for EntitlementView {
    fn from(row: EntitlementRecord) -> Self {
        Self {
            id: row.id,
            code: row.code,
            name: row.name,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version.max(0) as u64,
            position: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EntitlementPage {
    pub items: Vec<EntitlementView>,
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

/// Create an entitlement. Its id derives from its code, so two creations with one code
/// make one entitlement: the second is refused (409 `ENTITLEMENT_EXISTS`).
#[utoipa::path(post, path = "/api/v1/entitlements", tag = "catalogue", security(("bearer" = [])),
    params(IdempotencyKeyHeader), request_body = CreateEntitlementRequest,
    responses((status = 201, body = EntitlementView),
        (status = 409, body = Problem, description = "ENTITLEMENT_EXISTS: a live entitlement has this code"),
        (status = 422, body = Problem, description = "INVALID_CODE or INVALID_NAME")))]
pub(super) async fn create_entitlement(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiJson(body): ApiJson<CreateEntitlementRequest>,
) -> Result<Response, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app.catalogue.create_entitlement(body, metadata).await?;
    let view = EntitlementView::committed(&committed)?;
    let location = format!("/api/v1/entitlements/{}", view.id);
    Ok(created(view, location))
}

/// List live entitlements by code, from the read model. With `min_position`, waits (up to
/// 5 s) until the list includes that write.
#[utoipa::path(get, path = "/api/v1/entitlements", tag = "catalogue", security(("bearer" = [])),
    params(CatalogueQuery), responses((status = 200, body = EntitlementPage)))]
pub(super) async fn list_entitlements(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(query): ApiQuery<CatalogueQuery>,
) -> Result<Response, ApiError> {
    let consistent = wait_for_position(&app.db, "catalogue", query.min_position).await?;
    let paging = query.paging();
    let (rows, total) = crate::read::catalogue::entitlements(&app.db, &paging).await?;
    let page = EntitlementPage {
        items: rows.into_iter().map(EntitlementView::from).collect(),
        total,
        page: paging.page(),
        per_page: paging.per_page(),
    };
    Ok(with_consistency(Json(page).into_response(), consistent))
}

/// One live entitlement, from its events (consistent right after a write).
#[utoipa::path(get, path = "/api/v1/entitlements/{id}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EntitlementView),
        (status = 404, body = Problem, description = "ENTITLEMENT_NOT_FOUND")))]
pub(super) async fn get_entitlement(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EntitlementView>, ApiError> {
    let (entitlement, version) = app.catalogue.entitlement(EntitlementId(id)).await?;
    let state = entitlement
        .live()
        .ok_or_else(|| ApiError::internal("a found entitlement has no state"))?;
    Ok(Json(EntitlementView::new(state, version)))
}

/// Rename an entitlement. The code never changes.
#[utoipa::path(put, path = "/api/v1/entitlements/{id}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateEntitlementRequest,
    responses((status = 200, body = EntitlementView),
        (status = 404, body = Problem, description = "ENTITLEMENT_NOT_FOUND"),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION"),
        (status = 422, body = Problem, description = "INVALID_NAME")))]
pub(super) async fn update_entitlement(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateEntitlementRequest>,
) -> Result<Json<EntitlementView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .update_entitlement(EntitlementId(id), body, metadata)
        .await?;
    Ok(Json(EntitlementView::committed(&committed)?))
}

/// Delete an entitlement, while no policy and no live subscription names its code. Its
/// history stays; its code may be used again.
#[utoipa::path(delete, path = "/api/v1/entitlements/{id}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CatalogueDeleted),
        (status = 404, body = Problem, description = "ENTITLEMENT_NOT_FOUND"),
        (status = 409, body = Problem, description = "ENTITLEMENT_IN_USE: a policy or a live subscription names it; or CONCURRENT_MODIFICATION")))]
pub(super) async fn delete_entitlement(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CatalogueDeleted>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .delete_entitlement(EntitlementId(id), metadata)
        .await?;
    Ok(Json(CatalogueDeleted {
        id,
        deleted: true,
        version: committed.version,
        position: committed.position,
    }))
}
