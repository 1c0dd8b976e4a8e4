//! Where a tenant's outbound calls may go: the grant's rules name destinations
//! (`grants.outbound`), and the address actually connected to must be one the grant allows.
//!
//! Two checks, so that a name cannot smuggle a call to an address the operator never meant:
//! - the request's scheme, host and port must match a rule, compared after URL normalisation
//!   (lower case, IDNA, IPv4 in any notation);
//! - every address connected to — an IP literal, or what a name resolves to at connect time
//!   (the pooled client's resolver is [`EgressResolver`], so there is no gap between check and
//!   connect) — must be public, unless the grant names that address in a rule or a range in
//!   `grants.outbound_networks`. Loopback, private, link-local (169.254.169.254, the cloud
//!   metadata address), unique-local, multicast and reserved ranges are not public; IPv4 inside
//!   IPv6 (mapped, NAT64, 6to4) is judged by its IPv4 address.

use anyhow::{Context, Result, bail};
use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use url::Host;

/// One grant: where guests may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    /// `None` allows http and https.
    scheme: Option<String>,
    host: RuleHost,
    /// `None` means the scheme's default port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleHost {
    /// A host name, normalised (lower case, IDNA).
    Name(String),
    /// `*.suffix`: any subdomain of `suffix`, not `suffix` itself.
    Subdomains(String),
    Address(IpAddr),
}

impl OutboundRule {
    /// `https://api.example.com`, `http://127.0.0.1:9000`, `http://[::1]:9000`,
    /// `https://*.example.com`, or a host without scheme (any scheme, its default port).
    pub fn parse(rule: &str) -> Result<OutboundRule> {
        let (scheme, rest) = match rule.split_once("://") {
            Some((scheme, rest)) => {
                let scheme = scheme.to_ascii_lowercase();
                if scheme != "http" && scheme != "https" {
                    bail!("scheme must be http or https");
                }
                (Some(scheme), rest)
            }
            None => (None, rule),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            bail!("give a scheme, host and port only, no path");
        }
        if authority.contains('@') {
            bail!("no user or password: a rule names where to call, not as whom");
        }
        // The port as written (the URL parser forgets a port equal to the scheme's default).
        let port = http::uri::Authority::from_str(authority)
            .with_context(|| format!("{authority:?} is not a host and port"))?
            .port_u16();
        let url = url::Url::parse(&format!(
            "{}://{authority}",
            scheme.as_deref().unwrap_or("http")
        ))
        .with_context(|| format!("{authority:?} is not a host and port"))?;
        let host = match url.host() {
            Some(Host::Domain(name)) => match name.strip_prefix("*.") {
                Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                    RuleHost::Subdomains(suffix.to_string())
                }
                _ if name.contains('*') => bail!("a wildcard is only allowed as a leading `*.`"),
                _ => RuleHost::Name(name.to_string()),
            },
            Some(Host::Ipv4(ip)) => RuleHost::Address(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => RuleHost::Address(IpAddr::V6(ip)),
            None => bail!("no host"),
        };
        Ok(OutboundRule { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is granted by this rule (`host` as the URL
    /// parser normalised it).
    fn allows(&self, scheme: &str, host: &Host<String>, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        if self.port.unwrap_or(default_port) != port {
            return false;
        }
        match (&self.host, host) {
            (RuleHost::Name(rule), Host::Domain(name)) => rule == name,
            (RuleHost::Subdomains(suffix), Host::Domain(name)) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            (RuleHost::Address(rule), Host::Ipv4(ip)) => *rule == IpAddr::V4(*ip),
            (RuleHost::Address(rule), Host::Ipv6(ip)) => *rule == IpAddr::V6(*ip),
            _ => false,
        }
    }
}

/// A range of `grants.outbound_networks`: `10.0.0.0/8`, `fd00::/8` or one address.
pub fn parse_network(text: &str) -> Result<IpNet> {
    if let Ok(net) = IpNet::from_str(text) {
        return Ok(net);
    }
    let ip = IpAddr::from_str(text)
        .with_context(|| format!("{text:?} is neither an IP range (CIDR) nor an address"))?;
    Ok(IpNet::from(ip))
}

/// What a tenant's grant allows, checked for every outbound call and every connection.
#[derive(Debug, Default)]
pub struct Egress {
    rules: Vec<OutboundRule>,
    networks: Vec<IpNet>,
}

/// Why an outbound call was refused before any connection was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No rule names this scheme, host and port.
    NotGranted,
    /// The host is granted, but it is (or resolves only to) addresses the grant does not allow.
    Address(String),
}

impl Egress {
    pub fn new(rules: Vec<OutboundRule>, networks: Vec<IpNet>) -> Egress {
        Egress { rules, networks }
    }

    /// Checks a request's destination against the rules; an IP literal is also checked as
    /// the address it connects to (the client connects to it without resolving).
    pub fn check(&self, uri: &http::Uri) -> Result<(), Denial> {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let authority = uri.authority().ok_or(Denial::NotGranted)?;
        if authority.as_str().contains('@') {
            return Err(Denial::NotGranted);
        }
        let url =
            url::Url::parse(&format!("{scheme}://{authority}/")).map_err(|_| Denial::NotGranted)?;
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(Denial::NotGranted);
        };
        let host = host.to_owned();
        if !self.rules.iter().any(|r| r.allows(&scheme, &host, port)) {
            return Err(Denial::NotGranted);
        }
        match literal_address(uri) {
            Some(ip) if !self.permits(ip) => Err(Denial::Address(ip.to_string())),
            _ => Ok(()),
        }
    }

    /// Whether a connection to `ip` is allowed: public, named by a rule, or in a granted range.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        is_public(ip)
            || self.networks.iter().any(|net| net.contains(&ip))
            || self
                .rules
                .iter()
                .any(|r| matches!(r.host, RuleHost::Address(named) if canonical(named) == ip))
    }
}

/// The address a URI's host is, when the HTTP client would connect to it without resolving
/// (it parses the host with the standard library, as here).
fn literal_address(uri: &http::Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    IpAddr::from_str(host).ok()
}

/// An IPv4 address carried inside IPv6 (mapped, NAT64, 6to4) as that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    // 64:ff9b::/96 (NAT64) carries the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // 2002::/16 (6to4) carries it in bits 16-48.
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    ip
}

