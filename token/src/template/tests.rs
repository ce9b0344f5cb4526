use super::*;
use crate::scopes::{grants, lists, parse_all};
use proptest::prelude::*;

fn set(list: &[&str]) -> Vec<Scope> {
    parse_all(list).unwrap_or_else(|e| panic!("{e}"))
}

fn readable(template: &str, scopes: &[&str]) -> Option<String> {
    readable_expansion(template, &set(scopes))
}

#[test]
fn parse_accepts_rfc6570_and_refuses_the_rest() {
    for ok in [
        "file:///srv/{name}",
        "db://main/users{/id}{?fields,limit}",
        "https://{tenant}.example.com/r/{+path}{#frag}",
        "mem:{;a,b*}{.ext}{&page:3}",
        "plain:uri/with%20space",
        "x{var.sub}{v%41r}",
    ] {
        assert!(Template::parse(ok).is_some(), "{ok}");
    }
    for bad in [
        "file:///{name",
        "file:///{}",
        "file:///{=x}",
        "file:///{x:0}",
        "file:///{x:10000}",
        "file:///{.x.}",
        "file:///{x..y}",
        "file:///a b",
        "file:///a%zz",
        "file:///a\\b",
        "file:///}",
    ] {
        assert!(Template::parse(bad).is_none(), "{bad}");
    }
    assert!(Template::parse(&format!("file:///{}", "a".repeat(MAX_TEMPLATE_LEN))).is_none());
}

#[test]
fn expansion_follows_rfc6570_for_one_variable() {
    // RFC 6570 §3.2 examples with var = "value", hello = "Hello World!",
    // path = "/foo/bar", empty = "".
    let cases = [
        ("{var}", "value", "value"),
        ("{hello}", "Hello World!", "Hello%20World%21"),
        ("{+hello}", "Hello World!", "Hello%20World!"),
        ("{+path}/here", "/foo/bar", "/foo/bar/here"),
        ("{#hello}", "Hello World!", "#Hello%20World!"),
        ("X{.var}", "value", "X.value"),
        ("{/var}", "value", "/value"),
        ("{;x}", "1024", ";x=1024"),
        ("{;empty}", "", ";empty"),
        ("{?x}", "1024", "?x=1024"),
        ("{?empty}", "", "?empty="),
        ("?fixed=yes{&x}", "1024", "?fixed=yes&x=1024"),
        ("{var:3}", "value", "val"),
        ("{+path:6}/here", "/foo/bar", "/foo/b/here"),
        ("{+half}", "50%25", "50%25"),
        ("{x}", "é", "%C3%A9"),
    ];
    for (t, value, want) in cases {
        let parsed = Template::parse(t).unwrap();
        let got = parsed.expand(&[Some((0, value.to_string()))]);
        assert_eq!(got, want, "{t} with {value:?}");
        let literal: String = t
            .split('{')
            .map(|p| p.split_once('}').map_or(p, |(_, l)| l))
            .collect();
        assert_eq!(parsed.expand(&[None]), literal, "{t} undefined");
    }
}

#[test]
fn a_template_is_readable_when_a_pattern_fits_it() {
    let public = ["mcp:resources/read:file:///srv/public/*"];
    assert_eq!(
        readable("file:///srv/public/{name}", &public).as_deref(),
        Some("file:///srv/public/")
    );
    assert_eq!(readable("file:///srv/private/{name}", &public), None);
    assert_eq!(
        readable("file:///{+path}", &public).as_deref(),
        Some("file:///srv/public/")
    );
    // A simple expansion encodes '/', so it cannot reach a deeper path.
    assert_eq!(readable("file:///{name}", &public), None);
    assert!(readable("file:///srv{/dir}/{name}", &public).is_some());

    let acme = ["mcp:resources/read:https://acme.example.com/reports/*"];
    assert_eq!(
        readable("https://{tenant}.example.com/reports/{id}", &acme).as_deref(),
        Some("https://acme.example.com/reports/")
    );
    // Scheme and host compare in lowercase, as a read of the URI would.
    assert!(readable("HTTPS://ACME.Example.com/reports/{id}", &acme).is_some());
    assert_eq!(
        readable("https://globex.example.com/reports/{id}", &acme),
        None
    );

    let exact = ["mcp:resources/read:file:///docs/My%20File.md"];
    assert_eq!(
        readable("file:///docs/{name}", &exact).as_deref(),
        Some("file:///docs/My%20File.md")
    );
    let query = ["mcp:resources/read:https://h/search?q=a*"];
    assert_eq!(
        readable("https://h/search{?q}", &query).as_deref(),
        Some("https://h/search?q=a")
    );
    assert_eq!(readable("https://h/search{?other}", &query), None);
    let param = ["mcp:resources/read:mem:x;v=1*"];
    assert!(readable("mem:x{;v}", &param).is_some());
    let dotted = ["mcp:resources/read:file:///a/.*"];
    assert_eq!(
        readable("file:///a/{x}", &dotted).as_deref(),
        Some("file:///a/.a"),
        "a dot segment is never the answer"
    );
}

