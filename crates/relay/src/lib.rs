//! Outbound delivery: to the configured smarthost (`relay`), to each
//! recipient domain's MX (`mx`), or into a folder (`sandbox`, nothing leaves
//! the machine).
//!
//! Connections are kept open and reused across messages (per destination),
//! and every attempt reports one [`RcptOutcome`] per recipient. This stage
//! decides nothing about retries: the queue does.

pub mod client;
mod mx;

use client::{AnyCert, ClientError, Conn, ConnectSettings, Security};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::TlsConnector;
use tomare_config::{Config, DeliveryMode, TlsMode};
use tomare_model::{Address, MessageId, OutcomeClass, Payload, RcptOutcome};

/// Idle connections older than this are closed rather than reused: servers
/// drop idle clients after a while (Postfix: 300 s).
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Messages sent on one connection before it is replaced.
const MAX_MESSAGES_PER_CONN: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("reading {path}: {source}")]
    CaFile { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no usable certificate")]
    NoCerts { path: PathBuf },
    #[error("DNS resolver: {0}")]
    Resolver(String),
}

// One value per process, behind an Arc: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Delivery {
    Sandbox(PathBuf),
    Relay { host: String, port: u16, settings: ConnectSettings, pool: Pool },
    Mx { resolver: mx::Resolver, port: u16, settings: ConnectSettings, pool: Pool },
}

impl Delivery {
    pub fn from_config(config: &Config, helo_name: String) -> Result<Delivery, SetupError> {
        let d = &config.delivery;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let base = ConnectSettings {
            helo_name,
            security: Security::None,
            credentials: None,
            connect_timeout: d.connect_timeout.0,
            command_timeout: d.command_timeout.0,
        };
        Ok(match d.mode {
            DeliveryMode::Sandbox => Delivery::Sandbox(config.storage.data_dir.join("sandbox")),
            DeliveryMode::Relay => {
                let r = &d.relay;
                let connector = || -> Result<TlsConnector, SetupError> {
                    let roots = roots(r.ca_file.as_deref())?;
                    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                        .with_safe_default_protocol_versions()
                        .expect("ring supports the default protocol versions")
                        .with_root_certificates(roots)
                        .with_no_client_auth();
                    Ok(TlsConnector::from(Arc::new(tls)))
                };
                let security = match r.tls {
                    TlsMode::None => Security::None,
                    TlsMode::Starttls => Security::StartTls(connector()?),
                    TlsMode::Tls => Security::Implicit(connector()?),
                };
                let credentials = r.username.clone().zip(r.password.clone());
                let settings = ConnectSettings { security, credentials, ..base };
                Delivery::Relay { host: r.host.clone(), port: r.port, settings, pool: Pool::default() }
            }
            DeliveryMode::Mx => {
                let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                    .with_no_client_auth();
                let settings =
                    ConnectSettings { security: Security::Opportunistic(TlsConnector::from(Arc::new(tls))), ..base };
                let resolver = mx::Resolver::new(&d.mx.nameservers).map_err(SetupError::Resolver)?;
                Delivery::Mx { resolver, port: d.mx.port, settings, pool: Pool::default() }
            }
        })
    }

    /// Delivers one message to `rcpts`; one outcome per recipient.
    pub async fn send(
        &self,
        id: &MessageId,
        mail_from: &Address,
        rcpts: &[Address],
        data: &Payload,
    ) -> Vec<RcptOutcome> {
        match self {
            Delivery::Sandbox(dir) => sandbox(dir, id, mail_from, rcpts, data).await,
            Delivery::Relay { host, port, settings, pool } => {
                pool.send(host, None, *port, settings, mail_from, rcpts, data).await
            }
            Delivery::Mx { resolver, port, settings, pool } => {
                let mut by_domain: Vec<(String, Vec<Address>)> = Vec::new();
                for r in rcpts {
                    let domain = r.domain().to_string();
                    match by_domain.iter_mut().find(|(d, _)| *d == domain) {
                        Some((_, list)) => list.push(r.clone()),
                        None => by_domain.push((domain, vec![r.clone()])),
                    }
                }
                let mut outcomes = Vec::with_capacity(rcpts.len());
                for (domain, list) in by_domain {
                    outcomes
                        .extend(mx::deliver(resolver, pool, *port, settings, &domain, mail_from, &list, data).await);
                }
                outcomes
            }
        }
    }

