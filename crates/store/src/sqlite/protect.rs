//! [`ProtectStore`] on SQLite.

use super::*;
use crate::*;
use async_trait::async_trait;
use sqlx::Row;

/// The link's columns, its message's state, then its files in one JSON
/// array (so one query reads the whole link).
const LINK: &str = "SELECT l.message_id, l.org_id, l.sender, l.recipients, l.access, l.password_hash, l.created_at, \
     l.expires_at, l.max_downloads, l.revoked_at, l.revoked_by, l.purged_at, m.state, \
     (SELECT json_group_array(json_array(f.idx, f.name, f.content_type, f.size, f.sha256, f.downloads)) \
      FROM (SELECT * FROM protect_files WHERE message_id = l.message_id ORDER BY idx) f) \
     FROM protect_links l JOIN messages m ON m.id = l.message_id";

fn link_row(r: &SqliteRow) -> Result<LinkRow> {
    let id: String = r.try_get(0)?;
    let corrupt = |what: &str| StoreError::Corrupt { id: id.clone(), what: what.into() };
    let recipients: Vec<String> =
        serde_json::from_str(&r.try_get::<String, _>(3)?).map_err(|_| corrupt("protect_links.recipients"))?;
    type FileCols = (u32, String, String, u64, String, u32);
    let files: Vec<FileCols> =
        serde_json::from_str(&r.try_get::<String, _>(12 + 1)?).map_err(|_| corrupt("protect_files"))?;
    Ok(LinkRow {
        message_id: MessageId::parse(&id).ok_or_else(|| corrupt("message id"))?,
        org_id: r.try_get(1)?,
        sender: r.try_get(2)?,
        recipients,
        access: r.try_get(4)?,
        password_hash: r.try_get(5)?,
        created_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        max_downloads: r.try_get::<i64, _>(8)? as u32,
        revoked_at: r.try_get(9)?,
        revoked_by: r.try_get(10)?,
        purged_at: r.try_get(11)?,
        message_state: r.try_get(12)?,
        files: files
            .into_iter()
            .map(|(idx, name, content_type, size, sha256, downloads)| ProtectedFile {
                idx,
                name,
                content_type,
                size,
                sha256,
                downloads,
            })
            .collect(),
    })
}

