//! `/api/v1/policies`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use flowlytix_aggregates::policy::{
    ExpirationBasis, ExpirationStrategy, HeartbeatCull, LicenseModel, PolicyState,
};
use flowlytix_aggregates::{Policy, PolicyId, PolicySettings};
use flowlytix_projections::catalogue::PolicyRecord;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::created;
use crate::app::SharedApp;
use crate::catalogue::{AttachEntitlementsRequest, CreatePolicyRequest, UpdatePolicyRequest};
use crate::http::access::{RequireAdmin, RequireReader};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{with_consistency, ApiJson, ApiPath, ApiQuery, RequestContext};
use crate::http::idempotency::IdempotencyKeyHeader;
use crate::read::catalogue::PolicyQuery;
use crate::read::consistency::wait_for_position;
use crate::store::Committed;

/// A policy: the licensing template subscriptions follow. Durations are ISO 8601.
#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    pub id: Uuid,
    pub product_id: Uuid,
    pub product_code: String,
    pub code: String,
    pub name: String,
    pub max_devices: u32,
    /// Null: perpetual.
    pub duration: Option<String>,
    pub trial_duration: Option<String>,
    /// `from_creation` or `from_first_activation`.
    pub expiration_basis: String,
    /// `restrict` or `allow_grace`.
    pub expiration_strategy: String,
    pub grace_period: Option<String>,
    pub token_ttl: Option<String>,
    /// Entitlement codes, sorted.
    pub entitlements: Vec<String>,
    pub metadata: Map<String, Value>,
    /// `node_locked` or `floating` (`max_devices` counts live leases).
    pub license_model: String,
    pub require_heartbeat: bool,
    pub heartbeat_duration: Option<String>,
    /// `deactivate` or `keep`.
    pub heartbeat_cull: String,
    pub resurrection_window: Option<String>,
    pub max_deactivations: Option<u32>,
    pub deactivation_window: Option<String>,
    pub max_borrow: Option<String>,
    /// No new subscription may follow an archived policy.
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
    /// The event-log position this state reached (on command responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// What a policy is, whether read from its events or from its row.
struct Described {
    id: Uuid,
    product_id: Uuid,
    product_code: String,
    code: String,
    settings: PolicySettings,
    archived: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: u64,
}

impl From<Described> for PolicyView {
    fn from(policy: Described) -> Self {
        let settings = policy.settings;
        let text = |d: Option<flowlytix_aggregates::IsoDuration>| d.map(|d| d.as_str().to_owned());
        Self {
            id: policy.id,
            product_id: policy.product_id,
            product_code: policy.product_code,
            code: policy.code,
            name: settings.name,
            max_devices: settings.max_devices,
            duration: text(settings.duration),
            trial_duration: text(settings.trial_duration),
            expiration_basis: match settings.expiration_basis {
                ExpirationBasis::FromCreation => "from_creation",
                ExpirationBasis::FromFirstActivation => "from_first_activation",
            }
            .to_owned(),
            expiration_strategy: match settings.expiration_strategy {
                ExpirationStrategy::Restrict => "restrict",
                ExpirationStrategy::AllowGrace => "allow_grace",
            }
            .to_owned(),
            grace_period: text(settings.grace_period),
            token_ttl: text(settings.token_ttl),
            entitlements: settings
                .entitlements
                .iter()
                .map(ToString::to_string)
                .collect(),
            metadata: settings.metadata,
            license_model: match settings.license_model {
                LicenseModel::NodeLocked => "node_locked",
                LicenseModel::Floating => "floating",
            }
            .to_owned(),
            require_heartbeat: settings.require_heartbeat,
            heartbeat_duration: text(settings.heartbeat_duration),
            heartbeat_cull: match settings.heartbeat_cull {
                HeartbeatCull::Deactivate => "deactivate",
                HeartbeatCull::Keep => "keep",
            }
            .to_owned(),
            resurrection_window: text(settings.resurrection_window),
            max_deactivations: settings.max_deactivations,
            deactivation_window: text(settings.deactivation_window),
            max_borrow: text(settings.max_borrow),
            archived: policy.archived,
            created_at: policy.created_at,
            updated_at: policy.updated_at,
            version: policy.version,
            position: None,
        }
    }
}

