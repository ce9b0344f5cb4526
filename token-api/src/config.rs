//! Operator settings, read from Spin variables on every request (an instance
//! keeps nothing between requests).

use std::collections::BTreeMap;

use mcpgw_token::ratelimit::RateLimit;

use crate::ttl::{Span, TtlPolicy};
use crate::validate;

/// Spin variables the component reads (component-level names).
pub const VARIABLES: [&str; 8] = [
    "admin_key_sha256",
    "max_ttl",
    "default_ttl",
    "default_cache_ttl_s",
    "gateway_url",
    "feed_retention",
    "default_rate_limit",
    "tenant_rate_limits",
];

/// Defaults for the optional variables; `spin.toml` carries the same values.
pub const DEFAULT_MAX_TTL: &str = "365d";
pub const DEFAULT_DEFAULT_TTL: &str = "90d";
pub const DEFAULT_CACHE_TTL_S: u32 = 30;
/// Longest `cache_ttl_s` introspect may hand out: gateways re-check at least this often.
pub const MAX_CACHE_TTL_S: u32 = 3_600;
/// How long revocations feed entries are kept. Longer than any decision a
/// gateway can still use: `cache_ttl_s` (at most an hour) plus the filter's
/// `stale_if_error_s` (at most a day). Only a gateway cut off from the feed
/// for longer gets a reset, never a silent gap.
pub const DEFAULT_FEED_RETENTION: &str = "2d";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Lowercase hex SHA-256 of the admin key.
    pub admin_key_sha256: String,
    pub ttl: TtlPolicy,
    /// Upper bound of introspect's `cache_ttl_s`.
    pub default_cache_ttl_s: u32,
    /// The gateway's MCP URL, for the client configurations the console
    /// shows with a new token; `None` when the operator did not set it.
    pub gateway_url: Option<String>,
    /// Seconds a revocations feed entry is kept; `None` keeps them all.
    pub feed_retention_s: Option<i64>,
    /// The rate limit a new token gets when its create names none.
    pub rate_limits: RateLimitDefaults,
}

/// Rate limits given to new tokens that ask for none (variables
/// `default_rate_limit` and `tenant_rate_limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitDefaults {
    /// Every tenant without an entry of its own.
    pub default: Option<RateLimit>,
    /// Per tenant; `None`: that tenant's tokens get no limit by default.
    pub tenants: BTreeMap<String, Option<RateLimit>>,
}

impl RateLimitDefaults {
    /// The limit a new token of `tenant` gets by default.
    pub fn for_tenant(&self, tenant: &str) -> Option<RateLimit> {
        match self.tenants.get(tenant) {
            Some(own) => *own,
            None => self.default,
        }
    }

    /// `default_rate_limit` (`60/m`, `600/m burst 50`; empty: none) and
    /// `tenant_rate_limits` (`acme=600/m burst 50, globex=none`).
    fn parse(default: Option<&str>, tenants: Option<&str>) -> Result<Self, String> {
        let default = default
            .map(|v| {
                RateLimit::parse(v)
                    .map_err(|e| format!("variable default_rate_limit: {e}; or leave it empty"))
            })
            .transpose()?;
        let mut out = RateLimitDefaults {
            default,
            tenants: BTreeMap::new(),
        };
        for item in tenants.unwrap_or("").split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let bad = |why: String| {
                format!(
                    "variable tenant_rate_limits: {why}; write tenant=limit pairs separated by \
                     commas, e.g. acme=600/m burst 50, globex=none"
                )
            };
            let (tenant, limit) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("{item:?} has no '='")))?;
            let tenant = tenant.trim();
            if validate::label("tenant", tenant).is_err() {
                return Err(bad(format!("{tenant:?} is not a tenant name")));
            }
            let limit = match limit.trim() {
                "none" => None,
                text => Some(RateLimit::parse(text).map_err(bad)?),
            };
            if out.tenants.insert(tenant.to_owned(), limit).is_some() {
                return Err(bad(format!("tenant {tenant:?} is listed twice")));
            }
        }
        Ok(out)
    }
}

