//! What PostgreSQL needs written its own way: the schema (BIGINT times,
//! BIGSERIAL sequences, byte-order ids), `$n` placeholders, the advisory
//! locks that serialise migrations and feed writes across instances, and
//! which SQLSTATEs mean "schema missing" or "try again later".
//!
//! Why feed writes take a lock: two instances revoking at once may commit
//! out of the order of their feed sequence numbers (B takes 8 and commits
//! while A, holding 7, has not). A gateway reading between the two commits
//! moves its cursor to 8 and never sees 7. Every transaction that writes the
//! feed therefore takes one transaction-scoped advisory lock first: a second
//! writer waits until the first has committed, so sequence numbers become
//! visible in order and a cursor never passes a number still to come.

use super::{DbErrorKind, Migration};

/// `pg_advisory_xact_lock` key held while migrating ("mcpgw" + 1).
pub const MIGRATION_LOCK: i64 = 0x6d63_7067_7700_0001;
/// `pg_advisory_xact_lock` key held by every transaction that writes the feed.
pub const FEED_LOCK: i64 = 0x6d63_7067_7700_0002;

pub const SCHEMA_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version    BIGINT PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";

/// The same schema as SQLite's, version for version.
pub const MIGRATIONS: &[Migration] = &[MIGRATION_1, MIGRATION_2, MIGRATION_3];

/// Tokens, the revocations feed, the audit log.
const MIGRATION_1: Migration = &[
    // Ids compare byte by byte, as in SQLite, whatever the database locale.
    r#"CREATE TABLE IF NOT EXISTS tokens (
        id           TEXT COLLATE "C" PRIMARY KEY,
        token_sha    TEXT NOT NULL UNIQUE,
        name         TEXT NOT NULL,
        tenant       TEXT NOT NULL,
        project      TEXT NOT NULL,
        scopes       TEXT NOT NULL,
        hint         TEXT NOT NULL,
        created_by   TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT,
        revoked_at   BIGINT,
        last_used_at BIGINT
    )"#,
    // Live names are unique: the database decides, whichever instance asks.
    "CREATE UNIQUE INDEX IF NOT EXISTS tokens_live_name
        ON tokens (tenant, project, name) WHERE revoked_at IS NULL",
    "CREATE INDEX IF NOT EXISTS tokens_by_created ON tokens (created_at, id)",
    "CREATE INDEX IF NOT EXISTS tokens_by_tenant ON tokens (tenant, created_at, id)",
    "CREATE INDEX IF NOT EXISTS tokens_by_project ON tokens (tenant, project, created_at, id)",
    "CREATE TABLE IF NOT EXISTS revocations (
        seq       BIGSERIAL PRIMARY KEY,
        token_sha TEXT NOT NULL,
        at        BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit (
        seq        BIGSERIAL PRIMARY KEY,
        at         BIGINT NOT NULL,
        event      TEXT NOT NULL,
        tenant     TEXT NOT NULL,
        project    TEXT NOT NULL,
        token_id   TEXT,
        token_name TEXT,
        token_sha  TEXT,
        actor      TEXT NOT NULL,
        detail     TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS audit_by_project ON audit (tenant, project, seq)",
    "CREATE INDEX IF NOT EXISTS audit_by_token ON audit (token_id, seq)",
];

/// The feed's epoch and pruning horizon; token lineage.
const MIGRATION_2: Migration = &[
    "CREATE TABLE IF NOT EXISTS feed_state (
        id             BIGINT PRIMARY KEY CHECK (id = 1),
        epoch          TEXT NOT NULL,
        pruned_through BIGINT NOT NULL
    )",
    // 16 random hex digits, like SQLite's lower(hex(randomblob(8))).
    "INSERT INTO feed_state (id, epoch, pruned_through)
        VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 16), 0)
        ON CONFLICT DO NOTHING",
    "CREATE INDEX IF NOT EXISTS revocations_by_at ON revocations (at)",
    "CREATE INDEX IF NOT EXISTS tokens_by_creator ON tokens (created_by)",
    r#"CREATE TABLE IF NOT EXISTS cascades (
        id  TEXT COLLATE "C" PRIMARY KEY,
        via TEXT NOT NULL
    )"#,
    "CREATE INDEX IF NOT EXISTS cascades_by_via ON cascades (via)",
];

/// Rate limits; the feed also carries tokens whose answer changed.
const MIGRATION_3: Migration = &[
    // `{"requests", "window_s", "burst"}`, or NULL for no limit.
    "ALTER TABLE tokens ADD COLUMN IF NOT EXISTS rate_limit TEXT",
    // `revoked` (revoked, or deleted while live) or `changed` (a live token's
    // introspection answer changed: a new rate limit).
    "ALTER TABLE revocations ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'revoked'",
];

/// `?` placeholders (the store's) as PostgreSQL's `$1`, `$2`, …; a `?`
/// inside a quoted string or identifier stays.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// What a SQLSTATE means to the store.
pub fn classify(sqlstate: &str) -> DbErrorKind {
    match sqlstate {
        // undefined_table, undefined_column: a database older than this code.
        "42P01" | "42703" => DbErrorKind::MissingSchema,
        // Connection exceptions; the server shutting down or starting up;
        // too many connections; serialization failure and deadlock (the
        // transaction was rolled back and may simply be tried again).
        s if s.starts_with("08") => DbErrorKind::Unavailable,
        "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" => DbErrorKind::Unavailable,
        _ => DbErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c = '?' AND d IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $3)"
        );
        assert_eq!(
            numbered(r#"SELECT "we?ird", ? "#),
            r#"SELECT "we?ird", $1 "#
        );
        assert_eq!(numbered("SELECT 'it''s ?', ?"), "SELECT 'it''s ?', $1");
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(classify("42P01"), DbErrorKind::MissingSchema);
        assert_eq!(classify("42703"), DbErrorKind::MissingSchema);
        for s in [
            "08006", "08001", "57P01", "57P03", "53300", "40001", "40P01",
        ] {
            assert_eq!(classify(s), DbErrorKind::Unavailable, "{s}");
        }
        assert_eq!(classify("23505"), DbErrorKind::Other);
    }

    #[test]
    fn both_schemas_have_as_many_versions() {
        assert_eq!(MIGRATIONS.len(), super::super::sqlite::MIGRATIONS.len());
    }
}
