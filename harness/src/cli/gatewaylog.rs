//! `mcpgw audit --gateway-log FILE`: reads Envoy's JSON access log (the format
//! of envoy/gateway.yaml, one object per line with the filter's record in
//! `mcp`) and shows the requests that match, as a table or JSON.
//!
//! Pure: [`Event::parse`] reads one line, [`Filter::matches`] selects, and
//! [`read`] streams a file keeping the newest matches.

use std::collections::VecDeque;
use std::io::BufRead;

use anyhow::{anyhow, bail};
use serde_json::{Map, Value};

use super::table::render;
use super::AuditArgs;

/// One request as the gateway logged it: Envoy's fields with the filter's
/// record merged in (the record wins where both name a field).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub fields: Map<String, Value>,
    /// `time` as Unix milliseconds, when it parses.
    pub at_ms: Option<i64>,
}

impl Event {
    /// One log line; `None` for a line that is not a JSON object.
    pub fn parse(line: &str) -> Option<Event> {
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(line) else {
            return None;
        };
        // The record is a JSON object written as a string (Envoy's JSON log
        // quotes filter state); accept it as an object too.
        let record = match fields.remove("mcp") {
            Some(Value::String(s)) => serde_json::from_str::<Value>(&s).ok(),
            Some(v @ Value::Object(_)) => Some(v),
            _ => None,
        };
        if let Some(Value::Object(r)) = record {
            for (k, v) in r {
                fields.insert(k, v);
            }
        }
        // Envoy writes null (or "-") for a header that was not there.
        fields.retain(|_, v| !v.is_null() && v.as_str() != Some("-"));
        let at_ms = fields
            .get("time")
            .and_then(Value::as_str)
            .and_then(parse_time);
        Some(Event { fields, at_ms })
    }

    pub fn str(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }

    fn cell(&self, field: &str) -> String {
        match self.fields.get(field) {
            None => "-".into(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        }
    }
}

/// What to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub token_id: Option<String>,
    pub token_name: Option<String>,
    /// A prefix of the token_sha (at least 8 hex digits): finds the refused
    /// requests of a dead token too, which carry no id.
    pub token_sha: Option<String>,
    pub tenant: Option<String>,
    pub project: Option<String>,
    /// Tool, prompt or resource name; a trailing `*` matches a prefix.
    pub tool: Option<String>,
    pub method: Option<String>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub status: Option<u16>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Filter {
    pub fn from_args(args: &AuditArgs, now_ms: i64) -> anyhow::Result<Filter> {
        let a = &args.log;
        if let Some(s) = &a.token_sha {
            if s.len() < 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--token-sha {s:?}: give at least 8 hex digits of the token_sha");
            }
        }
        let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
            v.as_deref()
                .map(|t| {
                    parse_when(t, now_ms).ok_or_else(|| {
                        anyhow!(
                            "{flag} {t:?}: give an RFC 3339 time (2026-01-31T12:00:00Z), a date, \
                             or an age like 15m, 2h, 7d"
                        )
                    })
                })
                .transpose()
        };
        Ok(Filter {
            token_id: args.token_id.clone(),
            token_name: a.token_name.clone(),
            token_sha: a.token_sha.as_ref().map(|s| s.to_ascii_lowercase()),
            tenant: args.tenant.clone(),
            project: a.project.clone(),
            tool: a.tool.clone(),
            method: a.method.clone(),
            decision: a.decision.clone(),
            reason: a.reason.clone(),
            status: a.status,
            since_ms: time("--since", &a.since)?,
            until_ms: time("--until", &a.until)?,
        })
    }

    pub fn matches(&self, e: &Event) -> bool {
        let eq = |want: &Option<String>, field: &str| {
            want.as_deref().is_none_or(|w| e.str(field) == Some(w))
        };
        let tool_ok = self.tool.as_deref().is_none_or(|w| {
            e.str("name").is_some_and(|n| match w.strip_suffix('*') {
                Some(prefix) => n.starts_with(prefix),
                None => n == w,
            })
        });
        let sha_ok = self
            .token_sha
            .as_deref()
            .is_none_or(|p| e.str("token_sha").is_some_and(|s| s.starts_with(p)));
        let status_ok = self
            .status
            .is_none_or(|s| e.fields.get("status").and_then(Value::as_u64) == Some(u64::from(s)));
        let time_ok = match (self.since_ms, self.until_ms) {
            (None, None) => true,
            (since, until) => e
                .at_ms
                .is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)),
        };
        eq(&self.token_id, "token_id")
            && eq(&self.token_name, "token_name")
            && eq(&self.tenant, "tenant")
            && eq(&self.project, "project")
            && eq(&self.method, "method")
            && eq(&self.decision, "decision")
            && eq(&self.reason, "reason")
            && tool_ok
            && sha_ok
            && status_ok
            && time_ok
    }
}

