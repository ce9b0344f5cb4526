//! Method + path → route (docs/DESIGN.md §6). Unknown paths are 404, known paths with
//! another method 405 with `Allow`.

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    CreateToken,
    ListTokens,
    Introspect,
    Revocations,
    DescribeToken(String),
    DeleteToken(String),
    /// Change what may change after minting (the rate limit).
    UpdateToken(String),
    RevokeToken(String),
    Audit,
    /// Who the credential is and what it may do (the console's sign-in).
    WhoAmI,
    /// A file of the web console: the path after `/console`.
    Console(String),
}

const TOKENS: &str = "/api/v1/mcptokens";

pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let allow = |allow: &'static str| ApiError::method_not_allowed(method, path, allow);
    let segments: Option<Vec<&str>> = path
        .strip_prefix(TOKENS)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .map(|rest| rest.split('/').skip(1).collect());
    match (path, segments.as_deref()) {
        ("/health", _) => match method {
            "GET" => Ok(Route::Health),
            _ => Err(allow("GET")),
        },
        ("/api/v1/audit", _) => match method {
            "GET" => Ok(Route::Audit),
            _ => Err(allow("GET")),
        },
        ("/api/v1/whoami", _) => match method {
            "GET" => Ok(Route::WhoAmI),
            _ => Err(allow("GET")),
        },
        (p, _) if p == "/console" || p.starts_with("/console/") => match method {
            "GET" | "HEAD" => Ok(Route::Console(p["/console".len()..].to_owned())),
            _ => Err(allow("GET, HEAD")),
        },
        (_, Some([])) => match method {
            "GET" => Ok(Route::ListTokens),
            "POST" => Ok(Route::CreateToken),
            _ => Err(allow("GET, POST")),
        },
        (_, Some(["introspect"])) => match method {
            "GET" => Ok(Route::Introspect),
            _ => Err(allow("GET")),
        },
        (_, Some(["revocations"])) => match method {
            "GET" => Ok(Route::Revocations),
            _ => Err(allow("GET")),
        },
        (_, Some([id])) if !id.is_empty() => match method {
            "GET" => Ok(Route::DescribeToken((*id).to_owned())),
            "DELETE" => Ok(Route::DeleteToken((*id).to_owned())),
            "PATCH" => Ok(Route::UpdateToken((*id).to_owned())),
            _ => Err(allow("GET, PATCH, DELETE")),
        },
        (_, Some([id, "revoke"])) if !id.is_empty() => match method {
            "POST" => Ok(Route::RevokeToken((*id).to_owned())),
            _ => Err(allow("POST")),
        },
        _ => Err(ApiError::not_found(format!(
            "no route {method} {path}; the API lives under {TOKENS}, /api/v1/audit, \
             /api/v1/whoami and /health, the console under /console/"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV";

    #[test]
    fn routes_every_endpoint() {
        let id = || ID.to_owned();
        let cases = [
            ("GET", "/health", Route::Health),
            ("POST", "/api/v1/mcptokens", Route::CreateToken),
            ("GET", "/api/v1/mcptokens", Route::ListTokens),
            ("GET", "/api/v1/mcptokens/introspect", Route::Introspect),
            ("GET", "/api/v1/mcptokens/revocations", Route::Revocations),
            (
                "GET",
                &format!("/api/v1/mcptokens/{ID}"),
                Route::DescribeToken(id()),
            ),
            (
                "DELETE",
                &format!("/api/v1/mcptokens/{ID}"),
                Route::DeleteToken(id()),
            ),
            (
                "POST",
                &format!("/api/v1/mcptokens/{ID}/revoke"),
                Route::RevokeToken(id()),
            ),
            (
                "PATCH",
                &format!("/api/v1/mcptokens/{ID}"),
                Route::UpdateToken(id()),
            ),
            ("GET", "/api/v1/audit", Route::Audit),
            ("GET", "/api/v1/whoami", Route::WhoAmI),
            ("GET", "/console", Route::Console(String::new())),
            ("GET", "/console/", Route::Console("/".into())),
            ("HEAD", "/console/app.js", Route::Console("/app.js".into())),
        ];
        for (method, path, want) in cases {
            assert_eq!(route(method, path), Ok(want), "{method} {path}");
        }
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        for (method, path, allow) in [
            ("POST", "/health", "GET"),
            ("DELETE", "/api/v1/mcptokens", "GET, POST"),
            ("POST", "/api/v1/mcptokens/introspect", "GET"),
            ("DELETE", "/api/v1/mcptokens/revocations", "GET"),
            ("PUT", "/api/v1/mcptokens/tok_x", "GET, PATCH, DELETE"),
            ("GET", "/api/v1/mcptokens/tok_x/revoke", "POST"),
            ("POST", "/api/v1/audit", "GET"),
            ("POST", "/api/v1/whoami", "GET"),
            ("POST", "/console/", "GET, HEAD"),
        ] {
            let e = route(method, path).unwrap_err();
            assert_eq!(e.status, 405, "{method} {path}");
            assert_eq!(e.headers, vec![("allow", allow.to_owned())]);
        }
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in [
            "/",
            "/api/v1",
            "/api/v1/mcptokens/",
            "/api/v1/mcptokensx",
            "/api/v1/mcptokens//revoke",
            "/api/v1/mcptokens/tok_x/unrevoke",
            "/api/v1/mcptokens/tok_x/revoke/more",
            "/health/",
            "/api/v1/audit/1",
            "/consolex",
            "/api/v1/whoami/x",
        ] {
            let e = route("GET", path).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (404, "not_found"), "{path}");
        }
    }
}
