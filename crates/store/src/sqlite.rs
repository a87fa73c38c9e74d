use crate::archive;
use crate::migrate::{self, Database, MigrationStatus};
use crate::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use std::path::Path;
use std::time::Duration;

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
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
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
        let mut applied = migrate::apply(&writer, Database::Queue).await?;
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone().read_only(true)).await?;
        // FULL: a batch's records are synced before its spool files go.
        let arch = options
            .filename(path.with_file_name("archive.db"))
            .foreign_keys(false)
            .synchronous(SqliteSynchronous::Full);
        let arch_writer =
            SqlitePoolOptions::new().max_connections(1).min_connections(1).connect_with(arch.clone()).await?;
        applied.extend(migrate::apply(&arch_writer, Database::Archive).await?);
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

fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
}

fn parse_id(s: String) -> Result<MessageId> {
    MessageId::parse(&s).ok_or(StoreError::Corrupt { id: s, what: "bad id".into() })
}

/// Addresses stored before they were a type (schema version 0) are
/// rewritten in their canonical form. One the stricter parser cannot read
/// even leniently becomes `unreadable@invalid`, and a recipient still to
/// be tried with it fails (with the original, escaped, in its reply); a
/// sender becomes `<>`. Paged, so a big queue is not read at once.
/// Migration 3; the caller's transaction makes it all or nothing.
pub(crate) async fn canonical_addresses(tx: &mut sqlx::SqliteConnection) -> Result<()> {
    let mut after = 0i64;
    loop {
        let rows = sqlx::query("SELECT rowid, mail_from FROM messages WHERE rowid > ? ORDER BY rowid LIMIT 10000")
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        for r in &rows {
            let (rowid, stored): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
            let canonical = if stored.is_empty() {
                continue;
            } else {
                Address::parse_lenient(&stored).map(|a| a.to_string()).unwrap_or_default()
            };
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
    let mut after = 0i64;
    loop {
        let rows = sqlx::query("SELECT rowid, address FROM recipients WHERE rowid > ? ORDER BY rowid LIMIT 10000")
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        for r in &rows {
            let (rowid, stored): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
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

fn parse_on_timeout(id: &str, s: &str) -> Result<OnTimeout> {
    OnTimeout::parse(s).ok_or_else(|| StoreError::Corrupt { id: id.into(), what: format!("unknown on_timeout {s:?}") })
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

async fn insert_events(tx: &mut sqlx::SqliteConnection, at: i64, events: &[Event<'_>]) -> Result<()> {
    for chunk in events.chunks(MAX_PARAMS / 6) {
        let sql = format!(
            "INSERT INTO events (org_id, message_id, at, kind, actor, detail) VALUES {}",
            placeholders(chunk.len(), 6)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for e in chunk {
            q = q.bind(e.org_id).bind(e.message_id).bind(at).bind(e.kind).bind(e.actor).bind(&e.detail);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// A notice to send: to `recipient`, or to the sender when it is empty.
async fn add_notice(
    tx: &mut sqlx::SqliteConnection,
    id: &MessageId,
    org: i64,
    kind: NoticeKind,
    reason: &str,
    recipient: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notices (message_id, org_id, kind, reason, recipient, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(org)
    .bind(kind.as_str())
    .bind(reason)
    .bind(recipient)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
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

async fn upsert_contacts(tx: &mut sqlx::SqliteConnection, contacts: &[(i64, String)], now: i64) -> Result<()> {
    for chunk in contacts.chunks(MAX_PARAMS / 4) {
        let sql = format!(
            "INSERT INTO contacts (org_id, domain, first_at, last_at, messages) VALUES {} \
             ON CONFLICT(org_id, domain) DO UPDATE SET last_at = excluded.last_at, messages = messages + 1",
            vec!["(?, ?, ?, ?, 1)"; chunk.len()].join(",")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (org, domain) in chunk {
            q = q.bind(org).bind(domain).bind(now).bind(now);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Conditional state change of one message, with its event.
async fn transition(
    pool: &SqlitePool,
    id: &MessageId,
    from: &[State],
    to: State,
    actor: &str,
    set_release_now: bool,
    detail: &str,
) -> Result<Transition> {
    let now = tomare_model::now_ms();
    let mut tx = pool.begin().await?;
    let allowed = from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(",");
    let sql = format!(
        "UPDATE messages SET state = ?, updated_at = ?{} WHERE id = ? AND state IN ({allowed}) RETURNING org_id",
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
    let event = Event { org_id, message_id: id.as_str(), kind: to.as_str(), actor, detail: detail.to_string() };
    insert_events(&mut tx, now, &[event]).await?;
    tx.commit().await?;
    Ok(Transition::Done)
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

async fn insert_batch(conn: &mut sqlx::SqliteConnection, batch: &[NewMessage], now: i64) -> Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    const COLS: usize = 15;
    for chunk in batch.chunks(MAX_PARAMS / COLS) {
        let sql = format!(
            "INSERT INTO messages (id, org_id, state, mail_from, helo, client_ip, auth_user, subject, header_from, \
                 message_id_header, size, received_at, release_at, is_dsn, updated_at) VALUES {}",
            placeholders(chunk.len(), COLS)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for m in chunk {
            q = q
                .bind(m.id.as_str())
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
        q.execute(&mut *tx).await?;
    }
    let rcpts: Vec<(&NewMessage, usize, String)> = batch
        .iter()
        .flat_map(|m| m.envelope.rcpt_to.iter().enumerate().map(move |(i, r)| (m, i, r.to_string())))
        .collect();
    for chunk in rcpts.chunks(MAX_PARAMS / 6) {
        let sql = format!(
            "INSERT INTO recipients (message_id, org_id, idx, address, status, updated_at) VALUES {}",
            placeholders(chunk.len(), 6)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (m, i, r) in chunk {
            q = q.bind(m.id.as_str()).bind(m.org_id).bind(*i as i64).bind(r).bind("pending").bind(now);
        }
        q.execute(&mut *tx).await?;
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
    insert_events(&mut tx, now, &events).await?;
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_org(&self, name: &str) -> Result<OrgId> {
        sqlx::query("INSERT INTO orgs (name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(name)
            .bind(tomare_model::now_ms())
            .execute(&self.writer)
            .await?;
        Ok(sqlx::query_scalar("SELECT id FROM orgs WHERE name = ?").bind(name).fetch_one(&self.writer).await?)
    }

    async fn find_org(&self, name: &str) -> Result<Option<OrgId>> {
        Ok(sqlx::query_scalar("SELECT id FROM orgs WHERE name = ?").bind(name).fetch_optional(&self.reader).await?)
    }

    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = tomare_model::now_ms();
        let mut conn = self.writer.acquire().await?;
        // The 250 promises the record is on disk: this commit syncs the WAL,
        // and with it every earlier commit (the WAL is written in order).
        sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
        let result = insert_batch(&mut conn, batch, now).await;
        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
        result
    }

    async fn decide(&self, batch: &[Decision]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = tomare_model::now_ms();
        let mut tx = self.writer.begin().await?;
        let mut events = Vec::with_capacity(batch.len() * 2);
        for chunk in batch.chunks(MAX_PARAMS / 3) {
            let sql = format!(
                "UPDATE messages SET state = v.column2, release_at = v.column3, updated_at = ? FROM (VALUES {}) AS v \
                 WHERE messages.id = v.column1 AND messages.state = 'received' RETURNING messages.id, messages.org_id",
                placeholders(chunk.len(), 3)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for d in chunk {
                q = q.bind(d.id.as_str()).bind(d.state.as_str()).bind(d.release_at);
            }
            let updated: Vec<(String, i64)> = q
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_>>()?;
            let decided: Vec<(&Decision, i64)> = chunk
                .iter()
                .filter_map(|d| updated.iter().find(|(id, _)| id == d.id.as_str()).map(|(_, org)| (d, *org)))
                .collect();
            if decided.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT OR REPLACE INTO facts (message_id, org_id, json, verdict, created_at) VALUES {}",
                placeholders(decided.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (d, org) in &decided {
                let (facts, verdict) = stored_review(&d.facts, d.verdict.as_ref());
                q = q.bind(d.id.as_str()).bind(*org).bind(facts).bind(verdict).bind(now);
            }
            q.execute(&mut *tx).await?;
            for (d, org) in decided {
                if let (State::AwaitingApproval, Some(a)) = (d.state, &d.approval) {
                    sqlx::query(
                        "INSERT OR REPLACE INTO approvals (message_id, org_id, approver, deputy, on_timeout, timeout_ms, deadline) \
                         VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(d.id.as_str())
                    .bind(org)
                    .bind(&a.approver)
                    .bind(&a.deputy)
                    .bind(a.on_timeout.as_str())
                    .bind(a.timeout_ms)
                    .bind(d.release_at)
                    .execute(&mut *tx)
                    .await?;
                }
                if d.state == State::Rejected {
                    add_notice(&mut tx, &d.id, org, NoticeKind::Rejected, &d.reasons, "", now).await?;
                }
                for (kind, recipient) in &d.notify {
                    add_notice(&mut tx, &d.id, org, *kind, &d.reasons, recipient, now).await?;
                }
                events.push(Event {
                    org_id: org,
                    message_id: d.id.as_str(),
                    kind: "inspected",
                    actor: "inspect",
                    detail: d.summary.clone(),
                });
                for address in &d.add_recipients {
                    sqlx::query(
                        "INSERT INTO recipients (message_id, org_id, idx, address, status, updated_at) \
                         SELECT ?, ?, COALESCE(MAX(idx), -1) + 1, ?, 'pending', ? FROM recipients WHERE message_id = ?",
                    )
                    .bind(d.id.as_str())
                    .bind(org)
                    .bind(address.to_string())
                    .bind(now)
                    .bind(d.id.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                if d.rewritten || !d.add_recipients.is_empty() {
                    let mut what = Vec::new();
                    if d.rewritten {
                        what.push("message rewritten".to_string());
                    }
                    if !d.add_recipients.is_empty() {
                        let added: Vec<String> = d.add_recipients.iter().map(Address::to_string).collect();
                        what.push(format!("recipients added: {}", added.join(", ")));
                    }
                    events.push(Event {
                        org_id: org,
                        message_id: d.id.as_str(),
                        kind: "transformed",
                        actor: "policy",
                        detail: what.join("; "),
                    });
                }
                let detail = match (d.state, &d.approval) {
                    (State::Held, _) => format!("until {} — {}", tomare_model::rfc3339(d.release_at), d.reasons),
                    (State::AwaitingApproval, Some(a)) => format!(
                        "approver {} until {} — {}",
                        if a.approver.is_empty() { "(none found)" } else { &a.approver },
                        tomare_model::rfc3339(d.release_at),
                        d.reasons
                    ),
                    _ => d.reasons.clone(),
                };
                events.push(Event {
                    org_id: org,
                    message_id: d.id.as_str(),
                    kind: d.state.as_str(),
                    actor: "policy",
                    detail,
                });
            }
        }
        insert_events(&mut tx, now, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reviewed(&self, id: &MessageId) -> Result<Option<Reviewed>> {
        let row = sqlx::query("SELECT json, verdict FROM facts WHERE message_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| read_review(id.as_str(), &r.try_get::<String, _>(0)?, &r.try_get::<String, _>(1)?)).transpose()
    }

    async fn approval(&self, id: &MessageId) -> Result<Option<ApprovalRequest>> {
        let row = sqlx::query("SELECT approver, deputy, on_timeout, timeout_ms FROM approvals WHERE message_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| {
            Ok(ApprovalRequest {
                approver: r.try_get(0)?,
                deputy: r.try_get(1)?,
                on_timeout: parse_on_timeout(id.as_str(), &r.try_get::<String, _>(2)?)?,
                timeout_ms: r.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn approve(&self, id: &MessageId, actor: &str) -> Result<Transition> {
        let t =
            transition(&self.writer, id, &[State::AwaitingApproval], State::Released, actor, true, "approved").await?;
        if t == Transition::Done {
            decide_approval(&self.writer, id, "approved", actor, "").await?;
        }
        Ok(t)
    }

    async fn deny(&self, id: &MessageId, actor: &str, reason: &str) -> Result<Transition> {
        let t = transition(&self.writer, id, &[State::AwaitingApproval], State::Rejected, actor, false, reason).await?;
        if t == Transition::Done {
            decide_approval(&self.writer, id, "denied", actor, reason).await?;
            let org: i64 = sqlx::query_scalar("SELECT org_id FROM messages WHERE id = ?")
                .bind(id.as_str())
                .fetch_one(&self.writer)
                .await?;
            let mut tx = self.writer.begin().await?;
            add_notice(&mut tx, id, org, NoticeKind::Denied, reason, "", tomare_model::now_ms()).await?;
            tx.commit().await?;
        }
        Ok(t)
    }

    async fn expired_approvals(&self, now: i64) -> Result<Vec<ExpiredApproval>> {
        let rows = sqlx::query(
            "SELECT m.id, a.on_timeout, a.deputy, a.timeout_ms FROM messages m JOIN approvals a ON a.message_id = m.id \
             WHERE m.state = 'awaiting_approval' AND m.release_at <= ?",
        )
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(ExpiredApproval {
                    on_timeout: parse_on_timeout(&id, &r.try_get::<String, _>(1)?)?,
                    id: parse_id(id)?,
                    deputy: r.try_get(2)?,
                    timeout_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn escalate(&self, id: &MessageId, deputy: &str, deadline: i64) -> Result<Transition> {
        let now = tomare_model::now_ms();
        let mut tx = self.writer.begin().await?;
        let org: Option<i64> = sqlx::query_scalar(
            "UPDATE messages SET release_at = ?, updated_at = ? WHERE id = ? AND state = 'awaiting_approval' RETURNING org_id",
        )
        .bind(deadline)
        .bind(now)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(org) = org else { return Ok(Transition::NotFound) };
        sqlx::query("UPDATE approvals SET approver = ?, deputy = NULL, on_timeout = 'reject', deadline = ? WHERE message_id = ?")
            .bind(deputy)
            .bind(deadline)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if deputy.contains('@') {
            add_notice(&mut tx, id, org, NoticeKind::ApprovalRequest, "escalated: no decision in time", deputy, now)
                .await?;
        }
        let detail = format!("no decision in time; now {deputy} until {}", tomare_model::rfc3339(deadline));
        let event = Event { org_id: org, message_id: id.as_str(), kind: "escalated", actor: "policy", detail };
        insert_events(&mut tx, now, &[event]).await?;
        tx.commit().await?;
        Ok(Transition::Done)
    }

    async fn take_notices(&self, limit: i64) -> Result<Vec<Notice>> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "SELECT n.message_id, n.org_id, n.kind, n.reason, m.mail_from, m.subject, m.message_id_header, n.id, n.recipient \
             FROM notices n JOIN messages m ON m.id = n.message_id ORDER BY n.id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut gone = Vec::new();
        for r in &rows {
            let stored: String = r.try_get(2)?;
            let Some(kind) = NoticeKind::parse(&stored) else {
                // Not one of ours (a newer tomare's?): dropped, and said.
                tracing::error!(kind = %tomare_model::escape_controls(&stored), "a notice of an unknown kind is dropped");
                gone.push(r.try_get::<i64, _>(7)?);
                continue;
            };
            out.push(Notice {
                id: parse_id(r.try_get(0)?)?,
                org_id: r.try_get(1)?,
                kind,
                reason: r.try_get(3)?,
                mail_from: r.try_get(4)?,
                subject: r.try_get(5)?,
                message_id_header: r.try_get(6)?,
                notice_id: r.try_get(7)?,
                recipient: r.try_get(8)?,
            });
        }
        for id in out.iter().map(|n| n.notice_id).chain(gone) {
            sqlx::query("DELETE FROM notices WHERE id = ?").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn release_due(&self, now: i64) -> Result<Vec<MessageId>> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "UPDATE messages SET state = 'released', updated_at = ? WHERE state = 'held' AND release_at <= ? RETURNING id, org_id",
        )
        .bind(now)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut orgs = Vec::with_capacity(rows.len());
        for r in &rows {
            ids.push(parse_id(r.try_get(0)?)?);
            orgs.push(r.try_get::<i64, _>(1)?);
        }
        let events: Vec<Event> = ids
            .iter()
            .zip(&orgs)
            .map(|(id, org)| Event {
                org_id: *org,
                message_id: id.as_str(),
                kind: "released",
                actor: "hold",
                detail: "hold time over".into(),
            })
            .collect();
        insert_events(&mut tx, now, &events).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn next_wakeup(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(t) FROM (SELECT MIN(release_at) AS t FROM messages WHERE state IN ('held', 'awaiting_approval') \
             UNION ALL SELECT MIN(next_attempt_at) FROM messages WHERE state = 'deferred')",
        )
        .fetch_one(&self.reader)
        .await?)
    }

    async fn release(&self, id: &MessageId, actor: &str) -> Result<Transition> {
        transition(&self.writer, id, &[State::Held], State::Released, actor, true, "").await
    }

    async fn cancel(&self, id: &MessageId, actor: &str) -> Result<Transition> {
        let from = [State::Received, State::Held, State::AwaitingApproval, State::Released, State::Deferred];
        transition(&self.writer, id, &from, State::Cancelled, actor, false, "").await
    }

    async fn claim(&self, now: i64, limit: usize) -> Result<Vec<Claimed>> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "UPDATE messages SET state = 'delivering', updated_at = ? WHERE id IN (\
               SELECT id FROM messages WHERE state = 'released' \
               UNION ALL SELECT id FROM messages WHERE state = 'deferred' AND next_attempt_at <= ? \
               ORDER BY id LIMIT ?) \
             RETURNING id, org_id, mail_from, attempts, received_at, is_dsn, size",
        )
        .bind(now)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            claimed.push(Claimed {
                id: parse_id(r.try_get(0)?)?,
                org_id: r.try_get(1)?,
                // A row that does not parse (edited by hand) must not stop
                // every delivery: it goes without a sender (no DSN).
                mail_from: parse_address(&r.try_get::<String, _>(0)?, r.try_get(2)?).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "a claimed message's sender is not an address: sent as <>");
                    Address::null()
                }),
                recipients: Vec::new(),
                attempts: r.try_get(3)?,
                received_at: r.try_get(4)?,
                is_dsn: r.try_get(5)?,
                size: r.try_get(6)?,
            });
        }
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(claimed);
        }
        let sql = format!(
            "SELECT message_id, address FROM recipients WHERE status IN ('pending', 'deferred') AND message_id IN ({}) ORDER BY message_id, idx",
            vec!["?"; claimed.len()].join(",")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for c in &claimed {
            q = q.bind(c.id.as_str());
        }
        let mut unreadable: Vec<(String, String)> = Vec::new();
        for r in q.fetch_all(&mut *tx).await? {
            let mid: String = r.try_get(0)?;
            let stored: String = r.try_get(1)?;
            if let Some(c) = claimed.iter_mut().find(|c| c.id.as_str() == mid) {
                match parse_address(&mid, stored.clone()) {
                    Ok(a) => c.recipients.push(a),
                    // Failed, not retried for ever, and the rest still go.
                    Err(e) => {
                        tracing::error!(error = %e, "a claimed recipient is not an address: failed");
                        unreadable.push((mid, stored));
                    }
                }
            }
        }
        for (mid, stored) in &unreadable {
            sqlx::query(
                "UPDATE recipients SET status = 'failed', reply = '553 5.1.3 not an address' \
                 WHERE message_id = ? AND address = ?",
            )
            .bind(mid)
            .bind(stored)
            .execute(&mut *tx)
            .await?;
        }
        let events: Vec<Event> = claimed
            .iter()
            .map(|c| Event {
                org_id: c.org_id,
                message_id: c.id.as_str(),
                kind: "delivering",
                actor: "relay",
                detail: format!("attempt {}", c.attempts + 1),
            })
            .collect();
        insert_events(&mut tx, now, &events).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish(&self, reports: &[DeliveryReport]) -> Result<()> {
        let now = tomare_model::now_ms();
        let mut tx = self.writer.begin().await?;
        // One statement per table for the whole batch (UPDATE ... FROM VALUES),
        // not one per message: the batch is what makes recording cheap.
        let results: Vec<(&DeliveryReport, &RecipientResult)> =
            reports.iter().flat_map(|r| r.results.iter().map(move |res| (r, res))).collect();
        for chunk in results.chunks(MAX_PARAMS / 4) {
            let sql = format!(
                "UPDATE recipients SET status = v.column3, reply = v.column4, attempts = attempts + 1, updated_at = ? \
                 FROM (VALUES {}) AS v \
                 WHERE recipients.message_id = v.column1 AND recipients.address = v.column2 \
                 AND recipients.status IN ('pending', 'deferred')",
                placeholders(chunk.len(), 4)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for (r, res) in chunk {
                q = q.bind(r.id.as_str()).bind(res.address.to_string()).bind(res.status.as_str()).bind(&res.reply);
            }
            q.execute(&mut *tx).await?;
        }
        let mut events = Vec::with_capacity(reports.len());
        for chunk in reports.chunks(MAX_PARAMS / 3) {
            let sql = format!(
                "UPDATE messages SET state = v.column2, next_attempt_at = v.column3, attempts = attempts + 1, \
                 updated_at = ? FROM (VALUES {}) AS v \
                 WHERE messages.id = v.column1 AND messages.state = 'delivering' RETURNING messages.id, messages.org_id",
                placeholders(chunk.len(), 3)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for r in chunk {
                q = q.bind(r.id.as_str()).bind(r.state.as_str()).bind(r.next_attempt_at);
            }
            for row in q.fetch_all(&mut *tx).await? {
                let id: String = row.try_get(0)?;
                let org_id: i64 = row.try_get(1)?;
                if let Some(r) = chunk.iter().find(|r| r.id.as_str() == id) {
                    events.push(Event {
                        org_id,
                        message_id: r.id.as_str(),
                        kind: r.state.as_str(),
                        actor: "relay",
                        detail: r.detail.clone(),
                    });
                }
            }
        }
        // Recipient history: every domain something was delivered to.
        let mut contacts: Vec<(i64, String)> = Vec::new();
        for e in &events {
            let Some(r) = reports.iter().find(|r| r.id.as_str() == e.message_id) else { continue };
            for res in r.results.iter().filter(|res| res.status == RcptStatus::Delivered) {
                let d = res.address.domain().to_string();
                if !d.is_empty() && !contacts.iter().any(|(o, x)| *o == e.org_id && *x == d) {
                    contacts.push((e.org_id, d));
                }
            }
        }
        upsert_contacts(&mut tx, &contacts, now).await?;
        insert_events(&mut tx, now, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn contacted(&self, org: OrgId) -> Result<std::collections::HashSet<String>> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT domain FROM contacts WHERE org_id = ?")
            .bind(org)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn waiting_domains(&self, org: OrgId) -> Result<std::collections::HashSet<String>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT r.address FROM messages m JOIN recipients r ON r.message_id = m.id \
             WHERE m.org_id = ? AND m.state IN ('held', 'awaiting_approval')",
        )
        .bind(org)
        .fetch_all(&self.reader)
        .await?;
        // Canonical addresses: the domain is what follows the last `@`.
        Ok(rows.iter().filter_map(|a| a.rsplit_once('@')).map(|(_, d)| d.to_lowercase()).collect())
    }

    async fn record_contacts(&self, org: OrgId, domains: &[String]) -> Result<()> {
        let now = tomare_model::now_ms();
        let contacts: Vec<(i64, String)> = domains.iter().map(|d| (org, d.to_lowercase())).collect();
        let mut tx = self.writer.begin().await?;
        upsert_contacts(&mut tx, &contacts, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recover(&self) -> Result<u64> {
        let now = tomare_model::now_ms();
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "UPDATE messages SET state = 'released', updated_at = ? WHERE state = 'delivering' RETURNING id, org_id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<(String, i64)> = rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_>>()?;
        let events: Vec<Event> = ids
            .iter()
            .map(|(id, org)| Event {
                org_id: *org,
                message_id: id,
                kind: "released",
                actor: "recovery",
                detail: "interrupted by a restart".into(),
            })
            .collect();
        insert_events(&mut tx, now, &events).await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn live_ids(&self, unarchived: bool) -> Result<Vec<MessageId>> {
        let sql = if unarchived {
            "SELECT id FROM messages WHERE state NOT IN ('delivered', 'failed', 'cancelled', 'rejected') \
             OR archived < 2"
        } else {
            "SELECT id FROM messages WHERE state NOT IN ('delivered', 'failed', 'cancelled', 'rejected')"
        };
        let ids: Vec<String> = sqlx::query_scalar(sql).fetch_all(&self.reader).await?;
        ids.into_iter().map(parse_id).collect()
    }

    async fn list(&self, state: Option<State>, limit: i64) -> Result<Vec<MessageRow>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages {} ORDER BY id DESC LIMIT ?",
            if state.is_some() { "WHERE state = ?" } else { "" }
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(s) = state {
            q = q.bind(s.as_str());
        }
        let rows = q.bind(limit).fetch_all(&self.reader).await?;
        let mut out = rows.iter().map(message_from_row).collect::<Result<Vec<_>>>()?;
        self.attach_recipients(&mut out).await?;
        Ok(out)
    }

    async fn get(&self, id: &MessageId) -> Result<Option<(MessageRow, Vec<EventRow>)>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?");
        let Some(row) = sqlx::query(AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.reader).await? else {
            return Ok(None);
        };
        let mut message = [message_from_row(&row)?];
        self.attach_recipients(&mut message).await?;
        let events = sqlx::query("SELECT at, kind, actor, detail FROM events WHERE message_id = ? ORDER BY id")
            .bind(id.as_str())
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|r| {
                Ok(EventRow { at: r.try_get(0)?, kind: r.try_get(1)?, actor: r.try_get(2)?, detail: r.try_get(3)? })
            })
            .collect::<Result<Vec<_>>>()?;
        let [message] = message;
        Ok(Some((message, events)))
    }

    async fn depth(&self) -> Result<Vec<(State, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM messages GROUP BY state").fetch_all(&self.reader).await?;
        let mut out: Vec<(State, i64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for r in rows {
            let s: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            if let Some(slot) = out.iter_mut().find(|(st, _)| st.as_str() == s) {
                slot.1 = n;
            }
        }
        Ok(out)
    }

    async fn put_directory(&self, org: OrgId, entries: &[DirectoryEntry]) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM directory WHERE org_id = ?").bind(org).execute(&mut *tx).await?;
        for e in entries {
            sqlx::query(
                "INSERT OR REPLACE INTO directory (org_id, email, name, role, supervisor, groups) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(org)
            .bind(e.email.to_lowercase())
            .bind(&e.name)
            .bind(&e.role)
            .bind(e.supervisor.as_ref().map(|s| s.to_lowercase()))
            .bind(e.groups.join("\n"))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn directory(&self, org: OrgId) -> Result<Vec<DirectoryEntry>> {
        let rows =
            sqlx::query("SELECT email, name, role, supervisor, groups FROM directory WHERE org_id = ? ORDER BY email")
                .bind(org)
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| {
                let groups: String = r.try_get(4)?;
                Ok(DirectoryEntry {
                    email: r.try_get(0)?,
                    name: r.try_get(1)?,
                    role: r.try_get(2)?,
                    supervisor: r.try_get(3)?,
                    groups: groups.split('\n').filter(|g| !g.is_empty()).map(str::to_string).collect(),
                })
            })
            .collect()
    }

    async fn put_user(&self, org: OrgId, email: &str, password_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (email, org_id, password_hash, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT(email) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(email.to_ascii_lowercase())
        .bind(org)
        .bind(password_hash)
        .bind(tomare_model::now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn set_send_as(&self, email: &str, addresses: &[SendAs]) -> Result<()> {
        let email = email.to_ascii_lowercase();
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM user_send_as WHERE email = ?").bind(&email).execute(&mut *tx).await?;
        for a in addresses {
            sqlx::query("INSERT OR IGNORE INTO user_send_as (email, address) VALUES (?, ?)")
                .bind(&email)
                .bind(a.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, email: &str) -> Result<Option<UserRow>> {
        let email = email.to_ascii_lowercase();
        let row = sqlx::query("SELECT org_id, password_hash FROM users WHERE email = ?")
            .bind(&email)
            .fetch_optional(&self.reader)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let send_as = self.send_as(&email).await?;
        Ok(Some(UserRow { org_id: row.try_get(0)?, email, password_hash: row.try_get(1)?, send_as }))
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query("SELECT org_id, email, password_hash FROM users ORDER BY email")
            .fetch_all(&self.reader)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let email: String = r.try_get(1)?;
            let send_as = self.send_as(&email).await?;
            out.push(UserRow { org_id: r.try_get(0)?, email, password_hash: r.try_get(2)?, send_as });
        }
        Ok(out)
    }

    async fn archive_due(&self, limit: i64, received_before: i64, skip: &[MessageId]) -> Result<Vec<ArchiveDue>> {
        let skip = &skip[..skip.len().min(MAX_PARAMS)];
        let not_in = if skip.is_empty() {
            String::new()
        } else {
            format!(" AND id NOT IN ({})", vec!["?"; skip.len()].join(","))
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS}, archived FROM messages {}{not_in} ORDER BY archived, id LIMIT ?",
            archive::DUE
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(received_before);
        for id in skip {
            q = q.bind(id.as_str());
        }
        let rows = q.bind(limit).fetch_all(&self.reader).await?;
        let archived: Vec<i64> = rows.iter().map(|r| r.try_get("archived")).collect::<std::result::Result<_, _>>()?;
        let mut messages = rows.iter().map(message_from_row).collect::<Result<Vec<_>>>()?;
        self.attach_recipients(&mut messages).await?;
        let mut events: std::collections::HashMap<String, Vec<EventRow>> = Default::default();
        let mut reviewed: std::collections::HashMap<String, Reviewed> = Default::default();
        for chunk in messages.chunks(MAX_PARAMS) {
            let ids = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT message_id, at, kind, actor, detail FROM events WHERE message_id IN ({ids}) ORDER BY id"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in chunk {
                q = q.bind(m.id.as_str());
            }
            for r in q.fetch_all(&self.reader).await? {
                let e =
                    EventRow { at: r.try_get(1)?, kind: r.try_get(2)?, actor: r.try_get(3)?, detail: r.try_get(4)? };
                events.entry(r.try_get(0)?).or_default().push(e);
            }
            let sql = format!("SELECT message_id, json, verdict FROM facts WHERE message_id IN ({ids})");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in chunk {
                q = q.bind(m.id.as_str());
            }
            for r in q.fetch_all(&self.reader).await? {
                let id: String = r.try_get(0)?;
                // A damaged row must not stall archiving: archived without it.
                match read_review(&id, &r.try_get::<String, _>(1)?, &r.try_get::<String, _>(2)?) {
                    Ok(v) => drop(reviewed.insert(id, v)),
                    Err(e) => tracing::error!(%id, error = %e, "archived without its review"),
                }
            }
        }
        Ok(messages
            .into_iter()
            .zip(archived)
            .map(|(row, archived)| ArchiveDue {
                events: events.remove(row.id.as_str()).unwrap_or_default(),
                reviewed: reviewed.remove(row.id.as_str()),
                row,
                archived,
            })
            .collect())
    }

    async fn archive_append(
        &self,
        entries: &[ArchiveEntry],
        progress: &[(MessageId, i64)],
        blobs: &[BlobLoc],
    ) -> Result<Vec<ArchiveRecord>> {
        archive::append(&self.arch_writer, &self.writer, entries, progress, blobs).await
    }

    async fn archive_recorded(&self, message_ids: &[String]) -> Result<std::collections::HashSet<String>> {
        archive::recorded(&self.arch_reader, message_ids).await
    }

    async fn blob_locations(&self, hashes: &[String]) -> Result<std::collections::HashMap<String, BlobLoc>> {
        archive::blob_locations(&self.arch_reader, hashes).await
    }

    async fn pack_blobs(&self, pack: &str) -> Result<Vec<BlobLoc>> {
        archive::pack_blobs(&self.arch_reader, pack).await
    }

    async fn relocate_blobs(&self, locs: &[BlobLoc]) -> Result<()> {
        archive::relocate_blobs(&self.arch_writer, locs).await
    }

    async fn archive_records(&self, after_seq: i64, limit: i64) -> Result<Vec<ArchiveRecord>> {
        archive::records(&self.arch_reader, after_seq, limit).await
    }

    async fn archive_records_of(&self, message_id: &str) -> Result<Vec<ArchiveRecord>> {
        archive::records_of(&self.arch_reader, message_id).await
    }

    async fn archive_head(&self) -> Result<Option<ArchiveRecord>> {
        archive::last(&self.arch_reader).await
    }

    async fn add_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<()> {
        archive::add_checkpoint(&self.arch_writer, checkpoint).await
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>> {
        archive::checkpoints(&self.arch_reader).await
    }

    async fn set_legal_hold(&self, message_ids: &[String], hold: bool, actor: &str, reason: &str) -> Result<u64> {
        archive::set_legal_hold(&self.arch_writer, message_ids, hold, actor, reason).await
    }

    async fn legal_holds(&self) -> Result<Vec<String>> {
        archive::legal_holds(&self.arch_reader).await
    }

    async fn archive_purge(&self, org: OrgId, before: i64, limit: i64) -> Result<Purged> {
        archive::purge(&self.arch_writer, &self.writer, org, before, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        sqlx::raw_sql(include_str!("../migrations/queue/0001_initial.sql")).execute(&old).await.unwrap();
        sqlx::raw_sql(include_str!("../migrations/queue/0002_archive_flag.sql")).execute(&old).await.unwrap();
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
        assert_eq!(all.len(), 5);
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

    #[tokio::test]
    async fn a_new_database_runs_every_migration_once() {
        let (_dir, store) = open().await;
        let applied = store.migrations_applied();
        assert_eq!(applied.len(), 5);
        assert!(applied.iter().all(|m| !m.adopted), "{applied:?}");
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
