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
fn methods_no_scope_can_spell_need_all_mcp() {
    for odd in ["tools/call:x", "tools list", "", "tools/*"] {
        assert_eq!(required_scope(odd, Some("n")), "mcp:*", "{odd:?}");
        // And the named scope really grants it.
        assert!(grants(&[parse(ALL_MCP).unwrap()], odd, Some("n")) || odd.is_empty());
    }
}
