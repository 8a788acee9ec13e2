//! HTTP metrics: every request counted and timed by method, route template and status
//! class. The template (`/api/v1/subscriptions/{id}`) is known only once the router has
//! matched, so an inner route layer hands it back out on the response to the outer layer
//! that times the whole request, fallbacks and refusals by outer layers included (those
//! show as `unmatched`, one label value however many paths are tried).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::record;

/// The label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The route a request matched, carried on its response.
#[derive(Clone)]
pub(crate) struct RouteTemplate(pub(crate) String);

/// Outermost layer: counts, times and tracks in flight every request.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let _in_flight = InFlight::enter();
    let started = Instant::now();
    let response = next.run(request).await;
    record::http_request(
        method,
        matched_route(&response).to_owned(),
        status_class(response.status()),
        started.elapsed(),
    );
    response
}

/// The route template the request matched (carried on its response), or [`UNMATCHED`].
pub fn matched_route(response: &Response) -> &str {
    response
        .extensions()
        .get::<RouteTemplate>()
        .map_or(UNMATCHED, |r| r.0.as_str())
}

/// Route layer: puts the matched template on the response for `track_requests`.
pub async fn remember_route(
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response
            .extensions_mut()
            .insert(RouteTemplate(matched.as_str().to_owned()));
    }
    response
}

/// The standard methods by name; anything else as one value, so that made-up methods cannot
/// create series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts a request in flight until it is answered or dropped (a client that hangs up).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        record::http_in_flight(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        record::http_in_flight(-1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_and_methods_have_few_values() {
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::TOO_MANY_REQUESTS), "4xx");
        assert_eq!(status_class(StatusCode::INTERNAL_SERVER_ERROR), "5xx");
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap_or(Method::GET)),
            "other"
        );
    }
}
