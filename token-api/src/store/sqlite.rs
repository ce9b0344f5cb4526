//! What SQLite needs written its own way: the schema (versioned migrations)
//! and which error messages mean "schema missing" or "try again later".
//! SQLite serialises writers itself (`BEGIN IMMEDIATE`), so feed sequence
//! numbers commit in order without a lock of ours.

use super::{DbErrorKind, Migration};

pub const SCHEMA_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
)";

/// Migrations, in order; entry `i` brings the schema to version `i + 1`.
/// Every statement is idempotent, so instances racing on a fresh database and
/// a migration interrupted half-way both end in the same schema.
pub const MIGRATIONS: &[Migration] = &[MIGRATION_1, MIGRATION_2, MIGRATION_3];

/// Tokens, the revocations feed, the audit log.
const MIGRATION_1: Migration = &[
    "CREATE TABLE IF NOT EXISTS tokens (
        id           TEXT PRIMARY KEY,
        token_sha    TEXT NOT NULL UNIQUE,
        name         TEXT NOT NULL,
        tenant       TEXT NOT NULL,
        project      TEXT NOT NULL,
        scopes       TEXT NOT NULL,
        hint         TEXT NOT NULL,
        created_by   TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER
    )",
    // Names are unique among tokens not revoked. Expired tokens keep their
    // name until revoked or deleted, so a name never silently changes owner.
    "CREATE UNIQUE INDEX IF NOT EXISTS tokens_live_name
        ON tokens (tenant, project, name) WHERE revoked_at IS NULL",
    "CREATE INDEX IF NOT EXISTS tokens_by_created ON tokens (created_at, id)",
    "CREATE INDEX IF NOT EXISTS tokens_by_tenant ON tokens (tenant, created_at, id)",
    "CREATE INDEX IF NOT EXISTS tokens_by_project ON tokens (tenant, project, created_at, id)",
    "CREATE TABLE IF NOT EXISTS revocations (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        token_sha TEXT NOT NULL,
        at        INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
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
    // One row. The epoch is made with the database (random), so a cursor
    // from another database, or from before a restore to an empty one, is
    // recognised; `pruned_through` is the newest sequence number pruned.
    "CREATE TABLE IF NOT EXISTS feed_state (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        epoch          TEXT NOT NULL,
        pruned_through INTEGER NOT NULL
    )",
    "INSERT INTO feed_state (id, epoch, pruned_through)
        VALUES (1, lower(hex(randomblob(8))), 0) ON CONFLICT DO NOTHING",
    "CREATE INDEX IF NOT EXISTS revocations_by_at ON revocations (at)",
    // Children of a token: `created_by` is `token:<id>` of their creator.
    "CREATE INDEX IF NOT EXISTS tokens_by_creator ON tokens (created_by)",
    // Tokens revoked because an ancestor was revoked or deleted (`via`).
    "CREATE TABLE IF NOT EXISTS cascades (
        id  TEXT PRIMARY KEY,
        via TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS cascades_by_via ON cascades (via)",
];

/// Rate limits; the feed also carries tokens whose answer changed.
const MIGRATION_3: Migration = &[
    // SQLite cannot add a column only when it is missing: these two are the
    // exception to "idempotent", made safe by the migration's transaction (a
    // half-run migration rolls back; racing instances take turns on the
    // write lock and the second finds the version recorded).
    // `{"requests", "window_s", "burst"}`, or NULL for no limit.
    "ALTER TABLE tokens ADD COLUMN rate_limit TEXT",
    // `revoked` (revoked, or deleted while live) or `changed` (a live token's
    // introspection answer changed: a new rate limit).
    "ALTER TABLE revocations ADD COLUMN kind TEXT NOT NULL DEFAULT 'revoked'",
];

/// What a SQLite error message means to the store.
pub fn classify(message: &str) -> DbErrorKind {
    if message.contains("no such table") || message.contains("no such column") {
        DbErrorKind::MissingSchema
    } else if message.contains("database is locked") || message.contains("database is busy") {
        // Another writer held the lock past the busy timeout.
        DbErrorKind::Unavailable
    } else {
        DbErrorKind::Other
    }
}