/// The decision's protection rows, in the decision's script.
pub(super) fn push_protection(s: &mut Script, id: &MessageId, org: i64, p: &NewProtection, now: i64) {
    if let Some(l) = &p.link {
        s.push(
            "INSERT OR REPLACE INTO protect_links (message_id, org_id, token_hash, sender, recipients, access, \
             password_hash, created_at, expires_at, max_downloads) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(org)
        .bind(&l.token_hash)
        .bind(&l.sender)
        .bind(serde_json::to_string(&l.recipients).unwrap_or_else(|_| "[]".into()))
        .bind(&l.access)
        .bind(&l.password_hash)
        .bind(now)
        .bind(l.expires_at)
        .bind(l.max_downloads as i64);
        for f in &l.files {
            s.push(
                "INSERT OR REPLACE INTO protect_files (message_id, idx, name, content_type, size, sha256) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(id.as_str())
            .bind(f.idx as i64)
            .bind(&f.name)
            .bind(&f.content_type)
            .bind(f.size as i64)
            .bind(&f.sha256);
        }
    }
    for secret in &p.secrets {
        s.push(
            "INSERT OR REPLACE INTO protect_secrets (message_id, org_id, kind, sealed, send_to) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(org)
        .bind(&secret.kind)
        .bind(secret.sealed.clone())
        .bind(serde_json::to_string(&secret.send_to).unwrap_or_else(|_| "[]".into()));
    }
}

#[async_trait]
impl ProtectStore for SqliteStore {
    async fn link_by_token(&self, token_hash: &str) -> Result<Option<LinkRow>> {
        let sql = format!("{LINK} WHERE l.token_hash = ?");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(token_hash).fetch_optional(&self.reader).await?;
        row.as_ref().map(link_row).transpose()
    }

    async fn link_of(&self, id: &MessageId) -> Result<Option<LinkRow>> {
        let sql = format!("{LINK} WHERE l.message_id = ?");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.reader).await?;
        row.as_ref().map(link_row).transpose()
    }

    async fn take_download(&self, id: &MessageId, d: &DownloadRow, now: i64) -> Result<Take> {
        let mut tx = write_tx(&self.writer, false).await?;
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT l.max_downloads FROM protect_links l JOIN messages m ON m.id = l.message_id \
             WHERE l.message_id = ? AND l.revoked_at IS NULL AND l.purged_at IS NULL AND l.expires_at > ? \
             AND m.state IN ('delivered', 'failed', 'deferred')",
        )
        .bind(id.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(max) = open else { return Ok(Take::Closed) };
        let taken = sqlx::query(
            "UPDATE protect_files SET downloads = downloads + 1 WHERE message_id = ? AND idx = ? AND downloads < ?",
        )
        .bind(id.as_str())
        .bind(d.idx as i64)
        .bind(max)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            return Ok(Take::Exhausted);
        }
        sqlx::query(
            "INSERT INTO protect_downloads (message_id, idx, at, ip, user_agent, who) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(d.idx as i64)
        .bind(d.at)
        .bind(&d.ip)
        .bind(&d.user_agent)
        .bind(&d.who)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Take::Ok)
    }

    async fn downloads(&self, id: &MessageId) -> Result<Vec<DownloadRow>> {
        let rows = sqlx::query(
            "SELECT at, idx, ip, user_agent, who FROM protect_downloads WHERE message_id = ? ORDER BY at, id",
        )
        .bind(id.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DownloadRow {
                    at: r.try_get(0)?,
                    idx: r.try_get::<i64, _>(1)? as u32,
                    ip: r.try_get(2)?,
                    user_agent: r.try_get(3)?,
                    who: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn revoke_link(&self, id: &MessageId, by: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE protect_links SET revoked_at = ?, revoked_by = ? WHERE message_id = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn save_code(&self, id: &MessageId, email: &str, code_hash: &str, expires_at: i64) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO protect_codes (message_id, email, code_hash, expires_at, tries) VALUES (?, ?, ?, ?, 0)",
        )
        .bind(id.as_str())
        .bind(email.to_lowercase())
        .bind(code_hash)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn use_code(&self, id: &MessageId, email: &str, code_hash: &str, now: i64) -> Result<bool> {
        let email = email.to_lowercase();
        let mut tx = write_tx(&self.writer, false).await?;
        let right = sqlx::query(
            "DELETE FROM protect_codes WHERE message_id = ? AND email = ? AND code_hash = ? AND expires_at > ? AND tries < 5",
        )
        .bind(id.as_str())
        .bind(&email)
        .bind(code_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !right {
            sqlx::query("UPDATE protect_codes SET tries = tries + 1 WHERE message_id = ? AND email = ?")
                .bind(id.as_str())
                .bind(&email)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM protect_codes WHERE message_id = ? AND email = ? AND tries >= 5")
                .bind(id.as_str())
                .bind(&email)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(right)
    }

    async fn due_secrets(&self, now: i64, delay_ms: i64) -> Result<Vec<DueSecret>> {
        let mut tx = write_tx(&self.writer, false).await?;
        // Delivered (to someone at least): the password follows after the delay.
        sqlx::query(
            "UPDATE protect_secrets SET due_at = ? WHERE due_at IS NULL AND sent_at IS NULL AND EXISTS \
             (SELECT 1 FROM recipients r WHERE r.message_id = protect_secrets.message_id AND r.status = 'delivered' \
              AND (lower(r.address) IN (SELECT lower(value) FROM json_each(protect_secrets.send_to)) \
                   OR NOT EXISTS (SELECT 1 FROM recipients o WHERE o.message_id = protect_secrets.message_id \
                       AND lower(o.address) IN (SELECT lower(value) FROM json_each(protect_secrets.send_to)))))",
        )
        .bind(now + delay_ms)
        .execute(&mut *tx)
        .await?;
        // Never going out: the password is erased unsent.
        sqlx::query(
            "UPDATE protect_secrets SET sealed = NULL, sent_at = ? WHERE sent_at IS NULL AND due_at IS NULL AND \
             message_id IN (SELECT id FROM messages WHERE id = protect_secrets.message_id \
             AND state IN ('cancelled', 'rejected', 'failed'))",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT message_id, org_id, kind, sealed, send_to FROM protect_secrets \
             WHERE sent_at IS NULL AND due_at <= ? AND sealed IS NOT NULL",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                let corrupt = || StoreError::Corrupt { id: id.clone(), what: "protect_secrets".into() };
                Ok(DueSecret {
                    message_id: MessageId::parse(&id).ok_or_else(corrupt)?,
                    org_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    sealed: r.try_get(3)?,
                    send_to: serde_json::from_str(&r.try_get::<String, _>(4)?).map_err(|_| corrupt())?,
                })
            })
            .collect()
    }

    async fn secret_sent(&self, id: &MessageId, kind: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE protect_secrets SET sealed = NULL, sent_at = ? WHERE message_id = ? AND kind = ?")
            .bind(now)
            .bind(id.as_str())
            .bind(kind)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn secret_left(&self, id: &MessageId, kind: &str, left: &[String]) -> Result<()> {
        sqlx::query("UPDATE protect_secrets SET send_to = ? WHERE message_id = ? AND kind = ?")
            .bind(serde_json::to_string(left).unwrap_or_else(|_| "[]".into()))
            .bind(id.as_str())
            .bind(kind)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn links_to_purge(&self, now: i64) -> Result<Vec<MessageId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT l.message_id FROM protect_links l JOIN messages m ON m.id = l.message_id \
             WHERE l.purged_at IS NULL AND (l.expires_at <= ? OR l.revoked_at IS NOT NULL \
             OR m.state IN ('cancelled', 'rejected') \
             OR (m.state = 'failed' AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = l.message_id \
                 AND r.status = 'delivered')))",
        )
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        Ok(ids.iter().filter_map(|id| MessageId::parse(id)).collect())
    }

    async fn link_purged(&self, id: &MessageId, now: i64) -> Result<()> {
        sqlx::query("UPDATE protect_links SET purged_at = ? WHERE message_id = ?")
            .bind(now)
            .bind(id.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
