use super::*;

fn field_error(json: &str, field: &str) -> String {
    let err = load(json.as_bytes()).expect_err(json);
    match err.for_field(field) {
        Some(e) => e.message.clone(),
        None => panic!("no error for {field} in {err}"),
    }
}

#[test]
fn empty_configuration_is_every_default() {
    let c = load(b"").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(load(b"  {} ").unwrap(), Config::default());
}

#[test]
fn spec_example_loads_with_the_spec_values() {
    let json = r#"{
      "token_api": {"cluster": "token_api", "authority": "token-api", "timeout_ms": 500},
      "cache": {"ttl_s": 30, "negative_ttl_s": 5, "max_entries": 10000, "stale_if_error_s": 300},
      "revocation_poll_ms": 1000,
      "headers": {"tenant": "x-mcp-tenant", "project": "x-mcp-project",
                  "token_id": "x-mcp-token-id", "token_name": "x-mcp-token-name",
                  "strip_prefix": "x-mcp-"},
      "bypass_paths": ["/health", "/.well-known/*"],
      "enforce_scopes": true,
      "max_body_bytes": 1048576,
      "realm": "mcp",
      "resource_metadata": null
    }"#;
    assert_eq!(load(json.as_bytes()).unwrap(), Config::default());
}

#[test]
fn partial_sections_keep_defaults_for_missing_fields() {
    let c = load(br#"{"cache": {"ttl_s": 60}, "token_api": {"cluster": "auth"}}"#).unwrap();
    assert_eq!(c.cache.ttl_s, 60);
    assert_eq!(c.cache.negative_ttl_s, 5);
    assert_eq!(c.token_api.cluster, "auth");
    assert_eq!(c.token_api.timeout_ms, 500);
}

#[test]
fn invalid_json_is_reported_as_such() {
    let e = load(b"{not json").unwrap_err();
    assert_eq!(e.0[0].field, "configuration");
    assert!(e.0[0].message.contains("not valid JSON"), "{e}");
    let e = load(b"[1]").unwrap_err();
    assert_eq!(e.0[0].field, "configuration");
}

#[test]
fn unknown_fields_are_named_with_their_path() {
    let m = field_error(r#"{"cache": {"ttl": 3}}"#, "cache.ttl");
    assert!(m.contains("unknown field"), "{m}");
    assert!(m.contains("ttl_s"), "lists the expected fields: {m}");
    let m = field_error(r#"{"realms": "x"}"#, "realms");
    assert!(m.contains("unknown field"), "{m}");
    field_error(
        r#"{"headers": {"tenant_header": "x-mcp-t"}}"#,
        "headers.tenant_header",
    );
    field_error(r#"{"token_api": {"url": "http://x"}}"#, "token_api.url");
}

#[test]
fn wrong_types_are_named_with_their_path() {
    let m = field_error(r#"{"cache": {"ttl_s": "30"}}"#, "cache.ttl_s");
    assert!(m.contains("invalid type"), "{m}");
    field_error(r#"{"cache": {"max_entries": -1}}"#, "cache.max_entries");
    field_error(r#"{"enforce_scopes": "yes"}"#, "enforce_scopes");
    field_error(r#"{"cache": 5}"#, "cache");
    field_error(r#"{"bypass_paths": ["/ok", 7]}"#, "bypass_paths[1]");
    field_error(r#"{"bypass_paths": "/health"}"#, "bypass_paths");
    field_error(r#"{"resource_metadata": 1}"#, "resource_metadata");
}

#[test]
fn token_api_fields() {
    let m = field_error(
        r#"{"token_api": {"timeout_ms": 0}}"#,
        "token_api.timeout_ms",
    );
    assert_eq!(m, "must be between 1 and 60000, got 0");
    field_error(
        r#"{"token_api": {"timeout_ms": 60001}}"#,
        "token_api.timeout_ms",
    );
    assert!(load(br#"{"token_api": {"timeout_ms": 60000}}"#).is_ok());
    field_error(r#"{"token_api": {"cluster": ""}}"#, "token_api.cluster");
    field_error(r#"{"token_api": {"cluster": "a b"}}"#, "token_api.cluster");
    field_error(r#"{"token_api": {"authority": ""}}"#, "token_api.authority");
    field_error(
        r#"{"token_api": {"authority": "a/b"}}"#,
        "token_api.authority",
    );
    assert!(load(br#"{"token_api": {"authority": "token-api.svc:8080"}}"#).is_ok());
}

#[test]
fn the_feed_uses_the_token_api_cluster_and_timeout_unless_given_its_own() {
    let c = load(br#"{"token_api": {"cluster": "auth", "timeout_ms": 250}}"#).unwrap();
    assert_eq!(c.token_api.feed_cluster(), "auth");
    assert_eq!(c.token_api.feed_timeout_ms(), 250);
    let c = load(
        br#"{"token_api": {"cluster": "auth", "timeout_ms": 250,
                           "feed_cluster": "auth_feed", "feed_timeout_ms": 2000}}"#,
    )
    .unwrap();
    assert_eq!(c.token_api.feed_cluster(), "auth_feed");
    assert_eq!(c.token_api.feed_timeout_ms(), 2000);
    assert_eq!(c.token_api.cluster, "auth", "introspection keeps its own");
    assert_eq!(c.token_api.timeout_ms, 250);
    assert!(load(br#"{"token_api": {"feed_cluster": null}}"#).is_ok());

    field_error(
        r#"{"token_api": {"feed_cluster": ""}}"#,
        "token_api.feed_cluster",
    );
    field_error(
        r#"{"token_api": {"feed_cluster": "a b"}}"#,
        "token_api.feed_cluster",
    );
    field_error(
        r#"{"token_api": {"feed_cluster": 7}}"#,
        "token_api.feed_cluster",
    );
    assert_eq!(
        field_error(
            r#"{"token_api": {"feed_timeout_ms": 0}}"#,
            "token_api.feed_timeout_ms"
        ),
        "must be between 1 and 60000, got 0"
    );
    field_error(
        r#"{"token_api": {"feed_timeout_ms": 60001}}"#,
        "token_api.feed_timeout_ms",
    );
    field_error(
        r#"{"token_api": {"feed_timeout_ms": "1s"}}"#,
        "token_api.feed_timeout_ms",
    );
}

#[test]
fn cache_fields() {
    assert_eq!(
        field_error(r#"{"cache": {"ttl_s": 0}}"#, "cache.ttl_s"),
        "must be at least 1, got 0"
    );
    field_error(r#"{"cache": {"ttl_s": 86401}}"#, "cache.ttl_s");
    assert!(load(br#"{"cache": {"negative_ttl_s": 0, "stale_if_error_s": 0}}"#).is_ok());
    field_error(
        r#"{"cache": {"negative_ttl_s": 3601}}"#,
        "cache.negative_ttl_s",
    );
    assert_eq!(
        field_error(r#"{"cache": {"max_entries": 0}}"#, "cache.max_entries"),
        "must be at least 1, got 0"
    );
    field_error(
        r#"{"cache": {"max_entries": 1000001}}"#,
        "cache.max_entries",
    );
    field_error(
        r#"{"cache": {"stale_if_error_s": 86401}}"#,
        "cache.stale_if_error_s",
    );
}

#[test]
fn revocation_poll_is_off_or_at_least_100ms() {
    assert!(load(br#"{"revocation_poll_ms": 0}"#).is_ok());
    assert!(load(br#"{"revocation_poll_ms": 100}"#).is_ok());
    let m = field_error(r#"{"revocation_poll_ms": 99}"#, "revocation_poll_ms");
    assert!(m.contains("0 (off)"), "{m}");
    field_error(r#"{"revocation_poll_ms": 3600001}"#, "revocation_poll_ms");
}

#[test]
fn header_names_must_be_lowercase_tokens() {
    field_error(
        r#"{"headers": {"tenant": "X-MCP-Tenant"}}"#,
        "headers.tenant",
    );
    field_error(
        r#"{"headers": {"project": "x-mcp-pro ject"}}"#,
        "headers.project",
    );
    field_error(r#"{"headers": {"token_id": ""}}"#, "headers.token_id");
    field_error(
        r#"{"headers": {"token_name": "x-mcp-n:"}}"#,
        "headers.token_name",
    );
    field_error(
        r#"{"headers": {"strip_prefix": ""}}"#,
        "headers.strip_prefix",
    );
}

#[test]
fn routing_headers_must_start_with_the_strip_prefix() {
    let m = field_error(r#"{"headers": {"tenant": "x-tenant"}}"#, "headers.tenant");
    assert!(m.contains("spoof"), "says why: {m}");
    field_error(
        r#"{"headers": {"token_name": "name"}}"#,
        "headers.token_name",
    );
    let ok = br#"{"headers": {"strip_prefix": "x-gw-", "tenant": "x-gw-t",
        "project": "x-gw-p", "token_id": "x-gw-i", "token_name": "x-gw-n"}}"#;
    assert!(load(ok).is_ok());
}

#[test]
fn routing_headers_must_be_distinct() {
    let m = field_error(
        r#"{"headers": {"project": "x-mcp-tenant"}}"#,
        "headers.project",
    );
    assert!(m.contains("headers.tenant"), "{m}");
}

#[test]
fn strip_prefix_must_not_strip_protocol_headers() {
    let m = field_error(
        r#"{"headers": {"strip_prefix": "mcp-"}}"#,
        "headers.strip_prefix",
    );
    assert!(m.contains("mcp-session-id"), "{m}");
    field_error(
        r#"{"headers": {"strip_prefix": "x-"}}"#,
        "headers.strip_prefix",
    );
    field_error(
        r#"{"headers": {"strip_prefix": "a"}}"#,
        "headers.strip_prefix",
    );
}

#[test]
fn bypass_paths_are_validated_and_matched() {
    field_error(r#"{"bypass_paths": ["health"]}"#, "bypass_paths[0]");
    let m = field_error(r#"{"bypass_paths": ["/ok", "/a*b"]}"#, "bypass_paths[1]");
    assert!(m.contains("last character"), "{m}");
    field_error(r#"{"bypass_paths": ["/a?b"]}"#, "bypass_paths[0]");
    field_error(r#"{"bypass_paths": ["/a b"]}"#, "bypass_paths[0]");
    field_error(r#"{"bypass_paths": ["/a/../b"]}"#, "bypass_paths[0]");

    let c = Config::default();
    assert!(c.is_bypass(b"/health"));
    assert!(!c.is_bypass(b"/health/x"));
    assert!(!c.is_bypass(b"/healthz"));
    assert!(c.is_bypass(b"/.well-known/oauth-protected-resource"));
    assert!(c.is_bypass(b"/.well-known/"));
    assert!(!c.is_bypass(b"/.well-known"));
    assert!(!c.is_bypass(b"/mcp"));
    // Paths a backend could normalise into a protected one never bypass.
    assert!(!c.is_bypass(b"/.well-known/../mcp"));
    assert!(!c.is_bypass(b"/.well-known/%2e%2e/mcp"));
    assert!(!c.is_bypass(b"/.well-known/..%2Fmcp"));
    assert!(!c.is_bypass(b"/.well-known/..\\mcp"));
    assert!(!c.is_bypass(b"/.well-known/./x"));
}

#[test]
fn max_body_bytes_is_bounded_by_envoys_buffer() {
    field_error(r#"{"max_body_bytes": 0}"#, "max_body_bytes");
    let m = field_error(r#"{"max_body_bytes": 1048577}"#, "max_body_bytes");
    assert!(m.contains("1048576"), "{m}");
    assert!(load(br#"{"max_body_bytes": 1}"#).is_ok());
}

#[test]
fn the_list_memo_is_bounded_and_can_be_turned_off() {
    assert_eq!(Config::default().list_memo_bytes, 2 << 20);
    assert_eq!(
        load(br#"{"list_memo_bytes": 0}"#).unwrap().list_memo_bytes,
        0
    );
    let m = field_error(r#"{"list_memo_bytes": 67108865}"#, "list_memo_bytes");
    assert!(m.contains("67108864") && m.contains("off"), "{m}");
    field_error(r#"{"list_memo_bytes": -1}"#, "list_memo_bytes");
}

#[test]
fn realm_must_be_quotable() {
    field_error(r#"{"realm": ""}"#, "realm");
    field_error(r#"{"realm": "a\"b"}"#, "realm");
    field_error(r#"{"realm": "a\\b"}"#, "realm");
    field_error(r#"{"realm": "a\nb"}"#, "realm");
    assert!(load(br#"{"realm": "My MCP gateway"}"#).is_ok());
}

#[test]
fn resource_metadata_must_be_an_http_url() {
    field_error(
        r#"{"resource_metadata": "example.com"}"#,
        "resource_metadata",
    );
    field_error(
        r#"{"resource_metadata": "https://a\"b"}"#,
        "resource_metadata",
    );
    field_error(r#"{"resource_metadata": ""}"#, "resource_metadata");
    let c = load(
        br#"{"resource_metadata": "https://gw.example.com/.well-known/oauth-protected-resource"}"#,
    )
    .unwrap();
    assert!(c.resource_metadata.is_some());
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = load(br#"{"cache": {"ttl_s": 0, "max_entries": 0}, "realm": ""}"#).unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("cache.ttl_s: must be at least 1, got 0"),
        "{text}"
    );
}

#[test]
fn rate_limit_and_record_sections_have_defaults_and_are_checked() {
    let c = Config::default();
    assert!(c.rate_limit.enforce);
    assert_eq!(c.record.property.as_deref(), Some("mcp_auth"));
    assert!(c.record.read_body);
    assert_eq!(c.headers.hold(), "x-mcp-hold");
    let c = load(br#"{"rate_limit": {"enforce": false}, "record": {"property": null}}"#).unwrap();
    assert!(!c.rate_limit.enforce);
    assert_eq!(c.record.property, None);
    let m = field_error(r#"{"record": {"property": "Bad Name"}}"#, "record.property");
    assert!(m.contains("a-z"), "{m}");
    field_error(r#"{"record": {"property": ""}}"#, "record.property");
    field_error(r#"{"record": {"read_body": 1}}"#, "record.read_body");
    field_error(
        r#"{"rate_limit": {"enforce": "yes"}}"#,
        "rate_limit.enforce",
    );
    field_error(
        r#"{"rate_limit": {"per_token": true}}"#,
        "rate_limit.per_token",
    );
}

#[test]
fn the_hold_header_follows_the_strip_prefix_and_cannot_be_spoofed() {
    let c = load(
        br#"{"headers": {"strip_prefix": "x-gw-", "tenant": "x-gw-t",
        "project": "x-gw-p", "token_id": "x-gw-i", "token_name": "x-gw-n"}}"#,
    )
    .unwrap();
    assert_eq!(c.headers.hold(), "x-gw-hold");
    let m = field_error(r#"{"headers": {"hold": "x-hold"}}"#, "headers.hold");
    assert!(m.contains("spoof"), "{m}");
    field_error(r#"{"headers": {"hold": "x-mcp-tenant"}}"#, "headers.hold");
}

#[test]
fn the_token_id_and_name_headers_can_be_turned_off() {
    let c = load(br#"{"headers": {"token_id": null, "token_name": null}}"#).unwrap();
    assert_eq!(c.headers.token_id, None);
    assert_eq!(c.headers.token_name, None);
    // Tenant and project route the request: never optional.
    field_error(r#"{"headers": {"tenant": null}}"#, "headers.tenant");
    let d = load(b"{}").unwrap();
    assert_eq!(d.headers.token_id.as_deref(), Some("x-mcp-token-id"));
    assert_eq!(d.headers.token_name.as_deref(), Some("x-mcp-token-name"));
    // A name that is set is still checked.
    field_error(
        r#"{"headers": {"token_id": null, "token_name": "name"}}"#,
        "headers.token_name",
    );
}
