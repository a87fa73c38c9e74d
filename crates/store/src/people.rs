//! People: accounts (SMTP AUTH and the web) and their send-as grants, the
//! directory (supervisors, groups; imported or set one by one) and the
//! recipient history.

use crate::Result;
use async_trait::async_trait;
use serde::Serialize;
use tomare_model::{OrgId, SendAs};

/// Where tomare learnt of a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A `[[user]]` of the config file.
    Config,
    /// `tomare users import` (replaced whole by the next import).
    Import,
    /// `tomare user add` with a role, name or supervisor (an import leaves
    /// it alone).
    Cli,
    /// Only an account: a password, nothing in the directory.
    Account,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Import => "import",
            Source::Cli => "cli",
            Source::Account => "account",
        }
    }
}

/// A person in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub email: String,
    pub name: String,
    pub role: String,
    pub supervisor: Option<String>,
    pub groups: Vec<String>,
    pub source: Source,
}

/// An account: a password for SMTP AUTH and the web.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub org_id: OrgId,
    pub email: String,
    pub password_hash: String,

    /// Senders granted besides the user's own address (`--send-as`).
    pub send_as: Vec<SendAs>,
    /// The web UI's language the person chose (`ja`, `en`), or empty.
    pub lang: String,
    /// The password is a one-time one: the web asks for a new one first.
    pub must_change: bool,
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

    /// Replaces the imported directory (who supervises whom, groups). People
    /// set one by one (`Source::Cli`) stay as they were set.
    async fn put_directory(&self, org: OrgId, entries: &[DirectoryEntry]) -> Result<()>;

    /// Sets one person (as `Source::Cli`), replacing what was known of them.
    async fn put_person(&self, org: OrgId, entry: &DirectoryEntry) -> Result<()>;

    async fn directory(&self, org: OrgId) -> Result<Vec<DirectoryEntry>>;

    /// Sets the argon2 hash for an account (a password chosen: no longer
    /// one to change).
    async fn put_user(&self, org: OrgId, email: &str, password_hash: &str) -> Result<()>;

    /// Marks an account's password as one-time (the web asks for a new one).
    async fn set_must_change(&self, email: &str) -> Result<()>;

    /// Replaces the other senders a user may use after AUTH.
    async fn set_send_as(&self, email: &str, grants: &[SendAs]) -> Result<()>;

    async fn user(&self, email: &str) -> Result<Option<UserRow>>;

    async fn list_users(&self) -> Result<Vec<UserRow>>;

    /// The web UI's language for an account (`ja`, `en`, or empty for the
    /// browser's).
    async fn set_lang(&self, email: &str, lang: &str) -> Result<()>;
}
