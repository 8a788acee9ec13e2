//! One error type for the HTTP layer: every failure becomes `application/problem+json` with a
//! stable `code`. Internal causes are logged, never sent.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use flowlytix_aggregates::{AdminError, SubscriptionError, WebhookEndpointError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::licensing::token::TokenError;
use crate::licensing::LicensingError;
use crate::store::ExecuteError;
use crate::subscriptions::ManageError;
use crate::webhooks::WebhookError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Logged with the response; never part of it.
    internal: Option<String>,
    /// Members the problem adds for this code (RFC 9457 extensions), e.g. the unknown
    /// entitlements of `UNKNOWN_ENTITLEMENT`.
    extensions: serde_json::Map<String, serde_json::Value>,
    /// `Retry-After`, in whole seconds, when the refusal passes by itself.
    retry_after: Option<u64>,
}

/// RFC 9457 problem details, plus the stable machine-readable `code`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            internal: None,
            extensions: serde_json::Map::new(),
            retry_after: None,
        }
    }

    /// This problem with one more member (never one of the standard ones).
    /// Tells the client it may try again in `seconds` (the `Retry-After` header).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        if !matches!(name, "type" | "title" | "status" | "detail" | "code") {
            self.extensions.insert(name.to_owned(), value.into());
        }
        self
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            detail,
        )
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", detail)
    }

    /// A failure that is ours, not the caller's: the cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            detail: "the server could not complete the request; it has been logged".into(),
            internal: Some(cause.to_string()),
            extensions: serde_json::Map::new(),
            retry_after: None,
        }
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "SERVICE_UNAVAILABLE",
            detail: "a backing service is unavailable; try again shortly".into(),
            internal: Some(cause.to_string()),
            extensions: serde_json::Map::new(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.internal {
            tracing::error!(code = self.code, status = self.status.as_u16(), %cause, "request failed");
        }
        let problem = Problem {
            kind: format!("urn:flowlytix:problem:{}", self.code.to_ascii_lowercase()),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_owned(),
        };
        let body = match serde_json::to_value(&problem) {
            Ok(serde_json::Value::Object(mut members)) => {
                members.extend(self.extensions);
                serde_json::to_vec(&members).unwrap_or_default()
            }
            _ => serde_json::to_vec(&problem).unwrap_or_default(),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let detail = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BODY", detail)
            }
            JsonRejection::JsonSyntaxError(_) => {
                Self::new(StatusCode::BAD_REQUEST, "MALFORMED_JSON", detail)
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "the request body is too large",
                )
            }
            other => Self::new(other.status(), "BAD_REQUEST", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PATH",
            rejection.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            rejection.body_text(),
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::unavailable(error)
            }
            other => Self::internal(other),
        }
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(error: SubscriptionError) -> Self {
        use SubscriptionError as E;
        let detail = error.to_string();
        let (status, code) = match error {
            E::NotFound => (StatusCode::NOT_FOUND, "SUBSCRIPTION_NOT_FOUND"),
            E::AlreadyExists => (StatusCode::CONFLICT, "SUBSCRIPTION_EXISTS"),
            E::Deleted => (StatusCode::GONE, "SUBSCRIPTION_DELETED"),
            E::LicenseKeyMismatch => (StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND"),
            E::InvalidDeviceLimit { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_DEVICE_LIMIT")
            }
            E::InvalidPeriod | E::InstantOutOfRange => {
                (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_PERIOD")
            }
            E::InvalidText => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_TEXT"),
            E::InvalidStatusTransition { .. } => {
                (StatusCode::CONFLICT, "INVALID_STATUS_TRANSITION")
            }
            E::Canceled => (StatusCode::CONFLICT, "SUBSCRIPTION_CANCELED"),
            E::LicenseSuspended => (StatusCode::FORBIDDEN, "LICENSE_SUSPENDED"),
            E::LicenseExpired => (StatusCode::FORBIDDEN, "LICENSE_EXPIRED"),
            E::LicenseCanceled => (StatusCode::FORBIDDEN, "LICENSE_CANCELED"),
            E::DeviceLimitReached {
                max_devices,
                in_use,
            } => {
                return Self::new(StatusCode::CONFLICT, "DEVICE_LIMIT_REACHED", detail)
                    .with("in_use", in_use)
                    .with("max", max_devices);
            }
            E::DeactivationLimitReached { retry_at } => {
                let wait = (retry_at - chrono::Utc::now()).num_milliseconds().max(0) as u64;
                return Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "DEACTIVATION_LIMIT_REACHED",
                    detail,
                )
                .with("retry_at", retry_at.to_rfc3339())
                .retry_after(wait.div_ceil(1000));
            }
            E::HeartbeatDead => (StatusCode::GONE, "HEARTBEAT_DEAD"),
            E::HeartbeatNotRequired => (StatusCode::CONFLICT, "HEARTBEAT_NOT_REQUIRED"),
            E::BorrowNotAllowed => (StatusCode::UNPROCESSABLE_ENTITY, "BORROW_NOT_ALLOWED"),
            E::InvalidBorrow { until } => {
                return Self::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BORROW", detail)
                    .with("max_borrow_until", until.to_rfc3339());
            }
            E::DeviceLimitBelowActiveCount { .. } => {
                (StatusCode::CONFLICT, "DEVICE_LIMIT_BELOW_ACTIVE_COUNT")
            }
            E::DeviceNotFound(_) => (StatusCode::NOT_FOUND, "DEVICE_NOT_FOUND"),
            E::DeviceNotActive(_) => (StatusCode::CONFLICT, "DEVICE_NOT_ACTIVE"),
            E::DeviceNotActivated => (StatusCode::NOT_FOUND, "DEVICE_NOT_ACTIVATED"),
            E::TokenRevoked => (StatusCode::UNAUTHORIZED, "TOKEN_REVOKED"),
            E::PolicyNotFound => (StatusCode::UNPROCESSABLE_ENTITY, "POLICY_NOT_FOUND"),
            E::PolicyArchived => (StatusCode::CONFLICT, "POLICY_ARCHIVED"),
            E::PlanFollowsPolicy => (StatusCode::CONFLICT, "PLAN_FOLLOWS_POLICY"),
        };
        Self::new(status, code, detail)
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        let detail = error.to_string();
        match error {
            AdminError::AlreadyExists => Self::new(StatusCode::CONFLICT, "ADMIN_EXISTS", detail),
            AdminError::NotFound => Self::not_found("ADMIN_NOT_FOUND", detail),
            AdminError::Disabled => Self::new(StatusCode::CONFLICT, "ADMIN_DISABLED", detail),
            AdminError::InvalidPasswordHash => Self::internal(detail),
        }
    }
}

