//! Between accept and hold: every committed message is inspected (in
//! parallel, on blocking threads, with a time limit) and its Facts stored,
//! then it is held or released. A message whose inspection does not finish
//! in time still gets Facts: incomplete, with the reason — never a silent
//! pass.

use crate::Spool;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tomare_config::Config;
use tomare_model::{Address, Envelope, Facts, MessageId, Metrics, NoticeKind, OnTimeout, State, Verdict, now_ms};
use tomare_store::{ApprovalRequest, Decision, Store};

/// Messages up to this size are inspected on the async thread: text mail
/// with small attachments. Anything bigger goes to a blocking thread with a
/// time limit.
const INLINE_INSPECT: usize = 64 * 1024;

/// Whether to inspect on the async thread. PDFs always go to a blocking
/// thread under the time limit: their parser is the one most likely to meet
/// a file built to make it spin; so do pictures and anything that may hold
/// one (Office and other zips, compound files, 7z), which OCR reads in a
/// child process that may take seconds. (The markers are the files' magic
/// numbers in base64: `%PDF`, PNG, JPEG, GIF, TIFF, WebP/RIFF, zip, CFB, 7z;
/// and `data:image` in HTML, as it is and base64-encoded at each alignment.)
fn inline(data: &[u8]) -> bool {
    static MARKERS: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> = std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::new([
            &b"JVBERi"[..],
            b"%PDF",
            b"iVBORw0KGgo",
            b"/9j/",
            b"R0lGOD",
            b"SUkqA",
            b"TU0AK",
            b"UklGR",
            b"UEsDB",
            b"0M8R4",
            b"N3q8r",
            b"data:image",
            b"ZGF0YTppbWFn",
            b"RhdGE6aW1hZ2",
            b"kYXRhOmltYWd",
        ])
        .ok()
    });
    // One pass over the message for all of them.
    data.len() <= INLINE_INSPECT && MARKERS.as_ref().is_some_and(|m| !m.is_match(data))
}

/// Reads a message, says what is in it, and what the rules decide.
/// Implemented by the binary over the inspect and policy stages; CPU-bound
/// and synchronous, so it runs on blocking threads for big messages.
pub trait Review: Send + Sync {
    fn review(&self, id: &MessageId, envelope: &Envelope, data: &[u8], is_dsn: bool) -> (Facts, Ruling);

    /// The hook after each review: the message's bytes and everything
    /// inspection found (texts included), for a stage after the queue (the
    /// archive) that would otherwise read and inspect the message again.
    fn reviewed(&self, _id: &MessageId, _data: &Arc<Vec<u8>>, _facts: Facts) {}
}

/// Whether `[notify] on_hold` tells the sender of this hold: always, never,
/// or (`rules`) only when a rule fired besides the plain hold of mail to
/// outside (the built-in `external-hold`).
fn tells_sender(config: &Config, ruling: &Ruling) -> bool {
    match config.notify.on_hold {
        tomare_config::OnHold::Always => true,
        tomare_config::OnHold::Never => false,
        tomare_config::OnHold::Rules => {
            ruling.verdict.as_ref().is_some_and(|v| v.rules.iter().any(|r| r.name != "external-hold"))
        }
    }
}

/// The rules' decision, in the queue's terms.
#[derive(Debug, Clone)]
pub struct Ruling {
    /// `Released`, `Held`, `AwaitingApproval` or `Rejected`.
    pub state: State,
    pub hold_ms: i64,
    pub approval: Option<ApprovalRequest>,
    /// The reasons of the rules that fired, in one line.
    pub reasons: String,
    /// The whole verdict, stored with the message; None without rules.
    pub verdict: Option<Verdict>,
    /// The message as it is to be delivered, when the rules rewrote it.
    pub rewritten: Option<Vec<u8>>,
    /// Protected copies for the recipients outside (a download link or a
    /// zip instead of the files).
    pub copies: Vec<(crate::spool::Copy, Vec<u8>)>,
    /// The link's and the passwords' rows, stored with the decision.
    pub protection: Option<tomare_store::NewProtection>,
    /// Envelope recipients the rules added (a supervisor in Bcc).
    pub add_recipients: Vec<Address>,
    /// Who is to be told (`notify` actions): addresses.
    pub notify: Vec<String>,
    /// Who is asked to approve (the approver, or a group's members).
    pub ask: Vec<String>,
}

