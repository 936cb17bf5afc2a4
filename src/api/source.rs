//! The source address of a request, for policies' `source_cidrs`.
//!
//! It is the TCP peer. `X-Forwarded-For` counts only when the peer is a configured trusted
//! proxy: the client is then the rightmost address that is not itself a trusted proxy (RFC 7239
//! §7.4's advice: only the hops you trust can vouch for the next). A forwarded header that does
//! not parse gives no address at all, so network-limited policies refuse rather than fall back
//! to the proxy's own address. Nothing here logs a header.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::{ApiError, AppState};

/// Where a request comes from, if that can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source(pub Option<IpAddr>);

impl FromRequestParts<AppState> for Source {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Source(peer.and_then(|peer| {
            client_address(peer, &parts.headers, state.trusted_proxies())
        })))
    }
}

fn is_trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// The client address of a request from `peer`.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> Option<IpAddr> {
    if !is_trusted(peer, proxies) {
        return Some(peer);
    }
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for part in value.to_str().ok()?.split(',') {
            hops.push(part.trim().parse::<IpAddr>().ok()?);
        }
    }
    if hops.is_empty() {
        return Some(peer);
    }
    // Every hop trusted: the leftmost is as close to the client as anyone can vouch for.
    let leftmost = hops.first().copied();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip, proxies))
        .or(leftmost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let proxy: IpAddr = "10.1.1.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();

        // An untrusted peer cannot claim to be anyone else.
        assert_eq!(
            client_address(stranger, &headers(&["10.0.0.1"]), &proxies),
            Some(stranger)
        );
        assert_eq!(client_address(proxy, &headers(&[]), &proxies), Some(proxy));
        assert_eq!(
            client_address(proxy, &headers(&["203.0.113.7"]), &proxies),
            Some(client)
        );
        // A client-supplied hop to the left of the real one is ignored.
        assert_eq!(
            client_address(
                proxy,
                &headers(&["10.9.9.9, 203.0.113.7, 10.2.2.2"]),
                &proxies
            ),
            Some(client)
        );
        assert_eq!(
            client_address(proxy, &headers(&["10.9.9.9", "203.0.113.7"]), &proxies),
            Some(client)
        );
        assert_eq!(
            client_address(proxy, &headers(&["not-an-ip"]), &proxies),
            None
        );
        assert_eq!(client_address(proxy, &headers(&[]), &[]), Some(proxy));
    }
}
