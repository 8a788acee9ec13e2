//! `/api/v1/webhooks`: admins register receivers for the event stream; auditors read them
//! and their delivery log.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use flowlytix_aggregates::webhook_endpoint::{DisableReason, WebhookEndpointState};
use flowlytix_aggregates::{WebhookEndpoint, WebhookEndpointId};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{RequireAdmin, RequireReader};
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery, RequestContext};
use super::idempotency::{self, IdempotencyKeyHeader};
use crate::app::SharedApp;
use crate::idempotency::IdempotentRequest;
use crate::read::webhooks::{AttemptQuery, EndpointRow};
use crate::read::{self, Paging};
use crate::store::Committed;
use crate::webhooks::{CreateWebhookRequest, UpdateWebhookRequest, WithSecret};

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(redeliver))
        // Only the POSTs above take an `Idempotency-Key`; GETs pass through untouched.
        .route_layer(from_fn(idempotency::admin_keys))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(webhook_deliveries))
}

/// A webhook endpoint. `secret` is only in the answers to creation and rotation.
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    /// Null: every event type.
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: bool,
    /// `admin` or `failing` while disabled.
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
    /// The signing secret (`whsec_…`, Standard Webhooks): shown once, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The event-log position this state reached (on command responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

fn reason_word(reason: DisableReason) -> String {
    match reason {
        DisableReason::Admin => "admin",
        DisableReason::Failing => "failing",
    }
    .to_owned()
}

impl WebhookView {
    fn new(state: &WebhookEndpointState, version: u64) -> Self {
        Self {
            id: state.id.as_uuid(),
            url: state.settings.url.clone(),
            event_types: state.settings.event_types.clone(),
            description: state.settings.description.clone(),
            enabled: state.enabled,
            disabled_reason: state.disabled_reason.map(reason_word),
            created_at: state.created_at,
            updated_at: state.updated_at,
            version,
            secret: None,
            position: None,
        }
    }

    fn committed(committed: &Committed<WebhookEndpoint>) -> Result<Self, ApiError> {
        let state = committed
            .aggregate
            .state()
            .ok_or_else(|| ApiError::internal("a committed webhook endpoint has no state"))?;
        let mut view = Self::new(state, committed.version);
        view.position = Some(committed.position);
        Ok(view)
    }

    fn with_secret(made: &WithSecret) -> Result<Self, ApiError> {
        let mut view = Self::committed(&made.committed)?;
        view.secret = Some(made.secret.expose_secret().to_owned());
        Ok(view)
    }
}

