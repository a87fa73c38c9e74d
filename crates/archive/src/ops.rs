//! What the server and the CLI do with the archive: archive the queue's
//! messages, import existing mail, rebuild the index, verify the chain,
//! export, and apply retention. Heavy work (inspection, compression, the
//! index) runs on blocking threads; the store is the async one.

use crate::blobs::{self, BlobLoc, sha256_hex};
use crate::chain::{self, Verifier};
use crate::meta::{FinalMeta, ImportedMeta, Original, ReceivedMeta, RecordKind};
use crate::{Archive, ArchiveError, DocInput, Result, index};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tantivy::{IndexWriter, TantivyDocument};
use tomare_inspect::Inspector;
use tomare_model::{Facts, MessageId, OrgId, Verdict, now_ms};
use tomare_store::{ArchiveEntry, ArchiveRecord, Store};

/// A message still in the queue this long gets its received copy archived
/// (held, awaiting approval); one delivered sooner is archived once, final.
pub const SETTLE_MS: i64 = 1_000;

/// Index writer heap for the server's small batches and for bulk work.
const SERVE_HEAP: usize = 24_000_000;
const BULK_HEAP: usize = 200_000_000;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ArchiveError::Other(format!("archive worker: {e}")))
}

/// The queue's side of archiving: reads a message's spool copies
/// (original, and the rewritten one when the rules changed it).
pub trait SpoolSource: Send + Sync + 'static {
    fn original(&self, id: &MessageId) -> io::Result<Vec<u8>>;
    fn rewritten(&self, id: &MessageId) -> io::Result<Option<Vec<u8>>>;
    /// Where the original is on disk, when it is a file: a big message is
    /// then hashed and packed from it a piece at a time.
    fn original_path(&self, _id: &MessageId) -> Option<std::path::PathBuf> {
        None
    }
}

/// Messages over this size are packed from their spool file rather than
/// read whole (when the review stage's inspection is still at hand).
const STREAM_OVER: u64 = 4 << 20;

/// A blob to pack: bytes read, or a spool file.
enum Kept {
    Bytes(Vec<u8>),
    /// A hand-off's bytes: not copied.
    Shared(Arc<Vec<u8>>),
    File(std::path::PathBuf),
}

impl Kept {
    fn bytes(&self) -> &[u8] {
        match self {
            Kept::Bytes(b) => b,
            Kept::Shared(b) => b,
            Kept::File(_) => &[],
        }
    }
}

/// What the review stage hands the archiver for each message it decided,
/// by id: the full Facts (with their texts) and, for a message up to
/// [`HANDOFF_BYTES_MAX`], its bytes — so the archiver does not read the
/// spool file, parse or inspect the message again. Bounded: when full, the
/// oldest go, and the archiver reads and inspects those itself.
#[derive(Default)]
pub struct Handoffs {
    inner: std::sync::Mutex<HandoffsInner>,
}

/// One message's hand-off.
pub struct Handoff {
    pub bytes: Option<Arc<Vec<u8>>>,
    pub facts: Facts,
}

#[derive(Default)]
struct HandoffsInner {
    map: HashMap<MessageId, Handoff>,
    order: std::collections::VecDeque<MessageId>,
    bytes: usize,
}

/// What the hand-offs may hold: room for the seconds a burst keeps the
/// archiver behind (at nice 10 it yields to the relay). A hand-off dropped
/// for room costs a spool read and a whole inspection again
/// (`tomare_archive_reinspected_total`). A 10 KB message's hand-off is
/// about 20 KB (bytes and text), so the byte limit binds first, near 1,600
/// messages: `N=5000 bench/relay.sh`, with the archive up to a second
/// behind, dropped none.
const HANDOFF_ENTRIES: usize = 4096;
const HANDOFF_BYTES: usize = 32 << 20;
/// One hand-off over this is not kept: held while the next big message is
/// reviewed, 20 MB of text would add to that review's memory
/// (bench/bigmail.py); the archiver inspects it again.
const HANDOFF_ONE_MAX: usize = 8 << 20;
/// Bigger messages are read from their spool file (and streamed into the
/// pack) rather than kept in memory until the archiver comes.
pub const HANDOFF_BYTES_MAX: usize = 256 << 10;

fn handoff_size(h: &Handoff) -> usize {
    let text = h.facts.body_text.len() + h.facts.attachments.iter().map(|a| a.text.len()).sum::<usize>();
    text + h.bytes.as_ref().map_or(0, |b| b.len())
}

impl Handoffs {
    /// Keeps what review made of `id`, when it fits (checked before
    /// anything is kept: a big text is not held only to be dropped).
    pub fn put(&self, id: MessageId, bytes: &Arc<Vec<u8>>, facts: Facts) {
        let bytes = (bytes.len() <= HANDOFF_BYTES_MAX).then(|| bytes.clone());
        let handoff = Handoff { bytes, facts };
        let size = handoff_size(&handoff);
        if size > HANDOFF_ONE_MAX {
            return;
        }
        let Ok(mut c) = self.inner.lock() else { return };
        // `order` also holds ids already taken: it is trimmed too.
        while c.map.len() >= HANDOFF_ENTRIES || c.bytes + size > HANDOFF_BYTES || c.order.len() >= 2 * HANDOFF_ENTRIES {
            let Some(old) = c.order.pop_front() else { break };
            if let Some(h) = c.map.remove(&old) {
                c.bytes -= handoff_size(&h);
            }
        }
        c.bytes += size;
        if let Some(prev) = c.map.insert(id.clone(), handoff) {
            c.bytes -= handoff_size(&prev);
        } else {
            c.order.push_back(id);
        }
    }

