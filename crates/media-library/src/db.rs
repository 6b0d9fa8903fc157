//! The database: SQLite (default: one file in the data dir, WAL) or
//! PostgreSQL (when a `postgres://` URL is configured).
//!
//! Both backends run the same SQL text wherever the two dialects agree
//! (`$N` placeholders, `ON CONFLICT … DO UPDATE`, `RETURNING`, `COALESCE`,
//! `||`); [`on_pool!`] expands one body once per backend so each gets its
//! native sqlx driver. Only full-text search differs (FTS5 vs. tsvector),
//! see [`crate::search`].
//!
//! Schema changes are numbered migrations, one set per backend with the
//! same versions (`migrations/sqlite`, `migrations/postgres`; a test checks
//! they match). Released migrations are never edited: sqlx stores their
//! checksums and refuses a database whose history differs.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::error::LibraryError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which SQL engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the library database. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's native pool: the same
/// source compiled once per driver.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for
/// error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((cred, host)) => match cred.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Db {
    /// Connects and applies every pending migration. `target` is a
    /// `postgres://`/`postgresql://` URL, or a SQLite file path (optionally
    /// `sqlite:`-prefixed); the file and its folder are created if missing.
    pub async fn open(target: &str) -> Result<Db, LibraryError> {
        let db = Db::connect(target).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Connects without migrating (upgrade tests start from old schemas).
    pub async fn connect(target: &str) -> Result<Db, LibraryError> {
        let err = |source| LibraryError::Connect {
            url: redact(target),
            source,
        };
        if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect(target)
                .await
                .map_err(err)?;
            return Ok(Db::Postgres(pool));
        }
        if target.contains("://") {
            return Err(LibraryError::UnsupportedUrl(redact(target)));
        }
        let path = Path::new(target.strip_prefix("sqlite:").unwrap_or(target));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LibraryError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL: readers (the web UI) never wait for a scan's writes.
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across crashes in WAL mode; only a power
            // cut can lose the last transactions, never corrupt the file.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(err)?;
        Ok(Db::Sqlite(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The migrations of `backend`, oldest first.
    pub fn migrator(backend: Backend) -> &'static Migrator {
        match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), LibraryError> {
        on_pool!(self, pool => Db::migrator(self.backend()).run(pool).await)?;
        Ok(())
    }

    /// Applies pending migrations up to and including `version` only: for
    /// tests that start from an earlier schema.
    pub async fn migrate_to(&self, version: i64) -> Result<(), LibraryError> {
        let all = Db::migrator(self.backend());
        let partial = Migrator {
            migrations: Cow::Owned(
                all.iter()
                    .filter(|m| m.version <= version)
                    .cloned()
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        on_pool!(self, pool => partial.run(pool).await)?;
        Ok(())
    }

    /// The newest applied migration, `None` for an empty database.
    pub async fn schema_version(&self) -> Result<Option<i64>, LibraryError> {
        let exists: bool = match self {
            Db::Sqlite(p) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = '_sqlx_migrations'",
                )
                .fetch_one(p)
                .await?
            }
            Db::Postgres(p) => {
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(p)
                    .await?
            }
        };
        if !exists {
            return Ok(None);
        }
        let v: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE"
        )
        .fetch_one(p)
        .await)?;
        Ok(v)
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(redact("postgres://u:pw@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("/var/lib/riptide.db"), "/var/lib/riptide.db");
    }

    #[test]
    fn both_backends_have_the_same_migration_versions() {
        let s: Vec<_> = SQLITE_MIGRATIONS
            .iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        let p: Vec<_> = POSTGRES_MIGRATIONS
            .iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        assert_eq!(s, p);
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
            .expect("migrations dir")
            .count();
        assert_eq!(s.len(), files);
    }
}
