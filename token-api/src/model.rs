//! Stored records and their JSON views. Views never carry the hash or the
//! secret; the hint is the non-secret prefix of docs/DESIGN.md §3, stored at creation.

use mcpgw_token::ratelimit::RateLimit;
use serde_json::{json, Value};

use crate::rfc3339;

/// One row of `tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub token_sha: String,
    pub name: String,
    pub tenant: String,
    pub project: String,
    /// Canonical scope strings.
    pub scopes: Vec<String>,
    pub hint: String,
    /// `admin` or `token:<id>`.
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// `None`: no limit.
    pub rate_limit: Option<RateLimit>,
}

/// Whether a token authenticates right now, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Revoked,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
        }
    }
}

impl TokenRecord {
    /// Revocation wins over expiry; a token is expired from its `expires_at` second on.
    pub fn status(&self, now: i64) -> Status {
        if self.revoked_at.is_some() {
            Status::Revoked
        } else if self.expires_at.is_some_and(|exp| exp <= now) {
            Status::Expired
        } else {
            Status::Active
        }
    }

    /// The describe / list view.
    pub fn view(&self, now: i64) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "tenant": self.tenant,
            "project": self.project,
            "scopes": self.scopes,
            "status": self.status(now).as_str(),
            "hint": self.hint,
            "created_by": self.created_by,
            "created_at": rfc3339::format(self.created_at),
            "expires_at": self.expires_at.map(rfc3339::format),
            "revoked_at": self.revoked_at.map(rfc3339::format),
            "last_used_at": self.last_used_at.map(rfc3339::format),
            "rate_limit": self.rate_limit,
        })
    }
}

/// Kinds of audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Created,
    Revoked,
    Deleted,
    DeniedCreate,
    /// A token tried to revoke a token beyond its own scopes.
    DeniedRevoke,
    /// A token tried to delete a token beyond its own scopes.
    DeniedDelete,
    /// A token's rate limit was set, changed or removed.
    RateLimitChanged,
    /// A token tried to change a token's rate limit beyond its reach.
    DeniedUpdate,
}

impl Event {
    pub const ALL: [Event; 8] = [
        Event::Created,
        Event::Revoked,
        Event::Deleted,
        Event::DeniedCreate,
        Event::DeniedRevoke,
        Event::DeniedDelete,
        Event::RateLimitChanged,
        Event::DeniedUpdate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Revoked => "revoked",
            Event::Deleted => "deleted",
            Event::DeniedCreate => "denied_create",
            Event::DeniedRevoke => "denied_revoke",
            Event::DeniedDelete => "denied_delete",
            Event::RateLimitChanged => "rate_limit_changed",
            Event::DeniedUpdate => "denied_update",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One audit event, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub at: i64,
    pub event: Event,
    pub tenant: String,
    pub project: String,
    pub token_id: Option<String>,
    pub token_name: Option<String>,
    pub token_sha: Option<String>,
    /// `admin` or `McpToken:<token_sha>` (docs/DESIGN.md §5).
    pub actor: String,
    pub detail: Value,
}

/// One audit event, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub event: NewAuditEvent,
}

impl AuditRecord {
    pub fn view(&self) -> Value {
        let e = &self.event;
        json!({
            "seq": self.seq,
            "at": rfc3339::format(e.at),
            "event": e.event.as_str(),
            "tenant": e.tenant,
            "project": e.project,
            "token_id": e.token_id,
            "token_name": e.token_name,
            "token_sha": e.token_sha,
            "actor": e.actor,
            "detail": e.detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TokenRecord {
        TokenRecord {
            id: "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            token_sha: "ab".repeat(32),
            name: "ci".into(),
            tenant: "acme".into(),
            project: "default".into(),
            scopes: vec!["mcp:*".into()],
            hint: "mcpctl_pat_AbC1…".into(),
            created_by: "admin".into(),
            created_at: 1_795_459_243,
            expires_at: Some(1_795_459_243 + 60),
            revoked_at: None,
            last_used_at: None,
            rate_limit: None,
        }
    }

    #[test]
    fn status_follows_revocation_then_expiry() {
        let mut r = record();
        assert_eq!(r.status(1_795_459_243 + 59), Status::Active);
        assert_eq!(r.status(1_795_459_243 + 60), Status::Expired);
        r.revoked_at = Some(1_795_459_243 + 1);
        assert_eq!(r.status(1_795_459_243 + 2), Status::Revoked);
        assert_eq!(r.status(1_795_459_243 + 600), Status::Revoked);
        r.revoked_at = None;
        r.expires_at = None;
        assert_eq!(r.status(i64::MAX), Status::Active);
    }

    #[test]
    fn view_has_the_fields_and_never_the_hash() {
        let v = record().view(1_795_459_243);
        assert_eq!(
            v,
            json!({
                "id": "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV",
                "name": "ci",
                "tenant": "acme",
                "project": "default",
                "scopes": ["mcp:*"],
                "status": "active",
                "hint": "mcpctl_pat_AbC1…",
                "created_by": "admin",
                "created_at": "2026-11-23T18:40:43Z",
                "expires_at": "2026-11-23T18:41:43Z",
                "revoked_at": null,
                "last_used_at": null,
                "rate_limit": null,
            })
        );
        assert!(!v.to_string().contains(&"ab".repeat(32)));
        let mut limited = record();
        limited.rate_limit = Some(RateLimit {
            requests: 60,
            window_s: 60,
            burst: 10,
        });
        assert_eq!(
            limited.view(0)["rate_limit"],
            json!({"requests": 60, "window_s": 60, "burst": 10})
        );
    }
}
