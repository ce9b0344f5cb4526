//! Who is calling: the operator's admin key, or a token acting on its own
//! tenant + project (docs/DESIGN.md §6 management auth). Pure, given the token lookup.

use mcpgw_token::format;
use mcpgw_token::scopes::{self, Scope};

use crate::error::ApiError;
use crate::model::{Status, TokenRecord};
use crate::rfc3339;
use crate::store::Owner;

/// The bearer credential of a request: exactly one `Authorization: Bearer <x>`.
pub fn bearer(authorization: &[String]) -> Result<&str, ApiError> {
    let value = match authorization {
        [] => {
            return Err(ApiError::unauthorized(
                "missing credential: send \"Authorization: Bearer <admin key or token>\"",
                false,
            ))
        }
        [one] => one.trim(),
        _ => {
            return Err(ApiError::unauthorized(
                "send exactly one Authorization header",
                true,
            ))
        }
    };
    let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "use the Bearer scheme: \"Authorization: Bearer <admin key or token>\"",
            true,
        ));
    }
    let credential = credential.trim();
    if credential.is_empty() {
        return Err(ApiError::unauthorized(
            "the bearer credential is empty: \"Authorization: Bearer <admin key or token>\"",
            true,
        ));
    }
    Ok(credential)
}

/// What a management credential turned out to be before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Admin,
    /// A well-formed token, by its hash: still to be looked up.
    Token {
        sha: String,
    },
}

/// Admin key (SHA-256 compared in constant time) or a well-formed token.
pub fn classify(credential: &str, admin_key_sha256: &str) -> Result<Credential, ApiError> {
    let sha = format::sha256_hex(credential);
    if format::ct_eq(sha.as_bytes(), admin_key_sha256.as_bytes()) {
        return Ok(Credential::Admin);
    }
    if credential.starts_with(format::PREFIX) {
        return match format::validate(credential) {
            Ok(()) => Ok(Credential::Token { sha }),
            Err(e) => Err(ApiError::unauthorized(
                format!("the bearer token is malformed: {e}"),
                true,
            )),
        };
    }
    Err(ApiError::unauthorized(
        "the bearer credential is neither the admin key nor a token",
        true,
    ))
}

/// A token acting through the management API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPrincipal {
    pub id: String,
    pub sha: String,
    pub tenant: String,
    pub project: String,
    pub scopes: Vec<Scope>,
    /// Unix seconds; `None` never expires. Tokens it mints expire no later.
    pub expires_at: Option<i64>,
    /// Its own rate limit: the ceiling of the limits it gives (mint, change).
    pub rate_limit: Option<mcpgw_token::ratelimit::RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Token(TokenPrincipal),
}

/// The principal for a looked-up token: it must exist and be active.
pub fn token_principal(record: Option<TokenRecord>, now: i64) -> Result<Principal, ApiError> {
    let Some(r) = record else {
        return Err(ApiError::unauthorized(
            "the bearer token is not known here (deleted, or never issued by this API)",
            true,
        ));
    };
    match r.status(now) {
        Status::Revoked => Err(ApiError::unauthorized(
            format!(
                "the bearer token {} was revoked at {}",
                r.id,
                rfc3339::format(r.revoked_at.unwrap_or_default())
            ),
            true,
        )),
        Status::Expired => Err(ApiError::unauthorized(
            format!(
                "the bearer token {} expired at {}",
                r.id,
                rfc3339::format(r.expires_at.unwrap_or_default())
            ),
            true,
        )),
        Status::Active => {
            let scopes = scopes::parse_all(&r.scopes)
                .map_err(|e| ApiError::internal(format!("token {} has a stored {e}", r.id)))?;
            Ok(Principal::Token(TokenPrincipal {
                id: r.id,
                sha: r.token_sha,
                tenant: r.tenant,
                project: r.project,
                scopes,
                expires_at: r.expires_at,
                rate_limit: r.rate_limit,
            }))
        }
    }
}

