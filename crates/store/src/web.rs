//! The web's side of the store: sign-in sessions, API tokens and the
//! audit log. Sessions and tokens are kept by the SHA-256 of their secret,
//! so a copy of the database signs nobody in.

use crate::Result;
use async_trait::async_trait;
use serde::Serialize;
use tomare_model::OrgId;

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Hex SHA-256 of the cookie's secret.
    pub id_hash: String,
    pub email: String,
    /// The token every state-changing request of this session must carry.
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub ip: String,
}

/// One line of the audit log: who did what, when, through what, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: i64,
    /// The account (an address), or `cli` / `policy`.
    pub actor: String,
    /// `web`, `api`, `link` or `cli`.
    pub via: String,
    /// What was done: `login`, `login_failed`, `logout`, `cancel`,
    /// `release`, `approve`, `deny`, `user_add`, …
    pub action: String,
    /// What it was done to: a message id, an account.
    pub target: String,
    pub detail: String,
    pub ip: String,
}

impl AuditEntry {
    /// What `actor` did now through `via`, to `target`, from `ip`.
    pub fn now(actor: &str, via: &str, action: &str, target: &str, detail: &str, ip: &str) -> AuditEntry {
        AuditEntry {
            at: tomare_model::now_ms(),
            actor: actor.to_string(),
            via: via.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.to_string(),
            ip: ip.to_string(),
        }
    }
}

#[async_trait]
pub trait WebStore: Send + Sync {
    async fn create_session(&self, session: &SessionRow) -> Result<()>;
    /// The session with this hash, unless it has expired by `now`.
    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRow>>;
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// Signs an account out everywhere (its password changed): its
    /// sessions and its API tokens; sessions past their expiry go too.
    async fn delete_sessions_of(&self, email: &str) -> Result<u64>;
    /// Keeps an API token (by its hash) for `email`.
    async fn create_token(&self, token_hash: &str, email: &str) -> Result<()>;
    /// Removes every API token of an account: how many there were.
    async fn revoke_tokens(&self, email: &str) -> Result<u64>;
    /// The account of a token, noting its use.
    async fn token_owner(&self, token_hash: &str) -> Result<Option<String>>;
    /// Marks a set-password invitation used: false when it was already.
    async fn use_invite(&self, nonce: &str, email: &str, now: i64) -> Result<bool>;
    async fn audit(&self, org: OrgId, entry: &AuditEntry) -> Result<()>;
    /// Newest first; `query` (when not empty) is matched anywhere in the
    /// actor, action, target or detail.
    async fn audit_log(&self, org: OrgId, query: &str, limit: i64) -> Result<Vec<AuditEntry>>;
}
