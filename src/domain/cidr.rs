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
                "invalid IP address or CIDR {}: expected e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32",
                super::error::shown(s)
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
        // An IPv4-mapped address is its IPv4 address, and a prefix written
        // over the mapped form (`::ffff:10.0.0.0/104`) counts its last 32
        // bits. A shorter prefix reaches beyond the mapped range, so that
        // network stays IPv6.
        let (addr, prefix) = match (canonical(addr), prefix) {
            (IpAddr::V4(v4), Some(p)) if addr.is_ipv6() => match p.checked_sub(96) {
                Some(p4) => (IpAddr::V4(v4), Some(p4)),
                None => (addr, Some(p)),
            },
            (canonical, p) => (canonical, p),
        };
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

    /// Whether the whole network lies in a range not routed on the
    /// internet: private (RFC 1918, RFC 4193), shared (RFC 6598), loopback
    /// or link-local.
    pub fn is_private(&self) -> bool {
        const RANGES: [&str; 9] = [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "fc00::/7",
            "fe80::/10",
            "::1/128",
        ];
        RANGES
            .iter()
            .filter_map(|r| Self::parse(r).ok())
            .any(|r| r.prefix <= self.prefix && r.contains(self.addr))
    }

    /// The network of one address (a /32 or /128).
    pub fn host(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Self { addr: ip, prefix }
    }

    /// Whether any of `nets` contains `ip`.
    pub fn any_contains(nets: &[IpNet], ip: IpAddr) -> bool {
        nets.iter().any(|n| n.contains(ip))
    }

    /// Whether a token's `allowed_cidrs` let `ip` in. A list with an entry
    /// that does not parse allows nobody rather than everybody: the gateway
    /// wrote it, so a bad entry means the token was tampered with or comes
    /// from a newer format this reader cannot check.
    pub fn listed_allow(cidrs: &[String], ip: IpAddr) -> bool {
        let mut nets = Vec::with_capacity(cidrs.len());
        for c in cidrs {
            match IpNet::parse(c) {
                Ok(n) => nets.push(n),
                Err(_) => return false,
            }
        }
        Self::any_contains(&nets, ip)
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

/// The forwarding header that trusted proxies use to name the client.
///
/// Only the configured one is ever read. The other kind is ignored entirely:
/// proxies usually pass a header they do not set through untouched, so
/// reading it would let a client name itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`, as nginx, HAProxy and most
    /// load balancers append it. The default.
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl ForwardedHeader {
    /// `x-forwarded-for` or `forwarded`, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("x-forwarded-for") {
            Some(Self::XForwardedFor)
        } else if s.eq_ignore_ascii_case("forwarded") {
            Some(Self::Forwarded)
        } else {
            None
        }
    }

    /// The header's name in lower case, for looking it up in a request.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::XForwardedFor => "X-Forwarded-For",
            Self::Forwarded => "Forwarded",
        })
    }
}

/// Most hops a forwarding header may list (all its lines together); a longer
/// chain is refused rather than walked.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// Most bytes a forwarding header may hold (all its lines together).
pub const MAX_FORWARDED_BYTES: usize = 8 * 1024;

/// Why a trusted proxy's header does not name the client. The message never
/// quotes the header's value: it is attacker-controlled text.
fn refusal(header: ForwardedHeader, why: &str) -> DomainError {
    DomainError::InvalidRequest(format!(
        "the {header} header from a trusted proxy does not name the client ({why})"
    ))
}

const OWS: [char; 2] = [' ', '\t'];

