//! The web console: three static files compiled into the component and served
//! under `/console/`, same origin as the API they call, plus `GET /api/v1/whoami`,
//! which tells the page who signed in and what it may offer.
//!
//! Every console answer carries a strict Content-Security-Policy: scripts and
//! styles only from this origin (no inline code), no framing, no form posts,
//! and Trusted Types enforced so the page cannot assign HTML strings to the DOM.

use mcpgw_token::scopes::Scope;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::config::Config;
use crate::error::ApiError;
use crate::service::Response;

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const STYLE_CSS: &str = include_str!("../console/style.css");
const ICON_SVG: &str = include_str!("../console/icon.svg");

/// The policy of every console answer (docs in token-api/README.md, Console).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// A console file by its path after `/console`; `""` redirects to `/console/`.
pub fn serve(method: &str, path: &str) -> Result<Response, ApiError> {
    let (content_type, body) = match path {
        "" => {
            let mut r = with_security_headers(308, "text/plain; charset=utf-8", "");
            r.headers.push(("location", "/console/".into()));
            return Ok(r);
        }
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        "/icon.svg" => ("image/svg+xml", ICON_SVG),
        _ => {
            return Err(ApiError::not_found(format!(
                "no console file {path:?}; the console is at /console/"
            )))
        }
    };
    let body = if method == "HEAD" { "" } else { body };
    Ok(with_security_headers(200, content_type, body))
}

fn with_security_headers(status: u16, content_type: &str, body: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("content-type", content_type.into()),
            ("content-security-policy", CSP.into()),
            ("x-frame-options", "DENY".into()),
            ("x-content-type-options", "nosniff".into()),
            ("referrer-policy", "no-referrer".into()),
            ("cross-origin-opener-policy", "same-origin".into()),
            ("cross-origin-resource-policy", "same-origin".into()),
            // Small files compiled into the component: revalidate, never keep stale.
            ("cache-control", "no-cache".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

/// `GET /api/v1/whoami`: the signed-in principal, what it may do, and the
/// settings the mint form needs (lifetime limits, the gateway URL).
pub fn whoami(who: &Principal, config: &Config) -> Value {
    let can = |scope: &Scope| who.require(scope, "").is_ok();
    let principal = match who {
        Principal::Admin => json!({"kind": "admin"}),
        Principal::Token(t) => json!({
            "kind": "token",
            "token_id": t.id,
            "tenant": t.tenant,
            "project": t.project,
            "scopes": t.scopes.iter().map(Scope::to_string).collect::<Vec<_>>(),
        }),
    };
    json!({
        "principal": principal,
        "can_read": can(&Scope::TokensRead),
        "can_write": can(&Scope::TokensWrite),
        "max_ttl": config.ttl.max.to_string(),
        "default_ttl": config.ttl.default.to_string(),
        "gateway_url": config.gateway_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.header(name)
    }

    #[test]
    fn serves_each_file_with_its_type_and_the_security_headers() {
        for (path, ty, needle) in [
            ("/", "text/html", "<script type=\"module\" src=\"app.js\">"),
            ("/index.html", "text/html", "<html"),
            ("/app.js", "text/javascript", "sessionStorage"),
            ("/style.css", "text/css", "@media"),
            ("/icon.svg", "image/svg+xml", "<svg"),
        ] {
            let r = serve("GET", path).unwrap();
            assert_eq!(r.status, 200, "{path}");
            assert!(
                header(&r, "content-type").unwrap().starts_with(ty),
                "{path}"
            );
            assert!(
                String::from_utf8_lossy(&r.body).contains(needle),
                "{path} lacks {needle}"
            );
            assert_eq!(header(&r, "content-security-policy"), Some(CSP));
            assert_eq!(header(&r, "x-frame-options"), Some("DENY"));
            assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
            assert_eq!(header(&r, "referrer-policy"), Some("no-referrer"));
            let head = serve("HEAD", path).unwrap();
            assert_eq!((head.status, head.body.len()), (200, 0));
            assert_eq!(head.headers, r.headers);
        }
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_framing() {
        for part in [
            "default-src 'none'",
            "script-src 'self';",
            "style-src 'self';",
            "frame-ancestors 'none'",
            "form-action 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(CSP.contains(part), "{part}");
        }
        assert!(!CSP.contains("unsafe"));
        // The page itself has no inline script, style or event handler to allow.
        let html = INDEX_HTML.to_ascii_lowercase();
        assert!(!html.contains("<script>") && !html.contains("<style"));
        assert!(!html.contains(" style="));
        let handler = html.split(" on").skip(1).find(|rest| {
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert_eq!(handler, None, "an inline event handler");
    }

    #[test]
    fn the_script_never_parses_html_from_strings() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "localStorage",
            "document.cookie",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn bare_path_redirects_and_unknown_files_are_404() {
        let r = serve("GET", "").unwrap();
        assert_eq!((r.status, header(&r, "location")), (308, Some("/console/")));
        for path in ["/x", "/app.js.map", "/../spin.toml", "/console/"] {
            let e = serve("GET", path).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (404, "not_found"), "{path}");
        }
    }
}