impl Principal {
    /// The RBAC subject named in audit records.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin => "admin".into(),
            Principal::Token(t) => format!("McpToken:{}", t.sha),
        }
    }

    /// `created_by` of tokens this principal mints.
    pub fn created_by(&self) -> String {
        match self {
            Principal::Admin => "admin".into(),
            Principal::Token(t) => format!("token:{}", t.id),
        }
    }

    /// The tenant + project a token is confined to; the admin has none.
    pub fn owner(&self) -> Option<Owner<'_>> {
        match self {
            Principal::Admin => None,
            Principal::Token(t) => Some(Owner {
                tenant: &t.tenant,
                project: &t.project,
            }),
        }
    }

    /// Requires `tokens:read` or `tokens:write` of a token; the admin may do anything.
    pub fn require(&self, scope: &Scope, doing: &str) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Token(t) if t.scopes.iter().any(|s| s.covers(scope)) => Ok(()),
            Principal::Token(_) => Err(ApiError::insufficient_scope(&scope.to_string(), doing)),
        }
    }

    /// A token may name only its own tenant + project in a query or body.
    pub fn check_tenant(
        &self,
        tenant: Option<&str>,
        project: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(own) = self.owner() else {
            return Ok(());
        };
        for (field, asked, mine) in [
            ("tenant", tenant, own.tenant),
            ("project", project, own.project),
        ] {
            if let Some(asked) = asked.filter(|a| *a != mine) {
                return Err(ApiError::forbidden(
                    "tenant_mismatch",
                    format!(
                        "this token acts on tenant {:?} project {:?} only, not {field} {asked:?}; \
                         leave {field} out or use the admin key",
                        own.tenant, own.project
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_459_243;

    fn admin_sha(key: &str) -> String {
        format::sha256_hex(key)
    }

    fn record(scopes: &[&str]) -> TokenRecord {
        TokenRecord {
            id: "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            token_sha: "ab".repeat(32),
            name: "ci".into(),
            tenant: "acme".into(),
            project: "default".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            hint: "mcpctl_pat_AbC1…".into(),
            created_by: "admin".into(),
            created_at: NOW - 10,
            expires_at: Some(NOW + 10),
            revoked_at: None,
            last_used_at: None,
            rate_limit: None,
        }
    }

    #[test]
    fn bearer_extraction() {
        let h = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(bearer(&h(&["Bearer abc"])), Ok("abc"));
        assert_eq!(bearer(&h(&["bearer  abc "])), Ok("abc"));
        for (bad, invalid_token) in [
            (h(&[]), false),
            (h(&["Bearer a", "Bearer b"]), true),
            (h(&["Basic YWJj"]), true),
            (h(&["Bearer"]), true),
            (h(&["Bearer   "]), true),
            (h(&["abc"]), true),
        ] {
            let e = bearer(&bad).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (401, "unauthorized"),
                "{bad:?}"
            );
            let challenge = &e.headers[0];
            assert_eq!(challenge.0, "www-authenticate");
            assert!(challenge.1.starts_with("Bearer "));
            assert_eq!(
                challenge.1.contains("invalid_token"),
                invalid_token,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn classify_admin_token_and_garbage() {
        let sha = admin_sha("s3cret-admin-key");
        assert_eq!(classify("s3cret-admin-key", &sha), Ok(Credential::Admin));
        let token = format::from_secret(&[7; 32]);
        assert_eq!(
            classify(&token, &sha),
            Ok(Credential::Token {
                sha: format::sha256_hex(&token)
            })
        );
        // Even a token-shaped admin key works: the admin check comes first.
        assert_eq!(classify(&token, &admin_sha(&token)), Ok(Credential::Admin));
        let mut broken = token.clone();
        broken.replace_range(20..21, if &token[20..21] == "A" { "B" } else { "A" });
        let e = classify(&broken, &sha).unwrap_err();
        assert_eq!(e.status, 401);
        assert!(e.message.contains("malformed"), "{}", e.message);
        let e = classify("s3cret-admin-kez", &sha).unwrap_err();
        assert!(e.message.contains("neither the admin key nor a token"));
    }

    #[test]
    fn only_active_tokens_become_principals() {
        assert_eq!(token_principal(None, NOW).unwrap_err().status, 401);
        let mut r = record(&["tokens:read"]);
        r.revoked_at = Some(NOW - 1);
        assert!(token_principal(Some(r), NOW)
            .unwrap_err()
            .message
            .contains("revoked"));
        let r = record(&["tokens:read"]);
        assert!(token_principal(Some(r), NOW + 10)
            .unwrap_err()
            .message
            .contains("expired"));
        let p = token_principal(Some(record(&["tokens:read", "mcp:*"])), NOW).unwrap();
        assert_eq!(p.actor(), format!("McpToken:{}", "ab".repeat(32)));
        assert_eq!(p.created_by(), "token:tok_01ARZ3NDEKTSV4RRFFQ69G5FAV");
        let e = token_principal(Some(record(&["bogus"])), NOW).unwrap_err();
        assert_eq!(e.status, 500);
    }

    #[test]
    fn management_scopes_are_separate() {
        let reader = token_principal(Some(record(&["tokens:read", "mcp:*"])), NOW).unwrap();
        assert_eq!(reader.require(&Scope::TokensRead, "listing"), Ok(()));
        let e = reader.require(&Scope::TokensWrite, "revoking").unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (403, "insufficient_scope"));
        assert!(e.message.contains("\"tokens:write\""));
        let writer = token_principal(Some(record(&["tokens:write"])), NOW).unwrap();
        assert!(
            writer.require(&Scope::TokensRead, "listing").is_err(),
            "write does not imply read"
        );
        assert_eq!(Principal::Admin.require(&Scope::TokensWrite, "x"), Ok(()));
    }

    #[test]
    fn tokens_stay_in_their_tenant_and_project() {
        let p = token_principal(Some(record(&["tokens:read"])), NOW).unwrap();
        assert_eq!(p.check_tenant(None, None), Ok(()));
        assert_eq!(p.check_tenant(Some("acme"), Some("default")), Ok(()));
        for (t, pr) in [
            (Some("globex"), None),
            (None, Some("web")),
            (Some("acme"), Some("web")),
        ] {
            let e = p.check_tenant(t, pr).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (403, "tenant_mismatch"));
        }
        assert_eq!(
            Principal::Admin.check_tenant(Some("any"), Some("thing")),
            Ok(())
        );
    }
}
