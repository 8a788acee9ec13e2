//! Where a webhook may be delivered: the address classifier, and a DNS resolver for the
//! delivery client that drops forbidden addresses, so the connection goes only to an
//! address that passed the check (a name that resolves differently a moment later cannot
//! slip a private address in: DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether a receiver at `ip` must be refused: loopback, private, link-local (and with it
/// the cloud metadata address 169.254.169.254), CGNAT, unique-local, multicast,
/// unspecified, broadcast, documentation, benchmarking and other reserved ranges, also
/// when written as IPv4 inside IPv6.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // CGNAT, 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || ip.is_multicast()
        || a >= 240 // reserved, and the broadcast address
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7 (AWS metadata fd00:ec2::254)
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x2001 && segments[1] == 0) // Teredo: tunnels to anywhere
        || segments[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
        || (segments[0] == 0x0064 && segments[1] == 0xff9b && segments[2] == 1) // local-use NAT64, 64:ff9b:1::/48: translated to the operator's own choice of IPv4 (RFC 8215)
        || (segments[..5] == [0, 0, 0, 0, 0xffff] && is_forbidden_v4(embedded_v4(segments[6], segments[7]))) // IPv4-translated, ::ffff:0:0/96 (SIIT)
        || (segments[0] == 0x0064 && segments[1] == 0xff9b && is_forbidden_v4(embedded_v4(segments[6], segments[7]))) // NAT64
        || (segments[0] == 0x2002 && is_forbidden_v4(embedded_v4(segments[1], segments[2])))
    // 6to4
}

/// Resolves with the system resolver and keeps only addresses that may be delivered to.
pub struct CheckedResolver;

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|address| !is_forbidden(address.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Forbidden(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// A receiver whose every address is one that must not be reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} resolves only to loopback, private or reserved addresses (WEBHOOK_ALLOW_PRIVATE is off)"
)]
pub struct Forbidden(pub String);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn forbidden(ip: &str) -> bool {
        is_forbidden(ip.parse().unwrap())
    }

    #[test]
    fn refuses_every_internal_or_reserved_range() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.192",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2002:c0a8:101::",
            "64:ff9b:1::808:808",
            "64:ff9b:1:a00:0:100::",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
        ] {
            assert!(forbidden(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!forbidden(ip), "{ip} is public");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_forbidden_addresses_and_refuses_a_name_with_no_other() {
        let refused = CheckedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(
            refused.to_string().contains("WEBHOOK_ALLOW_PRIVATE"),
            "{refused}"
        );
    }
}
