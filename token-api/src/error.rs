//! API errors: an HTTP status, a snake_case code and a message that says what to
//! fix, rendered as `{"error":{"code":"...","message":"..."}}`.

use core::fmt;

use serde_json::json;

/// The realm in `WWW-Authenticate` challenges.
pub const REALM: &str = "mcpgw-token-api";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// Extra response headers (`WWW-Authenticate`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
    /// What went wrong inside, for the server log only; never sent.
    pub log: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
            log: None,
        }
    }

    fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 400 `invalid_<field>`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(400, format!("invalid_{field}"), message)
    }

    /// 400 `invalid_json`.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_json", message)
    }

    /// 400 `unknown_field`.
    pub fn unknown_field(field: &str, allowed: &[&str]) -> Self {
        Self::new(
            400,
            "unknown_field",
            format!(
                "unknown field {field:?}; allowed fields are {}",
                allowed.join(", ")
            ),
        )
    }

    /// 400 `unknown_parameter`.
    pub fn unknown_parameter(name: &str, allowed: &[&str]) -> Self {
        let allowed = if allowed.is_empty() {
            "this route takes no query parameters".to_owned()
        } else {
            format!("allowed parameters are {}", allowed.join(", "))
        };
        Self::new(
            400,
            "unknown_parameter",
            format!("unknown query parameter {name:?}; {allowed}"),
        )
    }

    /// 401 `unauthorized` with a Bearer challenge; `invalid_token` marks a
    /// credential that was presented but is not good.
    pub fn unauthorized(message: impl Into<String>, invalid_token: bool) -> Self {
        let challenge = if invalid_token {
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"")
        } else {
            format!("Bearer realm=\"{REALM}\"")
        };
        Self::new(401, "unauthorized", message).with_header("www-authenticate", challenge)
    }

    /// 403 with a code other than `insufficient_scope`.
    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(403, code, message)
    }

    /// 403 `insufficient_scope` naming the scope the credential lacks.
    pub fn insufficient_scope(scope: &str, doing: &str) -> Self {
        Self::new(
            403,
            "insufficient_scope",
            format!(
                "{doing} needs scope {scope:?}, which this token lacks; \
                 use the admin key or a token granted {scope:?}"
            ),
        )
        .with_header(
            "www-authenticate",
            format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""),
        )
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    /// 405 with `Allow`.
    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Self {
        Self::new(
            405,
            "method_not_allowed",
            format!("{method} is not supported on {path}; use {allow}"),
        )
        .with_header("allow", allow.to_owned())
    }

    /// 500 `internal`: the detail goes to the log, the caller learns nothing of it.
    pub fn internal(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            500,
            "internal",
            "internal error; the token API's log has the details",
        );
        e.log = Some(detail.into());
        e
    }

    /// 503 `storage_unavailable` with `Retry-After`: the database cannot be
    /// reached now (down, restarting, overloaded). The detail goes to the log.
    pub fn storage_unavailable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            503,
            "storage_unavailable",
            "the token store cannot be reached right now; retry shortly \
             (GET /health shows when it is back)",
        )
        .with_header("retry-after", "1".to_owned());
        e.log = Some(detail.into());
        e
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        json!({"error": {"code": self.code, "message": self.message}})
            .to_string()
            .into_bytes()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(e: &ApiError) -> serde_json::Value {
        serde_json::from_slice(&e.body()).unwrap()
    }

    #[test]
    fn body_has_exactly_the_error_shape() {
        let e = ApiError::invalid("name", "name is required");
        assert_eq!(e.status, 400);
        assert_eq!(
            parsed(&e),
            json!({"error": {"code": "invalid_name", "message": "name is required"}})
        );
    }

    #[test]
    fn internal_errors_never_carry_the_detail() {
        let e = ApiError::internal("disk I/O error at /var/lib/secret.db");
        assert_eq!(e.status, 500);
        assert_eq!(e.code, "internal");
        assert!(!String::from_utf8(e.body()).unwrap().contains("secret"));
        assert_eq!(
            e.log.as_deref(),
            Some("disk I/O error at /var/lib/secret.db")
        );
    }

    #[test]
    fn challenges_and_allow_headers() {
        let e = ApiError::unauthorized("send a bearer", false);
        assert_eq!(
            e.headers,
            vec![(
                "www-authenticate",
                "Bearer realm=\"mcpgw-token-api\"".into()
            )]
        );
        let e = ApiError::insufficient_scope("tokens:write", "creating a token");
        assert_eq!(e.status, 403);
        assert!(e.message.contains("\"tokens:write\""));
        assert!(e.headers[0].1.contains("scope=\"tokens:write\""));
        let e = ApiError::method_not_allowed("PUT", "/health", "GET");
        assert_eq!(
            (e.status, e.headers.clone()),
            (405, vec![("allow", "GET".into())])
        );
    }
}