/// Ranges that are not the public internet (IANA special-purpose registries).
const NOT_PUBLIC: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // carrier-grade NAT
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // documentation
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation
    "203.0.113.0/24",  // documentation
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, broadcast
    "::/128",          // unspecified
    "::1/128",         // loopback
    "::ffff:0:0/96",   // IPv4-mapped (judged by the IPv4 address when canonical)
    "64:ff9b:1::/48",  // local-use NAT64
    "100::/64",        // discard
    "2001::/23",       // IETF protocol assignments (Teredo, ORCHID, ...)
    "2001:db8::/32",   // documentation
    "fc00::/7",        // unique local
    "fe80::/10",       // link-local
    "fec0::/10",       // site-local (deprecated)
    "ff00::/8",        // multicast
];

fn is_public(ip: IpAddr) -> bool {
    static RANGES: std::sync::LazyLock<Vec<IpNet>> = std::sync::LazyLock::new(|| {
        NOT_PUBLIC
            .iter()
            .map(|r| r.parse().expect("the table holds valid ranges"))
            .collect()
    });
    !RANGES.iter().any(|net| net.contains(&ip))
}

/// The pooled client's resolver: resolves a name as the system does, then keeps only the
/// addresses the tenant's grant permits, so the client connects to nothing else.
#[derive(Clone)]
pub struct EgressResolver {
    egress: Arc<Egress>,
}

impl EgressResolver {
    pub fn new(egress: Arc<Egress>) -> EgressResolver {
        EgressResolver { egress }
    }
}