    /// Closes pooled connections politely.
    pub async fn close(&self) {
        if let Delivery::Relay { pool, .. } | Delivery::Mx { pool, .. } = self {
            pool.close().await;
        }
    }
}

fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| SetupError::CaFile { path: path.into(), source: std::io::Error::other(e) })?;
            for cert in certs.flatten() {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(SetupError::NoCerts { path: path.into() });
            }
        }
    }
    Ok(roots)
}

async fn sandbox(
    dir: &Path,
    id: &MessageId,
    mail_from: &Address,
    rcpts: &[Address],
    data: &Payload,
) -> Vec<RcptOutcome> {
    let envelope = serde_json::json!({ "id": id.as_str(), "mail_from": mail_from, "rcpt_to": rcpts });
    let write = async {
        use tokio::io::AsyncWriteExt;
        tokio::fs::create_dir_all(dir).await?;
        let to = dir.join(format!("{id}.eml"));
        match data {
            // In pieces: `tokio::fs::write` would copy a big message whole.
            Payload::Bytes(data) => {
                let mut file = tokio::fs::File::create(&to).await?;
                for piece in data.chunks(1 << 20) {
                    file.write_all(piece).await?;
                }
                file.flush().await?;
            }
            Payload::File { path, .. } => {
                tokio::fs::copy(path, &to).await?;
            }
        }
        tokio::fs::write(dir.join(format!("{id}.json")), envelope.to_string()).await
    };
    let (class, reply) = match write.await {
        Ok(()) => (OutcomeClass::Delivered, format!("250 2.0.0 captured in sandbox as {id}.eml")),
        Err(e) => (OutcomeClass::Temporary, format!("451 4.3.0 sandbox write failed: {e}")),
    };
    rcpts.iter().map(|r| RcptOutcome { address: r.clone(), class, reply: reply.clone() }).collect()
}

/// Open connections per destination, reused across messages.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<(String, u16), Vec<Conn>>>,
}

impl Pool {
    fn take(&self, host: &str, port: u16) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&(host.to_string(), port))?;
        while let Some(conn) = list.pop() {
            if conn.last_used.elapsed() < MAX_IDLE {
                return Some(conn);
            }
            // Too old to trust; dropping closes the socket.
        }
        None
    }

    fn put(&self, host: &str, port: u16, conn: Conn) {
        if conn.sent >= MAX_MESSAGES_PER_CONN {
            tokio::spawn(conn.quit());
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.entry((host.to_string(), port)).or_default().push(conn);
    }

    /// Sends over a pooled connection, or a new one; a failure becomes an
    /// outcome for every recipient.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        host: &str,
        addr: Option<IpAddr>,
        port: u16,
        settings: &ConnectSettings,
        mail_from: &Address,
        rcpts: &[Address],
        data: &Payload,
    ) -> Vec<RcptOutcome> {
        match self.try_send(host, addr, port, settings, mail_from, rcpts, data).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let reply = format!("{host}:{port}: {e}");
                let class = e.class();
                rcpts.iter().map(|r| RcptOutcome { address: r.clone(), class, reply: reply.clone() }).collect()
            }
        }
    }

    /// A pooled connection that turns out dead is replaced once, without
    /// counting as an attempt.
    #[allow(clippy::too_many_arguments)]
    pub async fn try_send(
        &self,
        host: &str,
        addr: Option<IpAddr>,
        port: u16,
        settings: &ConnectSettings,
        mail_from: &Address,
        rcpts: &[Address],
        data: &Payload,
    ) -> Result<Vec<RcptOutcome>, ClientError> {
        if let Some(mut conn) = self.take(host, port)
            && let Ok(outcomes) = conn.send(mail_from, rcpts, data).await
        {
            self.put(host, port, conn);
            return Ok(outcomes);
        }
        let mut conn = Conn::open(host, addr, port, settings).await?;
        let outcomes = conn.send(mail_from, rcpts, data).await?;
        self.put(host, port, conn);
        Ok(outcomes)
    }

    async fn close(&self) {
        let conns: Vec<Conn> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.drain().flat_map(|(_, v)| v).collect()
        };
        for c in conns {
            c.quit().await;
        }
    }
}
