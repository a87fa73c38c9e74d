//! The queue's stages started as one: accept (the committer), review, the
//! hold loop, the dispatcher and the finisher, and the stages after the
//! queue (the archive) that the binary attaches. The binary builds one
//! [`Pipeline`] with what it plugs in (the [`Review`], the [`Transport`],
//! any [`Stage`]), hands its [`Acceptor`] to the SMTP server, and stops it
//! with [`Pipeline::shutdown`]: the queue first, then the stages after it,
//! so what the last deliveries finish is still archived.

use crate::{Acceptor, MessageMemory, Queue, Review, Spool, Transport};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tomare_config::Config;
use tomare_model::{ActionLinks, Metrics, OrgId};
use tomare_store::Store;

/// A stage after the queue (the archiver), running on its own; stopped
/// after the queue's stages are.
pub trait Stage: Send {
    /// Asks it to stop and resolves once it has.
    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// What the pipeline needs; [`PipelineBuilder::start`] starts it.
pub struct PipelineBuilder {
    config: Config,
    store: Arc<dyn Store>,
    spool: Spool,
    review: Arc<dyn Review>,
    transport: Arc<dyn Transport>,
    org: OrgId,
    reporting_mta: String,
    metrics: Arc<Metrics>,
    memory: MessageMemory,
    links: Option<Arc<dyn ActionLinks>>,
    after: Vec<Box<dyn Stage>>,
}

impl PipelineBuilder {
    /// A stage after the queue, already running (it learns of messages
    /// through the review hook and the store); stopped last.
    pub fn then(mut self, stage: Box<dyn Stage>) -> Self {
        self.after.push(stage);
        self
    }

    /// The org new messages belong to (default 1).
    pub fn org(mut self, org: OrgId) -> Self {
        self.org = org;
        self
    }

    /// The name in DSNs' `Reporting-MTA` (default `localhost`).
    pub fn reporting_mta(mut self, name: impl Into<String>) -> Self {
        self.reporting_mta = name.into();
        self
    }

    /// Counters shared with the SMTP server and `/metrics`.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The budget big messages take turns on (shared with the archive).
    pub fn memory(mut self, memory: MessageMemory) -> Self {
        self.memory = memory;
        self
    }

    /// Signs the one-click links notices carry (none without).
    pub fn links(mut self, links: Arc<dyn ActionLinks>) -> Self {
        self.links = Some(links);
        self
    }

    pub fn start(self) -> Pipeline {
        let (acceptor, review_rx, committer) =
            Acceptor::start(self.org, self.spool, self.store.clone(), self.metrics.clone());
        let (stop, stopped) = watch::channel(false);
        let queue = Queue::start(
            &self.config,
            self.reporting_mta,
            self.store,
            acceptor.clone(),
            review_rx,
            self.review,
            self.transport,
            self.metrics,
            self.memory,
            Arc::new(Notify::new()),
            self.links,
            stopped,
        );
        Pipeline { acceptor, committer, queue, stop, after: self.after }
    }
}

/// The running queue stages.
pub struct Pipeline {
    acceptor: Acceptor,
    committer: JoinHandle<()>,
    queue: Queue,
    stop: watch::Sender<bool>,
    after: Vec<Box<dyn Stage>>,
}

/// How a [`Pipeline::shutdown`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Deliveries or reviews were still running when the grace time ended:
    /// they resume after the next start (nothing accepted is lost).
    pub cut_short: bool,
    /// The committer had not drained when the grace time ended. After a
    /// clean stop of the other stages this means commits of accepted
    /// messages were still waiting (their senders got no 250 and send
    /// again); when `cut_short`, the stages still running hold it open.
    pub commits_left: bool,
}

impl Pipeline {
    /// Starts building a pipeline over `store` and `spool`, reviewing with
    /// `review` and delivering through `transport`.
    pub fn builder(
        config: &Config,
        store: Arc<dyn Store>,
        spool: Spool,
        review: Arc<dyn Review>,
        transport: Arc<dyn Transport>,
    ) -> PipelineBuilder {
        PipelineBuilder {
            config: config.clone(),
            store,
            spool,
            review,
            transport,
            org: 1,
            reporting_mta: "localhost".into(),
            metrics: Arc::default(),
            memory: MessageMemory::default(),
            links: None,
            after: Vec::new(),
        }
    }

    /// Where new messages go in (the SMTP server's sink wraps one).
    pub fn acceptor(&self) -> Acceptor {
        self.acceptor.clone()
    }

    /// Stops the stages once the SMTP server has stopped handing messages
    /// over: no new deliveries are claimed, the running ones get `grace`,
    /// the committer drains what is left, then the stages after the queue
    /// stop (each finishing what it has).
    pub async fn shutdown(self, grace: Duration) -> Stopped {
        let Pipeline { acceptor, committer, queue, stop, after } = self;
        // Review ends once every Acceptor is gone; this is the pipeline's.
        drop(acceptor);
        let _ = stop.send(true);
        let cut_short = !queue.join(grace).await;
        let commits_left = tokio::time::timeout(grace, committer).await.is_err();
        for stage in after {
            stage.stop().await;
        }
        Stopped { cut_short, commits_left }
    }
}
