//! Extractors whose rejections are problem+json, and the request context stored in events.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use chrono::Utc;

use super::error::ApiError;
use crate::store::EventMetadata;

/// `Json` whose rejections are problem+json (malformed JSON 400, wrong types or unknown
/// fields 422, too large 413, wrong content type 415).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Path` whose rejection (such as a malformed UUID) is a problem+json 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Query` whose rejection is a problem+json 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

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

    fn from_headers(headers: &HeaderMap, peer: Option<SocketAddr>) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        Self {
            request_id: text(REQUEST_ID_HEADER).chars().take(64).collect(),
            // The peer address, not X-Forwarded-For: a header anyone can set is no audit
            // trail. Behind a proxy, configure it to log the client address.
            ip: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
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
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Self::from_headers(&parts.headers, peer))
    }
}
