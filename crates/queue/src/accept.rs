//! Durable accept with group commit.
//!
//! Each session writes and fdatasyncs its own spool file (in parallel with
//! the others), then hands the record to one committer task. The committer
//! takes every record waiting, fsyncs the spool directory once, commits them
//! in one transaction and only then lets each session answer 250. Under load
//! one fsync of the directory and one of the database cover many messages.
//! A committed message goes on to inspection (`review`) in state `received`.

use crate::review::ForReview;
use crate::{Spool, Summary};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tomare_model::{Envelope, MessageId, Metrics, OrgId, State, now_ms};
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
    review: mpsc::Sender<ForReview>,
}

struct Inner {
    spool: Spool,
    org_id: OrgId,
    metrics: Arc<Metrics>,
}

impl Acceptor {
    /// Starts the committer task. Committed messages are handed to the
    /// returned receiver, which `Queue::start` takes for inspection.
    pub fn start(
        org_id: OrgId,
        spool: Spool,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> (Acceptor, mpsc::Receiver<ForReview>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let (review, review_rx) = mpsc::channel(1024);
        let inner = Arc::new(Inner { spool: spool.clone(), org_id, metrics });
        let task = tokio::spawn(committer(rx, spool, store));
        (Acceptor { inner, tx, review }, review_rx, task)
    }

    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// Hands a committed message to inspection (also used for messages
    /// found `received` after a restart).
    pub async fn review(&self, item: ForReview) {
        if self.review.send(item).await.is_err() {
            tracing::warn!("inspection has stopped; the message is inspected after restart");
        }
    }

    /// Makes the message durable. When this returns `Ok`, the message is
    /// fsynced and committed: the caller may answer 250.
    pub async fn accept(&self, envelope: Envelope, data: Vec<u8>, is_dsn: bool) -> Result<MessageId, Arc<AcceptError>> {
        let started = Instant::now();
        let now = now_ms();
        let id = MessageId::generate(now);
        let summary = Summary::of(&data);
        let size = data.len() as u64;
        let data = Arc::new(data);
        let spool = self.inner.spool.clone();
        let file_id = id.clone();
        let file_data = data.clone();
        tokio::task::spawn_blocking(move || spool.write_durable(&file_id, &file_data))
            .await
            .map_err(|e| Arc::new(AcceptError::Spool(std::io::Error::other(e))))?
            .map_err(|e| Arc::new(AcceptError::Spool(e)))?;
        let record = NewMessage {
            id: id.clone(),
            org_id: self.inner.org_id,
            envelope: envelope.clone(),
            subject: summary.subject,
            header_from: summary.from,
            message_id_header: summary.message_id,
            size,
            received_at: now,
            state: State::Received,
            release_at: None,
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
        m.observe_accept(started.elapsed().as_secs_f64());
        self.review(ForReview { id: id.clone(), envelope, data, received_at: now, is_dsn }).await;
        Ok(id)
    }
}

/// Ends when every [`Acceptor`] clone is dropped and the channel is drained.
async fn committer(mut rx: mpsc::Receiver<(NewMessage, Reply)>, spool: Spool, store: Arc<dyn Store>) {
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