fn valid_port(port: &str, obfuscated_ok: bool) -> bool {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    // RFC 7239 §6.3 lets a proxy hide the port (`_abc`) while giving the
    // address; the address is all we need.
    let obfuscated = obfuscated_ok
        && port.len() > 1
        && port.starts_with('_')
        && port[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (digits && port.parse::<u16>().is_ok()) || obfuscated
}

/// One node, as `header` writes it: `192.0.2.7`, `192.0.2.7:443`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`, and in `X-Forwarded-For` also a
/// bare `2001:db8::1` (what nginx writes). RFC 7239 requires the brackets,
/// and without them `2001:db8::1:80` could be an address or an address and
/// a port, so `Forwarded` refuses bare IPv6. `unknown` and obfuscated
/// identifiers (`_x`) are not addresses, so they are `None`.
fn parse_node(s: &str, header: ForwardedHeader) -> Option<IpAddr> {
    let forwarded = header == ForwardedHeader::Forwarded;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return (ip.is_ipv4() || !forwarded).then_some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: std::net::Ipv6Addr = ip.parse().ok()?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| valid_port(p, forwarded));
        return port_ok.then_some(IpAddr::V6(ip));
    }
    let (ip, port) = s.split_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    valid_port(port, forwarded).then_some(IpAddr::V4(ip))
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `for=` node of one RFC 7239 element (`for=192.0.2.7;proto=https`).
/// `None` when the element is malformed, has no `for=`, has it twice, or it
/// does not name an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let bytes = element.as_bytes();
    let ows = |i: &mut usize| {
        while *i < bytes.len() && matches!(bytes[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    let mut node: Option<Vec<u8>> = None;
    let mut i = 0;
    loop {
        ows(&mut i);
        if i == bytes.len() {
            break;
        }
        if bytes[i] == b';' {
            // An empty pair is allowed by the grammar.
            i += 1;
            continue;
        }
        let key_start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if i == key_start || bytes.get(i) != Some(&b'=') {
            return None;
        }
        let key = &element[key_start..i];
        i += 1;
        let mut value = Vec::new();
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match *bytes.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        value.push(*bytes.get(i + 1)?);
                        i += 2;
                    }
                    b => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else {
            // Strictly a token; proxies also write `for=192.0.2.7:80` or
            // `for=[2001:db8::1]` unquoted, which is unambiguous, so accept
            // anything up to the next delimiter and let the node parser judge.
            while i < bytes.len() && !matches!(bytes[i], b';' | b'"' | b' ' | b'\t') {
                value.push(bytes[i]);
                i += 1;
            }
            if value.is_empty() {
                return None;
            }
        }
        if key.eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None;
            }
            node = Some(value);
        }
        ows(&mut i);
        match bytes.get(i) {
            None => break,
            Some(b';') => i += 1,
            Some(_) => return None,
        }
    }
    parse_node(
        std::str::from_utf8(&node?).ok()?,
        ForwardedHeader::Forwarded,
    )
}

/// Splits one `Forwarded` line into its elements; commas inside quoted
/// strings do not split. A quote left open runs to the end of the line, so
/// the line's last element is malformed (and refused if it is reached).
fn split_forwarded<'a>(line: &'a str, out: &mut Vec<Option<&'a str>>) {
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in line.bytes().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b',' {
            out.push(Some(&line[start..i]));
            start = i + 1;
        }
    }
    out.push(Some(&line[start..]));
}

