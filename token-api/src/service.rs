//! The operations of docs/DESIGN.md §6 behind a plain request/response interface, so
//! the whole API runs on the host in tests, on a real SQLite database; the
//! Spin entry point only converts types.

use mcpgw_token::format;
use mcpgw_token::scopes::{self, Scope};
use serde_json::{json, Value};

use crate::auth::{self, Credential, Principal};
use crate::body::{self, BodySource, CreateBody, Rbac};
use crate::config::Config;
use crate::cursor::{AuditCursor, ListCursor, Since};
use crate::error::ApiError;
use crate::model::{Event, NewAuditEvent, Status, TokenRecord};
use crate::query::Query;
use crate::routes::{route, Route};
use crate::store::{AuditFilter, Created, Db, Store, StoreError, TokenFilter};
use crate::{console, rfc3339, ttl, ulid, validate};

/// Default and largest page of the list and audit routes.
pub const PAGE_DEFAULT: u32 = 50;
pub const PAGE_MAX: u32 = 500;
/// Largest page of the revocations feed.
pub const FEED_PAGE: u32 = 1_000;

/// What the service needs of an HTTP request besides its body.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Every `Authorization` header value, in order.
    pub authorization: Vec<String>,
    pub content_type: Option<String>,
    pub content_length: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn json(status: u16, value: &Value) -> Self {
        Response {
            status,
            headers: vec![
                ("content-type", "application/json".into()),
                // Token answers must not sit in shared caches.
                ("cache-control", "no-store".into()),
            ],
            body: value.to_string().into_bytes(),
        }
    }

    fn error(e: ApiError) -> Self {
        let mut r = Response::json(e.status, &Value::Null);
        r.body = e.body();
        r.headers.extend(e.headers);
        r
    }

    /// The body as JSON (tests and tools).
    pub fn json_body(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Handles one request. `config` is `Err` (with the reason, for the log) when
/// the Spin variables are wrong; only `/health` works then.
pub async fn handle<D: Db, B: BodySource>(
    head: &RequestHead,
    body: B,
    config: Result<&Config, &str>,
    now_ms: i64,
    db: &D,
) -> Response {
    let now = now_ms.div_euclid(1000);
    let result = match route(&head.method, &head.path) {
        Err(e) => Err(e),
        Ok(Route::Health) => return health(db).await,
        // Static files: no configuration, no storage.
        Ok(Route::Console(path)) => console::serve(&head.method, &path),
        Ok(r) => match config {
            Err(why) => Err(ApiError::internal(format!("configuration: {why}"))),
            Ok(config) => {
                let svc = Service {
                    store: Store::new(db),
                    config,
                    now,
                    now_ms,
                };
                svc.dispatch(r, head, body).await
            }
        },
    };
    result.unwrap_or_else(|e| {
        if let Some(detail) = &e.log {
            eprintln!("token-api: {} {}: {detail}", head.method, head.path);
        }
        Response::error(e)
    })
}

async fn health<D: Db>(db: &D) -> Response {
    match Store::new(db).ping().await {
        Ok(()) => Response::json(200, &json!({"status": "ok", "storage": "ok"})),
        Err(e) => {
            eprintln!("token-api: health: {e}");
            Response::json(503, &json!({"status": "error", "storage": "unreachable"}))
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e.to_string())
    }
}

struct Service<'a, D: Db> {
    store: Store<'a, D>,
    config: &'a Config,
    now: i64,
    now_ms: i64,
}

