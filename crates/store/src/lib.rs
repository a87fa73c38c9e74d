//! The database behind one interface. [`Store`] is what the rest of tomare
//! sees; [`SqliteStore`] is the embedded implementation (WAL, one writer
//! connection so commits queue instead of spinning on SQLite's busy lock).
//! A PostgreSQL implementation will sit beside it for multi-node scale-out:
//! every state change is a conditional update, so two nodes (or the CLI and
//! the server) can never both move the same message.
//!
//! The store never touches message bytes: those live in the spool (queue).

mod archive;
mod migrate;
mod sqlite;

pub use archive::{GENESIS, chain_link, sha256_hex};
pub use migrate::{Database, MigrationStatus};

pub use sqlite::SqliteStore;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tomare_model::{
    Address, Envelope, Facts, MessageId, NoticeKind, OnTimeout, OrgId, RcptStatus, SendAs, State, Verdict,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("corrupt row for {id}: {what}")]
    Corrupt { id: String, what: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A message just accepted, spooled and about to be committed.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub org_id: OrgId,
    pub envelope: Envelope,
    pub subject: String,
    pub header_from: String,
    pub message_id_header: String,
    pub size: u64,
    pub received_at: i64,
    /// `Received` (inspection and the hold decision follow), or directly
    /// `Held` (with `release_at` in the future) or `Released`.
    pub state: State,
    pub release_at: Option<i64>,
    /// A DSN we generated: it must never cause another DSN.
    pub is_dsn: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientRow {
    pub address: Address,
    pub status: RcptStatus,
    pub reply: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    pub id: MessageId,
    pub org_id: OrgId,
    pub state: State,
    pub mail_from: Address,
    pub recipients: Vec<RecipientRow>,
    pub subject: String,
    pub header_from: String,
    pub message_id_header: String,
    pub size: i64,
    pub received_at: i64,
    pub release_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub attempts: i64,
    pub helo: String,
    pub client_ip: String,
    pub auth_user: Option<String>,
    pub is_dsn: bool,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

/// A message moved to `delivering`, with the recipients still to be tried.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: MessageId,
    pub org_id: OrgId,
    pub mail_from: Address,
    pub recipients: Vec<Address>,
    pub attempts: i64,
    pub received_at: i64,
    pub is_dsn: bool,
    pub size: i64,
}

/// What inspection and the rules decided for a received message.
#[derive(Debug, Clone)]
pub struct Decision {
    pub id: MessageId,
    pub facts: Facts,
    /// One line for the event log: attachments, detections, completeness.
    pub summary: String,
    /// None when no rules looked at it (tomare's own notices and DSNs).
    pub verdict: Option<Verdict>,
    /// Why, in one line (the reasons of the rules that fired).
    pub reasons: String,
    /// `Held`, `Released`, `AwaitingApproval` (with `approval`) or
    /// `Rejected` (the sender gets a notice).
    pub state: State,
    /// When held: the end of the hold; when awaiting approval: the deadline.
    pub release_at: i64,
    pub approval: Option<ApprovalRequest>,
    /// Envelope recipients the rules added.
    pub add_recipients: Vec<Address>,
    /// The rules rewrote the message (the rewritten copy is in the spool).
    pub rewritten: bool,
    /// Notices to send: (kind, recipient address).
    pub notify: Vec<(NoticeKind, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRequest {
    /// An address, `group:NAME`, or empty when nobody was found.
    pub approver: String,
    pub deputy: Option<String>,
    pub on_timeout: OnTimeout,
    pub timeout_ms: i64,
}

/// An approval whose deadline has passed.
#[derive(Debug, Clone)]
pub struct ExpiredApproval {
    pub id: MessageId,
    pub on_timeout: OnTimeout,
    pub deputy: Option<String>,
    pub timeout_ms: i64,
}

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

/// A notice owed: to a sender (their message was rejected, denied or held),
/// an approver (a message waits for them) or an admin.
#[derive(Debug, Clone)]
pub struct Notice {
    pub id: MessageId,
    pub org_id: OrgId,
    pub kind: NoticeKind,
    pub reason: String,
    pub mail_from: String,
    pub subject: String,
    pub message_id_header: String,
    pub notice_id: i64,
    /// Where it goes; the sender when empty.
    pub recipient: String,
}

/// The result of one delivery attempt of one message.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub id: MessageId,
    pub results: Vec<RecipientResult>,
    /// `Delivered`, `Deferred` or `Failed`.
    pub state: State,
    pub next_attempt_at: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct RecipientResult {
    pub address: Address,
    pub status: RcptStatus,
    pub reply: String,
}

/// A message with archiving to do: its received copy once it has been
/// reviewed (`archived` 0), its final record once its state is final;
/// with what the records need.
#[derive(Debug, Clone)]
pub struct ArchiveDue {
    pub row: MessageRow,
    /// 0: nothing archived yet; 1: the received copy is.
    pub archived: i64,
    pub events: Vec<EventRow>,
    /// What review found and decided, once it has.
    pub reviewed: Option<Reviewed>,
}

/// What the review stage stored for a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    pub facts: Facts,
    /// None when no rules looked at it (tomare's own notices and DSNs).
    pub verdict: Option<Verdict>,
}

/// A record to append to the archive chain.
#[derive(Debug, Clone)]
pub struct ArchiveEntry {
    /// The queue id, or for imported mail `import-<sha256>`.
    pub message_id: String,
    pub org_id: OrgId,
    /// `received`, `final`, `imported` or `purge`.
    pub kind: String,
    /// When the message was received (imported: its Date), ms.
    pub at: i64,
    /// SHA-256 of the message bytes (a blob), empty for `purge`.
    pub blob: String,
    /// Everything else, as JSON.
    pub meta: String,
}

/// A record of the archive chain as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveRecord {
    pub seq: i64,
    pub message_id: String,
    pub org_id: OrgId,
    pub kind: String,
    pub at: i64,
    pub blob: String,
    /// None once retention removed it (its hash stays).
    pub meta: Option<String>,
    pub meta_hash: String,
    pub hash: String,
    pub purged_at: Option<i64>,
}

/// The signed head of the chain at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: String,
    /// Ed25519 over `"{seq}:{hash}"`, hex.
    pub signature: String,
    pub at: i64,
}