impl Ruling {
    /// What happens without any rule engine: `[hold] external` when any
    /// recipient is outside the org, else `internal`; none for our own
    /// notices.
    pub fn default_hold(config: &Config, envelope: &Envelope, is_dsn: bool) -> Ruling {
        let hold_ms = hold_ms(config, envelope, is_dsn);
        Ruling {
            state: if hold_ms > 0 { State::Held } else { State::Released },
            hold_ms,
            approval: None,
            reasons: String::new(),
            verdict: None,
            rewritten: None,
            copies: Vec::new(),
            protection: None,
            add_recipients: Vec::new(),
            notify: Vec::new(),
            ask: Vec::new(),
        }
    }
}

/// A committed message waiting for inspection.
pub struct ForReview {
    pub id: MessageId,
    pub envelope: Envelope,
    /// The bytes when they were kept in memory; `None` for a message
    /// streamed to the spool (or found after a restart): read when its turn
    /// comes.
    pub data: Option<Arc<Vec<u8>>>,
    pub received_at: i64,
    pub is_dsn: bool,
}

fn hold_ms(config: &Config, envelope: &Envelope, is_dsn: bool) -> i64 {
    if is_dsn {
        return 0;
    }
    let internal = &config.org.internal_domains;
    let external = envelope.has_external(internal);
    let hold = if external { config.hold.external } else { config.hold.internal };
    hold.0.as_millis() as i64
}

/// One line for the event log.
pub fn summary(facts: &Facts) -> String {
    let mut parts = vec![format!("{} attachment(s)", facts.attachments.len())];
    if facts.detections.is_empty() {
        parts.push("no detections".into());
    } else {
        let mut names: Vec<String> = facts.detections.iter().map(|d| d.detector.clone()).collect();
        names.dedup();
        parts.push(format!("detections: {}", names.join(", ")));
    }
    if facts.attachments.iter().any(|a| a.encrypted) {
        parts.push("password-protected content".into());
    }
    parts.push(if facts.complete {
        "complete".into()
    } else {
        format!("INCOMPLETE: {}", facts.incomplete_reasons.join("; "))
    });
    parts.join(", ")
}

pub(crate) struct Reviewer {
    pub config: Config,
    pub spool: Spool,
    pub store: Arc<dyn Store>,
    pub review: Arc<dyn Review>,
    pub metrics: Arc<Metrics>,
    /// Shared with delivery and the archive: big messages take turns.
    pub memory: crate::MessageMemory,
}