    pub fn take(&self, id: &MessageId) -> Option<Handoff> {
        let mut c = self.inner.lock().ok()?;
        let h = c.map.remove(id)?;
        c.bytes -= handoff_size(&h);
        Some(h)
    }
}

/// What one pass of [`archive_queue`] did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Messages looked at.
    pub messages: usize,
    /// The pass stopped at its byte limit with more waiting.
    pub cut: bool,
    /// When the next message alone is over the limit: its size, for a
    /// pass of its own.
    pub wanted: u64,
    pub records: usize,
    /// Messages now fully archived: their spool files may go.
    pub done: Vec<MessageId>,
    /// Messages read and inspected again here, their review's hand-off
    /// gone (dropped for room, or made before a restart).
    pub reinspected: usize,
}

/// tomare's own mail (approval requests, notices, DSNs) is kept as
/// evidence but found only with `is:notice`.
fn notice_flag(notice: bool) -> Vec<String> {
    if notice { vec!["notice".into()] } else { Vec::new() }
}

/// The header block of a message on disk (for the index's display names).
fn read_head(path: &std::path::Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?.take(256 * 1024).read_to_end(&mut head)?;
    Ok(head)
}

/// Message bytes one pass of the server's archiver holds in memory.
pub const BATCH_BYTES: u64 = 4 << 20;

/// One pass of the server's archiver: up to `limit` messages that were
/// reviewed (their received copy) or reached a final state (their final
/// record). Order: blobs (synced), then the index, then the
/// records — a crash in between repeats work, never loses it.
/// The server archiver's work between index commits: documents in the
/// writer, bytes in packs, records waiting for the commit. Records are
/// appended (and spool files may go) only once the index commit holding
/// their documents is done, so a crash before it simply repeats the work.
#[derive(Default)]
pub struct QueueState {
    writer: Option<IndexWriter>,
    entries: Vec<ArchiveEntry>,
    progress: Vec<(MessageId, i64)>,
    done: Vec<MessageId>,
    locs: Vec<BlobLoc>,
    /// Messages in this round: not taken again until it is recorded (so a
    /// state change never needs a document that is not committed yet).
    in_flight: HashSet<MessageId>,
    last_commit: Option<std::time::Instant>,
    /// [`COMMIT_EVERY`] unless set.
    commit_every: Option<Duration>,
}

impl QueueState {
    /// Rounds of another length (tests use a long one to look inside).
    pub fn with_commit_every(every: Duration) -> QueueState {
        QueueState { commit_every: Some(every), ..QueueState::default() }
    }
}

/// How often the server commits the index (and records what it archived).
/// Shorter keeps spool files alive for less time, which the accept path
/// feels more than the extra commits (measured: 250 ms and 100 ms beat 1 s
/// and 3 s on bench/relay.sh; 250 ms makes fewer index segments).
pub const COMMIT_EVERY: Duration = Duration::from_millis(250);

