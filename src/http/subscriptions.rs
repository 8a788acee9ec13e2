//! `/api/v1/subscriptions`: admins manage subscriptions; auditors read them and their history.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use flowlytix_aggregates::subscription::SubscriptionState;
use flowlytix_aggregates::{PolicyId, Subscription, SubscriptionId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{RequireAdmin, RequireReader};
use super::error::{ApiError, Problem};
use super::extract::{with_consistency, ApiJson, ApiPath, ApiQuery, RequestContext};
use super::idempotency::{self, IdempotencyKeyHeader};
use super::views::{SubscriptionPage, SubscriptionView};
use crate::app::{App, SharedApp};
use crate::idempotency::IdempotentRequest;
use crate::read;
use crate::read::consistency::wait_for_position;
use crate::read::leases::DeviceLeases;
use crate::read::subscriptions::SubscriptionFilter;
use flowlytix_eventstore::log::aggregate_history;
use flowlytix_eventstore::EventRecord;

use crate::store::Committed;
use crate::subscriptions::{
    entitlement_codes, CreateSubscriptionRequest, RegenerateKeyRequest, UpdateSubscriptionRequest,
};

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(regenerate_license_key))
        .routes(routes!(attach_entitlements))
        .route_layer(from_fn(idempotency::admin_keys))
        .routes(routes!(
            get_subscription,
            update_subscription,
            delete_subscription
        ))
        .routes(routes!(subscription_events))
        .routes(routes!(detach_entitlement))
}

/// `POST /api/v1/subscriptions/{id}/entitlements`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitlementCodes {
    /// Entitlement codes (1 to 100).
    #[schema(min_items = 1, max_items = 100)]
    pub codes: Vec<String>,
}

/// Give one subscription entitlements of its own, on top of its policy's.
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/entitlements", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = Uuid, Path), IdempotencyKeyHeader), request_body = EntitlementCodes,
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem)))]
async fn attach_entitlements(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<EntitlementCodes>,
) -> Result<Response, ApiError> {
    let codes = entitlement_codes(&body.codes)?;
    change_entitlements(&app, admin.admin_id.to_string(), context, id, codes, true).await
}

/// Take one of a subscription's own entitlements away (its policy's stay).
#[utoipa::path(delete, path = "/api/v1/subscriptions/{id}/entitlements/{code}", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("code" = String, Path, max_length = 64)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem)))]
async fn detach_entitlement(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath((id, code)): ApiPath<(Uuid, String)>,
) -> Result<Response, ApiError> {
    let codes = entitlement_codes(&[code])?;
    change_entitlements(&app, admin.admin_id.to_string(), context, id, codes, false).await
}

async fn change_entitlements(
    app: &App,
    actor: String,
    context: RequestContext,
    id: Uuid,
    codes: Vec<flowlytix_aggregates::Code>,
    attach: bool,
) -> Result<Response, ApiError> {
    let metadata = context.metadata(actor);
    let now = metadata.occurred_at;
    let committed = app
        .subscriptions
        .change_entitlements(SubscriptionId(id), codes, attach, metadata)
        .await?;
    Ok(subscription_response(
        StatusCode::OK,
        committed_view(app, &committed, now).await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct DeletedResponse {
    pub id: Uuid,
    pub deleted: bool,
    pub version: u64,
    pub position: i64,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryResponse {
    pub items: Vec<EventRecord>,
}

/// A version from `If-Match`: `3`, `"3"` or `W/"3"` (as `IF_MATCH_PATTERN` says).
fn if_match_version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let digits = text
        .strip_prefix("W/\"")
        .or_else(|| text.strip_prefix('"'))
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let valid = (1..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    valid
        .then(|| digits.parse().ok())
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_IF_MATCH",
                "If-Match must be the subscription's version, e.g. \"3\"",
            )
        })
}

/// What `if_match_version` accepts, for the OpenAPI document.
pub const IF_MATCH_PATTERN: &str = r#"^(W/"[0-9]{1,19}"|"[0-9]{1,19}"|[0-9]{1,19})$"#;

/// A subscription in a response, with its version as the ETag.
fn subscription_response(status: StatusCode, view: SubscriptionView) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", view.version)).ok();
    let mut response = (status, Json(view)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

async fn committed_view(
    app: &App,
    committed: &Committed<Subscription>,
    now: DateTime<Utc>,
) -> Result<SubscriptionView, ApiError> {
    let state: &SubscriptionState = committed
        .aggregate
        .state()
        .ok_or_else(|| ApiError::internal("a committed subscription has no state"))?;
    let policies = app.policies.covering(state.policy_id).await;
    let leases = DeviceLeases::of_subscription(&app.db, state).await?;
    let mut view = SubscriptionView::new(state, committed.version, now, &policies, &leases);
    view.position = Some(committed.position);
    Ok(view)
}

/// Create a subscription. The response holds the full license key: the only time it is shown.
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(IdempotencyKeyHeader), request_body = CreateSubscriptionRequest,
    responses((status = 201, body = SubscriptionView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem, description = "VALIDATION_FAILED, INVALID_BODY, INVALID_DEVICE_LIMIT, INVALID_PERIOD or INVALID_TEXT")))]
