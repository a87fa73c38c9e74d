//! [`SqliteStore`]: the embedded store. One writer connection (commits
//! queue in the pool instead of spinning on SQLite's busy lock), readers
//! beside it, `archive.db` in a file of its own. The queue, people and
//! archive halves of the interface are in `queue.rs`, `people.rs` and
//! `archive.rs`; opening, migrations and shared helpers are here.

mod archive;
mod people;
mod protect;
mod queue;
mod web;

use crate::migrate::{self, Database, MigrationStatus};
use crate::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use std::path::Path;
use std::time::Duration;
use tomare_model::{Address, Facts, MessageId, NoticeKind, OnTimeout, OrgId, RcptStatus, SendAs, State, Verdict};

/// SQLite's limit on bound parameters per statement is 32766; batches are
/// split well below it.
const MAX_PARAMS: usize = 30_000;

pub struct SqliteStore {
    /// Exactly one connection: SQLite has one writer, and queueing in the
    /// pool is cheaper than SQLite's sleep-and-retry busy handler.
    writer: SqlitePool,
    reader: SqlitePool,
    /// `archive.db` beside it: the archive's chain, blob places, checkpoints
    /// and legal holds. A file of its own so the archive's large appends and
    /// checkpoints never hold the queue's single writer.
    arch_writer: SqlitePool,
    arch_reader: SqlitePool,
    applied: Vec<MigrationStatus>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, applying
    /// pending migrations (`serve`, `db migrate`, `archive import`).
    pub async fn open(path: &Path) -> Result<Self> {
        Self::connect(path, true).await
    }

    /// Opens the database at `path` as it is, refusing it
    /// ([`StoreError::MigrationsPending`]) when a migration is pending:
    /// for the CLI, which never changes the schema under a running server.
    pub async fn open_current(path: &Path) -> Result<Self> {
        Self::connect(path, false).await
    }

    async fn connect(path: &Path, migrate: bool) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit survives a crash of the process
            // but not of the machine until the WAL is synced. That is enough
            // for every state change after accept (losing one only repeats
            // work: a delivery is retried). Accepting is different: see
            // `insert_messages`, which syncs.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer =
            SqlitePoolOptions::new().max_connections(1).min_connections(1).connect_with(options.clone()).await?;
        let mut applied = migrate::apply_or_check(&writer, Database::Queue, migrate).await?;
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone().read_only(true)).await?;
        // FULL: a batch's records are synced before its spool files go.
        let arch_path = path.with_file_name("archive.db");
        if !migrate && !arch_path.exists() {
            return Err(StoreError::MigrationsPending(Database::Archive.migrations().len()));
        }
        let arch = options.filename(arch_path).foreign_keys(false).synchronous(SqliteSynchronous::Full);
        let arch_writer =
            SqlitePoolOptions::new().max_connections(1).min_connections(1).connect_with(arch.clone()).await?;
        applied.extend(migrate::apply_or_check(&arch_writer, Database::Archive, migrate).await?);
        let arch_reader = SqlitePoolOptions::new().max_connections(2).connect_with(arch.read_only(true)).await?;
        Ok(SqliteStore { writer, reader, arch_writer, arch_reader, applied })
    }

    /// The migrations this open applied (or adopted), to be logged.
    pub fn migrations_applied(&self) -> &[MigrationStatus] {
        &self.applied
    }

    /// Every migration of both databases, applied or pending.
    pub async fn migrations(&self) -> Result<Vec<MigrationStatus>> {
        let mut all = migrate::status(&self.reader, Database::Queue).await?;
        all.extend(migrate::status(&self.arch_reader, Database::Archive).await?);
        Ok(all)
    }

    /// The migrations of the databases beside `path` (the queue's
    /// `tomare.db`), read without applying any: a missing file has them
    /// all pending.
    pub async fn migration_status(path: &Path) -> Result<Vec<MigrationStatus>> {
        let mut all = Vec::new();
        for (db, file) in
            [(Database::Queue, path.to_path_buf()), (Database::Archive, path.with_file_name("archive.db"))]
        {
            if !file.exists() {
                all.extend(db.pending());
                continue;
            }
            let options = SqliteConnectOptions::new().filename(&file).read_only(true);
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
            all.extend(migrate::status(&pool, db).await?);
            pool.close().await;
        }
        Ok(all)
    }

    async fn send_as(&self, email: &str) -> Result<Vec<SendAs>> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT address FROM user_send_as WHERE email = ? ORDER BY address")
            .bind(email)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(|a| {
                a.parse().map_err(|e| StoreError::Corrupt { id: email.into(), what: format!("send-as {a:?}: {e}") })
            })
            .collect()
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
        self.arch_writer.close().await;
        self.arch_reader.close().await;
    }
}

/// Statements for one trip to the connection's thread. sqlx runs each
/// SQLite connection on a thread of its own, and every statement sent there
/// and answered costs a pair of thread switches, more than a small INSERT:
/// statements whose results nothing waits for between them are sent as one
/// script (`;`-separated, the arguments bound in order across them).
#[derive(Default)]
struct Script {
    sql: String,
    args: sqlx::sqlite::SqliteArguments,
}

impl Script {
    /// Appends a statement; its `?`s take the values bound after it.
    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
        self
    }

    fn bind<'t, T: sqlx::Encode<'t, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(&mut self, value: T) -> &mut Self {
        // Encoding our own integers and strings cannot fail; a value that
        // did would leave its statement a value short, which SQLite refuses.
        let _ = sqlx::Arguments::add(&mut self.args, value);
        self
    }

    fn query(self) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        sqlx::query_with(AssertSqlSafe(self.sql), self.args)
    }

    /// Runs the script, returning the rows its statements return, in order.
    async fn fetch(self, conn: &mut sqlx::SqliteConnection) -> Result<Vec<SqliteRow>> {
        if self.sql.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.query().fetch_all(conn).await?)
    }

    async fn run(self, conn: &mut sqlx::SqliteConnection) -> Result<()> {
        if !self.sql.is_empty() {
            self.query().execute(conn).await?;
        }
        Ok(())
    }
}