#[allow(clippy::too_many_arguments)]
pub async fn archive_queue(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
    inspector: &Arc<Inspector>,
    spool: &Arc<dyn SpoolSource>,
    handoffs: Option<&Arc<Handoffs>>,
    state: &mut QueueState,
    limit: i64,
    max_bytes: u64,
    settle_ms: i64,
) -> Result<Batch> {
    let handoffs = handoffs.cloned();
    // Messages already in this round come again after its commit.
    let skip: Vec<MessageId> = state.in_flight.iter().cloned().collect();
    let mut due = store.archive_due(limit, now_ms() - settle_ms, &skip).await?;
    due.retain(|d| !state.in_flight.contains(&d.row.id));
    // Every message of a pass is in memory at once: a burst of big ones
    // is taken a few at a time, and one bigger than `max_bytes` alone is
    // left for a pass of its own (`wanted`).
    let mut bytes = 0u64;
    let fit = due
        .iter()
        .take_while(|d| {
            bytes += d.row.size.max(1) as u64;
            bytes <= max_bytes
        })
        .count();
    let cut = fit < due.len();
    let wanted = if fit == 0 { due.first().map_or(0, |d| d.row.size.max(1) as u64) } else { 0 };
    due.truncate(fit);
    let messages = due.len();
    if due.is_empty() {
        let records = commit_round(archive, store, state).await?;
        return Ok(Batch { messages: 0, cut, wanted, records: records.0, done: records.1, reinspected: 0 });
    }
    let (a, ins, sp, st) = (archive.clone(), inspector.clone(), spool.clone(), store.clone());
    let runtime = tokio::runtime::Handle::current();
    let writer = state.writer.take();
    type Built = (IndexWriter, (Vec<ArchiveEntry>, Vec<(MessageId, i64)>, Vec<MessageId>, Vec<BlobLoc>), usize);
    let built = blocking(move || -> Result<Built> {
        let handoffs = handoffs.as_deref();
        let writer = match writer {
            Some(w) => w,
            None => a.index.writer(1, SERVE_HEAP, Duration::ZERO)?,
        };
        // The bytes to keep (with their hash); one pack at the end.
        let mut keep: Vec<(String, Kept)> = Vec::new();
        let mut entries = Vec::new();
        let mut progress = Vec::new();
        let mut done = Vec::new();
        let mut reinspected = 0;
        for it in &due {
            let row = &it.row;
            let id = &row.id;
            let (received_at, org) = (row.received_at, row.org_id);
            // What review handed over: the full Facts, and a small
            // message's bytes. A big message whose inspection is at hand is
            // packed from its file; otherwise the bytes go into `keep` (one
            // copy in memory). The hash stays for the final record.
            let handoff = if it.archived == 0 { handoffs.and_then(|h| h.take(id)) } else { None };
            let size = row.size.max(0) as u64;
            let (mut facts_at_hand, shared) = match handoff {
                Some(h) => (Some(h.facts), h.bytes),
                None => (None, None),
            };
            let file = sp.original_path(id).filter(|_| size > STREAM_OVER && it.archived == 0 && shared.is_none());
            let streamed = match (file, facts_at_hand.take()) {
                (Some(path), Some(facts)) => blobs::sha256_file(&path).ok().map(|hash| (hash, facts, path)),
                (_, facts) => {
                    facts_at_hand = facts;
                    None
                }
            };
            let original = match (&streamed, shared) {
                (Some((hash, _, _)), _) => Ok((hash.clone(), None)),
                (None, Some(bytes)) => Ok((sha256_hex(&bytes), Some(Kept::Shared(bytes)))),
                (None, None) => sp.original(id).map(|b| (sha256_hex(&b), Some(Kept::Bytes(b)))),
            };
            let original_hash = original.as_ref().ok().map(|(h, _)| h.clone());
            let mut doc = None;
            if it.archived == 0 {
                let (blob, facts, names) = match (original, streamed) {
                    (_, Some((hash, facts, path))) => {
                        let names = index::headers(&read_head(&path)?);
                        keep.push((hash.clone(), Kept::File(path)));
                        (hash, facts, names)
                    }
                    (Ok((hash, Some(kept))), None) => {
                        // The review stage's inspection, when it is still at hand.
                        let facts = facts_at_hand.take().unwrap_or_else(|| {
                            reinspected += 1;
                            ins.message(kept.bytes())
                        });
                        let names = index::headers(kept.bytes());
                        keep.push((hash.clone(), kept));
                        (hash, facts, names)
                    }
                    (Ok((_, None)), None) => unreachable!("only a streamed message has no bytes at hand"),
                    (Err(e), None) => {
                        tracing::error!(%id, error = %e, "the spool copy is missing: archived without it");
                        (String::new(), Facts::default(), Default::default())
                    }
                };
                let recipients: Vec<String> = row.recipients.iter().map(|r| r.address.to_string()).collect();
                let verdict = it.reviewed.as_ref().and_then(|r| r.verdict.clone());
                let rules = verdict.as_ref().map(Verdict::rule_names).unwrap_or_default();
                let meta = ReceivedMeta {
                    id: id.to_string(),
                    mail_from: row.mail_from.to_string(),
                    recipients: recipients.clone(),
                    helo: row.helo.clone(),
                    client_ip: row.client_ip.clone(),
                    auth_user: row.auth_user.clone(),
                    received_at,
                    size,
                    subject: row.subject.clone(),
                    header_from: row.header_from.clone(),
                    message_id_header: row.message_id_header.clone(),
                    facts: it.reviewed.as_ref().map(|r| r.facts.clone()),
                    verdict,
                };
                entries.push(ArchiveEntry {
                    message_id: id.to_string(),
                    org_id: org,
                    kind: RecordKind::Received.as_str().into(),
                    at: received_at,
                    blob,
                    meta: serde_json::to_string(&meta).map_err(|e| ArchiveError::Other(e.to_string()))?,
                });
                let input = DocInput {
                    id: id.to_string(),
                    date: received_at,
                    size,
                    envelope_from: row.mail_from.to_string(),
                    envelope_to: recipients,
                    state: row.state.as_str().to_string(),
                    rules,
                    flags: notice_flag(row.is_dsn),
                    names_from: names.from,
                    names_to: names.to,
                };
                doc = Some(a.index.document(&input, &facts));
            }
            if row.state.is_final() {
                let rewritten = sp.rewritten(id)?;
                let was_rewritten = rewritten.is_some();
                let delivered = match rewritten {
                    Some(bytes) => {
                        let hash = sha256_hex(&bytes);
                        keep.push((hash.clone(), Kept::Bytes(bytes)));
                        hash
                    }
                    None => original_hash.unwrap_or_default(),
                };
                let meta = FinalMeta {
                    id: id.to_string(),
                    state: Some(row.state),
                    recipients: row.recipients.iter().map(Into::into).collect(),
                    attempts: row.attempts,
                    events: it.events.clone(),
                    rewritten: was_rewritten,
                };
                entries.push(ArchiveEntry {
                    message_id: id.to_string(),
                    org_id: org,
                    kind: RecordKind::Final.as_str().into(),
                    at: received_at,
                    blob: delivered,
                    meta: serde_json::to_string(&meta).map_err(|e| ArchiveError::Other(e.to_string()))?,
                });
                if doc.is_none() {
                    doc = a.index.restate(id.as_str(), row.state.as_str())?;
                }
                done.push(id.clone());
            }
            progress.push((id.clone(), if row.state.is_final() { 2 } else { 1 }));
            if let Some(doc) = doc {
                writer.delete_term(a.index.delete_term(id.as_str()));
                writer.add_document(doc).map_err(crate::index::IndexError::from)?;
            }
        }
        let hashes: Vec<String> = keep.iter().map(|(h, _)| h.clone()).collect();
        let known = runtime.block_on(st.blob_locations(&hashes))?;
        let contents = keep.iter().map(|(h, k)| {
            let content = match k {
                Kept::Bytes(b) => blobs::Content::Bytes(b),
                Kept::Shared(b) => blobs::Content::Bytes(b),
                Kept::File(p) => blobs::Content::File(p),
            };
            (h.as_str(), content)
        });
        let locs = a.blobs.write_pack_from(&blobs::new_items(contents, &known))?;
        Ok((writer, (entries, progress, done, locs), reinspected))
    })
    .await?;
    let (writer, (entries, progress, done, locs), reinspected) = match built {
        Ok(b) => b,
        Err(e) => {
            // The writer, with the round's uncommitted documents, is gone:
            // the whole round is done again.
            *state = QueueState { commit_every: state.commit_every, ..QueueState::default() };
            return Err(e);
        }
    };
    state.writer = Some(writer);
    state.in_flight.extend(progress.iter().map(|(id, _)| id.clone()));
    state.entries.extend(entries);
    state.progress.extend(progress);
    state.done.extend(done);
    state.locs.extend(locs);
    let every = state.commit_every.unwrap_or(COMMIT_EVERY);
    let due_now = state.last_commit.is_none_or(|t| t.elapsed() >= every);
    let (records, done) = if due_now { commit_round(archive, store, state).await? } else { (0, Vec::new()) };
    Ok(Batch { messages, cut, wanted: 0, records, done, reinspected })
}

