//! `allowed_outbound_hosts`, read and checked the way Spin does: each entry is
//! `<scheme>://<host>[:<port>]`, with `*` for any scheme, host or port,
//! `*.example.com` for subdomains, an IP network (`10.0.0.0/8`) for hosts,
//! `5000..6000` for a half-open port range, and the scheme's well-known port
//! when none is given. `{{ name }}` templates are filled with application
//! variables before parsing. A destination no entry allows is refused.

use std::net::IpAddr;

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    scheme: Option<String>,
    host: HostPattern,
    ports: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, kept as `.example.com`.
    Subdomain(String),
    /// `self`: only relative URLs, which outbound PostgreSQL never uses.
    ToSelf,
    Exact(String),
    Network {
        addr: IpAddr,
        prefix: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    One(u16),
    /// Half-open, as Spin's `a..b`.
    Range(u16, u16),
}

/// The default port of a scheme, as Spin knows them.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    /// Parses one entry (templates already filled in).
    pub fn parse(entry: &str) -> Result<Self, String> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "{url:?} has no scheme: write <scheme>://<host>[:<port>], e.g. postgres://db.internal:5432"
            ));
        };
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => Some(s.to_owned()),
            s => {
                return Err(format!(
                    "{url:?}: scheme {s:?} is not a word of letters or '*'"
                ))
            }
        };
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal's colons sit inside brackets.
            Some((h, p)) if !p.contains(']') => (h, p),
            _ => (rest, ""),
        };
        let port = match port.split_once('/') {
            Some((_, path)) if !path.is_empty() => {
                return Err(format!("{url:?} has a path; allowed hosts may not"))
            }
            Some((p, _)) => p,
            None => port,
        };
        let host =
            parse_host(host.trim().trim_end_matches('/')).map_err(|e| format!("{url:?}: {e}"))?;
        let ports = match port {
            "" => {
                let name = scheme.as_deref().unwrap_or("*");
                PortPattern::One(well_known_port(name).ok_or_else(|| {
                    format!("{url:?} gives no port and scheme {name:?} has no well-known port")
                })?)
            }
            "*" => PortPattern::Any,
            p => match p.split_once("..") {
                Some((a, b)) => PortPattern::Range(parse_port(url, a)?, parse_port(url, b)?),
                None => PortPattern::One(parse_port(url, p)?),
            },
        };
        Ok(Self {
            original: entry.to_owned(),
            scheme,
            host,
            ports,
        })
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The scheme it allows (`None` for `*`).
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.as_deref()
    }

    /// Whether it lets `scheme://host[:port]` through.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomain(suffix) => host.to_ascii_lowercase().ends_with(suffix.as_str()),
            HostPattern::ToSelf => false,
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Network { addr, prefix } => host
                .parse::<IpAddr>()
                .is_ok_and(|ip| in_network(ip, *addr, *prefix)),
        };
        let Some(port) = port.or_else(|| well_known_port(scheme)) else {
            return false;
        };
        host_ok
            && match self.ports {
                PortPattern::Any => true,
                PortPattern::One(p) => p == port,
                PortPattern::Range(a, b) => (a..b).contains(&port),
            }
    }
}

