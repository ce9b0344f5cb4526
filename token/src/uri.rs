//! Resource URIs as `mcp:resources/read:<pattern>` scopes see them.
//!
//! A pattern like `file:///srv/public/*` must not let
//! `file:///srv/public/../../etc/shadow` through, in any spelling. So URIs
//! (and patterns, when a scope is parsed) are compared in RFC 3986 normal
//! form (§6.2.2): scheme and host lowercase, percent-encodings of unreserved
//! characters decoded, other percent-encodings in uppercase hex, dot segments
//! removed. And a URI that a server could still read as another path is
//! [`Normalized::ambiguous`]: it held a `.` or `..` segment (in any
//! encoding), an encoded `/`, `\`, `%` or control character, a raw `\`, a
//! broken percent-encoding, or a scheme that only decoding made
//! (`%6Eame:x`). Name patterns never grant an ambiguous URI; only
//! a method-wide scope does.

/// A URI in normal form, and whether servers might still read it differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub text: String,
    pub ambiguous: bool,
}

/// Normalises `uri` (any string: a relative reference is all path).
pub fn normalize(uri: &str) -> Normalized {
    let mut ambiguous = uri.contains('\\');
    let (scheme, rest) = split_scheme(uri);
    let (authority, rest) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);

    let mut text = String::with_capacity(uri.len());
    if let Some(s) = scheme {
        text.push_str(&s.to_ascii_lowercase());
        text.push(':');
    }
    if let Some(a) = authority {
        text.push_str("//");
        // userinfo@host:port: only the host is case-insensitive.
        let (userinfo, hostport) = match a.rfind('@') {
            Some(at) => (Some(&a[..at]), &a[at + 1..]),
            None => (None, a),
        };
        if let Some(u) = userinfo {
            ambiguous |= percent_normalize(u, &mut text);
            text.push('@');
        }
        let mut host = String::with_capacity(hostport.len());
        ambiguous |= percent_normalize(hostport, &mut host);
        text.push_str(&host.to_ascii_lowercase());
    }
    let mut decoded_path = String::with_capacity(path.len());
    ambiguous |= percent_normalize(path, &mut decoded_path);
    ambiguous |= has_dot_segment(&decoded_path) || has_encoded_separator(&decoded_path);
    text.push_str(&remove_dot_segments(&decoded_path));
    // Query and fragment: only percent-encodings are normalised. A broken
    // one counts here too: `%%33` becomes `%3` then `3`, so the normal form
    // would not normalise to itself.
    ambiguous |= percent_normalize(tail, &mut text);
    // `%6Eame:x` has no scheme, its normal form `name:x` has one: a server
    // that decodes first reads another URI, and the normal form would not
    // normalise to itself.
    ambiguous |= scheme.is_none() && split_scheme(&text).0.is_some();
    Normalized { text, ambiguous }
}

/// `scheme ":"` when `uri` starts with one (RFC 3986 §3.1).
fn split_scheme(uri: &str) -> (Option<&str>, &str) {
    let Some(colon) = uri.find(':') else {
        return (None, uri);
    };
    let scheme = &uri[..colon];
    let valid = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if valid {
        (Some(scheme), &uri[colon + 1..])
    } else {
        (None, uri)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `s` with unreserved percent-encodings decoded and the others in
/// uppercase hex; whether it held a broken percent-encoding.
fn percent_normalize(s: &str, out: &mut String) -> bool {
    let bytes = s.as_bytes();
    let mut broken = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes
                .get(i + 1)
                .and_then(|&h| hex_digit(h))
                .zip(bytes.get(i + 2).and_then(|&l| hex_digit(l)));
            if let Some((h, l)) = pair {
                let b = h << 4 | l;
                if is_unreserved(b) {
                    out.push(char::from(b));
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
                }
                i += 3;
                continue;
            }
            broken = true;
        }
        // Copy up to the next '%' (keeps multi-byte characters whole).
        let next = bytes[i + 1..]
            .iter()
            .position(|&b| b == b'%')
            .map_or(bytes.len(), |p| i + 1 + p);
        out.push_str(&s[i..next]);
        i = next;
    }
    broken
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| seg == "." || seg == "..")
}