/// Records what is pending and lets the index writer go (before
/// retention, at shutdown). Returns the messages now fully archived.
pub async fn release(archive: &Arc<Archive>, store: &Arc<dyn Store>, state: &mut QueueState) -> Result<Vec<MessageId>> {
    let (_, done) = commit_round(archive, store, state).await?;
    if let Some(writer) = state.writer.take() {
        blocking(move || drop(writer)).await?;
    }
    Ok(done)
}

/// Commits the index, then records what this round archived. Returns how
/// many records and the messages now fully archived (their spool files may
/// go). When nothing is pending the writer is let go, so `tomare archive
/// import` can take it.
pub async fn commit_round(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
    state: &mut QueueState,
) -> Result<(usize, Vec<MessageId>)> {
    let Some(mut writer) = state.writer.take() else { return Ok((0, Vec::new())) };
    if state.in_flight.is_empty() {
        // Idle: release the writer (dropping it waits for its threads).
        blocking(move || drop(writer)).await?;
        return Ok((0, Vec::new()));
    }
    let recorded = async {
        let writer =
            blocking(move || writer.commit().map(|_| writer)).await?.map_err(crate::index::IndexError::from)?;
        state.writer = Some(writer);
        state.last_commit = Some(std::time::Instant::now());
        let records = store.archive_append(&state.entries, &state.progress, &state.locs).await?;
        checkpoint(archive, store, records.last()).await?;
        Ok::<_, ArchiveError>(records)
    }
    .await;
    let records = match recorded {
        Ok(r) => r,
        Err(e) => {
            // Not recorded: the round's messages come again (their
            // documents are replaced by id, their records skipped if any).
            *state = QueueState { commit_every: state.commit_every, ..QueueState::default() };
            return Err(e);
        }
    };
    state.entries.clear();
    state.progress.clear();
    state.locs.clear();
    state.in_flight.clear();
    Ok((records.len(), std::mem::take(&mut state.done)))
}

async fn checkpoint(archive: &Archive, store: &Arc<dyn Store>, head: Option<&ArchiveRecord>) -> Result<()> {
    if let Some(head) = head {
        store.add_checkpoint(&chain::checkpoint(&archive.key, head, now_ms())).await?;
    }
    Ok(())
}

/// What `archive verify` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub records: i64,
    pub checkpoints: usize,
    pub head_seq: i64,
    pub head_hash: String,
    pub public_key: String,
}

