//! `/api/v1/subscriptions`: admins manage subscriptions; auditors read them and their history.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use flowlytix_aggregates::subscription::{
    DetailsChange, NewSubscription, PeriodChange, SubscriptionState,
};
use flowlytix_aggregates::{
    DeviceId, Email, Plan, Subscription, SubscriptionAction, SubscriptionCommand,
    SubscriptionError, SubscriptionId,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{RequireAdmin, RequireReader};
use super::error::{ApiError, Problem};
use super::extract::{with_consistency, ApiJson, ApiPath, ApiQuery, RequestContext};
use super::views::{Page, SubscriptionView};
use crate::app::SharedApp;
use crate::crypto::{new_license_key, sha256_hex};
use crate::read;
use crate::read::consistency::wait_for_position;
use crate::read::subscriptions::SubscriptionFilter;
use flowlytix_projections::log::aggregate_history;
use flowlytix_projections::EventRecord;

use crate::store::{Committed, ExecuteError};

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(
            get_subscription,
            update_subscription,
            delete_subscription
        ))
        .routes(routes!(regenerate_license_key))
        .routes(routes!(subscription_events))
}

const MAX_FEATURES: usize = 100;
const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionRequest {
    pub customer_email: String,
    pub customer_name: String,
    pub organization: Option<String>,
    pub plan: String,
    pub max_devices: u32,
    /// Defaults to now.
    pub starts_at: Option<DateTime<Utc>>,
    /// Omit for a perpetual license.
    pub expires_at: Option<DateTime<Utc>>,
    /// When set, the subscription is `trialing` until then.
    pub trial_ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// Every field is optional; only those sent change, all in one atomic step. For
/// `expires_at`, `trial_ends_at` and `organization`, an explicit `null` clears the value.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscriptionRequest {
    pub plan: Option<String>,
    pub max_devices: Option<u32>,
    /// Devices to deactivate so that a lower `max_devices` fits.
    #[serde(default)]
    pub deactivate_device_ids: Vec<Uuid>,
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub trial_ends_at: Option<Option<DateTime<Utc>>>,
    /// `active` (resume), `suspended`, `past_due` or `canceled`.
    pub status: Option<StatusChange>,
    /// Why, for a suspension or cancellation.
    pub reason: Option<String>,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub organization: Option<Option<String>>,
    pub features: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    Active,
    Suspended,
    PastDue,
    Canceled,
}

/// Tells "absent" (outer `None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
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

fn parse_email(raw: &str) -> Result<Email, ApiError> {
    Email::parse(raw).map_err(|e| ApiError::validation(format!("customer_email: {e}")))
}

fn parse_plan(raw: &str) -> Result<Plan, ApiError> {
    Plan::parse(raw).map_err(|e| ApiError::validation(format!("plan: {e}")))
}

fn check_features(features: &[String]) -> Result<(), ApiError> {
    let valid = features.len() <= MAX_FEATURES && features.iter().all(|f| Plan::parse(f).is_ok());
    if valid {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "features: at most {MAX_FEATURES}, each 1 to 64 characters of a-z, 0-9, '-' and '_'"
        )))
    }
}

fn check_metadata(metadata: &Map<String, Value>) -> Result<(), ApiError> {
    if serde_json::to_vec(metadata).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
        return Err(ApiError::validation(format!(
            "metadata: at most {MAX_METADATA_BYTES} bytes of JSON"
        )));
    }
    Ok(())
}

/// A version from `If-Match`: `3`, `"3"` or `W/"3"`.
fn if_match_version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_IF_MATCH",
            "If-Match must be the subscription's version, e.g. \"3\"",
        )
    })
}

