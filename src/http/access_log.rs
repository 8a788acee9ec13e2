//! The access log: one line per request at `info`, target `access`, written when the
//! answer's head is ready (so `latency_ms` does not include a slow reader's download).
//! The path only: a query string may carry credentials. `ACCESS_LOG=false` turns it off.

use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::client_origin::client_ip;
use super::extract::answered_request_id;
use crate::monitoring::http::matched_route;

/// Middleware; `enabled` is `ACCESS_LOG`.
pub async fn log_request(State(enabled): State<bool>, request: Request, next: Next) -> Response {
    if !enabled {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client_ip = client_ip(request.extensions());
    let response = next.run(request).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let request_id = answered_request_id(&response);
    tracing::info!(
        target: "access",
        method = %method,
        path,
        route = matched_route(&response),
        status = response.status().as_u16(),
        latency_ms,
        // Known for every answer but a streamed one (the event export).
        bytes = response.body().size_hint().exact(),
        request_id,
        client_ip = client_ip.map(tracing::field::display),
        "request"
    );
    response
}
