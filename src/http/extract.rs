//! Extractors whose rejections are problem+json, and the request context stored in events.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, MissingJsonContentType};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::Utc;
use serde::de::DeserializeOwned;

use super::client_origin::client_ip;
use super::error::ApiError;
use super::storable;
use crate::store::EventMetadata;

/// `Json` whose rejections are problem+json (malformed JSON 400, wrong types or unknown
/// fields 422, too large 413, wrong content type 415), and which refuses (422) any value
/// that the event store could not give back exactly (see [`storable`]).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(JsonRejection::from(MissingJsonContentType::default()).into());
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(JsonRejection::from)?;
        // Syntax first: serde stops at the first error it meets, so a truncated body whose
        // first key is unknown would otherwise be a 422 "unknown field", not a 400.
        let parsed = serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "MALFORMED_JSON",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        storable::check_value(&parsed).map_err(unstorable_body)?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// A body that no store can hold as sent: 422, JSON and form alike.
fn unstorable_body(error: storable::Unstorable) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_BODY",
        error.to_string(),
    )
}

/// The fields of a form body (`application/x-www-form-urlencoded`, the admin panel's),
/// checked exactly as a JSON body is (see [`storable`]) before they are read into `T`: the
/// panel's forms and the JSON API go through one door, so the panel can never store what
/// the API refuses.
pub fn form_fields<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let unreadable = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_FORM",
            "the form could not be read",
        )
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(bytes).map_err(|_| unreadable())?;
    let fields = storable::form_as_json(pairs);
    storable::check_value(&fields).map_err(unstorable_body)?;
    // Read from the checked fields, where a repeated field (the ticked boxes of a group) is
    // a list: a field sent once is a string, and a text field sent twice is still refused.
    serde_json::from_value(fields).map_err(|_| unreadable())
}

/// An optional body: absent (no content type and nothing sent) is `None`; anything sent is
/// read as [`ApiJson`] reads it, so a body without its content type is still a 415.
impl<T, S> OptionalFromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let headers = request.headers();
        let nothing_sent = !headers.contains_key(header::CONTENT_TYPE)
            && !headers.contains_key(header::TRANSFER_ENCODING)
            && headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|length| length.as_bytes() == b"0");
        if nothing_sent {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

/// `application/json` or any `application/*+json`, as `axum::Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
}

/// `Path` whose rejection (such as a malformed UUID) is a problem+json 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Query` whose rejection is a problem+json 400; a query string carrying what no store can
/// hold as a filter (NUL) is refused the same way, before it reaches any SQL.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        storable::check_query(parts.uri.query().unwrap_or(""))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_QUERY", e.to_string()))?;
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_USER_AGENT_LEN: usize = 256;

/// Where a request came from, for the audit trail of the events it causes.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub ip: String,
    pub user_agent: String,
}

impl RequestContext {
    pub fn metadata(&self, actor: impl Into<String>) -> EventMetadata {
        EventMetadata {
            actor: actor.into(),
            request_id: self.request_id.clone(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            occurred_at: Utc::now(),
        }
    }

    fn from_headers(headers: &HeaderMap, client: Option<IpAddr>) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        Self {
            request_id: text(REQUEST_ID_HEADER).chars().take(64).collect(),
            // X-Forwarded-For only as far as TRUSTED_PROXIES vouch for it (see
            // `client_origin`): a header anyone can set is no audit trail.
            ip: client.map(|ip| ip.to_string()).unwrap_or_default(),
            user_agent: text(header::USER_AGENT.as_str())
                .chars()
                .take(MAX_USER_AGENT_LEN)
                .collect(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let client = client_ip(&parts.extensions);
        Ok(Self::from_headers(&parts.headers, client))
    }
}

/// The request id an answer echoes: the one the caller sent, or the one generated for it
/// (empty when there is none, e.g. on an answer made outside the id layers).
pub fn answered_request_id(response: &axum::response::Response) -> &str {
    response
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Marks a read answered before the read models reached the requested `min_position`.
pub const CONSISTENCY_HEADER: &str = "x-read-model-consistent";

pub fn with_consistency(
    mut response: axum::response::Response,
    consistent: bool,
) -> axum::response::Response {
    let value = if consistent { "true" } else { "false" };
    response.headers_mut().insert(
        CONSISTENCY_HEADER,
        axum::http::HeaderValue::from_static(value),
    );
    response
}