/// Runs until `rx` closes (every Acceptor dropped), then lets in-flight
/// inspections finish.
pub(crate) async fn run(reviewer: Arc<Reviewer>, mut rx: mpsc::Receiver<ForReview>, released: Arc<Notify>) {
    let (decided_tx, decided_rx) = mpsc::channel(1024);
    let decider = tokio::spawn(decider(reviewer.clone(), decided_rx, released));
    let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let slots = Arc::new(Semaphore::new(parallel));
    // Inspection stops itself at its time budget; this is the backstop for
    // a reader stuck where it cannot look at the clock.
    let limit = reviewer.config.inspect.time_budget.0 + Duration::from_secs(10);
    while let Some(item) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (reviewer, decided_tx) = (reviewer.clone(), decided_tx.clone());
        tokio::spawn(async move {
            let (data, mut big_permit) = match item.data.clone() {
                Some(data) => (data, None),
                None => {
                    let (spool, id) = (reviewer.spool.clone(), item.id.clone());
                    // Its bytes, parsed parts and text are what a burst of big
                    // mail would otherwise pile up in memory at once.
                    let size = std::fs::metadata(spool.path(&id)).map(|m| m.len()).unwrap_or(0);
                    let permit = Some(reviewer.memory.hold(size).await);
                    match tokio::task::spawn_blocking(move || spool.read(&id)).await {
                        Ok(Ok(data)) => (Arc::new(data), permit),
                        _ => {
                            // Still `received`: reviewed again after a restart.
                            tracing::error!(id = %item.id, "could not read the message for review");
                            return;
                        }
                    }
                }
            };
            // Ok: what the reviewer made of it; Err: the review failed and
            // the message waits for a person (nothing inspected to hand on).
            let result = if inline(&data) {
                // A small mail without a PDF takes about a tenth of a
                // millisecond: cheaper here than a trip to a blocking thread.
                let r = reviewer.review.clone();
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    r.review(&item.id, &item.envelope, &data, item.is_dsn)
                }))
                .map_err(|_| failed(&reviewer.config, &item, "the inspector failed"))
            } else {
                let (review, data, envelope, is_dsn, id) =
                    (reviewer.review.clone(), data.clone(), item.envelope.clone(), item.is_dsn, item.id.clone());
                // The budget goes with the job: past the time limit it may
                // still be reading, and still holds the bytes.
                let held = big_permit.take();
                let job = tokio::task::spawn_blocking(move || {
                    let result = review.review(&id, &envelope, &data, is_dsn);
                    drop(held);
                    result
                });
                match tokio::time::timeout(limit, job).await {
                    Ok(Ok(result)) => Ok(result),
                    Ok(Err(_)) => Err(failed(&reviewer.config, &item, "the inspector failed")),
                    Err(_) => Err(failed(
                        &reviewer.config,
                        &item,
                        &format!("inspection did not finish within {}s", limit.as_secs()),
                    )),
                }
            };
            let inspected = result.is_ok();
            let (mut facts, ruling) = result.unwrap_or_else(|f| f);
            // What the queue stores; the full Facts and the bytes go to the
            // archive's hand-off (before the decision, so the archiver
            // finds them when it takes the message) — only when inspection
            // really ran: otherwise the archiver inspects for itself.
            let (stored, line, complete) = (facts.without_texts(), summary(&facts), facts.complete);
            if inspected {
                reviewer.review.reviewed(&item.id, &data, facts);
            }
            drop(permit);
            drop(data);
            drop(big_permit);
            let m = &reviewer.metrics;
            m.inspected.fetch_add(1, Relaxed);
            if !complete {
                m.inspect_incomplete.fetch_add(1, Relaxed);
            }
            let now = now_ms();
            let release_at = match ruling.state {
                State::AwaitingApproval => {
                    now + ruling.approval.as_ref().map(|a| a.timeout_ms).unwrap_or(4 * 3600 * 1000)
                }
                _ => (item.received_at + ruling.hold_ms).max(now),
            };
            let state = match ruling.state {
                State::Held | State::Released if release_at > now => State::Held,
                State::Held | State::Released => State::Released,
                other => other,
            };
            if ruling.rewritten.is_some() || !ruling.copies.is_empty() {
                let (spool, id) = (reviewer.spool.clone(), item.id.clone());
                let (plain, copies) = (ruling.rewritten.clone(), ruling.copies.clone());
                let written = tokio::task::spawn_blocking(move || {
                    if let Some(bytes) = &plain {
                        spool.write_out(&id, bytes)?;
                    }
                    for (copy, bytes) in &copies {
                        spool.write_copy(&id, *copy, bytes)?;
                    }
                    std::io::Result::Ok(())
                })
                .await;
                if !matches!(written, Ok(Ok(()))) {
                    // Still `received`: reviewed again after a restart.
                    tracing::error!(id = %item.id, "could not write the rewritten message");
                    return;
                }
            }
            // Who hears about it: an approver is asked; `notify` recipients
            // are told it is held or waits. (A rejection tells the sender anyway.)
            let mut notify: Vec<(NoticeKind, String)> = Vec::new();
            if state == State::AwaitingApproval {
                for who in &ruling.ask {
                    notify.push((NoticeKind::ApprovalRequest, who.clone()));
                }
            }
            if matches!(state, State::Held | State::AwaitingApproval) {
                let kind = if state == State::Held { NoticeKind::Held } else { NoticeKind::AwaitingApproval };
                for who in &ruling.notify {
                    notify.push((kind, who.clone()));
                }
                // The sender hears of the hold ([notify] on_hold), with the
                // links to stop it, unless a rule told them already.
                let sender = item.envelope.mail_from.to_string();
                let told = ruling.notify.iter().any(|w| w.eq_ignore_ascii_case(&sender));
                if !item.is_dsn && !sender.is_empty() && !told && tells_sender(&reviewer.config, &ruling) {
                    notify.push((kind, sender));
                }
            }
            let decision = Decision {
                id: item.id,
                facts: stored,
                summary: line,
                verdict: ruling.verdict,
                reasons: ruling.reasons,
                state,
                release_at,
                approval: ruling.approval,
                add_recipients: ruling.add_recipients,
                rewritten: ruling.rewritten.is_some() || !ruling.copies.is_empty(),
                protection: ruling.protection,
                notify,
            };
            let _ = decided_tx.send(decision).await;
        });
    }
    drop(decided_tx);
    let _ = decider.await;
}

/// How long an approval forced by a failed review waits before it is
/// rejected (as the built-in pack's approvals).
const FAILED_APPROVAL_MS: i64 = 4 * 3600 * 1000;

