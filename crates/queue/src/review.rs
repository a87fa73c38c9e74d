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
use tomare_model::{Envelope, Facts, MessageId, Metrics, State, domain_of, is_internal_domain, now_ms};
use tomare_store::{Decision, Store};

/// Messages up to this size are inspected on the async thread: text mail
/// with small attachments. Anything bigger goes to a blocking thread with a
/// time limit.
const INLINE_INSPECT: usize = 64 * 1024;

/// Whether to inspect on the async thread. PDFs always go to a blocking
/// thread under the time limit: their parser is the one most likely to meet
/// a file built to make it spin. (`JVBERi` is `%PDF` in base64.)
fn inline(data: &[u8]) -> bool {
    data.len() <= INLINE_INSPECT && !data.windows(6).any(|w| w == b"JVBERi" || w.starts_with(b"%PDF"))
}

/// Reads a message and says what is in it. Implemented by the inspect stage;
/// CPU-bound and synchronous, so it runs on blocking threads.
pub trait Inspect: Send + Sync {
    fn inspect(&self, data: &[u8]) -> Facts;
}

/// A committed message waiting for inspection.
pub struct ForReview {
    pub id: MessageId,
    pub envelope: Envelope,
    pub data: Arc<Vec<u8>>,
    pub received_at: i64,
    pub is_dsn: bool,
}

/// The hold for a message, until the rule engine decides it: `[hold]
/// external` when any recipient is outside the org, else `internal`; none
/// for our own DSNs.
pub fn hold_ms(config: &Config, envelope: &Envelope, is_dsn: bool) -> i64 {
    if is_dsn {
        return 0;
    }
    let internal = &config.org.internal_domains;
    let external = envelope.rcpt_to.iter().any(|r| !is_internal_domain(&domain_of(r), internal));
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
    pub store: Arc<dyn Store>,
    pub inspect: Arc<dyn Inspect>,
    pub metrics: Arc<Metrics>,
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
            let facts = if inline(&item.data) {
                // A small mail without a PDF takes about a tenth of a
                // millisecond: cheaper here than a trip to a blocking thread.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reviewer.inspect.inspect(&item.data)))
                    .unwrap_or_else(|_| incomplete("the inspector failed"))
            } else {
                let inspect = reviewer.inspect.clone();
                let data = item.data.clone();
                let job = tokio::task::spawn_blocking(move || inspect.inspect(&data));
                match tokio::time::timeout(limit, job).await {
                    Ok(Ok(facts)) => facts,
                    Ok(Err(_)) => incomplete("the inspector failed"),
                    Err(_) => incomplete(&format!("inspection did not finish within {}s", limit.as_secs())),
                }
            };
            drop(permit);
            let m = &reviewer.metrics;
            m.inspected.fetch_add(1, Relaxed);
            if !facts.complete {
                m.inspect_incomplete.fetch_add(1, Relaxed);
            }
            let hold = hold_ms(&reviewer.config, &item.envelope, item.is_dsn);
            let now = now_ms();
            let release_at = (item.received_at + hold).max(now);
            let decision = Decision {
                id: item.id,
                facts: stored_json(&facts),
                summary: summary(&facts),
                state: if release_at > now { State::Held } else { State::Released },
                release_at,
            };
            let _ = decided_tx.send(decision).await;
        });
    }
    drop(decided_tx);
    let _ = decider.await;
}

/// Facts as stored with the message: everything but the extracted texts
/// (the archive keeps and indexes text; here it would only double the
/// database's writes). Their lengths stay, as `body_chars` / `text_chars`.
fn stored_json(facts: &Facts) -> String {
    let mut slim = facts.clone();
    let body_chars = std::mem::take(&mut slim.body_text).chars().count();
    let mut value = serde_json::to_value(&slim).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("body_text");
    }
    value["body_chars"] = body_chars.into();
    if let Some(list) = value["attachments"].as_array_mut() {
        for (a, original) in list.iter_mut().zip(&facts.attachments) {
            if let Some(obj) = a.as_object_mut() {
                obj.remove("text");
            }
            a["text_chars"] = original.text.chars().count().into();
        }
    }
    value.to_string()
}

fn incomplete(reason: &str) -> Facts {
    Facts { complete: false, incomplete_reasons: vec![reason.to_string()], ..Facts::default() }
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
                if held < batch.len() {
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
        match spool.read(&row.id) {
            Ok(data) => out.push(ForReview {
                envelope: Envelope {
                    mail_from: row.mail_from.clone(),
                    rcpt_to: row.recipients.iter().map(|r| r.address.clone()).collect(),
                    helo: row.helo.clone(),
                    client_ip: row.client_ip.clone(),
                    auth_user: row.auth_user.clone(),
                },
                id: row.id,
                data: Arc::new(data),
                received_at: row.received_at,
                is_dsn: row.is_dsn,
            }),
            Err(e) => tracing::error!(id = %row.id, error = %e, "spool file of a received message is missing"),
        }
    }
    out
}
