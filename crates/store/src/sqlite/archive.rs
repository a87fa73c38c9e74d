//! [`ArchiveStore`] on SQLite: the chain appended in one transaction at a
//! time (so two writers, the server and `tomare archive import`, never fork
//! it), blobs, checkpoints, legal holds and retention, in `archive.db`.

use super::*;
use crate::*;
use async_trait::async_trait;
use sqlx::{Row, SqlitePool, sqlite::SqliteRow};
use std::collections::{HashMap, HashSet};
use tomare_model::{MessageId, OrgId, now_ms};

/// Messages with archiving to do (see `Store::archive_due`).
pub(crate) const DUE: &str = "WHERE archived < 2 AND ((archived = 0 AND state != 'received' AND received_at < ?) \
     OR state IN ('delivered', 'failed', 'cancelled', 'rejected'))";

const COLUMNS: &str = "seq, message_id, org_id, kind, at, blob, meta, meta_hash, hash, purged_at";

fn record(r: SqliteRow) -> ArchiveRecord {
    ArchiveRecord {
        seq: r.get(0),
        message_id: r.get(1),
        org_id: r.get(2),
        kind: r.get(3),
        at: r.get(4),
        blob: r.get(5),
        meta: r.get(6),
        meta_hash: r.get(7),
        hash: r.get(8),
        purged_at: r.get(9),
    }
}

async fn head(conn: &mut sqlx::SqliteConnection) -> Result<(i64, String)> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM archive ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *conn).await?;
    Ok(row.unwrap_or((0, GENESIS.to_string())))
}

/// Rows per multi-row statement (SQLite allows 32766 parameters).
const ROWS: usize = 200;

fn marks(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
}

async fn insert(conn: &mut sqlx::SqliteConnection, entries: &[ArchiveEntry]) -> Result<Vec<ArchiveRecord>> {
    let (mut seq, mut prev) = head(conn).await?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let meta_hash = sha256_hex(e.meta.as_bytes());
        let hash = chain_link(&prev, seq, &e.kind, &e.message_id, e.at, &e.blob, &meta_hash);
        prev = hash.clone();
        out.push(ArchiveRecord {
            seq,
            message_id: e.message_id.clone(),
            org_id: e.org_id,
            kind: e.kind.clone(),
            at: e.at,
            blob: e.blob.clone(),
            meta: Some(e.meta.clone()),
            meta_hash,
            hash,
            purged_at: None,
        });
    }
    // Many rows per statement: the writer connection is shared with the
    // queue, so the transaction must be short.
    for chunk in out.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO archive (seq, message_id, org_id, kind, at, blob, meta, meta_hash, hash) VALUES {}",
            marks(chunk.len(), 9)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(r.seq)
                .bind(&r.message_id)
                .bind(r.org_id)
                .bind(&r.kind)
                .bind(r.at)
                .bind(&r.blob)
                .bind(r.meta.as_deref())
                .bind(&r.meta_hash)
                .bind(&r.hash);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(out)
}

/// The entries whose message has no record of that kind yet.
async fn not_yet_recorded(conn: &mut sqlx::SqliteConnection, entries: &[ArchiveEntry]) -> Result<Vec<ArchiveEntry>> {
    let ids: Vec<&str> = entries.iter().map(|e| e.message_id.as_str()).collect();
    let have = recorded_kinds(conn, &ids).await?;
    Ok(entries.iter().filter(|e| !have.contains(&(e.message_id.clone(), e.kind.clone()))).cloned().collect())
}

/// (message id, kind) of the records these messages have.
async fn recorded_kinds(conn: &mut sqlx::SqliteConnection, ids: &[&str]) -> Result<HashSet<(String, String)>> {
    let mut have = HashSet::new();
    for chunk in ids.chunks(ROWS * 4) {
        let sql = format!(
            "SELECT message_id, kind FROM archive WHERE kind != 'purge' AND message_id IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            have.insert((r.get::<String, _>(0), r.get::<String, _>(1)));
        }
    }
    Ok(have)
}

pub(crate) async fn recorded(reader: &SqlitePool, ids: &[String]) -> Result<HashSet<String>> {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut conn = reader.acquire().await?;
    Ok(recorded_kinds(&mut conn, &ids).await?.into_iter().map(|(id, _)| id).collect())
}