/// `%2F` (/), `%5C` (\), `%25` (a second decoding), `%00`–`%1F` and `%7F`
/// after normalisation (hex is uppercase by then).
fn has_encoded_separator(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2]),
                (b'2', b'F') | (b'5', b'C') | (b'2', b'5') | (b'0' | b'1', _) | (b'7', b'F')
            )
    })
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            input = if input.len() == 3 { "/" } else { &input[3..] };
            let cut = out.rfind('/').unwrap_or(0);
            out.truncate(cut);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |p| p + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(uri: &str) -> (String, bool) {
        let r = normalize(uri);
        (r.text, r.ambiguous)
    }

    #[test]
    fn plain_uris_are_unchanged_and_clear() {
        for uri in [
            "file:///srv/public/a.md",
            "https://example.com/x?y=1#z",
            "db://main/users/42",
            "urn:isbn:0451450523",
            "mem:abc",
        ] {
            assert_eq!(n(uri), (uri.to_string(), false), "{uri}");
        }
    }

    #[test]
    fn case_rules_follow_the_component() {
        assert_eq!(
            n("FILE://Host.Example/Dir/A%2fb").0,
            "file://host.example/Dir/A%2Fb"
        );
        assert_eq!(n("HTTPS://u%41@EXAMPLE.com/").0, "https://uA@example.com/");
    }

    #[test]
    fn unreserved_percent_encodings_are_decoded() {
        assert_eq!(
            n("file:///srv/%7Euser/%61.md"),
            ("file:///srv/~user/a.md".into(), false)
        );
        assert_eq!(n("file:///a%20b").0, "file:///a%20b");
    }

    #[test]
    fn dot_segments_in_any_spelling_are_removed_and_flagged() {
        for uri in [
            "file:///srv/public/../../etc/shadow",
            "file:///srv/public/%2e%2e/%2E%2E/etc/shadow",
            "file:///srv/public/.%2e/.%2E/etc/shadow",
            "file:///srv/public/./../../etc/shadow",
        ] {
            assert_eq!(n(uri), ("file:///etc/shadow".into(), true), "{uri}");
        }
        assert_eq!(
            n("file:///srv/public/a/.."),
            ("file:///srv/public/".into(), true)
        );
        // RFC 3986 §5.4.2 examples.
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
        assert_eq!(remove_dot_segments("/../g"), "/g");
    }

    #[test]
    fn encoded_separators_and_broken_escapes_are_flagged() {
        for uri in [
            "file:///srv/public%2F..%2Fetc",
            "file:///srv/public/..%5Cetc",
            "file:///srv/public\\..\\etc",
            "file:///srv/public/%252e%252e/etc",
            "file:///srv/public/x%00.md",
            "file:///srv/public/%zz",
            "file:///srv/public/%",
        ] {
            assert!(n(uri).1, "{uri}");
        }
        // Not in the path: harmless.
        assert!(!n("https://h/p?next=%2F..%2Fx").1);
    }

    #[test]
    fn normal_forms_that_would_change_again_are_flagged() {
        // Found by the `scopes` fuzz target: the normal form of
        // `FI%6Eusp:x` is `FInusp:x`, which normalises again to `finusp:x`.
        for uri in ["FI%6Eusp:x", "%66ile:///etc/shadow", "a%2Db:c", "x%41:/y"] {
            let once = normalize(uri);
            assert!(once.ambiguous, "{uri}");
            assert!(split_scheme(&once.text).0.is_some(), "{uri}");
        }
        // Found by the `scopes` fuzz target: a broken escape in the query
        // before an encoded digit.
        let once = normalize("l?q=m%%333");
        assert!(once.ambiguous);
        assert_eq!(once.text, "l?q=m%33");
        assert!(normalize("https://h/p?a=100%").ambiguous);
        assert!(normalize("https://h/p#%zz").ambiguous);
        // Decoding elsewhere, or a scheme already there: clear and stable.
        for uri in ["a%2Db/c:d", "FILE:///%61:b", "%41/b:c", "*:x", "1a:x"] {
            let once = normalize(uri);
            assert!(!once.ambiguous, "{uri}");
            assert_eq!(normalize(&once.text), once, "{uri}");
        }
    }
}
