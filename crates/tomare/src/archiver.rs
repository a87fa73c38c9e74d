//! The server's archiver: after the 250, off the accept path, it archives
//! reviewed messages (their received copy) and finished ones (their final
//! record), then removes spool files nothing needs any more. Retention runs
//! hourly. A batch the index cannot take now (an import holds it) waits.
//!
//! It runs on a thread of its own with a small runtime, so its blocking
//! work (inspection, compression, indexing) never queues behind the
//! server's. It polls every 100 ms: a message's spool file stays until it
//! is archived, and a spool directory that grows slows every file the
//! accept path creates (measured; at a lower CPU priority the archiver fell
//! behind under load and throughput dropped further).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tomare_archive::{Archive, ops};
use tomare_model::{MessageId, Metrics, OrgId};
use tomare_queue::Spool;
use tomare_store::Store;

const BATCH: i64 = 200;
const IDLE: Duration = Duration::from_millis(100);
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

struct SpoolFiles(Spool);

impl ops::SpoolSource for SpoolFiles {
    fn original(&self, id: &MessageId) -> std::io::Result<Vec<u8>> {
        self.0.read(id)
    }

    fn original_path(&self, id: &MessageId) -> Option<std::path::PathBuf> {
        Some(self.0.path(id))
    }

    fn rewritten(&self, id: &MessageId) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.0.out_path(id)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub struct Archiver {
    pub archive: Arc<Archive>,
    pub store: Arc<dyn Store>,
    pub inspector: Arc<tomare_inspect::Inspector>,
    pub spool: Spool,
    pub org: OrgId,
    pub retention_days: u64,
    pub metrics: Arc<Metrics>,
    /// What review hands over (bytes, full Facts) for each message.
    pub handoffs: Arc<ops::Handoffs>,
    /// Shared with review and delivery: big messages take turns.
    pub memory: tomare_queue::MessageMemory,
}

/// The running archiver, as the pipeline's stage after the queue: stopped
/// once the queue has stopped, so what the last deliveries finished is
/// archived before the server exits.
pub struct Running {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl tomare_queue::Stage for Running {
    fn stop(self: Box<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _ = self.stop.send(true);
            let thread = self.thread;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        })
    }
}

/// Starts the archiver on its own thread with a small runtime.
pub fn spawn(archiver: Archiver) -> std::io::Result<Running> {
    let (stop, shutdown) = watch::channel(false);
    let thread = std::thread::Builder::new().name("archiver".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("archiver-work")
            .on_thread_start(lower_priority)
            .max_blocking_threads(2)
            .build()
        {
            Ok(rt) => rt.block_on(archiver.run(shutdown)),
            Err(e) => tracing::error!(error = %e, "the archiver could not start"),
        }
    })?;
    Ok(Running { stop, thread })
}

/// The archiver's blocking threads, where its CPU goes (building index
/// documents, compressing packs) and where the index writer starts its own
/// threads (which inherit it), run 10 nice levels below the process: when
/// accept, review and delivery want both cores they get them, and the
/// archive catches up in the gaps (bench/relay.sh). Not the archiver's
/// runtime thread: a SQLite connection it opens for the queue's pools gets
/// a worker thread that inherits its priority, and the relay uses those
/// too. Not the lowest level either: under a load that never lets up the
/// archiver still gets a share, so its backlog (spool files kept, shown as
/// `archive_lag`) does not grow without end.
const ARCHIVER_NICE: libc::c_int = 10;

fn lower_priority() {
    // SAFETY: get/setpriority(2) on the calling thread only (Linux: a
    // thread is a task; `who` 0 is the caller); errno is this thread's.
    unsafe {
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        let ok = !(now == -1 && *libc::__errno_location() != 0)
            && libc::setpriority(libc::PRIO_PROCESS, 0, (now + ARCHIVER_NICE).min(19)) == 0;
        if !ok {
            tracing::warn!(error = %std::io::Error::last_os_error(), "the archiver keeps the server's CPU priority");
        }
    }
}

impl Archiver {
    /// The spool files of messages now fully archived.
    async fn remove_spooled(&self, done: Vec<MessageId>) {
        if done.is_empty() {
            return;
        }
        let spool = self.spool.clone();
        let _ = tokio::task::spawn_blocking(move || done.iter().for_each(|id| spool.remove(id))).await;
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let source: Arc<dyn ops::SpoolSource> = Arc::new(SpoolFiles(self.spool.clone()));
        let mut last_retention: Option<Instant> = None;
        let mut state = ops::QueueState::default();
        // Since when the archive has been behind (None: caught up).
        let mut behind_since: Option<Instant> = None;
        // A pass holds this much of the memory budget; more for a message
        // bigger than a pass on its own.
        let mut pass_bytes = ops::BATCH_BYTES;
        loop {
            let lag = behind_since.map_or(0, |t| t.elapsed().as_secs() as i64);
            self.metrics.health.archive_lag.store(lag, Relaxed);
            if *shutdown.borrow() {
                // What this round archived is recorded; its spool files go.
                match ops::release(&self.archive, &self.store, &mut state).await {
                    Ok(done) => self.remove_spooled(done).await,
                    Err(e) => tracing::error!(error = %e, "archiving at shutdown failed; done again at start"),
                }
                return;
            }
            if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
                last_retention = Some(Instant::now());
                // Retention takes the index writer: this round goes first.
                match ops::release(&self.archive, &self.store, &mut state).await {
                    Ok(done) => self.remove_spooled(done).await,
                    Err(e) => tracing::error!(error = %e, "archiving failed; will retry"),
                }
                match ops::retention(&self.archive, &self.store, self.org, self.retention_days, tomare_model::now_ms())
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "archive retention"),
                    Err(e) => tracing::error!(error = %e, "archive retention failed"),
                }
            }
            let held = self.memory.hold(pass_bytes).await;
            let pass = ops::archive_queue(
                &self.archive,
                &self.store,
                &self.inspector,
                &source,
                Some(&self.handoffs),
                &mut state,
                BATCH,
                pass_bytes,
                ops::SETTLE_MS,
            )
            .await;
            drop(held);
            pass_bytes = match &pass {
                Ok(batch) if batch.wanted > 0 => batch.wanted,
                _ => ops::BATCH_BYTES,
            };
            let wait = match pass {
                Ok(batch) => {
                    self.metrics.archived.fetch_add(batch.records as u64, Relaxed);
                    self.metrics.archive_reinspected.fetch_add(batch.reinspected as u64, Relaxed);
                    self.remove_spooled(batch.done).await;
                    if batch.messages as i64 >= BATCH || batch.cut {
                        behind_since.get_or_insert_with(Instant::now);
                        Duration::ZERO
                    } else {
                        behind_since = None;
                        IDLE
                    }
                }
                Err(tomare_archive::ArchiveError::Index(tomare_archive::index::IndexError::Busy)) => {
                    Duration::from_secs(2)
                }
                Err(e) => {
                    tracing::error!(error = %e, "archiving failed; will retry");
                    behind_since.get_or_insert_with(Instant::now);
                    Duration::from_secs(5)
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}
