//! `/api/v1/products`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::product::ProductState;
use flowlytix_aggregates::{Product, ProductId};
use flowlytix_projections::catalogue::ProductRecord;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{created, CatalogueDeleted};
use crate::app::SharedApp;
use crate::catalogue::{CreateProductRequest, UpdateProductRequest};
use crate::http::access::{RequireAdmin, RequireReader};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{with_consistency, ApiJson, ApiPath, ApiQuery, RequestContext};
use crate::http::idempotency::IdempotencyKeyHeader;
use crate::read::catalogue::CatalogueQuery;
use crate::read::consistency::wait_for_position;
use crate::store::Committed;

/// A product.
#[derive(Serialize, ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub url: Option<String>,
    pub metadata: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
    /// The event-log position this state reached (on command responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl ProductView {
    fn new(state: &ProductState, version: u64) -> Self {
        Self {
            id: state.id.as_uuid(),
            code: state.code.to_string(),
            name: state.name.clone(),
            url: state.url.clone(),
            metadata: state.metadata.clone(),
            created_at: state.created_at,
            updated_at: state.updated_at,
            version,
            position: None,
        }
    }

    fn committed(committed: &Committed<Product>) -> Result<Self, ApiError> {
        let state = committed
            .aggregate
            .state()
            .ok_or_else(|| ApiError::internal("a committed product has no state"))?;
        let mut view = Self::new(state, committed.version);
        view.position = Some(committed.position);
        Ok(view)
    }
}

impl From<ProductRecord> for ProductView {
    fn from(row: ProductRecord) -> Self {
        Self {
            id: row.id,
            code: row.code,
            name: row.name,
            url: row.url,
            metadata: row.metadata.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version.max(0) as u64,
            position: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

/// Create a product. Its id derives from its code, so two creations with one code make
/// one product: the second is refused (409 `PRODUCT_EXISTS`).
#[utoipa::path(post, path = "/api/v1/products", tag = "catalogue", security(("bearer" = [])),
    params(IdempotencyKeyHeader), request_body = CreateProductRequest,
    responses((status = 201, body = ProductView),
        (status = 409, body = Problem, description = "PRODUCT_EXISTS: a live product has this code"),
        (status = 422, body = Problem, description = "INVALID_CODE, INVALID_NAME, INVALID_URL or METADATA_TOO_LARGE")))]
pub(super) async fn create_product(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiJson(body): ApiJson<CreateProductRequest>,
) -> Result<Response, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app.catalogue.create_product(body, metadata).await?;
    let view = ProductView::committed(&committed)?;
    let location = format!("/api/v1/products/{}", view.id);
    Ok(created(view, location))
}

/// List live products by code, from the read model. With `min_position`, waits (up to
/// 5 s) until the list includes that write.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalogue", security(("bearer" = [])),
    params(CatalogueQuery), responses((status = 200, body = ProductPage)))]
pub(super) async fn list_products(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(query): ApiQuery<CatalogueQuery>,
) -> Result<Response, ApiError> {
    let consistent = wait_for_position(&app.db, "catalogue", query.min_position).await?;
    let paging = query.paging();
    let (rows, total) = crate::read::catalogue::products(&app.db, &paging).await?;
    let page = ProductPage {
        items: rows.into_iter().map(ProductView::from).collect(),
        total,
        page: paging.page(),
        per_page: paging.per_page(),
    };
    Ok(with_consistency(Json(page).into_response(), consistent))
}

/// One live product, from its events (consistent right after a write).
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ProductView),
        (status = 404, body = Problem, description = "PRODUCT_NOT_FOUND")))]
pub(super) async fn get_product(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ProductView>, ApiError> {
    let (product, version) = app.catalogue.product(ProductId(id)).await?;
    let state = product
        .live()
        .ok_or_else(|| ApiError::internal("a found product has no state"))?;
    Ok(Json(ProductView::new(state, version)))
}

/// Change a product's name, URL (`null` clears it) or metadata. The code never changes.
#[utoipa::path(put, path = "/api/v1/products/{id}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateProductRequest,
    responses((status = 200, body = ProductView),
        (status = 404, body = Problem, description = "PRODUCT_NOT_FOUND"),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION"),
        (status = 422, body = Problem, description = "INVALID_NAME, INVALID_URL or METADATA_TOO_LARGE")))]
pub(super) async fn update_product(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateProductRequest>,
) -> Result<Json<ProductView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .update_product(ProductId(id), body, metadata)
        .await?;
    Ok(Json(ProductView::committed(&committed)?))
}

/// Delete a product, while no policy names it. Its history stays; its code may be used
/// again.
#[utoipa::path(delete, path = "/api/v1/products/{id}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CatalogueDeleted),
        (status = 404, body = Problem, description = "PRODUCT_NOT_FOUND"),
        (status = 409, body = Problem, description = "PRODUCT_IN_USE: a policy names the product; or CONCURRENT_MODIFICATION")))]
pub(super) async fn delete_product(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CatalogueDeleted>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .delete_product(ProductId(id), metadata)
        .await?;
    Ok(Json(CatalogueDeleted {
        id,
        deleted: true,
        version: committed.version,
        position: committed.position,
    }))
}