/// Walks the whole chain. `Err(Broken)` names the first bad record.
pub async fn verify(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
) -> Result<std::result::Result<VerifyReport, chain::Broken>> {
    let checkpoints = store.checkpoints().await?;
    let mut verifier = Verifier::new(&archive.blobs);
    let mut after = 0;
    let mut head = (0, tomare_store::GENESIS.to_string());
    loop {
        let page = store.archive_records(after, 2000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        head = (last.seq, last.hash.clone());
        let hashes: Vec<String> = page.iter().filter(|r| !r.blob.is_empty()).map(|r| r.blob.clone()).collect();
        let locs = store.blob_locations(&hashes).await?;
        for r in &page {
            if let Err(b) = verifier.record(r, locs.get(&r.blob)) {
                return Ok(Err(b));
            }
        }
    }
    let public = archive.key.verifying_key();
    Ok(verifier.finish(&checkpoints, &public).map(|records| VerifyReport {
        records,
        checkpoints: checkpoints.len(),
        head_seq: head.0,
        head_hash: head.1,
        public_key: chain::public_hex(&public),
    }))
}

/// The bytes to export for a message: as delivered (its final record)
/// unless `original`, or as received/imported.
pub async fn message_bytes(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
    id: &str,
    original: bool,
) -> Result<Vec<u8>> {
    Ok(stored(archive, store, id, original).await?.0)
}

/// The message as received (or imported) and that record's details, as
/// `rules replay` judges it again.
pub async fn received(archive: &Arc<Archive>, store: &Arc<dyn Store>, id: &str) -> Result<(Vec<u8>, Original)> {
    let (bytes, record) = stored(archive, store, id, true).await?;
    let kind = RecordKind::parse(&record.kind).unwrap_or(RecordKind::Received);
    Ok((bytes, Original::read(kind, record.meta.as_deref())))
}

/// A message's bytes with the record that names them.
async fn stored(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
    id: &str,
    original: bool,
) -> Result<(Vec<u8>, ArchiveRecord)> {
    let records = store.archive_records_of(id).await?;
    use RecordKind::{Final, Imported, Received};
    let pick = |kinds: &[RecordKind]| {
        records.iter().rev().find(|r| kinds.iter().any(|k| k.as_str() == r.kind) && !r.blob.is_empty())
    };
    let record = if original { pick(&[Received, Imported]) } else { pick(&[Final]).or(pick(&[Received, Imported])) };
    let Some(record) = record else {
        return Err(ArchiveError::Other(format!("{id}: not in the archive")));
    };
    if record.purged_at.is_some() {
        return Err(ArchiveError::Other(format!("{id}: removed by retention")));
    }
    let Some(loc) = store.blob_locations(std::slice::from_ref(&record.blob)).await?.remove(&record.blob) else {
        return Err(ArchiveError::Other(format!("{id}: its stored message is missing")));
    };
    let a = archive.clone();
    let bytes = blocking(move || a.blobs.read(&loc)).await??;
    Ok((bytes, record.clone()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Eml,
    Mbox,
}

/// Writes messages to `out`: a directory of `ID.eml` files, or one mbox
/// file (mboxrd: `From ` lines in the text quoted with `>`).
pub async fn export(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
    ids: &[String],
    format: Format,
    out: &Path,
    original: bool,
) -> Result<usize> {
    let mut mbox = match format {
        Format::Mbox => Some(io::BufWriter::new(std::fs::File::create(out)?)),
        Format::Eml => {
            std::fs::create_dir_all(out)?;
            None
        }
    };
    for id in ids {
        let bytes = message_bytes(archive, store, id, original).await?;
        match &mut mbox {
            Some(w) => write_mbox(w, &bytes)?,
            None => std::fs::write(out.join(format!("{id}.eml")), &bytes)?,
        }
    }
    if let Some(mut w) = mbox {
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    Ok(ids.len())
}

/// One message of an mboxrd file (`From ` lines in the text quoted with `>`).
pub fn write_mbox(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n")?;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let quoted = line.iter().position(|b| *b != b'>').is_some_and(|i| line[i..].starts_with(b"From "));
        if quoted {
            w.write_all(b">")?;
        }
        w.write_all(line)?;
    }
    if !bytes.ends_with(b"\n") {
        w.write_all(b"\n")?;
    }
    w.write_all(b"\n")
}

/// Splits an mbox (mboxrd or mboxo) into messages, unquoting `>From `.
pub fn split_mbox(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut prev_blank = true;
    for line in data.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"From ") && prev_blank {
            if let Some(m) = current.take() {
                out.push(trim_separator(m));
            }
            current = Some(Vec::new());
            prev_blank = false;
            continue;
        }
        prev_blank = line == b"\n" || line == b"\r\n";
        if let Some(m) = current.as_mut() {
            let unquoted =
                line.iter().position(|b| *b != b'>').is_some_and(|i| i > 0 && line[i..].starts_with(b"From "));
            m.extend_from_slice(if unquoted { &line[1..] } else { line });
        }
    }
    if let Some(m) = current {
        out.push(trim_separator(m));
    }
    out
}

/// The blank line mbox puts between messages is not part of them.
fn trim_separator(mut m: Vec<u8>) -> Vec<u8> {
    if m.ends_with(b"\r\n\r\n") {
        m.truncate(m.len() - 2);
    } else if m.ends_with(b"\n\n") {
        m.truncate(m.len() - 1);
    }
    m
}

/// Where `archive import` finds messages: a maildir (`cur/` and `new/`),
/// an mbox file, or a folder (searched recursively) of `.eml` files,
/// maildirs and mbox files.
pub fn import_sources(path: &Path) -> io::Result<Vec<Source>> {
    let mut out = Vec::new();
    collect(path, &mut out)?;
    Ok(out)
}

#[derive(Debug, Clone)]
pub enum Source {
    /// One message per file (an .eml, a maildir entry).
    File(PathBuf),
    /// Many messages in one file.
    Mbox(PathBuf),
}

fn collect(path: &Path, out: &mut Vec<Source>) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        let mut head = [0u8; 5];
        let n = io::Read::read(&mut std::fs::File::open(path)?, &mut head)?;
        if n == 5 && &head == b"From " {
            out.push(Source::Mbox(path.to_path_buf()));
        } else {
            out.push(Source::File(path.to_path_buf()));
        }
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    let is_maildir = ["cur", "new", "tmp"].iter().all(|d| path.join(d).is_dir());
    for entry in entries {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') || (is_maildir && name == "tmp") {
            continue;
        }
        if entry.is_dir() {
            collect(&entry, out)?;
        } else if entry.is_file() {
            let in_maildir = entry.parent().and_then(|p| p.file_name()).is_some_and(|p| p == "cur" || p == "new")
                && entry.parent().and_then(|p| p.parent()).is_some_and(|p| p.join("tmp").is_dir());
            let lower = name.to_lowercase();
            if in_maildir || lower.ends_with(".eml") {
                out.push(Source::File(entry));
            } else if lower.ends_with(".mbox") || lower.ends_with(".mbx") || lower == "mbox" {
                out.push(Source::Mbox(entry));
            } else {
                // Anything else that starts like an mbox.
                let mut head = [0u8; 5];
                let n = std::fs::File::open(&entry).and_then(|mut f| io::Read::read(&mut f, &mut head)).unwrap_or(0);
                if n == 5 && &head == b"From " {
                    out.push(Source::Mbox(entry));
                }
            }
        }
    }
    Ok(())
}

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportReport {
    pub messages: u64,
    pub skipped_duplicates: u64,
    pub unreadable: u64,
    pub bytes: u64,
    pub contacts: u64,
}

