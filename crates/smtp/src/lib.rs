//! Inbound SMTP: the sessions through which Gmail, Microsoft 365 or any MTA
//! hands outgoing mail to tomare.
//!
//! Parsing is pure, over bytes: [`command`] turns a line into a command
//! (addresses as [`Address`], quoted local parts kept apart from the
//! domain), [`data`] reads the DATA stream (only `<CRLF>.<CRLF>` ends it).
//! [`session`] is the state machine over any byte stream, so tests run whole
//! sessions in memory; [`Server`] owns the listener, the connection slots,
//! STARTTLS and shutdown. (smtp-proto's parser was dropped: it unquoted local
//! parts and ended DATA on `.<CR><CR><LF>`.)
//!
//! The server must never be an open relay: a client relays only from an
//! allowed network or after AUTH over TLS, and only for senders in the org's
//! domains. It answers 250 to DATA only after the [`MessageSink`] says the
//! message is durable.

mod command;
mod data;
mod guard;
mod session;

pub use command::{Command, MailFrom, Refusal, parse as parse_command};
pub use data::DataReader;
pub use guard::{Attempt, AuthGuard, GuardLimits, client_key};
pub use session::Session;

use async_trait::async_trait;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tomare_config::{Config, IpNet};
use tomare_model::{Address, Envelope, Metrics, SendAs};

/// Where accepted messages go. `Ok` carries the queue id and means the
/// message is durable; `Err` carries a reason for the log (the client is told
/// 451 and keeps its copy).
#[async_trait]
pub trait MessageSink: Send + Sync {
    /// A whole message that fitted in memory.
    async fn accept(&self, envelope: Envelope, data: Vec<u8>) -> Result<String, String>;
    /// Starts a message too big to keep in memory: its bytes are written
    /// as they arrive, and it is accepted by [`Incoming::finish`].
    async fn begin(&self) -> Result<Box<dyn Incoming>, String>;
}

/// A message being stored while it arrives. Dropped without `finish`, it
/// is discarded (the client was never told 250).
#[async_trait]
pub trait Incoming: Send {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), String>;
    /// Makes the message durable; `Ok` carries the queue id.
    async fn finish(self: Box<Self>, envelope: Envelope) -> Result<String, String>;
}

/// Who logged in with SMTP AUTH, and which senders they may use.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    /// Their own address and what was granted to them (`--send-as`).
    pub send_as: Vec<SendAs>,
}

impl Login {
    /// Postfix's `reject_sender_login_mismatch`: an authenticated client
    /// sends only as itself or as what it was granted.
    pub fn may_send_as(&self, from: &Address) -> bool {
        self.send_as.iter().any(|a| a.permits(from))
    }
}

/// Checks SMTP AUTH credentials. Implementations take the same time for an
/// unknown account as for a wrong password.
#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn verify(&self, user: &str, password: &str) -> Option<Login>;
}

/// What a session needs to know, derived once from the config.
pub struct SessionConfig {
    pub hostname: String,
    pub allowed_networks: Vec<IpNet>,
    pub internal_domains: Vec<String>,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_errors: usize,
    /// Longest wait for the next whole command.
    pub idle_timeout: Duration,
    /// Longest session, whatever happens in it.
    pub session_timeout: Duration,
    /// Longest DATA phase.
    pub data_timeout: Duration,
    /// Bytes per second a DATA phase must average after `rate_grace`.
    pub min_data_rate: u64,
    /// How long a DATA phase runs before its rate is judged (30 s), so a
    /// slow start is not punished.
    pub rate_grace: Duration,
    /// A client outside `allowed_networks` must authenticate within this
    /// long of the greeting.
    pub preauth_timeout: Duration,
    pub tls: Option<TlsAcceptor>,
    /// Shared by every session: AUTH failure counts and lockouts.
    pub auth_guard: AuthGuard,
}

