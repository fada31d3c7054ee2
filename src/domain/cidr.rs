//! IP networks (CIDRs) and the client-IP rule shared by the gateway and the
//! downstream verifier.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

use super::DomainError;

/// An IPv4 or IPv6 network; a bare address is a /32 or /128.
/// Stored with host bits cleared, so `10.1.2.3/8` reads back as `10.0.0.0/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        // Ones in the top `prefix` bits of a `width`-bit number.
        (u128::MAX << (128 - u32::from(prefix))) >> (128 - u32::from(width))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = || {
            DomainError::Validation(format!(
                "invalid IP address or CIDR {s:?}: expected e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32"
            ))
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                let prefix: u8 = p.parse().map_err(|_| bad())?;
                (addr, Some(prefix))
            }
            None => (s.trim().parse().map_err(|_| bad())?, None),
        };
        let addr = canonical(addr);
        let (value, width) = bits(addr);
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return Err(bad());
        }
        let net = value & mask(width, prefix);
        let addr = match addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(
                u32::try_from(net).map_err(|_| bad())?,
            )),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(net)),
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (value, width) = bits(ip);
        let (net, _) = bits(self.addr);
        value & mask(width, self.prefix) == net
    }

    /// Whether any of `nets` contains `ip`.
    pub fn any_contains(nets: &[IpNet], ip: IpAddr) -> bool {
        nets.iter().any(|n| n.contains(ip))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        IpNet::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<IpNet> for String {
    fn from(n: IpNet) -> String {
        n.to_string()
    }
}

/// Parses one `X-Forwarded-For` element or `Forwarded` `for=` value:
/// `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// The client address of a request.
///
/// The socket peer is the client unless it is one of `trusted` proxies. Only
/// then are forwarding headers read: the `Forwarded` header's `for=` values
/// (RFC 7239) if present, else `X-Forwarded-For`; the hops are walked from
/// the nearest (rightmost) back, skipping trusted proxies, and the first
/// untrusted hop is the client. A header that cannot be parsed counts as
/// absent, so the trusted proxy itself is then the client: a client can
/// never choose its own address.
pub fn client_ip(
    peer: IpAddr,
    forwarded: &[&str],
    x_forwarded_for: &[&str],
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !IpNet::any_contains(trusted, peer) {
        return peer;
    }
    let hops: Option<Vec<IpAddr>> = if forwarded.is_empty() {
        x_forwarded_for
            .iter()
            .flat_map(|h| h.split(','))
            .map(parse_node)
            .collect()
    } else {
        forwarded
            .iter()
            .flat_map(|h| h.split(','))
            .flat_map(|elem| elem.split(';'))
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v)
            })
            .map(parse_node)
            .collect()
    };
    let Some(hops) = hops else {
        return peer;
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = canonical(hop);
        if !IpNet::any_contains(trusted, client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        IpNet::parse(s).unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("203.0.113.7").to_string(), "203.0.113.7/32");
        assert_eq!(net("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::ffff:10.0.0.1").to_string(), "10.0.0.1/32");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "nope",
            "10.0.0.0/",
            "/8",
            "1.2.3.4/x",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn containment() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(net("::/0").contains(ip("::1")));
    }

    #[test]
    fn forwarded_headers_count_only_behind_trusted_proxies() {
        let trusted = [net("10.0.0.0/8")];
        let client = ip("203.0.113.9");
        // An untrusted peer's headers are ignored.
        assert_eq!(client_ip(client, &[], &["1.1.1.1"], &trusted), client);
        // Behind a trusted proxy, the rightmost untrusted hop is the client.
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                &[],
                &["1.1.1.1, 203.0.113.9, 10.0.0.5"],
                &trusted
            ),
            client
        );
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                &["for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\""],
                &[],
                &trusted
            ),
            ip("2001:db8::7")
        );
        // Garbage: the proxy itself is the client.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &[], &["not an ip"], &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &[], &[], &trusted),
            ip("10.0.0.2")
        );
    }
}
