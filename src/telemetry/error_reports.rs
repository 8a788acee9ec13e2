//! Error reports to Sentry (`SENTRY_DSN`): every 5xx answer and every panic, and errors
//! logged through `tracing`. Nothing that may hold a secret leaves: no request body,
//! headers, cookies or query string, and no client address.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use sentry::protocol::{Event, Level};
use sentry::{ClientInitGuard, ClientOptions, Hub};

use crate::http::extract::answered_request_id;
use crate::monitoring::http::matched_route;

/// Starts reporting to the DSN; reports stop (after a flush) when the guard is dropped.
pub fn init(dsn: &SecretString, environment: &str, release: &str) -> Option<ClientInitGuard> {
    let dsn = match dsn.expose_secret().parse() {
        Ok(dsn) => dsn,
        Err(error) => {
            tracing::error!(%error, "SENTRY_DSN is not a DSN; no error reports are sent");
            return None;
        }
    };
    let guard = sentry::init(ClientOptions {
        dsn: Some(dsn),
        environment: Some(environment.to_owned().into()),
        release: Some(release.to_owned().into()),
        send_default_pii: false,
        before_send: Some(std::sync::Arc::new(|event| Some(scrub(event)))),
        before_breadcrumb: Some(std::sync::Arc::new(|mut breadcrumb| {
            // Log fields may name anything; a breadcrumb keeps its message only.
            breadcrumb.data.clear();
            Some(breadcrumb)
        })),
        ..ClientOptions::default()
    });
    tracing::info!("error reports go to Sentry");
    Some(guard)
}

/// What an event may carry of a request: its method and URL without the query string.
/// Everything else a request has can hold a credential or personal data.
fn scrub(mut event: Event<'static>) -> Event<'static> {
    if let Some(request) = event.request.as_mut() {
        request.data = None;
        request.cookies = None;
        request.headers.clear();
        request.query_string = None;
        request.env.clear();
        if let Some(url) = request.url.as_mut() {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_password(None);
            let _ = url.set_username("");
        }
    }
    event.user = None;
    event.extra.clear();
    event
}

/// Outer layer: each 5xx answer (a panic's 500 included) is reported with its method,
/// route template, status and request id, and nothing from the request itself.
pub async fn report_server_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        if let Some(client) = Hub::main().client().filter(|c| c.is_enabled()) {
            let route = matched_route(&response);
            let request_id = answered_request_id(&response);
            let mut event = Event {
                level: Level::Error,
                message: Some(format!("{} answered to {method} {route}", status.as_u16())),
                ..Event::default()
            };
            event
                .tags
                .insert("status".into(), status.as_u16().to_string());
            event.tags.insert("route".into(), route.to_owned());
            event.tags.insert("method".into(), method.to_string());
            event
                .tags
                .insert("request_id".into(), request_id.to_owned());
            client.capture_event(event, None);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry::protocol::{Map, Request as EventRequest};

    #[test]
    fn scrubbing_keeps_no_body_header_cookie_query_or_user() {
        let mut headers = Map::new();
        headers.insert("Authorization".to_owned(), "Bearer secret-token".to_owned());
        let event = Event {
            request: Some(EventRequest {
                url: "https://user:pw@example.com/x?key=secret-query"
                    .parse()
                    .ok(),
                data: Some("secret-body".into()),
                cookies: Some("session=secret-cookie".into()),
                query_string: Some("key=secret-query".into()),
                headers,
                ..EventRequest::default()
            }),
            user: Some(sentry::User {
                ip_address: Some(sentry::protocol::IpAddress::Auto),
                ..sentry::User::default()
            }),
            ..Event::default()
        };
        let scrubbed = serde_json::to_string(&scrub(event)).unwrap();
        for secret in [
            "secret-token",
            "secret-body",
            "secret-cookie",
            "secret-query",
            "pw",
        ] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
    }
}
