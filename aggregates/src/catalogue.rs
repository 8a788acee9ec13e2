//! What the catalogue aggregates (`Product`, `Entitlement`, `Policy`) share: their errors
//! and the checks on the fields they have in common.

use serde_json::{Map, Value};

use crate::subscription::{MAX_DEVICE_LIMIT, MAX_TEXT_LEN};

/// Upper bound on a URL a product gives.
pub const MAX_URL_LEN: usize = 2048;
/// Upper bound on a catalogue item's metadata, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Upper bound on the entitlements one policy or subscription names.
pub const MAX_ENTITLEMENTS: usize = 100;

/// Why a product, entitlement or policy refused a command. Each maps to one API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("it does not exist")]
    NotFound,
    #[error("one with this code already exists")]
    AlreadyExists,
    #[error("it was deleted")]
    Deleted,
    #[error("a name is 1 to {MAX_TEXT_LEN} characters")]
    InvalidName,
    #[error("a url is an http(s) URL of at most {MAX_URL_LEN} characters")]
    InvalidUrl,
    #[error("metadata may hold at most {MAX_METADATA_BYTES} bytes of JSON")]
    MetadataTooLarge,
    #[error("max_devices must be between 1 and {MAX_DEVICE_LIMIT}")]
    InvalidDeviceLimit,
    #[error(
        "grace_period is required with expiration_strategy allow_grace, and allowed only with it"
    )]
    InvalidGrace,
    #[error("at most {MAX_ENTITLEMENTS} entitlements")]
    TooManyEntitlements,
    #[error("require_heartbeat needs heartbeat_duration, and heartbeat_duration, heartbeat_cull and resurrection_window need require_heartbeat")]
    InvalidHeartbeat,
    #[error("max_deactivations (1 to {MAX_DEVICE_LIMIT}) and deactivation_window go together")]
    InvalidDeactivationLimit,
    #[error("max_borrow needs a floating license_model with require_heartbeat")]
    InvalidBorrow,
}

pub(crate) fn check_name(name: &str) -> Result<(), CatalogueError> {
    let length = name.chars().count();
    if name.trim().is_empty() || length > MAX_TEXT_LEN || name.chars().any(char::is_control) {
        return Err(CatalogueError::InvalidName);
    }
    Ok(())
}

pub(crate) fn check_url(url: &str) -> Result<(), CatalogueError> {
    // A scheme, then a host: `https://` alone or `https:///path` names no server.
    let after_scheme = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let has_host = after_scheme.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !has_host || url.len() > MAX_URL_LEN || url.chars().any(|c| c.is_whitespace()) {
        return Err(CatalogueError::InvalidUrl);
    }
    Ok(())
}

pub(crate) fn check_metadata(metadata: &Map<String, Value>) -> Result<(), CatalogueError> {
    let size = serde_json::to_string(metadata).map_or(usize::MAX, |json| json.len());
    if size > MAX_METADATA_BYTES {
        return Err(CatalogueError::MetadataTooLarge);
    }
    Ok(())
}
