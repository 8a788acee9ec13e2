//! The HTTP API: one router per resource, merged here with the layers every request passes.

pub mod access;
mod analytics;
mod auth;
mod devices;
mod docs;
pub mod error;
mod events;
pub mod extract;
mod health;
mod licensing;
pub mod storable;
mod subscriptions;
pub mod views;
mod webhooks;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use governor::clock::QuantaInstant;
use governor::middleware::NoOpMiddleware;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::app::SharedApp;
use error::ApiError;

pub fn router(app: SharedApp) -> Router {
    // Where credentials are guessed (sign-in, license keys, tokens): limited per client IP.
    let public = auth::router().merge(licensing::router());
    let public = match rate_limit(app.config.rate_limit_per_minute) {
        Some(limit) => public.layer(limit),
        None => public,
    };
    let (api, openapi) = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(public)
        .merge(subscriptions::router())
        .merge(devices::router())
        .merge(analytics::router())
        .merge(events::router())
        .merge(webhooks::router())
        .merge(health::router())
        .split_for_parts();
    let request_id = HeaderName::from_static(extract::REQUEST_ID_HEADER);
    api.merge(docs::router(docs::complete(&openapi)))
        .fallback(|| async { ApiError::not_found("NOT_FOUND", "no such endpoint") })
        // After every route is in: axum keeps the `Allow` header on this answer.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "this endpoint does not accept that method; see the Allow header",
            )
        })
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .layer(cors(&app.config.allowed_origins))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            // The path only: query strings and bodies may carry credentials.
            let request_id = request.headers().get(extract::REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // The last line of defence: a panic anywhere below answers a logged 500 problem
        // instead of dropping the connection.
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(app)
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::internal(format!("panic while handling a request: {message}")).into_response()
}

/// `per_minute` requests a minute per client address (the TCP peer: behind a proxy, limit
/// there), with bursts up to the same number; 0 turns the limit off.
fn rate_limit(
    per_minute: u32,
) -> Option<GovernorLayer<PeerIpKeyExtractor, NoOpMiddleware<QuantaInstant>, axum::body::Body>> {
    if per_minute == 0 {
        return None;
    }
    let config = GovernorConfigBuilder::default()
        .period(Duration::from_millis(60_000 / u64::from(per_minute)).max(Duration::from_millis(1)))
        .burst_size(per_minute)
        .key_extractor(PeerIpKeyExtractor)
        .finish()?;
    Some(GovernorLayer::new(config).error_handler(|error| {
        // tower_governor rounds the wait down to whole seconds (0 for any wait under one):
        // one more second is the least wait that is never too short.
        let wait = match &error {
            GovernorError::TooManyRequests { wait_time, .. } => wait_time.saturating_add(1),
            _ => 1,
        };
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many requests from this address; retry in {wait} s"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(wait));
        response
    }))
}

fn cors(allowed_origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::header::IF_MATCH,
        ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panic_answers_a_500_problem_and_never_its_message() {
        let router: Router = Router::new()
            .route(
                "/",
                get(|| async {
                    let cause: &str = "internal detail";
                    std::panic::panic_any(cause.to_owned());
                    #[allow(unreachable_code)]
                    "unreachable"
                }),
            )
            .layer(CatchPanicLayer::custom(panic_response));
        let request = Request::builder().uri("/").body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "INTERNAL_ERROR");
        assert!(!String::from_utf8_lossy(&body).contains("internal detail"));
    }
}
