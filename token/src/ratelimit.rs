//! A token's rate limit (docs/DESIGN.md §4): `requests` per `window_s` seconds on
//! average, at most `burst` back to back. It is a token bucket of `burst`
//! requests refilled at `requests / window_s`: a quiet token may send `burst`
//! at once, then one every `window_s / requests` seconds.
//!
//! The token API stores it, introspection carries it (`mcpgw_token::wire`),
//! the gateway enforces it; the text form (`60/m`, `600/m burst 50`, `5/10s`)
//! is what people type (the CLI, the token API's tenant defaults).

use core::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Most requests in one window.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// Longest window: one day.
pub const MAX_WINDOW_S: u32 = 86_400;

/// `requests` per `window_s`, `burst` at once; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RateLimit {
    pub requests: u32,
    pub window_s: u32,
    pub burst: u32,
}

/// Only a JSON object with exactly the three fields (serde's derive would
/// also take `[requests, window_s, burst]`).
impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RateLimit, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            requests: u32,
            window_s: u32,
            burst: u32,
        }
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object {\"requests\", \"window_s\", \"burst\"}")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Fields, A::Error> {
                Fields::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        let f = d.deserialize_map(Object)?;
        Ok(RateLimit {
            requests: f.requests,
            window_s: f.window_s,
            burst: f.burst,
        })
    }
}

impl RateLimit {
    /// A checked limit; `burst` defaults to `requests` (a full window at once).
    pub fn new(requests: u32, window_s: u32, burst: Option<u32>) -> Result<RateLimit, String> {
        let limit = RateLimit {
            requests,
            window_s,
            burst: burst.unwrap_or(requests),
        };
        limit.check()?;
        Ok(limit)
    }

    /// Every value within its range, each problem named.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            return Err(format!(
                "requests must be between 1 and {MAX_REQUESTS}, got {}",
                self.requests
            ));
        }
        if !(1..=MAX_WINDOW_S).contains(&self.window_s) {
            return Err(format!(
                "window_s must be between 1 and {MAX_WINDOW_S} (one day), got {}",
                self.window_s
            ));
        }
        if !(1..=self.requests).contains(&self.burst) {
            return Err(format!(
                "burst must be between 1 and requests ({}), got {}",
                self.requests, self.burst
            ));
        }
        Ok(())
    }

    /// Nanoseconds between two requests at the sustained rate.
    pub fn interval_ns(&self) -> u64 {
        u64::from(self.window_s) * 1_000_000_000 / u64::from(self.requests.max(1))
    }

    /// Whether `other` allows nothing this one does not: no faster on
    /// average, no larger burst. A creator's limit is the ceiling of the
    /// tokens it mints.
    pub fn covers(&self, other: &RateLimit) -> bool {
        let faster = u64::from(other.requests) * u64::from(self.window_s)
            > u64::from(self.requests) * u64::from(other.window_s);
        !faster && other.burst <= self.burst
    }

    /// The text form: `<requests>/<window>` with a window of `s`, `m`, `h`,
    /// `d` or a number with one of them (`10s`, `5m`), then optionally
    /// ` burst <n>` (or `:<n>`). `60/m`, `600/m burst 50`, `5/10s:2`.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let bad = || {
            format!(
                "rate limit {text:?} is not understood: write <requests>/<window>[ burst <n>], \
                 e.g. 60/m, 600/m burst 50, 5/10s"
            )
        };
        let t = text.trim();
        let (main, burst) = match t.split_once(" burst ").or_else(|| t.split_once(':')) {
            Some((m, b)) => (m.trim(), Some(number(b.trim()).ok_or_else(bad)?)),
            None => (t, None),
        };
        let (requests, window) = main.split_once('/').ok_or_else(bad)?;
        let requests = number(requests.trim()).ok_or_else(bad)?;
        let window_s = window_seconds(window.trim()).ok_or_else(bad)?;
        RateLimit::new(requests, window_s, burst).map_err(|e| format!("rate limit {text:?}: {e}"))
    }
}