#[test]
fn ambiguous_or_invalid_templates_need_the_method_wide_scope() {
    let all_srv = ["mcp:resources/read:file:///*"];
    for t in [
        "file:///srv/../etc/{name}",
        "file:///srv/%2e%2e/{name}",
        "file:///srv/a%2Fb/{name}",
        "file:///srv/{name",
    ] {
        assert_eq!(readable(t, &all_srv), None, "{t}");
        assert!(!lists(&set(&all_srv), "resources/templates/list", t), "{t}");
        for wide in ["mcp:resources/read", "mcp:*", "mcp:resources/*"] {
            assert!(
                lists(&set(&[wide]), "resources/templates/list", t),
                "{t} {wide}"
            );
        }
    }
}

#[test]
fn only_resources_read_patterns_count() {
    let scopes = set(&[
        "mcp:tools/call:*",
        "mcp:prompts/get:*",
        "mcp:resources/list",
    ]);
    assert!(!lists(&scopes, "resources/templates/list", "file:///{x}"));
    let globbed = set(&["mcp:resources/*"]);
    assert!(lists(&globbed, "resources/templates/list", "file:///{x}"));
}

/// A test-side reading of "does `uri` come out of `template` with at most
/// one variable defined per expression": a backtracking matcher written
/// from RFC 6570, independent of the automaton.
fn produces(template: &str, uri: &str) -> bool {
    #[derive(Debug)]
    enum P {
        Lit(String),
        Expr(char, Vec<String>),
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(body) = rest.strip_prefix('{') {
            let end = body.find('}').unwrap();
            let inner = &body[..end];
            let (op, list) = match inner.chars().next() {
                Some(c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&')) => (c, &inner[1..]),
                _ => (' ', inner),
            };
            let names = list
                .split(',')
                .map(|v| v.split([':', '*']).next().unwrap().to_string())
                .collect();
            parts.push(P::Expr(op, names));
            rest = &body[end + 1..];
        } else {
            let end = rest.find('{').unwrap_or(rest.len());
            parts.push(P::Lit(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    fn value_ok(op: char, v: &str) -> bool {
        let b = v.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                if i + 2 >= b.len()
                    || !b[i + 1].is_ascii_hexdigit()
                    || !b[i + 2].is_ascii_hexdigit()
                {
                    return false;
                }
                i += 3;
            } else if is_unreserved(b[i]) || (matches!(op, '+' | '#') && is_reserved(b[i])) {
                i += 1;
            } else {
                return false;
            }
        }
        true
    }
    fn go(parts: &[P], uri: &str) -> bool {
        let Some((first, rest)) = parts.split_first() else {
            return uri.is_empty();
        };
        match first {
            P::Lit(l) => uri.strip_prefix(l.as_str()).is_some_and(|u| go(rest, u)),
            P::Expr(op, names) => {
                if go(rest, uri) {
                    return true;
                }
                let lead = match op {
                    ' ' | '+' => "",
                    '#' => "#",
                    '.' => ".",
                    '/' => "/",
                    ';' => ";",
                    '?' => "?",
                    _ => "&",
                };
                let Some(after) = uri.strip_prefix(lead) else {
                    return false;
                };
                names.iter().any(|name| {
                    let after = if matches!(op, ';' | '?' | '&') {
                        let Some(a) = after.strip_prefix(name.as_str()) else {
                            return false;
                        };
                        if *op == ';' && go(rest, a) {
                            return true;
                        }
                        match a.strip_prefix('=') {
                            Some(a) => a,
                            None => return false,
                        }
                    } else {
                        after
                    };
                    (0..=after.len())
                        .filter(|&k| after.is_char_boundary(k))
                        .any(|k| {
                            let (v, tail) = after.split_at(k);
                            (*op != ';' || !v.is_empty()) && value_ok(*op, v) && go(rest, tail)
                        })
                })
            }
        }
    }
    go(&parts, uri)
}

#[test]
fn the_test_matcher_agrees_with_known_expansions() {
    assert!(produces("file:///srv/{name}", "file:///srv/a%20b"));
    assert!(produces("file:///srv/{name}", "file:///srv/"));
    assert!(!produces("file:///srv/{name}", "file:///srv/a/b"));
    assert!(produces("file:///{+p}", "file:///a/b"));
    assert!(produces("x{?q,r}", "x?r=1"));
    assert!(produces("x{;v}", "x;v"));
    assert!(!produces("x{;v}", "x;v="));
    assert!(produces("x{?v}", "x?v="));
}

fn template_strategy() -> impl Strategy<Value = String> {
    let head = prop::sample::select(vec![
        "file://",
        "file:///srv",
        "https://Example.COM",
        "https://{host}.example.com",
        "db://main",
        // Not `mem:` alone: `mem:/{x}/a` with `x` empty has an authority its
        // literal text has not, a shift the search does not model.
        "mem:m",
    ]);
    let piece = prop::sample::select(vec![
        "/docs", "/a", "/Reports", "/%7Euser", "/x%20y", "{name}", "/{name}", "{/id}", "{+path}",
        "{.ext}", "{?q}", "{?q,r}", "{;v}", "{#frag}", "{&page}", ".md",
    ]);
    (head, prop::collection::vec(piece, 0..5)).prop_map(|(h, ps)| format!("{h}{}", ps.concat()))
}

fn value_strategy() -> impl Strategy<Value = Option<(usize, String)>> {
    prop::option::of((0usize..2, "[aZ0 ./%é~:-]{0,5}"))
}

/// ASCII values (for the same reason as in `pattern_from`).
fn ascii_value_strategy() -> impl Strategy<Value = Option<(usize, String)>> {
    prop::option::of((0usize..2, "[aZ0 ./%~:?#-]{0,5}"))
}

/// Turns some characters of `uri` into `*` and makes a scope of it. A star
/// never splits a `%XX` escape: such a pattern is a fit the search does not
/// promise to find (the template is then hidden, never wrongly shown).
fn pattern_from(uri: &str, stars: &[bool]) -> String {
    let mut out = String::new();
    let mut in_escape = 0u8;
    for (i, c) in uri.chars().enumerate() {
        let escaped = in_escape > 0 || c == '%';
        in_escape = if c == '%' {
            2
        } else {
            in_escape.saturating_sub(1)
        };
        if !escaped && stars.get(i).copied().unwrap_or(false) {
            if !out.ends_with('*') {
                out.push('*');
            }
        } else {
            if matches!(c, '*' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
    }
    format!("mcp:resources/read:{out}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Listed ⇒ readable: the URI the rule built comes out of the template
    /// and `grants` lets the token read it.
    #[test]
    fn a_listed_template_has_a_uri_the_token_may_read(
        t in template_strategy(),
        values in prop::collection::vec(value_strategy(), 6),
        stars in prop::collection::vec(prop::bool::weighted(0.15), 40),
        other in "[a-z:/.*]{1,12}",
    ) {
        let parsed = Template::parse(&t).unwrap();
        let sample = parsed.expand(&values);
        let mut scopes = Vec::new();
        if let Ok(s) = crate::scopes::parse(&pattern_from(&sample, &stars)) {
            scopes.push(s);
        }
        if let Ok(s) = crate::scopes::parse(&format!("mcp:resources/read:{other}")) {
            scopes.push(s);
        }
        if let Some(uri) = readable_expansion(&t, &scopes) {
            prop_assert!(grants(&scopes, "resources/read", Some(&uri)), "{uri}");
            prop_assert!(produces(&t, &uri), "{t} does not produce {uri}");
            prop_assert!(lists(&scopes, "resources/templates/list", &t));
        }
    }

    /// Readable ⇒ listed: whenever one expansion of the template (one
    /// variable per expression) is granted, the template is listed.
    #[test]
    fn a_template_with_a_readable_uri_is_listed(
        t in template_strategy(),
        values in prop::collection::vec(ascii_value_strategy(), 6),
        stars in prop::collection::vec(prop::bool::weighted(0.15), 40),
    ) {
        let parsed = Template::parse(&t).unwrap();
        let uri = parsed.expand(&values);
        let Ok(scope) = crate::scopes::parse(&pattern_from(&uri, &stars)) else {
            return Ok(());
        };
        let scopes = vec![scope];
        if grants(&scopes, "resources/read", Some(&uri)) {
            prop_assert!(
                lists(&scopes, "resources/templates/list", &t),
                "{t} produces {uri}, granted by {}, but is not listed", scopes[0]
            );
        }
    }

    #[test]
    fn parsing_and_searching_never_panic(t in ".{0,80}", p in ".{0,40}") {
        let scopes: Vec<Scope> = crate::scopes::parse(&format!("mcp:resources/read:{p}"))
            .into_iter()
            .collect();
        let _ = readable_expansion(&t, &scopes);
    }
}

#[test]
fn the_search_is_bounded() {
    // A long template against a pattern of many stars: the search ends (it
    // gives up past its step bound) and anything it answers is sound.
    let t = format!("file:///{}", "{a}x".repeat(250));
    let p = format!("mcp:resources/read:file:///{}", "*x".repeat(110));
    let scopes = set(&[p.as_str()]);
    if let Some(uri) = readable_expansion(&t, &scopes) {
        assert!(grants(&scopes, "resources/read", Some(&uri)));
        assert!(produces(&t, &uri));
    }
}