/// The client address of a request.
///
/// The socket `peer` is the client unless it is one of the `trusted`
/// proxies; their headers are never read otherwise. Behind a trusted proxy,
/// only the configured `header` counts (`lines`: its header lines in
/// order, concatenated as one comma-separated list). Its hops are walked
/// from the nearest (rightmost) back, trusted proxies skipped; the first
/// address that is not a trusted proxy is the client, and if every hop is a
/// trusted proxy the leftmost one is.
///
/// # Errors
/// `InvalidRequest` (naming the header, never quoting it) when a trusted
/// proxy does not say who the client is: the header is missing, longer than
/// [`MAX_FORWARDED_BYTES`] or [`MAX_FORWARDED_HOPS`], or a hop up to and
/// including the deciding one is not an address (`unknown`, `_hidden`, an
/// element without `for=`, an empty element, garbage). Falling back to the
/// peer there would let a client that garbles the header be taken for the
/// proxy. Hops left of the deciding one are never parsed.
pub fn client_ip<V: AsRef<[u8]>>(
    peer: IpAddr,
    header: ForwardedHeader,
    lines: &[V],
    trusted: &[IpNet],
) -> Result<IpAddr, DomainError> {
    let peer = canonical(peer);
    if !IpNet::any_contains(trusted, peer) {
        return Ok(peer);
    }
    let total: usize = lines.iter().map(|l| l.as_ref().len()).sum();
    if total > MAX_FORWARDED_BYTES {
        return Err(refusal(header, "the header is too long"));
    }
    // `None` stands for a line that is not text: one hop that cannot parse.
    let mut hops: Vec<Option<&str>> = Vec::new();
    for line in lines {
        match (std::str::from_utf8(line.as_ref()), header) {
            (Err(_), _) => hops.push(None),
            (Ok(text), ForwardedHeader::XForwardedFor) => hops.extend(text.split(',').map(Some)),
            (Ok(text), ForwardedHeader::Forwarded) => split_forwarded(text, &mut hops),
        }
        if hops.len() > MAX_FORWARDED_HOPS {
            return Err(refusal(header, "the header lists too many hops"));
        }
    }
    let mut leftmost = None;
    for hop in hops.iter().rev() {
        let ip = hop
            .map(|h| h.trim_matches(OWS))
            .and_then(|h| match header {
                ForwardedHeader::XForwardedFor => parse_node(h, header),
                ForwardedHeader::Forwarded => forwarded_for(h),
            })
            .map(canonical)
            .ok_or_else(|| refusal(header, "a hop is not an IP address"))?;
        if !IpNet::any_contains(trusted, ip) {
            return Ok(ip);
        }
        leftmost = Some(ip);
    }
    leftmost.ok_or_else(|| refusal(header, "the header is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        IpNet::parse(s).unwrap()
    }

    #[test]
    fn private_networks_are_told_from_the_internet() {
        for private in [
            "10.0.0.0/8",
            "10.1.2.0/24",
            "192.168.1.1",
            "fd00::/8",
            "::1",
            "127.0.0.1",
        ] {
            assert!(IpNet::parse(private).unwrap().is_private(), "{private}");
        }
        for wide in [
            "0.0.0.0/0",
            "8.8.8.0/24",
            "10.0.0.0/7",
            "::/0",
            "::ffff:0:0/96",
            "2001:db8::/32",
        ] {
            assert!(!IpNet::parse(wide).unwrap().is_private(), "{wide}");
        }
        // One address: an IPv4-mapped one is its IPv4 address.
        assert!(IpNet::host(ip("::ffff:10.0.0.1")).is_private());
        assert_eq!(IpNet::host(ip("192.168.0.9")), net("192.168.0.9/32"));
        assert!(!IpNet::host(ip("203.0.113.7")).is_private());
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
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(net("::ffff:0:0/96").to_string(), "0.0.0.0/0");
        assert_eq!(net("::ffff:0:0/80").to_string(), "::/80");
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

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

    /// Behind the trusted proxy 10.0.0.2, with 10.0.0.0/8 trusted.
    fn behind(header: ForwardedHeader, lines: &[&str]) -> Result<IpAddr, DomainError> {
        client_ip(ip("10.0.0.2"), header, lines, &[net("10.0.0.0/8")])
    }

    fn refused(header: ForwardedHeader, lines: &[&str]) {
        match behind(header, lines) {
            Err(DomainError::InvalidRequest(m)) => {
                assert!(m.contains(&header.to_string()), "{m}");
                // The message never quotes the header's value.
                for line in lines {
                    for part in line.split([',', ';', '=', '"', ' ']) {
                        if part.len() > 3 {
                            assert!(!m.contains(part), "{m} quotes {part}");
                        }
                    }
                }
            }
            other => panic!("{header} {lines:?}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted = [net("10.0.0.0/8")];
        let peer = ip("203.0.113.9");
        for header in [XFF, FWD] {
            for lines in [&[][..], &["1.1.1.1"], &["for=1.1.1.1"], &["garbage"]] {
                assert_eq!(client_ip(peer, header, lines, &trusted).unwrap(), peer);
            }
        }
        // Nothing is trusted by default.
        assert_eq!(
            client_ip(ip("10.0.0.2"), XFF, &["1.1.1.1"], &[]).unwrap(),
            ip("10.0.0.2")
        );
        // A mapped IPv6 peer is its IPv4 address.
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.9"), XFF, &["1.1.1.1"], &trusted).unwrap(),
            peer
        );
    }

    #[test]
    fn x_forwarded_for_happy_paths() {
        let client = ip("203.0.113.9");
        assert_eq!(behind(XFF, &["203.0.113.9"]).unwrap(), client);
        assert_eq!(behind(XFF, &["203.0.113.9:5123"]).unwrap(), client);
        assert_eq!(behind(XFF, &[" 203.0.113.9 "]).unwrap(), client);
        // The rightmost untrusted hop wins; trusted hops are skipped.
        assert_eq!(
            behind(XFF, &["1.1.1.1, 203.0.113.9, 10.0.0.5"]).unwrap(),
            client
        );
        assert_eq!(
            behind(XFF, &["1.1.1.1,203.0.113.9,10.0.0.5,10.9.9.9"]).unwrap(),
            client
        );
        // Several header lines are one list, in order.
        assert_eq!(
            behind(XFF, &["1.1.1.1", "203.0.113.9", "10.0.0.5"]).unwrap(),
            client
        );
        assert_eq!(
            behind(XFF, &["203.0.113.9, 10.0.0.7", "10.0.0.5"]).unwrap(),
            client
        );
        // IPv6, bare, bracketed and with a port; mapped addresses.
        assert_eq!(behind(XFF, &["2001:db8::1"]).unwrap(), ip("2001:db8::1"));
        assert_eq!(behind(XFF, &["[2001:db8::1]"]).unwrap(), ip("2001:db8::1"));
        assert_eq!(
            behind(XFF, &["[2001:db8::1]:443, 10.0.0.3"]).unwrap(),
            ip("2001:db8::1")
        );
        assert_eq!(behind(XFF, &["::ffff:203.0.113.9"]).unwrap(), client);
        // Every hop trusted: the leftmost is the client.
        assert_eq!(
            behind(XFF, &["10.0.0.9, 10.0.0.8, 10.0.0.7"]).unwrap(),
            ip("10.0.0.9")
        );
        // Garbage left of the deciding hop is never read.
        assert_eq!(
            behind(XFF, &["unknown, garbage, , 203.0.113.9, 10.0.0.5"]).unwrap(),
            client
        );
        assert_eq!(behind(XFF, &["_x", "203.0.113.9"]).unwrap(), client);
    }

    #[test]
    fn forwarded_happy_paths() {
        let client = ip("203.0.113.9");
        assert_eq!(behind(FWD, &["for=203.0.113.9"]).unwrap(), client);
        assert_eq!(
            behind(FWD, &["For=\"203.0.113.9:4711\";proto=https;by=10.0.0.2"]).unwrap(),
            client
        );
        assert_eq!(
            behind(FWD, &["proto=https; for=203.0.113.9 ;host=a.example"]).unwrap(),
            client
        );
        assert_eq!(
            behind(
                FWD,
                &["for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\""]
            )
            .unwrap(),
            ip("2001:db8::7")
        );
        assert_eq!(
            behind(FWD, &["for=\"[2001:db8::7]\""]).unwrap(),
            ip("2001:db8::7")
        );
        // Unquoted ports and brackets are unambiguous, so accepted.
        assert_eq!(behind(FWD, &["for=203.0.113.9:80"]).unwrap(), client);
        // An obfuscated port beside a real address is fine.
        assert_eq!(behind(FWD, &["for=\"203.0.113.9:_p1\""]).unwrap(), client);
        // Commas and semicolons inside quoted strings do not split.
        assert_eq!(
            behind(
                FWD,
                &["for=203.0.113.9;host=\"a,b;c\", for=10.0.0.5;proto=\"h\\\"t\""]
            )
            .unwrap(),
            client
        );
        // Mixed chains over several lines; leftmost wins when all are trusted.
        assert_eq!(
            behind(
                FWD,
                &[
                    "for=1.1.1.1",
                    "for=203.0.113.9, for=10.0.0.4",
                    "for=10.0.0.5"
                ]
            )
            .unwrap(),
            client
        );
        assert_eq!(
            behind(FWD, &["for=10.0.0.9, for=10.0.0.8"]).unwrap(),
            ip("10.0.0.9")
        );
        // Garbage left of the deciding hop is never read.
        assert_eq!(
            behind(FWD, &["for=unknown, proto=https, , for=203.0.113.9"]).unwrap(),
            client
        );
    }

    #[test]
    fn what_a_trusted_proxy_must_say_or_be_refused() {
        for header in [XFF, FWD] {
            // The proxy must say who the client is.
            refused(header, &[]);
            refused(header, &[""]);
        }
        for lines in [
            &["203.0.113.9, garbage"][..],
            &["203.0.113.9, garbage, 10.0.0.5"],
            &["unknown"],
            &["_hidden"],
            &["203.0.113.9,"],
            &["203.0.113.9, , 10.0.0.5"],
            &["203.0.113.9", ""],
            &["for=203.0.113.9"],
            &["203.0.113.9:99999"],
            &["203.0.113.9:"],
            &["[203.0.113.9]"],
            &["[2001:db8::1]x"],
            &["fe80::1%eth0"],
            &["\"203.0.113.9\""],
            &["203.0.113.009"],
        ] {
            refused(XFF, lines);
        }
        for lines in [
            &["proto=https"][..],
            &["for=unknown"],
            &["for=_hidden"],
            &["for=\"_hidden:80\""],
            &["for=203.0.113.9, proto=https"],
            &["for=203.0.113.9, , for=10.0.0.5"],
            &["for=203.0.113.9,"],
            &["for=203.0.113.9;for=198.51.100.7"],
            &["for="],
            &["for=\"\""],
            &["for=\"203.0.113.9"],
            &["for=203.0.113.9;proto"],
            &["for=203.0.113.9 proto=https"],
            &["for=203.0.113.9;x=\"", "for=10.0.0.5"],
            &["203.0.113.9"],
            &["for=2001:db8::1:80"],
            &["for=\"2001:db8::1\""],
            &["for=[2001:db8::1"],
        ] {
            refused(FWD, lines);
        }
        // An unclosed quote swallows what follows it on the same line, so
        // a proxy's element appended there cannot be found: refused.
        refused(FWD, &["for=127.0.0.1;x=\", for=10.0.0.5"]);
        // A line that is not text is a hop that cannot be parsed.
        let bytes: [&[u8]; 2] = [b"203.0.113.9", b"\xff\xfe"];
        assert!(client_ip(ip("10.0.0.2"), XFF, &bytes, &[net("10.0.0.0/8")]).is_err());
        let bytes: [&[u8]; 2] = [b"\xff\xfe", b"203.0.113.9"];
        assert_eq!(
            client_ip(ip("10.0.0.2"), XFF, &bytes, &[net("10.0.0.0/8")]).unwrap(),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn chains_are_bounded() {
        let hops = |n: usize| vec!["10.0.0.5"; n].join(", ");
        assert_eq!(
            behind(XFF, &[&hops(MAX_FORWARDED_HOPS)]).unwrap(),
            ip("10.0.0.5")
        );
        refused(XFF, &[&hops(MAX_FORWARDED_HOPS + 1)]);
        let lines = vec!["203.0.113.9"; MAX_FORWARDED_HOPS + 1];
        refused(XFF, &lines);
        let long = format!("{}203.0.113.9", " ".repeat(MAX_FORWARDED_BYTES));
        refused(XFF, &[&long]);
    }

    #[test]
    fn only_the_configured_header_kind_is_read() {
        // The red team's cases: each must be refused, none may fall back.
        // Garbage left of the deciding hop: the client is that hop, never
        // the peer (which the red team's 127.0.0.1-only app allowed).
        assert_eq!(
            behind(XFF, &["garbage, 203.0.113.9"]).unwrap(),
            ip("203.0.113.9")
        );
        refused(FWD, &["proto=https"]);
        refused(FWD, &["for=unknown"]);
        // The setting's names.
        assert_eq!(ForwardedHeader::parse("X-Forwarded-For"), Some(XFF));
        assert_eq!(ForwardedHeader::parse("forwarded"), Some(FWD));
        assert_eq!(ForwardedHeader::parse("x-real-ip"), None);
        assert_eq!(ForwardedHeader::default(), XFF);
        assert_eq!(XFF.header_name(), "x-forwarded-for");
        assert_eq!(FWD.header_name(), "forwarded");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn ipv4_outside_10() -> impl Strategy<Value = IpAddr> {
            any::<[u8; 4]>()
                .prop_filter("not 10/8", |o| o[0] != 10)
                .prop_map(IpAddr::from)
        }

        fn ipv6_global() -> impl Strategy<Value = IpAddr> {
            // 2000::/3, so it is never an IPv4-mapped address.
            any::<u128>().prop_map(|v| {
                IpAddr::V6(std::net::Ipv6Addr::from(
                    (v & (u128::MAX >> 3)) | (1u128 << 125),
                ))
            })
        }

        fn client() -> impl Strategy<Value = IpAddr> {
            prop_oneof![ipv4_outside_10(), ipv6_global()]
        }

        fn proxy() -> impl Strategy<Value = IpAddr> {
            any::<[u8; 3]>().prop_map(|o| IpAddr::from([10, o[0], o[1], o[2]]))
        }

        /// How a hop is written: with or without a port.
        fn write(ip: IpAddr, port: Option<u16>, header: ForwardedHeader) -> String {
            let node = match (ip, port) {
                (IpAddr::V4(v4), None) => v4.to_string(),
                (IpAddr::V4(v4), Some(p)) => format!("{v4}:{p}"),
                (IpAddr::V6(v6), None) => match header {
                    ForwardedHeader::XForwardedFor => v6.to_string(),
                    ForwardedHeader::Forwarded => format!("[{v6}]"),
                },
                (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
            };
            match header {
                ForwardedHeader::XForwardedFor => node,
                ForwardedHeader::Forwarded => format!("for=\"{node}\";proto=https"),
            }
        }

        /// Hops joined into lines, a new line wherever `breaks` says.
        fn lines(hops: &[String], breaks: &[bool]) -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for (i, h) in hops.iter().enumerate() {
                match out.last_mut() {
                    Some(last) if !breaks.get(i).copied().unwrap_or(false) => {
                        last.push_str(", ");
                        last.push_str(h);
                    }
                    _ => out.push(h.clone()),
                }
            }
            out
        }

        fn header() -> impl Strategy<Value = ForwardedHeader> {
            prop_oneof![Just(XFF), Just(FWD)]
        }

        proptest! {
            #[test]
            fn parsers_never_panic(
                header in header(),
                text in prop::collection::vec(".{0,64}", 0..4),
                bytes in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 0..4),
            ) {
                let trusted = [net("0.0.0.0/0"), net("::/0")];
                let _ = client_ip(ip("10.0.0.2"), header, &text, &trusted);
                let _ = client_ip(ip("10.0.0.2"), header, &bytes, &trusted);
                for t in &text {
                    let _ = parse_node(t, header);
                    let _ = forwarded_for(t);
                }
            }

            #[test]
            fn a_well_formed_chain_yields_its_first_untrusted_hop(
                header in header(),
                left in prop::collection::vec("[^,\"]{0,12}", 0..4),
                client in client(),
                proxies in prop::collection::vec(proxy(), 0..8),
                ports in prop::collection::vec(prop::option::of(any::<u16>()), 9),
                breaks in prop::collection::vec(any::<bool>(), 16),
            ) {
                // Left of the client: anything without commas or quotes.
                let mut hops = left.clone();
                hops.push(write(client, ports[0], header));
                for (i, p) in proxies.iter().enumerate() {
                    hops.push(write(*p, ports[i + 1], header));
                }
                let lines = lines(&hops, &breaks);
                let got = client_ip(ip("10.0.0.2"), header, &lines, &[net("10.0.0.0/8")]);
                prop_assert_eq!(got.ok(), Some(client));
            }

            #[test]
            fn an_all_trusted_chain_yields_its_leftmost_hop(
                header in header(),
                proxies in prop::collection::vec(proxy(), 1..8),
                breaks in prop::collection::vec(any::<bool>(), 8),
            ) {
                let hops: Vec<String> = proxies.iter().map(|p| write(*p, None, header)).collect();
                let got = client_ip(ip("10.0.0.2"), header, &lines(&hops, &breaks), &[net("10.0.0.0/8")]);
                prop_assert_eq!(got.ok(), Some(proxies[0]));
            }

            #[test]
            fn garbage_at_the_deciding_hop_is_refused(
                header in header(),
                garbage in "[a-z_ ]{0,12}",
                proxies in prop::collection::vec(proxy(), 0..4),
            ) {
                let mut hops = vec![write(ip("203.0.113.9"), None, header), garbage];
                hops.extend(proxies.iter().map(|p| write(*p, None, header)));
                let got = client_ip(ip("10.0.0.2"), header, &[hops.join(",")], &[net("10.0.0.0/8")]);
                prop_assert!(got.is_err());
            }

            #[test]
            fn ip_net_parse_never_panics(s in ".{0,64}") {
                let _ = IpNet::parse(&s);
            }

            #[test]
            fn ip_net_round_trips(
                v4 in any::<[u8; 4]>(),
                v6 in any::<u128>(),
                p4 in 0u8..=32,
                p6 in 0u8..=128,
                kind in 0u8..3,
                bare in any::<bool>(),
            ) {
                let v4 = std::net::Ipv4Addr::from(v4);
                let (addr, prefix) = match kind {
                    0 => (IpAddr::V4(v4), p4),
                    1 => (IpAddr::V6(std::net::Ipv6Addr::from(v6)), p6),
                    _ => (IpAddr::V6(v4.to_ipv6_mapped()), p6),
                };
                let text = if bare { addr.to_string() } else { format!("{addr}/{prefix}") };
                let net = IpNet::parse(&text).unwrap();
                prop_assert_eq!(IpNet::parse(&net.to_string()).unwrap(), net);
                // The network holds the address it was written with.
                prop_assert!(net.contains(addr) || (kind == 2 && prefix < 96 && !bare));
            }
        }
    }
    #[test]
    fn a_listed_entry_that_does_not_parse_allows_nobody() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(IpNet::listed_allow(&list(&["10.0.0.0/8"]), ip));
        assert!(!IpNet::listed_allow(&list(&["192.0.2.0/24"]), ip));
        assert!(!IpNet::listed_allow(
            &list(&["10.0.0.0/8", "not a net"]),
            ip
        ));
        assert!(!IpNet::listed_allow(&[], ip));
    }
}
