//! Metric names (Envoy stats; `/stats` shows them as `wasmcustom.<name>`,
//! Prometheus output without that prefix). All are counters.

/// Every counter the filter increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Metric {
    /// Requests forwarded with routing headers set.
    Allowed,
    /// Requests on a bypass path, forwarded without a token.
    Bypassed,
    /// 401: no, empty or non-Bearer `Authorization`, or two of them.
    DeniedMissing,
    /// 401: token fails the offline format check (no callout made).
    DeniedMalformed,
    /// 401: token unknown, revoked or expired.
    DeniedInvalid,
    /// 401: token sent in the query string.
    DeniedQueryToken,
    /// 403: JSON-RPC request outside the token's scopes.
    DeniedScope,
    /// 400: `Mcp-Method` / `Mcp-Name` headers disagree with the body.
    DeniedHeaderMismatch,
    /// 400: body is not JSON-RPC.
    DeniedBadBody,
    /// 413: body over `max_body_bytes` when it had to be inspected.
    DeniedBodyTooLarge,
    /// 503: token API unavailable and no stale decision to fall back on.
    DeniedUnavailable,
    /// 503 at once: `token_api.max_inflight` callouts already in flight.
    DeniedOverloaded,
    /// 429: the token's rate limit is spent.
    DeniedRateLimited,
    /// Decision found in this worker's cache.
    CacheHits,
    /// Decision found in the cross-worker shared cache.
    CacheSharedHits,
    /// No cached decision: a callout was made or joined.
    CacheMisses,
    /// Introspection callouts sent.
    Callouts,
    /// Introspection callouts that failed (down, timeout, non-200, garbage).
    CalloutFailures,
    /// Requests served from an expired decision because the token API failed.
    StaleServes,
    /// Cached decisions evicted by the revocations feed.
    RevocationsApplied,
    /// Requests that waited on another request's callout for the same token.
    CoalescedWaits,
    /// Decisions evicted from a full worker cache (any kind).
    CacheEvicted,
    /// Fresh active decisions evicted from a full worker cache: it is too
    /// small for the tokens in use (`cache.max_entries`).
    CacheEvictedActive,
    /// Revocations feed polls sent.
    FeedPolls,
    /// Revocations feed polls that failed.
    FeedFailures,
    /// Feed answers that said "reset": every cached decision was dropped.
    FeedResets,
    /// Cached decisions dropped because the feed said the token changed.
    ChangesApplied,
    /// Rate-limit slot writes that lost a compare-and-swap race with another
    /// worker and were decided again.
    RateLimitCasRetries,
    /// List results rewritten for a token that may not use every item.
    ListsFiltered,
    /// Items taken out of list results.
    ListItemsHidden,
    /// Answers to list requests withheld (compressed, not JSON, not one
    /// reading): the client got a JSON-RPC error instead.
    ListsWithheld,
    /// Of the rewritten list results, those recalled from the worker's memo
    /// (the same answer but for its id, met before).
    ListsRecalled,
}

impl Metric {
    pub const ALL: [Metric; 32] = [
        Metric::Allowed,
        Metric::Bypassed,
        Metric::DeniedMissing,
        Metric::DeniedMalformed,
        Metric::DeniedInvalid,
        Metric::DeniedQueryToken,
        Metric::DeniedScope,
        Metric::DeniedHeaderMismatch,
        Metric::DeniedBadBody,
        Metric::DeniedBodyTooLarge,
        Metric::DeniedUnavailable,
        Metric::DeniedOverloaded,
        Metric::DeniedRateLimited,
        Metric::CacheHits,
        Metric::CacheSharedHits,
        Metric::CacheMisses,
        Metric::Callouts,
        Metric::CalloutFailures,
        Metric::StaleServes,
        Metric::RevocationsApplied,
        Metric::CoalescedWaits,
        Metric::CacheEvicted,
        Metric::CacheEvictedActive,
        Metric::FeedPolls,
        Metric::FeedFailures,
        Metric::FeedResets,
        Metric::ChangesApplied,
        Metric::RateLimitCasRetries,
        Metric::ListsFiltered,
        Metric::ListItemsHidden,
        Metric::ListsWithheld,
        Metric::ListsRecalled,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::Allowed => "mcp_auth.allowed",
            Metric::Bypassed => "mcp_auth.bypassed",
            Metric::DeniedMissing => "mcp_auth.denied.missing",
            Metric::DeniedMalformed => "mcp_auth.denied.malformed",
            Metric::DeniedInvalid => "mcp_auth.denied.invalid",
            Metric::DeniedQueryToken => "mcp_auth.denied.query_token",
            Metric::DeniedScope => "mcp_auth.denied.scope",
            Metric::DeniedHeaderMismatch => "mcp_auth.denied.header_mismatch",
            Metric::DeniedBadBody => "mcp_auth.denied.bad_body",
            Metric::DeniedBodyTooLarge => "mcp_auth.denied.body_too_large",
            Metric::DeniedUnavailable => "mcp_auth.denied.unavailable",
            Metric::DeniedOverloaded => "mcp_auth.denied.overloaded",
            Metric::DeniedRateLimited => "mcp_auth.denied.rate_limited",
            Metric::CacheHits => "mcp_auth.cache.hits",
            Metric::CacheSharedHits => "mcp_auth.cache.shared_hits",
            Metric::CacheMisses => "mcp_auth.cache.misses",
            Metric::Callouts => "mcp_auth.callouts",
            Metric::CalloutFailures => "mcp_auth.callout_failures",
            Metric::StaleServes => "mcp_auth.stale_serves",
            Metric::RevocationsApplied => "mcp_auth.revocations_applied",
            Metric::CoalescedWaits => "mcp_auth.coalesced_waits",
            Metric::CacheEvicted => "mcp_auth.cache.evicted",
            Metric::CacheEvictedActive => "mcp_auth.cache.evicted_active",
            Metric::FeedPolls => "mcp_auth.feed.polls",
            Metric::FeedFailures => "mcp_auth.feed.failures",
            Metric::FeedResets => "mcp_auth.feed.resets",
            Metric::ChangesApplied => "mcp_auth.changes_applied",
            Metric::RateLimitCasRetries => "mcp_auth.ratelimit.cas_retries",
            Metric::ListsFiltered => "mcp_auth.lists.filtered",
            Metric::ListItemsHidden => "mcp_auth.lists.hidden_items",
            Metric::ListsWithheld => "mcp_auth.lists.withheld",
            Metric::ListsRecalled => "mcp_auth.lists.recalled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_lists_each_metric_once_in_discriminant_order() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i, "{m:?}");
        }
        let names: HashSet<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Metric::ALL.len());
    }

    #[test]
    fn names_share_the_prefix_and_are_stat_safe() {
        for m in Metric::ALL {
            let n = m.name();
            assert!(n.starts_with("mcp_auth."), "{n}");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{n}"
            );
        }
    }
}