/// A name that resolved only to addresses the grant does not permit.
#[derive(Debug)]
pub struct AddressRefused {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves to {:?}, which the tenant's grant does not permit (name the address in \
             `grants.outbound` or its range in `grants.outbound_networks`)",
            self.name, self.addresses
        )
    }
}

impl std::error::Error for AddressRefused {}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for EgressResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let egress = self.egress.clone();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let (permitted, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
                .into_iter()
                .partition(|addr| egress.permits(addr.ip()));
            if permitted.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    AddressRefused {
                        name: name.as_str().to_string(),
                        addresses: refused.iter().map(SocketAddr::ip).collect(),
                    },
                ));
            }
            Ok(permitted.into_iter())
        })
    }
}

/// The refusal inside a failed connect, if that is why it failed.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AddressRefused> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(refused) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<AddressRefused>())
        {
            return Some(refused);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(rules: &[&str], networks: &[&str]) -> Egress {
        Egress::new(
            rules
                .iter()
                .map(|r| OutboundRule::parse(r).unwrap())
                .collect(),
            networks.iter().map(|n| parse_network(n).unwrap()).collect(),
        )
    }

    fn check(egress: &Egress, uri: &str) -> Result<(), Denial> {
        egress.check(&uri.parse().unwrap())
    }

    #[test]
    fn rules_match_exact_wildcard_and_ipv6_hosts() {
        let e = egress(
            &[
                "https://api.example.com",
                "*.example.org",
                "http://[::1]:9000",
                "http://127.0.0.1:9000",
            ],
            &[],
        );
        assert_eq!(check(&e, "https://API.example.com/x"), Ok(()));
        assert_eq!(
            check(&e, "http://api.example.com/"),
            Err(Denial::NotGranted)
        );
        assert_eq!(
            check(&e, "https://api.example.com:8443/"),
            Err(Denial::NotGranted)
        );
        assert_eq!(check(&e, "http://a.example.org/"), Ok(()));
        assert_eq!(check(&e, "https://a.b.example.org/"), Ok(()));
        assert_eq!(check(&e, "https://example.org/"), Err(Denial::NotGranted));
        assert_eq!(
            check(&e, "https://badexample.org/"),
            Err(Denial::NotGranted)
        );
        assert_eq!(check(&e, "http://[::1]:9000/"), Ok(()));
        assert_eq!(check(&e, "http://127.0.0.1:9000/"), Ok(()));
        // Another notation of a granted address is that address.
        assert_eq!(check(&e, "http://2130706433:9000/"), Ok(()));
        assert_eq!(check(&e, "http://127.0.0.1:9001/"), Err(Denial::NotGranted));
        assert_eq!(
            check(&e, "http://user@127.0.0.1:9000/"),
            Err(Denial::NotGranted)
        );
        assert!(OutboundRule::parse("ftp://x").is_err());
        assert!(OutboundRule::parse("a.*.com").is_err());
        assert!(OutboundRule::parse("https://x/path").is_err());
        assert!(OutboundRule::parse("https://u:p@x").is_err());
    }

    #[test]
    fn a_port_equal_to_the_default_still_binds_a_rule_without_scheme() {
        let e = egress(&["example.com:80"], &[]);
        assert_eq!(check(&e, "http://example.com/"), Ok(()));
        assert_eq!(check(&e, "https://example.com/"), Err(Denial::NotGranted));
    }

    #[test]
    fn only_public_addresses_unless_the_grant_names_the_address_or_range() {
        let e = egress(&["*.example.com"], &["10.1.0.0/16"]);
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(!e.permits(private.parse().unwrap()), "{private}");
        }
        assert!(e.permits("10.1.2.3".parse().unwrap()));
        assert!(e.permits("93.184.216.34".parse().unwrap()));
        assert!(e.permits("2606:2800:220:1::1".parse().unwrap()));
        let named = egress(&["http://[::1]:9000"], &[]);
        assert!(named.permits("::1".parse().unwrap()));
        assert!(!named.permits("127.0.0.1".parse().unwrap()));
    }
}
