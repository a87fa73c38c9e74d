//! `tomare serve`: opens the store and spool, recovers from the last stop,
//! and runs the SMTP listener, the queue and the web listener until SIGINT
//! or SIGTERM, then shuts them down in order (stop accepting, let sessions
//! finish, let deliveries finish, close the database).

use crate::LogFormat;
use anyhow::{Context, Result};
use async_trait::async_trait;
use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tomare_config::{Config, DeliveryMode};
use tomare_model::i18n::{Lang, t};
use tomare_model::{Address, Envelope, MessageId, Metrics, Payload, RcptOutcome};
use tomare_queue::{Acceptor, Pipeline, Spool, Transport};
use tomare_relay::Delivery;
use tomare_review::{Reviewer, Rules};
use tomare_smtp::{Authenticator, Login, MessageSink, Server, SessionConfig};
use tomare_store::QueueStore;
use tomare_store::{SqliteStore, Store};

/// How long open SMTP sessions and deliveries may take to finish at shutdown.
const GRACE: Duration = Duration::from_secs(30);

pub fn run(config: Config, path: Option<std::path::PathBuf>, log_format: LogFormat) -> Result<ExitCode> {
    init_logging(log_format);
    // Rust's allocations go to mimalloc (allocator.rs); glibc's malloc is left
    // to the C libraries (SQLite, zstd). glibc gives each thread that
    // allocates its own arena, which fragments into hundreds of MB when
    // many threads allocate: two arenas keep the footprint flat. A fixed
    // mmap threshold: glibc otherwise raises it to the size of each big
    // block freed (up to 32 MB), so big buffers end up in the arenas and
    // stay there (bench/bigmail.py).
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config, path))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOMARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The host name for greetings and Received headers.
pub fn hostname(config: &Config) -> String {
    if !config.smtp.hostname.is_empty() {
        return config.smtp.hostname.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The store of an existing data directory, for every command but `serve`:
/// run from the wrong directory, they say where they looked instead of
/// quietly creating an empty `./tomare-data`.
/// A database with migrations pending is refused: only `serve`, `db
/// migrate` (and `archive import`) change the schema, so a newer CLI never
/// migrates under an older running server.
pub async fn open_existing_store(config: &Config) -> Result<Arc<SqliteStore>> {
    crate::datadir::require(&config.storage.data_dir)?;
    let db = config.storage.data_dir.join("tomare.db");
    match SqliteStore::open_current(&db).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(tomare_store::StoreError::MigrationsPending(n)) => {
            anyhow::bail!(t(Lang::from_env(), "cli.migrations_pending", &[&n]))
        }
        Err(e) => Err(e).with_context(|| format!("opening {}", db.display())),
    }
}

/// The store, creating the data directory when it is missing (`serve`).
pub async fn open_store(config: &Config) -> Result<Arc<SqliteStore>> {
    let dir = &config.storage.data_dir;
    crate::datadir::create(dir)?;
    let db = dir.join("tomare.db");
    let store = SqliteStore::open(&db).await.with_context(|| format!("opening {}", db.display()))?;
    Ok(Arc::new(store))
}

async fn serve(config: Config, path: Option<std::path::PathBuf>) -> Result<()> {
    let lang = Lang::from_env();
    let host = hostname(&config);
    let data_dir = &config.storage.data_dir;
    crate::datadir::create(data_dir)?;
    if !config.storage.allow_shared_permissions {
        let tightened = crate::datadir::tighten(data_dir)
            .with_context(|| format!("tightening the permissions of {}", data_dir.display()))?;
        if let Some(mode) = tightened.top {
            tracing::warn!("{}", t(lang, "serve.tightened_dir", &[&data_dir.display(), &format!("{mode:04o}")]));
        }
        if tightened.below > 0 {
            tracing::warn!("{}", t(lang, "serve.tightened_files", &[&tightened.below, &data_dir.display()]));
        }
    }
    let store = open_store(&config).await?;
    for m in store.migrations_applied() {
        tracing::info!("{}", t(lang, "db.migrated", &[&m.database.file(), &format!("{:04}", m.version), &m.name]));
    }
    let org_id = store.ensure_org(&config.org.name).await?;
    let spool = Spool::open(&config.storage.data_dir).context("opening the spool")?;

    // Resume from the last stop: interrupted deliveries go back to the
    // queue, and spool files whose sender never got a 250 are removed.
    let recovered = store.recover().await?;
    if recovered > 0 {
        println!("{}", t(lang, "serve.recovered", &[&recovered]));
    }
    let live: HashSet<MessageId> = store.live_ids(config.archive.enabled).await?.into_iter().collect();
    let orphans = spool.remove_orphans(&live).context("cleaning the spool")?;
    if orphans > 0 {
        tracing::info!(orphans, "removed spool files that were never acknowledged");
    }

    let archive = if config.archive.enabled {
        let dir = config.storage.data_dir.clone();
        let archive = tokio::task::spawn_blocking(move || tomare_archive::Archive::open(&dir)).await?;
        Some(Arc::new(archive.context("opening the archive")?))
    } else {
        None
    };
    let archive_spool = spool.clone();

    let smtp_listener = TcpListener::bind(&config.smtp.listen)
        .await
        .with_context(|| format!("listening for SMTP on {}", config.smtp.listen))?;
    let web_listener = TcpListener::bind(&config.web.listen)
        .await
        .with_context(|| format!("listening for HTTP on {}", config.web.listen))?;
    let tls = match &config.smtp.tls {
        Some(tls) => Some(load_tls(&tls.cert, &tls.key)?),
        None => None,
    };
    let helo_name = if config.delivery.helo_name.is_empty() { host.clone() } else { config.delivery.helo_name.clone() };
    let delivery = Arc::new(Delivery::from_config(&config, helo_name).context("setting up delivery")?);

    // Made before the first AUTH can arrive (see `Users`).
    tomare_web::accounts::dummy_hash().map_err(|e| anyhow::anyhow!("preparing AUTH: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let memory = tomare_queue::MessageMemory::default();
    crate::datadir::watch_space(data_dir, config.storage.min_free, metrics.clone());
    if !config.archive.enabled {
        metrics.health.archive_lag.store(-1, std::sync::atomic::Ordering::Relaxed);
    }
    // Two stages: SMTP stops first; the queue keeps delivering what the last
    // sessions handed over until they are done (`Pipeline::shutdown`).
    let (shutdown_tx, shutdown) = watch::channel(false);
    let dyn_store: Arc<dyn Store> = store.clone();
    let history = Arc::new(std::sync::RwLock::new(tomare_review::history(store.as_ref(), Some(org_id)).await?));
    let handoffs = config.archive.enabled.then(|| Arc::new(tomare_archive::ops::Handoffs::default()));
    // A first start makes an admin account (shown once, after the banner),
    // before the directory the rules and the web read is loaded.
    let probe = Rules::load_for(&config, Vec::new(), store.as_ref(), org_id).await?;
    let first_admin = tomare_web::accounts::first_admin(&config, store.as_ref(), org_id, &probe.directory).await?;
    let rules = Rules::load_for(&config, crate::load_rules_file(&config)?, store.as_ref(), org_id).await?;
    // Protected attachments: their files encrypted under protect.key.
    let vault =
        Arc::new(tomare_protect::Vault::open(&config.storage.data_dir).context("opening the vault (protect.key)")?);
    let protector = Arc::new(tomare_protect::Protector::new(&config, vault));
    let reviewer = Arc::new(Reviewer::new(&config, rules, history.clone(), handoffs.clone(), Some(protector.clone()))?);
    // SIGHUP (or `tomare rules reload`): new rules and directory, or, when
    // they are refused, the old ones kept.
    let pid_file = config.storage.data_dir.join("tomare.pid");
    std::fs::write(&pid_file, std::process::id().to_string()).context("writing the pid file")?;
    // The rules and directory again, as SIGHUP, `tomare rules reload` and
    // the web's rule editor ask: the new ones, or (refused) the old kept.
    let reload: tomare_web::ReloadFn = {
        let (reviewer, store, path) = (reviewer.clone(), store.clone(), path.clone());
        Arc::new(move || {
            let (reviewer, store, path) = (reviewer.clone(), store.clone(), path.clone());
            Box::pin(async move {
                let lang = Lang::from_env();
                let fresh = async {
                    let config = crate::load_with_rules(path.as_deref())?;
                    let extra = crate::load_rules_file(&config)?;
                    anyhow::Ok(Rules::load_for(&config, extra, store.as_ref(), org_id).await?)
                };
                match fresh.await {
                    Ok(rules) => {
                        let n = rules.engine.rules().len();
                        reviewer.replace(rules);
                        tracing::info!("{}", t(lang, "serve.rules_reloaded", &[&n]));
                        Ok(n)
                    }
                    Err(e) => {
                        tracing::error!("{}", t(lang, "serve.rules_refused", &[&format!("{e:#}")]));
                        Err(format!("{e:#}"))
                    }
                }
            })
        })
    };
    {
        let reload = reload.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = reload().await;
            }
        });
    }
    // The recipient history grows as mail is delivered, and mail waits and
    // stops waiting; the rules read a copy refreshed every few seconds.
    let history_store = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Ok(h) = tomare_review::history(history_store.as_ref(), Some(org_id)).await {
                // Waiting domains the review stage admitted leave once their
                // mail stops waiting; it admits new ones itself (not held
                // typos, which the store's list would bring back).
                let mut w = history.write().unwrap_or_else(|p| p.into_inner());
                w.contacted = h.contacted;
                w.waiting.retain(|d| h.waiting.contains(d));
            }
        }
    });
    // The key that signs the one-click links in notices, and where they point.
    let links = Arc::new(
        tomare_web::links::Links::open(&config.storage.data_dir, &config.web.base_url())
            .context("opening the link key (link.key)")?,
    );
    let web_reviewer = reviewer.clone();
    let mut pipeline =
        Pipeline::builder(&config, dyn_store.clone(), spool, reviewer, Arc::new(Relay(delivery.clone())))
            .org(org_id)
            .reporting_mta(host.clone())
            .metrics(metrics.clone())
            .memory(memory.clone())
            .links(links.clone());
    let web_archive = archive.clone();
    if let Some(archive) = archive {
        // After the queue: it takes what review hands over and what the
        // store says is final, and stops last.
        let archiver = crate::archiver::Archiver {
            archive,
            store: dyn_store.clone(),
            inspector: Arc::new(tomare_inspect::Inspector::new(&config).map_err(|e| anyhow::anyhow!("[detect]: {e}"))?),
            spool: archive_spool,
            org: org_id,
            retention_days: config.archive.retention_days,
            metrics: metrics.clone(),
            handoffs: handoffs.clone().unwrap_or_default(),
            memory: memory.clone(),
        };
        pipeline = pipeline.then(Box::new(crate::archiver::spawn(archiver)?));
    }
    let pipeline = pipeline.start();
    let smtp = Server {
        config: Arc::new(SessionConfig::new(&config, host.clone(), tls.clone())),
        sink: Arc::new(Sink(pipeline.acceptor())),
        auth: Arc::new(Users(dyn_store.clone())),
        metrics: metrics.clone(),
        slots: tomare_smtp::Slots::new(&config),
    };
    let smtp_task = tokio::spawn(smtp.run(smtp_listener, shutdown.clone(), GRACE));
    let web = tomare_web::App::new(tomare_web::Parts {
        config: config.clone(),
        org: org_id,
        store: dyn_store,
        metrics,
        links,
        rules: Arc::new(move || web_reviewer.rules()),
        archive: web_archive,
        reload: Some(reload),
        replayer: Some(Arc::new(tomare_review::Replayer::new(&config)?)),
        mail: Some(own_mail(pipeline.acceptor(), host.clone())),
        protector: Some(protector.clone()),
    });
    // Password mails follow delivered messages; files of links that ended
    // go. Stops with SMTP: its acceptor must not keep the queue open.
    let sweeper = {
        let (store, mail) = (store.clone(), own_mail(pipeline.acceptor(), host.clone()));
        let mut down = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = down.wait_for(|d| *d) => break,
                }
                protector.sweep(store.as_ref(), &mail).await;
            }
        })
    };
    let web_task = tokio::spawn(tomare_web::serve(web_listener, tomare_web::router(web), shutdown));

    banner(lang, &config, tls.is_some());
    if let Some((email, password)) = first_admin {
        println!("{}", t(lang, "serve.first_admin", &[&email, &password, &format!("{}/login", config.web.base_url())]));
    }
    wait_for_signal().await;
    println!("{}", t(lang, "serve.stopping", &[]));
    let _ = shutdown_tx.send(true);
    let _ = smtp_task.await;
    let _ = sweeper.await;
    // SMTP has handed over its last message: the queue's stages stop, then
    // the archiver.
    let stopped = pipeline.shutdown(GRACE).await;
    if stopped.commits_left && !stopped.cut_short {
        tracing::warn!("accepted messages were still being committed at shutdown; their senders will retry");
    }
    let _ = web_task.await;
    delivery.close().await;
    store.close().await;
    let _ = std::fs::remove_file(&pid_file);
    println!("{}", t(lang, "serve.stopped", &[]));
    Ok(())
}

