//! Who sent a request, and over what: the client address and whether the request arrived
//! over HTTPS. Behind a reverse proxy the TCP peer is the proxy, so `X-Forwarded-For` and
//! `X-Forwarded-Proto` are believed, but only when the peer is one of `TRUSTED_PROXIES`:
//! anyone else can write those headers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The networks whose forwarding headers are believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated CIDRs or single addresses, e.g. `10.0.0.0/8, 192.168.1.7`.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{item:?} is neither a CIDR nor an IP address"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where the request came from, given its TCP peer and its headers.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientOrigin {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return ClientOrigin {
                ip: peer,
                https: false,
            };
        }
        ClientOrigin {
            ip: self.client_from_forwarded_for(peer, headers),
            https: forwarded_proto_is_https(headers),
        }
    }

    /// The rightmost `X-Forwarded-For` address that is not a trusted proxy: every hop to
    /// its right was one of ours and told the truth about who connected to it; anything to
    /// its left was written by the client and proves nothing. A hop we cannot read stops
    /// the walk at the last trusted hop, which is then the best we know.
    fn client_from_forwarded_for(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            let Some(address) = parse_hop(hop) else {
                return nearest;
            };
            if !self.contains(address) {
                return address;
            }
            nearest = address;
        }
        nearest
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:5678`), an IPv6 one possibly in brackets without one (`[::1]`, as some proxies
/// write it).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let unbracketed = hop.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| unbracketed.and_then(|h| h.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)))
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// The scheme the first proxy saw: the leftmost `X-Forwarded-Proto` value.
fn forwarded_proto_is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// An IPv4 client reached over an IPv6 socket shows as `::ffff:a.b.c.d`: one client, one
/// address, whichever socket it came through.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The resolved origin of a request, in its extensions (set by [`resolve_client_origin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOrigin {
    /// The client address the rate limiter counts and the events record.
    pub ip: IpAddr,
    /// Whether the request reached us over HTTPS (as a trusted proxy says; this server
    /// itself speaks plain HTTP).
    pub https: bool,
}

/// The client's address: as resolved behind `TRUSTED_PROXIES` (by
/// [`resolve_client_origin`]), else the TCP peer; `None` only for a request that came over
/// no socket (a test calling the router directly).
pub fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ClientOrigin>()
        .map(|origin| origin.ip)
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|peer| peer.0.ip())
        })
}

/// Middleware: resolves the client origin once, for every layer and handler below.
pub async fn resolve_client_origin(
    State(trusted): State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let origin = trusted.resolve(peer, request.headers());
        request.extensions_mut().insert(origin);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_headers_say() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let origin = trusted.resolve(
            ip("203.0.113.9"),
            &headers(&[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-proto", "https"),
            ]),
        );
        assert_eq!(origin.ip, ip("203.0.113.9"));
        assert!(!origin.https);
        let nobody = TrustedProxies::default();
        let origin = nobody.resolve(
            ip("10.0.0.1"),
            &headers(&[("x-forwarded-for", "198.51.100.1")]),
        );
        assert_eq!(origin.ip, ip("10.0.0.1"), "no TRUSTED_PROXIES, no belief");
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_hop() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        // The client wrote a fake first hop; our two proxies appended the truth.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.23, 192.168.1.7")]);
        assert_eq!(
            trusted.resolve(ip("10.1.2.3"), &chain).ip,
            ip("198.51.100.23")
        );
        // Several headers count as one list, in order.
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.23:4711, 10.9.9.9"),
        ]);
        assert_eq!(
            trusted.resolve(ip("10.1.2.3"), &split).ip,
            ip("198.51.100.23")
        );
        // Every hop trusted: the leftmost is the best we know.
        let inside = headers(&[("x-forwarded-for", "10.4.4.4, 10.5.5.5")]);
        assert_eq!(trusted.resolve(ip("10.1.2.3"), &inside).ip, ip("10.4.4.4"));
        // No header: the proxy itself.
        assert_eq!(
            trusted.resolve(ip("10.1.2.3"), &HeaderMap::new()).ip,
            ip("10.1.2.3")
        );
        // An IPv6 hop in brackets, with or without its port.
        for hop in ["[2001:db8::7]", "[2001:db8::7]:4711", "2001:db8::7"] {
            let bracketed = headers(&[("x-forwarded-for", hop)]);
            assert_eq!(
                trusted.resolve(ip("10.1.2.3"), &bracketed).ip,
                ip("2001:db8::7"),
                "{hop}"
            );
        }
        // Garbage stops the walk at the last trusted hop.
        let garbage = headers(&[("x-forwarded-for", "198.51.100.23, nonsense, 10.5.5.5")]);
        assert_eq!(trusted.resolve(ip("10.1.2.3"), &garbage).ip, ip("10.5.5.5"));
    }

    #[test]
    fn https_is_believed_from_a_trusted_proxy_only() {
        let trusted = TrustedProxies::parse("127.0.0.1/32").unwrap();
        let https = headers(&[("x-forwarded-proto", "HTTPS, http")]);
        assert!(trusted.resolve(ip("127.0.0.1"), &https).https);
        assert!(!trusted.resolve(ip("127.0.0.2"), &https).https);
        let http = headers(&[("x-forwarded-proto", "http")]);
        assert!(!trusted.resolve(ip("127.0.0.1"), &http).https);
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let trusted = TrustedProxies::parse("127.0.0.0/8").unwrap();
        let origin = trusted.resolve(
            ip("::ffff:127.0.0.1"),
            &headers(&[("x-forwarded-for", "::ffff:198.51.100.4")]),
        );
        assert_eq!(origin.ip, ip("198.51.100.4"));
    }

    #[test]
    fn a_bad_entry_is_refused_with_its_text() {
        let error = TrustedProxies::parse("10.0.0.0/8, 10.0.0.0/33").unwrap_err();
        assert!(error.contains("10.0.0.0/33"), "{error}");
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