impl<E> From<ExecuteError<E>> for ApiError
where
    E: std::error::Error + Into<ApiError>,
{
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Domain(e) => e.into(),
            ExecuteError::VersionMismatch { expected, actual } => Self::new(
                StatusCode::CONFLICT,
                "VERSION_CONFLICT",
                format!("If-Match named version {expected} but the subscription is at version {actual}; reload and retry"),
            ),
            ExecuteError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "CONCURRENT_MODIFICATION",
                "the resource was changed concurrently; retry the request",
            ),
            ExecuteError::Store(cause) if crate::store::is_statement_timeout(cause.as_ref()) => {
                Self::unavailable(crate::telemetry::error_chain(cause.as_ref()))
            }
            ExecuteError::Store(cause) => Self::internal(crate::telemetry::error_chain(cause.as_ref())),
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(error: ManageError) -> Self {
        match error {
            ManageError::Invalid(detail) => Self::validation(detail),
            ManageError::NotFound => {
                Self::not_found("SUBSCRIPTION_NOT_FOUND", "no such subscription")
            }
            ManageError::DeviceNotFound => Self::not_found("DEVICE_NOT_FOUND", "no such device"),
            ManageError::Command(error) => error.into(),
            ManageError::Read(error) => error.into(),
        }
    }
}

impl From<LicensingError> for ApiError {
    fn from(error: LicensingError) -> Self {
        let detail = error.to_string();
        match error {
            LicensingError::InvalidFingerprint => Self::validation(detail),
            LicensingError::LicenseNotFound => Self::not_found("LICENSE_NOT_FOUND", detail),
            LicensingError::DeviceNotActivated => Self::not_found("DEVICE_NOT_ACTIVATED", detail),
            LicensingError::FingerprintMismatch => {
                Self::new(StatusCode::FORBIDDEN, "FINGERPRINT_MISMATCH", detail)
            }
            LicensingError::Token(TokenError::Invalid) => {
                Self::unauthorized("TOKEN_INVALID", detail)
            }
            LicensingError::Token(TokenError::Expired) => {
                Self::unauthorized("TOKEN_EXPIRED", detail)
            }
            LicensingError::TokenRevoked => Self::unauthorized("TOKEN_REVOKED", detail),
            LicensingError::OutOfScope {
                code,
                missing_entitlements,
            } => {
                let problem = Self::new(StatusCode::FORBIDDEN, code.as_str(), detail);
                if missing_entitlements.is_empty() {
                    problem
                } else {
                    problem.with("missing_entitlements", missing_entitlements)
                }
            }
            LicensingError::Command(error) => error.into(),
            LicensingError::Read(error) => error.into(),
            LicensingError::Signing(_) | LicensingError::TokenNotRecorded(_) => {
                Self::internal(crate::telemetry::error_chain(&error))
            }
        }
    }
}

impl From<crate::read::analytics::RangeError> for ApiError {
    fn from(error: crate::read::analytics::RangeError) -> Self {
        Self::validation(error.to_string())
    }
}

impl From<WebhookEndpointError> for ApiError {
    fn from(error: WebhookEndpointError) -> Self {
        use WebhookEndpointError as E;
        let detail = error.to_string();
        match error {
            E::NotFound => Self::not_found("WEBHOOK_NOT_FOUND", detail),
            E::AlreadyExists => Self::new(StatusCode::CONFLICT, "WEBHOOK_EXISTS", detail),
            E::Deleted => Self::new(StatusCode::GONE, "WEBHOOK_DELETED", detail),
            E::InvalidUrl { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_WEBHOOK_URL",
                detail,
            ),
            E::UnknownEventType(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNKNOWN_EVENT_TYPE",
                detail,
            ),
            E::InvalidEventTypes { .. } | E::InvalidDescription { .. } => Self::validation(detail),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::UrlRefused(detail) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "WEBHOOK_URL_REFUSED",
                detail,
            ),
            WebhookError::NotFound => {
                Self::not_found("WEBHOOK_NOT_FOUND", "no such webhook endpoint")
            }
            WebhookError::DeliveryNotFound => {
                Self::not_found("DELIVERY_NOT_FOUND", "no such delivery for this endpoint")
            }
            WebhookError::Command(error) => error.into(),
            WebhookError::Read(error) => error.into(),
        }
    }
}
