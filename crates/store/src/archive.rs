//! The archive's side of the store: the hash chain of records (its link
//! computed here, the one place: the store appends with it, the verifier
//! checks with it), where blobs are, checkpoints, legal holds, retention.

use crate::{EventRow, MessageRow, Result, Reviewed};
use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tomare_model::{MessageId, OrgId};

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A record's hash: the previous hash and every field but the meta itself
/// (its hash stands in, so retention can drop the meta and keep the chain).
pub fn chain_link(prev: &str, seq: i64, kind: &str, message_id: &str, at: i64, blob: &str, meta_hash: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &seq.to_string(), kind, message_id, &at.to_string(), blob, meta_hash] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
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

#[async_trait]
pub trait ArchiveStore: Send + Sync {
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