impl Config {
    /// Builds the configuration from variable lookups (`None` = unset or empty).
    /// Errors name the variable and say what a good value looks like.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let admin = get("admin_key_sha256").ok_or(
            "variable admin_key_sha256 is not set: give the SHA-256 hex of the admin key \
             (printf %s \"$KEY\" | sha256sum)",
        )?;
        let admin = admin.trim().to_ascii_lowercase();
        if admin.len() != 64 || !admin.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "variable admin_key_sha256 must be 64 hex characters (the SHA-256 of the admin \
                 key, never the key itself); got {} characters",
                admin.len()
            ));
        }
        let span = |name: &str, default: &str| {
            let v = get(name).unwrap_or_else(|| default.to_owned());
            Span::parse(v.trim()).ok_or_else(|| {
                format!("variable {name} = {v:?} is not a duration like 365d, 12h, 45m or never")
            })
        };
        let ttl = TtlPolicy {
            max: span("max_ttl", DEFAULT_MAX_TTL)?,
            default: span("default_ttl", DEFAULT_DEFAULT_TTL)?,
        };
        let exceeds = match (ttl.default, ttl.max) {
            (Span::Never, Span::Secs(_)) => true,
            (Span::Secs(d), Span::Secs(m)) => d > m,
            (_, Span::Never) => false,
        };
        if exceeds {
            return Err(format!(
                "variable default_ttl ({}) exceeds max_ttl ({}); lower default_ttl or raise max_ttl",
                ttl.default, ttl.max
            ));
        }
        let cache = match get("default_cache_ttl_s") {
            None => DEFAULT_CACHE_TTL_S,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_CACHE_TTL_S)
                .ok_or_else(|| {
                    format!(
                        "variable default_cache_ttl_s = {v:?} must be a whole number of seconds \
                         from 0 to {MAX_CACHE_TTL_S}"
                    )
                })?,
        };
        let gateway_url = get("gateway_url").map(|v| v.trim().to_owned());
        if let Some(url) = &gateway_url {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "variable gateway_url = {url:?} must be an http:// or https:// URL without \
                     spaces, like https://mcp.example.com/mcp"
                ));
            }
        }
        let feed_retention_s = match span("feed_retention", DEFAULT_FEED_RETENTION)? {
            Span::Never => None,
            Span::Secs(s) if s < i64::from(cache) => {
                return Err(format!(
                    "variable feed_retention ({}) is shorter than default_cache_ttl_s ({cache} s): \
                     gateways may cache an answer that long, so keep the feed at least as long \
                     (e.g. {DEFAULT_FEED_RETENTION})",
                    Span::Secs(s)
                ))
            }
            Span::Secs(s) => Some(s),
        };
        let rate_limits = RateLimitDefaults::parse(
            get("default_rate_limit").as_deref(),
            get("tenant_rate_limits").as_deref(),
        )?;
        Ok(Config {
            admin_key_sha256: admin,
            ttl,
            default_cache_ttl_s: cache,
            gateway_url,
            feed_retention_s,
            rate_limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92";

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_apply() {
        let c = config(&[("admin_key_sha256", SHA)]).unwrap();
        assert_eq!(c.admin_key_sha256, SHA);
        assert_eq!(c.ttl.max, Span::Secs(365 * 86_400));
        assert_eq!(c.ttl.default, Span::Secs(90 * 86_400));
        assert_eq!(c.default_cache_ttl_s, 30);
        assert_eq!(c.gateway_url, None);
        assert_eq!(c.feed_retention_s, Some(2 * 86_400));
        assert_eq!(c.rate_limits, RateLimitDefaults::default());
        assert_eq!(c.rate_limits.for_tenant("acme"), None);
    }

    #[test]
    fn rate_limit_defaults_per_tenant() {
        let c = config(&[
            ("admin_key_sha256", SHA),
            ("default_rate_limit", " 60/m "),
            ("tenant_rate_limits", "acme=600/m burst 50, globex=none,,"),
        ])
        .unwrap();
        let rl = |r, w, b| {
            Some(RateLimit {
                requests: r,
                window_s: w,
                burst: b,
            })
        };
        assert_eq!(c.rate_limits.for_tenant("acme"), rl(600, 60, 50));
        assert_eq!(c.rate_limits.for_tenant("globex"), None);
        assert_eq!(c.rate_limits.for_tenant("initech"), rl(60, 60, 60));
        for (vars, says) in [
            (vec![("default_rate_limit", "0/m")], "default_rate_limit"),
            (vec![("default_rate_limit", "lots")], "default_rate_limit"),
            (vec![("tenant_rate_limits", "acme")], "no '='"),
            (vec![("tenant_rate_limits", "Acme=1/s")], "not a tenant"),
            (vec![("tenant_rate_limits", "acme=1/s,acme=2/s")], "twice"),
            (
                vec![("tenant_rate_limits", "acme=1/fortnight")],
                "tenant_rate_limits",
            ),
        ] {
            let mut vars = vars;
            vars.push(("admin_key_sha256", SHA));
            let e = config(&vars).unwrap_err();
            assert!(e.contains(says), "{vars:?}: {e}");
        }
    }

    #[test]
    fn values_are_read_and_normalised() {
        let upper = SHA.to_uppercase();
        let c = config(&[
            ("admin_key_sha256", &format!(" {upper}\n")),
            ("max_ttl", "never"),
            ("default_ttl", "never"),
            ("default_cache_ttl_s", "0"),
            ("gateway_url", " https://mcp.example.com/mcp "),
            ("feed_retention", "never"),
        ])
        .unwrap();
        assert_eq!(
            c.gateway_url.as_deref(),
            Some("https://mcp.example.com/mcp")
        );
        assert_eq!(c.admin_key_sha256, SHA);
        assert_eq!((c.ttl.max, c.ttl.default), (Span::Never, Span::Never));
        assert_eq!(c.default_cache_ttl_s, 0);
        assert_eq!(c.feed_retention_s, None);
        let c = config(&[
            ("admin_key_sha256", SHA),
            ("default_cache_ttl_s", "120"),
            ("feed_retention", "2m"),
        ])
        .unwrap();
        assert_eq!(c.feed_retention_s, Some(120));
    }

    #[test]
    fn errors_name_the_variable() {
        for (vars, names) in [
            (vec![], "admin_key_sha256"),
            (vec![("admin_key_sha256", "hunter2")], "admin_key_sha256"),
            (vec![("admin_key_sha256", &SHA[1..])], "admin_key_sha256"),
            (
                vec![("admin_key_sha256", SHA), ("max_ttl", "1y")],
                "max_ttl",
            ),
            (
                vec![("admin_key_sha256", SHA), ("default_ttl", "0d")],
                "default_ttl",
            ),
            (
                vec![
                    ("admin_key_sha256", SHA),
                    ("max_ttl", "30d"),
                    ("default_ttl", "31d"),
                ],
                "exceeds max_ttl",
            ),
            (
                vec![("admin_key_sha256", SHA), ("default_ttl", "never")],
                "exceeds max_ttl",
            ),
            (
                vec![("admin_key_sha256", SHA), ("default_cache_ttl_s", "-1")],
                "default_cache_ttl_s",
            ),
            (
                vec![("admin_key_sha256", SHA), ("default_cache_ttl_s", "3601")],
                "default_cache_ttl_s",
            ),
            (
                vec![
                    ("admin_key_sha256", SHA),
                    ("gateway_url", "mcp.example.com"),
                ],
                "gateway_url",
            ),
            (
                vec![
                    ("admin_key_sha256", SHA),
                    ("gateway_url", "javascript:alert(1)"),
                ],
                "gateway_url",
            ),
            (
                vec![("admin_key_sha256", SHA), ("feed_retention", "12")],
                "feed_retention",
            ),
            (
                vec![
                    ("admin_key_sha256", SHA),
                    ("default_cache_ttl_s", "3600"),
                    ("feed_retention", "59m"),
                ],
                "feed_retention (59m) is shorter than default_cache_ttl_s (3600 s)",
            ),
        ] {
            let e = config(&vars).unwrap_err();
            assert!(e.contains(names), "{vars:?}: {e}");
            assert!(!e.contains("hunter2"), "a wrong key value is never echoed");
        }
    }
}
