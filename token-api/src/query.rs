//! Query-string parameters: percent-decoded, each at most once, none unknown.

use crate::error::ApiError;
use crate::model::Status;

/// The decoded parameters of one request, checked against what a route accepts.
#[derive(Debug)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Decodes `a=1&b=x%20y`; rejects parameters the route does not take and
    /// parameters given twice.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = decode(k).ok_or_else(|| bad_encoding(k))?;
            let v = decode(v).ok_or_else(|| bad_encoding(&k))?;
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::unknown_parameter(&k, allowed));
            }
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(ApiError::invalid(
                    &k,
                    format!("query parameter {k:?} is given more than once; give it once"),
                ));
            }
            pairs.push((k, v));
        }
        Ok(Query { pairs })
    }

    /// The value of `name`; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true`/`false`, `1`/`0`), `default` when absent.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::invalid(
                name,
                format!("{name} must be true or false, got {v:?}"),
            )),
        }
    }

    /// The list's `status` filter (`active`, `expired`, `revoked`); absent = none.
    /// It names exactly which tokens to list, so `include_revoked` beside it is refused.
    pub fn status(&self) -> Result<Option<Status>, ApiError> {
        let status = match self.get("status") {
            None => return Ok(None),
            Some("active") => Status::Active,
            Some("expired") => Status::Expired,
            Some("revoked") => Status::Revoked,
            Some(v) => {
                return Err(ApiError::invalid(
                    "status",
                    format!("status must be active, expired or revoked, got {v:?}"),
                ))
            }
        };
        if self.get("include_revoked").is_some() {
            return Err(ApiError::invalid(
                "status",
                "give status or include_revoked, not both: status=revoked lists revoked tokens",
            ));
        }
        Ok(Some(status))
    }

    /// A page size in `1..=max`, `default` when absent.
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("limit", format!("limit must be 1 to {max}, got {v:?}"))
                }),
        }
    }
}

fn bad_encoding(what: &str) -> ApiError {
    ApiError::new(
        400,
        "invalid_query",
        format!("query parameter {what:?} is not valid percent-encoded UTF-8"),
    )
}

/// `application/x-www-form-urlencoded` decoding: `%XX` escapes and `+` for
/// space. Like every URL parser, a `%` without two hex digits stays as it is
/// (the parameter's own check then refuses it); bytes that are not UTF-8 are
/// refused here.
fn decode(s: &str) -> Option<String> {
    let bytes = percent_encoding::percent_decode_str(&s.replace('+', " ")).collect();
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_reads_parameters() {
        let q = Query::parse(
            Some("tenant=acme&project=a%2Db&name=x+y&include_revoked=true&limit=7&cursor="),
            &[
                "tenant",
                "project",
                "name",
                "include_revoked",
                "limit",
                "cursor",
            ],
        )
        .unwrap();
        assert_eq!(q.get("tenant"), Some("acme"));
        assert_eq!(q.get("project"), Some("a-b"));
        assert_eq!(q.get("name"), Some("x y"));
        assert_eq!(q.get("cursor"), None);
        assert_eq!(q.get("missing"), None);
        assert_eq!(q.flag("include_revoked", false), Ok(true));
        assert_eq!(q.limit(50, 500), Ok(7));
    }

    #[test]
    fn empty_and_absent_query() {
        for raw in [None, Some(""), Some("&&")] {
            let q = Query::parse(raw, &["limit"]).unwrap();
            assert_eq!(q.limit(50, 500), Ok(50));
            assert_eq!(q.flag("x", true), Ok(true));
        }
    }

    #[test]
    fn rejects_unknown_repeated_and_malformed() {
        let e = Query::parse(Some("tenant=a&colour=red"), &["tenant"]).unwrap_err();
        assert_eq!(e.code, "unknown_parameter");
        assert!(e.message.contains("\"colour\"") && e.message.contains("tenant"));
        let e = Query::parse(Some("x=1"), &[]).unwrap_err();
        assert!(e.message.contains("takes no query parameters"));
        let e = Query::parse(Some("tenant=a&tenant=b"), &["tenant"]).unwrap_err();
        assert_eq!(e.code, "invalid_tenant");
        for bad in ["tenant=%ff", "tenant=%c3%28", "%ff=1", "tenant=a+%e2%82"] {
            assert_eq!(
                Query::parse(Some(bad), &["tenant"]).unwrap_err().code,
                "invalid_query",
                "{bad}"
            );
        }
        // A `%` without two hex digits stays as it is, as in any URL parser;
        // the parameter's own check refuses it.
        let q = Query::parse(Some("tenant=%zz%4"), &["tenant"]).unwrap();
        assert_eq!(q.get("tenant"), Some("%zz%4"));
        let e = Query::parse(Some("%zz=1"), &["tenant"]).unwrap_err();
        assert_eq!(e.code, "unknown_parameter");
        // `+` is a space, `%2B` a plus.
        let q = Query::parse(Some("tenant=a+b%2Bc"), &["tenant"]).unwrap();
        assert_eq!(q.get("tenant"), Some("a b+c"));
    }

    #[test]
    fn status_is_one_of_three_and_excludes_include_revoked() {
        let q = |s: &str| Query::parse(Some(s), &["status", "include_revoked"]).unwrap();
        assert_eq!(q("").status(), Ok(None));
        assert_eq!(q("status=").status(), Ok(None));
        assert_eq!(q("status=active").status(), Ok(Some(Status::Active)));
        assert_eq!(q("status=expired").status(), Ok(Some(Status::Expired)));
        assert_eq!(q("status=revoked").status(), Ok(Some(Status::Revoked)));
        for bad in ["status=Active", "status=all", "status=live"] {
            let e = q(bad).status().unwrap_err();
            assert_eq!(e.code, "invalid_status", "{bad}");
            assert!(e.message.contains("active, expired or revoked"), "{bad}");
        }
        let e = q("status=revoked&include_revoked=true")
            .status()
            .unwrap_err();
        assert_eq!(e.code, "invalid_status");
        assert!(e.message.contains("not both"));
    }

    #[test]
    fn limits_and_flags_are_checked() {
        let q = |s: &str| Query::parse(Some(s), &["limit", "include_revoked"]).unwrap();
        for bad in ["limit=0", "limit=501", "limit=-1", "limit=ten", "limit=1.5"] {
            let e = q(bad).limit(50, 500).unwrap_err();
            assert_eq!(e.code, "invalid_limit", "{bad}");
            assert!(e.message.contains("1 to 500"));
        }
        assert_eq!(q("limit=500").limit(50, 500), Ok(500));
        assert_eq!(
            q("include_revoked=0").flag("include_revoked", true),
            Ok(false)
        );
        assert_eq!(
            q("include_revoked=yes")
                .flag("include_revoked", false)
                .unwrap_err()
                .code,
            "invalid_include_revoked"
        );
    }
}
