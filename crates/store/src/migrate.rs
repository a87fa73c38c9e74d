//! Versioned schema migrations. Each database (the queue's `tomare.db`, the
//! archive's `archive.db`) has an ordered list of steps, most of them SQL
//! files in `crates/store/migrations/<db>/NNNN_name.sql`, a few written in
//! Rust where a step must read and rewrite rows. Pending steps are applied
//! in order when a store opens, each in its own transaction together with
//! its row in `schema_migrations`, so a step is applied wholly or not at
//! all. `tomare db status` lists them, `tomare db migrate` applies them
//! without starting the server; commands other than those and
//! `archive import` refuse a database with steps pending. A PostgreSQL
//! backend would keep its own list in the same form.
//!
//! Every pending step's `present` query says first whether its change is
//! already there: a database made before steps were recorded (it has
//! tables but no `schema_migrations`), or one whose earlier open stopped
//! half way, is adopted — those steps are recorded, not run again. Steps
//! run under `BEGIN IMMEDIATE`, so two processes opening at once apply each
//! step once.

use crate::Result;
use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};
use std::future::Future;
use std::pin::Pin;

type CodeStep = for<'c> fn(&'c mut SqliteConnection) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'c>>;

enum Step {
    Sql(&'static str),
    Code(CodeStep),
}

pub(crate) struct Migration {
    version: i64,
    name: &'static str,
    step: Step,
    /// For a database made before migrations were recorded: a query that
    /// is non-zero when this step's change is already in it.
    present: &'static str,
}

/// Which database a list of migrations is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    Queue,
    Archive,
}

impl Database {
    /// The file in the data directory.
    pub fn file(self) -> &'static str {
        match self {
            Database::Queue => "tomare.db",
            Database::Archive => "archive.db",
        }
    }

    /// Every migration, pending (for a database not yet created).
    pub(crate) fn pending(self) -> Vec<MigrationStatus> {
        self.migrations()
            .iter()
            .map(|m| MigrationStatus {
                database: self,
                version: m.version,
                name: m.name.into(),
                applied_at: None,
                adopted: false,
            })
            .collect()
    }

    pub(crate) fn migrations(self) -> &'static [Migration] {
        match self {
            Database::Queue => QUEUE,
            Database::Archive => ARCHIVE,
        }
    }
}

const QUEUE: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        step: Step::Sql(include_str!("../migrations/queue/0001_initial.sql")),
        present: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages'",
    },
    Migration {
        version: 2,
        name: "archive_flag",
        step: Step::Sql(include_str!("../migrations/queue/0002_archive_flag.sql")),
        present: "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'archived'",
    },
    Migration {
        version: 3,
        name: "canonical_addresses",
        step: Step::Code(|c| Box::pin(crate::sqlite::canonical_addresses(c))),
        // Before migrations were recorded, this step set user_version 1.
        present: "SELECT user_version >= 1 FROM pragma_user_version",
    },
    Migration {
        version: 4,
        name: "send_as",
        step: Step::Sql(include_str!("../migrations/queue/0004_send_as.sql")),
        present: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'user_send_as'",
    },
    Migration {
        version: 5,
        name: "used_links",
        step: Step::Sql(include_str!("../migrations/queue/0005_used_links.sql")),
        present: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'used_links'",
    },
    Migration {
        version: 6,
        name: "accounts",
        step: Step::Sql(include_str!("../migrations/queue/0006_accounts.sql")),
        present: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'sessions'",
    },
    Migration {
        version: 7,
        name: "protect",
        step: Step::Sql(include_str!("../migrations/queue/0007_protect.sql")),
        present: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'protect_links'",
    },
];

const ARCHIVE: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    step: Step::Sql(include_str!("../migrations/archive/0001_initial.sql")),
    present: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'archive'",
}];

/// One migration and whether (and when) it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationStatus {
    pub database: Database,
    pub version: i64,
    pub name: String,
    /// Milliseconds since the epoch; `None` while pending.
    pub applied_at: Option<i64>,
    /// Recorded when an older database was adopted, not run.
    pub adopted: bool,
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL,
    adopted INTEGER NOT NULL DEFAULT 0
)";