impl PolicyView {
    fn new(state: &PolicyState, version: u64) -> Self {
        Described {
            id: state.id.as_uuid(),
            product_id: state.product_id.as_uuid(),
            product_code: state.product_code.to_string(),
            code: state.code.to_string(),
            settings: state.settings.clone(),
            archived: state.archived,
            created_at: state.created_at,
            updated_at: state.updated_at,
            version,
        }
        .into()
    }

    fn committed(committed: &Committed<Policy>) -> Result<Self, ApiError> {
        let state = committed
            .aggregate
            .state()
            .ok_or_else(|| ApiError::internal("a committed policy has no state"))?;
        let mut view = Self::new(state, committed.version);
        view.position = Some(committed.position);
        Ok(view)
    }
}

impl From<PolicyRecord> for PolicyView {
    fn from(row: PolicyRecord) -> Self {
        Described {
            id: row.id,
            product_id: row.product_id,
            product_code: row.product_code,
            code: row.code,
            settings: row.settings.0,
            archived: row.archived,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version.max(0) as u64,
        }
        .into()
    }
}

#[derive(Serialize, ToSchema)]
pub struct PolicyPage {
    pub items: Vec<PolicyView>,
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

/// Create a policy of a live product, naming existing entitlements. Its id derives from
/// its product and code: a second creation with both is refused (409 `POLICY_EXISTS`).
#[utoipa::path(post, path = "/api/v1/policies", tag = "catalogue", security(("bearer" = [])),
    params(IdempotencyKeyHeader), request_body = CreatePolicyRequest,
    responses((status = 201, body = PolicyView),
        (status = 409, body = Problem, description = "POLICY_EXISTS: the product has a policy with this code"),
        (status = 422, body = Problem, description = "PRODUCT_NOT_FOUND (product_id names no live product), UNKNOWN_ENTITLEMENT (with `unknown_entitlements`), UNSUPPORTED_FIELD (with `field`), INVALID_CODE, INVALID_DURATION, INVALID_NAME, INVALID_DEVICE_LIMIT, INVALID_GRACE, INVALID_HEARTBEAT, INVALID_DEACTIVATION_LIMIT, INVALID_BORROW, TOO_MANY_ENTITLEMENTS or METADATA_TOO_LARGE")))]
pub(super) async fn create_policy(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiJson(body): ApiJson<CreatePolicyRequest>,
) -> Result<Response, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app.catalogue.create_policy(body, metadata).await?;
    let view = PolicyView::committed(&committed)?;
    let location = format!("/api/v1/policies/{}", view.id);
    Ok(created(view, location))
}

/// List policies (archived ones too, unless filtered) by product code and code, from the
/// read model. With `min_position`, waits (up to 5 s) until the list includes that write.
#[utoipa::path(get, path = "/api/v1/policies", tag = "catalogue", security(("bearer" = [])),
    params(PolicyQuery), responses((status = 200, body = PolicyPage)))]
pub(super) async fn list_policies(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(query): ApiQuery<PolicyQuery>,
) -> Result<Response, ApiError> {
    let consistent = wait_for_position(&app.db, "catalogue", query.min_position).await?;
    let (rows, total) = crate::read::catalogue::policies(&app.db, &query).await?;
    let paging = query.paging();
    let page = PolicyPage {
        items: rows.into_iter().map(PolicyView::from).collect(),
        total,
        page: paging.page(),
        per_page: paging.per_page(),
    };
    Ok(with_consistency(Json(page).into_response(), consistent))
}

/// One policy (archived or not), from its events (consistent right after a write).
#[utoipa::path(get, path = "/api/v1/policies/{id}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PolicyView),
        (status = 404, body = Problem, description = "POLICY_NOT_FOUND")))]
