//! `Idempotency-Key` on the POSTs that write. A router opts its routes in with one line,
//! after the routes it covers:
//!
//! ```ignore
//! .route_layer(axum::middleware::from_fn(idempotency::admin_keys))   // admin-role routes
//! .route_layer(axum::middleware::from_fn(idempotency::license_keys)) // licensing routes
//! ```
//!
//! and documents the header with `params(IdempotencyKeyHeader)` in each operation's
//! `#[utoipa::path]` (the document's completion adds the answers below). Only POST is
//! affected; other methods on the same routes pass through, and so does a request whose
//! caller cannot be named (no valid credential, an auditor on a writing route, a license key
//! no license was issued: the handler refuses it and nothing runs).
//!
//! Answers of its own: 400 `INVALID_IDEMPOTENCY_KEY`, 409 `IDEMPOTENCY_KEY_IN_FLIGHT`,
//! 409 `IDEMPOTENCY_RESPONSE_UNREADABLE`, 422 `IDEMPOTENCY_KEY_REUSED`. A replayed answer
//! carries `Idempotent-Replayed: true`.

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::Utc;
use flowlytix_aggregates::license_key::LicenseKey;
use flowlytix_aggregates::{Role, SubscriptionId};
use tracing::Instrument;
use utoipa::IntoParams;

use super::access;
use super::error::ApiError;
use crate::app::SharedApp;
use crate::crypto::sha256_hex;
use crate::idempotency::{
    Begun, IdempotencyKey, RememberedResponse, RequestShape, Scope, RUN_LIMIT,
};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// What the header accepts, for the OpenAPI document: printable ASCII, and no space at
/// either end (HTTP strips it, so such a key could never arrive as sent).
pub const KEY_PATTERN: &str = r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$";
/// The headers of a first answer that a replay gives again; the rest (request id, dates,
/// security headers) belong to the answer being sent now.
const REMEMBERED_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];
/// Our answers are small JSON documents; this only bounds memory.
const MAX_REMEMBERED_BODY: usize = 4 * 1024 * 1024;

/// The `Idempotency-Key` request header, for `params(...)` in `#[utoipa::path]`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by the middleware from the raw headers; here for the document
pub struct IdempotencyKeyHeader {
    /// Repeat this request safely: the same key with the same request within 24 h gives the
    /// first successful answer again (with `Idempotent-Replayed: true`) without doing it
    /// twice. Keys belong to their caller (the admin, or the license).
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

/// For routes an admin access token authorizes: keys belong to the admin.
pub async fn admin_keys(
    Extension(app): Extension<SharedApp>,
    request: Request,
    next: Next,
) -> Response {
    guard(app, Caller::Admin, request, next).await
}

/// For licensing routes: keys belong to the license the request names.
pub async fn license_keys(
    Extension(app): Extension<SharedApp>,
    request: Request,
    next: Next,
) -> Response {
    guard(app, Caller::License, request, next).await
}

#[derive(Clone, Copy)]
enum Caller {
    Admin,
    License,
}

async fn guard(app: SharedApp, caller: Caller, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let mut values = request.headers().get_all(HEADER).iter();
    let Some(raw_key) = values.next() else {
        return next.run(request).await;
    };
    let key = match (IdempotencyKey::parse(raw_key.as_bytes()), values.next()) {
        (Ok(key), None) => key,
        _ => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_IDEMPOTENCY_KEY",
                "send one Idempotency-Key of 1 to 255 printable ASCII characters",
            )
            .into_response()
        }
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, app.config.max_body_bytes).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the request body is too large",
        )
        .into_response();
    };
    let scope = match scope(&app, caller, &parts, &body).await {
        Ok(Some(scope)) => scope,
        // No caller to own the key: the handler refuses the request, nothing runs.
        Ok(None) => return next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(error) => return ApiError::unavailable(error).into_response(),
    };
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let request_hash = RequestShape {
        method: parts.method.as_str(),
        route,
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        body: &body,
    }
    .fingerprint();
    let begun = match app
        .idempotency
        .begin(&scope, &key, &request_hash, Utc::now())
        .await
    {
        Ok(begun) => begun,
        Err(error) => return ApiError::unavailable(error).into_response(),
    };
    match begun {
        Begun::Run(ticket) => {
            let mut request = Request::from_parts(parts, Body::from(body));
            request.extensions_mut().insert(ticket.request());
            // Run to the end even if the client goes away or the request times out: the
            // answer is then remembered for the retry instead of the key staying locked
            // with nobody knowing whether the command ran. But not past RUN_LIMIT: once the
            // lease runs out a retry may take the key, and both would then run.
            let run = tokio::spawn(
                async move {
                    match tokio::time::timeout(RUN_LIMIT, next.run(request)).await {
                        Ok(response) => remember(&app, ticket, response).await,
                        // Whether it committed is unknown: the key stays held until its
                        // lease runs out, as after a crash.
                        Err(_) => {
                            tracing::warn!("an idempotent request was stopped at its time limit");
                            ApiError::unavailable("an idempotent request ran past its time limit")
                                .into_response()
                        }
                    }
                }
                .instrument(tracing::Span::current()),
            );
            run.await.unwrap_or_else(|error| {
                ApiError::internal(format!("an idempotent request failed: {error}")).into_response()
            })
        }
        Begun::Replay(remembered) => replay(remembered),
        Begun::InFlight => {
            let mut response = ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_IN_FLIGHT",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Begun::Reused => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used for a different request; use a new key",
        )
        .into_response(),
        Begun::Unreadable => ApiError::new(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_RESPONSE_UNREADABLE",
            "this request was already carried out, but its first answer can no longer be read; \
             look up its outcome, and use a new key to act again",
        )
        .into_response(),
    }
}

