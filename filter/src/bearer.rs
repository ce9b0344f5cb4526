//! Where a client's token comes from: the `Authorization` header, and the
//! query string where it must never be accepted.

use core::fmt;

/// Why no bearer token could be taken from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header.
    Missing,
    /// More than one `Authorization` header (or one joined with a comma).
    Multiple,
    /// A scheme other than `Bearer`.
    Scheme,
    /// `Bearer` with nothing after it.
    Empty,
    /// Bytes that cannot be part of any token (not UTF-8).
    NotText,
}

impl fmt::Display for BearerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "send the token as `Authorization: Bearer mcpctl_pat_…`",
            Self::Multiple => "send exactly one Authorization header",
            Self::Scheme => "use the Bearer scheme: `Authorization: Bearer mcpctl_pat_…`",
            Self::Empty => "the Authorization header has no token after `Bearer`",
            Self::NotText => "the token contains bytes that are not text",
        })
    }
}

/// The token from every `Authorization` value the request carried.
///
/// Envoy joins repeated headers with a comma when asked for one value, and
/// no token contains a comma, so a comma is treated as a second header.
pub fn extract<'a>(values: &[&'a [u8]]) -> Result<&'a str, BearerError> {
    let value = match values {
        [] => return Err(BearerError::Missing),
        [one] => *one,
        _ => return Err(BearerError::Multiple),
    };
    if value.contains(&b',') {
        return Err(BearerError::Multiple);
    }
    let value = trim(value);
    if value.is_empty() {
        return Err(BearerError::Missing);
    }
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = value.split_at(value.len().min(SCHEME.len()));
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(BearerError::Scheme);
    }
    if rest.is_empty() {
        return Err(BearerError::Empty);
    }
    // `Bearerx` is another scheme; the token follows at least one space.
    if !matches!(rest.first(), Some(b' ' | b'\t')) {
        return Err(BearerError::Scheme);
    }
    let token = trim(rest);
    if token.is_empty() {
        return Err(BearerError::Empty);
    }
    core::str::from_utf8(token).map_err(|_| BearerError::NotText)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether the query string of `path` carries an `access_token` parameter,
/// at any position, with its name percent-encoded or not (RFC 6750 §2.3 is
/// not supported: URLs end up in logs and browser history).
pub fn has_query_token(path: &[u8]) -> bool {
    let Some(query) = path.splitn(2, |&b| b == b'?').nth(1) else {
        return false;
    };
    let query = query.split(|&b| b == b'#').next().unwrap_or(query);
    query.split(|&b| b == b'&' || b == b';').any(|param| {
        let name = param.split(|&b| b == b'=').next().unwrap_or(param);
        decoded_name_is(name, b"access_token")
    })
}

/// Compares a percent-encoded name with `want`, ignoring ASCII case, without
/// allocating. (`+` for a space needs no decoding: `want` has no spaces.)
fn decoded_name_is(name: &[u8], want: &[u8]) -> bool {
    percent_encoding::percent_decode(name)
        .map(|b| b.to_ascii_lowercase())
        .eq(want.iter().map(u8::to_ascii_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_token_after_a_case_insensitive_bearer() {
        assert_eq!(extract(&[b"Bearer abc"]), Ok("abc"));
        assert_eq!(extract(&[b"bearer abc"]), Ok("abc"));
        assert_eq!(extract(&[b"BEARER   abc  "]), Ok("abc"));
        assert_eq!(extract(&[b"  Bearer\tabc"]), Ok("abc"));
    }

    #[test]
    fn missing_and_empty() {
        assert_eq!(extract(&[]), Err(BearerError::Missing));
        assert_eq!(extract(&[b""]), Err(BearerError::Missing));
        assert_eq!(extract(&[b"   "]), Err(BearerError::Missing));
        assert_eq!(extract(&[b"Bearer"]), Err(BearerError::Empty));
        assert_eq!(extract(&[b"Bearer    "]), Err(BearerError::Empty));
    }

    #[test]
    fn other_schemes_are_refused() {
        assert_eq!(extract(&[b"Basic dXNlcjpwYXNz"]), Err(BearerError::Scheme));
        assert_eq!(extract(&[b"Token abc"]), Err(BearerError::Scheme));
        assert_eq!(extract(&[b"Bearerabc"]), Err(BearerError::Scheme));
        assert_eq!(extract(&[b"mcpctl_pat_abc"]), Err(BearerError::Scheme));
        assert_eq!(extract(&[b"Bear"]), Err(BearerError::Scheme));
    }

    #[test]
    fn two_headers_or_a_joined_pair_are_refused() {
        assert_eq!(
            extract(&[b"Bearer a", b"Bearer b"]),
            Err(BearerError::Multiple)
        );
        assert_eq!(extract(&[b"Bearer a,Bearer b"]), Err(BearerError::Multiple));
        assert_eq!(extract(&[b"Bearer a, b"]), Err(BearerError::Multiple));
    }

    #[test]
    fn non_text_tokens_are_refused() {
        assert_eq!(extract(&[b"Bearer \xff\xfe"]), Err(BearerError::NotText));
    }

    #[test]
    fn every_error_says_what_to_do() {
        for e in [
            BearerError::Missing,
            BearerError::Multiple,
            BearerError::Scheme,
            BearerError::Empty,
            BearerError::NotText,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn finds_access_token_anywhere_in_the_query() {
        assert!(has_query_token(b"/mcp?access_token=x"));
        assert!(has_query_token(b"/mcp?a=1&access_token=x"));
        assert!(has_query_token(b"/mcp?a=1;access_token=x&b=2"));
        assert!(has_query_token(b"/mcp?access_token"));
        assert!(has_query_token(b"/mcp?access_token="));
        assert!(has_query_token(b"/mcp?ACCESS_TOKEN=x"));
        assert!(has_query_token(b"/mcp?access%5Ftoken=x"));
        assert!(has_query_token(b"/mcp?%61ccess_token=x"));
        assert!(has_query_token(b"/mcp?access%5ftoken=x"));
    }

    #[test]
    fn ignores_lookalikes_and_paths() {
        assert!(!has_query_token(b"/mcp"));
        assert!(!has_query_token(b"/access_token=x"));
        assert!(!has_query_token(b"/mcp?my_access_token=x"));
        assert!(!has_query_token(b"/mcp?access_tokens=x"));
        assert!(!has_query_token(b"/mcp?x=access_token"));
        assert!(!has_query_token(b"/mcp?access_toke=x"));
        assert!(!has_query_token(b"/mcp?access_token%=x"));
        assert!(!has_query_token(b"/mcp?#access_token=x"));
        assert!(!has_query_token(b"/mcp?%"));
        assert!(!has_query_token(b"/mcp?%zz"));
    }
}