impl From<EndpointRow> for WebhookView {
    fn from(row: EndpointRow) -> Self {
        Self {
            id: row.id,
            url: row.url,
            event_types: row.event_types.and_then(|t| serde_json::from_str(&t).ok()),
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version.max(0) as u64,
            secret: None,
            position: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookPage {
    pub items: Vec<WebhookView>,
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookDeleted {
    pub id: Uuid,
    pub deleted: bool,
    pub version: u64,
    pub position: i64,
}

/// One delivery attempt.
#[derive(Serialize, ToSchema)]
pub struct DeliveryAttempt {
    /// The delivery (the `webhook-id` the receiver saw); redeliver by it.
    pub id: Uuid,
    /// The event: `<aggregate_type>:<aggregate_id>:<sequence>`, the `id` of the body.
    pub event_id: String,
    pub event_type: String,
    /// From 1.
    pub attempt: i32,
    /// Null when no answer came (refused, unreachable, timed out).
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryLog {
    pub items: Vec<DeliveryAttempt>,
    /// Pass as `after` for the next page; null when there is none yet.
    pub next_after: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct RedeliveryQueued {
    pub id: Uuid,
    /// Always `pending`: the delivery is queued again, due now.
    pub status: String,
}

/// Register a webhook endpoint. The answer shows its signing secret: the only time it is
/// shown (rotate it to get a new one).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(IdempotencyKeyHeader), request_body = CreateWebhookRequest,
    responses((status = 201, body = WebhookView), (status = 422, body = Problem)))]
async fn create_webhook(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    idempotent: Option<Extension<IdempotentRequest>>,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> Result<Response, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    // Under an Idempotency-Key the id comes from the key, so that a retry after a crash
    // between the commit and the remembered answer is refused (409) instead of making a
    // second endpoint.
    let made = match idempotent {
        Some(Extension(request)) => {
            let id = WebhookEndpointId(request.derived_id("WebhookEndpoint"));
            app.webhooks.create_with_id(id, body, metadata).await?
        }
        None => app.webhooks.create(body, metadata).await?,
    };
    let view = WebhookView::with_secret(&made)?;
    let location = format!("/api/v1/webhooks/{}", view.id);
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List webhook endpoints (not deleted), oldest first, from the read model (a moment
/// behind the writes).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(Paging), responses((status = 200, body = WebhookPage)))]
async fn list_webhooks(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<WebhookPage>, ApiError> {
    let (rows, total) = read::webhooks::list_endpoints(&app.db, &paging).await?;
    Ok(Json(WebhookPage {
        items: rows.into_iter().map(WebhookView::from).collect(),
        total,
        page: paging.page(),
        per_page: paging.per_page(),
    }))
}

/// One webhook endpoint, from its events (consistent right after a write). Never its secret.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookView), (status = 404, body = Problem)))]
async fn get_webhook(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<WebhookView>, ApiError> {
    let (endpoint, version) = app.webhooks.endpoint(WebhookEndpointId(id)).await?;
    let state = endpoint
        .state()
        .ok_or_else(|| ApiError::internal("a found webhook endpoint has no state"))?;
    Ok(Json(WebhookView::new(state, version)))
}

/// Change the URL, event types, description, or switch the endpoint on or off.
#[utoipa::path(put, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateWebhookRequest,
    responses((status = 200, body = WebhookView), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION"),
        (status = 410, body = Problem, description = "WEBHOOK_DELETED"), (status = 422, body = Problem)))]
async fn update_webhook(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateWebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .webhooks
        .update(WebhookEndpointId(id), body, metadata)
        .await?;
    Ok(Json(WebhookView::committed(&committed)?))
}

/// Delete a webhook endpoint: nothing more is delivered to it; its history stays.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookDeleted), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION"),
        (status = 410, body = Problem, description = "WEBHOOK_DELETED")))]
async fn delete_webhook(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<WebhookDeleted>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app.webhooks.delete(WebhookEndpointId(id), metadata).await?;
    Ok(Json(WebhookDeleted {
        id,
        deleted: true,
        version: committed.version,
        position: committed.position,
    }))
}

/// Replace the signing secret; the answer shows the new one, once. Deliveries from now on
/// are signed with it.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), IdempotencyKeyHeader),
    responses((status = 200, body = WebhookView), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION"),
        (status = 410, body = Problem, description = "WEBHOOK_DELETED")))]
async fn rotate_webhook_secret(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<WebhookView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let made = app
        .webhooks
        .rotate_secret(WebhookEndpointId(id), metadata)
        .await?;
    Ok(Json(WebhookView::with_secret(&made)?))
}

/// The endpoint's delivery log: every attempt, oldest first. Page with `after`.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), AttemptQuery),
    responses((status = 200, body = DeliveryLog), (status = 404, body = Problem)))]
async fn webhook_deliveries(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<AttemptQuery>,
) -> Result<Json<DeliveryLog>, ApiError> {
    let rows = app
        .webhooks
        .delivery_log(WebhookEndpointId(id), &query)
        .await?;
    let next_after = rows.last().map(|row| row.cursor).or(query.after);
    let items = rows
        .into_iter()
        .map(|row| DeliveryAttempt {
            id: row.delivery_id,
            event_id: row.event_id,
            event_type: row.event_type,
            attempt: row.attempt,
            status_code: row.status_code,
            latency_ms: row.latency_ms,
            error: row.error,
            at: row.at,
        })
        .collect();
    Ok(Json(DeliveryLog { items, next_after }))
}

/// Queue a delivery again, due now, with a fresh retry schedule (also one that succeeded
/// or gave up).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("delivery_id" = Uuid, Path), IdempotencyKeyHeader),
    responses((status = 202, body = RedeliveryQueued), (status = 404, body = Problem)))]
async fn redeliver(
    State(app): State<SharedApp>,
    RequireAdmin(_admin): RequireAdmin,
    ApiPath((id, delivery_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    app.webhooks
        .redeliver(WebhookEndpointId(id), delivery_id)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RedeliveryQueued {
            id: delivery_id,
            status: "pending".into(),
        }),
    )
        .into_response())
}