/// A canonical decimal within `u32` (no sign, no leading zeros).
fn number(s: &str) -> Option<u32> {
    let canonical = !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

fn window_seconds(s: &str) -> Option<u32> {
    let unit = |c: char| match c {
        's' => Some(1u32),
        'm' => Some(60),
        'h' => Some(3_600),
        'd' => Some(86_400),
        _ => None,
    };
    let last = s.chars().last()?;
    let per = unit(last)?;
    let count = &s[..s.len() - 1];
    let n = if count.is_empty() { 1 } else { number(count)? };
    n.checked_mul(per)
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.window_s;
        write!(f, "{}/", self.requests)?;
        match w {
            1 => f.write_str("s")?,
            60 => f.write_str("m")?,
            3_600 => f.write_str("h")?,
            86_400 => f.write_str("d")?,
            _ if w.is_multiple_of(3_600) => write!(f, "{}h", w / 3_600)?,
            _ if w.is_multiple_of(60) => write!(f, "{}m", w / 60)?,
            _ => write!(f, "{w}s")?,
        }
        if self.burst != self.requests {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(requests: u32, window_s: u32, burst: u32) -> RateLimit {
        RateLimit {
            requests,
            window_s,
            burst,
        }
    }

    #[test]
    fn text_form_round_trips() {
        for (text, want) in [
            ("60/m", rl(60, 60, 60)),
            ("600/m burst 50", rl(600, 60, 50)),
            ("600/1m:50", rl(600, 60, 50)),
            ("5/10s", rl(5, 10, 5)),
            ("1/s", rl(1, 1, 1)),
            ("1000/h burst 1", rl(1000, 3600, 1)),
            ("2/d", rl(2, 86_400, 2)),
            ("7/90s", rl(7, 90, 7)),
            (" 3/2h ", rl(3, 7200, 3)),
        ] {
            assert_eq!(RateLimit::parse(text), Ok(want), "{text}");
            assert_eq!(RateLimit::parse(&want.to_string()), Ok(want), "{want}");
        }
        assert_eq!(rl(600, 60, 50).to_string(), "600/m burst 50");
        assert_eq!(rl(5, 10, 5).to_string(), "5/10s");
        assert_eq!(rl(5, 300, 5).to_string(), "5/5m");
    }

    #[test]
    fn text_form_refuses_what_it_cannot_mean() {
        for text in [
            "",
            "60",
            "60/",
            "/m",
            "60/x",
            "60/0s",
            "0/m",
            "-1/m",
            "1.5/m",
            "60/m burst",
            "60/m burst 0",
            "60/m burst 61",
            "060/m",
            "60/m:",
            "60/2d",
            "1000001/s",
            "99999999999/s",
            "60 per minute",
        ] {
            assert!(RateLimit::parse(text).is_err(), "{text:?}");
        }
        let e = RateLimit::parse("0/m").unwrap_err();
        assert!(e.contains("requests must be between 1"), "{e}");
    }

    #[test]
    fn ranges_are_checked_with_the_field_named() {
        assert!(rl(1, 1, 1).check().is_ok());
        assert!(rl(MAX_REQUESTS, MAX_WINDOW_S, MAX_REQUESTS).check().is_ok());
        for (l, field) in [
            (rl(0, 60, 0), "requests"),
            (rl(MAX_REQUESTS + 1, 60, 1), "requests"),
            (rl(1, 0, 1), "window_s"),
            (rl(1, MAX_WINDOW_S + 1, 1), "window_s"),
            (rl(10, 60, 0), "burst"),
            (rl(10, 60, 11), "burst"),
        ] {
            let e = l.check().unwrap_err();
            assert!(e.starts_with(field), "{l:?}: {e}");
        }
    }

    #[test]
    fn interval_is_the_window_over_the_requests() {
        assert_eq!(rl(60, 60, 1).interval_ns(), 1_000_000_000);
        assert_eq!(rl(MAX_REQUESTS, 1, 1).interval_ns(), 1_000);
        assert_eq!(rl(3, 1, 1).interval_ns(), 333_333_333);
    }

    #[test]
    fn covers_compares_rate_and_burst() {
        let parent = rl(60, 60, 10);
        assert!(parent.covers(&parent));
        assert!(
            parent.covers(&rl(1, 1, 10)),
            "same rate, written per second"
        );
        assert!(parent.covers(&rl(30, 60, 5)));
        assert!(!parent.covers(&rl(61, 60, 10)), "faster");
        assert!(!parent.covers(&rl(2, 1, 1)), "faster, per second");
        assert!(!parent.covers(&rl(30, 60, 11)), "larger burst");
        assert!(parent.covers(&rl(1, 86_400, 1)));
    }

    #[test]
    fn json_is_strict() {
        let ok: RateLimit =
            serde_json::from_str(r#"{"requests":60,"window_s":60,"burst":5}"#).unwrap();
        assert_eq!(ok, rl(60, 60, 5));
        for bad in [
            r#"{"requests":-1,"window_s":60,"burst":5}"#,
            r#"{"requests":1.5,"window_s":60,"burst":5}"#,
            r#"{"requests":"60","window_s":60,"burst":5}"#,
            r#"{"requests":4294967296,"window_s":60,"burst":5}"#,
            r#"{"requests":60,"window_s":60}"#,
            r#"{"requests":60,"window_s":60,"burst":5,"extra":1}"#,
            r#"[60,60,5]"#,
        ] {
            assert!(serde_json::from_str::<RateLimit>(bad).is_err(), "{bad}");
        }
    }
}
