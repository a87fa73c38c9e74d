//! The queue's side of the store: messages from accept to their final
//! state, recipients, the event log, review results, approvals and the
//! notices owed. Every state change is a conditional update, so the CLI and
//! the server (or two nodes) never both move the same message.

use crate::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tomare_model::{
    Address, Envelope, Facts, LinkAction, MessageId, NoticeKind, OnTimeout, OrgId, RcptStatus, State, Verdict,
};

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

    /// A download link and a password mail to follow, when attachments are
    /// protected.
    pub protection: Option<crate::NewProtection>,

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

    /// When the message's hold or approval ends (its links expire then).
    pub release_at: Option<i64>,
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

/// What the review stage stored for a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    pub facts: Facts,

    /// None when no rules looked at it (tomare's own notices and DSNs).
    pub verdict: Option<Verdict>,
}

/// What a requested state change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Done,
    NotFound,

    /// The message was in this state, from which the change is not allowed.
    Refused(State),
}

/// Whose messages a caller may see: the whole org's (an admin), or a
/// person's own, those of the `senders` they supervise, and those they are
/// asked to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Org(OrgId),
    Person {
        org: OrgId,
        email: String,
        senders: Vec<String>,
    },
    /// Only the person's own: what they sent or authenticated for.
    Own {
        org: OrgId,
        email: String,
    },
}

/// What the admin's dashboard counts, for messages received since a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// (day received, `YYYY-MM-DD` UTC; the state now; messages).
    pub by_state: Vec<(String, State, i64)>,
    /// (day received; a rule that fired; messages).
    pub by_rule: Vec<(String, String, i64)>,
    /// Messages that were held.
    pub held: i64,
    /// Held messages cancelled: (their sender, who cancelled them (the
    /// event's actor), milliseconds from receipt to the cancel).
    pub cancels: Vec<(String, String, i64)>,
}

/// A notice link that was used (links are single-use), and what its use did.
#[derive(Debug, Clone, PartialEq)]
pub struct UsedLink {
    pub nonce: String,
    pub message_id: MessageId,
    pub action: LinkAction,
    pub person: String,
    pub outcome: Transition,
    pub used_at: i64,
}

#[async_trait]
pub trait QueueStore: Send + Sync {
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

    /// Approvals with half their time gone and nobody reminded yet: each
    /// asked person gets a reminder notice, once. The messages reminded of.
    async fn remind_approvals(&self, now: i64) -> Result<Vec<MessageId>>;
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

    /// The use of a notice link, if it was used.
    async fn used_link(&self, nonce: &str) -> Result<Option<UsedLink>>;

    /// Records a link's use. When it was used already (two clicks at once),
    /// nothing changes and the first use is returned.
    async fn record_link(&self, used: &UsedLink) -> Result<Option<UsedLink>>;

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
    /// The messages `scope` may see in one of `states` (any state when
    /// empty), newest first.
    async fn visible(&self, scope: &Scope, states: &[State], limit: i64) -> Result<Vec<MessageRow>>;
    /// The messages `email` decided (approved or denied, by link, web or
    /// API, for themselves or as an admin), newest first.
    async fn decided_by(&self, org: OrgId, email: &str, limit: i64) -> Result<Vec<MessageId>>;
    /// Everyone asked to decide on a message (lower case).
    async fn asked(&self, id: &MessageId) -> Result<Vec<String>>;

    async fn get(&self, id: &MessageId) -> Result<Option<(MessageRow, Vec<EventRow>)>>;

    /// The dashboard's counts for the org's messages received at or after `since`.
    async fn stats(&self, org: OrgId, since: i64) -> Result<Stats>;
    /// Messages per state, every state listed.
    async fn depth(&self) -> Result<Vec<(State, i64)>>;
}