/// What a read found.
#[derive(Debug, Default)]
pub struct Found {
    /// The newest matches, oldest first.
    pub events: Vec<Event>,
    /// Matches older than the newest `limit`, not kept.
    pub dropped: usize,
    /// Lines that are not JSON objects.
    pub unreadable: usize,
}

/// Streams `input`, keeping the newest `limit` matches (0: all).
pub fn read(input: impl BufRead, filter: &Filter, limit: usize) -> std::io::Result<Found> {
    let mut kept = VecDeque::new();
    let mut found = Found::default();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Some(e) = Event::parse(&line) else {
            found.unreadable += 1;
            continue;
        };
        if !filter.matches(&e) {
            continue;
        }
        kept.push_back(e);
        if limit > 0 && kept.len() > limit {
            kept.pop_front();
            found.dropped += 1;
        }
    }
    found.events = kept.into();
    Ok(found)
}

const COLUMNS: [(&str, &str); 12] = [
    ("TIME", "time"),
    ("STATUS", "status"),
    ("DECISION", "decision"),
    ("REASON", "reason"),
    ("TOKEN ID", "token_id"),
    ("TOKEN NAME", "token_name"),
    ("TENANT", "tenant"),
    ("METHOD", "method"),
    ("NAME", "name"),
    ("CACHE", "cache"),
    ("MS", "duration_ms"),
    ("RATE LIMIT", "rate_limit"),
];

pub fn table(events: &[Event]) -> String {
    let headers: Vec<&str> = COLUMNS.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| COLUMNS.iter().map(|(_, f)| e.cell(f)).collect())
        .collect();
    render(&headers, &rows)
}