impl<D: Db> Service<'_, D> {
    async fn dispatch<B: BodySource>(
        &self,
        route: Route,
        head: &RequestHead,
        mut body: B,
    ) -> Result<Response, ApiError> {
        let query = |allowed: &[&str]| Query::parse(head.query.as_deref(), allowed);
        match route {
            Route::Introspect => {
                query(&[])?;
                self.introspect(head).await
            }
            Route::Revocations => self.revocations(&query(&["since"])?).await,
            Route::Health => Err(ApiError::internal("health is answered before dispatch")),
            management => {
                self.store.ensure_schema(self.now).await?;
                let who = self.authenticate(head).await?;
                match management {
                    Route::CreateToken => {
                        query(&[])?;
                        who.require(&Scope::TokensWrite, "creating a token")?;
                        body::require_json(head.content_type.as_deref())?;
                        let bytes =
                            body::read_capped(head.content_length.as_deref(), &mut body).await?;
                        self.create(&who, CreateBody::parse(&bytes)?).await
                    }
                    Route::ListTokens => {
                        who.require(&Scope::TokensRead, "listing tokens")?;
                        let q = query(&[
                            "tenant",
                            "project",
                            "status",
                            "include_revoked",
                            "limit",
                            "cursor",
                        ])?;
                        self.list(&who, &q).await
                    }
                    Route::DescribeToken(id) => {
                        query(&[])?;
                        who.require(&Scope::TokensRead, "describing a token")?;
                        self.describe(&who, &id).await
                    }
                    Route::RevokeToken(id) => {
                        query(&[])?;
                        who.require(&Scope::TokensWrite, "revoking a token")?;
                        let bytes =
                            body::read_capped(head.content_length.as_deref(), &mut body).await?;
                        let reason = body::parse_revoke(&bytes, head.content_type.as_deref())?;
                        self.revoke(&who, &id, reason).await
                    }
                    Route::DeleteToken(id) => {
                        query(&[])?;
                        who.require(&Scope::TokensWrite, "deleting a token")?;
                        self.delete(&who, &id).await
                    }
                    Route::Audit => {
                        who.require(&Scope::TokensRead, "reading the audit log")?;
                        let q = query(&["tenant", "project", "token_id", "limit", "cursor"])?;
                        self.audit(&who, &q).await
                    }
                    Route::WhoAmI => {
                        query(&[])?;
                        Ok(Response::json(200, &console::whoami(&who, self.config)))
                    }
                    Route::Introspect | Route::Revocations | Route::Health | Route::Console(_) => {
                        Err(ApiError::internal("route dispatched twice"))
                    }
                }
            }
        }
    }

    /// The admin key, or an active token (whose use is recorded like introspection's).
    async fn authenticate(&self, head: &RequestHead) -> Result<Principal, ApiError> {
        let credential = auth::bearer(&head.authorization)?;
        match auth::classify(credential, &self.config.admin_key_sha256)? {
            Credential::Admin => Ok(Principal::Admin),
            Credential::Token { sha } => {
                let record = self.store.token_by_sha(&sha, self.now).await?;
                let last_used_at = record.as_ref().and_then(|r| r.last_used_at);
                let principal = auth::token_principal(record, self.now)?;
                if let Principal::Token(t) = &principal {
                    self.touch(&t.id, last_used_at).await;
                }
                Ok(principal)
            }
        }
    }

    /// `last_used_at` is bookkeeping: failing to write it never fails a request.
    /// Skipped when the row just read says it was written within the minute,
    /// so a busy token's introspection stays one read, not a read and a write.
    async fn touch(&self, id: &str, last_used_at: Option<i64>) {
        if last_used_at.is_some_and(|t| t > self.now - 60) {
            return;
        }
        if let Err(e) = self.store.touch(id, self.now).await {
            eprintln!("token-api: last_used_at of {id} not updated: {e}");
        }
    }

    async fn introspect(&self, head: &RequestHead) -> Result<Response, ApiError> {
        let token = auth::bearer(&head.authorization)?;
        let inactive = |reason: &str| {
            Ok(Response::json(
                200,
                &json!({"active": false, "reason": reason}),
            ))
        };
        // A malformed token costs no query at all.
        if format::validate(token).is_err() {
            return inactive("malformed");
        }
        let sha = format::sha256_hex(token);
        let Some(t) = self.store.token_by_sha(&sha, self.now).await? else {
            return inactive("unknown");
        };
        match t.status(self.now) {
            Status::Revoked => inactive("revoked"),
            Status::Expired => inactive("expired"),
            Status::Active => {
                self.touch(&t.id, t.last_used_at).await;
                let cap = i64::from(self.config.default_cache_ttl_s);
                let cache_ttl_s = t.expires_at.map_or(cap, |exp| cap.min(exp - self.now));
                Ok(Response::json(
                    200,
                    &json!({
                        "active": true,
                        "token_id": t.id,
                        "name": t.name,
                        "tenant": t.tenant,
                        "project": t.project,
                        "scopes": t.scopes,
                        "exp": t.expires_at,
                        "iat": t.created_at,
                        "cache_ttl_s": cache_ttl_s,
                    }),
                ))
            }
        }
    }

    async fn revocations(&self, q: &Query) -> Result<Response, ApiError> {
        let (cursor, revoked, more) = match Since::parse(q.get("since"))? {
            Since::Now => (self.store.revocations_head(self.now).await?, vec![], false),
            Since::After(after) => {
                let mut page = self
                    .store
                    .revocations(after, FEED_PAGE + 1, self.now)
                    .await?;
                let more = page.len() > FEED_PAGE as usize;
                page.truncate(FEED_PAGE as usize);
                let cursor = page.last().map_or(after, |(seq, _)| *seq);
                (cursor, page.into_iter().map(|(_, sha)| sha).collect(), more)
            }
        };
        Ok(Response::json(
            200,
            &json!({"cursor": cursor.to_string(), "revoked": revoked, "more": more}),
        ))
    }

    async fn create(&self, who: &Principal, req: CreateBody) -> Result<Response, ApiError> {
        validate::name(&req.name)?;
        validate::label("tenant", &req.tenant)?;
        // A token creating tokens stays in its own project unless it names one.
        let project = req
            .project
            .clone()
            .or_else(|| who.owner().map(|o| o.project.to_owned()))
            .unwrap_or_else(|| "default".to_owned());
        validate::label("project", &project)?;
        let expires_at = ttl::resolve(
            req.ttl.as_deref(),
            req.expires_at.as_deref(),
            self.now,
            &self.config.ttl,
        )?;
        let scopes = self.requested_scopes(who, &req)?;

        if let Principal::Token(creator) = who {
            let denied = if let Err(e) = who.check_tenant(Some(&req.tenant), Some(&project)) {
                Some((
                    e,
                    json!({"reason": "tenant_mismatch", "tenant": req.tenant, "project": project}),
                ))
            } else {
                scopes::first_uncovered(&scopes, &creator.scopes).map(|s| {
                    let s = s.to_string();
                    let e = ApiError::forbidden(
                        "scope_exceeds_ceiling",
                        format!(
                            "scope {s:?} is not covered by the creating token's own scopes; \
                             request only scopes it holds, or send \"rbac\": \"clone\" to copy them"
                        ),
                    );
                    (e, json!({"reason": "scope_exceeds_ceiling", "scope": s}))
                })
            };
            if let Some((e, detail)) = denied {
                self.store
                    .audit(&NewAuditEvent {
                        at: self.now,
                        event: Event::DeniedCreate,
                        tenant: creator.tenant.clone(),
                        project: creator.project.clone(),
                        token_id: None,
                        token_name: Some(req.name.clone()),
                        token_sha: None,
                        actor: who.actor(),
                        detail,
                    })
                    .await?;
                return Err(e);
            }
        }

        let raw = format::generate().map_err(|e| ApiError::internal(format!("randomness: {e}")))?;
        let id = ulid::new_token_id(self.now_ms)
            .map_err(|e| ApiError::internal(format!("randomness: {e}")))?;
        let record = TokenRecord {
            id,
            token_sha: format::sha256_hex(&raw),
            name: req.name,
            tenant: req.tenant,
            project,
            scopes: scopes.iter().map(Scope::to_string).collect(),
            hint: format::hint(&raw),
            created_by: who.created_by(),
            created_at: self.now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let audit = NewAuditEvent {
            at: self.now,
            event: Event::Created,
            tenant: record.tenant.clone(),
            project: record.project.clone(),
            token_id: Some(record.id.clone()),
            token_name: Some(record.name.clone()),
            token_sha: Some(record.token_sha.clone()),
            actor: who.actor(),
            detail: json!({
                "scopes": record.scopes,
                "expires_at": record.expires_at.map(rfc3339::format),
            }),
        };
        match self.store.create(&record, &audit).await? {
            Created::Ok => {}
            Created::NameTaken { existing_id } => {
                return Err(ApiError::new(
                    409,
                    "name_taken",
                    format!(
                        "tenant {:?} project {:?} already has a live token named {:?} ({existing_id}); \
                         pick another name, or revoke or delete that token first",
                        record.tenant, record.project, record.name
                    ),
                ))
            }
        }
        let mut view = record.view(self.now);
        view["token"] = Value::String(raw);
        let mut resp = Response::json(201, &view);
        resp.headers
            .push(("location", format!("/api/v1/mcptokens/{}", record.id)));
        Ok(resp)
    }

    /// Explicit scopes bind; `rbac` clones the creator's or grants none; the
    /// default is `mcp:*`. Canonical and without duplicates.
    fn requested_scopes(&self, who: &Principal, req: &CreateBody) -> Result<Vec<Scope>, ApiError> {
        let parsed = match (&req.scopes, req.rbac) {
            (Some(list), _) => {
                scopes::parse_all(list).map_err(|e| ApiError::invalid("scopes", e.to_string()))?
            }
            (None, Some(Rbac::Empty)) => Vec::new(),
            (None, Some(Rbac::Clone)) => match who {
                Principal::Token(t) => t.scopes.clone(),
                Principal::Admin => return Err(ApiError::invalid(
                    "rbac",
                    "\"rbac\": \"clone\" copies the creating token's scopes, and the admin key \
                         has none; give \"scopes\" instead",
                )),
            },
            (None, None) => vec![Scope::Mcp {
                method: "*".into(),
                name: None,
            }],
        };
        let mut out: Vec<Scope> = Vec::with_capacity(parsed.len());
        for s in parsed {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }

    async fn list(&self, who: &Principal, q: &Query) -> Result<Response, ApiError> {
        let (tenant, project) = (q.get("tenant"), q.get("project"));
        for (field, value) in [("tenant", tenant), ("project", project)] {
            if let Some(v) = value {
                validate::label(field, v)?;
            }
        }
        who.check_tenant(tenant, project)?;
        let owner = who.owner();
        let filter = TokenFilter {
            tenant: owner.map(|o| o.tenant).or(tenant),
            project: owner.map(|o| o.project).or(project),
            include_revoked: q.flag("include_revoked", false)?,
            status: q.status()?,
        };
        let limit = q.limit(PAGE_DEFAULT, PAGE_MAX)?;
        let cursor = q.get("cursor").map(ListCursor::decode).transpose()?;
        let (tokens, next) = self
            .store
            .list(filter, limit, cursor.as_ref(), self.now)
            .await?;
        let views: Vec<Value> = tokens.iter().map(|t| t.view(self.now)).collect();
        Ok(Response::json(
            200,
            &json!({"tokens": views, "next_cursor": next.map(|c| c.encode())}),
        ))
    }

    /// The token if it exists and the caller may see it; otherwise 404 either
    /// way, so a token never learns what other tenants hold.
    fn not_found(id: &str) -> ApiError {
        ApiError::not_found(format!("no token {id:?} here; list tokens to find its id"))
    }

    async fn describe(&self, who: &Principal, id: &str) -> Result<Response, ApiError> {
        if !ulid::is_token_id(id) {
            return Err(Self::not_found(id));
        }
        let t = self.store.token_by_id(id, self.now).await?;
        match (t, who.owner()) {
            (Some(t), Some(o)) if t.tenant != o.tenant || t.project != o.project => {
                Err(Self::not_found(id))
            }
            (Some(t), _) => Ok(Response::json(200, &t.view(self.now))),
            (None, _) => Err(Self::not_found(id)),
        }
    }

    async fn revoke(
        &self,
        who: &Principal,
        id: &str,
        reason: Option<String>,
    ) -> Result<Response, ApiError> {
        if !ulid::is_token_id(id) {
            return Err(Self::not_found(id));
        }
        let detail = reason.map_or_else(|| json!({}), |r| json!({"reason": r}));
        match self
            .store
            .revoke(id, who.owner(), self.now, &who.actor(), &detail)
            .await?
        {
            Some((t, _)) => Ok(Response::json(200, &t.view(self.now))),
            None => Err(Self::not_found(id)),
        }
    }

    async fn delete(&self, who: &Principal, id: &str) -> Result<Response, ApiError> {
        if !ulid::is_token_id(id) {
            return Err(Self::not_found(id));
        }
        match self
            .store
            .delete(id, who.owner(), self.now, &who.actor())
            .await?
        {
            Some(_) => Ok(Response {
                status: 204,
                headers: vec![],
                body: vec![],
            }),
            None => Err(Self::not_found(id)),
        }
    }

    async fn audit(&self, who: &Principal, q: &Query) -> Result<Response, ApiError> {
        let (tenant, project, token_id) = (q.get("tenant"), q.get("project"), q.get("token_id"));
        for (field, value) in [("tenant", tenant), ("project", project)] {
            if let Some(v) = value {
                validate::label(field, v)?;
            }
        }
        if let Some(id) = token_id.filter(|id| !ulid::is_token_id(id)) {
            return Err(ApiError::invalid(
                "token_id",
                format!("token_id {id:?} is not a token id (tok_ followed by 26 characters)"),
            ));
        }
        who.check_tenant(tenant, project)?;
        let owner = who.owner();
        let filter = AuditFilter {
            tenant: owner.map(|o| o.tenant).or(tenant),
            project: owner.map(|o| o.project).or(project),
            token_id,
        };
        let limit = q.limit(PAGE_DEFAULT, PAGE_MAX)?;
        let cursor = q.get("cursor").map(AuditCursor::decode).transpose()?;
        let (events, next) = self
            .store
            .audit_page(filter, limit, cursor, self.now)
            .await?;
        let views: Vec<Value> = events.iter().map(|e| e.view()).collect();
        Ok(Response::json(
            200,
            &json!({"events": views, "next_cursor": next.map(|c| c.encode())}),
        ))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