/// A transaction on the writer, begun in one trip with the connection's
/// `PRAGMA synchronous` (which cannot change inside a transaction).
/// `durable`: its commit syncs the WAL, and with it every earlier commit
/// (the WAL is written in order); otherwise a commit survives a crash of
/// the process but not of the machine. IMMEDIATE: the write lock is taken
/// at BEGIN, so a CLI process writing at the same time waits its turn
/// instead of failing on an upgrade.
async fn write_tx(pool: &SqlitePool, durable: bool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    let begin = if durable {
        "PRAGMA synchronous = FULL; BEGIN IMMEDIATE"
    } else {
        "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE"
    };
    Ok(pool.begin_with(begin).await?)
}

fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
}

fn parse_id(s: String) -> Result<MessageId> {
    MessageId::parse(&s).ok_or(StoreError::Corrupt { id: s, what: "bad id".into() })
}

/// (rowid, text) rows a page at a time, in rowid order: `sql` takes the
/// rowid to start after.
struct Pages {
    sql: &'static str,
    after: i64,
}

impl Pages {
    fn new(sql: &'static str) -> Pages {
        Pages { sql, after: 0 }
    }

    /// The next page, or `None` past the last row.
    async fn next(&mut self, tx: &mut sqlx::SqliteConnection) -> Result<Option<Vec<(i64, String)>>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(self.sql).bind(self.after).fetch_all(&mut *tx).await?;
        let Some(&(last, _)) = rows.last() else { return Ok(None) };
        self.after = last;
        Ok(Some(rows))
    }
}

