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
    /// `proxy_add_header_map_value` of one `x-bench-<n>` header (n counts the adds).
    Add,
    /// `proxy_get_header_map_value("authorization")`: one header, not the map.
    Get,
    /// Nothing: the probe's own context without a host call.
    Nop,
    /// `proxy_call_foreign_function("clear_route_cache")`.
    ClearRouteCache,
    /// The whole map read, `authorization` dropped, four headers added, and
    /// written back with one `proxy_set_header_map_pairs`.
    Pairs,
    /// `mcpgw_token::format::validate` of a token (prefix, alphabet, CRC32): no host call.
    Validate,
    /// The cache key as the filter computes it: the token's SHA-256 as
    /// bytes. No host call.
    Sha256,
    /// `proxy_set_property("mcp_auth", <the record of an allowed call>)`:
    /// the request record, one filter-state value per request.
    Property,
    /// A rate-limit slot read and written back with compare-and-swap
    /// (`proxy_get_shared_data`, `proxy_set_shared_data`): what a request of
    /// a rate-limited token adds.
    Shared,
}

impl Op {
    pub const ALL: [Op; 14] = [
        Op::HeaderMap,
        Op::Time,
        Op::Metric,
        Op::Remove,
        Op::Set,
        Op::Add,
        Op::Get,
        Op::Nop,
        Op::ClearRouteCache,
        Op::Pairs,
        Op::Validate,
        Op::Sha256,
        Op::Property,
        Op::Shared,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::HeaderMap => "header_map",
            Op::Time => "time",
            Op::Metric => "metric",
            Op::Remove => "remove",
            Op::Set => "set",
            Op::Add => "add",
            Op::Get => "get",
            Op::Nop => "nop",
            Op::ClearRouteCache => "clear_route_cache",
            Op::Pairs => "pairs",
            Op::Validate => "validate",
            Op::Sha256 => "sha256",
            Op::Property => "property",
            Op::Shared => "shared",
        }
    }
}

/// A configuration the probe cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpsError {
    Unknown(String),
    Repeat(String),
}

/// Most repetitions of one op (`name*N`).
pub const MAX_REPEAT: usize = 1000;

impl fmt::Display for OpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpsError::Unknown(op) => {
                let known: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
                write!(
                    f,
                    "unknown probe op {op:?}: use a comma-separated list of {}, each \
                     optionally `*N` to repeat it",
                    known.join(", ")
                )
            }
            OpsError::Repeat(op) => write!(
                f,
                "probe op {op:?}: the repeat count after `*` must be 1 to {MAX_REPEAT}"
            ),
        }
    }
}

impl std::error::Error for OpsError {}

/// `"header_map, set*4"` → the ops in order, repeats expanded (a repeated
/// op prices one call more precisely); empty or blank → none (the floor).
pub fn parse(config: &str) -> Result<Vec<Op>, OpsError> {
    let mut out = Vec::new();
    for item in config.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, times) = match item.split_once('*') {
            Some((name, n)) => {
                let n: usize = n
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_REPEAT).contains(n))
                    .ok_or_else(|| OpsError::Repeat(item.to_string()))?;
                (name.trim(), n)
            }
            None => (item, 1),
        };
        let op = Op::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| OpsError::Unknown(name.to_string()))?;
        out.extend(std::iter::repeat_n(op, times));
    }
    Ok(out)
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
    fn repeats_expand() {
        assert_eq!(
            parse("time*3, set"),
            Ok(vec![Op::Time, Op::Time, Op::Time, Op::Set])
        );
        for bad in ["time*0", "time*x", "time*1001", "time*"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e, OpsError::Repeat(bad.to_string()));
            assert!(e.to_string().contains("1 to 1000"), "{e}");
        }
        assert_eq!(parse("tim*2"), Err(OpsError::Unknown("tim".into())));
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let e = parse("time,md5").unwrap_err().to_string();
        assert!(e.contains("\"md5\""), "{e}");
        assert!(e.contains("clear_route_cache"), "{e}");
    }
}