/// A subscription in a response, with its version as the ETag.
fn subscription_response(status: StatusCode, view: SubscriptionView) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", view.version)).ok();
    let mut response = (status, Json(view)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn committed_view(
    committed: &Committed<Subscription>,
    now: DateTime<Utc>,
) -> Result<SubscriptionView, ApiError> {
    let state: &SubscriptionState = committed
        .aggregate
        .state()
        .ok_or_else(|| ApiError::internal("a committed subscription has no state"))?;
    let mut view = SubscriptionView::new(state, committed.version, now);
    view.position = Some(committed.position);
    Ok(view)
}

/// Create a subscription. The response holds the full license key: the only time it is shown.
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    request_body = CreateSubscriptionRequest,
    responses((status = 201, body = SubscriptionView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_subscription(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiJson(body): ApiJson<CreateSubscriptionRequest>,
) -> Result<Response, ApiError> {
    check_features(&body.features)?;
    check_metadata(&body.metadata)?;
    let now = Utc::now();
    let key = new_license_key();
    let subscription_id = SubscriptionId(Uuid::new_v4());
    let new = NewSubscription {
        subscription_id,
        customer_email: parse_email(&body.customer_email)?,
        customer_name: body.customer_name,
        organization: body.organization,
        plan: parse_plan(&body.plan)?,
        starts_at: body.starts_at.unwrap_or(now),
        expires_at: body.expires_at,
        trial_ends_at: body.trial_ends_at,
        max_devices: body.max_devices,
        features: body.features,
        metadata: body.metadata,
        key_hash: sha256_hex(key.expose()),
        key_prefix: key.display_prefix(),
    };
    let command = SubscriptionCommand::new(now, SubscriptionAction::CreateSubscription(new));
    let committed = app
        .execute_subscription(
            &subscription_id.to_string(),
            vec![command],
            context.metadata(admin.admin_id.to_string()),
            None,
        )
        .await?;
    let mut view = committed_view(&committed, now)?;
    view.license_key = Some(key.expose().to_owned());
    let mut response = subscription_response(StatusCode::CREATED, view);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/subscriptions/{subscription_id}"))
    {
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
    let not_found = || ApiError::not_found("SUBSCRIPTION_NOT_FOUND", "no such subscription");
    let (subscription, version, now) = match as_of {
        None => {
            let (subscription, version) = app.subscriptions.load(&id.to_string()).await?;
            (subscription, version, Utc::now())
        }
        Some(instant) => {
            let mut subscription = Subscription::default();
            let mut version = 0;
            for envelope in app.subscriptions.load_events(&id.to_string()).await? {
                if envelope.payload.at() > instant {
                    break;
                }
                subscription.apply(envelope.payload);
                version = envelope.sequence as u64;
            }
            (subscription, version, instant)
        }
    };
    let state = subscription.live().ok_or_else(not_found)?;
    Ok(subscription_response(
        StatusCode::OK,
        SubscriptionView::new(state, version, now),
    ))
}

#[derive(Deserialize, IntoParams)]
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
    let consistent = match filter.min_position {
        Some(position) => wait_for_position(&app.db, "subscriptions", position).await?,
        None => true,
    };
    let (rows, total) = read::subscriptions::list(&app.db, &filter).await?;
    let paging = read::Paging {
        page: filter.page,
        per_page: filter.per_page,
    };
    let page = SubscriptionPage {
        items: rows.into_iter().map(SubscriptionView::from).collect(),
        total,
        page: paging.page(),
        per_page: paging.per_page(),
    };
    Ok(with_consistency(Json(page).into_response(), consistent))
}

pub type SubscriptionPage = Page<SubscriptionView>;

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
    let now = Utc::now();
    let actions = update_actions(body)?;
    let commands = actions
        .into_iter()
        .map(|a| SubscriptionCommand::new(now, a))
        .collect();
    let committed = app
        .execute_subscription(
            &id.to_string(),
            commands,
            context.metadata(admin.admin_id.to_string()),
            expected_version,
        )
        .await
        .map_err(|error| match error {
            // For an update, a deleted subscription is simply not there.
            ExecuteError::Domain(SubscriptionError::Deleted) => {
                ApiError::not_found("SUBSCRIPTION_NOT_FOUND", "no such subscription")
            }
            other => other.into(),
        })?;
    Ok(subscription_response(
        StatusCode::OK,
        committed_view(&committed, now)?,
    ))
}

/// Turns a PUT body into commands. Unchanged fields produce no events (the aggregate drops
/// no-ops); fields not sent keep their current values, filled in by the aggregate under
/// the same lock as the change, so concurrent updates of different fields never undo
/// each other.
fn update_actions(body: UpdateSubscriptionRequest) -> Result<Vec<SubscriptionAction>, ApiError> {
    let mut actions = Vec::new();
    let details = DetailsChange {
        customer_email: body
            .customer_email
            .as_deref()
            .map(parse_email)
            .transpose()?,
        customer_name: body.customer_name,
        organization: body.organization,
        features: body
            .features
            .map(|f| check_features(&f).map(|_| f))
            .transpose()?,
        metadata: body
            .metadata
            .map(|m| check_metadata(&m).map(|_| m))
            .transpose()?,
    };
    if details != DetailsChange::default() {
        actions.push(SubscriptionAction::UpdateDetails(details));
    }
    if let Some(plan) = body.plan {
        actions.push(SubscriptionAction::ChangePlan {
            plan: parse_plan(&plan)?,
        });
    }
    if body.max_devices.is_some() || !body.deactivate_device_ids.is_empty() {
        actions.push(SubscriptionAction::ChangeDeviceLimit {
            max_devices: body.max_devices,
            deactivate_device_ids: body
                .deactivate_device_ids
                .into_iter()
                .map(DeviceId)
                .collect(),
        });
    }
    if body.starts_at.is_some() || body.expires_at.is_some() || body.trial_ends_at.is_some() {
        actions.push(SubscriptionAction::ChangePeriod(PeriodChange {
            starts_at: body.starts_at,
            expires_at: body.expires_at,
            trial_ends_at: body.trial_ends_at,
        }));
    }
    // Status last, so that e.g. a renewal and a resume in one request both apply.
    match body.status {
        None => {}
        Some(StatusChange::Active) => actions.push(SubscriptionAction::ResumeSubscription),
        Some(StatusChange::Suspended) => actions.push(SubscriptionAction::SuspendSubscription {
            reason: body.reason,
        }),
        Some(StatusChange::PastDue) => actions.push(SubscriptionAction::MarkPastDue),
        Some(StatusChange::Canceled) => actions.push(SubscriptionAction::CancelSubscription {
            reason: body.reason,
        }),
    }
    Ok(actions)
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
    let command = SubscriptionCommand::new(Utc::now(), SubscriptionAction::DeleteSubscription);
    let committed = app
        .execute_subscription(
            &id.to_string(),
            vec![command],
            context.metadata(admin.admin_id.to_string()),
            expected_version,
        )
        .await?;
    Ok(Json(DeletedResponse {
        id,
        deleted: true,
        version: committed.version,
        position: committed.position,
    }))
}

/// Issue a new license key; the old one stops working at once. The response shows the new
/// key, once. Activated devices stay activated.
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/license-key", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 410, body = Problem)))]
async fn regenerate_license_key(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let key = new_license_key();
    let command = SubscriptionCommand::new(
        now,
        SubscriptionAction::RegenerateLicenseKey {
            key_hash: sha256_hex(key.expose()),
            key_prefix: key.display_prefix(),
        },
    );
    let committed = app
        .execute_subscription(
            &id.to_string(),
            vec![command],
            context.metadata(admin.admin_id.to_string()),
            None,
        )
        .await?;
    let mut view = committed_view(&committed, now)?;
    view.license_key = Some(key.expose().to_owned());
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