/// Every migration of `db`, applied or pending, as `pool` has them. Reads
/// only: a database without the table has everything pending.
pub(crate) async fn status(pool: &SqlitePool, db: Database) -> Result<Vec<MigrationStatus>> {
    let has: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
            .fetch_one(pool)
            .await?;
    let mut rows: Vec<(i64, String, i64, i64)> = Vec::new();
    if has > 0 {
        rows = sqlx::query_as("SELECT version, name, applied_at, adopted FROM schema_migrations ORDER BY version")
            .fetch_all(pool)
            .await?;
    }
    let mut out = db.pending();
    for (version, name, applied_at, adopted) in rows {
        let recorded =
            MigrationStatus { database: db, version, name, applied_at: Some(applied_at), adopted: adopted != 0 };
        match out.iter_mut().find(|s| s.version == version) {
            Some(s) => *s = MigrationStatus { name: s.name.clone(), ..recorded },
            // A step a newer tomare applied that this one does not know.
            None => out.push(recorded),
        }
    }
    Ok(out)
}

/// [`apply`], or with `migrate` false only the check that nothing is
/// pending.
pub(crate) async fn apply_or_check(pool: &SqlitePool, db: Database, migrate: bool) -> Result<Vec<MigrationStatus>> {
    if migrate {
        return apply(pool, db).await;
    }
    let all = status(pool, db).await?;
    newer_refused(db, all.iter().map(|m| m.version))?;
    match all.iter().filter(|m| m.applied_at.is_none()).count() {
        0 => Ok(Vec::new()),
        pending => Err(crate::StoreError::MigrationsPending(pending)),
    }
}

/// A database a newer tomare migrated further than this one knows.
fn newer_refused(db: Database, done: impl Iterator<Item = i64>) -> Result<()> {
    let known = db.migrations().last().map_or(0, |m| m.version);
    match done.filter(|v| *v > known).max() {
        Some(newer) => Err(crate::StoreError::Corrupt {
            id: db.file().into(),
            what: format!("migrated to version {newer} by a newer tomare; this one knows up to {known}"),
        }),
        None => Ok(()),
    }
}

/// Applies the pending migrations of `db` in order; returns those applied
/// (or adopted). Refuses a database a newer tomare has migrated further.
pub(crate) async fn apply(pool: &SqlitePool, db: Database) -> Result<Vec<MigrationStatus>> {
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(TABLE).execute(&mut *conn).await?;
    let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&mut *conn).await?;
    newer_refused(db, done.iter().copied())?;
    let mut applied = Vec::new();
    for m in db.migrations().iter().filter(|m| !done.contains(&m.version)) {
        // IMMEDIATE: a second process opening at the same time waits here,
        // then finds the step recorded and moves on.
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        match step(&mut conn, db, m).await {
            Ok(status) => {
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                applied.extend(status);
            }
            Err(e) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                return Err(e);
            }
        }
    }
    Ok(applied)
}

/// One migration inside the caller's transaction: None when another
/// process recorded it meanwhile. A step whose change is already there (a
/// database from before migrations were recorded, or one whose earlier
/// open stopped half way) is recorded as adopted, not run again.
async fn step(conn: &mut SqliteConnection, db: Database, m: &Migration) -> Result<Option<MigrationStatus>> {
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations WHERE version = ?")
        .bind(m.version)
        .fetch_one(&mut *conn)
        .await?;
    if recorded > 0 {
        return Ok(None);
    }
    let already = sqlx::query_scalar::<_, i64>(m.present).fetch_one(&mut *conn).await? != 0;
    if !already {
        match &m.step {
            Step::Sql(sql) => {
                sqlx::raw_sql(*sql).execute(&mut *conn).await?;
            }
            Step::Code(f) => f(conn).await?,
        }
    }
    let now = tomare_model::now_ms();
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at, adopted) VALUES (?, ?, ?, ?)")
        .bind(m.version)
        .bind(m.name)
        .bind(now)
        .bind(already as i64)
        .execute(&mut *conn)
        .await?;
    Ok(Some(MigrationStatus {
        database: db,
        version: m.version,
        name: m.name.into(),
        applied_at: Some(now),
        adopted: already,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_in_order_and_files_are_numbered_as_listed() {
        for db in [Database::Queue, Database::Archive] {
            let versions: Vec<i64> = db.migrations().iter().map(|m| m.version).collect();
            let want: Vec<i64> = (1..=versions.len() as i64).collect();
            assert_eq!(versions, want, "{db:?}: consecutive from 1");
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(match db {
                Database::Queue => "queue",
                Database::Archive => "archive",
            });
            for entry in std::fs::read_dir(dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let (number, rest) = name.split_once('_').unwrap();
                let m = db.migrations().iter().find(|m| m.version == number.parse::<i64>().unwrap()).unwrap();
                assert_eq!(format!("{}.sql", m.name), rest, "{name} is listed under its name");
                assert!(matches!(m.step, Step::Sql(_)), "{name} is a file, so an SQL step");
            }
        }
    }
}