async fn insert_blobs(conn: &mut sqlx::SqliteConnection, blobs: &[BlobLoc]) -> Result<()> {
    for chunk in blobs.chunks(ROWS) {
        let sql = format!("INSERT OR IGNORE INTO blobs (hash, pack, offset, len) VALUES {}", marks(chunk.len(), 4));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in chunk {
            q = q.bind(&b.hash).bind(&b.pack).bind(b.offset).bind(b.len);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn blob_row(r: SqliteRow) -> BlobLoc {
    BlobLoc { hash: r.get(0), pack: r.get(1), offset: r.get(2), len: r.get(3) }
}

pub(crate) async fn blob_locations(reader: &SqlitePool, hashes: &[String]) -> Result<HashMap<String, BlobLoc>> {
    let mut out = HashMap::new();
    for chunk in hashes.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT hash, pack, offset, len FROM blobs WHERE hash IN ({marks})");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for h in chunk {
            q = q.bind(h);
        }
        for r in q.fetch_all(reader).await? {
            let loc = blob_row(r);
            out.insert(loc.hash.clone(), loc);
        }
    }
    Ok(out)
}

pub(crate) async fn pack_blobs(reader: &SqlitePool, pack: &str) -> Result<Vec<BlobLoc>> {
    let rows = sqlx::query("SELECT hash, pack, offset, len FROM blobs WHERE pack = ? ORDER BY offset")
        .bind(pack)
        .fetch_all(reader)
        .await?;
    Ok(rows.into_iter().map(blob_row).collect())
}

pub(crate) async fn relocate_blobs(writer: &SqlitePool, locs: &[BlobLoc]) -> Result<()> {
    let mut tx = writer.begin().await?;
    for b in locs {
        sqlx::query("UPDATE blobs SET pack = ?, offset = ?, len = ? WHERE hash = ?")
            .bind(&b.pack)
            .bind(b.offset)
            .bind(b.len)
            .bind(&b.hash)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Appends to the chain in `archive.db`, then marks progress in the queue
/// database. The two commits are separate: after a crash between them the
/// messages come round again, and records they already have are skipped.
pub(crate) async fn append(
    writer: &SqlitePool,
    queue: &SqlitePool,
    entries: &[ArchiveEntry],
    progress: &[(MessageId, i64)],
    blobs: &[BlobLoc],
) -> Result<Vec<ArchiveRecord>> {
    let out = append_records(writer, entries, blobs).await?;
    let mut s = Script::default();
    for level in [1, 2] {
        let ids: Vec<&str> = progress.iter().filter(|(_, a)| *a == level).map(|(id, _)| id.as_str()).collect();
        for chunk in ids.chunks(ROWS * 4) {
            s.push(&format!("UPDATE messages SET archived = ? WHERE id IN ({})", vec!["?"; chunk.len()].join(",")))
                .bind(level);
            for id in chunk {
                s.bind(*id);
            }
        }
    }
    let mut tx = write_tx(queue, false).await?;
    s.run(&mut tx).await?;
    tx.commit().await?;
    Ok(out)
}

async fn append_records(
    writer: &SqlitePool,
    entries: &[ArchiveEntry],
    blobs: &[BlobLoc],
) -> Result<Vec<ArchiveRecord>> {
    let mut conn = writer.acquire().await?;
    // IMMEDIATE: the head is read and extended under the write lock, so
    // another process appending at the same time waits instead of forking.
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = async {
        insert_blobs(&mut conn, blobs).await?;
        let fresh = not_yet_recorded(&mut conn, entries).await?;
        insert(&mut conn, &fresh).await
    }
    .await;
    end(&mut conn, result).await
}

/// Ends a transaction: COMMIT after success, ROLLBACK after an error.
async fn end<T>(conn: &mut sqlx::SqliteConnection, result: Result<T>) -> Result<T> {
    match result {
        Ok(v) => {
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok(v)
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

pub(crate) async fn records(reader: &SqlitePool, after: i64, limit: i64) -> Result<Vec<ArchiveRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM archive WHERE seq > ? ORDER BY seq LIMIT ?");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(limit).fetch_all(reader).await?;
    Ok(rows.into_iter().map(record).collect())
}

pub(crate) async fn records_of(reader: &SqlitePool, message_id: &str) -> Result<Vec<ArchiveRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM archive WHERE message_id = ? ORDER BY seq");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(message_id).fetch_all(reader).await?;
    Ok(rows.into_iter().map(record).collect())
}

pub(crate) async fn last(reader: &SqlitePool) -> Result<Option<ArchiveRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM archive ORDER BY seq DESC LIMIT 1");
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(reader).await?.map(record))
}

pub(crate) async fn add_checkpoint(writer: &SqlitePool, c: &CheckpointRow) -> Result<()> {
    sqlx::query("INSERT OR REPLACE INTO archive_checkpoints (seq, hash, signature, at) VALUES (?, ?, ?, ?)")
        .bind(c.seq)
        .bind(&c.hash)
        .bind(&c.signature)
        .bind(c.at)
        .execute(writer)
        .await?;
    Ok(())
}

pub(crate) async fn checkpoints(reader: &SqlitePool) -> Result<Vec<CheckpointRow>> {
    let rows: Vec<(i64, String, String, i64)> =
        sqlx::query_as("SELECT seq, hash, signature, at FROM archive_checkpoints ORDER BY seq")
            .fetch_all(reader)
            .await?;
    Ok(rows.into_iter().map(|(seq, hash, signature, at)| CheckpointRow { seq, hash, signature, at }).collect())
}

pub(crate) async fn set_legal_hold(
    writer: &SqlitePool,
    ids: &[String],
    hold: bool,
    actor: &str,
    reason: &str,
) -> Result<u64> {
    let mut tx = writer.begin().await?;
    let mut changed = 0;
    for id in ids {
        let r = if hold {
            sqlx::query("INSERT OR IGNORE INTO legal_holds (message_id, actor, reason, at) VALUES (?, ?, ?, ?)")
                .bind(id)
                .bind(actor)
                .bind(reason)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?
        } else {
            sqlx::query("DELETE FROM legal_holds WHERE message_id = ?").bind(id).execute(&mut *tx).await?
        };
        changed += r.rows_affected();
    }
    tx.commit().await?;
    Ok(changed)
}

pub(crate) async fn legal_holds(reader: &SqlitePool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT message_id FROM legal_holds ORDER BY message_id").fetch_all(reader).await?)
}

/// Every row of a message in the queue database, children first (the
/// protected files' rows reference it; the vault's files go with the
/// protector's sweep, which finds them without a link).
pub(crate) async fn delete_message_rows(tx: &mut sqlx::SqliteConnection, id: &str) -> Result<()> {
    for table in [
        "recipients",
        "events",
        "facts",
        "approvals",
        "notices",
        "protect_downloads",
        "protect_codes",
        "protect_secrets",
        "protect_files",
        "protect_links",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE message_id = ?")))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM messages WHERE id = ?").bind(id).execute(&mut *tx).await?;
    Ok(())
}

/// Retention in `archive.db`, then the purged messages' rows leave the
/// queue database.
pub(crate) async fn purge(
    writer: &SqlitePool,
    queue: &SqlitePool,
    org: OrgId,
    before: i64,
    limit: i64,
) -> Result<Purged> {
    let purged = purge_archive(writer, org, before, limit).await?;
    let mut tx = write_tx(queue, false).await?;
    for id in &purged.message_ids {
        delete_message_rows(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok(purged)
}

async fn purge_archive(writer: &SqlitePool, org: OrgId, before: i64, limit: i64) -> Result<Purged> {
    let mut conn = writer.acquire().await?;
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = purge_in(&mut conn, org, before, limit).await;
    end(&mut conn, result).await
}

async fn purge_in(conn: &mut sqlx::SqliteConnection, org: OrgId, before: i64, limit: i64) -> Result<Purged> {
    // Due: every record of the message is older than the cutoff, none is
    // held, and the queue is done with it (its final record is written, or
    // it was imported).
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT message_id FROM archive a WHERE org_id = ? AND purged_at IS NULL AND kind != 'purge' \
         AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.message_id = a.message_id) \
         GROUP BY message_id HAVING MAX(at) < ? AND SUM(kind IN ('final', 'imported')) > 0 \
         ORDER BY MIN(seq) LIMIT ?",
    )
    .bind(org)
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(Purged::default());
    }
    let now = now_ms();
    let mut seqs = Vec::new();
    let mut blobs = Vec::new();
    for id in &ids {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, blob FROM archive WHERE message_id = ? AND purged_at IS NULL ORDER BY seq")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
        sqlx::query("UPDATE archive SET meta = NULL, purged_at = ? WHERE message_id = ? AND purged_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        for (seq, blob) in rows {
            seqs.push(seq);
            if !blob.is_empty() && !blobs.contains(&blob) {
                blobs.push(blob);
            }
        }
    }
    let mut unreferenced = Vec::new();
    for blob in blobs {
        let still: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM archive WHERE blob = ? AND purged_at IS NULL")
            .bind(&blob)
            .fetch_one(&mut *conn)
            .await?;
        if still == 0 {
            let row = sqlx::query("DELETE FROM blobs WHERE hash = ? RETURNING hash, pack, offset, len")
                .bind(&blob)
                .fetch_optional(&mut *conn)
                .await?;
            unreferenced.extend(row.map(blob_row));
        }
    }
    let seq_list: Vec<String> = seqs.iter().map(i64::to_string).collect();
    let meta = format!("{{\"purged\":[{}],\"before\":{before},\"reason\":\"retention\"}}", seq_list.join(","));
    insert(
        conn,
        &[ArchiveEntry {
            message_id: String::new(),
            org_id: org,
            kind: "purge".into(),
            at: now,
            blob: String::new(),
            meta,
        }],
    )
    .await?;
    Ok(Purged { message_ids: ids, unreferenced_blobs: unreferenced })
}

#[async_trait]
impl ArchiveStore for SqliteStore {
    async fn archive_due(&self, limit: i64, received_before: i64, skip: &[MessageId]) -> Result<Vec<ArchiveDue>> {
        let skip = &skip[..skip.len().min(MAX_PARAMS)];
        let not_in = if skip.is_empty() {
            String::new()
        } else {
            format!(" AND id NOT IN ({})", vec!["?"; skip.len()].join(","))
        };
        let sql =
            format!("SELECT {MESSAGE_COLUMNS}, archived FROM messages {}{not_in} ORDER BY archived, id LIMIT ?", DUE);
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
        append(&self.arch_writer, &self.writer, entries, progress, blobs).await
    }

    async fn archive_recorded(&self, message_ids: &[String]) -> Result<std::collections::HashSet<String>> {
        recorded(&self.arch_reader, message_ids).await
    }

    async fn blob_locations(&self, hashes: &[String]) -> Result<std::collections::HashMap<String, BlobLoc>> {
        blob_locations(&self.arch_reader, hashes).await
    }

    async fn pack_blobs(&self, pack: &str) -> Result<Vec<BlobLoc>> {
        pack_blobs(&self.arch_reader, pack).await
    }

    async fn relocate_blobs(&self, locs: &[BlobLoc]) -> Result<()> {
        relocate_blobs(&self.arch_writer, locs).await
    }

    async fn archive_records(&self, after_seq: i64, limit: i64) -> Result<Vec<ArchiveRecord>> {
        records(&self.arch_reader, after_seq, limit).await
    }

    async fn archive_records_of(&self, message_id: &str) -> Result<Vec<ArchiveRecord>> {
        records_of(&self.arch_reader, message_id).await
    }

    async fn archive_head(&self) -> Result<Option<ArchiveRecord>> {
        last(&self.arch_reader).await
    }

    async fn add_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<()> {
        add_checkpoint(&self.arch_writer, checkpoint).await
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>> {
        checkpoints(&self.arch_reader).await
    }

    async fn set_legal_hold(&self, message_ids: &[String], hold: bool, actor: &str, reason: &str) -> Result<u64> {
        set_legal_hold(&self.arch_writer, message_ids, hold, actor, reason).await
    }

    async fn legal_holds(&self) -> Result<Vec<String>> {
        legal_holds(&self.arch_reader).await
    }

    async fn archive_purge(&self, org: OrgId, before: i64, limit: i64) -> Result<Purged> {
        purge(&self.arch_writer, &self.writer, org, before, limit).await
    }
}
