use super::*;
use proptest::prelude::*;

fn s(x: &str) -> Scope {
    parse(x).unwrap_or_else(|e| panic!("{e}"))
}

fn set(list: &[&str]) -> Vec<Scope> {
    parse_all(list).unwrap()
}

#[test]
fn grammar_accepts_the_documented_forms() {
    for ok in [
        "mcp:*",
        "mcp:tools/list",
        "mcp:tools/*",
        "mcp:tools/call:list_*",
        "mcp:prompts/get:summary",
        "mcp:resources/read:file:///srv/*",
        "mcp:resources/read:*",
        "tokens:read",
        "tokens:write",
    ] {
        let scope = s(ok);
        assert_eq!(scope.to_string(), ok, "canonical form round-trips");
    }
}

#[test]
fn grammar_rejects_with_a_reason() {
    for (bad, hint) in [
        ("", "mcp:<method>"),
        ("tokens:admin", "tokens:read"),
        ("mcp:", "empty"),
        ("mcp:tools/list:x", "only after tools/call"),
        ("mcp:tools/call:", "name after the method is empty"),
        ("mcp:tools call", "spaces"),
        ("mcp:tools/c@ll", "letters, digits"),
        ("MCP:*", "mcp:<method>"),
    ] {
        let err = parse(bad).unwrap_err();
        assert!(err.to_string().contains(hint), "{bad}: {err}");
        assert!(err.to_string().contains("invalid scope"), "{err}");
    }
    let long = format!("mcp:tools/call:{}", "a".repeat(300));
    assert!(parse(&long).unwrap_err().to_string().contains("256"));
    assert!(parse(&long).unwrap_err().scope().len() <= 80);
}