pub(super) async fn get_policy(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<PolicyView>, ApiError> {
    let (policy, version) = app.catalogue.policy(PolicyId(id)).await?;
    let state = policy
        .state()
        .ok_or_else(|| ApiError::internal("a found policy has no state"))?;
    Ok(Json(PolicyView::new(state, version)))
}

/// Change some of a policy's settings; every subscription that follows it and has not
/// overridden a setting follows the change at once.
#[utoipa::path(put, path = "/api/v1/policies/{id}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdatePolicyRequest,
    responses((status = 200, body = PolicyView),
        (status = 404, body = Problem, description = "POLICY_NOT_FOUND"),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION"),
        (status = 422, body = Problem, description = "UNKNOWN_ENTITLEMENT (with `unknown_entitlements`), UNSUPPORTED_FIELD (with `field`), INVALID_CODE, INVALID_DURATION, INVALID_NAME, INVALID_DEVICE_LIMIT, INVALID_GRACE, INVALID_HEARTBEAT, INVALID_DEACTIVATION_LIMIT, INVALID_BORROW, TOO_MANY_ENTITLEMENTS or METADATA_TOO_LARGE")))]
pub(super) async fn update_policy(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdatePolicyRequest>,
) -> Result<Json<PolicyView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .update_policy(PolicyId(id), body, metadata)
        .await?;
    Ok(Json(PolicyView::committed(&committed)?))
}

/// Archive a policy: no new subscription may follow it; those that do keep following it.
#[utoipa::path(post, path = "/api/v1/policies/{id}/archive", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path), IdempotencyKeyHeader),
    responses((status = 200, body = PolicyView),
        (status = 404, body = Problem, description = "POLICY_NOT_FOUND"),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION")))]
pub(super) async fn archive_policy(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<PolicyView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .archive_policy(PolicyId(id), true, metadata)
        .await?;
    Ok(Json(PolicyView::committed(&committed)?))
}

/// Unarchive a policy: new subscriptions may follow it again.
#[utoipa::path(post, path = "/api/v1/policies/{id}/unarchive", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path), IdempotencyKeyHeader),
    responses((status = 200, body = PolicyView),
        (status = 404, body = Problem, description = "POLICY_NOT_FOUND"),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION")))]
pub(super) async fn unarchive_policy(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<PolicyView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .archive_policy(PolicyId(id), false, metadata)
        .await?;
    Ok(Json(PolicyView::committed(&committed)?))
}

/// Attach existing entitlements to a policy (those already attached stay as they are).
#[utoipa::path(post, path = "/api/v1/policies/{id}/entitlements", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path), IdempotencyKeyHeader), request_body = AttachEntitlementsRequest,
    responses((status = 200, body = PolicyView),
        (status = 404, body = Problem, description = "POLICY_NOT_FOUND"),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION"),
        (status = 422, body = Problem, description = "UNKNOWN_ENTITLEMENT (with `unknown_entitlements`), INVALID_CODE or TOO_MANY_ENTITLEMENTS")))]
pub(super) async fn attach_entitlements(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<AttachEntitlementsRequest>,
) -> Result<Json<PolicyView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .attach_entitlements(PolicyId(id), body, metadata)
        .await?;
    Ok(Json(PolicyView::committed(&committed)?))
}

/// Detach one entitlement from a policy (nothing changes if it is not attached).
#[utoipa::path(delete, path = "/api/v1/policies/{id}/entitlements/{code}", tag = "catalogue", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("code" = String, Path, description = "An entitlement code")),
    responses((status = 200, body = PolicyView),
        (status = 404, body = Problem, description = "POLICY_NOT_FOUND"),
        (status = 409, body = Problem, description = "CONCURRENT_MODIFICATION"),
        (status = 422, body = Problem, description = "INVALID_CODE")))]
pub(super) async fn detach_entitlement(
    State(app): State<SharedApp>,
    RequireAdmin(admin): RequireAdmin,
    context: RequestContext,
    ApiPath((id, code)): ApiPath<(Uuid, String)>,
) -> Result<Json<PolicyView>, ApiError> {
    let metadata = context.metadata(admin.admin_id.to_string());
    let committed = app
        .catalogue
        .detach_entitlement(PolicyId(id), &code, metadata)
        .await?;
    Ok(Json(PolicyView::committed(&committed)?))
}
