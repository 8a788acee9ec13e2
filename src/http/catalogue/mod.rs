//! `/api/v1/products`, `/api/v1/entitlements`, `/api/v1/policies`: admins manage the
//! licensing catalogue; auditors read it. Lists come from the read models (with
//! `min_position` for read-your-writes); one item comes from its events.

mod entitlements;
mod policies;
mod products;

use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flowlytix_aggregates::CatalogueError;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use super::idempotency;
use crate::app::SharedApp;
use crate::catalogue::{CatalogueFailure, Item};
use crate::store::ExecuteError;

pub fn router() -> OpenApiRouter<SharedApp> {
    use entitlements::*;
    use policies::*;
    use products::*;
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(create_entitlement, list_entitlements))
        .routes(routes!(create_policy, list_policies))
        .routes(routes!(archive_policy))
        .routes(routes!(unarchive_policy))
        .routes(routes!(attach_entitlements))
        // Only the POSTs above take an `Idempotency-Key`; GETs pass through untouched.
        .route_layer(from_fn(idempotency::admin_keys))
        .routes(routes!(get_product, update_product, delete_product))
        .routes(routes!(
            get_entitlement,
            update_entitlement,
            delete_entitlement
        ))
        .routes(routes!(get_policy, update_policy))
        .routes(routes!(detach_entitlement))
}

/// The answer to a deletion.
#[derive(Serialize, ToSchema)]
pub struct CatalogueDeleted {
    pub id: Uuid,
    pub deleted: bool,
    pub version: u64,
    pub position: i64,
}

/// A 201 with the new item's address.
fn created(view: impl Serialize, location: String) -> Response {
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn not_found(item: Item) -> ApiError {
    let code = match item {
        Item::Product => "PRODUCT_NOT_FOUND",
        Item::Entitlement => "ENTITLEMENT_NOT_FOUND",
        Item::Policy => "POLICY_NOT_FOUND",
    };
    ApiError::not_found(code, format!("no such {item}"))
}

fn refused(item: Item, error: CatalogueError) -> ApiError {
    use CatalogueError as E;
    let detail = error.to_string();
    let unprocessable = |code| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, &detail);
    match error {
        E::NotFound | E::Deleted => not_found(item),
        E::AlreadyExists => {
            let code = match item {
                Item::Product => "PRODUCT_EXISTS",
                Item::Entitlement => "ENTITLEMENT_EXISTS",
                Item::Policy => "POLICY_EXISTS",
            };
            ApiError::new(
                StatusCode::CONFLICT,
                code,
                format!("a {item} with this code already exists"),
            )
        }
        E::InvalidName => unprocessable("INVALID_NAME"),
        E::InvalidUrl => unprocessable("INVALID_URL"),
        E::MetadataTooLarge => unprocessable("METADATA_TOO_LARGE"),
        E::InvalidDeviceLimit => unprocessable("INVALID_DEVICE_LIMIT"),
        E::InvalidGrace => unprocessable("INVALID_GRACE"),
        E::InvalidHeartbeat => unprocessable("INVALID_HEARTBEAT"),
        E::InvalidDeactivationLimit => unprocessable("INVALID_DEACTIVATION_LIMIT"),
        E::InvalidBorrow => unprocessable("INVALID_BORROW"),
        E::TooManyEntitlements => unprocessable("TOO_MANY_ENTITLEMENTS"),
    }
}

/// Only for the store's failures around a catalogue command (its refusals are mapped with
/// the item they concern, in [`refused`]).
impl From<CatalogueError> for ApiError {
    fn from(error: CatalogueError) -> Self {
        refused(Item::Product, error)
    }
}

impl From<CatalogueFailure> for ApiError {
    fn from(failure: CatalogueFailure) -> Self {
        use CatalogueFailure as F;
        let detail = failure.to_string();
        let unprocessable = |code| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, &detail);
        match failure {
            F::InvalidCode(_) => unprocessable("INVALID_CODE"),
            F::InvalidDuration(_) => unprocessable("INVALID_DURATION"),
            F::UnsupportedField(field) => {
                unprocessable("UNSUPPORTED_FIELD").with("field", json!(field))
            }
            F::NotFound(item) => not_found(item),
            F::UnknownProduct => unprocessable("PRODUCT_NOT_FOUND"),
            F::UnknownEntitlements(ref codes) => {
                unprocessable("UNKNOWN_ENTITLEMENT").with("unknown_entitlements", json!(codes))
            }
            F::InUse { item, detail } => ApiError::new(
                StatusCode::CONFLICT,
                match item {
                    Item::Product => "PRODUCT_IN_USE",
                    Item::Entitlement => "ENTITLEMENT_IN_USE",
                    Item::Policy => "POLICY_IN_USE",
                },
                detail,
            ),
            F::Command {
                item,
                error: ExecuteError::Domain(error),
            } => refused(item, error),
            F::Command { error, .. } => error.into(),
            F::Read(error) => error.into(),
        }
    }
}