struct Prepared {
    entry: ArchiveEntry,
    doc: TantivyDocument,
    contacts: Vec<String>,
    bytes: Vec<u8>,
}

/// Imports existing mail: each message is inspected, stored as a blob,
/// recorded (`imported`, chained) and indexed; mail from an internal
/// sender seeds the recipient history with its external domains.
/// `internal` says whether a domain is the company's.
pub async fn import(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
    inspector: &Arc<Inspector>,
    org: OrgId,
    path: &Path,
    internal: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    mut progress: impl FnMut(&ImportReport),
) -> Result<ImportReport> {
    let sources = import_sources(path)?;
    // The same bytes twice in this import are imported once; those already
    // in the archive are skipped batch by batch ([`flush`]).
    let mut seen: HashSet<String> = HashSet::new();
    let a = archive.clone();
    let mut writer = blocking(move || a.index.writer(1, BULK_HEAP, Duration::from_secs(30))).await??;
    let mut report = ImportReport::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Prepared>>(512);
    // Readers and preparers on blocking threads: as many workers as cores
    // minus the one the index writer uses.
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
    let (a, ins) = (archive.clone(), inspector.clone());
    let producer = tokio::task::spawn_blocking(move || produce(sources, workers, a, ins, org, internal, tx));
    let mut batch: Vec<Prepared> = Vec::new();
    let mut pending = Pending::default();
    while let Some(item) = rx.recv().await {
        match item {
            None => report.unreadable += 1,
            Some(p) => {
                if !seen.insert(p.entry.message_id.clone()) {
                    report.skipped_duplicates += 1;
                    continue;
                }
                report.messages += 1;
                batch.push(p);
            }
        }
        if batch.len() >= 2000 {
            let commit = pending.entries.len() + batch.len() >= 20_000;
            flush(archive, store, org, &mut writer, std::mem::take(&mut batch), &mut pending, &mut report, commit)
                .await?;
            progress(&report);
        }
    }
    let (w, bytes) = (&mut writer, producer.await.map_err(|e| ArchiveError::Other(e.to_string()))??);
    report.bytes = bytes;
    flush(archive, store, org, w, std::mem::take(&mut batch), &mut pending, &mut report, true).await?;
    blocking(move || writer.wait_merging_threads()).await?.map_err(crate::index::IndexError::from)?;
    progress(&report);
    Ok(report)
}

