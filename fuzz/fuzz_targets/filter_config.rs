//! The filter's plugin configuration (docs/DESIGN.md §7): `config::load` on any bytes,
//! then bypass matching on request paths.
//!
//! Input: the configuration bytes, optionally followed by a NUL and
//! NUL-separated `:path` values (JSON text never holds a raw NUL).
//! Checks: a loaded config passes its own validation and yields replies whose
//! headers cannot be split; a refused one names a field and what to fix; a
//! bypass path is never one a backend could normalise elsewhere.

#![no_main]

use filter::bearer::BearerError;
use filter::cache::Reason;
use filter::config::{self, Config};
use filter::jsonrpc::Verdict;
use filter::replies::{self, Unauthorized};
use filter::request::{self, Front, Scan};
use libfuzzer_sys::fuzz_target;
use mcpgw_fuzz::is_header_value;
use mcpgw_token::format::FormatError;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let bytes = parts.next().unwrap_or_default();
    let paths: Vec<&[u8]> = parts.collect();

    let cfg = match config::load(bytes) {
        Ok(cfg) => {
            check_loaded(&cfg);
            cfg
        }
        Err(e) => {
            assert!(!e.0.is_empty(), "an error names at least one field");
            for f in &e.0 {
                // The field is the offending key as written, which may be "".
                assert!(!f.message.is_empty(), "{f:?}");
                assert!(e.for_field(&f.field).is_some());
            }
            assert!(!e.to_string().is_empty());
            Config::default()
        }
    };

    for path in paths {
        check_bypass(&cfg, path);
    }
});

fn check_loaded(cfg: &Config) {
    assert_eq!(cfg.validate(), Ok(()));
    let h = &cfg.headers;
    // The token's id and name headers may be turned off (`null`).
    let routing: Vec<&String> = [Some(&h.tenant), Some(&h.project)]
        .into_iter()
        .chain([h.token_id.as_ref(), h.token_name.as_ref()])
        .flatten()
        .collect();
    for (i, name) in routing.iter().enumerate() {
        // A client-sent copy of a routing header is always stripped.
        assert!(name.starts_with(h.strip_prefix.as_str()), "{name}");
        assert!(!routing[..i].contains(name), "{name} used twice");
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()));
    }
    for p in ["authorization", "mcp-method", "mcp-name", "host"] {
        assert!(
            !p.starts_with(h.strip_prefix.as_str()),
            "{p} would be stripped"
        );
    }
    assert!((1..=config::ENVOY_BUFFER_DEFAULT).contains(&cfg.max_body_bytes));
    for p in &cfg.bypass_paths {
        assert!(p.starts_with('/'), "{p}");
    }

    // Every reply the filter builds from this config is sendable.
    let whys = [
        Unauthorized::Bearer(BearerError::Missing),
        Unauthorized::Malformed(FormatError::Checksum),
        Unauthorized::QueryToken,
        Unauthorized::Inactive(Reason::Revoked),
    ];
    let mut all: Vec<replies::Reply> = whys
        .into_iter()
        .map(|w| replies::unauthorized(cfg, w))
        .collect();
    all.push(replies::insufficient_scope(
        cfg,
        "mcp:tools/call:x",
        &Value::from(1),
    ));
    all.extend(replies::for_verdict(
        cfg,
        &Verdict::Mismatch {
            detail: "d".into(),
            id: Value::Null,
        },
    ));
    all.push(replies::body_too_large(cfg.max_body_bytes));
    all.push(replies::unavailable());
    for r in &all {
        for (name, value) in &r.headers {
            assert!(is_header_value(value), "{name}: {value:?}");
        }
        serde_json::from_str::<Value>(&r.body).expect("reply body is JSON");
    }
    let challenge = all[0].header("www-authenticate").unwrap();
    assert!(challenge.contains(&format!("realm=\"{}\"", cfg.realm)));
    assert_eq!(
        challenge.contains("resource_metadata="),
        cfg.resource_metadata.is_some()
    );
}

fn check_bypass(cfg: &Config, path: &[u8]) {
    let bypass = cfg.is_bypass(path);
    if bypass {
        assert!(!path.contains(&b'\\'), "{path:?}");
        assert!(
            !path.split(|&b| b == b'/').any(|s| s == b"." || s == b".."),
            "dot-segment in a bypass path {:?}",
            String::from_utf8_lossy(path)
        );
        let lower = path.to_ascii_lowercase();
        for enc in [&b"%2e"[..], b"%2f", b"%5c"] {
            assert!(!lower.windows(3).any(|w| w == enc), "{path:?}");
        }
        assert!(cfg.bypass_paths.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix.as_bytes()),
            None => path == p.as_bytes(),
        }));
    }
    // The header phase agrees: a bypass path needs no token, any other path
    // without one is refused before any lookup.
    let scan = Scan {
        path,
        ..Scan::default()
    };
    let front = request::front(cfg, &scan);
    let path_only = path.split(|&b| b == b'?').next().unwrap_or_default();
    if cfg.is_bypass(path_only) {
        assert_eq!(front, Front::Bypass);
    } else {
        assert!(matches!(front, Front::Reject(_)), "{front:?}");
    }
}
