//! Token lifetimes: `ttl` (`30d`, `12h`, `45m`, `never`, or an RFC 3339 date or
//! date-time) and `expires_at` (RFC 3339), bounded by the operator's `max_ttl`.
//!
//! A plain date means 00:00:00 UTC that day: `"ttl": "2027-01-01"` stops
//! working at the first instant of 2027-01-01 UTC.

use core::fmt;

use crate::error::ApiError;
use crate::rfc3339;

/// A length of time, or no limit at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Secs(i64),
    Never,
}

impl Span {
    /// Parses `<n>d`, `<n>h`, `<n>m` (n ≥ 1) or `never`.
    pub fn parse(s: &str) -> Option<Span> {
        if s == "never" {
            return Some(Span::Never);
        }
        let unit = match s.as_bytes().last()? {
            b'd' => 86_400,
            b'h' => 3_600,
            b'm' => 60,
            _ => return None,
        };
        let n = &s[..s.len() - 1];
        // Nine digits is over a million days: longer than anything sensible,
        // short enough that the product cannot overflow.
        if n.is_empty() || n.len() > 9 || !n.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let n: i64 = n.parse().ok()?;
        (n > 0).then_some(Span::Secs(n * unit))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Span::Never => f.write_str("never"),
            Span::Secs(s) if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            Span::Secs(s) if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            Span::Secs(s) if s % 60 == 0 => write!(f, "{}m", s / 60),
            Span::Secs(s) => write!(f, "{s}s"),
        }
    }
}

/// The operator's lifetime rules (Spin variables `max_ttl`, `default_ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    /// Longest lifetime a new token may get; `Never` lifts the limit.
    pub max: Span,
    /// Lifetime when the request gives neither `ttl` nor `expires_at`.
    pub default: Span,
}

/// The expiry (unix seconds, `None` = never) for a create request.
pub fn resolve(
    ttl: Option<&str>,
    expires_at: Option<&str>,
    now: i64,
    policy: &TtlPolicy,
) -> Result<Option<i64>, ApiError> {
    match (ttl, expires_at) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "ttl",
            "give either \"ttl\" or \"expires_at\", not both",
        )),
        (Some(ttl), None) => from_ttl(ttl, now, policy),
        (None, Some(at)) => from_expires_at(at, now, policy).map(Some),
        (None, None) => bounded("default_ttl", add(now, policy.default), now, policy),
    }
}

fn from_ttl(ttl: &str, now: i64, policy: &TtlPolicy) -> Result<Option<i64>, ApiError> {
    if let Some(span) = Span::parse(ttl) {
        return bounded("ttl", add(now, span), now, policy);
    }
    // Anything starting like a date is judged as one, for a precise message.
    if ttl.len() >= 4 && ttl.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
        let at = rfc3339::parse(ttl).map_err(|e| {
            ApiError::invalid(
                "ttl",
                format!("ttl {ttl:?} is not a valid RFC 3339 date: {e}"),
            )
        })?;
        return bounded("ttl", Some(at), now, policy);
    }
    Err(ApiError::invalid(
        "ttl",
        format!(
            "ttl {ttl:?} is not understood: use a number with d, h or m (30d, 12h, 45m), \
             \"never\", or an RFC 3339 date or date-time (2027-01-31, 2027-01-31T12:00:00Z)"
        ),
    ))
}

fn from_expires_at(at: &str, now: i64, policy: &TtlPolicy) -> Result<i64, ApiError> {
    let exp = rfc3339::parse(at).map_err(|e| {
        ApiError::invalid(
            "expires_at",
            format!("expires_at {at:?} is not an RFC 3339 date or date-time: {e}"),
        )
    })?;
    bounded("expires_at", Some(exp), now, policy).map(|e| e.unwrap_or(exp))
}

fn add(now: i64, span: Span) -> Option<i64> {
    match span {
        Span::Never => None,
        Span::Secs(s) => Some(now.saturating_add(s)),
    }
}

