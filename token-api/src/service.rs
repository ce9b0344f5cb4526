//! The operations of docs/DESIGN.md §6 behind a plain request/response interface, so
//! the whole API runs on the host in tests, on a real SQLite database; the
//! Spin entry point only converts types.

use mcpgw_token::format;
use mcpgw_token::ratelimit::RateLimit;
use mcpgw_token::scopes::{self, Scope};
use mcpgw_token::wire::{
    self, ActiveToken, FeedCursor, FeedPage, InactiveReason, Introspection, Since,
};
use serde_json::{json, Value};

use crate::auth::{self, Credential, Principal};
use crate::body::{self, BodySource, CreateBody, LimitAsked, Rbac, UpdateBody};
use crate::config::Config;
use crate::cursor::{AuditCursor, ListCursor};
use crate::error::ApiError;
use crate::model::{Event, NewAuditEvent, Status, TokenRecord};
use crate::query::Query;
use crate::routes::{route, Route};
use crate::store::{
    AuditFilter, Created, Db, FeedRead, Store, StoreError, TokenFilter, SCHEMA_VERSION,
};
use crate::{console, rfc3339, ttl, ulid, validate};

/// Default and largest page of the list and audit routes.
pub const PAGE_DEFAULT: u32 = 50;
pub const PAGE_MAX: u32 = 500;
/// Largest page of the revocations feed.
pub const FEED_PAGE: u32 = wire::FEED_PAGE_MAX;

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
        Self::json_text(status, value.to_string())
    }

    fn json_text(status: u16, text: String) -> Self {
        Response {
            status,
            headers: vec![
                ("content-type", "application/json".into()),
                // Token answers must not sit in shared caches.
                ("cache-control", "no-store".into()),
            ],
            body: text.into_bytes(),
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
                    store: Store::new(db).pruning(config.feed_retention_s),
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

/// Liveness and storage: which store, whether it answers, and the schema
/// version there next to the one this code needs (a lower one is migrated
/// on the next management request). Details of a failure go to the log.
async fn health<D: Db>(db: &D) -> Response {
    let store = Store::new(db);
    let name = store.dialect().name();
    let version = match store.ping().await {
        Ok(()) => store.schema_version().await,
        Err(e) => Err(e),
    };
    match version {
        Ok(v) => Response::json(
            200,
            &json!({"status": "ok", "storage": "ok", "store": name,
                    "schema_version": v, "schema_version_required": SCHEMA_VERSION}),
        ),
        Err(e) => {
            eprintln!("token-api: health: {name}: {e}");
            let storage = if e.is_unavailable() {
                "unavailable"
            } else {
                "unreachable"
            };
            Response::json(
                503,
                &json!({"status": "error", "storage": storage, "store": name,
                        "message": format!("the {name} store does not answer; the token API's log says why")}),
            )
        }
    }
}

/// A token with a rate limit may not mint or set one that may do more than
/// itself: the denial when `asked` (None = no limit) exceeds `ceiling`.
fn exceeds_limit(
    ceiling: Option<RateLimit>,
    asked: Option<RateLimit>,
    doing: &str,
) -> Option<(ApiError, Value)> {
    let ceiling = ceiling?;
    if asked.is_some_and(|a| ceiling.covers(&a)) {
        return None;
    }
    let asked_text = asked.map_or_else(|| "no limit".to_owned(), |a| a.to_string());
    let e = ApiError::forbidden(
        "rate_limit_exceeds_ceiling",
        format!(
            "{doing} would allow {asked_text}, more than this token's own rate limit of \
             {ceiling}; ask for a limit within it (no faster, no larger burst), or use the \
             admin key"
        ),
    );
    let detail = json!({"reason": "rate_limit_exceeds_ceiling", "rate_limit": asked,
                        "ceiling": ceiling});
    Some((e, detail))
}

/// A token may not mint a token that outlives it: the denial when
/// `expires_at` (None = never) is after the creator's expiry.
fn outlives(creator: Option<i64>, expires_at: Option<i64>) -> Option<(ApiError, Value)> {
    let limit = creator?;
    if expires_at.is_some_and(|e| e <= limit) {
        return None;
    }
    let asked = expires_at.map_or_else(|| "never".to_owned(), rfc3339::format);
    let limit = rfc3339::format(limit);
    let e = ApiError::forbidden(
        "expiry_exceeds_creator",
        format!(
            "the new token would expire {asked}, after the creating token, which expires at \
             {limit}; a token cannot mint one that outlives it: give a \"ttl\" or \
             \"expires_at\" no later than {limit}"
        ),
    );
    let detail = json!({"reason": "expiry_exceeds_creator", "expires_at": expires_at.map(rfc3339::format),
                        "creator_expires_at": limit});
    Some((e, detail))
}

/// The feed's answer to `since`, given what the store read (with up to
/// `FEED_PAGE + 1` entries: one past the page says `more`).
pub fn feed_page(since: &Since, read: FeedRead) -> FeedPage {
    let FeedRead {
        epoch,
        pruned_through,
        head,
        mut entries,
        changed,
    } = read;
    let cursor = |seq: i64| {
        FeedCursor {
            epoch: epoch.clone(),
            seq: u64::try_from(seq).unwrap_or(0),
        }
        .to_string()
    };
    let at_head = |reset| FeedPage {
        cursor: cursor(head),
        revoked: Vec::new(),
        changed: Vec::new(),
        more: false,
        reset,
    };
    let after = match since {
        Since::Now => return at_head(false),
        Since::Legacy(_) => return at_head(true),
        Since::Beginning => 0,
        Since::After(c) => {
            let seq = i64::try_from(c.seq).unwrap_or(i64::MAX);
            if c.epoch != epoch || seq > head || seq < pruned_through {
                return at_head(true);
            }
            seq
        }
    };
    let more = entries.len() > FEED_PAGE as usize;
    entries.truncate(FEED_PAGE as usize);
    let last = entries
        .last()
        .map_or(after.max(pruned_through), |(seq, _)| *seq);
    let (changed, revoked): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(seq, _)| changed.contains(seq));
    FeedPage {
        cursor: cursor(last),
        revoked: revoked.into_iter().map(|(_, sha)| sha).collect(),
        changed: changed.into_iter().map(|(_, sha)| sha).collect(),
        more,
        reset: false,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::storage_unavailable(e.to_string())
        } else {
            ApiError::internal(e.to_string())
        }
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
                    Route::UpdateToken(id) => {
                        query(&[])?;
                        who.require(&Scope::TokensWrite, "changing a token")?;
                        body::require_json(head.content_type.as_deref())?;
                        let bytes =
                            body::read_capped(head.content_length.as_deref(), &mut body).await?;
                        self.update(&who, &id, UpdateBody::parse(&bytes)?).await
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
        let answer = |i: Introspection| Ok(Response::json_text(200, i.to_json()));
        let inactive = |r| answer(Introspection::Inactive(r));
        // A malformed token costs no query at all.
        if format::validate(token).is_err() {
            return inactive(InactiveReason::Malformed);
        }
        let sha = format::sha256_hex(token);
        let Some(t) = self.store.token_by_sha(&sha, self.now).await? else {
            return inactive(InactiveReason::Unknown);
        };
        match t.status(self.now) {
            Status::Revoked => inactive(InactiveReason::Revoked),
            Status::Expired => inactive(InactiveReason::Expired),
            Status::Active => {
                self.touch(&t.id, t.last_used_at).await;
                let cap = i64::from(self.config.default_cache_ttl_s);
                let cache_ttl_s = t.expires_at.map_or(cap, |exp| cap.min(exp - self.now));
                let secs = |s: i64| u64::try_from(s).unwrap_or(0);
                answer(Introspection::Active(ActiveToken {
                    token_id: t.id,
                    name: t.name,
                    tenant: t.tenant,
                    project: t.project,
                    scopes: t.scopes,
                    exp: t.expires_at.map(secs),
                    iat: secs(t.created_at),
                    cache_ttl_s: secs(cache_ttl_s),
                    rate_limit: t.rate_limit,
                }))
            }
        }
    }

    /// A page of the feed from `since`. A cursor this feed cannot continue
    /// (another database's epoch, past the head after a restore, older than
    /// what was pruned, or a plain number from before cursors had an epoch)
    /// gets a reset: the head cursor and no hashes, so the gateway knows to
    /// drop what it cached instead of silently missing revocations.
    async fn revocations(&self, q: &Query) -> Result<Response, ApiError> {
        let since = Since::parse(q.get("since")).map_err(|e| ApiError::invalid("since", e.0))?;
        let (after, limit) = match &since {
            Since::Beginning => (0, FEED_PAGE + 1),
            Since::After(c) => (i64::try_from(c.seq).unwrap_or(i64::MAX), FEED_PAGE + 1),
            Since::Now | Since::Legacy(_) => (i64::MAX, 0),
        };
        let read = self.store.revocations(after, limit, self.now).await?;
        Ok(Response::json_text(200, feed_page(&since, read).to_json()))
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
        let mut expires_at = ttl::resolve(
            req.ttl.as_deref(),
            req.expires_at.as_deref(),
            self.now,
            &self.config.ttl,
        )?;
        // No lifetime asked for: the default stops at the creator's expiry.
        // One asked for beyond it is refused below.
        if let (None, None, Principal::Token(creator)) = (&req.ttl, &req.expires_at, who) {
            if let Some(limit) = creator.expires_at {
                expires_at = Some(expires_at.map_or(limit, |e| e.min(limit)));
            }
        }
        let scopes = self.requested_scopes(who, &req)?;
        let creator_limit = match who {
            Principal::Token(creator) => creator.rate_limit,
            Principal::Admin => None,
        };
        let rate_limit = match req.rate_limit {
            LimitAsked::Limit(l) => Some(l),
            LimitAsked::None => None,
            // The operator's default for the tenant, within the creator's own
            // limit: a limited token's children get at most its limit.
            LimitAsked::Default => match (
                self.config.rate_limits.for_tenant(&req.tenant),
                creator_limit,
            ) {
                (Some(d), Some(c)) if c.covers(&d) => Some(d),
                (_, Some(c)) => Some(c),
                (d, None) => d,
            },
        };

        if let Principal::Token(creator) = who {
            let denied = if let Err(e) = who.check_tenant(Some(&req.tenant), Some(&project)) {
                Some((
                    e,
                    json!({"reason": "tenant_mismatch", "tenant": req.tenant, "project": project}),
                ))
            } else {
                scopes::first_uncovered(&scopes, &creator.scopes)
                    .map(|s| {
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
                    .or_else(|| outlives(creator.expires_at, expires_at))
                    .or_else(|| exceeds_limit(creator.rate_limit, rate_limit, "the new token"))
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
            rate_limit,
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
                "rate_limit": record.rate_limit,
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

    /// The same 404 for a token that does not exist and one the caller may
    /// not see.
    fn not_found(id: &str) -> ApiError {
        ApiError::not_found(format!("no token {id:?} here; list tokens to find its id"))
    }

    async fn describe(&self, who: &Principal, id: &str) -> Result<Response, ApiError> {
        let t = self.visible(who, id).await?;
        self.with_lineage(&t).await
    }

    /// The token view plus its place in revocation cascades: `revoked_via`
    /// (the token whose revocation or deletion revoked it) and
    /// `cascade_revoked` (how many tokens were revoked because it was).
    async fn with_lineage(&self, t: &TokenRecord) -> Result<Response, ApiError> {
        let lineage = self.store.lineage(&t.id, self.now).await?;
        let mut view = t.view(self.now);
        view["revoked_via"] = lineage.revoked_via.into();
        view["cascade_revoked"] = lineage.cascade_revoked.into();
        Ok(Response::json(200, &view))
    }

    /// The token with this id if the caller may see it; otherwise 404 either
    /// way, so a token never learns what other tenants hold.
    async fn visible(&self, who: &Principal, id: &str) -> Result<TokenRecord, ApiError> {
        if !ulid::is_token_id(id) {
            return Err(Self::not_found(id));
        }
        match (self.store.token_by_id(id, self.now).await?, who.owner()) {
            (Some(t), Some(o)) if t.tenant != o.tenant || t.project != o.project => {
                Err(Self::not_found(id))
            }
            (Some(t), _) => Ok(t),
            (None, _) => Err(Self::not_found(id)),
        }
    }

    /// A token may revoke or delete only tokens its own scopes cover, so a
    /// narrow `tokens:write` token cannot take down broader tokens an admin
    /// minted in its project. Refusals are audited (`event`).
    async fn check_reach(
        &self,
        who: &Principal,
        target: &TokenRecord,
        event: Event,
        doing: &str,
    ) -> Result<(), ApiError> {
        let Principal::Token(actor) = who else {
            return Ok(());
        };
        let held = scopes::parse_all(&target.scopes)
            .map_err(|e| ApiError::internal(format!("token {} has a stored {e}", target.id)))?;
        let Some(s) = scopes::first_uncovered(&held, &actor.scopes) else {
            return Ok(());
        };
        let s = s.to_string();
        self.store
            .audit(&NewAuditEvent {
                at: self.now,
                event,
                tenant: target.tenant.clone(),
                project: target.project.clone(),
                token_id: Some(target.id.clone()),
                token_name: Some(target.name.clone()),
                token_sha: Some(target.token_sha.clone()),
                actor: who.actor(),
                detail: json!({"reason": "scope_exceeds_ceiling", "scope": s}),
            })
            .await?;
        Err(ApiError::forbidden(
            "scope_exceeds_ceiling",
            format!(
                "token {} holds scope {s:?}, which this token's own scopes do not cover; \
                 a token may {doing} only tokens within its scopes: use the admin key, or a \
                 token whose scopes cover it",
                target.id
            ),
        ))
    }

    async fn revoke(
        &self,
        who: &Principal,
        id: &str,
        reason: Option<String>,
    ) -> Result<Response, ApiError> {
        let target = self.visible(who, id).await?;
        self.check_reach(who, &target, Event::DeniedRevoke, "revoke")
            .await?;
        let detail = reason.map_or_else(|| json!({}), |r| json!({"reason": r}));
        match self
            .store
            .revoke(id, who.owner(), self.now, &who.actor(), &detail)
            .await?
        {
            Some(r) => self.with_lineage(&r.token).await,
            None => Err(Self::not_found(id)),
        }
    }

    /// Changes a live token's rate limit; gateways drop their cached answer
    /// when their feed poll sees the change, and ask again. A token (not the
    /// admin) may change only tokens its scopes cover, and never to more than
    /// its own limit (a token may lower its own).
    async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateBody,
    ) -> Result<Response, ApiError> {
        let target = self.visible(who, id).await?;
        self.check_reach(who, &target, Event::DeniedUpdate, "change")
            .await?;
        if let Principal::Token(actor) = who {
            if let Some((e, detail)) =
                exceeds_limit(actor.rate_limit, req.rate_limit, "this change")
            {
                self.store
                    .audit(&NewAuditEvent {
                        at: self.now,
                        event: Event::DeniedUpdate,
                        tenant: target.tenant.clone(),
                        project: target.project.clone(),
                        token_id: Some(target.id.clone()),
                        token_name: Some(target.name.clone()),
                        token_sha: Some(target.token_sha.clone()),
                        actor: who.actor(),
                        detail,
                    })
                    .await?;
                return Err(e);
            }
        }
        match self
            .store
            .set_rate_limit(id, who.owner(), req.rate_limit, self.now, &who.actor())
            .await?
        {
            Some(set) if set.token.revoked_at.is_some() => Err(ApiError::new(
                409,
                "token_revoked",
                format!("token {id} is revoked; a revoked token cannot be changed"),
            )),
            Some(set) => {
                let mut view = set.token.view(self.now);
                view["cascade_limited"] = set.cascaded.len().into();
                Ok(Response::json(200, &view))
            }
            None => Err(Self::not_found(id)),
        }
    }

    async fn delete(&self, who: &Principal, id: &str) -> Result<Response, ApiError> {
        let target = self.visible(who, id).await?;
        self.check_reach(who, &target, Event::DeniedDelete, "delete")
            .await?;
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

/// The same tests again on a real PostgreSQL server: the module name picks
/// the engine (`testdb::AnyTestDb::for_module`).
#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "service/tests.rs"]
#[allow(clippy::duplicate_mod)] // on purpose: once per engine
mod tests_postgres;