/// Imported messages whose bytes are in packs and whose documents are in
/// the writer, waiting for the next index commit to be recorded: a message
/// is recorded only once it is searchable, so an interrupted import is
/// simply run again (recorded messages are skipped, the rest redone).
#[derive(Default)]
struct Pending {
    entries: Vec<ArchiveEntry>,
    locs: Vec<BlobLoc>,
    contacts: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn flush(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
    org: OrgId,
    writer: &mut IndexWriter,
    batch: Vec<Prepared>,
    pending: &mut Pending,
    report: &mut ImportReport,
    commit: bool,
) -> Result<()> {
    let ids: Vec<String> = batch.iter().map(|p| p.entry.message_id.clone()).collect();
    let known = store.archive_recorded(&ids).await?;
    report.skipped_duplicates += known.len() as u64;
    report.messages -= known.len() as u64;
    let mut entries = Vec::with_capacity(batch.len());
    let mut bytes = Vec::with_capacity(batch.len());
    for p in batch.into_iter().filter(|p| !known.contains(&p.entry.message_id)) {
        writer.add_document(p.doc).map_err(crate::index::IndexError::from)?;
        pending.contacts.extend(p.contacts);
        entries.push(p.entry);
        bytes.push(p.bytes);
    }
    let hashes: Vec<String> = entries.iter().map(|e| e.blob.clone()).collect();
    let known = store.blob_locations(&hashes).await?;
    let a = archive.clone();
    let items: Vec<(String, Vec<u8>)> = entries.iter().map(|e| e.blob.clone()).zip(bytes).collect();
    let locs = blocking(move || {
        a.blobs.write_pack(&blobs::new_items(items.iter().map(|(h, b)| (h.as_str(), b.as_slice())), &known))
    })
    .await??;
    pending.entries.extend(entries);
    pending.locs.extend(locs);
    if !commit {
        return Ok(());
    }
    // Blocks this (CLI) task for the commit; the preparing threads wait.
    writer.commit().map_err(crate::index::IndexError::from)?;
    let p = std::mem::take(pending);
    if !p.entries.is_empty() {
        let records = store.archive_append(&p.entries, &[], &p.locs).await?;
        checkpoint(archive, store, records.last()).await?;
    }
    if !p.contacts.is_empty() {
        report.contacts += p.contacts.len() as u64;
        store.record_contacts(org, &p.contacts).await?;
    }
    Ok(())
}

fn produce(
    sources: Vec<Source>,
    workers: usize,
    archive: Arc<Archive>,
    inspector: Arc<Inspector>,
    org: OrgId,
    internal: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    tx: tokio::sync::mpsc::Sender<Option<Prepared>>,
) -> Result<u64> {
    let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, Option<i64>)>(256);
    let work_rx = Arc::new(std::sync::Mutex::new(work_rx));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (rx, tx, a, ins, internal) =
            (work_rx.clone(), tx.clone(), archive.clone(), inspector.clone(), internal.clone());
        handles.push(std::thread::spawn(move || {
            loop {
                let next = rx.lock().map(|r| r.recv());
                let Ok(Ok((bytes, mtime))) = next else { break };
                let prepared = prepare(&a, &ins, org, &bytes, mtime, internal.as_ref());
                if tx.blocking_send(prepared).is_err() {
                    break;
                }
            }
        }));
    }
    let mut total = 0u64;
    for source in sources {
        match source {
            Source::File(path) => {
                let mtime = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64);
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        total += bytes.len() as u64;
                        if work_tx.send((bytes, mtime)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable");
                        let _ = tx.blocking_send(None);
                    }
                }
            }
            Source::Mbox(path) => match std::fs::read(&path) {
                Ok(data) => {
                    total += data.len() as u64;
                    for m in split_mbox(&data) {
                        if work_tx.send((m, None)).is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable");
                    let _ = tx.blocking_send(None);
                }
            },
        }
    }
    drop(work_tx);
    for h in handles {
        let _ = h.join();
    }
    Ok(total)
}

fn domain(address: &str) -> Option<String> {
    address.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>').to_lowercase()).filter(|d| !d.is_empty())
}

fn prepare(
    archive: &Archive,
    inspector: &Inspector,
    org: OrgId,
    bytes: &[u8],
    mtime: Option<i64>,
    internal: &(dyn Fn(&str) -> bool + Send + Sync),
) -> Option<Prepared> {
    let blob = sha256_hex(bytes);
    let facts = inspector.message(bytes);
    let names = index::headers(bytes);
    let date = names.date.or(mtime).unwrap_or_else(now_ms);
    let id = format!("import-{}", &blob[..32]);
    let sender = facts.from.first().cloned().unwrap_or_default();
    let recipients: Vec<String> = facts.to.iter().chain(&facts.cc).chain(&facts.bcc).cloned().collect();
    let contacts = if domain(&sender).is_some_and(|d| internal(&d)) {
        let mut ds: Vec<String> = recipients.iter().filter_map(|r| domain(r)).filter(|d| !internal(d)).collect();
        ds.sort();
        ds.dedup();
        ds
    } else {
        Vec::new()
    };
    let input = DocInput {
        id: id.clone(),
        date,
        size: bytes.len() as u64,
        envelope_from: sender.clone(),
        envelope_to: Vec::new(),
        state: "imported".into(),
        rules: Vec::new(),
        flags: vec!["imported".into()],
        names_from: names.from,
        names_to: names.to,
    };
    let doc = archive.index.document(&input, &facts);
    let meta = ImportedMeta {
        id: id.clone(),
        mail_from: sender,
        recipients,
        subject: facts.subject.clone(),
        message_id_header: facts.message_id.clone(),
        size: bytes.len() as u64,
        date,
    };
    Some(Prepared {
        entry: ArchiveEntry {
            message_id: id,
            org_id: org,
            kind: RecordKind::Imported.as_str().into(),
            at: date,
            blob,
            meta: serde_json::to_string(&meta).ok()?,
        },
        doc,
        contacts,
        bytes: bytes.to_vec(),
    })
}