fn banner(lang: Lang, config: &Config, tls: bool) {
    let nets: Vec<String> = config.smtp.allowed_networks.iter().map(|n| format!("{}/{}", n.addr, n.prefix)).collect();
    let domains = config.org.internal_domains.join(", ");
    let data_dir = config.storage.data_dir.display();
    println!("{}", t(lang, "serve.running", &[&env!("CARGO_PKG_VERSION")]));
    println!("{}", t(lang, "serve.smtp", &[&config.smtp.listen, &nets.join(", "), &domains]));
    if tls {
        println!("{}", t(lang, "serve.smtp_tls", &[]));
    }
    println!("{}", t(lang, "serve.web", &[&config.web.listen]));
    println!("{}", t(lang, "serve.data", &[&data_dir]));
    match config.delivery.mode {
        DeliveryMode::Sandbox => {
            let dir = config.storage.data_dir.join("sandbox");
            println!("{}", t(lang, "serve.delivery_sandbox", &[&dir.display()]));
        }
        DeliveryMode::Relay => {
            println!("{}", t(lang, "serve.delivery_relay", &[&config.delivery.relay.host, &config.delivery.relay.port]))
        }
        DeliveryMode::Mx => println!("{}", t(lang, "serve.delivery_mx", &[])),
    }
    let hold = |d: &tomare_config::Duration| format!("{}s", d.0.as_secs());
    println!("{}", t(lang, "serve.hold", &[&hold(&config.hold.external), &hold(&config.hold.internal)]));
    let protect = match config.protect.external_attachments {
        tomare_config::ProtectSetting::Off => "off",
        tomare_config::ProtectSetting::Link => "link",
        tomare_config::ProtectSetting::Zip => "zip",
    };
    println!("{}", t(lang, "serve.protect", &[&protect]));
    let ocr = match config.inspect.ocr {
        tomare_config::OcrMode::Auto => tomare_inspect::ocr::find().map(|t| t.version),
        tomare_config::OcrMode::Off => Err("[inspect] ocr = \"off\"".into()),
    };
    match ocr {
        Ok(version) => println!("{}", t(lang, "serve.ocr_on", &[&version, &tomare_inspect::ocr::LANGUAGES])),
        Err(why) => println!("{}", t(lang, "serve.ocr_off", &[&why])),
    }
    let keys: Vec<String> = config.dkim.all().iter().map(|k| format!("{} ({})", k.domain, k.selector)).collect();
    if keys.is_empty() {
        println!("{}", t(lang, "serve.no_dkim", &[]));
    } else {
        println!("{}", t(lang, "serve.dkim", &[&keys.join(", ")]));
    }
    if config == &Config::default() {
        let domain = config.org.internal_domains.first().cloned().unwrap_or_default();
        println!();
        println!("{}", t(lang, "serve.first_message", &[]));
        println!("  swaks --server {} --from you@{domain} --to colleague@{domain}", config.smtp.listen);
        println!("{}", t(lang, "serve.see_it", &[]));
        println!("  cargo run --release -- queue list");
        println!("  ls {}", config.storage.data_dir.join("sandbox").display());
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn load_tls(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The web's invitations go out as tomare's notices do: null sender,
/// queued through the acceptor, never through the rules.
fn own_mail(acceptor: Acceptor, host: String) -> tomare_queue::MailFn {
    Arc::new(move |to: Address, data: Vec<u8>| {
        let (acceptor, host) = (acceptor.clone(), host.clone());
        Box::pin(async move {
            let envelope = Envelope {
                mail_from: Address::null(),
                rcpt_to: vec![to],
                helo: host,
                client_ip: "127.0.0.1".into(),
                auth_user: None,
            };
            acceptor.accept(envelope, data, true).await.map(|id| id.to_string()).map_err(|e| e.to_string())
        })
    })
}

struct Sink(Acceptor);

#[async_trait]
impl MessageSink for Sink {
    async fn accept(&self, envelope: Envelope, data: Vec<u8>) -> Result<String, String> {
        self.0.accept(envelope, data, false).await.map(|id| id.to_string()).map_err(|e| e.to_string())
    }

    async fn begin(&self) -> Result<Box<dyn tomare_smtp::Incoming>, String> {
        let incoming = self.0.begin().await.map_err(|e| e.to_string())?;
        Ok(Box::new(Streamed(incoming)))
    }
}

struct Streamed(tomare_queue::Incoming);

#[async_trait]
impl tomare_smtp::Incoming for Streamed {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<(), String> {
        self.0.write(chunk).await.map_err(|e| e.to_string())
    }

    async fn finish(self: Box<Self>, envelope: Envelope) -> Result<String, String> {
        self.0.finish(envelope).await.map(|id| id.to_string()).map_err(|e| e.to_string())
    }
}

struct Users(Arc<dyn Store>);

#[async_trait]
impl Authenticator for Users {
    async fn verify(&self, user: &str, password: &str) -> Option<Login> {
        let found = self.0.user(user).await.ok().flatten();
        // An unknown account costs the same argon2 as a known one, so the
        // reply time does not tell which accounts exist.
        let ok = tomare_web::accounts::check_password(found.as_ref().map(|u| u.password_hash.clone()), password).await;
        let user = found.filter(|_| ok)?;
        let mut send_as = user.send_as.clone();
        if let Ok(own) = user.email.parse::<Address>() {
            send_as.insert(0, tomare_model::SendAs::Address(own));
        }
        Some(Login { user: user.email, send_as })
    }
}

struct Relay(Arc<Delivery>);

#[async_trait]
impl Transport for Relay {
    async fn send(&self, id: &MessageId, mail_from: &Address, rcpts: &[Address], data: &Payload) -> Vec<RcptOutcome> {
        self.0.send(id, mail_from, rcpts, data).await
    }
}