/// Migration 3: addresses stored before they were a type are rewritten in
/// their canonical form. One the stricter parser cannot read even
/// leniently becomes `unreadable@invalid`, and a recipient still to be
/// tried with it fails (with the original, escaped, in its reply); a sender
/// becomes `<>`. Paged, so a big queue is not read at once; the caller's
/// transaction makes it all or nothing.
pub(crate) async fn canonical_addresses(tx: &mut sqlx::SqliteConnection) -> Result<()> {
    let mut senders = Pages::new("SELECT rowid, mail_from FROM messages WHERE rowid > ? ORDER BY rowid LIMIT 10000");
    while let Some(rows) = senders.next(tx).await? {
        for (rowid, stored) in rows {
            if stored.is_empty() {
                continue;
            }
            let canonical = Address::parse_lenient(&stored).map(|a| a.to_string()).unwrap_or_default();
            if canonical != stored {
                if canonical.is_empty() {
                    tracing::warn!(sender = %tomare_model::escape_controls(&stored), "a stored sender is not an address: now <>");
                }
                sqlx::query("UPDATE messages SET mail_from = ? WHERE rowid = ?")
                    .bind(canonical)
                    .bind(rowid)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    let mut recipients = Pages::new("SELECT rowid, address FROM recipients WHERE rowid > ? ORDER BY rowid LIMIT 10000");
    while let Some(rows) = recipients.next(tx).await? {
        for (rowid, stored) in rows {
            match Address::parse_lenient(&stored).map(|a| a.to_string()) {
                Some(canonical) if canonical == stored => {}
                Some(canonical) => {
                    sqlx::query("UPDATE recipients SET address = ? WHERE rowid = ?")
                        .bind(canonical)
                        .bind(rowid)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    let reply = format!(
                        "553 5.1.3 not an address to the stricter parser after an upgrade: {}",
                        tomare_model::escape_controls(&stored)
                    );
                    sqlx::query(
                        "UPDATE recipients SET address = 'unreadable@invalid', reply = ?, \
                         status = CASE WHEN status IN ('pending', 'deferred') THEN 'failed' ELSE status END WHERE rowid = ?",
                    )
                    .bind(reply)
                    .bind(rowid)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
    }
    // What the release before recorded migrations read as "done".
    sqlx::raw_sql("PRAGMA user_version = 1").execute(&mut *tx).await?;
    Ok(())
}

/// An address as stored: its canonical form, written by [`Address`]'s
/// `Display`, so anything that does not parse back was not written by us.
fn parse_address(id: &str, s: String) -> Result<Address> {
    s.parse().map_err(|e| StoreError::Corrupt { id: id.into(), what: format!("address {s:?}: {e}") })
}

/// An approval's `on_timeout`; one this release does not know (an edit by
/// hand, a newer tomare) rejects, logged: one row must not stop every
/// approval from expiring, and reject is the outcome that lets nothing out.
fn parse_on_timeout(id: &str, s: &str) -> OnTimeout {
    OnTimeout::parse(s).unwrap_or_else(|| {
        tracing::error!(%id, on_timeout = %tomare_model::escape_controls(s), "unknown on_timeout: rejects");
        OnTimeout::Reject
    })
}

/// Facts and verdict as the `facts` table keeps them (JSON; `{}` for no
/// verdict, as the release before wrote it too).
fn stored_review(facts: &Facts, verdict: Option<&Verdict>) -> (String, String) {
    let facts = serde_json::to_string(facts).unwrap_or_else(|_| "{}".into());
    let verdict = verdict.and_then(|v| serde_json::to_string(v).ok()).unwrap_or_else(|| "{}".into());
    (facts, verdict)
}

fn read_review(id: &str, facts: &str, verdict: &str) -> Result<Reviewed> {
    let corrupt =
        |what: &str, e: serde_json::Error| StoreError::Corrupt { id: id.into(), what: format!("{what}: {e}") };
    Ok(Reviewed {
        facts: serde_json::from_str(facts).map_err(|e| corrupt("facts", e))?,
        verdict: match verdict {
            "{}" | "" => None,
            v => Some(serde_json::from_str(v).map_err(|e| corrupt("verdict", e))?),
        },
    })
}

fn parse_state(id: &str, s: &str) -> Result<State> {
    State::parse(s).ok_or_else(|| StoreError::Corrupt { id: id.into(), what: format!("unknown state {s:?}") })
}

struct Event<'a> {
    org_id: OrgId,
    message_id: &'a str,
    kind: &'a str,
    actor: &'a str,
    detail: String,
}

fn push_events(s: &mut Script, at: i64, events: &[Event<'_>]) {
    for chunk in events.chunks(MAX_PARAMS / 6) {
        s.push(&format!(
            "INSERT INTO events (org_id, message_id, at, kind, actor, detail) VALUES {}",
            placeholders(chunk.len(), 6)
        ));
        for e in chunk {
            s.bind(e.org_id).bind(e.message_id).bind(at).bind(e.kind).bind(e.actor).bind(&e.detail);
        }
    }
}

async fn insert_events(tx: &mut sqlx::SqliteConnection, at: i64, events: &[Event<'_>]) -> Result<()> {
    let mut s = Script::default();
    push_events(&mut s, at, events);
    s.run(tx).await
}

/// A notice to send: to `recipient`, or to the sender when it is empty.
fn push_notice(s: &mut Script, id: &MessageId, org: i64, kind: NoticeKind, reason: &str, recipient: &str, now: i64) {
    s.push("INSERT INTO notices (message_id, org_id, kind, reason, recipient, created_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(id.as_str())
        .bind(org)
        .bind(kind.as_str())
        .bind(reason)
        .bind(recipient)
        .bind(now);
    if kind == NoticeKind::ApprovalRequest && !recipient.is_empty() {
        // Whoever is asked may see the message and decide it.
        s.push("INSERT OR IGNORE INTO approval_asked (message_id, email) VALUES (?, ?)")
            .bind(id.as_str())
            .bind(recipient.to_lowercase());
    }
}

async fn add_notice(
    tx: &mut sqlx::SqliteConnection,
    id: &MessageId,
    org: i64,
    kind: NoticeKind,
    reason: &str,
    recipient: &str,
    now: i64,
) -> Result<()> {
    let mut s = Script::default();
    push_notice(&mut s, id, org, kind, reason, recipient, now);
    s.run(tx).await
}

async fn decide_approval(pool: &SqlitePool, id: &MessageId, decision: &str, actor: &str, reason: &str) -> Result<()> {
    sqlx::query("UPDATE approvals SET decision = ?, decided_by = ?, reason = ?, decided_at = ? WHERE message_id = ?")
        .bind(decision)
        .bind(actor)
        .bind(reason)
        .bind(tomare_model::now_ms())
        .bind(id.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

fn push_contacts(s: &mut Script, contacts: &[(i64, String)], now: i64) {
    for chunk in contacts.chunks(MAX_PARAMS / 4) {
        s.push(&format!(
            "INSERT INTO contacts (org_id, domain, first_at, last_at, messages) VALUES {} \
             ON CONFLICT(org_id, domain) DO UPDATE SET last_at = excluded.last_at, messages = messages + 1",
            vec!["(?, ?, ?, ?, 1)"; chunk.len()].join(",")
        ));
        for (org, domain) in chunk {
            s.bind(org).bind(domain).bind(now).bind(now);
        }
    }
}

/// Conditional state change of one message, with its event.
/// A state change a person asks for.
struct Move<'a> {
    from: &'a [State],
    to: State,
    /// The hold ends now (the message goes out at once).
    set_release_now: bool,
    detail: &'a str,
    /// The notice the sender gets when someone else made the change.
    tell: Option<NoticeKind>,
}

async fn transition(pool: &SqlitePool, id: &MessageId, actor: &str, m: Move<'_>) -> Result<Transition> {
    let Move { from, to, set_release_now, detail, tell } = m;
    let now = tomare_model::now_ms();
    let mut tx = write_tx(pool, false).await?;
    let allowed = from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(",");
    let sql = format!(
        "UPDATE messages SET state = ?, updated_at = ?{} WHERE id = ? AND state IN ({allowed}) \
         RETURNING org_id, mail_from, is_dsn",
        if set_release_now { ", release_at = ?" } else { "" }
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(to.as_str()).bind(now);
    if set_release_now {
        q = q.bind(now);
    }
    let row = q.bind(id.as_str()).fetch_optional(&mut *tx).await?;
    let Some(row) = row else {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM messages WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        return match state {
            None => Ok(Transition::NotFound),
            Some(s) => Ok(Transition::Refused(parse_state(id.as_str(), &s)?)),
        };
    };
    let org_id: i64 = row.try_get(0)?;
    let mail_from: String = row.try_get(1)?;
    let is_dsn: bool = row.try_get(2)?;
    let event = Event { org_id, message_id: id.as_str(), kind: to.as_str(), actor, detail: detail.to_string() };
    let mut s = Script::default();
    push_events(&mut s, now, &[event]);
    // The sender hears when someone else changed their message's course.
    if let Some(kind) = tell
        && !is_dsn
        && !mail_from.is_empty()
        && !actor_is(actor, &mail_from)
    {
        push_notice(&mut s, id, org_id, kind, actor, "", now);
    }
    s.run(&mut tx).await?;
    tx.commit().await?;
    Ok(Transition::Done)
}

/// The event's actor (`web:taro@x`, `link:taro@x (…)`, `cli`) is `address`.
fn actor_is(actor: &str, address: &str) -> bool {
    tomare_model::actor_account(actor).is_some_and(|(a, _)| a.eq_ignore_ascii_case(address))
}

const MESSAGE_COLUMNS: &str = "id, org_id, state, mail_from, subject, header_from, message_id_header, size, \
     received_at, release_at, next_attempt_at, attempts, helo, client_ip, auth_user, is_dsn, updated_at";

fn message_from_row(row: &SqliteRow) -> Result<MessageRow> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    Ok(MessageRow {
        state: parse_state(&id, &state)?,
        mail_from: parse_address(&id, row.try_get("mail_from")?)?,
        id: parse_id(id)?,
        org_id: row.try_get("org_id")?,
        recipients: Vec::new(),
        subject: row.try_get("subject")?,
        header_from: row.try_get("header_from")?,
        message_id_header: row.try_get("message_id_header")?,
        size: row.try_get("size")?,
        received_at: row.try_get("received_at")?,
        release_at: row.try_get("release_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        attempts: row.try_get("attempts")?,
        helo: row.try_get("helo")?,
        client_ip: row.try_get("client_ip")?,
        auth_user: row.try_get("auth_user")?,
        is_dsn: row.try_get("is_dsn")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl SqliteStore {
    async fn attach_recipients(&self, rows: &mut [MessageRow]) -> Result<()> {
        for chunk in rows.chunks_mut(MAX_PARAMS) {
            let sql = format!(
                "SELECT message_id, address, status, reply, attempts FROM recipients WHERE message_id IN ({}) ORDER BY message_id, idx",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in chunk.iter() {
                q = q.bind(m.id.as_str());
            }
            let found = q.fetch_all(&self.reader).await?;
            for r in found {
                let mid: String = r.try_get(0)?;
                let status: String = r.try_get(2)?;
                let status = RcptStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
                    id: mid.clone(),
                    what: format!("recipient status {status:?}"),
                })?;
                if let Some(m) = chunk.iter_mut().find(|m| m.id.as_str() == mid) {
                    m.recipients.push(RecipientRow {
                        address: parse_address(&mid, r.try_get(1)?)?,
                        status,
                        reply: r.try_get(3)?,
                        attempts: r.try_get(4)?,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The accept commit: messages, recipients and events in one script, in
/// one durable transaction.
async fn insert_batch(pool: &SqlitePool, batch: &[NewMessage], now: i64) -> Result<()> {
    let mut s = Script::default();
    const COLS: usize = 15;
    for chunk in batch.chunks(MAX_PARAMS / COLS) {
        s.push(&format!(
            "INSERT INTO messages (id, org_id, state, mail_from, helo, client_ip, auth_user, subject, header_from, \
                 message_id_header, size, received_at, release_at, is_dsn, updated_at) VALUES {}",
            placeholders(chunk.len(), COLS)
        ));
        for m in chunk {
            s.bind(m.id.as_str())
                .bind(m.org_id)
                .bind(m.state.as_str())
                .bind(m.envelope.mail_from.to_string())
                .bind(&m.envelope.helo)
                .bind(&m.envelope.client_ip)
                .bind(&m.envelope.auth_user)
                .bind(&m.subject)
                .bind(&m.header_from)
                .bind(&m.message_id_header)
                .bind(m.size as i64)
                .bind(m.received_at)
                .bind(m.release_at)
                .bind(m.is_dsn)
                .bind(now);
        }
    }
    let rcpts: Vec<(&NewMessage, usize, String)> = batch
        .iter()
        .flat_map(|m| m.envelope.rcpt_to.iter().enumerate().map(move |(i, r)| (m, i, r.to_string())))
        .collect();
    for chunk in rcpts.chunks(MAX_PARAMS / 6) {
        s.push(&format!(
            "INSERT INTO recipients (message_id, org_id, idx, address, status, updated_at) VALUES {}",
            placeholders(chunk.len(), 6)
        ));
        for (m, i, r) in chunk {
            s.bind(m.id.as_str()).bind(m.org_id).bind(*i as i64).bind(r).bind("pending").bind(now);
        }
    }
    let mut events = Vec::with_capacity(batch.len() * 2);
    for m in batch {
        let detail = format!(
            "from=<{}> rcpts={} size={} client={} helo={}",
            m.envelope.mail_from,
            m.envelope.rcpt_to.len(),
            m.size,
            m.envelope.client_ip,
            m.envelope.helo
        );
        events.push(Event { org_id: m.org_id, message_id: m.id.as_str(), kind: "received", actor: "smtp", detail });
        if m.state != State::Received {
            let detail = match (m.state, m.release_at) {
                (State::Held, Some(at)) => format!("until {}", tomare_model::rfc3339(at)),
                _ => String::new(),
            };
            events.push(Event {
                org_id: m.org_id,
                message_id: m.id.as_str(),
                kind: m.state.as_str(),
                actor: "hold",
                detail,
            });
        }
    }
    push_events(&mut s, now, &events);
    let mut tx = write_tx(pool, true).await?;
    s.run(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tomare_model::Envelope;

    fn message(org_id: OrgId, state: State, release_at: i64, rcpts: &[&str]) -> NewMessage {
        let release_at = Some(release_at);
        let now = tomare_model::now_ms();
        NewMessage {
            id: MessageId::generate(now),
            org_id,
            envelope: Envelope {
                mail_from: "taro@example.com".parse().unwrap(),
                rcpt_to: rcpts.iter().map(|s| s.parse().unwrap()).collect(),
                helo: "client".into(),
                client_ip: "127.0.0.1".into(),
                auth_user: None,
            },
            subject: "件名".into(),
            header_from: "taro@example.com".parse().unwrap(),
            message_id_header: "<a@b>".into(),
            size: 100,
            received_at: now,
            state,
            release_at,
            is_dsn: false,
        }
    }

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    /// A script binds its values in order across its statements, returns
    /// the rows of the one that returns any, and a batch that fails half
    /// way leaves nothing behind and the writer usable.
    #[tokio::test]
    async fn a_script_binds_across_statements_and_a_failed_batch_leaves_nothing() {
        let (_dir, store) = open().await;
        let org = store.ensure_org("Example").await.unwrap();
        let mut tx = write_tx(&store.writer, false).await.unwrap();
        let mut s = Script::default();
        s.push("CREATE TEMP TABLE t (a TEXT, b INTEGER)");
        s.push("INSERT INTO t VALUES (?, ?), (?, ?)").bind("x").bind(1).bind("y").bind(2);
        s.push("INSERT INTO t VALUES (?, ?)").bind("z").bind(3);
        s.push("SELECT a, b FROM t WHERE b >= ? ORDER BY b").bind(2);
        let rows: Vec<(String, i64)> = s.fetch(&mut tx).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(rows, [("y".to_string(), 2), ("z".to_string(), 3)]);
        tx.commit().await.unwrap();

        let first = message(org, State::Received, 0, &["a@customer.test"]);
        store.insert_messages(std::slice::from_ref(&first)).await.unwrap();
        // The second message's id is taken: its INSERT fails after the
        // first's went in, inside the same script.
        let fresh = message(org, State::Received, 0, &["b@customer.test"]);
        let again = NewMessage { id: first.id.clone(), ..message(org, State::Received, 0, &["c@customer.test"]) };
        assert!(store.insert_messages(&[fresh.clone(), again]).await.is_err());
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&store.reader).await.unwrap();
        let rcpts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recipients").fetch_one(&store.reader).await.unwrap();
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&store.reader).await.unwrap();
        assert_eq!((rows, rcpts, events), (1, 1, 1), "only the first batch is there");
        store.insert_messages(&[fresh]).await.expect("the writer is usable after a failed batch");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&store.reader).await.unwrap();
        assert_eq!(rows, 2);
    }

    /// A data directory as the release before versioned migrations left
    /// it: its tables (made here from the same SQL), no record of any
    /// migration, user_version 0, and addresses an older parser stored:
    /// bare quoted-less local parts, mixed case, one that is no address.
    #[tokio::test]
    async fn an_untracked_older_database_is_adopted_and_its_addresses_made_canonical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tomare.db");
        let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let old = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/queue/0001_initial.sql")).execute(&old).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/queue/0002_archive_flag.sql")).execute(&old).await.unwrap();
        let now = tomare_model::now_ms();
        let id = MessageId::generate(now);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "INSERT INTO orgs VALUES (1, 'Example', {now});
             INSERT INTO messages (id, org_id, state, mail_from, helo, client_ip, subject, header_from,
                 message_id_header, size, received_at, release_at, updated_at)
             VALUES ('{id}', 1, 'released', 'Taro@Example.COM', 'c', '127.0.0.1', 's', 'f', '<a@b>', 1, {now}, {now}, {now});
             INSERT INTO recipients (message_id, org_id, idx, address, status, updated_at) VALUES
                 ('{id}', 1, 0, 'john doe@Customer.TEST', 'pending', {now}),
                 ('{id}', 1, 1, 'bad<x@y.test', 'pending', {now}),
                 ('{id}', 1, 2, 'c@x.test', 'pending', {now});
             INSERT INTO facts (message_id, org_id, json, verdict, created_at) VALUES ('{id}', 1,
                 '{{\"subject\":\"件名\",\"body_chars\":12,\"attachments\":[{{\"path\":\"a.csv\",\"text_chars\":3}}],\"complete\":true}}',
                 '{{\"outcome\":\"approval\",\"hold_seconds\":0,\"rules\":[{{\"name\":\"r\",\"reason\":\"x\"}}],\"transforms\":[],
                   \"approval\":{{\"approver\":\"\",\"timeout_seconds\":60,\"on_timeout\":\"escalate\",\"deputy\":\"d@x.test\"}}}}', {now});"
        )))
        .execute(&old)
        .await
        .unwrap();
        old.close().await;

        let before = SqliteStore::migration_status(&path).await.unwrap();
        assert!(before.iter().all(|m| m.applied_at.is_none()), "status reads without applying: {before:?}");
        let store = SqliteStore::open(&path).await.unwrap();
        let applied: Vec<(Database, i64, bool)> =
            store.migrations_applied().iter().map(|m| (m.database, m.version, m.adopted)).collect();
        assert_eq!(
            applied,
            [
                (Database::Queue, 1, true),
                (Database::Queue, 2, true),
                (Database::Queue, 3, false),
                (Database::Queue, 4, false),
                (Database::Queue, 5, false),
                (Database::Queue, 6, false),
                (Database::Queue, 7, false),
                (Database::Archive, 1, false),
            ],
            "what was there is adopted, the rest run"
        );
        let rows = sqlx::query("SELECT mail_from FROM messages").fetch_all(&store.reader).await.unwrap();
        assert_eq!(rows[0].get::<String, _>(0), "Taro@example.com");
        let got: Vec<(String, String)> = sqlx::query("SELECT address, status FROM recipients ORDER BY idx")
            .fetch_all(&store.reader)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let want =
            [(r#""john doe"@customer.test"#, "pending"), ("unreadable@invalid", "failed"), ("c@x.test", "pending")];
        assert_eq!(got, want.map(|(a, s)| (a.to_string(), s.to_string())));
        // The review as the release before stored it reads typed.
        let reviewed = store.reviewed(&id).await.unwrap().unwrap();
        assert_eq!((reviewed.facts.body_chars, reviewed.facts.attachments[0].text_chars), (Some(12), Some(3)));
        let verdict = reviewed.verdict.unwrap();
        assert_eq!(verdict.approval.unwrap().on_timeout, tomare_model::OnTimeout::Escalate);
        let claimed = store.claim(now + 1, 10).await.unwrap();
        assert_eq!(claimed[0].recipients.len(), 2, "the unreadable one is not tried");
        // The new table is there: a send-as grant can be stored.
        store.put_user(1, "taro@example.com", "hash").await.unwrap();
        store.set_send_as("taro@example.com", &["@example.com".parse().unwrap()]).await.unwrap();
        store.close().await;

        // Opened again, nothing is pending and nothing runs twice.
        let store = SqliteStore::open(&path).await.unwrap();
        assert!(store.migrations_applied().is_empty());
        let all = store.migrations().await.unwrap();
        assert_eq!(all.len(), 8);
        assert!(all.iter().all(|m| m.applied_at.is_some()), "{all:?}");
        store.close().await;

        // A database a newer tomare migrated further is refused, not damaged.
        let options = SqliteConnectOptions::new().filename(&path);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        sqlx::raw_sql("INSERT INTO schema_migrations VALUES (99, 'future', 0, 0)").execute(&pool).await.unwrap();
        pool.close().await;
        let err = SqliteStore::open(&path).await.err().expect("refused");
        assert!(err.to_string().contains("newer tomare"), "{err}");
    }

    /// An open that stopped after its first step, on a database that has
    /// everything already: the rest is adopted, nothing fails on a table
    /// that exists. And two processes opening one new database at once.
    #[tokio::test]
    async fn an_interrupted_or_concurrent_migration_resumes_and_runs_each_step_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tomare.db");
        let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let old = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        for sql in [
            include_str!("../../migrations/queue/0001_initial.sql"),
            include_str!("../../migrations/queue/0002_archive_flag.sql"),
            include_str!("../../migrations/queue/0004_send_as.sql"),
            "PRAGMA user_version = 1",
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at INTEGER NOT NULL, adopted INTEGER NOT NULL DEFAULT 0)",
            "INSERT INTO schema_migrations VALUES (1, 'initial', 0, 1)",
        ] {
            sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&old).await.unwrap();
        }
        old.close().await;
        let store = SqliteStore::open(&path).await.unwrap();
        let queue: Vec<(i64, bool)> = store
            .migrations_applied()
            .iter()
            .filter(|m| m.database == Database::Queue)
            .map(|m| (m.version, m.adopted))
            .collect();
        assert_eq!(queue, [(2, true), (3, true), (4, true), (5, false), (6, false), (7, false)]);
        store.close().await;

        let other = tempfile::tempdir().unwrap();
        let fresh = other.path().join("tomare.db");
        let (a, b) = tokio::join!(SqliteStore::open(&fresh), SqliteStore::open(&fresh));
        let (a, b) = (a.unwrap(), b.unwrap());
        let ran = a.migrations_applied().len() + b.migrations_applied().len();
        assert_eq!(ran, 8, "each step once between the two");
        assert!(a.migrations().await.unwrap().iter().all(|m| m.applied_at.is_some()));
    }

    #[tokio::test]
    async fn a_new_database_runs_every_migration_once() {
        let (_dir, store) = open().await;
        let applied = store.migrations_applied();
        assert_eq!(applied.len(), 8);
        assert!(applied.iter().all(|m| !m.adopted), "{applied:?}");
    }

    fn decided(id: &MessageId, state: State, rules: &[&str]) -> Decision {
        let verdict = tomare_model::Verdict {
            rules: rules.iter().map(|r| tomare_model::Fired { name: r.to_string(), reason: String::new() }).collect(),
            ..Default::default()
        };
        Decision {
            id: id.clone(),
            facts: Facts::default(),
            summary: String::new(),
            verdict: Some(verdict),
            reasons: String::new(),
            state,
            release_at: tomare_model::now_ms() + 60_000,
            approval: None,
            add_recipients: Vec::new(),
            rewritten: false,
            protection: None,
            notify: Vec::new(),
        }
    }

    /// A protected message's link, files, downloads, codes and passwords
    /// work through the store, and all of its rows go when retention
    /// removes it (they reference it: nothing may be left to block that).
    #[tokio::test]
    async fn a_protected_message_keeps_its_limits_and_leaves_no_row_behind() {
        let (_dir, store) = open().await;
        let org = store.ensure_org("Example").await.unwrap();
        let m = message(org, State::Received, 0, &["a@customer.test", "b@partner.test"]);
        store.insert_messages(std::slice::from_ref(&m)).await.unwrap();
        let mut d = decided(&m.id, State::Released, &[]);
        d.protection = Some(NewProtection {
            link: Some(NewLink {
                token_hash: "t".repeat(64),
                sender: "s@example.com".into(),
                recipients: vec!["a@customer.test".into()],
                access: "code".into(),
                password_hash: None,
                expires_at: tomare_model::now_ms() + 60_000,
                max_downloads: 1,
                files: vec![ProtectedFile {
                    idx: 0,
                    name: "a.pdf".into(),
                    content_type: "application/pdf".into(),
                    size: 3,
                    sha256: "0".repeat(64),
                    downloads: 0,
                }],
            }),
            secrets: vec![NewSecret {
                kind: "zip".into(),
                sealed: vec![1, 2, 3],
                send_to: vec!["b@partner.test".into()],
            }],
        });
        store.decide(&[d]).await.unwrap();
        let now = tomare_model::now_ms();
        let dl = DownloadRow {
            at: now,
            idx: 0,
            ip: "1.2.3.4".into(),
            user_agent: "ua".into(),
            who: "a@customer.test".into(),
        };
        assert_eq!(store.take_download(&m.id, &dl, now).await.unwrap(), Take::Closed, "not delivered yet");
        let link = store.link_by_token(&"t".repeat(64)).await.unwrap().unwrap();
        assert_eq!((link.status(now), link.files.len()), ("pending", 1));
        // Delivered to the link's recipient only: the link opens, once per
        // file; the partner's password is not due (its copy is not there).
        sqlx::query("UPDATE messages SET state = 'deferred' WHERE id = ?")
            .bind(m.id.as_str())
            .execute(&store.writer)
            .await
            .unwrap();
        sqlx::query("UPDATE recipients SET status = 'delivered' WHERE message_id = ? AND address = 'a@customer.test'")
            .bind(m.id.as_str())
            .execute(&store.writer)
            .await
            .unwrap();
        assert_eq!(store.take_download(&m.id, &dl, now).await.unwrap(), Take::Ok);
        assert_eq!(store.take_download(&m.id, &dl, now).await.unwrap(), Take::Exhausted);
        assert!(store.due_secrets(now, 0).await.unwrap().is_empty(), "b's copy is not delivered");
        sqlx::query("UPDATE recipients SET status = 'delivered' WHERE message_id = ?")
            .bind(m.id.as_str())
            .execute(&store.writer)
            .await
            .unwrap();
        let due = store.due_secrets(now, 0).await.unwrap();
        assert_eq!((due.len(), due[0].send_to.as_slice()), (1, &["b@partner.test".to_string()][..]));
        store.secret_left(&m.id, "zip", &["c@partner.test".into()]).await.unwrap();
        assert_eq!(store.due_secrets(now, 0).await.unwrap()[0].send_to, ["c@partner.test"]);
        store.secret_sent(&m.id, "zip", now).await.unwrap();
        assert!(store.due_secrets(now, 0).await.unwrap().is_empty());
        // A code: right once, wrong never.
        store.save_code(&m.id, "A@customer.test", "h1", now + 60_000).await.unwrap();
        assert!(!store.use_code(&m.id, "a@customer.test", "h2", now).await.unwrap());
        assert!(store.use_code(&m.id, "a@customer.test", "h1", now).await.unwrap());
        assert!(!store.use_code(&m.id, "a@customer.test", "h1", now).await.unwrap(), "used up");
        assert!(store.revoke_link(&m.id, "cli", now).await.unwrap());
        assert_eq!(store.take_download(&m.id, &dl, now).await.unwrap(), Take::Closed);
        assert_eq!(store.links_to_purge(now).await.unwrap(), std::slice::from_ref(&m.id));
        // Retention: every row of it goes, in one transaction.
        let mut tx = write_tx(&store.writer, false).await.unwrap();
        archive::delete_message_rows(&mut tx, m.id.as_str()).await.unwrap();
        tx.commit().await.unwrap();
        assert!(store.get(&m.id).await.unwrap().is_none());
        assert!(store.link_of(&m.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn approvers_are_reminded_once_when_half_the_time_is_gone() {
        let (_dir, store) = open().await;
        let org = store.ensure_org("Example").await.unwrap();
        let now = tomare_model::now_ms();
        let m = message(org, State::Received, now, &["x@customer.test"]);
        store.insert_messages(std::slice::from_ref(&m)).await.unwrap();
        let mut d = decided(&m.id, State::AwaitingApproval, &["needs-ok"]);
        d.release_at = now + 600_000;
        d.approval = Some(ApprovalRequest {
            approver: "boss@example.com".into(),
            deputy: None,
            on_timeout: OnTimeout::Reject,
            timeout_ms: 600_000,
        });
        d.notify = vec![(NoticeKind::ApprovalRequest, "Boss@example.com".into())];
        store.decide(&[d]).await.unwrap();
        assert_eq!(store.asked(&m.id).await.unwrap(), ["boss@example.com"]);
        store.take_notices(10).await.unwrap();
        assert!(store.remind_approvals(now + 200_000).await.unwrap().is_empty(), "not yet");
        assert_eq!(store.remind_approvals(now + 300_001).await.unwrap(), std::slice::from_ref(&m.id));
        assert!(store.remind_approvals(now + 400_000).await.unwrap().is_empty(), "once");
        let notices = store.take_notices(10).await.unwrap();
        assert_eq!(notices.len(), 1);
        assert_eq!((notices[0].kind, notices[0].recipient.as_str()), (NoticeKind::Reminder, "boss@example.com"));
        // The deputy's turn is a new one.
        store.escalate(&m.id, "deputy@example.com", now + 1_200_000).await.unwrap();
        assert_eq!(store.remind_approvals(now + 900_001).await.unwrap(), std::slice::from_ref(&m.id));
        let mut to: Vec<String> = store
            .take_notices(10)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.kind == NoticeKind::Reminder)
            .map(|n| n.recipient)
            .collect();
        to.sort();
        assert_eq!(to, ["boss@example.com", "deputy@example.com"]);
    }

    #[tokio::test]
    async fn the_dashboard_counts_by_day_state_and_rule_and_who_cancelled_held_mail() {
        let (_dir, store) = open().await;
        let org = store.ensure_org("Example").await.unwrap();
        let now = tomare_model::now_ms();
        let a = message(org, State::Received, now, &["x@customer.test"]);
        let b = message(org, State::Held, now + 60_000, &["y@customer.test"]);
        let c = message(org, State::Received, now, &["z@customer.test"]);
        let d = message(org, State::Received, now, &["w@customer.test"]);
        store.insert_messages(&[a.clone(), b.clone(), c.clone(), d.clone()]).await.unwrap();
        store
            .decide(&[
                decided(&a.id, State::Held, &["external-hold"]),
                decided(&c.id, State::Released, &["external-hold", "bcc-boss"]),
                decided(&d.id, State::Released, &[]),
            ])
            .await
            .unwrap();
        store.cancel(&a.id, "web:taro@example.com").await.unwrap();
        store.cancel(&b.id, "cli").await.unwrap();
        // Cancelled without ever being held: not a held mail cancelled.
        store.cancel(&d.id, "web:taro@example.com").await.unwrap();
        let stats = store.stats(org, now - 1000).await.unwrap();
        let day = tomare_model::rfc3339(now)[..10].to_string();
        assert_eq!(stats.by_state, [(day.clone(), State::Cancelled, 3), (day.clone(), State::Released, 1)]);
        assert_eq!(
            stats.by_rule,
            [(day.clone(), "bcc-boss".to_string(), 1), (day.clone(), "external-hold".to_string(), 2)]
        );
        assert_eq!(stats.held, 2);
        let mut who: Vec<&str> = stats.cancels.iter().map(|(_, actor, _)| actor.as_str()).collect();
        who.sort();
        assert_eq!(who, ["cli", "web:taro@example.com"]);
        assert!(stats.cancels.iter().all(|(from, _, ms)| from == "taro@example.com" && *ms >= 0 && *ms < 60_000));
        assert_eq!(store.stats(org, now + 3_600_000).await.unwrap(), Stats::default(), "nothing since later");
    }

    #[tokio::test]
    async fn hold_release_claim_finish() {
        let (_dir, store) = open().await;
        let org = store.ensure_org("Example").await.unwrap();
        assert_eq!(store.ensure_org("Example").await.unwrap(), org);
        let now = tomare_model::now_ms();
        let held = message(org, State::Held, now + 60_000, &["a@x.test", "b@y.test"]);
        let due = message(org, State::Held, now - 1, &["c@x.test"]);
        store.insert_messages(&[held.clone(), due.clone()]).await.unwrap();

        assert_eq!(store.next_wakeup().await.unwrap(), Some(now - 1));
        let waiting = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<std::collections::HashSet<_>>();
        assert_eq!(store.waiting_domains(org).await.unwrap(), waiting(&["x.test", "y.test"]));
        assert_eq!(store.release_due(now).await.unwrap(), vec![due.id.clone()]);
        let claimed = store.claim(now, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "only the released message is claimed");
        assert_eq!(claimed[0].recipients, vec!["c@x.test"]);
        assert!(store.claim(now, 10).await.unwrap().is_empty(), "claimed once only");

        // The held one cannot be delivered until released, and a cancelled
        // message cannot be released.
        assert_eq!(store.cancel(&held.id, "cli").await.unwrap(), Transition::Done);
        assert_eq!(store.release(&held.id, "cli").await.unwrap(), Transition::Refused(State::Cancelled));
        assert!(store.waiting_domains(org).await.unwrap().is_empty(), "released and cancelled mail waits no more");

        store
            .finish(&[DeliveryReport {
                id: due.id.clone(),
                results: vec![RecipientResult {
                    address: "c@x.test".parse().unwrap(),
                    status: RcptStatus::Delivered,
                    reply: "250 ok".into(),
                }],
                state: State::Delivered,
                next_attempt_at: None,
                detail: String::new(),
            }])
            .await
            .unwrap();
        let (row, events) = store.get(&due.id).await.unwrap().unwrap();
        assert_eq!(row.state, State::Delivered);
        assert_eq!(row.recipients[0].status, RcptStatus::Delivered);
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["received", "held", "released", "delivering", "delivered"]);
        assert_eq!(store.release(&due.id, "cli").await.unwrap(), Transition::Refused(State::Delivered));
        let missing = MessageId::generate(0);
        assert_eq!(store.cancel(&missing, "cli").await.unwrap(), Transition::NotFound);
        // The delivered recipient's domain is now known; the cancelled ones' are not.
        let contacted = store.contacted(org).await.unwrap();
        assert!(contacted.contains("x.test") && !contacted.contains("y.test"), "{contacted:?}");
    }

    #[tokio::test]
    async fn deferred_recipients_are_retried_and_crashes_recovered() {
        let (_dir, store) = open().await;
        let org = store.ensure_org("Example").await.unwrap();
        let now = tomare_model::now_ms();
        let m = message(org, State::Released, now, &["ok@x.test", "later@x.test"]);
        store.insert_messages(std::slice::from_ref(&m)).await.unwrap();
        store.claim(now, 10).await.unwrap();
        store
            .finish(&[DeliveryReport {
                id: m.id.clone(),
                results: vec![
                    RecipientResult {
                        address: "ok@x.test".parse().unwrap(),
                        status: RcptStatus::Delivered,
                        reply: "250".into(),
                    },
                    RecipientResult {
                        address: "later@x.test".parse().unwrap(),
                        status: RcptStatus::Deferred,
                        reply: "451".into(),
                    },
                ],
                state: State::Deferred,
                next_attempt_at: Some(now + 1000),
                detail: String::new(),
            }])
            .await
            .unwrap();
        assert!(store.claim(now, 10).await.unwrap().is_empty(), "not due yet");
        let again = store.claim(now + 1000, 10).await.unwrap();
        assert_eq!(again[0].recipients, vec!["later@x.test"], "delivered recipient not retried");
        assert_eq!(again[0].attempts, 1);
        // A crash while delivering: recovery puts it back.
        assert_eq!(store.recover().await.unwrap(), 1);
        assert_eq!(store.claim(now + 1000, 10).await.unwrap().len(), 1);
        let depth = store.depth().await.unwrap();
        assert!(depth.contains(&(State::Delivering, 1)));
    }
}