/// Who owns the key, or none when the request carries no credential the handler accepts.
async fn scope(
    app: &SharedApp,
    caller: Caller,
    parts: &Parts,
    body: &Bytes,
) -> Result<Option<Scope>, sqlx::Error> {
    Ok(match caller {
        // Every route with admin keys writes, which auditors may not: the handler refuses
        // them, and an auditor owns no key (its refused requests leave no row behind).
        Caller::Admin => access::session(parts, app)
            .await
            .ok()
            .filter(|session| session.role == Role::Admin)
            .map(|session| Scope::admin(session.admin_id)),
        Caller::License => {
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
                return Ok(None);
            };
            if let Some(raw_key) = body.get("license_key").and_then(serde_json::Value::as_str) {
                let Ok(key) = LicenseKey::parse(raw_key) else {
                    return Ok(None);
                };
                // A key some license was issued: a well-formed guess is refused by the
                // handler and must not leave a row behind (anyone can send guesses).
                let key_hash = sha256_hex(key.expose());
                let issued = app.lookup.subscription_by_key_hash(&key_hash).await?;
                return Ok(issued.map(|_| Scope::license_key(&key_hash)));
            }
            let Some(token) = body.get("token").and_then(serde_json::Value::as_str) else {
                return Ok(None);
            };
            // Verified, so that nobody can act in the name of a license they do not hold.
            app.licensing
                .tokens()
                .verify(token)
                .ok()
                .map(|claims| Scope::license(SubscriptionId(claims.sid)))
        }
    })
}

/// Keeps a successful answer for the key; lets the key go after any other answer (it wrote
/// nothing, so a retry may run).
async fn remember(
    app: &SharedApp,
    ticket: crate::idempotency::Ticket,
    response: Response,
) -> Response {
    if !response.status().is_success() {
        if let Err(error) = app.idempotency.forget(ticket).await {
            // The key stays held until its lease runs out; then a retry runs.
            tracing::warn!(%error, "cannot release an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, MAX_REMEMBERED_BODY).await {
        Ok(body) => body,
        Err(error) => {
            return ApiError::internal(format!("cannot read an answer to remember: {error}"))
                .into_response()
        }
    };
    let remembered = RememberedResponse {
        status: parts.status.as_u16(),
        headers: REMEMBERED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), value.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    match app.idempotency.remember(ticket, &remembered).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("an idempotent request outlived its lease; a retry took its key over")
        }
        // The command ran; its answer still goes out. A retry after the lease runs again.
        Err(error) => tracing::error!(%error, "cannot remember an idempotent answer"),
    }
    Response::from_parts(parts, Body::from(body))
}

fn replay(remembered: RememberedResponse) -> Response {
    let status = StatusCode::from_u16(remembered.status).unwrap_or(StatusCode::OK);
    let mut response = (status, remembered.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    for (name, value) in remembered.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    headers.insert(
        HeaderName::from_static(REPLAYED_HEADER),
        HeaderValue::from_static("true"),
    );
    response
}
