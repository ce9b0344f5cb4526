//! The scope grammar (docs/DESIGN.md §5): `parse`, `covers`, `grants`, `glob_match`.
//!
//! Input: `\n`-separated fields
//! `scope a`, `scope b`, `method`, `name`, then fillers. Beyond "never
//! panics", it checks:
//! - a parsed scope prints back to the same string (a resource pattern in
//!   RFC 3986 normal form), parses again to itself and covers itself;
//! - a clear URI's normal form is stable;
//! - a name with no `*` (glob characters escaped, as in the scope a denial
//!   names) grants that one name under that one method and nothing else;
//! - `glob_match` agrees with a plain dynamic-programming matcher;
//! - coverage is sound: if `a` covers `b` and `b` grants a request (or a
//!   glob `b` matches a text), `a` does too. The creator ceiling relies on it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgw_fuzz::{lines, reference_glob, unescape_name};
use mcpgw_token::scopes::{
    self, first_uncovered, glob_match, grants, is_lifecycle, name_param, parse, required_scope,
    Scope,
};
use mcpgw_token::uri;

/// The reference matcher is quadratic; longer inputs only test the real one.
const REFERENCE_MAX: usize = 256;

fuzz_target!(|data: &[u8]| {
    let fields: Vec<String> = lines(data)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let field = |i: usize| fields.get(i).map_or("", String::as_str);
    let (a_text, b_text, method) = (field(0), field(1), field(2));
    let name = fields.get(3).map(String::as_str);
    let fillers = fields.get(4..).unwrap_or(&[]);

    let a = check_parse(a_text);
    let b = check_parse(b_text);
    let other = fillers.first().map(String::as_str);
    for scope in a.iter().chain(&b) {
        check_literal_name(scope, method, name);
        check_literal_name(scope, method, other);
    }

    // Parsed scopes: soundness of covers against grants.
    if let (Some(a), Some(b)) = (&a, &b) {
        let covers = a.covers(b);
        if covers && grants(core::slice::from_ref(b), method, name) {
            assert!(
                grants(core::slice::from_ref(a), method, name),
                "{a} covers {b}, which grants {method:?} {name:?}, but {a} does not"
            );
        }
        assert_eq!(
            first_uncovered(core::slice::from_ref(b), core::slice::from_ref(a)).is_none(),
            covers
        );
        // The grant of a pair is the grant of either.
        let pair = [a.clone(), b.clone()];
        assert_eq!(
            grants(&pair, method, name),
            grants(&pair[..1], method, name) || grants(&pair[1..], method, name)
        );
    }

    // Raw patterns, outside the grammar's character set: glob containment
    // tested on texts `b` matches by construction.
    check_pattern_cover(a_text, b_text, fillers);
    check_glob(a_text, method);
    check_glob(b_text, name.unwrap_or(""));

    check_request(method, name, other);
});

fn check_parse(s: &str) -> Option<Scope> {
    match parse(s) {
        Ok(scope) => {
            let printed = scope.to_string();
            match s.strip_prefix("mcp:resources/read:") {
                Some(p) => {
                    let normal = uri::normalize(p).text;
                    assert_eq!(
                        printed,
                        format!("mcp:resources/read:{normal}"),
                        "normal form"
                    );
                }
                None => assert_eq!(printed, s, "canonical form"),
            }
            assert_eq!(parse(&printed).as_ref(), Ok(&scope));
            assert!(scope.covers(&scope), "{scope} covers itself");
            assert_eq!(scope.is_all_mcp(), s == scopes::ALL_MCP);
            if let Scope::Mcp {
                method,
                name: Some(_),
            } = &scope
            {
                assert!(name_param(method).is_some(), "{s}");
            }
            Some(scope)
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("invalid scope "), "{shown}");
            assert!(s.starts_with(e.scope()), "{:?} vs {s:?}", e.scope());
            assert!(e.scope().chars().count() <= 80);
            None
        }
    }
}

