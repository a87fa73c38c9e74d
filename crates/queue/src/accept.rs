//! Durable accept with group commit.
//!
//! Each session writes and fdatasyncs its own spool file (in parallel with
//! the others), then hands the record to one committer task. The committer
//! takes every record waiting, fsyncs the spool directory once, commits them
//! in one transaction and only then lets each session answer 250. Under load
//! one fsync of the directory and one of the database cover many messages.

use crate::{Spool, Summary};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Notify, mpsc, oneshot};
use tomare_config::Config;
use tomare_model::{Envelope, MessageId, Metrics, OrgId, State, domain_of, is_internal_domain, now_ms};
use tomare_store::{NewMessage, Store};

/// Records taken into one transaction at most.
const MAX_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("could not write the message to the spool: {0}")]
    Spool(#[from] std::io::Error),
    #[error("could not record the message: {0}")]
    Store(#[from] tomare_store::StoreError),
    #[error("the queue is shutting down")]
    ShuttingDown,
}

type Reply = oneshot::Sender<Result<(), Arc<AcceptError>>>;

#[derive(Clone)]
pub struct Acceptor {
    inner: Arc<Inner>,
    tx: mpsc::Sender<(NewMessage, Reply)>,
}

struct Inner {
    spool: Spool,
    org_id: OrgId,
    internal_domains: Vec<String>,
    hold_external_ms: i64,
    hold_internal_ms: i64,
    metrics: Arc<Metrics>,
}

impl Acceptor {
    /// Starts the committer task. `released` is notified whenever a message
    /// is committed ready for delivery.
    pub fn start(
        config: &Config,
        org_id: OrgId,
        spool: Spool,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        released: Arc<Notify>,
    ) -> (Acceptor, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let inner = Arc::new(Inner {
            spool: spool.clone(),
            org_id,
            internal_domains: config.org.internal_domains.clone(),
            hold_external_ms: config.hold.external.0.as_millis() as i64,
            hold_internal_ms: config.hold.internal.0.as_millis() as i64,
            metrics,
        });
        let task = tokio::spawn(committer(rx, spool, store, released));
        (Acceptor { inner, tx }, task)
    }

    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// How long mail to these recipients is held before delivery.
    pub fn hold_ms(&self, rcpt_to: &[String]) -> i64 {
        let external = rcpt_to.iter().any(|r| !is_internal_domain(&domain_of(r), &self.inner.internal_domains));
        if external { self.inner.hold_external_ms } else { self.inner.hold_internal_ms }
    }

    /// Makes the message durable. When this returns `Ok`, the message is
    /// fsynced and committed: the caller may answer 250.
    pub async fn accept(&self, envelope: Envelope, data: Vec<u8>, is_dsn: bool) -> Result<MessageId, Arc<AcceptError>> {
        let started = Instant::now();
        let now = now_ms();
        let id = MessageId::generate(now);
        let summary = Summary::of(&data);
        let size = data.len() as u64;
        let hold = if is_dsn { 0 } else { self.hold_ms(&envelope.rcpt_to) };
        let spool = self.inner.spool.clone();
        let file_id = id.clone();
        tokio::task::spawn_blocking(move || spool.write_durable(&file_id, &data))
            .await
            .map_err(|e| Arc::new(AcceptError::Spool(std::io::Error::other(e))))?
            .map_err(|e| Arc::new(AcceptError::Spool(e)))?;
        let record = NewMessage {
            id: id.clone(),
            org_id: self.inner.org_id,
            envelope,
            subject: summary.subject,
            header_from: summary.from,
            message_id_header: summary.message_id,
            size,
            received_at: now,
            state: if hold > 0 { State::Held } else { State::Released },
            release_at: now + hold,
            is_dsn,
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let result = match self.tx.send((record, reply_tx)).await {
            Ok(()) => reply_rx.await.unwrap_or_else(|_| Err(Arc::new(AcceptError::ShuttingDown))),
            Err(_) => Err(Arc::new(AcceptError::ShuttingDown)),
        };
        if let Err(e) = result {
            // Never promised: the file must not be delivered after a restart.
            self.inner.spool.remove(&id);
            return Err(e);
        }
        let m = &self.inner.metrics;
        m.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if hold > 0 {
            m.held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        m.observe_accept(started.elapsed().as_secs_f64());
        Ok(id)
    }
}

/// Ends when every [`Acceptor`] clone is dropped and the channel is drained.
async fn committer(
    mut rx: mpsc::Receiver<(NewMessage, Reply)>,
    spool: Spool,
    store: Arc<dyn Store>,
    released: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let records: Vec<NewMessage> = batch.iter().map(|(m, _)| m.clone()).collect();
        let dir_spool = spool.clone();
        let synced = tokio::task::spawn_blocking(move || dir_spool.sync_dir())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let result = match synced {
            Ok(()) => store.insert_messages(&records).await.map_err(AcceptError::Store),
            Err(e) => Err(AcceptError::Spool(e)),
        };
        match result {
            Ok(()) => {
                if records.iter().any(|m| m.state == State::Released) {
                    released.notify_one();
                }
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, messages = batch.len(), "accept commit failed");
                let e = Arc::new(e);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