/// Where an archived message's bytes are: a frame in a pack file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobLoc {
    /// SHA-256 of the message bytes.
    pub hash: String,
    pub pack: String,
    pub offset: i64,
    pub len: i64,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Default)]
pub struct Purged {
    pub message_ids: Vec<String>,
    /// Blobs no remaining record names, forgotten: the caller compacts
    /// their packs.
    pub unreferenced_blobs: Vec<BlobLoc>,
}

/// What a requested state change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Done,
    NotFound,
    /// The message was in this state, from which the change is not allowed.
    Refused(State),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// The org with this name, created on first use.
    async fn ensure_org(&self, name: &str) -> Result<OrgId>;

    /// The org with this name, if it exists (reads only).
    async fn find_org(&self, name: &str) -> Result<Option<OrgId>>;

    /// Commits a batch of accepted messages in one transaction.
    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<()>;

    /// Stores each decision's Facts and moves the message from `received`
    /// to `held` or `released`, in one transaction.
    async fn decide(&self, batch: &[Decision]) -> Result<()>;

    /// What review stored for a message.
    async fn reviewed(&self, id: &MessageId) -> Result<Option<Reviewed>>;

    /// The approval a message waits for (or waited for).
    async fn approval(&self, id: &MessageId) -> Result<Option<ApprovalRequest>>;

    /// `awaiting_approval` → `released`, by `actor`.
    async fn approve(&self, id: &MessageId, actor: &str) -> Result<Transition>;

    /// `awaiting_approval` → `rejected`, by `actor`, and a notice for the sender.
    async fn deny(&self, id: &MessageId, actor: &str, reason: &str) -> Result<Transition>;

    /// Approvals past their deadline.
    async fn expired_approvals(&self, now: i64) -> Result<Vec<ExpiredApproval>>;

    /// Hands an expired approval to the deputy with a new deadline.
    async fn escalate(&self, id: &MessageId, deputy: &str, deadline: i64) -> Result<Transition>;

    /// Takes the notices owed to senders (each is returned once).
    async fn take_notices(&self, limit: i64) -> Result<Vec<Notice>>;

    /// Moves every held message whose time has come to `released`.
    async fn release_due(&self, now: i64) -> Result<Vec<MessageId>>;

    /// The earliest moment something becomes due: a hold ends or a retry is
    /// scheduled.
    async fn next_wakeup(&self) -> Result<Option<i64>>;

    /// `held` → `released` now, by request of `actor`.
    async fn release(&self, id: &MessageId, actor: &str) -> Result<Transition>;

    /// `held`, `released` or `deferred` → `cancelled`.
    async fn cancel(&self, id: &MessageId, actor: &str) -> Result<Transition>;

    /// Moves up to `limit` messages that are released, or deferred and due,
    /// to `delivering` and returns them.
    async fn claim(&self, now: i64, limit: usize) -> Result<Vec<Claimed>>;

    /// Records delivery attempts, in one transaction.
    async fn finish(&self, reports: &[DeliveryReport]) -> Result<()>;

    /// After a crash, messages left `delivering` go back to `released`
    /// (those still `received` are inspected again by the caller).
    async fn recover(&self) -> Result<u64>;
    /// Messages whose spool files are still needed: not final yet, or (with
    /// `unarchived`) final but not yet archived.
    async fn live_ids(&self, unarchived: bool) -> Result<Vec<MessageId>>;

    /// Newest first.
    async fn list(&self, state: Option<State>, limit: i64) -> Result<Vec<MessageRow>>;

    async fn get(&self, id: &MessageId) -> Result<Option<(MessageRow, Vec<EventRow>)>>;

    /// Messages per state, every state listed.
    async fn depth(&self) -> Result<Vec<(State, i64)>>;

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

    /// Messages with archiving to do, oldest first: final ones, and
    /// reviewed ones received before `received_before` (a message delivered
    /// at once is archived in one pass, received and final together).
    /// `skip`: messages the caller is already archiving.
    async fn archive_due(&self, limit: i64, received_before: i64, skip: &[MessageId]) -> Result<Vec<ArchiveDue>>;

    /// Appends records to the chain (each linked to the one before, in one
    /// transaction), records where new blobs are, and marks the messages'
    /// progress (`archived`).
    async fn archive_append(
        &self,
        entries: &[ArchiveEntry],
        progress: &[(MessageId, i64)],
        blobs: &[BlobLoc],
    ) -> Result<Vec<ArchiveRecord>>;

    /// Those of these messages that have a record in the archive.
    async fn archive_recorded(&self, message_ids: &[String]) -> Result<std::collections::HashSet<String>>;

    /// Where these blobs are (those stored).
    async fn blob_locations(&self, hashes: &[String]) -> Result<std::collections::HashMap<String, BlobLoc>>;

    /// Every blob stored in a pack.
    async fn pack_blobs(&self, pack: &str) -> Result<Vec<BlobLoc>>;

    /// New places of blobs (after a pack was compacted).
    async fn relocate_blobs(&self, locs: &[BlobLoc]) -> Result<()>;

    /// Records after `after_seq`, in order.
    async fn archive_records(&self, after_seq: i64, limit: i64) -> Result<Vec<ArchiveRecord>>;

    /// The records of one message (received, final; or imported).
    async fn archive_records_of(&self, message_id: &str) -> Result<Vec<ArchiveRecord>>;

    async fn archive_head(&self) -> Result<Option<ArchiveRecord>>;

    async fn add_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<()>;

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>>;

    /// Sets or lifts the legal hold on messages; returns how many changed.
    async fn set_legal_hold(&self, message_ids: &[String], hold: bool, actor: &str, reason: &str) -> Result<u64>;

    async fn legal_holds(&self) -> Result<Vec<String>>;

    /// Retention: removes (up to `limit`) messages of `org` archived before
    /// `before` and not under legal hold — their records keep only their
    /// hashes, a `purge` record names them, their queue rows go.
    async fn archive_purge(&self, org: OrgId, before: i64, limit: i64) -> Result<Purged>;
}
