//! Networks and hosts: CIDR networks (trusted proxies, allowed upstreams) and the rule of
//! where a service may send calls, which the management plane applies when a service is
//! written and the gateway applies again to the address each new upstream connection
//! reaches.

use std::net::{IpAddr, SocketAddr};

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// An IPv4-mapped IPv6 address as its IPv4 one.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    /// Reads `a.b.c.d/n`, `x::y/n` or a bare address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `addr` lies in this network (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        let keep = |bits: u32| {
            let prefix = u32::from(self.prefix);
            move |value: u128| {
                if prefix == 0 {
                    0
                } else {
                    value >> (bits - prefix)
                }
            }
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let keep = keep(32);
                keep(u128::from(u32::from(net))) == keep(u128::from(u32::from(a)))
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let keep = keep(128);
                keep(u128::from(net)) == keep(u128::from(a))
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// One entry of `upstream_allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    /// Exactly this host name (`models.internal`).
    Name(String),
    /// Any name below this one (`*.models.internal`).
    Below(String),
    /// Any address in this network (`10.0.0.0/8`, or one address).
    Network(Cidr),
}

/// A host name compared as DNS does: case-insensitive, without a final dot.
fn dns_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `text` as a DNS host name (lowercase, no final dot) when it is one: labels of letters,
/// digits and `-` (not at either end), at most 63 bytes each and 253 in all.
pub fn host_name(text: &str) -> Option<String> {
    let name = dns_name(text);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)).then_some(name)
}

impl AllowedHost {
    /// Reads a network, an address, a host name or `*.` and a host name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(net) = Cidr::parse(text) {
            return Ok(AllowedHost::Network(net));
        }
        if text.contains('/') || text.parse::<IpAddr>().is_ok() {
            return Cidr::parse(text).map(AllowedHost::Network);
        }
        let (below, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let Some(name) = host_name(name) else {
            return Err(format!(
                "{text:?} is not a host name, *.name, IP address or CIDR network"
            ));
        };
        Ok(if below {
            AllowedHost::Below(name)
        } else {
            AllowedHost::Name(name)
        })
    }

    fn allows_name(&self, name: &str) -> bool {
        match self {
            AllowedHost::Name(allowed) => *allowed == name,
            AllowedHost::Below(parent) => name
                .strip_suffix(parent.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            AllowedHost::Network(_) => false,
        }
    }

    fn allows_addr(&self, addr: IpAddr) -> bool {
        matches!(self, AllowedHost::Network(net) if net.contains(addr))
    }
}

/// What the management plane concludes about an upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlCheck {
    Allowed,
    /// Refused; the text says why.
    Refused(String),
    /// A name only its addresses can decide: resolve it and check each with
    /// [`UpstreamPolicy::check_addr`] (`listed`: the name is on `upstream_allow`, so only
    /// the rule against this node's own listeners applies to its addresses).
    Resolve {
        host: String,
        port: u16,
        listed: bool,
    },
}

/// Where services may send calls.
#[derive(Debug, Clone, Default)]
pub struct UpstreamPolicy {
    /// Allowed hosts and networks; empty allows any host.
    pub allow: Vec<AllowedHost>,
    /// This node's own listeners, which are never an upstream (a call would loop).
    pub own: Vec<SocketAddr>,
}

impl UpstreamPolicy {
    /// Whether connecting to `addr` from this host reaches one of this node's listeners.
    /// `same_host`: the address is known to be this host's (a connection's two ends
    /// share it).
    fn is_own(&self, addr: SocketAddr, same_host: bool) -> bool {
        let ip = canonical(addr.ip());
        let local = same_host || ip.is_loopback() || ip.is_unspecified();
        self.own.iter().any(|own| {
            let own_ip = canonical(own.ip());
            own.port() == addr.port()
                && (own_ip == ip
                    || (own_ip.is_unspecified() && local)
                    || (own_ip.is_loopback() && ip.is_unspecified()))
        })
    }

