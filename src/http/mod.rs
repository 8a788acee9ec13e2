//! The HTTP API: one router per resource, merged here with the layers every request passes.

pub mod access;
pub mod access_log;
mod analytics;
mod auth;
mod catalogue;
pub mod client_origin;
pub mod connections;
mod devices;
mod docs;
pub mod drain;
pub mod error;
mod events;
pub mod extract;
mod health;
pub mod idempotency;
mod licensing;
pub mod limits;
pub mod metrics;
pub mod security_headers;
pub mod storable;
mod subscriptions;
pub mod views;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::IntoResponse;
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::app::SharedApp;
use crate::monitoring;
use error::ApiError;
use limits::Budget;

pub fn router(app: SharedApp) -> Router {
    // Where credentials are guessed (sign-in, license keys, tokens): limited per client
    // address, with a budget each. The JSON and the panel sign-in share one budget (the
    // layer's clones share its state): two doors, one count of guesses.
    let sign_in_limit =
        limits::per_client_address(Budget::SignIn, app.config.rate_limit_sign_in_per_minute);
    let sign_in = limited(auth::router(), sign_in_limit.clone());
    let licensing = limited(
        licensing::router(),
        limits::per_client_address(
            Budget::Licensing,
            app.config.rate_limit_licensing_per_minute,
        ),
    );
    let (api, openapi) = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(sign_in)
        .merge(licensing)
        .merge(licensing::verification_keys_router())
        .merge(subscriptions::router())
        .merge(devices::router())
        .merge(analytics::router(app.config.enable_analytics))
        .merge(events::router())
        .merge(webhooks::router())
        .merge(catalogue::router())
        .merge(health::router())
        .merge(metrics::router())
        .split_for_parts();
    let request_id = HeaderName::from_static(extract::REQUEST_ID_HEADER);
    api.merge(docs::router(docs::complete(&openapi)))
        .merge(crate::panel::router(sign_in_limit))
        // Every route is in: each hands its template to the HTTP metrics (outermost layer).
        .route_layer(axum::middleware::from_fn(monitoring::http::remember_route))
        .fallback(|| async { ApiError::not_found("NOT_FOUND", "no such endpoint") })
        // After every route is in: axum keeps the `Allow` header on this answer.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "this endpoint does not accept that method; see the Allow header",
            )
        })
        // For the middleware that routes opt into (`idempotency`), built before the state is.
        .layer(axum::Extension(app.clone()))
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .layer(cors(&app.config.allowed_origins))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            // The path only: query strings and bodies may carry credentials.
            let request_id = request.headers().get(extract::REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id);
            // A caller that is itself traced (W3C `traceparent`) gets its trace continued.
            let traceparent = request.headers().get(crate::telemetry::traces::TRACEPARENT).and_then(|v| v.to_str().ok());
            crate::telemetry::traces::continue_trace(&span, traceparent);
            span
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // The last line of defence: a panic anywhere below answers a logged 500 problem
        // instead of dropping the connection.
        .layer(CatchPanicLayer::custom(panic_response))
        // Every 5xx answer, a panic's included, to Sentry when SENTRY_DSN is set.
        .layer(axum::middleware::from_fn(crate::telemetry::error_reports::report_server_errors))
        .layer(axum::middleware::from_fn(monitoring::http::track_requests))
        // Around the metrics: it reads the route they carry out, and times the same span.
        .layer(middleware::from_fn_with_state(
            app.config.access_log,
            access_log::log_request,
        ))
        // Outside everything that answers, so that every answer has them (timeouts and
        // panics included).
        .layer(middleware::from_fn(security_headers::add_security_headers))
        // First of all: every layer below sees the client address and scheme as resolved
        // behind trusted proxies.
        .layer(middleware::from_fn_with_state(
            Arc::new(app.config.trusted_proxies.clone()),
            client_origin::resolve_client_origin,
        ))
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

fn limited(
    router: OpenApiRouter<SharedApp>,
    limit: Option<limits::Limit>,
) -> OpenApiRouter<SharedApp> {
    match limit {
        Some(limit) => router.layer(limit),
        None => router,
    }
}

fn cors(allowed_origins: &[String]) -> CorsLayer {
    let origins: Arc<[HeaderValue]> = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    // A predicate over a shared list rather than `AllowOrigin::list`: axum clones every
    // route's layers for each request, and a list would be copied (a `Vec`) every time.
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origins.contains(origin)
        }))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::header::IF_MATCH,
            HeaderName::from_static(idempotency::HEADER),
        ])
        .expose_headers([HeaderName::from_static(idempotency::REPLAYED_HEADER)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn cors_allows_the_listed_origins_only() {
        let router: Router = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(cors(&["https://console.example.com".to_owned()]));
        for (origin, allowed) in [
            ("https://console.example.com", true),
            ("https://console.example.com.evil.example", false),
            ("https://other.example.com", false),
        ] {
            let request = Request::builder()
                .uri("/")
                .header("origin", origin)
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let echoed = response
                .headers()
                .get(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN);
            assert_eq!(
                echoed.map(|v| v.to_str().unwrap()),
                allowed.then_some(origin),
                "{origin}"
            );
        }
    }

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