async fn create_subscription(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    idempotent: Option<Extension<IdempotentRequest>>,
    ApiJson(body): ApiJson<CreateSubscriptionRequest>,
) -> Result<Response, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let now = metadata.occurred_at;
    let created = match idempotent {
        Some(Extension(request)) => {
            let id = SubscriptionId(request.derived_id("Subscription"));
            app.subscriptions.create_with_id(id, body, metadata).await?
        }
        None => app.subscriptions.create(body, metadata).await?,
    };
    let mut view = committed_view(&app, &created.committed, now).await?;
    view.license_key = Some(created.license_key.expose().to_owned());
    let location = format!("/api/v1/subscriptions/{}", view.id);
    let mut response = subscription_response(StatusCode::CREATED, view);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Get one subscription with its devices, straight from its events (consistent right after
/// a write). With `as_of`, the state it had at that instant, rebuilt from its history.
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = Uuid, Path), AsOf),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)))]
async fn get_subscription(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(AsOf { as_of }): ApiQuery<AsOf>,
) -> Result<Response, ApiError> {
    let (subscription, version) = app
        .subscriptions
        .subscription(SubscriptionId(id), as_of)
        .await?;
    let state = subscription
        .live()
        .ok_or_else(|| ApiError::internal("a found subscription has no state"))?;
    // The lease table holds only the present: a past state is judged by its events alone.
    let leases = match as_of {
        Some(_) => DeviceLeases::none(),
        None => DeviceLeases::of_subscription(&app.db, state).await?,
    };
    Ok(subscription_response(
        StatusCode::OK,
        SubscriptionView::new(
            state,
            version,
            as_of.unwrap_or_else(Utc::now),
            &app.policies.covering(state.policy_id).await,
            &leases,
        ),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOf {
    /// An RFC 3339 instant: answer with the state at that time.
    pub as_of: Option<DateTime<Utc>>,
}

/// List subscriptions (from the read model), filtered, sorted and paged. With
/// `min_position`, waits (up to 5 s) until the list includes that write.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(SubscriptionFilter),
    responses((status = 200, body = SubscriptionPage), (status = 400, body = Problem)))]
async fn list_subscriptions(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(filter): ApiQuery<SubscriptionFilter>,
) -> Result<Response, ApiError> {
    if !read::subscriptions::valid_sort(filter.sort.as_deref()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            "unknown sort column",
        ));
    }
    let consistent = wait_for_position(&app.db, "subscriptions", filter.min_position).await?;
    let (rows, total) = read::subscriptions::list(&app.db, &filter, &app.policies.book()).await?;
    let policies = app
        .policies
        .covering(rows.iter().filter_map(|row| row.policy_id.map(PolicyId)))
        .await;
    let now = Utc::now();
    let paging = read::Paging {
        page: filter.page,
        per_page: filter.per_page,
    };
    let page = SubscriptionPage {
        items: rows
            .into_iter()
            .map(|row| SubscriptionView::from_record(row, &policies, now))
            .collect(),
        total,
        page: paging.page(),
        per_page: paging.per_page(),
    };
    Ok(with_consistency(Json(page).into_response(), consistent))
}

/// Change plan, device limit, period, status or details, atomically. Send `If-Match` with
/// the version you read to be refused (409 VERSION_CONFLICT) if it changed meanwhile.
#[utoipa::path(put, path = "/api/v1/subscriptions/{id}", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "expected version")),
    request_body = UpdateSubscriptionRequest,
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update_subscription(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateSubscriptionRequest>,
) -> Result<Response, ApiError> {
    let expected_version = if_match_version(&headers)?;
    let metadata = context.metadata(admin.admin_id.to_string());
    let now = metadata.occurred_at;
    let committed = app
        .subscriptions
        .update(SubscriptionId(id), body, expected_version, metadata)
        .await?;
    Ok(subscription_response(
        StatusCode::OK,
        committed_view(&app, &committed, now).await?,
    ))
}

/// Delete a subscription: it leaves every list and never validates again; its events stay.
#[utoipa::path(delete, path = "/api/v1/subscriptions/{id}", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "expected version")),
    responses((status = 200, body = DeletedResponse), (status = 404, body = Problem), (status = 410, body = Problem)))]
async fn delete_subscription(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let expected_version = if_match_version(&headers)?;
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .subscriptions
        .delete(SubscriptionId(id), expected_version, metadata)
        .await?;
    Ok(Json(DeletedResponse {
        id,
        deleted: true,
        version: committed.version,
        position: committed.position,
    }))
}

/// Issue a new license key because the old one leaked. The old key stops working at once,
/// and so does every license token issued under it (refresh answers 401 `TOKEN_REVOKED`,
/// validate the code `TOKEN_REVOKED`). Activated devices stay activated unless the body
/// says `{"deactivate_devices": true}`; the body is optional. The response shows the new
/// key, once.
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/license-key", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = Uuid, Path), IdempotencyKeyHeader), request_body = Option<RegenerateKeyRequest>,
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 410, body = Problem)))]
async fn regenerate_license_key(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    body: Option<ApiJson<RegenerateKeyRequest>>,
) -> Result<Response, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let now = metadata.occurred_at;
    let request = body.map(|ApiJson(request)| request).unwrap_or_default();
    let created = app
        .subscriptions
        .regenerate_license_key(SubscriptionId(id), request, metadata)
        .await?;
    let mut view = committed_view(&app, &created.committed, now).await?;
    view.license_key = Some(created.license_key.expose().to_owned());
    Ok(subscription_response(StatusCode::OK, view))
}

/// The subscription's full event history, oldest first, with who, when and from where.
/// Deleted subscriptions keep their history.
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}/events", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = HistoryResponse), (status = 404, body = Problem)))]
async fn subscription_events(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let id = id.to_string();
    let mut connection = app.db.acquire().await?;
    let items = aggregate_history(connection.conn(), "Subscription", &id).await?;
    if items.is_empty() {
        return Err(ApiError::not_found(
            "SUBSCRIPTION_NOT_FOUND",
            "no such subscription",
        ));
    }
    Ok(Json(HistoryResponse { items }))
}