fn parse_port(url: &str, p: &str) -> Result<u16, String> {
    p.parse()
        .map_err(|_| format!("{url:?}: port {p:?} is not a number"))
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    match host {
        "" => return Err("no host".into()),
        "*" => return Ok(HostPattern::Any),
        "self" | "self.alt" => return Ok(HostPattern::ToSelf),
        _ => {}
    }
    if host.starts_with('{') {
        return Err("host lists are not supported (Spin does not support them either)".into());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(addr) = bare.parse::<IpAddr>() {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        return Ok(HostPattern::Network { addr, prefix });
    }
    if let Some((ip, prefix)) = bare.split_once('/') {
        if let (Ok(addr), Ok(prefix)) = (ip.parse::<IpAddr>(), prefix.parse::<u8>()) {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(format!(
                    "network prefix /{prefix} is longer than {max} bits"
                ));
            }
            return Ok(HostPattern::Network { addr, prefix });
        }
        return Err("hosts may not contain paths".into());
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            return Err("wildcards are allowed only as a leading '*.'".into());
        }
        return Ok(HostPattern::Subdomain(format!(
            ".{}",
            domain.to_ascii_lowercase()
        )));
    }
    if host.contains('*') {
        return Err("wildcards are allowed only as a leading '*.'".into());
    }
    Ok(HostPattern::Exact(host.to_ascii_lowercase()))
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// A component's resolved `allowed_outbound_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    /// Parses every entry; `insecure:allow-all` is refused as Spin refuses it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.as_ref();
            if e.trim() == "insecure:allow-all" {
                return Err(
                    "'insecure:allow-all' is not allowed; write '*://*:*' to allow everything"
                        .into(),
                );
            }
            out.push(AllowedHost::parse(e)?);
        }
        Ok(Self(out))
    }

    pub fn entries(&self) -> &[AllowedHost] {
        &self.0
    }

    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.0.iter().any(|h| h.allows(scheme, host, port))
    }

    /// Checks a PostgreSQL address (URL or `key=value` form) as Spin's
    /// outbound PostgreSQL does: every TCP host of it, with the port at the
    /// same index (or the only port, or 5432), must be allowed; Unix sockets
    /// never are. The error is the message the guest gets.
    pub fn check_postgres(&self, address: &str) -> Result<(), String> {
        let config: tokio_postgres::Config = address
            .parse()
            .map_err(|e| format!("invalid PostgreSQL address: {e}"))?;
        let ports = config.get_ports();
        for (i, host) in config.get_hosts().iter().enumerate() {
            match host {
                tokio_postgres::config::Host::Tcp(h) => {
                    let port = ports
                        .get(i)
                        .or_else(|| ports.first().filter(|_| ports.len() == 1))
                        .copied();
                    if !self.allows("postgres", h, port) {
                        let shown = match port {
                            Some(p) => format!("{h}:{p}"),
                            None => h.clone(),
                        };
                        return Err(format!(
                            "address postgres://{shown} is not permitted: add it to the component's allowed_outbound_hosts"
                        ));
                    }
                }
                tokio_postgres::config::Host::Unix(_) => {
                    return Err("Unix sockets are not supported on WebAssembly".into())
                }
            }
        }
        if config.get_hosts().is_empty() {
            return Err("the PostgreSQL address names no host".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries).unwrap()
    }

    #[test]
    fn exact_hosts_default_to_the_well_known_port() {
        let h = hosts(&["postgres://db.internal"]);
        assert!(h.allows("postgres", "db.internal", None));
        assert!(h.allows("postgres", "db.internal", Some(5432)));
        assert!(h.allows("postgres", "DB.Internal", Some(5432)));
        assert!(!h.allows("postgres", "db.internal", Some(5433)));
        assert!(!h.allows("postgres", "other", Some(5432)));
        assert!(!h.allows("mysql", "db.internal", Some(5432)));
    }

    #[test]
    fn wildcards_ranges_and_networks() {
        let h = hosts(&[
            "postgres://*.example.com:*",
            "*://127.0.0.1:5000..5002",
            "postgres://10.0.0.0/8:5432",
            "postgres://[::1]:6000",
        ]);
        assert!(h.allows("postgres", "a.example.com", Some(1)));
        assert!(!h.allows("postgres", "example.com", Some(1)));
        assert!(h.allows("postgres", "127.0.0.1", Some(5000)));
        assert!(h.allows("redis", "127.0.0.1", Some(5001)));
        assert!(!h.allows("postgres", "127.0.0.1", Some(5002)));
        assert!(h.allows("postgres", "10.20.30.40", None));
        assert!(!h.allows("postgres", "11.0.0.1", None));
        assert!(h.allows("postgres", "::1", Some(6000)));
        assert!(h.allows("postgres", "[::1]", Some(6000)));
        assert!(hosts(&["*://*:*"]).allows("postgres", "anything", Some(1)));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (entry, needle) in [
            ("db.internal:5432", "no scheme"),
            ("postgres://db/x", "path"),
            ("postgres://a.*.com", "wildcards"),
            ("postgres://db:abc", "not a number"),
            ("foo://db", "well-known port"),
            ("post-gres://db", "scheme"),
            ("insecure:allow-all", "'*://*:*'"),
        ] {
            let err = AllowedHosts::parse(&[entry]).unwrap_err();
            assert!(err.contains(needle), "{entry}: {err}");
        }
    }

    #[test]
    fn postgres_addresses_are_checked_host_by_host() {
        let h = hosts(&["postgres://127.0.0.1:5433", "postgres://db"]);
        h.check_postgres("postgres://u:p@127.0.0.1:5433/app")
            .unwrap();
        h.check_postgres("host=db user=u").unwrap();
        h.check_postgres("host=db,127.0.0.1 port=5432,5433")
            .unwrap();
        let err = h
            .check_postgres("postgres://u@127.0.0.1:5434/app")
            .unwrap_err();
        assert!(
            err.contains("postgres://127.0.0.1:5434 is not permitted"),
            "{err}"
        );
        let err = h.check_postgres("host=/run/postgresql").unwrap_err();
        assert!(err.contains("Unix sockets"), "{err}");
        let err = h.check_postgres("postgres://u@[bad/x").unwrap_err();
        assert!(err.contains("invalid PostgreSQL address"), "{err}");
        assert!(AllowedHosts::default()
            .check_postgres("postgres://127.0.0.1:5433/app")
            .is_err());
    }
}