/// When the reviewer itself fails (a panic, or a reader stuck past the
/// time limit), nothing was read: mail to outside waits for a person (the
/// org's admins; a deadline can only reject it), as the rules' fail-closed
/// floor would have it. Mail only inside is held an hour.
fn failed(config: &Config, item: &ForReview, reason: &str) -> (Facts, Ruling) {
    let facts = Facts { complete: false, incomplete_reasons: vec![reason.to_string()], ..Facts::default() };
    let mut ruling = Ruling::default_hold(config, &item.envelope, item.is_dsn);
    if item.is_dsn {
        return (facts, ruling);
    }
    ruling.reasons = format!("inspection-incomplete: {reason}");
    if item.envelope.has_external(&config.org.internal_domains) {
        ruling.state = State::AwaitingApproval;
        ruling.approval = Some(ApprovalRequest {
            approver: String::new(),
            deputy: None,
            on_timeout: OnTimeout::Reject,
            timeout_ms: FAILED_APPROVAL_MS,
        });
        ruling.ask = config.org.admins.clone();
    } else {
        ruling.hold_ms = ruling.hold_ms.max(3600 * 1000);
        ruling.state = State::Held;
    }
    (facts, ruling)
}

async fn decider(reviewer: Arc<Reviewer>, mut rx: mpsc::Receiver<Decision>, released: Arc<Notify>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        if batch.len() < 32 {
            // Under load decisions trickle in: gather a few into one
            // transaction.
            tokio::time::sleep(Duration::from_millis(2)).await;
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
        }
        match reviewer.store.decide(&batch).await {
            Ok(()) => {
                let held = batch.iter().filter(|d| d.state == State::Held).count();
                reviewer.metrics.held.fetch_add(held as u64, Relaxed);
                if batch.iter().any(|d| d.state == State::Released) {
                    released.notify_one();
                }
            }
            // Still `received`: inspected again after a restart.
            Err(e) => tracing::error!(error = %e, messages = batch.len(), "recording inspection results failed"),
        }
        batch.clear();
    }
}

/// Messages accepted but not yet decided when the server last stopped.
pub(crate) async fn pending(store: &dyn Store, spool: &Spool) -> Vec<ForReview> {
    let rows = match store.list(Some(State::Received), i64::MAX).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "listing messages awaiting inspection failed");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.into_iter().rev() {
        if !spool.path(&row.id).exists() {
            tracing::error!(id = %row.id, "spool file of a received message is missing");
            continue;
        }
        out.push(ForReview {
            envelope: Envelope {
                mail_from: row.mail_from.clone(),
                rcpt_to: row.recipients.iter().map(|r| r.address.clone()).collect(),
                helo: row.helo.clone(),
                client_ip: row.client_ip.clone(),
                auth_user: row.auth_user.clone(),
            },
            id: row.id,
            data: None,
            received_at: row.received_at,
            is_dsn: row.is_dsn,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(rcpt: &str) -> ForReview {
        ForReview {
            id: MessageId::generate(1),
            envelope: Envelope {
                mail_from: "taro@example.com".parse().unwrap(),
                rcpt_to: vec![rcpt.parse().unwrap()],
                helo: "h".into(),
                client_ip: "127.0.0.1".into(),
                auth_user: None,
            },
            data: None,
            received_at: 0,
            is_dsn: false,
        }
    }

    #[test]
    fn mail_that_may_hold_a_picture_is_not_inspected_on_the_async_threads() {
        assert!(inline(b"Subject: hi\r\n\r\nplain text\r\n"));
        for marker in ["iVBORw0KGgo", "UEsDBBQ", "<img src=\"data:image/png;base64,", "PGltZyBzcmM9ImRhdGE6aW1hZ2Uv"] {
            assert!(!inline(format!("Subject: x\r\n\r\n{marker}\r\n").as_bytes()), "{marker}");
        }
    }

    #[test]
    fn a_failed_review_never_lets_mail_out_on_a_timer() {
        let mut config = Config::default();
        config.org.admins = vec!["admin@example.com".into()];
        let (facts, r) = failed(&config, &item("a@customer.test"), "the inspector failed");
        assert!(!facts.complete);
        assert_eq!(r.state, State::AwaitingApproval);
        assert_eq!(r.approval.as_ref().map(|a| a.on_timeout.as_str()), Some("reject"));
        assert_eq!(r.ask, ["admin@example.com"]);
        let (_, r) = failed(&config, &item("b@example.com"), "the inspector failed");
        assert_eq!((r.state, r.hold_ms), (State::Held, 3600 * 1000), "inside only: held, not asked");
    }
}
