//! The probe's host calls, parsed from the plugin configuration.

use std::fmt;

/// One host call made per request in the request-header phase. Each mirrors
/// a call on the filter's cache-hit path (`filter/src/wasm/http.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `proxy_get_header_map_pairs` on the request headers (the filter reads them once).
    HeaderMap,
    /// `proxy_get_current_time_nanoseconds`.
    Time,
    /// `proxy_increment_metric` on a counter.
    Metric,
    /// `proxy_remove_header_map_value("authorization")`.
    Remove,
    /// `proxy_replace_header_map_value` of one `x-bench-<n>` header (n counts the sets).
    Set,
    /// `proxy_call_foreign_function("clear_route_cache")`.
    ClearRouteCache,
    /// The whole map read, `authorization` dropped, four headers added, and
    /// written back with one `proxy_set_header_map_pairs`.
    Pairs,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::HeaderMap,
        Op::Time,
        Op::Metric,
        Op::Remove,
        Op::Set,
        Op::ClearRouteCache,
        Op::Pairs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::HeaderMap => "header_map",
            Op::Time => "time",
            Op::Metric => "metric",
            Op::Remove => "remove",
            Op::Set => "set",
            Op::ClearRouteCache => "clear_route_cache",
            Op::Pairs => "pairs",
        }
    }
}

/// A configuration the probe cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsError(String);

impl fmt::Display for OpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
        write!(
            f,
            "unknown probe op {:?}: use a comma-separated list of {}",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for OpsError {}

/// `"header_map, set,set"` → the ops in order; empty or blank → none (the floor).
pub fn parse(config: &str) -> Result<Vec<Op>, OpsError> {
    config
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Op::ALL
                .into_iter()
                .find(|o| o.name() == s)
                .ok_or_else(|| OpsError(s.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_the_floor() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse(" \n"), Ok(vec![]));
    }

    #[test]
    fn every_name_round_trips_in_order() {
        let all: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(parse(&all.join(",")), Ok(Op::ALL.to_vec()));
        assert_eq!(
            parse(" set , set,time "),
            Ok(vec![Op::Set, Op::Set, Op::Time])
        );
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let e = parse("time,sha256").unwrap_err().to_string();
        assert!(e.contains("\"sha256\""), "{e}");
        assert!(e.contains("clear_route_cache"), "{e}");
    }
}
