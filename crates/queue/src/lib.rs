//! The durable queue: accept (spool + record, then the 250), hold timers,
//! delivery dispatch, retries with backoff, and DSNs on permanent failure.
//!
//! # Layout
//! - [`spool`]: raw messages as files, fsynced before anything is promised.
//! - [`accept`]: the [`Acceptor`] batches records of concurrent sessions into
//!   one transaction (group commit) and answers each once it is durable.
//! - [`review`]: inspects each committed message and applies the rules
//!   (through the [`Review`] trait), stores Facts and verdict, and holds,
//!   releases, asks for approval or rejects.
//! - [`scheduler`]: releases held mail on time, claims due messages, hands
//!   them to a [`Transport`], records the outcome and schedules retries.
//! - [`dsn`]: the multipart/report sent to the sender when delivery fails.
//!
//! The queue never speaks SMTP itself: delivery goes through the
//! [`Transport`] trait, which the binary wires to the relay stage.

pub mod accept;
pub mod dsn;
mod headers;
pub mod memory;
pub mod notice;
pub mod pipeline;
pub mod review;
pub mod scheduler;
pub mod spool;

pub use accept::{AcceptError, Acceptor, Incoming};
pub use headers::Summary;
pub use memory::MessageMemory;
pub use pipeline::{Pipeline, PipelineBuilder, Stage, Stopped};
pub use review::{ForReview, Review, Ruling};
pub use scheduler::{Queue, Transport};
pub use spool::{Copy, Spool, copy_for};

/// Queues a mail of tomare's own (null sender, no rules), as notices are:
/// its queue id, or why not. Made by the server over its acceptor; the web
/// (invitations, codes) and the password mails use it.
pub type MailFn = std::sync::Arc<
    dyn Fn(
            tomare_model::Address,
            Vec<u8>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>
        + Send
        + Sync,
>;
