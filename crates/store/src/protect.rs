//! Protected attachments' side of the store: download links, their files'
//! descriptions and downloads, one-time codes and the passwords that follow
//! a message. Never the files: those are encrypted in the data directory.

use crate::Result;
use async_trait::async_trait;
use serde::Serialize;
use tomare_model::{MessageId, OrgId};

/// One protected file, as the link shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedFile {
    pub idx: u32,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the file as the sender attached it.
    pub sha256: String,
    pub downloads: u32,
}

/// A link to be made with the message's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLink {
    /// Hex SHA-256 of the token in the URL.
    pub token_hash: String,
    pub sender: String,
    /// The addresses outside the org the message goes to.
    pub recipients: Vec<String>,
    /// `none`, `password` or `code`.
    pub access: String,
    /// The password's salted SHA-256 (`tomare_protect::password_hash`:
    /// it is generated, not chosen), when `access` is `password`.
    pub password_hash: Option<String>,
    pub expires_at: i64,
    pub max_downloads: u32,
    pub files: Vec<ProtectedFile>,
}

/// A password to send after the message is delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSecret {
    /// `zip` or `link`.
    pub kind: String,
    /// The password, sealed with the vault key.
    pub sealed: Vec<u8>,
    pub send_to: Vec<String>,
}

/// What protection a message's decision brings with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewProtection {
    pub link: Option<NewLink>,
    /// A zip's password, a password link's, or both.
    pub secrets: Vec<NewSecret>,
}

/// A download link as it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkRow {
    pub message_id: MessageId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub sender: String,
    pub recipients: Vec<String>,
    pub access: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_downloads: u32,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    /// When its files were removed (expired, revoked, or the message never
    /// left).
    pub purged_at: Option<i64>,
    pub files: Vec<ProtectedFile>,
    /// The message's state now (a link works only once it was delivered).
    pub message_state: String,
}

impl LinkRow {
    /// `active`, `revoked`, `expired` or `pending` (not delivered yet), at
    /// `now`.
    pub fn status(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if now >= self.expires_at || self.purged_at.is_some() {
            "expired"
        } else if matches!(self.message_state.as_str(), "delivered" | "failed" | "deferred") {
            "active"
        } else {
            "pending"
        }
    }
}

/// One download, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadRow {
    pub at: i64,
    pub idx: u32,
    pub ip: String,
    pub user_agent: String,
    /// The address a one-time code proved (empty without codes).
    pub who: String,
}

/// A password mail due: what to send and to whom.
#[derive(Debug, Clone, PartialEq)]
pub struct DueSecret {
    pub message_id: MessageId,
    pub org_id: OrgId,
    pub kind: String,
    pub sealed: Vec<u8>,
    pub send_to: Vec<String>,
}

/// Why a download was refused, or that it may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Ok,
    /// This file's downloads are used up.
    Exhausted,
    /// Revoked, expired, purged or not delivered.
    Closed,
}

#[async_trait]
pub trait ProtectStore: Send + Sync {
    /// The link whose token hashes to `token_hash`.
    async fn link_by_token(&self, token_hash: &str) -> Result<Option<LinkRow>>;
    /// The link of a message.
    async fn link_of(&self, id: &MessageId) -> Result<Option<LinkRow>>;
    /// Counts a download of file `idx` when the link is open and the file
    /// has downloads left (in one statement: two requests at once cannot
    /// both take the last one), and logs it.
    async fn take_download(&self, id: &MessageId, download: &DownloadRow, now: i64) -> Result<Take>;
    async fn downloads(&self, id: &MessageId) -> Result<Vec<DownloadRow>>;
    /// Revokes a link: false when it was revoked already or there is none.
    async fn revoke_link(&self, id: &MessageId, by: &str, now: i64) -> Result<bool>;
    /// Keeps a one-time code (by hash) for `email`, replacing an earlier one.
    async fn save_code(&self, id: &MessageId, email: &str, code_hash: &str, expires_at: i64) -> Result<()>;
    /// Whether `code_hash` is the live code of `email`; a right code is
    /// used up, and after 5 wrong tries the code is gone.
    async fn use_code(&self, id: &MessageId, email: &str, code_hash: &str, now: i64) -> Result<bool>;
    /// Password mails whose copy was delivered (to one of the addresses the
    /// password goes to; to anyone, when it goes to the sender): the first
    /// call after that sets their time (`now + delay_ms`); those whose
    /// time has come are returned. Those of messages that will never go
    /// out are dropped.
    async fn due_secrets(&self, now: i64, delay_ms: i64) -> Result<Vec<DueSecret>>;
    /// The password mail went: its sealed password is erased.
    async fn secret_sent(&self, id: &MessageId, kind: &str, now: i64) -> Result<()>;
    /// The password mail reached some: only `left` are still to be sent it.
    async fn secret_left(&self, id: &MessageId, kind: &str, left: &[String]) -> Result<()>;
    /// Links whose files should go at `now`: expired, revoked, or of a
    /// message that was never delivered (cancelled, rejected, denied).
    async fn links_to_purge(&self, now: i64) -> Result<Vec<MessageId>>;
    async fn link_purged(&self, id: &MessageId, now: i64) -> Result<()>;
}
