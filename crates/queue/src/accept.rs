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
    pub(crate) fn start(
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
        let pending = Pending { id, envelope, summary, size, received_at: now, is_dsn, started };
        self.commit(pending, Some(data)).await
    }

    /// Starts a message that arrives in chunks too big to keep in memory:
    /// each chunk goes straight to its spool file.
    pub async fn begin(&self) -> Result<Incoming, Arc<AcceptError>> {
        let now = now_ms();
        let id = MessageId::generate(now);
        let (spool, file_id) = (self.inner.spool.clone(), id.clone());
        let file = tokio::task::spawn_blocking(move || spool.create(&file_id))
            .await
            .map_err(|e| Arc::new(AcceptError::Spool(std::io::Error::other(e))))?
            .map_err(|e| Arc::new(AcceptError::Spool(e)))?;
        Ok(Incoming {
            acceptor: self.clone(),
            id,
            file: Some(file),
            head: Vec::new(),
            size: 0,
            received_at: now,
            finished: false,
        })
    }

    /// Records a spooled message (one transaction for everything waiting)
    /// and hands it to review.
    async fn commit(&self, p: Pending, data: Option<Arc<Vec<u8>>>) -> Result<MessageId, Arc<AcceptError>> {
        let record = NewMessage {
            id: p.id.clone(),
            org_id: self.inner.org_id,
            envelope: p.envelope.clone(),
            subject: p.summary.subject,
            header_from: p.summary.from,
            message_id_header: p.summary.message_id,
            size: p.size,
            received_at: p.received_at,
            state: State::Received,
            release_at: None,
            is_dsn: p.is_dsn,
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let result = match self.tx.send((record, reply_tx)).await {
            Ok(()) => reply_rx.await.unwrap_or_else(|_| Err(Arc::new(AcceptError::ShuttingDown))),
            Err(_) => Err(Arc::new(AcceptError::ShuttingDown)),
        };
        if let Err(e) = result {
            // Never promised: the file must not be delivered after a restart.
            self.inner.spool.remove(&p.id);
            return Err(e);
        }
        let m = &self.inner.metrics;
        m.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        m.observe_accept(p.started.elapsed().as_secs_f64());
        let item =
            ForReview { id: p.id.clone(), envelope: p.envelope, data, received_at: p.received_at, is_dsn: p.is_dsn };
        self.review(item).await;
        Ok(p.id)
    }
}

/// A spooled message on its way to its record.
struct Pending {
    id: MessageId,
    envelope: Envelope,
    summary: Summary,
    size: u64,
    received_at: i64,
    is_dsn: bool,
    started: Instant,
}

/// Bytes of a streamed message kept for its summary (Subject, From,
/// Message-ID): the header block, as far as it goes in this.
const HEAD: usize = 64 * 1024;

/// A message being written to the spool as it arrives. Dropped before
/// [`Incoming::finish`], its file is removed: its sender was never told 250.
pub struct Incoming {
    acceptor: Acceptor,
    id: MessageId,
    /// Lent to a blocking thread during each write.
    file: Option<std::fs::File>,
    head: Vec<u8>,
    size: u64,
    received_at: i64,
    finished: bool,
}

impl Incoming {
    pub async fn write(&mut self, chunk: Vec<u8>) -> Result<(), AcceptError> {
        if self.head.len() < HEAD {
            let n = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
        }
        self.size += chunk.len() as u64;
        let mut file = self.file.take().ok_or(AcceptError::Spool(std::io::Error::other("write after a failure")))?;
        let file = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            file.write_all(&chunk).map(|()| file)
        })
        .await
        .map_err(|e| AcceptError::Spool(std::io::Error::other(e)))??;
        self.file = Some(file);
        Ok(())
    }

    /// Syncs the file and records the message: `Ok` means 250.
    pub async fn finish(mut self, envelope: Envelope) -> Result<MessageId, Arc<AcceptError>> {
        let started = Instant::now();
        let file = self.file.take().ok_or(Arc::new(AcceptError::Spool(std::io::Error::other("write failed"))))?;
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| Arc::new(AcceptError::Spool(std::io::Error::other(e))))?
            .map_err(|e| Arc::new(AcceptError::Spool(e)))?;
        self.finished = true;
        let pending = Pending {
            id: self.id.clone(),
            envelope,
            summary: Summary::of(&self.head),
            size: self.size,
            received_at: self.received_at,
            is_dsn: false,
            started,
        };
        // Too big to keep: review reads it from the spool when its turn comes.
        self.acceptor.commit(pending, None).await
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.finished {
            // Unlinked, never recycled: a write lent to a blocking thread
            // may still hold the file, and must not land in another message.
            self.acceptor.inner.spool.discard(&self.id);
        }
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
