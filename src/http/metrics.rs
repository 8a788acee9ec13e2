//! `GET /metrics`: Prometheus text. With `METRICS_TOKEN` set it answers only a request that
//! carries that bearer token (compared in constant time), on the main port and on
//! `METRICS_ADDR` alike. Without a token the main port serves it in development only: in
//! production it is then served on `METRICS_ADDR` alone (production refuses to start with
//! neither).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, Problem};
use crate::app::SharedApp;
use crate::config::Config;
use crate::crypto::sha256_hex;
use crate::monitoring;

/// The exposition format `render` writes.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Serves `/metrics`, and nothing else, on `METRICS_ADDR` when that is set, until the
/// returned task is aborted. The address is bound before this returns, so that one in use
/// stops the start-up with its error.
pub async fn serve_own_listener(app: &SharedApp) -> std::io::Result<Option<JoinHandle<()>>> {
    let Some(address) = app.config.metrics_addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics on its own listener");
    let router = Router::new()
        .route("/metrics", get(metrics_on_own_listener))
        .with_state(app.clone());
    // The same limits as the main port: a slow scraper (or anyone who reaches the port)
    // cannot hold connections open either.
    let limits = super::connections::ConnectionLimits::from_config(&app.config);
    Ok(Some(tokio::spawn(super::connections::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    ))))
}

/// Prometheus metrics, in the text exposition format. Requires `Authorization: Bearer
/// <METRICS_TOKEN>` when that is set.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, content_type = "text/plain", body = String, description = "Prometheus text exposition format"),
        (status = 401, body = Problem, description = "METRICS_TOKEN_REQUIRED: METRICS_TOKEN is set and the request does not carry it"),
        (status = 404, body = Problem, description = "NOT_FOUND: in production without METRICS_TOKEN, metrics are served on METRICS_ADDR only")))]
async fn metrics(State(app): State<SharedApp>, headers: HeaderMap) -> Result<Response, ApiError> {
    if app.config.metrics_token.is_none() && app.config.is_production() {
        return Err(ApiError::not_found("NOT_FOUND", "no such endpoint"));
    }
    scrape(&app, &headers).await
}

async fn metrics_on_own_listener(
    State(app): State<SharedApp>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    scrape(&app, &headers).await
}

async fn scrape(app: &SharedApp, headers: &HeaderMap) -> Result<Response, ApiError> {
    if !authorized(&app.config, headers) {
        let mut refusal = ApiError::unauthorized(
            "METRICS_TOKEN_REQUIRED",
            "send the metrics token as Authorization: Bearer <METRICS_TOKEN>",
        )
        .into_response();
        refusal.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Ok(refusal);
    }
    monitoring::sampled::sample(app.sampled_sources()).await;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], monitoring::render()).into_response())
}

/// Whether the request may read the metrics. Both sides are hashed first, so the comparison
/// takes the same time whatever the length or content of a guess. (A set token is never
/// empty: an empty METRICS_TOKEN counts as unset.)
fn authorized(config: &Config, headers: &HeaderMap) -> bool {
    let Some(expected) = &config.metrics_token else {
        return true;
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = sha256_hex(expected.expose_secret().as_bytes());
    let offered = sha256_hex(offered.as_bytes());
    bool::from(
        expected
            .as_str()
            .as_bytes()
            .ct_eq(offered.as_str().as_bytes()),
    )
}