/// Rebuilds the index from the records and blobs: each message's received
/// (or imported) copy is inspected again; its state is its final record's.
pub async fn reindex(
    archive: &Arc<Archive>,
    store: &Arc<dyn Store>,
    inspector: &Arc<Inspector>,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    // States from final records, and which messages retention removed.
    let mut states: HashMap<String, String> = HashMap::new();
    let mut originals: Vec<ArchiveRecord> = Vec::new();
    let mut after = 0;
    loop {
        let page = store.archive_records(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page {
            if r.purged_at.is_some() {
                continue;
            }
            match RecordKind::parse(&r.kind) {
                Some(RecordKind::Final) => {
                    let state =
                        r.meta.as_deref().and_then(|m| serde_json::from_str::<FinalMeta>(m).ok()).and_then(|m| m.state);
                    if let Some(s) = state {
                        states.insert(r.message_id.clone(), s.as_str().to_string());
                    }
                }
                Some(RecordKind::Received | RecordKind::Imported) => originals.push(r),
                _ => {}
            }
        }
    }
    // Live messages whose state moved on since their received record.
    for r in &originals {
        if r.kind == RecordKind::Received.as_str()
            && !states.contains_key(&r.message_id)
            && let Some(id) = MessageId::parse(&r.message_id)
            && let Some((row, _)) = store.get(&id).await?
        {
            states.insert(r.message_id.clone(), row.state.as_str().to_string());
        }
    }
    let hashes: Vec<String> = originals.iter().map(|r| r.blob.clone()).collect();
    let locs = Arc::new(store.blob_locations(&hashes).await?);
    let a = archive.clone();
    let ins = inspector.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(16);
    let job = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut writer = a.index.writer(1, BULK_HEAP, Duration::from_secs(30))?;
        writer.delete_all_documents().map_err(crate::index::IndexError::from)?;
        let queue = Arc::new(std::sync::Mutex::new(originals.into_iter()));
        let (doc_tx, doc_rx) = std::sync::mpsc::sync_channel::<TantivyDocument>(256);
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
        let states = Arc::new(states);
        let mut handles = Vec::new();
        for _ in 0..workers {
            let (queue, doc_tx, a, ins, states, locs) =
                (queue.clone(), doc_tx.clone(), a.clone(), ins.clone(), states.clone(), locs.clone());
            handles.push(std::thread::spawn(move || {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some(r) = next else { break };
                    let Some(Ok(bytes)) = locs.get(&r.blob).map(|l| a.blobs.read(l)) else {
                        tracing::warn!(id = %r.message_id, "its blob is missing or damaged: not indexed");
                        continue;
                    };
                    let kind = RecordKind::parse(&r.kind).unwrap_or(RecordKind::Received);
                    let meta = Original::read(kind, r.meta.as_deref());
                    let facts = ins.message(&bytes);
                    let names = index::headers(&bytes);
                    let imported = kind == RecordKind::Imported;
                    let input = DocInput {
                        id: r.message_id.clone(),
                        date: r.at,
                        size: bytes.len() as u64,
                        envelope_from: meta.mail_from().to_string(),
                        envelope_to: if imported { Vec::new() } else { meta.recipients().to_vec() },
                        state: states
                            .get(&r.message_id)
                            .cloned()
                            .unwrap_or_else(|| if imported { "imported".into() } else { "received".into() }),
                        rules: meta.verdict().map(Verdict::rule_names).unwrap_or_default(),
                        // Only our own notices and DSNs go with the null sender.
                        flags: if imported {
                            vec!["imported".into()]
                        } else {
                            notice_flag(meta.mail_from().is_empty())
                        },
                        names_from: names.from,
                        names_to: names.to,
                    };
                    if doc_tx.send(a.index.document(&input, &facts)).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(doc_tx);
        let mut n = 0u64;
        for doc in doc_rx {
            writer.add_document(doc).map_err(crate::index::IndexError::from)?;
            n += 1;
            if n.is_multiple_of(5000) {
                let _ = tx.blocking_send(n);
            }
        }
        for h in handles {
            let _ = h.join();
        }
        writer.commit().map_err(crate::index::IndexError::from)?;
        writer.wait_merging_threads().map_err(crate::index::IndexError::from)?;
        Ok(n)
    });
    while let Some(n) = rx.recv().await {
        progress(n);
    }
    let n = job.await.map_err(|e| ArchiveError::Other(e.to_string()))??;
    progress(n);
    Ok(n)
}

/// Retention: removes what is older than `days` (never legally held mail):
/// records keep their hashes, blobs no record needs are deleted, the
/// index forgets them. Returns how many messages were removed.
pub async fn retention(archive: &Arc<Archive>, store: &Arc<dyn Store>, org: OrgId, days: u64, now: i64) -> Result<u64> {
    if days == 0 {
        return Ok(0);
    }
    let before = now - days as i64 * 86_400_000;
    let mut removed = 0;
    loop {
        let purged = store.archive_purge(org, before, 500).await?;
        if purged.message_ids.is_empty() {
            break;
        }
        removed += purged.message_ids.len() as u64;
        let a = archive.clone();
        let ids = purged.message_ids.clone();
        blocking(move || -> Result<()> {
            let mut writer = a.index.writer(1, SERVE_HEAP, Duration::from_secs(10))?;
            for id in &ids {
                writer.delete_term(a.index.delete_term(id));
            }
            writer.commit().map_err(crate::index::IndexError::from)?;
            Ok(())
        })
        .await??;
        // The removed messages' bytes leave their packs: a pack with nothing
        // left goes; one with survivors is rewritten without the rest.
        let mut packs: Vec<String> = purged.unreferenced_blobs.iter().map(|l| l.pack.clone()).collect();
        packs.sort();
        packs.dedup();
        for pack in packs {
            let live = store.pack_blobs(&pack).await?;
            if !live.is_empty() {
                let a = archive.clone();
                let moved = blocking(move || a.blobs.compact(&live)).await??;
                store.relocate_blobs(&moved).await?;
            }
            archive.blobs.remove_pack(&pack)?;
        }
        if let Some(head) = store.archive_head().await? {
            checkpoint(archive, store, Some(&head)).await?;
        }
    }
    Ok(removed)
}