/// Checks an expiry is in the future and within `max_ttl`.
fn bounded(
    field: &'static str,
    exp: Option<i64>,
    now: i64,
    policy: &TtlPolicy,
) -> Result<Option<i64>, ApiError> {
    let max = policy.max;
    // A misconfigured default is the operator's problem, not the caller's.
    let fail = |message: String| {
        if field == "default_ttl" {
            ApiError::internal(format!("configuration: {message}"))
        } else {
            ApiError::invalid(field, message)
        }
    };
    match (exp, max) {
        (Some(exp), _) if exp <= now => Err(fail(format!(
            "{field} must be in the future; {} is not after now ({})",
            rfc3339::format(exp),
            rfc3339::format(now)
        ))),
        (None, Span::Secs(_)) => Err(fail(format!(
            "{field} \"never\" exceeds this server's max_ttl of {max}; give a ttl up to {max}"
        ))),
        (Some(exp), Span::Secs(limit)) if exp - now > limit => Err(fail(format!(
            "{field} exceeds this server's max_ttl of {max}; the latest allowed expiry is {}",
            rfc3339::format(now + limit)
        ))),
        _ => Ok(exp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_459_243; // 2026-11-23T18:40:43Z
    const YEAR: TtlPolicy = TtlPolicy {
        max: Span::Secs(365 * 86_400),
        default: Span::Secs(90 * 86_400),
    };
    const UNLIMITED: TtlPolicy = TtlPolicy {
        max: Span::Never,
        default: Span::Never,
    };

    fn ttl(s: &str) -> Result<Option<i64>, ApiError> {
        resolve(Some(s), None, NOW, &YEAR)
    }

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(Span::parse("30d"), Some(Span::Secs(30 * 86_400)));
        assert_eq!(Span::parse("12h"), Some(Span::Secs(12 * 3_600)));
        assert_eq!(Span::parse("45m"), Some(Span::Secs(45 * 60)));
        assert_eq!(Span::parse("never"), Some(Span::Never));
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1.5d",
            "30",
            "30s",
            "30D",
            " 30d",
            "1w",
            "9999999999d",
        ] {
            assert_eq!(Span::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Span::Secs(365 * 86_400).to_string(), "365d");
        assert_eq!(Span::Secs(7_200).to_string(), "2h");
        assert_eq!(Span::Secs(90).to_string(), "90s");
        assert_eq!(Span::Never.to_string(), "never");
    }

    #[test]
    fn relative_ttls_count_from_now() {
        assert_eq!(ttl("30d"), Ok(Some(NOW + 30 * 86_400)));
        assert_eq!(ttl("12h"), Ok(Some(NOW + 12 * 3_600)));
        assert_eq!(ttl("45m"), Ok(Some(NOW + 45 * 60)));
        assert_eq!(ttl("365d"), Ok(Some(NOW + 365 * 86_400)));
    }

    #[test]
    fn absolute_ttls_are_dates_or_datetimes() {
        // A plain date is 00:00:00Z that day.
        assert_eq!(ttl("2027-01-01"), Ok(Some(1_798_761_600)));
        assert_eq!(
            ttl("2027-01-01T12:00:00Z"),
            Ok(Some(1_798_761_600 + 43_200))
        );
        assert_eq!(
            ttl("2027-01-01T13:00:00+01:00"),
            Ok(Some(1_798_761_600 + 43_200))
        );
        let bad = ttl("2027-02-30").unwrap_err();
        assert_eq!(bad.code, "invalid_ttl");
        assert!(bad.message.contains("RFC 3339"), "{}", bad.message);
    }

    #[test]
    fn past_and_present_are_refused() {
        for past in ["2026-11-23", "2026-11-23T18:40:43Z", "2020-01-01T00:00:00Z"] {
            let e = ttl(past).unwrap_err();
            assert_eq!(e.code, "invalid_ttl");
            assert!(e.message.contains("must be in the future"), "{}", e.message);
        }
        let e = resolve(None, Some("2026-11-23T18:40:42Z"), NOW, &YEAR).unwrap_err();
        assert_eq!(e.code, "invalid_expires_at");
        assert_eq!(ttl("2026-11-23T18:40:44Z"), Ok(Some(NOW + 1)));
    }

    #[test]
    fn beyond_max_ttl_is_refused_with_the_latest_allowed_expiry() {
        let e = ttl("366d").unwrap_err();
        assert_eq!(e.code, "invalid_ttl");
        assert!(e.message.contains("max_ttl of 365d"), "{}", e.message);
        assert!(e.message.contains("2027-11-23T18:40:43Z"), "{}", e.message);
        assert_eq!(ttl("2028-01-01").unwrap_err().code, "invalid_ttl");
        let e = resolve(None, Some("2030-01-01T00:00:00Z"), NOW, &YEAR).unwrap_err();
        assert_eq!(e.code, "invalid_expires_at");
    }

    #[test]
    fn never_needs_an_unlimited_max_ttl() {
        let e = ttl("never").unwrap_err();
        assert_eq!(e.code, "invalid_ttl");
        assert!(e.message.contains("max_ttl of 365d"), "{}", e.message);
        assert_eq!(resolve(Some("never"), None, NOW, &UNLIMITED), Ok(None));
        assert_eq!(
            resolve(Some("100000d"), None, NOW, &UNLIMITED),
            Ok(Some(NOW + 100_000 * 86_400))
        );
    }

    #[test]
    fn expires_at_and_ttl_are_exclusive() {
        let e = resolve(Some("1d"), Some("2027-01-01"), NOW, &YEAR).unwrap_err();
        assert_eq!(e.code, "invalid_ttl");
        assert!(e.message.contains("not both"));
        assert_eq!(
            resolve(None, Some("2027-01-01"), NOW, &YEAR),
            Ok(Some(1_798_761_600))
        );
        let e = resolve(None, Some("30d"), NOW, &YEAR).unwrap_err();
        assert_eq!(e.code, "invalid_expires_at");
    }

    #[test]
    fn default_applies_when_neither_is_given() {
        assert_eq!(resolve(None, None, NOW, &YEAR), Ok(Some(NOW + 90 * 86_400)));
        assert_eq!(resolve(None, None, NOW, &UNLIMITED), Ok(None));
        // A default above the max is the operator's mistake: 500, not 400.
        let broken = TtlPolicy {
            max: Span::Secs(86_400),
            default: Span::Never,
        };
        assert_eq!(resolve(None, None, NOW, &broken).unwrap_err().status, 500);
    }

    #[test]
    fn garbage_names_the_accepted_forms() {
        for bad in ["soon", "1w", "30", "", "-5d", "P30D"] {
            let e = ttl(bad).unwrap_err();
            assert_eq!(e.code, "invalid_ttl");
            assert!(
                e.message.contains("30d, 12h, 45m"),
                "{bad:?}: {}",
                e.message
            );
        }
    }
}