/// `outer` covers `inner` as method globs (no name part), checked by
/// instantiating each `*` of `inner` with a filler: every such text matches
/// `inner`, so it must match `outer` whenever `outer` covers `inner`.
fn check_pattern_cover(outer: &str, inner: &str, fillers: &[String]) {
    // A method never holds a `\` (the grammar refuses one), and in a name
    // `\` escapes: the two readings differ only for strings holding one.
    if outer.contains('\\') || inner.contains('\\') {
        return;
    }
    let mcp = |p: &str| Scope::Mcp {
        method: p.to_string(),
        name: None,
    };
    let covers = mcp(outer).covers(&mcp(inner));
    let mut text = String::new();
    for (i, part) in inner.split('*').enumerate() {
        if i > 0 {
            text.push_str(fillers.get(i - 1).map_or("", String::as_str));
        }
        text.push_str(part);
    }
    assert!(glob_match(inner, &text), "{inner:?} matches {text:?}");
    if covers {
        assert!(
            glob_match(outer, &text),
            "{outer:?} covers {inner:?} but does not match {text:?}"
        );
        // Containment as names behaves the same as containment as methods.
        let named = |p: &str| Scope::Mcp {
            method: "tools/call".into(),
            name: Some(p.to_string()),
        };
        assert!(named(outer).covers(&named(inner)));
    }
    // Name scopes never cover a method-wide scope of the same method.
    let name_only = Scope::Mcp {
        method: "tools/call".into(),
        name: Some(outer.to_string()),
    };
    assert!(!name_only.covers(&mcp("tools/call")));
}

/// A name scope whose name holds no `*` (every glob character escaped)
/// grants exactly that name under exactly that method: a tool named `a*b`
/// granted as `a\*b` is not `a-anything-b`.
fn check_literal_name(scope: &Scope, method: &str, name: Option<&str>) {
    let Scope::Mcp {
        method: m,
        name: Some(pattern),
    } = scope
    else {
        return;
    };
    let Some(literal) = unescape_name(pattern) else {
        return;
    };
    if m.contains('*')
        || is_lifecycle(method)
        || !grants(core::slice::from_ref(scope), method, name)
    {
        return;
    }
    assert_eq!(method, m, "{scope} grants another method");
    let name = name.expect("a name scope grants only a named request");
    if method == "resources/read" {
        let normal = uri::normalize(name);
        assert!(
            !normal.ambiguous,
            "{scope} grants the ambiguous URI {name:?}"
        );
        assert_eq!(normal.text, literal, "{scope} grants {name:?}");
    } else {
        assert_eq!(name, literal, "{scope} grants {name:?}");
    }
}

fn check_glob(pattern: &str, text: &str) {
    let got = glob_match(pattern, text);
    if pattern.len() <= REFERENCE_MAX && text.len() <= REFERENCE_MAX {
        assert_eq!(
            got,
            reference_glob(pattern.as_bytes(), text.as_bytes()),
            "glob_match({pattern:?}, {text:?})"
        );
    }
    if !pattern.contains('*') {
        assert_eq!(got, pattern == text);
    }
    // Every string matches itself as a pattern (`*` also matches a `*`).
    assert!(glob_match(text, text));
}

/// A clear URI's normal form normalises to itself: patterns are stored in
/// it and compared with URIs in it.
fn check_normal_form(uri: &str) {
    let once = uri::normalize(uri);
    if !once.ambiguous {
        assert_eq!(uri::normalize(&once.text), once, "{uri:?}");
    }
}

fn check_request(method: &str, name: Option<&str>, other: Option<&str>) {
    for n in [name, other].into_iter().flatten() {
        check_normal_form(n);
    }
    if is_lifecycle(method) {
        assert!(grants(&[], method, name));
    } else {
        assert!(!grants(&[], method, name));
    }
    let all = [parse(scopes::ALL_MCP).unwrap()];
    assert!(grants(&all, method, name));
    assert!(
        !grants(&[Scope::TokensRead, Scope::TokensWrite], method, name) || is_lifecycle(method)
    );

    // The scope a denial names is one a token can hold, and grants the
    // request it was named for (a method with ':' needs `mcp:*`).
    let required = required_scope(method, name);
    assert!(required.starts_with("mcp:"));
    let scope = match parse(&required) {
        Ok(scope) => scope,
        Err(e) => panic!("{required}: {e}"),
    };
    assert!(
        grants(core::slice::from_ref(&scope), method, name),
        "{required} does not grant {method:?} {name:?}"
    );
    // And nothing more: glob characters in the name are escaped.
    check_literal_name(&scope, method, other);
    if let Some(n) = required.strip_prefix(&format!("mcp:{method}:")) {
        assert!(unescape_name(n).is_some(), "{required} is a glob");
    }
}