/// `mcpgw audit --gateway-log path …`.
pub fn run(path: &std::path::Path, a: &AuditArgs, as_json: bool) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).map_err(|e| {
        anyhow!(
            "cannot read the gateway log {}: {e}; it is the access log path in your Envoy \
             configuration (the local stack writes .data/envoy/access.log)",
            path.display()
        )
    })?;
    let filter = Filter::from_args(a, now_ms())?;
    let limit = usize::try_from(a.limit).unwrap_or(usize::MAX);
    let found = read(std::io::BufReader::new(file), &filter, limit)?;
    if as_json {
        let events: Vec<Value> = found
            .events
            .iter()
            .map(|e| Value::Object(e.fields.clone()))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "events": events, "older_matches": found.dropped, "unreadable_lines": found.unreadable
            }))?
        );
        return Ok(());
    }
    println!("{}", table(&found.events));
    let mut note = format!("{} request(s)", found.events.len());
    if found.dropped > 0 {
        note.push_str(&format!(
            "; {} older match(es) not shown (raise --limit, 0 for all)",
            found.dropped
        ));
    }
    if found.unreadable > 0 {
        note.push_str(&format!(
            "; {} line(s) not in the gateway's JSON format skipped",
            found.unreadable
        ));
    }
    println!("{note}");
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `--since`/`--until`: RFC 3339, a plain date (its midnight UTC), or an
/// age before `now_ms` (`90s`, `15m`, `2h`, `7d`).
pub fn parse_when(s: &str, now_ms: i64) -> Option<i64> {
    if let Some(t) = parse_time(s) {
        return Some(t);
    }
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = n.parse().ok().filter(|n| *n >= 0)?;
    let per = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(now_ms - n.checked_mul(per)?)
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fff…](Z|±HH:MM)` (or a plain date) → Unix
/// milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    // Access logs may write RFC 3339's permitted space between date and time.
    let s = match (s.get(..10), s.get(10..11), s.get(11..)) {
        (Some(date), Some(" "), Some(time)) => std::borrow::Cow::Owned(format!("{date}T{time}")),
        _ => std::borrow::Cow::Borrowed(s),
    };
    mcpgw_token::rfc3339::parse_ms(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"time":"2026-12-02T16:40:18.123Z","method":"POST","path":"/mcp","status":200,"flags":"-","duration_ms":3,"bytes_received":90,"bytes_sent":400,"upstream_cluster":"tenant_acme","request_id":"r1","tenant":"acme","project":"default","token_id":"tok_1","token_name":"laptop","mcp":"{\"decision\":\"allow\",\"cache\":\"hit\",\"token_id\":\"tok_1\",\"token_name\":\"laptop\",\"tenant\":\"acme\",\"project\":\"default\",\"token_sha\":\"abcdef0123456789\",\"method\":\"tools/call\",\"name\":\"whoami\"}"}"#;

    fn event(patch: &str) -> Event {
        let mut v: Value = serde_json::from_str(LINE).unwrap();
        let p: Value = serde_json::from_str(patch).unwrap();
        let mut rec: Value = serde_json::from_str(v["mcp"].as_str().unwrap()).unwrap();
        for (k, val) in p.as_object().unwrap() {
            if k == "status" || k == "time" {
                v[k] = val.clone();
            } else if val.is_null() {
                rec.as_object_mut().unwrap().remove(k);
            } else {
                rec[k] = val.clone();
            }
        }
        v["mcp"] = Value::String(rec.to_string());
        Event::parse(&v.to_string()).unwrap()
    }

    #[test]
    fn a_line_merges_envoy_fields_and_the_record() {
        let e = Event::parse(LINE).unwrap();
        assert_eq!(e.str("decision"), Some("allow"));
        assert_eq!(e.str("name"), Some("whoami"));
        assert_eq!(e.str("upstream_cluster"), Some("tenant_acme"));
        assert_eq!(e.fields["status"], 200);
        assert!(!e.fields.contains_key("mcp"));
        assert_eq!(e.at_ms, Some(1_796_229_618_123));
        // A line without a record (the filter never ran): Envoy's fields only.
        let bare = Event::parse(r#"{"time":"x","status":400,"mcp":null,"tenant":"-"}"#).unwrap();
        assert_eq!(bare.fields.len(), 2);
        assert_eq!(bare.at_ms, None);
        assert!(Event::parse("not json").is_none());
        assert!(Event::parse("[1]").is_none());
    }

    #[test]
    fn filters_select_by_token_tool_decision_and_time() {
        let base = Filter::default();
        let e = event("{}");
        assert!(base.matches(&e));
        let f = |g: fn(&mut Filter)| {
            let mut f = Filter::default();
            g(&mut f);
            f
        };
        assert!(f(|f| f.token_id = Some("tok_1".into())).matches(&e));
        assert!(!f(|f| f.token_id = Some("tok_2".into())).matches(&e));
        assert!(f(|f| f.tool = Some("who*".into())).matches(&e));
        assert!(!f(|f| f.tool = Some("who".into())).matches(&e));
        assert!(f(|f| f.decision = Some("allow".into())).matches(&e));
        assert!(!f(|f| f.decision = Some("deny".into())).matches(&e));
        assert!(f(|f| f.token_sha = Some("abcdef01".into())).matches(&e));
        assert!(!f(|f| f.token_sha = Some("abcdef02".into())).matches(&e));
        assert!(f(|f| f.status = Some(200)).matches(&e));
        assert!(!f(|f| f.status = Some(429)).matches(&e));
        let t = e.at_ms.unwrap();
        assert!(f(|f| f.since_ms = Some(0)).matches(&e));
        let late = Filter {
            since_ms: Some(t + 1),
            ..Filter::default()
        };
        assert!(!late.matches(&e));
        let early = Filter {
            until_ms: Some(t - 1),
            ..Filter::default()
        };
        assert!(!early.matches(&e));
        let denied = event(r#"{"decision":"deny","reason":"rate_limited","status":429}"#);
        assert!(f(|f| f.reason = Some("rate_limited".into())).matches(&denied));
    }

    #[test]
    fn read_keeps_the_newest_matches_and_counts_the_rest() {
        let mut text = String::new();
        for i in 0..5 {
            text.push_str(&LINE.replace("\"r1\"", &format!("\"r{i}\"")));
            text.push('\n');
        }
        text.push_str("garbage\n\n");
        let found = read(text.as_bytes(), &Filter::default(), 2).unwrap();
        let ids: Vec<_> = found.events.iter().map(|e| e.str("request_id")).collect();
        assert_eq!(ids, vec![Some("r3"), Some("r4")]);
        assert_eq!(found.dropped, 3);
        assert_eq!(found.unreadable, 1);
        let all = read(text.as_bytes(), &Filter::default(), 0).unwrap();
        assert_eq!(all.events.len(), 5);
        let t = table(&all.events);
        assert!(t.starts_with("TIME"), "{t}");
        assert!(t.contains("whoami") && t.contains("tok_1"), "{t}");
    }

    #[test]
    fn times_parse_as_envoy_and_people_write_them() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(
            parse_time("2000-03-01T00:00:00+01:00"),
            Some(951_865_200_000)
        );
        assert_eq!(parse_time("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
        assert_eq!(
            parse_time("2024-02-29 12:00:00.25Z"),
            Some(1_709_208_000_250)
        );
        assert_eq!(parse_time("2024-02-29"), Some(1_709_164_800_000));
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00",
            "x",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        let now = 10_000_000;
        assert_eq!(parse_when("15m", now), Some(now - 900_000));
        assert_eq!(parse_when("2d", now), Some(now - 172_800_000));
        assert_eq!(parse_when("1970-01-02", now), Some(86_400_000));
        assert_eq!(parse_when("soon", now), None);
        assert_eq!(parse_when("-5m", now), None);
    }
}
