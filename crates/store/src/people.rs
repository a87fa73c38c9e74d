//! People: SMTP AUTH users and their send-as grants, the imported
//! directory (supervisors, groups) and the recipient history.

use crate::Result;
use async_trait::async_trait;
use tomare_model::{OrgId, SendAs};

/// A person in the directory (imported from CSV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub email: String,
    pub name: String,
    pub role: String,
    pub supervisor: Option<String>,
    pub groups: Vec<String>,
}

/// An SMTP AUTH account.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub org_id: OrgId,
    pub email: String,
    pub password_hash: String,

    /// Senders granted besides the user's own address (`--send-as`).
    pub send_as: Vec<SendAs>,
}

#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// Domains this org has delivered mail to (lower case): the recipient
    /// history behind first-contact and look-alike rules.
    async fn contacted(&self, org: OrgId) -> Result<std::collections::HashSet<String>>;

    /// The recipient domains (lower case) of mail waiting now: held or
    /// awaiting approval.
    async fn waiting_domains(&self, org: OrgId) -> Result<std::collections::HashSet<String>>;

    /// Adds domains to the recipient history (also done by `finish` for
    /// every delivered recipient).
    async fn record_contacts(&self, org: OrgId, domains: &[String]) -> Result<()>;

    /// Replaces the imported directory (who supervises whom, groups).
    async fn put_directory(&self, org: OrgId, entries: &[DirectoryEntry]) -> Result<()>;

    async fn directory(&self, org: OrgId) -> Result<Vec<DirectoryEntry>>;

    /// Sets the argon2 hash for an SMTP AUTH user.
    async fn put_user(&self, org: OrgId, email: &str, password_hash: &str) -> Result<()>;

    /// Replaces the other senders a user may use after AUTH.
    async fn set_send_as(&self, email: &str, grants: &[SendAs]) -> Result<()>;

    async fn user(&self, email: &str) -> Result<Option<UserRow>>;

    async fn list_users(&self) -> Result<Vec<UserRow>>;
}
