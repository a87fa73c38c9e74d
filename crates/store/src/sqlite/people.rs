//! [`PeopleStore`] on SQLite.

use super::*;
use crate::*;
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl PeopleStore for SqliteStore {
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
        let mut s = Script::default();
        push_contacts(&mut s, &contacts, now);
        let mut tx = write_tx(&self.writer, false).await?;
        s.run(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_directory(&self, org: OrgId, entries: &[DirectoryEntry]) -> Result<()> {
        let mut tx = write_tx(&self.writer, false).await?;
        sqlx::query("DELETE FROM directory WHERE org_id = ? AND source = 'import'").bind(org).execute(&mut *tx).await?;
        for e in entries {
            // A person set one by one is not overwritten by an import.
            put_entry(&mut tx, org, e, "INSERT OR IGNORE", "import").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn put_person(&self, org: OrgId, entry: &DirectoryEntry) -> Result<()> {
        let mut tx = write_tx(&self.writer, false).await?;
        put_entry(&mut tx, org, entry, "INSERT OR REPLACE", "cli").await?;
        tx.commit().await?;
        Ok(())
    }

    async fn directory(&self, org: OrgId) -> Result<Vec<DirectoryEntry>> {
        let rows = sqlx::query(
            "SELECT email, name, role, supervisor, groups, source FROM directory WHERE org_id = ? ORDER BY email",
        )
        .bind(org)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let groups: String = r.try_get(4)?;
                let source: String = r.try_get(5)?;
                Ok(DirectoryEntry {
                    source: if source == "cli" { Source::Cli } else { Source::Import },
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
             ON CONFLICT(email) DO UPDATE SET password_hash = excluded.password_hash, must_change = 0",
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
        let mut tx = write_tx(&self.writer, false).await?;
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
        let row = sqlx::query("SELECT org_id, password_hash, lang, must_change FROM users WHERE email = ?")
            .bind(&email)
            .fetch_optional(&self.reader)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let send_as = self.send_as(&email).await?;
        Ok(Some(UserRow {
            org_id: row.try_get(0)?,
            email,
            password_hash: row.try_get(1)?,
            send_as,
            lang: row.try_get(2)?,
            must_change: row.try_get(3)?,
        }))
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query("SELECT org_id, email, password_hash, lang, must_change FROM users ORDER BY email")
            .fetch_all(&self.reader)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let email: String = r.try_get(1)?;
            let send_as = self.send_as(&email).await?;
            out.push(UserRow {
                org_id: r.try_get(0)?,
                email,
                password_hash: r.try_get(2)?,
                send_as,
                lang: r.try_get(3)?,
                must_change: r.try_get(4)?,
            });
        }
        Ok(out)
    }

    async fn set_must_change(&self, email: &str) -> Result<()> {
        sqlx::query("UPDATE users SET must_change = 1 WHERE email = ?")
            .bind(email.to_ascii_lowercase())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn set_lang(&self, email: &str, lang: &str) -> Result<()> {
        sqlx::query("UPDATE users SET lang = ? WHERE email = ?")
            .bind(lang)
            .bind(email.to_ascii_lowercase())
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

async fn put_entry(
    tx: &mut sqlx::SqliteConnection,
    org: OrgId,
    e: &DirectoryEntry,
    verb: &'static str,
    source: &str,
) -> Result<()> {
    let sql = format!(
        "{verb} INTO directory (org_id, email, name, role, supervisor, groups, source) VALUES (?, ?, ?, ?, ?, ?, ?)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org)
        .bind(e.email.to_lowercase())
        .bind(&e.name)
        .bind(&e.role)
        .bind(e.supervisor.as_ref().map(|s| s.to_lowercase()))
        .bind(e.groups.join("\n"))
        .bind(source)
        .execute(tx)
        .await?;
    Ok(())
}
