//! [`WebStore`] on SQLite.

use super::*;
use crate::*;
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl WebStore for SqliteStore {
    async fn create_session(&self, s: &SessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, email, csrf, created_at, expires_at, ip) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id_hash)
        .bind(s.email.to_lowercase())
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(&s.ip)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT id_hash, email, csrf, created_at, expires_at, ip FROM sessions WHERE id_hash = ? AND expires_at > ?",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(SessionRow {
            id_hash: r.try_get(0)?,
            email: r.try_get(1)?,
            csrf: r.try_get(2)?,
            created_at: r.try_get(3)?,
            expires_at: r.try_get(4)?,
            ip: r.try_get(5)?,
        }))
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?").bind(id_hash).execute(&self.writer).await?;
        Ok(())
    }

    async fn delete_sessions_of(&self, email: &str) -> Result<u64> {
        let email = email.to_lowercase();
        let mut tx = write_tx(&self.writer, false).await?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE email = ? OR expires_at <= ?")
            .bind(&email)
            .bind(tomare_model::now_ms())
            .execute(&mut *tx)
            .await?;
        let tokens = sqlx::query("DELETE FROM api_tokens WHERE email = ?").bind(&email).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(sessions.rows_affected() + tokens.rows_affected())
    }

    async fn create_token(&self, token_hash: &str, email: &str) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (token_hash, email, created_at) VALUES (?, ?, ?)")
            .bind(token_hash)
            .bind(email.to_lowercase())
            .bind(tomare_model::now_ms())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn revoke_tokens(&self, email: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE email = ?")
            .bind(email.to_lowercase())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    async fn token_owner(&self, token_hash: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("UPDATE api_tokens SET last_used_at = ? WHERE token_hash = ? RETURNING email")
            .bind(tomare_model::now_ms())
            .bind(token_hash)
            .fetch_optional(&self.writer)
            .await?)
    }

    async fn use_invite(&self, nonce: &str, email: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO used_invites (nonce, email, used_at) VALUES (?, ?, ?) ON CONFLICT(nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(email.to_lowercase())
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn audit(&self, org: OrgId, e: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (org_id, at, actor, via, action, target, detail, ip) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(org)
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.via)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .bind(&e.ip)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn audit_log(&self, org: OrgId, query: &str, limit: i64) -> Result<Vec<AuditEntry>> {
        // LIKE's own wildcards in the query are literal.
        let pattern = format!("%{}%", query.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let rows = sqlx::query(
            "SELECT at, actor, via, action, target, detail, ip FROM audit WHERE org_id = ?1 \
             AND (?2 = '' OR actor LIKE ?3 ESCAPE '\\' OR action LIKE ?3 ESCAPE '\\' OR target LIKE ?3 ESCAPE '\\' \
             OR detail LIKE ?3 ESCAPE '\\') ORDER BY id DESC LIMIT ?4",
        )
        .bind(org)
        .bind(query)
        .bind(&pattern)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    via: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    detail: r.try_get(5)?,
                    ip: r.try_get(6)?,
                })
            })
            .collect()
    }
}
