//! Rate limits per client address, with a budget of their own for sign-in and for
//! licensing, where credentials are guessed. Each answer says its budget
//! (`X-RateLimit-Limit`) and what is left of it (`X-RateLimit-Remaining`); a refusal is a
//! 429 `RATE_LIMITED` problem with `Retry-After`.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::middleware::StateInformationMiddleware;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use super::client_origin::client_ip;
use super::error::ApiError;

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// `/api/v1/auth/*`: password guessing.
    SignIn,
    /// `/api/v1/licensing/*`: license key guessing, and every client app's calls.
    Licensing,
}

impl Budget {
    pub fn name(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::Licensing => "licensing",
        }
    }
}

/// Every refusal passes here, whichever limit refused it: the one place to count them.
pub fn record_rate_limited(budget: &'static str) {
    tracing::info!(budget, "request refused by a rate limit");
    crate::monitoring::record::rate_limited(budget);
}

pub type Limit = GovernorLayer<ClientAddress, StateInformationMiddleware, axum::body::Body>;

/// `per_minute` requests a minute per client address, in bursts up to the same number;
/// `None` when 0 (no limit).
pub fn per_client_address(budget: Budget, per_minute: u32) -> Option<Limit> {
    if per_minute == 0 {
        return None;
    }
    let config = GovernorConfigBuilder::default()
        .period(Duration::from_millis(60_000 / u64::from(per_minute)).max(Duration::from_millis(1)))
        .burst_size(per_minute)
        .key_extractor(ClientAddress)
        .use_headers()
        .finish()?;
    let config = Arc::new(config);
    forget_idle_addresses(Arc::downgrade(&config));
    Some(GovernorLayer::new(config).error_handler(move |error| refusal(budget, error)))
}

fn refusal(budget: Budget, error: GovernorError) -> Response {
    let (wait, headers) = match error {
        GovernorError::TooManyRequests { wait_time, headers } => {
            (Duration::from_secs(wait_time), headers)
        }
        _ => (Duration::ZERO, None),
    };
    let mut response = too_many_requests(
        budget.name(),
        // tower_governor rounds the wait down to whole seconds (0 for any wait under
        // one): one more second is the least wait that is never too short.
        wait + Duration::from_secs(1),
        "too many requests from this address",
    );
    let out = response.headers_mut();
    for name in ["x-ratelimit-limit", "x-ratelimit-remaining"] {
        if let Some(value) = headers.as_ref().and_then(|h| h.get(name)) {
            out.insert(name, value.clone());
        }
    }
    response
}

/// The 429 `RATE_LIMITED` problem, with `Retry-After` in whole seconds (rounded up, at
/// least 1), for any limit; counted through [`record_rate_limited`].
pub fn too_many_requests(limit: &'static str, wait: Duration, what: &str) -> Response {
    record_rate_limited(limit);
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        format!("{what}; retry in {seconds} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Every address that ever sent a request has a cell in the limiter: drop those whose
/// budget is full again, once a minute, for as long as the limiter lives.
fn forget_idle_addresses(
    config: Weak<
        tower_governor::governor::GovernorConfig<ClientAddress, StateInformationMiddleware>,
    >,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            let Some(config) = config.upgrade() else {
                return;
            };
            config.limiter().retain_recent();
        }
    });
}

/// The rate limiter's key: the client address as resolved behind trusted proxies, or the
/// TCP peer; for IPv6, its /64.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress;

impl KeyExtractor for ClientAddress {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        client_ip(request.extensions())
            .map(network_of)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// What one client holds: an IPv4 address, or an IPv6 /64 (a host is usually given a whole
/// /64 and may pick any address in it, so counting single IPv6 addresses limits nobody).
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_an_ipv4_one_by_its_address() {
        let network = |text: &str| network_of(text.parse().unwrap());
        assert_eq!(
            network("2001:db8:1:2:aaaa::1"),
            network("2001:db8:1:2::ffff")
        );
        assert_eq!(network("2001:db8:1:2::1").to_string(), "2001:db8:1:2::");
        assert_ne!(network("2001:db8:1:2::1"), network("2001:db8:1:3::1"));
        assert_ne!(network("198.51.100.1"), network("198.51.100.2"));
    }
}