    fn allows_addr(&self, addr: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|a| a.allows_addr(addr))
    }

    /// Checks an upstream base URL (already valid as a URL) when a service is written.
    pub fn check_url(&self, url: &str) -> UrlCheck {
        let Ok(parsed) = url::Url::parse(url) else {
            return UrlCheck::Refused("is not a URL".into());
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(name)) => {
                let name = dns_name(name);
                if name == "localhost" || name.ends_with(".localhost") {
                    // Always this host, whatever a resolver says.
                    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
                    return self.check_addr(loopback, false, |_| true);
                }
                let listed = self.allow.iter().any(|a| a.allows_name(&name));
                return UrlCheck::Resolve {
                    host: name,
                    port,
                    listed,
                };
            }
            None => return UrlCheck::Refused("must name a host".into()),
        };
        self.check_addr(SocketAddr::new(ip, port), false, |_| false)
    }

    /// Checks one address an upstream URL names or resolves to (`listed`: by a name on
    /// `upstream_allow`). `local` says whether an address is one of this host's, for
    /// listeners bound to every address.
    pub fn check_addr(
        &self,
        addr: SocketAddr,
        listed: bool,
        local: impl Fn(IpAddr) -> bool,
    ) -> UrlCheck {
        let wildcard = self
            .own
            .iter()
            .any(|own| own.ip().is_unspecified() && own.port() == addr.port());
        if self.is_own(addr, wildcard && local(addr.ip())) {
            return UrlCheck::Refused(format!(
                "{addr} is a listener of this node: calls would loop back into it"
            ));
        }
        if !listed && !self.allows_addr(addr.ip()) {
            return UrlCheck::Refused(format!("{} is not in upstream_allow", addr.ip()));
        }
        UrlCheck::Allowed
    }

    /// Checks a new upstream connection: `host` as the URL names it, `peer` the address
    /// reached and `local` this end of the connection.
    pub fn check_connection(
        &self,
        host: &str,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Result<(), String> {
        let same_host = canonical(peer.ip()) == canonical(local.ip());
        if self.is_own(peer, same_host) {
            return Err(format!(
                "{host} reaches {peer}, a listener of this node: the call would loop"
            ));
        }
        let name = dns_name(host);
        let by_name =
            name.parse::<IpAddr>().is_err() && self.allow.iter().any(|a| a.allows_name(&name));
        if by_name || self.allows_addr(peer.ip()) {
            Ok(())
        } else {
            Err(format!(
                "{host} reaches {}, which is not in upstream_allow",
                peer.ip()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], own: &[&str]) -> UpstreamPolicy {
        UpstreamPolicy {
            allow: allow
                .iter()
                .map(|a| AllowedHost::parse(a).expect("entry"))
                .collect(),
            own: own.iter().map(|o| o.parse().expect("addr")).collect(),
        }
    }

    fn refused(check: UrlCheck) -> bool {
        matches!(check, UrlCheck::Refused(_))
    }

    #[test]
    fn cidrs() {
        let net = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(net.contains("10.200.1.1".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.0.0.1".parse().expect("ip")));
        let one = Cidr::parse("192.0.2.7").expect("cidr");
        assert!(one.contains("192.0.2.7".parse().expect("ip")));
        assert!(!one.contains("192.0.2.8".parse().expect("ip")));
        let v6 = Cidr::parse("fd00::/8").expect("cidr");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("fe80::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        let all = Cidr::parse("0.0.0.0/0").expect("cidr");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "::/129", "10.0.0/8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(net.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn allow_entries_are_read_and_checked() {
        assert_eq!(
            AllowedHost::parse("Models.Internal.").expect("name"),
            AllowedHost::Name("models.internal".into())
        );
        assert_eq!(
            AllowedHost::parse("*.models.internal").expect("below"),
            AllowedHost::Below("models.internal".into())
        );
        assert!(matches!(
            AllowedHost::parse("10.0.0.0/8"),
            Ok(AllowedHost::Network(_))
        ));
        for bad in [
            "",
            "*.",
            "a..b",
            "-a.b",
            "a b",
            "10.0.0.0/40",
            "http://x",
            "*.*.x",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_listener_of_this_node_is_never_an_upstream() {
        let p = policy(&[], &["0.0.0.0:8080", "127.0.0.1:8081"]);
        for url in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081/v1",
            "http://localhost:8080",
            "http://LOCALHOST.:8081",
            "http://0.0.0.0:8080",
            "http://[::ffff:127.0.0.1]:8080",
            "http://api.localhost:8080",
        ] {
            assert!(refused(p.check_url(url)), "{url}");
        }
        for url in [
            "http://127.0.0.1:8082",
            "http://127.0.0.2:8081",
            "http://10.0.0.1:9000",
        ] {
            assert_eq!(p.check_url(url), UrlCheck::Allowed, "{url}");
        }
        // A name is decided by its addresses.
        assert_eq!(
            p.check_url("http://models.example:8080"),
            UrlCheck::Resolve {
                host: "models.example".into(),
                port: 8080,
                listed: false,
            }
        );
        // A wildcard listener's port on any of this host's addresses is this node.
        let lan: SocketAddr = "192.0.2.10:8080".parse().expect("addr");
        assert!(refused(p.check_addr(lan, false, |_| true)));
        assert_eq!(p.check_addr(lan, false, |_| false), UrlCheck::Allowed);
        // At connection time: any address of this host on a port of a wildcard listener.
        let here: SocketAddr = "192.0.2.10:50000".parse().expect("addr");
        let peer: SocketAddr = "192.0.2.10:8080".parse().expect("addr");
        assert!(p.check_connection("models.example", peer, here).is_err());
        let elsewhere: SocketAddr = "192.0.2.11:8080".parse().expect("addr");
        assert!(p
            .check_connection("models.example", elsewhere, here)
            .is_ok());
    }

    #[test]
    fn upstream_allow_restricts_hosts_and_networks() {
        let p = policy(&["models.internal", "*.gpu.internal", "10.1.0.0/16"], &[]);
        for (url, port) in [
            ("https://models.internal", 443),
            ("http://a.gpu.internal:9000", 9000),
        ] {
            let UrlCheck::Resolve { listed, .. } = p.check_url(url) else {
                panic!("{url} is decided by its addresses");
            };
            assert!(listed, "{url}");
            // Listed by name: any address, but never this node's listener.
            let far = SocketAddr::new("192.0.2.1".parse().expect("ip"), port);
            assert_eq!(p.check_addr(far, true, |_| false), UrlCheck::Allowed);
        }
        let own = policy(&["models.internal"], &["127.0.0.1:8081"]);
        let looped: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        assert!(refused(own.check_addr(looped, true, |_| false)));
        assert_eq!(p.check_url("http://10.1.2.3:9000"), UrlCheck::Allowed);
        assert!(refused(p.check_url("http://10.2.0.1")));
        assert!(refused(p.check_url("http://169.254.169.254/latest")));
        assert!(matches!(
            p.check_url("http://gpu.internal"),
            UrlCheck::Resolve { .. }
        ));
        assert!(matches!(
            p.check_url("http://evilgpu.internal"),
            UrlCheck::Resolve { .. }
        ));
        let local: SocketAddr = "10.9.0.1:40000".parse().expect("addr");
        let inside: SocketAddr = "10.1.0.5:80".parse().expect("addr");
        let outside: SocketAddr = "192.0.2.1:80".parse().expect("addr");
        // A name on the list may resolve anywhere; any other name only into a network.
        assert!(p
            .check_connection("models.internal", outside, local)
            .is_ok());
        assert!(p
            .check_connection("rebinding.example", outside, local)
            .is_err());
        assert!(p
            .check_connection("rebinding.example", inside, local)
            .is_ok());
        assert!(p.check_connection("10.2.0.1", outside, local).is_err());
    }
}
