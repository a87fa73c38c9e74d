//! Inbound SMTP: the sessions through which Gmail, Microsoft 365 or any MTA
//! hands outgoing mail to tomare.
//!
//! Parsing is `smtp-proto` (pure, over bytes); [`session`] is the state
//! machine over any byte stream, so tests run whole sessions in memory;
//! [`Server`] owns the listener, the connection limit, STARTTLS and shutdown.
//!
//! The server must never be an open relay: a client relays only from an
//! allowed network or after AUTH over TLS, and only for senders in the org's
//! domains. It answers 250 to DATA only after the [`MessageSink`] says the
//! message is durable.

mod data;
mod session;

pub use data::normalize_line_endings;
pub use session::Session;

use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tomare_config::{Config, IpNet};
use tomare_model::{Envelope, Metrics};

/// Where accepted messages go. `Ok` carries the queue id and means the
/// message is durable; `Err` carries a reason for the log (the client is told
/// 451 and keeps its copy).
#[async_trait]
pub trait MessageSink: Send + Sync {
    async fn accept(&self, envelope: Envelope, data: Vec<u8>) -> Result<String, String>;
}

/// Checks SMTP AUTH credentials.
#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn verify(&self, user: &str, password: &str) -> bool;
}

/// What a session needs to know, derived once from the config.
pub struct SessionConfig {
    pub hostname: String,
    pub allowed_networks: Vec<IpNet>,
    pub internal_domains: Vec<String>,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_errors: usize,
    pub idle_timeout: Duration,
    pub tls: Option<TlsAcceptor>,
}

impl SessionConfig {
    pub fn new(config: &Config, hostname: String, tls: Option<TlsAcceptor>) -> Self {
        SessionConfig {
            hostname,
            allowed_networks: config.smtp.allowed_networks.clone(),
            internal_domains: config.org.internal_domains.clone(),
            max_message_size: config.smtp.max_message_size.0 as usize,
            max_recipients: config.smtp.max_recipients,
            max_errors: config.smtp.max_errors,
            idle_timeout: config.smtp.idle_timeout.0,
            tls,
        }
    }

    fn allowed_network(&self, ip: IpAddr) -> bool {
        self.allowed_networks.iter().any(|n| n.contains(ip))
    }
}

pub struct Server {
    pub config: Arc<SessionConfig>,
    pub sink: Arc<dyn MessageSink>,
    pub auth: Arc<dyn Authenticator>,
    pub metrics: Arc<Metrics>,
    pub max_connections: usize,
}

impl Server {
    /// Accepts connections until `shutdown` turns true, then waits up to
    /// `grace` for open sessions to finish their transactions.
    pub async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            let (mut stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            while sessions.try_join_next().is_some() {}
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                let _ = stream.write_all(b"421 4.7.0 Too many connections, try again later\r\n").await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let session = Session::new(
                self.config.clone(),
                self.sink.clone(),
                self.auth.clone(),
                self.metrics.clone(),
                peer.ip(),
                shutdown.clone(),
            );
            let metrics = self.metrics.clone();
            sessions.spawn(async move {
                metrics.smtp_sessions.fetch_add(1, Relaxed);
                if let Err(e) = session.run(stream).await {
                    tracing::debug!(peer = %peer, error = %e, "session ended with an error");
                }
                metrics.smtp_sessions.fetch_sub(1, Relaxed);
                drop(permit);
            });
        }
        drop(listener);
        if tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!(open = sessions.len(), "sessions still open after the grace period; closing them");
            sessions.abort_all();
        }
    }
}