impl SessionConfig {
    pub fn new(config: &Config, hostname: String, tls: Option<TlsAcceptor>) -> Self {
        let s = &config.smtp;
        SessionConfig {
            hostname,
            allowed_networks: s.allowed_networks.clone(),
            internal_domains: config.org.internal_domains.clone(),
            max_message_size: s.max_message_size.0 as usize,
            max_recipients: s.max_recipients,
            max_errors: s.max_errors,
            idle_timeout: s.idle_timeout.0,
            session_timeout: s.session_timeout.0,
            data_timeout: s.data_timeout.0,
            min_data_rate: s.min_data_rate.0,
            rate_grace: Duration::from_secs(30),
            preauth_timeout: s.preauth_timeout.0,
            tls,
            auth_guard: AuthGuard::new(GuardLimits {
                per_account: s.auth_max_failures,
                per_address: s.auth_max_failures_per_ip,
                window: s.auth_lockout.0,
                lockout: s.auth_lockout.0,
            }),
        }
    }

    pub fn allowed_network(&self, ip: IpAddr) -> bool {
        self.allowed_networks.iter().any(|n| n.contains(ip))
    }
}

/// Connection slots: the allowed networks (the Gmail / Microsoft 365
/// relays: few addresses, many connections) have a pool of their own that
/// outsiders cannot touch; everyone else shares a smaller pool with a cap
/// per address.
#[derive(Debug, Clone, Copy)]
pub struct Slots {
    /// For clients in `allowed_networks`.
    pub trusted: usize,
    /// For every other client together.
    pub outside: usize,
    /// For one address outside `allowed_networks`.
    pub per_ip: usize,
}

impl Slots {
    pub fn new(config: &Config) -> Slots {
        let s = &config.smtp;
        Slots { trusted: s.max_connections, outside: s.max_outside_connections, per_ip: s.max_connections_per_ip }
    }
}

/// Open connections per outside address (IPv6 by /64).
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot(self.clone(), ip))
    }
}

struct IpSlot(Arc<PerIp>, IpAddr);

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

pub struct Server {
    pub config: Arc<SessionConfig>,
    pub sink: Arc<dyn MessageSink>,
    pub auth: Arc<dyn Authenticator>,
    pub metrics: Arc<Metrics>,
    pub slots: Slots,
}

impl Server {
    /// Accepts connections until `shutdown` turns true, then waits up to
    /// `grace` for open sessions to finish their transactions.
    pub async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let trusted = Arc::new(Semaphore::new(self.slots.trusted));
        let outside = Arc::new(Semaphore::new(self.slots.outside));
        let per_ip = Arc::new(PerIp::default());
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
            let ip = peer.ip();
            let slot: Option<(OwnedSemaphorePermit, Option<IpSlot>)> = if self.config.allowed_network(ip) {
                trusted.clone().try_acquire_owned().ok().map(|p| (p, None))
            } else {
                match per_ip.take(client_key(ip), self.slots.per_ip) {
                    Some(ip_slot) => outside.clone().try_acquire_owned().ok().map(|p| (p, Some(ip_slot))),
                    None => None,
                }
            };
            let Some(slot) = slot else {
                tracing::debug!(peer = %peer, "connection refused: no free slot");
                // A refusal must not wait on a client that does not read.
                tokio::spawn(async move {
                    let msg = b"421 4.7.0 Too many connections, try again later\r\n";
                    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(msg)).await;
                });
                continue;
            };
            let _ = stream.set_nodelay(true);
            let session = Session::new(
                self.config.clone(),
                self.sink.clone(),
                self.auth.clone(),
                self.metrics.clone(),
                ip,
                shutdown.clone(),
            );
            let metrics = self.metrics.clone();
            sessions.spawn(async move {
                metrics.smtp_sessions.fetch_add(1, Relaxed);
                if let Err(e) = session.run(stream).await {
                    tracing::debug!(peer = %peer, error = %e, "session ended with an error");
                }
                metrics.smtp_sessions.fetch_sub(1, Relaxed);
                drop(slot);
            });
        }
        drop(listener);
        if tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!(open = sessions.len(), "sessions still open after the grace period; closing them");
            sessions.abort_all();
        }
    }
}