#[test]
fn glob_matching() {
    assert!(glob_match("*", ""));
    assert!(glob_match("*", "anything"));
    assert!(glob_match("list_*", "list_findings"));
    assert!(glob_match("list_*", "list_"));
    assert!(!glob_match("list_*", "lis"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxbyy"));
    assert!(glob_match("*.md", "docs/readme.md"));
    assert!(!glob_match("abc", "abcd"));
    assert!(glob_match("file:///srv/*", "file:///srv/a/b"));
}

#[test]
fn grants_methods_names_and_lifecycle() {
    let all = set(&["mcp:*"]);
    assert!(grants(&all, "tools/call", Some("anything")));
    assert!(grants(&all, "resources/list", None));

    let some = set(&[
        "mcp:tools/list",
        "mcp:tools/call:list_*",
        "mcp:resources/read:file:///pub/*",
    ]);
    assert!(grants(&some, "tools/list", None));
    assert!(grants(&some, "tools/call", Some("list_findings")));
    assert!(!grants(&some, "tools/call", Some("delete_all")));
    assert!(
        !grants(&some, "tools/call", None),
        "a name scope needs a name"
    );
    assert!(grants(&some, "resources/read", Some("file:///pub/x")));
    assert!(!grants(&some, "resources/read", Some("file:///etc/passwd")));
    assert!(!grants(&some, "prompts/list", None));

    let method_only = set(&["mcp:tools/call"]);
    assert!(grants(&method_only, "tools/call", Some("x")));
    assert!(grants(&method_only, "tools/call", None));

    let none: Vec<Scope> = vec![];
    for m in [
        "initialize",
        "ping",
        "notifications/initialized",
        "notifications/cancelled",
        "server/discover",
    ] {
        assert!(grants(&none, m, None), "{m} is lifecycle");
    }
    assert!(!grants(&none, "tools/list", None));
    assert!(!grants(
        &set(&["tokens:read", "tokens:write"]),
        "tools/list",
        None
    ));
}

#[test]
fn required_scope_names_the_narrowest() {
    assert_eq!(
        required_scope("tools/call", Some("rm")),
        "mcp:tools/call:rm"
    );
    assert_eq!(required_scope("tools/call", None), "mcp:tools/call");
    assert_eq!(
        required_scope("tools/list", Some("ignored")),
        "mcp:tools/list"
    );
    assert_eq!(
        required_scope("resources/read", Some("file:///a")),
        "mcp:resources/read:file:///a"
    );
}

#[test]
fn coverage_and_ceiling() {
    let cases = [
        ("mcp:*", "mcp:tools/call:x", true),
        ("mcp:*", "mcp:*", true),
        ("mcp:tools/call:a*", "mcp:tools/call:ab", true),
        ("mcp:tools/call:a*", "mcp:tools/call:a*b", true),
        ("mcp:tools/call:a*", "mcp:tools/call:*", false),
        ("mcp:tools/call:a*", "mcp:tools/call", false),
        ("mcp:tools/call:a*", "mcp:*", false),
        ("mcp:tools/call", "mcp:tools/call:anything", true),
        ("mcp:tools/*", "mcp:tools/call:x", true),
        ("mcp:tools/*", "mcp:tools/list", true),
        ("mcp:tools/*", "mcp:prompts/list", false),
        ("mcp:tools/list", "mcp:tools/*", false),
        ("tokens:write", "tokens:read", false),
        ("tokens:read", "tokens:read", true),
        ("mcp:*", "tokens:read", false),
        ("tokens:write", "mcp:tools/list", false),
    ];
    for (outer, inner, want) in cases {
        assert_eq!(s(outer).covers(&s(inner)), want, "{outer} covers {inner}");
    }

    // The example: a PAT with tokens:write and mcp:tools/call:a*.
    let creator = set(&["tokens:write", "mcp:tools/call:a*"]);
    assert_eq!(
        first_uncovered(&set(&["mcp:tools/call:ab"]), &creator),
        None
    );
    let wide = set(&["mcp:tools/call:ab", "mcp:*"]);
    assert_eq!(
        first_uncovered(&wide, &creator)
            .map(|s| s.to_string())
            .as_deref(),
        Some("mcp:*")
    );
    assert_eq!(
        first_uncovered(&[], &creator),
        None,
        "empty is always within the ceiling"
    );
}

#[test]
fn all_mcp_detection() {
    assert!(s("mcp:*").is_all_mcp());
    assert!(!s("mcp:tools/*").is_all_mcp());
    assert!(!s("mcp:tools/call:*").is_all_mcp());
}

proptest! {
    /// Soundness of coverage: whenever `outer` covers `inner`, any concrete
    /// text `inner` matches is matched by `outer` as well.
    #[test]
    fn coverage_is_sound(
        outer in "[ab*]{0,6}",
        inner in "[ab*]{0,6}",
        text in "[ab]{0,8}",
    ) {
        if pattern_covers(&outer, &inner) && glob_match(&inner, &text) {
            prop_assert!(glob_match(&outer, &text), "{outer} ⊇ {inner} but misses {text}");
        }
    }

    #[test]
    fn a_pattern_covers_itself_and_literals_it_matches(p in "[ab*]{0,6}", text in "[ab]{0,8}") {
        prop_assert!(pattern_covers(&p, &p));
        if glob_match(&p, &text) {
            prop_assert!(pattern_covers(&p, &text));
        }
    }

    #[test]
    fn parse_never_panics(x in ".{0,300}") {
        let _ = parse(&x);
    }
}

#[test]
fn names_no_scope_can_spell_need_the_method_wide_scope() {
    // Found by the `jsonrpc` fuzz target: a 403 for `"uri": ""` named
    // `mcp:resources/read:`, which no token can hold.
    let long = "a".repeat(300);
    for (method, name) in [
        ("resources/read", ""),
        ("tools/call", ""),
        ("prompts/get", "a b"),
        ("tools/call", "tab\there"),
        ("tools/call", long.as_str()),
        // Found by the `scopes` fuzz target: decoding makes a scheme.
        ("resources/read", "FI%6Eusp:reseuser/*"),
    ] {
        let required = required_scope(method, Some(name));
        assert_eq!(required, format!("mcp:{method}"), "{name:?}");
        assert!(grants(&set(&[&required]), method, Some(name)));
    }
    // A method too long to spell needs mcp:*.
    let method = "m".repeat(300);
    assert_eq!(required_scope(&method, Some("x")), ALL_MCP);
    // Nor can such a URI be a pattern.
    let e = parse("mcp:resources/read:FI%6Eusp:x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("scheme spelled with %-escapes"), "{e}");
}

#[test]
fn methods_no_scope_can_spell_need_all_mcp() {
    for odd in ["tools/call:x", "tools list", "", "tools/*"] {
        assert_eq!(required_scope(odd, Some("n")), "mcp:*", "{odd:?}");
        // And the named scope really grants it.
        assert!(grants(&[parse(ALL_MCP).unwrap()], odd, Some("n")) || odd.is_empty());
    }
}

#[test]
fn resource_patterns_do_not_reach_outside_through_dot_segments() {
    let public = set(&["mcp:resources/read:file:///srv/public/*"]);
    for uri in [
        "file:///srv/public/../../etc/shadow",
        "file:///srv/public/%2e%2e/%2e%2e/etc/shadow",
        "file:///srv/public/%2E%2E/secret",
        "file:///srv/public/.%2e/x",
        "file:///srv/public/./a.md",
        "file:///srv/public/a/../b.md",
        "file:///srv/public/..%2Fsecret",
        "file:///srv/public/..%5Csecret",
        "file:///srv/public\\..\\secret",
        "file:///srv/public/%252e%252e/secret",
        "file:///srv/public/a%00.md",
    ] {
        assert!(!grants(&public, "resources/read", Some(uri)), "{uri}");
        // Only a method-wide scope grants such a URI, and the 403 says so.
        assert_eq!(
            required_scope("resources/read", Some(uri)),
            "mcp:resources/read"
        );
        assert!(grants(
            &set(&["mcp:resources/read"]),
            "resources/read",
            Some(uri)
        ));
    }
    // Spellings of an allowed URI are allowed.
    for uri in [
        "file:///srv/public/a.md",
        "FILE:///srv/public/a.md",
        "file:///srv/public/%61.md",
        "file:///srv/%70ublic/a.md",
    ] {
        assert!(grants(&public, "resources/read", Some(uri)), "{uri}");
    }
    // Scheme and host case do not matter, path case does.
    let web = set(&["mcp:resources/read:HTTPS://Docs.Example.com/*"]);
    assert_eq!(
        web[0].to_string(),
        "mcp:resources/read:https://docs.example.com/*"
    );
    assert!(grants(
        &web,
        "resources/read",
        Some("https://DOCS.example.com/A")
    ));
    assert!(!grants(
        &set(&["mcp:resources/read:file:///Srv/*"]),
        "resources/read",
        Some("file:///srv/a")
    ));
}

#[test]
fn resource_patterns_must_be_unambiguous() {
    for bad in [
        "mcp:resources/read:file:///srv/../etc/*",
        "mcp:resources/read:file:///srv/%2e%2e/*",
        "mcp:resources/read:file:///srv%2F*",
        "mcp:resources/read:file:///srv/%zz",
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains("resource pattern"), "{bad}: {e}");
    }
}

#[test]
fn a_name_with_glob_characters_is_granted_alone() {
    // A tool literally named `a*b`: the 403 names an escaped scope ...
    let required = required_scope("tools/call", Some("a*b"));
    assert_eq!(required, "mcp:tools/call:a\\*b");
    // ... that grants that tool and no other.
    let held = set(&[&required]);
    assert!(grants(&held, "tools/call", Some("a*b")));
    assert!(!grants(&held, "tools/call", Some("aXb")));
    assert!(!grants(&held, "tools/call", Some("ab")));
    assert_eq!(
        required_scope("tools/call", Some("a\\b")),
        "mcp:tools/call:a\\\\b"
    );
    assert!(grants(
        &set(&["mcp:tools/call:a\\\\b"]),
        "tools/call",
        Some("a\\b")
    ));
    // Escapes elsewhere are refused with a reason.
    let e = parse("mcp:tools/call:a\\b").unwrap_err().to_string();
    assert!(e.contains("escapes only"), "{e}");
    // A resource URI holding a star.
    let r = required_scope("resources/read", Some("file:///a*b"));
    assert_eq!(r, "mcp:resources/read:file:///a\\*b");
    assert!(grants(&set(&[&r]), "resources/read", Some("file:///a*b")));
    assert!(!grants(&set(&[&r]), "resources/read", Some("file:///aXb")));
    // Coverage sees a literal star as a literal.
    assert!(s("mcp:tools/call:a*").covers(&s("mcp:tools/call:a\\*b")));
    assert!(!s("mcp:tools/call:a\\*").covers(&s("mcp:tools/call:ab")));
    assert!(!s("mcp:tools/call:a\\*b").covers(&s("mcp:tools/call:a*b")));
}

proptest! {
    /// The scope a 403 names grants the request, and no other name.
    #[test]
    fn the_required_scope_grants_exactly_its_name(
        name in "[a-c*\\\\?]{1,6}",
        other in "[a-c*\\\\?]{1,6}",
    ) {
        let required = required_scope("tools/call", Some(&name));
        let held = vec![parse(&required).unwrap()];
        prop_assert!(grants(&held, "tools/call", Some(&name)));
        prop_assert_eq!(grants(&held, "tools/call", Some(&other)), name == other);
    }

    /// Normalisation is idempotent and a granted URI's normal form is granted.
    #[test]
    fn uri_normal_form_is_stable(path in "(/(a|b|\\.|\\.\\.|%2e|%2E|%41|%2F|x%00)){0,6}") {
        let uri = format!("file://{path}");
        let once = crate::uri::normalize(&uri);
        let twice = crate::uri::normalize(&once.text);
        prop_assert_eq!(&once.text, &twice.text);
        let held = set(&["mcp:resources/read:file:///a/*"]);
        if grants(&held, "resources/read", Some(&uri)) {
            prop_assert!(once.text.starts_with("file:///a/"), "{}", once.text);
            prop_assert!(!once.ambiguous);
        }
    }
}
